"""Picking the base manifest for ``platform`` out of a multi-arch image index (OCI image-index spec)."""

from __future__ import annotations

import pytest

from hatch_flyte.errors import ImageError
from hatch_flyte.image.oci.registry import select_platform

INDEX = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [
        {"digest": "sha256:" + "a" * 64, "platform": {"os": "linux", "architecture": "amd64"}},
        {"digest": "sha256:" + "b" * 64, "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
        {
            "digest": "sha256:" + "c" * 64,
            "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"},
        },
        {"digest": "sha256:" + "d" * 64, "platform": {"os": "unknown", "architecture": "unknown"}},
    ],
}


@pytest.mark.parametrize(
    ("platform", "digest"),
    [("linux/amd64", "a"), ("linux/arm64", "c"), ("linux/arm64/v8", "c"), ("linux/arm/v7", "b")],
)
def test_picks_the_platform(platform: str, digest: str) -> None:
    assert select_platform(INDEX, platform, "base x")["digest"] == "sha256:" + digest * 64


def test_missing_platform_names_what_is_offered() -> None:
    with pytest.raises(ImageError) as info:
        select_platform(INDEX, "linux/s390x", "base x")
    message = str(info.value)
    assert "base x has no image for linux/s390x" in message
    assert "linux/amd64, linux/arm/v7, linux/arm64/v8" in message and "tool.flyte.image.platform" in message
