"""Full-build images: the project's wheel and its dependencies baked into an image that runs Flyte tasks.

:func:`build_image` names the base, has the backend (:mod:`hatch_flyte.image.backend`: ``docker``
or ``oci``) find it, plans the image once (:mod:`hatch_flyte.image.plan`: the wheelhouse for the
image's Python and platform, labels, the content-derived tag, plus the project version by default)
and has the backend build and optionally push it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hatch_flyte.config import ImageConfig
from hatch_flyte.image.backend import ImageBackend
from hatch_flyte.image.plan import (
    BaseInfo,
    ImagePlan,
    default_base,
    image_tags,
    plan_image,
    repository,
    wheel_metadata,
)
from hatch_flyte.project import Project

__all__ = [
    "BaseInfo",
    "ImagePlan",
    "ImageResult",
    "build_image",
    "default_base",
    "image_tags",
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
    do_push = push if push is not None else config.push
    repo = repository(project, config)
    with _backend(config, repo, output_dir or wheel.parent, do_push) as backend:
        meta = wheel_metadata(wheel)
        base_ref = config.base or default_base(meta["Requires-Python"])
        base_info = backend.base(base_ref, config.python, config.platform)
        plan = plan_image(project, wheel, config, base_info, source_files)
        content_tag = plan.content_tag()
        tags = image_tags(project, config, content_tag, meta["Version"])
        ref = f"{repo}:{tags[0]}"
        log.info("building image %s (%s) from %s %s", ref, plan.platform, base_ref, backend.how)
        built = backend.build(plan, repo, tags, push=do_push)
    return ImageResult(
        ref=ref,
        id=built.id,
        tags=tuple(f"{repo}:{t}" for t in tags),
        platform=plan.platform,
        base=base_ref,
        base_digest=base_info.digest,
        content_tag=content_tag,
        digest=built.digest,
        backend=backend.name,
        archive=str(built.archive) if built.archive is not None else None,
        pushed=do_push,
    )


def _backend(config: ImageConfig, repo: str, output_dir: Path, push: bool) -> ImageBackend:
    # Imported when used: each backend brings its own dependencies (the docker SDK, installer).
    if config.backend == "oci":
        from hatch_flyte.image.oci.builder import OciBackend

        return OciBackend(output_dir, repo, push=push)
    from hatch_flyte.image.docker.backend import DockerBackend

    return DockerBackend()
