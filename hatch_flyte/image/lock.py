"""The project's lock file, as pins for the image's wheelhouse.

A project with ``pylock.toml`` (PEP 751) or ``uv.lock`` (its own, or its uv workspace's) gets the
versions it locked in its image:
every locked package that comes from an index and applies on the image's Python and platform
becomes a ``name==version`` constraint for ``pip download``. Packages from git, a path or a URL,
and the project itself, are not pinned (pip resolves them as before); a name locked at two versions
that both apply (which a lock for one target should not have) is left unpinned, and said so.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.markers import InvalidMarker, Marker, UndefinedComparison, UndefinedEnvironmentName
from packaging.utils import canonicalize_name

from hatch_flyte.errors import ImageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

log = logging.getLogger(__name__)

#: Looked for in this order in the project's directory.
LOCK_FILES = ("pylock.toml", "uv.lock")


@dataclass(frozen=True)
class LockPins:
    """What a lock file pins for one target."""

    source: Path
    #: ``(canonical name, version)``, sorted.
    pins: tuple[tuple[str, str], ...]

    def lines(self) -> list[str]:
        return [f"{name}=={version}" for name, version in self.pins]


def find_lock(directory: Path, project_name: str | None = None) -> Path | None:
    """The project's lock file, if it has one.

    Beside its pyproject.toml first; else, for a member of a uv workspace, the ``uv.lock`` of an
    enclosing directory (up to the repository's root) that locks the project by name.
    """
    for name in LOCK_FILES:
        path = directory / name
        if path.is_file():
            return path
    if project_name is None:
        return None
    for parent in directory.resolve().parents:
        candidate = parent / "uv.lock"
        if candidate.is_file() and _locks_project(candidate, project_name):
            return candidate
        if (parent / ".git").exists():
            break
    return None


def _locks_project(lock: Path, project_name: str) -> bool:
    try:
        doc = tomllib.loads(lock.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    wanted = canonicalize_name(project_name)
    packages = doc.get("package") or []
    return any(
        isinstance(p, Mapping) and isinstance(p.get("name"), str) and canonicalize_name(p["name"]) == wanted
        for p in packages
    )


def read_pins(lock: Path, environment: Mapping[str, str], project_name: str | None) -> LockPins:
    """The pins of ``lock`` that apply in ``environment`` (PEP 508 marker variables)."""
    try:
        doc = tomllib.loads(lock.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ImageError(
            f"{lock}: cannot read the lock file ({e}); fix it (e.g. lock again), or set "
            "`tool.flyte.image.lock = false` to resolve the image's dependencies without it"
        ) from None
    read = _uv_entries if lock.name == "uv.lock" else _pylock_entries
    entries = read(doc, environment)
    own = canonicalize_name(project_name) if project_name else None
    versions: dict[str, set[str]] = {}
    for name, version in entries:
        canonical = canonicalize_name(name)
        if canonical != own:
            versions.setdefault(canonical, set()).add(version)
    ambiguous = sorted(name for name, found in versions.items() if len(found) > 1)
    if ambiguous:
        log.warning("%s locks several versions of %s for this image; left unpinned", lock.name,
                    ", ".join(ambiguous))  # fmt: skip
    pins = tuple(sorted((name, next(iter(found))) for name, found in versions.items() if len(found) == 1))
    return LockPins(lock, pins)


def _uv_entries(doc: Mapping[str, Any], environment: Mapping[str, str]) -> Iterable[tuple[str, str]]:
    for package in doc.get("package") or []:
        if not isinstance(package, Mapping):
            continue
        name, version, source = package.get("name"), package.get("version"), package.get("source")
        if not (isinstance(name, str) and isinstance(version, str)):
            continue
        if not (isinstance(source, Mapping) and "registry" in source):
            continue  # git, path, directory, editable, virtual, url: not an index pin
        forks = package.get("resolution-markers")
        if isinstance(forks, list) and forks and not any(_applies(m, environment) for m in forks):
            continue
        yield name, version


def _pylock_entries(doc: Mapping[str, Any], environment: Mapping[str, str]) -> Iterable[tuple[str, str]]:
    for package in doc.get("packages") or []:
        if not isinstance(package, Mapping):
            continue
        name, version = package.get("name"), package.get("version")
        if not (isinstance(name, str) and isinstance(version, str)):
            continue
        if any(key in package for key in ("vcs", "directory", "archive")):
            continue
        marker = package.get("marker")
        if isinstance(marker, str) and not _applies(marker, environment):
            continue
        yield name, version


def _applies(marker: object, environment: Mapping[str, str]) -> bool:
    """Whether a marker holds in ``environment``; one that cannot be evaluated (extras, dependency
    groups) does not pin."""
    if not isinstance(marker, str):
        return False
    try:
        return Marker(marker).evaluate(dict(environment))
    except (InvalidMarker, UndefinedComparison, UndefinedEnvironmentName):
        return False
