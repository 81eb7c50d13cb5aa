"""The daemonless, reproducible OCI backend (``tool.flyte.image.backend = "oci"``).

No Docker engine: the base image comes from a registry (distribution API v2), an OCI layout
directory (``oci:/path[:tag]``) or a ``docker save`` archive (``docker-archive:/path.tar``); the venv,
the dependency wheels and the project wheel are appended as layers written in pure Python; the
result is an OCI image layout and a ``docker load`` archive in the output directory, pushed through
the registry API when asked. The same inputs (and ``SOURCE_DATE_EPOCH``) give the same manifest digest.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hatch_flyte.config import ImageConfig
from hatch_flyte.project import Project

if TYPE_CHECKING:
    from hatch_flyte.image import ImageResult


def build_oci_image(
    project: Project,
    wheel: Path,
    config: ImageConfig,
    output_dir: Path,
    *,
    source_files: Sequence[tuple[str, str]] = (),
    push: bool = False,
) -> ImageResult:
    """Build the image into ``output_dir`` (``<name>.oci/`` and ``<name>.oci.tar``); push when asked."""
    from hatch_flyte.image import ImageResult
    from hatch_flyte.image.oci.builder import build

    image = build(project, wheel, config, output_dir, source_files=source_files, push=push)
    return ImageResult(
        ref=image.ref,
        id=image.config_digest,
        tags=image.tags,
        platform=image.platform,
        base=image.base.ref,
        base_digest=image.base.manifest_digest,
        content_tag=image.content_tag,
        digest=image.manifest_digest,
        backend="oci",
        archive=str(image.archive),
        pushed=push,
    )
