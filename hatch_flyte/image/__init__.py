"""Full-build images: the project's wheel and its dependencies baked into an image that runs Flyte tasks.

:func:`build_image` resolves the dependencies on the host into a wheelhouse for the image's Python
and platform, generates a Dockerfile the classic builder accepts, builds it with no network,
tags it with a content-derived tag (plus the project version by default) and optionally pushes.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet

from hatch_flyte.config import ImageConfig
from hatch_flyte.errors import ImageError
from hatch_flyte.image.docker.dockerfile import ImagePlan, oci_labels
from hatch_flyte.image.lock import find_lock, read_pins
from hatch_flyte.image.wheelhouse import (
    Target,
    build_wheelhouse,
    check_wheel_fits,
    parse_extra_packages,
    requires_flyte,
    wheel_requirements,
)
from hatch_flyte.manifest import sha256_file
from hatch_flyte.project import Project

log = logging.getLogger(__name__)
DEFAULT_SOURCE_DATE_EPOCH = 315532800  # 1980-01-01, when SOURCE_DATE_EPOCH is not set


@dataclass(frozen=True)
class ImageResult:
    """An image in the engine (and in the registry when pushed)."""

    ref: str
    id: str
    tags: tuple[str, ...]
    platform: str
    base: str
    #: The base's manifest digest, when known (always with ``oci``).
    base_digest: str | None
    content_tag: str
    digest: str | None = None
    backend: str = "docker"
    dockerfile: str = field(default="", repr=False)
    #: The ``docker load`` archive (the oci backend's output), else None.
    archive: str | None = None
    #: Whether the image was pushed to its registry in this build.
    pushed: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            # By name: the manifest sits in the same directory, and must not depend on where that is.
            "archive": Path(self.archive).name if self.archive else None,
            "pushed": self.pushed,
            "backend": self.backend,
            "base": self.base,
            "base_digest": self.base_digest,
            "digest": self.digest,
            "id": self.id,
            "platform": self.platform,
            "ref": self.ref,
            "tags": list(self.tags),
        }


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


def _source_date_epoch() -> int:
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


def _wheel_metadata(wheel: Path) -> dict[str, str]:
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        message = BytesParser().parsebytes(zf.read(name))
    return {
        k: str(message.get(k) or "")
        for k in ("Name", "Version", "Summary", "License-Expression", "License", "Requires-Python")
    }


def repository(project: Project, config: ImageConfig) -> str:
    name = config.name or project.name or project.directory.name
    name = name.lower().replace("_", "-")
    return f"{config.registry.rstrip('/')}/{name}" if config.registry else name


def image_tags(project: Project, config: ImageConfig, content_tag: str, wheel_version: str) -> list[str]:
    """``tool.flyte.image.tags``, or by default the content tag and the project's version; the first
    one names the image (its ``_F_IMG_ID``)."""
    # A tag allows [A-Za-z0-9_.-] only: a PEP 440 local version (``1.0+g1234``) becomes ``1.0-g1234``.
    version = (wheel_version or project.version or "").replace("+", "-")
    tags = list(config.tags) if config.tags is not None else [content_tag, *([version] if version else [])]
    if not tags:
        raise ImageError(f"{project.pyproject}: `tool.flyte.image.tags` is empty; give at least one tag")
    return tags


def plan_image(
    project: Project,
    wheel: Path,
    config: ImageConfig,
    base_info: Any,
    source_files: Sequence[tuple[str, str]] = (),
) -> ImagePlan:
    """Everything that makes the image: wheelhouse, labels, Dockerfile inputs."""
    pyproject = str(project.pyproject or project.directory)
    target = Target(base_info.python_version, config.platform or base_info.platform)
    check_wheel_fits(wheel, target)
    requirements = wheel_requirements(wheel, target) + parse_extra_packages(config.extra_packages, pyproject)
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
    wheelhouse = build_wheelhouse(requirements, target, constraints, pins)
    meta = _wheel_metadata(wheel)
    labels = oci_labels(
        created_epoch=_source_date_epoch(),
        version=meta["Version"] or project.version,
        title=meta["Name"] or project.name,
        description=meta["Summary"] or None,
        licenses=meta["License-Expression"] or None,
        revision=_git_revision(project.directory),
        base=base_info.ref,
        base_digest=base_info.digest,
    )
    return ImagePlan(
        base=base_info.ref,
        base_id=base_info.id,
        python=base_info.python,
        python_version=base_info.python_version,
        platform=target.platform,
        wheelhouse=wheelhouse,
        project_wheel=wheel,
        project_wheel_sha256=sha256_file(wheel),
        env=config.env,
        workdir=config.workdir,
        labels=labels,
        source_files=tuple(source_files) if config.source else (),
    )


def build_image(
    project: Project,
    wheel: Path,
    config: ImageConfig | None = None,
    *,
    source_files: Sequence[tuple[str, str]] = (),
    push: bool | None = None,
    output_dir: Path | None = None,
) -> ImageResult:
    """Build (and with ``push``, push) the project's full-build image from its wheel.

    The ``oci`` backend writes its layout and archive into ``output_dir`` (default: the wheel's directory).
    """
    config = config or project.config.image
    if config.backend == "oci":
        from hatch_flyte.image.oci import build_oci_image

        return build_oci_image(
            project, wheel, config, output_dir or wheel.parent, source_files=source_files,
            push=push if push is not None else config.push,
        )  # fmt: skip
    from hatch_flyte.image.docker import backend as docker_backend

    client = docker_backend.connect()
    meta = _wheel_metadata(wheel)
    base_ref = config.base or default_base(meta["Requires-Python"])
    base_info = docker_backend.inspect_base(client, base_ref, config.python)
    if config.platform is None:
        base_info = _with_platform(base_info, docker_backend.engine_platform(client))
    plan = plan_image(project, wheel, config, base_info, source_files)
    content_tag = plan.content_tag()
    repo = repository(project, config)
    tags = image_tags(project, config, content_tag, meta["Version"])
    ref = f"{repo}:{tags[0]}"
    log.info("building image %s (%s) from %s", ref, plan.platform, base_ref)
    image_id = docker_backend.build(client, plan, ref, tags[1:])
    digest = None
    do_push = push if push is not None else config.push
    if do_push:
        for tag in tags:
            pushed = docker_backend.push(client, f"{repo}:{tag}")
            digest = digest or pushed
    return ImageResult(
        ref=ref,
        id=image_id,
        tags=tuple(f"{repo}:{t}" for t in tags),
        platform=plan.platform,
        base=base_ref,
        base_digest=base_info.digest,
        content_tag=content_tag,
        digest=digest,
        dockerfile=plan.dockerfile(ref),
        pushed=do_push,
    )


def _with_platform(info: Any, platform: str) -> Any:
    from dataclasses import replace

    return replace(info, platform=platform)
