"""What a deploy ships: the build's ``flyte-manifest.json`` and the files it lists, verified.

Every listed file is checked against its ``sha256`` before anything is sent anywhere, so a deploy
registers exactly what the build wrote or nothing at all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hatch_flyte.config import load_toml
from hatch_flyte.errors import ConfigError, DeployError
from hatch_flyte.manifest import MANIFEST_NAME, SCHEMA_VERSION, sha256_file
from hatch_flyte.project import normalize_name

_BUILD_HINT = "build first (`hatch-flyte build`, or `hatch build -t flyte`)"


@dataclass(frozen=True)
class EnvironmentSpec:
    """One manifest environment: where it is defined (``module:attribute``) and its name."""

    name: str | None
    module: str
    attribute: str

    @property
    def ref(self) -> str:
        return f"{self.module}:{self.attribute}"


@dataclass(frozen=True)
class Artifact:
    """A file the manifest lists, verified: it exists and its bytes have the listed sha256."""

    path: Path
    kind: str
    sha256: str


@dataclass(frozen=True)
class Target:
    """A verified build output: the manifest and the artifacts a deploy can use."""

    manifest_path: Path
    manifest: dict[str, Any]
    environments: tuple[EnvironmentSpec, ...]
    unresolved: tuple[str, ...]
    bundle: Artifact | None
    wheel: Artifact | None
    image: dict[str, Any] | None

    @property
    def image_ref(self) -> str | None:
        ref = (self.image or {}).get("ref")
        return ref if isinstance(ref, str) and ref else None

    @property
    def project(self) -> dict[str, Any]:
        project = self.manifest.get("project")
        return project if isinstance(project, dict) else {}

    def source_root(self) -> tuple[Path, Path] | None:
        """The project the build came from and its bundle root, when the output lies there
        (``PROJECT/dist``, or the project itself): the project's ``pyproject.toml`` names the
        manifest's project. None when the output was moved away from it."""
        name = self.project.get("name")
        root_dir = self.manifest.get("root_dir")
        if not isinstance(name, str) or not isinstance(root_dir, str):
            return None
        for directory in (self.manifest_path.parent, self.manifest_path.parent.parent):
            pyproject = directory / "pyproject.toml"
            if not pyproject.is_file():
                continue
            try:
                core = load_toml(pyproject).get("project")
            except ConfigError:
                continue
            found = core.get("name") if isinstance(core, dict) else None
            if isinstance(found, str) and normalize_name(found) == normalize_name(name):
                directory = directory.resolve()
                root = (directory / root_dir).resolve()
                inside = root == directory or directory in root.parents
                return (directory, root) if inside and root.is_dir() else None
        return None


def find_manifest(path: Path) -> Path:
    """The manifest for ``path``: the file itself, ``path/flyte-manifest.json`` or ``path/dist/...``."""
    if path.is_file():
        return path
    if not path.exists():
        raise DeployError(f"{path} does not exist; pass a build output directory or a project directory")
    for candidate in (path / MANIFEST_NAME, path / "dist" / MANIFEST_NAME):
        if candidate.is_file():
            return candidate
    raise DeployError(
        f"no {MANIFEST_NAME} in {path} or {path / 'dist'}; {_BUILD_HINT}, then deploy its output directory"
    )


def load_target(path: Path) -> Target:
    """Read the manifest for ``path`` and verify every file it lists against its sha256."""
    manifest_path = find_manifest(path)
    try:
        doc = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DeployError(f"cannot read {manifest_path}: {e}; {_BUILD_HINT}") from None
    if not isinstance(doc, dict) or doc.get("schema_version") != SCHEMA_VERSION:
        found = doc.get("schema_version") if isinstance(doc, dict) else None
        raise DeployError(
            f"{manifest_path}: schema_version is {found!r}, this hatch-flyte reads {SCHEMA_VERSION}; "
            f"{_BUILD_HINT} with this hatch-flyte"
        )
    artifacts = _verify(manifest_path, doc)
    by_kind = {a.kind: a for a in artifacts}
    bundle_doc = doc.get("bundle")
    bundle = by_kind.get("bundle")
    if isinstance(bundle_doc, dict) and (bundle is None or bundle.path.name != bundle_doc.get("name")):
        raise DeployError(
            f"{manifest_path}: bundle {bundle_doc.get('name')!r} is not among its artifacts "
            f"(key 'artifacts'); {_BUILD_HINT}"
        )
    envs = []
    for i, env in enumerate(doc.get("environments") or []):
        try:
            envs.append(EnvironmentSpec(env.get("name"), str(env["module"]), str(env["attribute"])))
        except (AttributeError, KeyError, TypeError):
            raise DeployError(
                f"{manifest_path}: environments[{i}] has no module/attribute; {_BUILD_HINT}"
            ) from None
    unresolved = tuple(
        f"{u.get('file')}:{u.get('line')}: {u.get('reason')}"
        for u in doc.get("unresolved") or []
        if isinstance(u, dict)
    )
    image = doc.get("image")
    return Target(
        manifest_path=manifest_path,
        manifest=doc,
        environments=tuple(envs),
        unresolved=unresolved,
        bundle=bundle,
        wheel=by_kind.get("wheel"),
        image=image if isinstance(image, dict) else None,
    )


def _verify(manifest_path: Path, doc: dict[str, Any]) -> list[Artifact]:
    directory = manifest_path.parent
    out = []
    entries = doc.get("artifacts")
    if not isinstance(entries, list):
        raise DeployError(f"{manifest_path}: key 'artifacts' is missing or not a list; {_BUILD_HINT}")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ("name", "sha256")):
            raise DeployError(f"{manifest_path}: artifacts[{i}] has no name/sha256; {_BUILD_HINT}")
        name = entry["name"]
        path = directory / name
        if Path(name).name != name:
            raise DeployError(f"{manifest_path}: artifacts[{i}] name {name!r} is not a plain file name")
        if not path.is_file():
            raise DeployError(
                f"{path} is listed in {manifest_path} but missing; nothing was sent. "
                f"Deploy the complete build output, or {_BUILD_HINT} again"
            )
        actual = sha256_file(path)
        if actual != entry["sha256"]:
            raise DeployError(
                f"{path} does not match {manifest_path} (sha256 {actual}, the manifest says "
                f"{entry['sha256']}): it changed after the build; nothing was sent. "
                f"Rebuild ({_BUILD_HINT}) instead of editing build outputs"
            )
        out.append(Artifact(path, str(entry.get("kind", "")), actual))
    return out
