"""The code-bundle engine: from a root directory to ``fast<digest>.tar.gz`` in an output directory.

The file list, name and tar bytes are those of ``flyte deploy`` (flyte 2.12) for the same root:
``copy_style="all"`` by default, ``"loaded_modules"`` when :attr:`BundleOptions.modules` lists the
loaded files. The work is one read of each file; an unchanged tree is recognised from file
metadata (see :mod:`hatch_flyte.bundle.statcache`) and its bundle reused without reading or writing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hatch_flyte.atomic import PendingFile, ensure_directory, interruptible
from hatch_flyte.bundle import statcache
from hatch_flyte.bundle.archive import (
    COMPATIBLE_LEVEL,
    bundle_name,
    digest_files,
    gzip_header,
    left_out_of_tar,
    write_archive,
)
from hatch_flyte.bundle.guard import find_secrets, links_leaving
from hatch_flyte.bundle.ignore import IgnoreRules
from hatch_flyte.bundle.listing import Listing
from hatch_flyte.bundle.selection import Selection, select_files, select_listed, with_includes, without
from hatch_flyte.cache import cache_dir
from hatch_flyte.config import Compression, SecretsPolicy
from hatch_flyte.errors import BundleError, SecretsError
from hatch_flyte.project import Project

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BundleOptions:
    """What goes into a bundle and how it is compressed. ``include`` holds absolute paths."""

    ignores: tuple[str, ...] = ()
    keep_default_ignores: bool = True
    include: tuple[Path, ...] = ()
    compression: Compression = "fast"
    secrets: SecretsPolicy = "warn"
    #: Reuse the digest of an unchanged tree without reading its files.
    use_cache: bool = True
    #: The files to bundle instead of walking the root (flyte's ``loaded_modules`` style: the
    #: files of the modules the environments load); ``include`` is added on top.
    modules: tuple[Path, ...] | None = None

    @classmethod
    def for_project(cls, project: Project, extra_include: Sequence[Path] = ()) -> BundleOptions:
        """Options from the project's ``[tool.flyte.bundle]`` (command-line flags included)."""
        b = project.config.bundle
        include = tuple(project.resolve_path(p) for p in b.include) + tuple(extra_include)
        return cls(
            ignores=b.ignores,
            keep_default_ignores=b.keep_default_ignores,
            include=tuple(dict.fromkeys(include)),
            compression=b.compression,
            # strict turns every warning into an error, the secrets guard's too (unless it is off).
            secrets="error" if project.config.strict and b.secrets == "warn" else b.secrets,
        )


@dataclass(frozen=True)
class Bundle:
    """A bundle on disk."""

    path: Path
    digest: str
    #: Member names (POSIX, relative to the root) in archive order.
    files: tuple[str, ...]
    size: int
    tar_size: int
    compression: Compression
    #: True when an existing file with the same digest was kept instead of writing a new one.
    reused: bool = False
    secrets: tuple[str, ...] = field(default=())
    seconds: float = 0.0

    @property
    def name(self) -> str:
        return self.path.name


NOTHING_TO_BUNDLE = (
    "no files to bundle in {root}.\n"
    "Possible causes:\n"
    "  - the root holds only ignored files (a virtual environment, dist/, build/, __pycache__ ...)\n"
    "  - .gitignore or .flyteignore rules leave out every file\n"
    "  - the root is not the directory with your package: set `tool.flyte.root-dir` or pass --root-dir\n"
    "Run `hatch-flyte bundle --show-files` after adding a file to see what is selected."
)


NO_LOADED_MODULES = (
    "no files to bundle in {root}: the environments' modules load no module file under the root "
    "that flyte would bundle (it leaves out files under the interpreter's sys.prefix, sys.base_prefix "
    "and site-packages).\nCheck that the environments' modules lie under the root "
    "(`tool.flyte.root-dir`) and outside the virtual environment, or set "
    '`tool.flyte.bundle.copy-style = "all"`'
)


def check_root(root: Path) -> Path:
    """The resolved root, or a clear error when it is missing or not a directory."""
    resolved = Path(root).resolve()
    if not resolved.exists():
        raise BundleError(f"bundle root {root} does not exist; pass an existing directory")
    if not resolved.is_dir():
        raise BundleError(
            f"bundle root {root} is not a directory; pass the directory that holds your package"
        )
    return resolved


def select(
    root: Path,
    options: BundleOptions,
    outdir: Path | None = None,
    *,
    walked: tuple[Selection, IgnoreRules] | None = None,
) -> tuple[Selection, tuple[str, ...]]:
    """The files a bundle of ``root`` holds, and those the secrets guard flagged (warned about).

    ``walked``: the root already walked with ``options``' ignore rules (a build's one walk, see
    :class:`hatch_flyte.pipeline.Session`), and those rules; the includes are added to it."""
    root = check_root(root)
    exclude = [outdir] if outdir is not None and _is_under(outdir.resolve(), root) else []
    if options.modules is not None:
        rules = (
            walked[1]
            if walked is not None
            else IgnoreRules.for_root(root, options.ignores, options.keep_default_ignores)
        )
        selection = select_listed(root, options.modules, rules, options.include, exclude_dirs=exclude)
        if not selection.files:
            raise BundleError(NO_LOADED_MODULES.format(root=root))
    elif walked is not None:
        tree, rules = walked
        selection = with_includes(tree, rules, options.include)
        if outdir is not None:
            selection = without(selection, outdir)
    else:
        rules = IgnoreRules.for_root(root, options.ignores, options.keep_default_ignores)
        selection = select_files(root, rules, options.include, exclude_dirs=exclude)
    if not selection.files:
        raise BundleError(NOTHING_TO_BUNDLE.format(root=root))
    dropped = [a for a in selection.arcnames if left_out_of_tar(a)]
    if dropped:
        log.warning(
            "flyte leaves %s out of the bundle's tar (a top-level name starting with `..` looks like a "
            "path outside the root to it) but counts it in the digest; so does hatch-flyte, to match "
            "flyte byte for byte. Rename it if the code needs it at run time",
            ", ".join(dropped),
        )
    return selection, _guard(selection, options.secrets, rules.listing)


def _is_under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _guard(selection: Selection, policy: SecretsPolicy, listed: Listing) -> tuple[str, ...]:
    if policy == "off":
        return ()
    _guard_links(selection, policy, listed)
    flagged = find_secrets(selection.arcnames)
    if not flagged:
        return ()
    listing = ", ".join(flagged)
    if policy == "error":
        raise SecretsError(
            f"files that look like secrets would be bundled from {selection.root}: {listing}. "
            "Remove them, add them to `tool.flyte.bundle.ignores` or .flyteignore, "
            'or, to bundle them anyway, set `tool.flyte.bundle.secrets = "warn"` ("off" with `strict`)'
        )
    log.warning(
        "these files look like secrets and will be in the bundle: %s (ignore them in .flyteignore or "
        '`tool.flyte.bundle.ignores`; `secrets = "error"` makes this fatal)',
        listing,
    )
    return tuple(flagged)


def _guard_links(selection: Selection, policy: SecretsPolicy, listed: Listing) -> None:
    """Name every symlink that leads out of the root: flyte bundles its target's bytes."""
    leaving = links_leaving(selection.root, (f.path for f in selection.files), listed)
    if not leaving:
        return
    listing = ", ".join(f"{link} -> {target}" for link, target in leaving)
    if policy == "error":
        raise SecretsError(
            f"symlinks in {selection.root} lead outside it, and the bundle would hold what they point to: "
            f"{listing}. Remove the links, copy what the code needs under the root, or leave them out in "
            ".flyteignore or `tool.flyte.bundle.ignores`; or, to bundle them anyway, set "
            '`tool.flyte.bundle.secrets = "warn"` ("off" with `strict`)'
        )
    log.warning(
        "these symlinks lead outside the bundle root %s, and the bundle holds what they point to (as "
        "flyte's does): %s (leave them out in .flyteignore or `tool.flyte.bundle.ignores`; "
        '`secrets = "error"` or --strict makes this fatal)',
        selection.root,
        listing,
    )


def digest(root: Path, options: BundleOptions) -> tuple[Selection, str]:
    """The selection and flyte's digest for ``root``, writing nothing."""
    selection, _ = select(root, options)
    return selection, digest_files(selection.files)


def _header_ok(path: Path, compression: Compression) -> bool:
    """An existing bundle can stand in for a new one: compatible mode also needs its exact header."""
    want = gzip_header(path.name, COMPATIBLE_LEVEL)
    try:
        with path.open("rb") as f:
            head = f.read(len(want))
    except OSError:
        return False
    # Any gzip stream of the same tar serves in fast mode.
    return head == want if compression == "compatible" else head[:2] == b"\x1f\x8b"


def build(
    root: Path,
    outdir: Path,
    options: BundleOptions | None = None,
    selected: tuple[Selection, tuple[str, ...]] | None = None,
) -> Bundle:
    """Make (or reuse) the bundle of ``root`` in ``outdir``; the file appears atomically.

    ``selected``: what :func:`select` returned for these options and ``outdir``, when the build
    has it already (it is not selected, nor guarded, again)."""
    options = options or BundleOptions()
    started = time.perf_counter()
    outdir = Path(outdir).absolute()
    # Bad input fails before anything is created.
    selection, flagged = selected if selected is not None else select(root, options, outdir)
    ensure_directory(outdir)
    files = tuple(selection.arcnames)

    use_cache = options.use_cache and cache_dir() is not None
    key = statcache.fingerprint(selection.files) if use_cache else None
    cached = statcache.lookup(selection.root, key) if key is not None else None
    if cached is not None:
        target = outdir / bundle_name(cached.digest)
        if target.is_file() and _header_ok(target, options.compression):
            log.debug("tree unchanged since the last build: reusing %s", target)
            return Bundle(
                target,
                cached.digest,
                files,
                target.stat().st_size,
                cached.tar_size,
                options.compression,
                reused=True,
                secrets=flagged,
                seconds=time.perf_counter() - started,
            )

    with (
        interruptible(f"writing the code bundle into {outdir}"),
        PendingFile(outdir, prefix="fast-bundle") as pending,
    ):
        result = write_archive(selection.files, pending.file, options.compression)
        target = outdir / bundle_name(result.digest)
        reused = target.is_file() and _header_ok(target, options.compression)
        if reused:
            pending.discard()
            size = target.stat().st_size
        else:
            try:
                pending.publish(target)
            except OSError as e:
                raise BundleError(f"cannot write {target}: {e.strerror}") from None
            size = result.size
    if key is not None:
        statcache.store(selection.root, key, result.digest, result.tar_size)
    return Bundle(
        target,
        result.digest,
        files,
        size,
        result.tar_size,
        options.compression,
        reused=reused,
        secrets=flagged,
        seconds=time.perf_counter() - started,
    )
