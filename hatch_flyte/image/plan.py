"""The image plan: everything that makes a full-build image, decided once for every backend.

:func:`plan_image` resolves the dependencies into a wheelhouse for the image's Python and platform,
reads the wheel's metadata into OCI labels and returns an :class:`ImagePlan`; its content tag names
the image. A backend (:mod:`hatch_flyte.image.backend`) only finds the base (:class:`BaseInfo`)
and turns a plan into an image.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform as host_platform
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from packaging.specifiers import InvalidSpecifier, SpecifierSet

from hatch_flyte.__about__ import __version__
from hatch_flyte.config import ImageConfig
from hatch_flyte.errors import ImageError
from hatch_flyte.image.lock import find_lock, read_pins
from hatch_flyte.image.venv import VENV
from hatch_flyte.image.wheelhouse import (
    Target,
    Wheelhouse,
    build_wheelhouse,
    check_wheel_fits,
    local_dependency_wheels,
    parse_extra_packages,
    requirements_on,
    requires_flyte,
)
from hatch_flyte.manifest import sha256_file
from hatch_flyte.project import Project
from hatch_flyte.wheel import read_metadata

log = logging.getLogger("hatch_flyte.image")
DEFAULT_SOURCE_DATE_EPOCH = 315532800  # 1980-01-01, when SOURCE_DATE_EPOCH is not set
#: Where ``source = true`` puts the bundle's files in the image.
SOURCE_DIR = "/opt/hatch-flyte/source"
#: flyte's own image builder sets this to the image's reference (flyte 2.12 writes it and reads it
#: nowhere): it names the image for whoever inspects a running container.
IMAGE_ID_ENV = "_F_IMG_ID"
#: The workdir's mode in both backends: writable by every user id (pods may run as any user, and
#: fast registration extracts the bundle into it), sticky like /tmp (nobody removes another user's
#: files).
WORKDIR_MODE = 0o1777
#: Bumped when the backends make another image of the same plan (the content tag changes with it).
PLAN_FORMAT = 1
_MACHINE_TO_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def linux_platform(machine: str | None = None) -> str:
    """``linux/<arch>`` for a machine name (``x86_64``, ``aarch64``, or Go's ``amd64``, ``arm64``);
    default: this host's."""
    machine = machine or host_platform.machine()
    return f"linux/{_MACHINE_TO_ARCH.get(machine, machine.lower())}"


@dataclass(frozen=True)
class BaseInfo:
    """What a plan needs to know of the base image, whichever backend found it."""

    ref: str
    id: str
    #: The manifest digest in its own repository; None when the engine knows none (an image that
    #: was built or imported locally, never pulled or pushed under its name).
    digest: str | None
    #: The interpreter that creates the venv.
    python: str
    python_version: tuple[int, int]
    platform: str
    #: ``tool.flyte.image.dockerfile`` when the base was built from it (then ``ref`` is a local tag).
    built_from: str | None = None


@dataclass(frozen=True)
class ImagePlan:
    """Everything that makes an image, before it has a tag."""

    base: str
    base_id: str
    python: str
    python_version: tuple[int, int]
    platform: str
    wheelhouse: Wheelhouse
    #: None in a dependency-only image (``include-project = false``).
    project_wheel: Path | None
    project_wheel_sha256: str | None
    env: tuple[tuple[str, str], ...]
    workdir: str
    labels: Mapping[str, str]
    source_files: tuple[tuple[str, str], ...] = ()  # (path on disk, name under SOURCE_DIR)
    #: The base's manifest digest, when known (for the manifest; the labels carry it already).
    base_digest: str | None = None

    @property
    def contents(self) -> str:
        """``"full"`` (dependencies and the project) or ``"dependencies"`` (run with a bundle)."""
        return "full" if self.project_wheel is not None else "dependencies"

    def content_tag(self) -> str:
        """A tag derived from everything that makes the image (not from the base's name alone), the
        same for both backends."""
        recipe = {
            "format": PLAN_FORMAT,
            "hatch-flyte": __version__,
            "base": [self.base, self.base_id, self.python, list(self.python_version), self.platform],
            "venv": VENV,
            "wheelhouse": self.wheelhouse.digest,
            "wheel": self.project_wheel_sha256,
            "env": [list(item) for item in self.env],
            "workdir": self.workdir,
            "labels": dict(self.labels),
            "source": [[name, path] for path, name in self.source_files],
        }
        h = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode())
        for path, _ in self.source_files:
            h.update(b"\0")
            h.update(Path(path).read_bytes())
        return "h" + h.hexdigest()[:20]


def oci_labels(
    *,
    created_epoch: int,
    version: str | None,
    title: str | None,
    description: str | None,
    licenses: str | None,
    revision: str | None,
    base: str | None,
    base_digest: str | None,
) -> dict[str, str]:
    """``org.opencontainers.image.*`` labels; ``created`` comes from ``SOURCE_DATE_EPOCH``.

    ``base.digest`` is the base's manifest digest, which resolves ``base.name@digest``; it is left
    out rather than filled with something else (an image id is not a manifest digest).
    """
    created = datetime.fromtimestamp(created_epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    labels = {"org.opencontainers.image.created": created}
    if base:
        labels["org.opencontainers.image.base.name"] = base
    optional = {"version": version, "title": title, "description": description, "licenses": licenses,
                "revision": revision, "base.digest": base_digest}  # fmt: skip
    for key, value in optional.items():
        if value:
            labels[f"org.opencontainers.image.{key}"] = value
    return labels


#: CPython series with official ``python:3.X-slim-bookworm`` images.
_SLIM_SERIES = tuple((3, minor) for minor in range(9, 15))


def default_base(requires_python: str | None = None, python: tuple[int, int] | None = None) -> str:
    """``python:3.X-slim-bookworm`` for the building Python (``python``, default: this one), or, when
    the project's ``Requires-Python`` excludes it, for the oldest series that it allows."""
    series = python or (sys.version_info[0], sys.version_info[1])
    try:
        allowed = SpecifierSet(requires_python or "")
    except InvalidSpecifier:
        allowed = SpecifierSet()

    def fits(candidate: tuple[int, int]) -> bool:
        # The image brings the series' newest patch release.
        return allowed.contains(f"{candidate[0]}.{candidate[1]}.99", prereleases=True)

    if not fits(series):
        series = next((c for c in _SLIM_SERIES if fits(c)), series)
    return f"python:{series[0]}.{series[1]}-slim-bookworm"


def source_date_epoch() -> int:
    try:
        return int(os.environ.get("SOURCE_DATE_EPOCH", DEFAULT_SOURCE_DATE_EPOCH))
    except ValueError:
        return DEFAULT_SOURCE_DATE_EPOCH


def _git_revision(directory: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, check=False
        )
    except OSError:
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@dataclass(frozen=True)
class ProjectMetadata:
    """What an image needs of the project's core metadata, from its wheel or its pyproject.toml."""

    name: str
    version: str
    summary: str = ""
    license: str = ""
    requires_python: str = ""
    requires_dist: tuple[str, ...] = ()

    @classmethod
    def from_wheel(cls, wheel: Path) -> ProjectMetadata:
        message = read_metadata(wheel)
        return cls(
            name=str(message.get("Name") or ""),
            version=str(message.get("Version") or ""),
            summary=str(message.get("Summary") or ""),
            license=str(message.get("License-Expression") or message.get("License") or ""),
            requires_python=str(message.get("Requires-Python") or ""),
            requires_dist=tuple(str(r) for r in message.get_all("Requires-Dist") or ()),
        )

    @classmethod
    def from_pyproject(cls, project: Project) -> ProjectMetadata | None:
        """The static ``[project]`` table; None when the dependencies are dynamic (only a build
        backend knows them then)."""
        core = project.data.get("project")
        if not isinstance(core, Mapping) or "dependencies" in (core.get("dynamic") or ()):
            return None
        deps = core.get("dependencies") or []
        if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
            return None
        requires_python = core.get("requires-python")
        return cls(
            name=project.name or project.directory.name,
            version=project.version or "",
            requires_python=requires_python if isinstance(requires_python, str) else "",
            requires_dist=tuple(deps),
        )


def image_metadata(project: Project, wheel: Path | None, config: ImageConfig) -> ProjectMetadata:
    """The metadata the image is planned from: the wheel's, or for a dependency-only image without a
    wheel, the static ``[project]`` table's."""
    if wheel is not None:
        return ProjectMetadata.from_wheel(wheel)
    metadata = ProjectMetadata.from_pyproject(project) if not config.include_project else None
    if metadata is None:
        raise ImageError(
            f"{project.pyproject or project.directory}: the image needs the project's wheel "
            "(its dependencies are dynamic, or the image includes the project); build it first"
        )
    return metadata


def repository(project: Project, config: ImageConfig) -> str:
    name = config.name or project.name or project.directory.name
    name = name.lower().replace("_", "-")
    return f"{config.registry.rstrip('/')}/{name}" if config.registry else name


def image_tags(project: Project, config: ImageConfig, content_tag: str, wheel_version: str) -> list[str]:
    """``tool.flyte.image.tags``, or by default the content tag and the project's version (not for a
    dependency-only image: it holds no version of the project); the first one names the image (its
    ``_F_IMG_ID``, which flyte writes and never reads)."""
    # A tag allows [A-Za-z0-9_.-] only: a PEP 440 local version (``1.0+g1234``) becomes ``1.0-g1234``.
    version = (wheel_version or project.version or "").replace("+", "-") if config.include_project else ""
    tags = list(config.tags) if config.tags is not None else [content_tag, *([version] if version else [])]
    if not tags:
        raise ImageError(f"{project.pyproject}: `tool.flyte.image.tags` is empty; give at least one tag")
    return tags


def plan_image(
    project: Project,
    wheel: Path | None,
    config: ImageConfig,
    base_info: BaseInfo,
    source_files: Sequence[tuple[str, str]] = (),
    *,
    metadata: ProjectMetadata | None = None,
) -> ImagePlan:
    """Everything that makes the image, for any backend: wheelhouse, labels, environment, source.

    With ``include-project = false`` the project stays out (``wheel`` may be None): only its
    dependencies, from ``metadata`` (default: the wheel's, else the static ``[project]`` table).
    """
    pyproject = str(project.pyproject or project.directory)
    target = Target(base_info.python_version, config.platform or base_info.platform)
    meta = metadata or image_metadata(project, wheel, config)
    full = config.include_project
    if full:
        if wheel is None:
            raise ImageError(f"{pyproject}: an image that includes the project needs its wheel")
        check_wheel_fits(wheel, target)
    requirements = requirements_on(meta.requires_dist, target) + parse_extra_packages(
        config.extra_packages, pyproject
    )
    if not requires_flyte(requirements):
        raise ImageError(
            f"{pyproject}: the project does not depend on flyte, so the image could not run Flyte tasks; add "
            "`flyte` to [project].dependencies or to `tool.flyte.image.extra-packages`"
        )
    constraints = project.resolve_path(config.constraints) if config.constraints else None
    if constraints is not None and not constraints.is_file():
        raise ImageError(
            f"{pyproject}: `tool.flyte.image.constraints` = {config.constraints!r} does not exist"
        )
    pins: list[str] = []
    lock = find_lock(project.directory, project.name) if constraints is None and config.lock else None
    if lock is not None:
        locked = read_pins(lock, target.marker_environment(), project.name)
        pins = locked.lines()
        log.info("image dependencies pinned by %s (%d packages)", lock.name, len(pins))
    with tempfile.TemporaryDirectory(prefix="hatch-flyte-local-") as scratch:
        local = local_dependency_wheels(project, Path(scratch))
        wheelhouse = build_wheelhouse(requirements, target, constraints, pins, local)
    # A dependency-only image is labelled with what does not change with the code: no version, no
    # commit (they would change its tag with every release or commit of unchanged dependencies).
    labels = oci_labels(
        created_epoch=source_date_epoch(),
        version=(meta.version or project.version) if full else None,
        title=meta.name or project.name,
        description=(meta.summary or None) if full else None,
        licenses=(meta.license or None) if full else None,
        revision=_git_revision(project.directory) if full else None,
        # A base built from a Dockerfile has a name in this engine only.
        base=None if base_info.built_from else base_info.ref,
        base_digest=base_info.digest,
    )
    return ImagePlan(
        base=base_info.ref,
        base_id=base_info.id,
        python=base_info.python,
        python_version=base_info.python_version,
        platform=target.platform,
        wheelhouse=wheelhouse,
        project_wheel=wheel if full else None,
        project_wheel_sha256=sha256_file(wheel) if full and wheel is not None else None,
        env=config.env,
        workdir=config.workdir,
        labels=labels,
        source_files=tuple(source_files) if config.source else (),
        base_digest=base_info.digest,
    )
