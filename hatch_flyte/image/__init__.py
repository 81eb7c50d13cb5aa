"""Full-build images: the project's wheel and its dependencies baked into an image that runs Flyte tasks.

:func:`build_image` names the base, has the backend (:mod:`hatch_flyte.image.backend`: ``docker``
or ``oci``) find it, plans the image once (:mod:`hatch_flyte.image.plan`: the wheelhouse for the
image's Python and platform, labels, the content-derived tag, plus the project version by default)
and has the backend build and optionally push it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hatch_flyte.atomic import interruptible
from hatch_flyte.config import ImageConfig
from hatch_flyte.errors import ImageError
from hatch_flyte.extras import require_image_backend
from hatch_flyte.image.backend import ImageBackend
from hatch_flyte.image.modules import EnvironmentSource, check_modules_in_wheel
from hatch_flyte.image.plan import (
    BaseInfo,
    ImagePlan,
    ProjectMetadata,
    default_base,
    image_metadata,
    image_tags,
    plan_image,
    repository,
)
from hatch_flyte.project import Project

__all__ = [
    "BaseInfo",
    "ImagePlan",
    "ImageResult",
    "ProjectMetadata",
    "build_image",
    "default_base",
    "image_tags",
    "plan_for",
    "plan_image",
    "repository",
]

log = logging.getLogger(__name__)


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
    #: The ``docker load`` archive (the oci backend's output), else None.
    archive: str | None = None
    #: Whether the image is in its registry under its tags after this build (pushed now, or found
    #: there already with the same digest).
    pushed: bool = False
    #: ``"full"`` (the project baked in) or ``"dependencies"`` (``include-project = false``: the
    #: project's code comes with the bundle).
    contents: str = "full"
    #: ``tool.flyte.image.dockerfile`` (as written) when the base was built from it.
    base_dockerfile: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            # By name: the manifest sits in the same directory, and must not depend on where that is.
            "archive": Path(self.archive).name if self.archive else None,
            "pushed": self.pushed,
            "backend": self.backend,
            "base": self.base,
            "base_digest": self.base_digest,
            "base_dockerfile": self.base_dockerfile,
            "contents": self.contents,
            "digest": self.digest,
            "id": self.id,
            "platform": self.platform,
            "ref": self.ref,
            "tags": list(self.tags),
        }


def build_image(
    project: Project,
    wheel: Path | None,
    config: ImageConfig | None = None,
    *,
    metadata: ProjectMetadata | None = None,
    source_files: Sequence[tuple[str, str]] = (),
    environments: Iterable[EnvironmentSource] = (),
    push: bool | None = None,
    output_dir: Path | None = None,
) -> ImageResult:
    """Build (and with ``push``, push) the project's image.

    A full image needs the project's ``wheel``; a dependency-only one (``include-project = false``)
    needs only its metadata (``metadata``, else the wheel's, else the static ``[project]`` table).
    A full image must hold the module of every named environment of ``environments`` (the
    manifest's), or nothing is built. The ``oci`` backend writes its layout and archive into
    ``output_dir`` (default: the wheel's directory, else the project's ``dist``).
    """
    config = config or project.config.image
    # Before any work: a missing extra is a one-line fix, not a half-made image.
    require_image_backend(config.backend)
    if wheel is not None and config.include_project:
        check_modules_in_wheel(wheel, environments, str(project.pyproject or project.directory))
    meta = metadata or image_metadata(project, wheel, config)
    do_push = push if push is not None else config.push
    repo = repository(project, config)
    out = output_dir or (wheel.parent if wheel is not None else project.directory / "dist")
    # A signal stops either backend the same way: its work directory, containers and tags undone.
    doing = f"building the image {repo}" + (f" into {out}" if config.backend == "oci" else "")
    with interruptible(doing), _backend(config, repo, out, do_push) as backend:
        plan = plan_for(backend, project, wheel, config, meta, source_files)
        content_tag = plan.content_tag()
        tags = image_tags(project, config, content_tag, meta.version)
        ref = f"{repo}:{tags[0]}"
        log.info("building image %s (%s) from %s %s", ref, plan.platform, plan.base, backend.how)
        built = backend.build(plan, repo, tags, push=do_push)
    return ImageResult(
        ref=ref,
        id=built.id,
        tags=tuple(f"{repo}:{t}" for t in tags),
        platform=plan.platform,
        base=plan.base,
        base_digest=plan.base_digest,
        content_tag=content_tag,
        digest=built.digest,
        backend=backend.name,
        archive=str(built.archive) if built.archive is not None else None,
        pushed=do_push,
        contents=plan.contents,
        base_dockerfile=config.dockerfile,
    )


def plan_for(
    backend: ImageBackend,
    project: Project,
    wheel: Path | None,
    config: ImageConfig,
    metadata: ProjectMetadata,
    source_files: Sequence[tuple[str, str]] = (),
) -> ImagePlan:
    """The plan of the project's image on ``backend``: the base found (or built from
    ``tool.flyte.image.dockerfile``), its Python known, the wheelhouse resolved; nothing else built."""
    if config.dockerfile:
        dockerfile = project.resolve_path(config.dockerfile)
        where = f"{project.pyproject}: `tool.flyte.image.dockerfile` = {config.dockerfile!r}"
        if not dockerfile.is_file():
            raise ImageError(
                f"{where}: {dockerfile} is not a file; fix the path (relative to pyproject.toml)"
            )
        context = project.resolve_path(config.context) if config.context is not None else dockerfile.parent
        if not context.is_dir():
            key = "context" if config.context is not None else "dockerfile"
            raise ImageError(
                f"{project.pyproject}: `tool.flyte.image.{key}`: the build context {context} is not a "
                "directory"
            )
        base_ref = backend.build_base(dockerfile, context, dict(config.build_args), config.platform, where)
        found = backend.base(base_ref, config.python, config.platform)
        base_info = replace(found, digest=None, built_from=config.dockerfile)
    else:
        base_ref = config.base or default_base(metadata.requires_python)
        base_info = backend.base(base_ref, config.python, config.platform)
    return plan_image(project, wheel, config, base_info, source_files, metadata=metadata)


def _backend(config: ImageConfig, repo: str, output_dir: Path, push: bool) -> ImageBackend:
    # Imported when used: each backend brings its own dependencies (the docker SDK, installer).
    if config.backend == "oci":
        from hatch_flyte.image.oci.builder import OciBackend

        return OciBackend(output_dir, repo, push=push)
    from hatch_flyte.image.docker.backend import DockerBackend

    return DockerBackend()
