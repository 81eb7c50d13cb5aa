"""``flyte-manifest.json``: what a build found and wrote, in a deterministic document.

Schema version 1 (documented in the README). Keys are sorted, there is no wall-clock time, and
paths are POSIX and relative, so two builds of the same inputs give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hatch_flyte.__about__ import __version__
from hatch_flyte.atomic import write_bytes_atomic
from hatch_flyte.project import Project

if TYPE_CHECKING:
    from hatch_flyte.bundle import Bundle
    from hatch_flyte.discovery import Analysis

SCHEMA_VERSION = 1
MANIFEST_NAME = "flyte-manifest.json"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    return file_digest(path, "sha256")


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file with a :mod:`hashlib` algorithm, read in chunks."""
    h = hashlib.new(algorithm)
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def artifact_entry(path: Path, kind: str) -> dict[str, Any]:
    """One ``artifacts`` entry: file name, kind, size and sha256."""
    return {"name": path.name, "kind": kind, "size": path.stat().st_size, "sha256": sha256_file(path)}


def bundle_entry(bundle: Bundle) -> dict[str, Any]:
    return {
        "name": bundle.name,
        "digest": bundle.digest,
        "files": len(bundle.files),
        "size": bundle.size,
        "compression": bundle.compression,
    }


def make_manifest(
    project: Project,
    analysis: Analysis | None,
    *,
    bundle: Bundle | None = None,
    wheel: Path | None = None,
    image: Mapping[str, Any] | None = None,
    artifacts: Iterable[Mapping[str, Any]] = (),
    name: str | None = None,
    version: str | None = None,
) -> dict[str, Any]:
    """The manifest document for what was analysed (None: nothing, as for a plain directory) and
    built. ``name``/``version`` override the static ``[project]`` values (a build backend knows a
    dynamic version).
    """
    try:
        root_dir = project.root_dir.relative_to(project.directory).as_posix()
    except ValueError:
        root_dir = project.root_dir.as_posix()
    environments: list[Any] = []
    unresolved: list[Any] = []
    dependencies: list[Any] = []
    method = None
    discovery = analysis.discovery if analysis is not None else None
    if discovery is not None:
        environments = sorted(
            (e.to_json() for e in discovery.environments),
            key=lambda e: (e["name"] or "", e["module"], e["attribute"]),
        )
        unresolved = [u.to_json() for u in discovery.unresolved]
        dependencies = [d.to_json() for d in discovery.dependencies]
        method = discovery.method
    return {
        "schema_version": SCHEMA_VERSION,
        "hatch_flyte_version": __version__,
        "project": {"name": name or project.name, "version": version or project.version},
        "package": analysis.package if analysis is not None else None,
        "root_dir": root_dir or ".",
        "discovery": method,
        "environments": environments,
        "dependency_environments": dependencies,
        "unresolved": unresolved,
        "bundle": bundle_entry(bundle) if bundle is not None else None,
        "wheel": {"name": wheel.name, "sha256": sha256_file(wheel)} if wheel is not None else None,
        "image": dict(image) if image is not None else None,
        "artifacts": sorted((dict(a) for a in artifacts), key=lambda a: a["name"]),
    }


def dumps(manifest: Mapping[str, Any]) -> bytes:
    """Canonical bytes: sorted keys, two-space indent, ASCII, trailing newline."""
    return (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=True) + "\n").encode("ascii")


def write_manifest(path: Path, manifest: Mapping[str, Any]) -> Path:
    """Write the manifest atomically; return its path."""
    write_bytes_atomic(path, dumps(manifest))
    return path
