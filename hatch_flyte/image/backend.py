"""The one interface of image backends: find the base, then turn a plan into an image.

:func:`hatch_flyte.image.build_image` does everything else once for every backend (the base's
name, the plan, the tags); a backend is a context manager, so what it holds (an engine connection,
a work directory) is released however the build ends.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from hatch_flyte.errors import ImageError
from hatch_flyte.image.plan import BaseInfo, ImagePlan


@dataclass(frozen=True)
class BuiltImage:
    """What a backend made of a plan."""

    #: The image id (its config's digest).
    id: str
    #: The manifest digest: the registry's when pushed (``docker``), the layout's (``oci``).
    digest: str | None
    #: The ``docker load`` archive (``oci`` only).
    archive: Path | None = None


class ImageBackend(abc.ABC):
    """A way of making images (``tool.flyte.image.backend``)."""

    #: The value of ``tool.flyte.image.backend``.
    name: str
    #: How it builds, for the log (``"without a daemon"``).
    how: str

    @abc.abstractmethod
    def base(self, ref: str, python: str | None, platform: str | None) -> BaseInfo:
        """Find the base image ``ref`` and the Python in it; ``platform`` is the configured one
        (None: the backend's default)."""

    def build_base(
        self, dockerfile: Path, context: Path, build_args: Mapping[str, str], platform: str | None, where: str
    ) -> str:
        """Build ``dockerfile`` (``tool.flyte.image.dockerfile``, described by ``where``) as the base;
        return a reference :meth:`base` finds. Only a backend that runs Dockerfiles can."""
        raise ImageError(
            f"{where}: the {self.name} backend cannot run a Dockerfile; build it with Docker and bring it "
            'as `base = "oci:DIR[:TAG]"` or `base = "docker-archive:FILE.tar"`'
        )

    @abc.abstractmethod
    def build(self, plan: ImagePlan, repository: str, tags: Sequence[str], *, push: bool) -> BuiltImage:
        """Make the image of ``plan`` as ``repository:tags[0]`` (its ``_F_IMG_ID``), tagged with every
        tag; push every tag when asked. A backend that finds that very image made already (and
        pushed, when asked) makes and pushes nothing."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release what the backend holds."""

    def __enter__(self) -> ImageBackend:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
