"""Ignore rules with exactly the semantics of flyte 2.12's default bundle ignore group.

Flyte decides what to leave out of a ``copy_style="all"`` bundle with three rules, any of which
excludes a path:

* the standard list, matched with :func:`fnmatch.fnmatch` against the root-relative path (where
  ``*`` also crosses ``/``, so a bare ``dist`` only matches at the top level);
* git: ``git ls-files -io`` with every ``.gitignore``/``.flyteignore`` as an exclude file, which
  removes only *untracked* ignored files, and nothing outside a git work tree;
* ``.flyteignore`` files, each scoped to its own directory and applied to tracked files too, with
  docker-style (case-insensitive) pattern matching after a gitignore-like expansion.

hatch-flyte adds its own ``ignores`` (gitignore syntax, via pathspec) on top. The behaviour here,
quirks included, is what makes our file list equal to flyte's; the compatibility tests check it
against the real flyte.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from hatch_flyte.bundle.listing import Listing, walk

if TYPE_CHECKING:
    import pathspec

log = logging.getLogger(__name__)

#: flyte's StandardIgnore patterns, in its order.
STANDARD_PATTERNS: tuple[str, ...] = (
    ".git", "*.pyc", "**/*.pyc", "__pycache__", "**/__pycache__", ".cache", ".cache/*",
    ".ruff_cache", "**/.ruff_cache", ".mypy_cache", "**/.mypy_cache", ".pytest_cache",
    "**/.pytest_cache", ".venv", "**/.venv", ".idea", "**/.idea", "venv", "env", "*.log", ".env",
    "*.egg-info", "**/*.egg-info", "*.egg", "dist", "build", "*.whl",
)  # fmt: skip

#: Directory names flyte never descends into while looking for ignore files.
_IGNORE_FILE_WALK_PRUNE = frozenset(p for p in STANDARD_PATTERNS if "/" not in p and "*" not in p)
IGNORE_FILE_NAMES = (".gitignore", ".flyteignore")


class StandardMatcher:
    """fnmatch over the whole relative path, all patterns folded into one regular expression."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns = tuple(patterns)
        # fnmatch.fnmatch normalises case with os.path.normcase, a no-op on POSIX.
        joined = "|".join(f"(?:{fnmatch.translate(os.path.normcase(p))})" for p in self.patterns)
        self._regex = re.compile(joined) if joined else None

    def matches(self, rel: str) -> bool:
        return self._regex is not None and self._regex.match(os.path.normcase(rel)) is not None


# --- .flyteignore: docker-style patterns ---------------------------------------------------------


def expand_flyteignore_line(line: str) -> list[str]:
    """Rewrite one gitignore-style line into the anchored docker-style patterns flyte matches.

    A bare pattern matches at any depth, a leading ``/`` anchors, a trailing ``/`` selects a
    directory's contents and ``!`` negates.
    """
    sign = "!" if line.startswith("!") else ""
    body = line[1:] if sign else line
    if body.startswith("/"):
        body = body[1:]
        return [sign + body, sign + body + "**"] if body.endswith("/") else [sign + body]
    is_dir = body.endswith("/")
    if "/" in body.rstrip("/"):
        return [sign + body, sign + body + "**"] if is_dir else [sign + body]
    if is_dir:
        return [sign + body + "**", sign + "**/" + body + "**"]
    return [sign + body, sign + "**/" + body]


def _split(path: str) -> list[str]:
    return [part for part in path.split("/") if part and part != "."]


def _docker_regex(pattern: str) -> re.Pattern[str]:
    """Docker's ignore glob: ``**`` crosses directories, ``*`` and ``?`` do not, classes as fnmatch."""
    out = ["^"]
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            if i < n and pattern[i] == "*":
                i += 1
                if i < n and pattern[i] == "/":
                    i += 1  # "**/" behaves like "**"
                out.append(".*" if i >= n else "(.*/)?")
            else:
                out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = i
            if end < n and pattern[end] == "!":
                end += 1
            if end < n and pattern[end] == "]":
                end += 1
            while end < n and pattern[end] != "]":
                end += 1
            if end >= n:
                out.append("\\[")
            else:
                body = pattern[i:end].replace("\\", "\\\\")
                i = end + 1
                if body.startswith("!"):
                    body = "^" + body[1:]
                elif body.startswith("^"):
                    body = "\\" + body
                out.append(f"[{body}]")
        else:
            out.append(re.escape(c))
    out.append("$")
    return re.compile("".join(out))


@dataclass(frozen=True)
class _DockerPattern:
    parts: tuple[str, ...]
    negated: bool
    regex: re.Pattern[str]

    @classmethod
    def parse(cls, raw: str) -> _DockerPattern:
        negated = raw.startswith("!")
        text = (raw[1:] if negated else raw).strip()
        parts: list[str] = []
        for part in _split(text):
            if part == "..":
                if parts:
                    parts.pop()
            else:
                parts.append(part)
        # Matching is case-insensitive: both sides are lower-cased.
        return cls(tuple(parts), negated, _docker_regex("/".join(parts).lower()))

    def match(self, path: str) -> bool:
        return self.regex.match(path.lower()) is not None


class DockerPatternMatcher:
    """A list of docker-style patterns where the last matching one decides (``!`` re-includes).

    A pattern also matches a path whose leading directories match it, so ``data`` excludes
    ``data/x.csv``.
    """

    def __init__(self, patterns: Iterable[str]) -> None:
        parsed = [_DockerPattern.parse(p) for p in patterns]
        self.patterns = [p for p in parsed if p.parts]
        # flyte's matcher (from docker-py) always keeps .dockerignore itself.
        self.patterns.append(_DockerPattern.parse("!.dockerignore"))

    def matches(self, rel: str) -> bool:
        parent = os.path.dirname(rel)
        parent_parts = _split(parent)
        matched = False
        for pattern in self.patterns:
            hit = pattern.match(rel)
            if not hit and parent and len(pattern.parts) <= len(parent_parts):
                hit = pattern.match("/".join(parent_parts[: len(pattern.parts)]))
            if hit:
                matched = not pattern.negated
        return matched


@dataclass(frozen=True)
class FlyteIgnoreFile:
    """One ``.flyteignore``: its directory and its rules."""

    directory: Path
    matcher: DockerPatternMatcher

    @classmethod
    def read(cls, path: Path) -> FlyteIgnoreFile | None:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            log.warning("cannot read %s, its rules are not applied: %s", path, e)
            return None
        patterns: list[str] = []
        for line in lines:
            stripped = line.strip()
            if stripped and not stripped.startswith("#"):
                patterns.extend(expand_flyteignore_line(stripped))
        return cls(path.parent, DockerPatternMatcher(patterns)) if patterns else None

    def matches(self, path: str) -> bool:
        # flyte also asks about the file's own directory, as ".": `?`, `*` or `.*` leave it out whole.
        rel = "." if path == str(self.directory) else _relative(path, self.directory)
        return rel is not None and self.matcher.matches(rel)


def _relative(path: str, directory: Path) -> str | None:
    """POSIX path of ``path`` below ``directory``, lexically (walk paths are plain joins)."""
    prefix = str(directory).rstrip("/") + "/"
    return path[len(prefix) :] if path.startswith(prefix) else None


# --- git ---------------------------------------------------------------------------------------


def git_toplevel(directory: Path) -> Path | None:
    """The work tree root containing ``directory``, or None (no git, or not in a repository)."""
    git = shutil.which("git")
    if git is None:
        return None
    try:
        out = subprocess.run(
            [git, "rev-parse", "--show-toplevel"], cwd=directory, capture_output=True, check=False
        )
    except OSError:
        return None
    if out.returncode != 0:
        return None
    return Path(out.stdout.decode("utf-8").strip())


def find_ignore_files(root: Path, git_root: Path | None, listing: Listing | None = None) -> list[Path]:
    """``.gitignore``/``.flyteignore`` files in the order flyte passes them to git.

    The repository root's files come first (when it is above ``root``), then ``root``'s, then the
    nested ones in directory-walk order; directories on flyte's standard list are not entered.
    """
    found: list[Path] = []
    seen: set[Path] = set()

    def add(path: Path) -> None:
        if path not in seen:
            found.append(path)
            seen.add(path)

    for name in IGNORE_FILE_NAMES:
        if git_root is not None and git_root != root and (git_root / name).exists():
            add(git_root / name)
        if (root / name).exists():
            add(root / name)
    for dirpath, dirnames, filenames in walk(str(root), listing or Listing()):
        dirnames[:] = [d for d in dirnames if d not in _IGNORE_FILE_WALK_PRUNE]
        for name in filenames:
            if name in IGNORE_FILE_NAMES:
                # Kept even when it is a dangling link, as flyte keeps it: git then refuses the
                # exclude file and no .gitignore rule applies, in flyte and here alike.
                add(Path(dirpath) / name)
    return found


class GitIgnored:
    """Untracked files (and directories) git ignores under ``root``, asked of git like flyte does."""

    def __init__(self, root: Path, exclude_files: Sequence[Path]) -> None:
        self.root = root
        self.exclude_files = tuple(exclude_files)

    def _ls_files(self, *extra: str) -> frozenset[str]:
        git = shutil.which("git")
        if git is None or not self.exclude_files:
            # git refuses `ls-files -i` without an exclude source, so flyte gets nothing either.
            return frozenset()
        args = [
            git,
            "ls-files",
            "-io",
            *extra,
            *(f"--exclude-from={p.absolute()}" for p in self.exclude_files),
        ]
        try:
            out = subprocess.run(args, cwd=self.root, capture_output=True, check=False)
        except OSError as e:
            log.info("cannot run git (%s); .gitignore rules are not applied", e)
            return frozenset()
        if out.returncode != 0:
            log.debug(
                "git ls-files failed, .gitignore rules not applied: %s", out.stderr.decode(errors="replace")
            )
            return frozenset()
        # Parsed as flyte parses it: paths git quotes (non-ASCII, quotes) never match, as in flyte.
        return frozenset(out.stdout.decode("utf-8").split("\n")[:-1])

    @cached_property
    def files(self) -> frozenset[str]:
        return self._ls_files()

    @cached_property
    def directories(self) -> frozenset[str]:
        return self._ls_files("--directory")

    def matches(self, path: str, is_dir: bool) -> bool:
        if not self.files:
            return False
        rel = _relative(path, self.root)
        if rel is None:
            return False
        if rel in self.files:
            return True
        return is_dir and bool(self.directories) and rel + "/" in self.directories


# --- the whole rule set --------------------------------------------------------------------------


@dataclass
class IgnoreRules:
    """Everything that decides whether a path under ``root`` stays out of the bundle."""

    root: Path
    standard: StandardMatcher | None
    git: GitIgnored
    flyteignores: list[FlyteIgnoreFile]
    extra: pathspec.PathSpec | None = None  # type: ignore[type-arg,unused-ignore]
    #: The directories read while looking for ignore files, for the selection walk to reuse.
    listing: Listing = field(default_factory=Listing)

    @classmethod
    def for_root(
        cls, root: Path, extra_patterns: Sequence[str] = (), keep_default_ignores: bool = True
    ) -> IgnoreRules:
        """Load the rules for ``root`` (an absolute, resolved directory)."""
        git_root = git_toplevel(root)
        listing = Listing()
        files = find_ignore_files(root, git_root, listing)
        flyteignores = [f for f in (FlyteIgnoreFile.read(p) for p in files if p.name == ".flyteignore") if f]
        extra = None
        if extra_patterns:
            import pathspec  # only for `tool.flyte.bundle.ignores`: most projects set none

            extra = pathspec.GitIgnoreSpec.from_lines(extra_patterns)
        return cls(
            root=root,
            standard=StandardMatcher(STANDARD_PATTERNS) if keep_default_ignores else None,
            git=GitIgnored(root, files),
            flyteignores=flyteignores,
            extra=extra,
            listing=listing,
        )

    def is_ignored(self, path: str, is_dir: bool) -> bool:
        """``path`` is an absolute path below the root (lexically, symlinks not resolved)."""
        rel = _relative(path, self.root)
        if rel is None:
            return False
        if self.standard is not None and self.standard.matches(rel):
            return True
        if self.git.matches(path, is_dir):
            return True
        if any(f.matches(path) for f in self.flyteignores):
            return True
        if self.extra is not None:
            return bool(self.extra.match_file(rel + "/" if is_dir else rel))
        return False
