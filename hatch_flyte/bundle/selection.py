"""Choosing the files of a bundle: the same walk, order and include rules as flyte 2.12."""

from __future__ import annotations

import errno
import glob
import logging
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hatch_flyte.bundle.ignore import IgnoreRules
from hatch_flyte.bundle.listing import walk
from hatch_flyte.errors import BundleError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BundleFile:
    """One archive member: where it is read from and its POSIX name inside the bundle."""

    path: str
    arcname: str


@dataclass(frozen=True)
class Selection:
    """The files of a bundle in archive order (sorted by path, as flyte sorts them)."""

    root: Path
    files: tuple[BundleFile, ...]
    #: Entries left out because they are not files (dangling links, sockets), for reports.
    skipped: tuple[str, ...] = ()

    @property
    def arcnames(self) -> list[str]:
        return [f.arcname for f in self.files]


def select_files(
    root: Path,
    rules: IgnoreRules,
    include: Sequence[Path] = (),
    exclude_dirs: Iterable[Path] = (),
) -> Selection:
    """Walk ``root`` (absolute and resolved) and return what flyte would bundle from it.

    ``include`` entries (absolute files, directories or globs) are added on top, as flyte adds
    ``Environment.include``; ``exclude_dirs`` (our own output directory, when it lies under the
    root) are never entered.
    """
    skipped: list[str] = []
    excluded = {(s.st_dev, s.st_ino) for s in (_stat_or_none(d) for d in exclude_dirs) if s is not None}
    found = _walk(str(root), rules, excluded, skipped)
    if include:
        found = _add_includes(root, found, include, rules, excluded, skipped)
    return _selection(root, found, skipped)


def with_includes(walked: Selection, rules: IgnoreRules, include: Sequence[Path]) -> Selection:
    """``walked`` (a :func:`select_files` of its root with ``rules``, no includes) plus ``include``,
    as :func:`select_files` would add them: the root is not walked again."""
    if not include:
        return walked
    skipped = list(walked.skipped)
    found = _add_includes(walked.root, [f.path for f in walked.files], include, rules, set(), skipped)
    return _selection(walked.root, found, skipped)


def without(selection: Selection, directory: Path) -> Selection:
    """``selection`` less the files under ``directory`` (an output directory inside the root)."""
    prefix = str(directory.resolve()).rstrip("/") + "/"
    if not prefix.startswith(str(selection.root).rstrip("/") + "/"):
        return selection
    files = tuple(f for f in selection.files if not f.path.startswith(prefix))
    return (
        selection
        if len(files) == len(selection.files)
        else Selection(selection.root, files, selection.skipped)
    )


def _selection(root: Path, found: list[str], skipped: list[str]) -> Selection:
    found.sort()
    prefix = str(root).rstrip("/") + "/"
    files = tuple(BundleFile(p, p[len(prefix) :].replace(os.sep, "/")) for p in found)
    return Selection(root=root, files=files, skipped=tuple(skipped))


def select_listed(
    root: Path,
    paths: Sequence[Path],
    rules: IgnoreRules,
    include: Sequence[Path] = (),
    exclude_dirs: Iterable[Path] = (),
) -> Selection:
    """``paths`` (files under ``root``, e.g. the modules flyte's ``loaded_modules`` style lists)
    plus ``include`` entries, in flyte's order. ``rules`` apply only to what an ``include``d
    directory or glob brings, as in flyte: never to the listed files or an ``include``d file."""
    skipped: list[str] = []
    excluded = {(s.st_dev, s.st_ino) for s in (_stat_or_none(d) for d in exclude_dirs) if s is not None}
    prefix = str(root).rstrip("/") + "/"
    found = list(dict.fromkeys(_under_root(root, prefix, str(p)) for p in paths))
    if include:
        found = _add_includes(root, found, include, rules, excluded, skipped)
    found.sort()
    files = tuple(BundleFile(p, p[len(prefix) :].replace(os.sep, "/")) for p in found)
    return Selection(root=root, files=files, skipped=tuple(skipped))


def _under_root(root: Path, prefix: str, path: str) -> str:
    """``path`` spelled under ``root`` (a module found through another spelling of the root, such
    as a linked ``sys.path`` entry, is named by its place under the root)."""
    if path.startswith(prefix):
        return path
    try:
        rel = Path(path).parent.resolve().relative_to(root)
    except (OSError, ValueError):
        raise BundleError(f"{path} is not under the bundle root {root}") from None
    return str(root / rel / Path(path).name)


def _stat_or_none(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except OSError:
        return None


def _walk_error(err: OSError) -> None:
    if err.errno == errno.ELOOP:
        raise BundleError(
            f"symlink loop: {err.filename} goes through too many symbolic links; remove the link that "
            "leads back, or add it to `tool.flyte.bundle.ignores`"
        )
    raise BundleError(
        f"cannot read directory {err.filename}: {err.strerror}; make it readable or add it to "
        "`tool.flyte.bundle.ignores`"
    )


def _walk(top: str, rules: IgnoreRules, excluded: set[tuple[int, int]], skipped: list[str]) -> list[str]:
    """flyte's walk: follow directory links, visit each directory inode once, sorted file names."""
    out: list[str] = []
    visited: set[int] = set()
    inodes: dict[str, int] = {}
    for dirpath, dirnames, filenames in walk(top, rules.listing, onerror=_walk_error, followlinks=True):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        if excluded:
            dirnames[:] = [d for d in dirnames if _dev_ino(os.path.join(dirpath, d)) not in excluded]
        dirnames[:] = [d for d in dirnames if not rules.is_ignored(os.path.join(dirpath, d), is_dir=True)]
        # A directory reached twice (through a link) keeps the files of its first visit only; its
        # subdirectories are still walked, exactly as flyte does.
        inode = inodes[dirpath] = os.stat(dirpath).st_ino
        if inode in visited:
            _check_loop(top, dirpath, inode, inodes)
            continue
        visited.add(inode)
        filenames.sort()
        for name in filenames:
            path = os.path.join(dirpath, name)
            kind = _file_kind(path)
            if kind in ("socket", "dangling link"):  # flyte skips these before its ignore rules
                log.warning("leaving out %s: %s", path, kind)
                skipped.append(path)
                continue
            if rules.is_ignored(path, is_dir=False):
                continue
            if kind != "file":
                raise BundleError(
                    f"{path} is a {kind}, which a bundle cannot hold; fix or delete it, or add it to "
                    "`tool.flyte.bundle.ignores`"
                )
            out.append(path)
        dirnames[:] = [d for d in dirnames if os.stat(os.path.join(dirpath, d)).st_ino not in visited]
    return out


def _check_loop(top: str, dirpath: str, inode: int, inodes: dict[str, int]) -> None:
    """Refuse a directory that is one of its own ancestors (reached again through links).

    Its subdirectories are walked again, without end: flyte walks such a loop until the system
    refuses a path with too many links (seconds to minutes, then a crash); this fails at once.
    """
    ancestor = os.path.dirname(dirpath)
    while len(ancestor) >= len(top):
        if inodes.get(ancestor) == inode:
            raise BundleError(
                f"symlink loop: {dirpath} is {ancestor} again (a directory link leads back up its own "
                "tree, so the walk never ends; flyte fails on it too). Remove the link or add it to "
                "`tool.flyte.bundle.ignores`"
            )
        ancestor = os.path.dirname(ancestor)


def _dev_ino(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _file_kind(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "symlink loop (it never resolves to a file)"
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return "dangling link"
        raise BundleError(f"cannot read {path}: {e.strerror}; make it readable or ignore it") from None
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISFIFO(mode):
        return "named pipe"
    return "device file" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "special file"


def _add_includes(
    root: Path,
    found: list[str],
    include: Sequence[Path],
    rules: IgnoreRules,
    excluded: set[tuple[int, int]],
    skipped: list[str],
) -> list[str]:
    extra: list[str] = []
    for entry in include:
        if entry.is_dir():
            extra.extend(_walk(str(entry), rules, excluded, skipped))
        elif entry.is_file():
            extra.append(str(entry))
        else:
            matched = glob.glob(str(entry))
            if not matched:
                raise BundleError(
                    f"include path {entry} is not a file, a directory or a glob that matches anything; "
                    "fix `tool.flyte.bundle.include`"
                )
            extra.extend(m for m in matched if os.path.isfile(m) and not rules.is_ignored(m, is_dir=False))
    existing = set(found)
    for path in extra:
        resolved = Path(path).resolve()
        try:
            rel = resolved.relative_to(root)
        except ValueError:
            # A path under the root that resolves outside it is a symlink leading out (an error here,
            # as in flyte): name where it leads.
            leads = "" if Path(os.path.abspath(path)) == resolved else f" (a symlink to {resolved})"
            raise BundleError(
                f"include path {path}{leads} is outside the bundle root {root}; move it under the root or "
                "set `tool.flyte.root-dir` one level up"
            ) from None
        normalized = str(root / rel)
        if normalized not in existing:
            existing.add(normalized)
            found.append(normalized)
    return found
