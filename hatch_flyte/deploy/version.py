"""The default deploy version: a digest of what is deployed, the same in every process.

flyte's own automatic version hashes pickled environments (their bytes depend on the hash seed)
and the compressed bundle (its bytes depend on whether pigz is on PATH), so it changes between two
deploys of the same code. Ours is computed from the manifest and the images: the project's name and
version, the sha256 of what runs (the bundle in fast mode, the wheel in full mode), the manifest
image's identity, the image each environment is registered with, and the mode. The same build
deployed twice in the same mode gets the same version; a change to any of them gives a new one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from hatch_flyte.deploy.target import Target

#: Bump when the inputs or their encoding change, so that old and new versions never collide.
_SCHEME = 1
_IMAGE_KEYS = ("ref", "digest", "id")


def default_version(target: Target, mode: str, images: Mapping[str, str]) -> str:
    """32 hex digits (the length of flyte's own md5 versions); ``images``: environment -> image."""
    image = target.image or {}
    doc: dict[str, Any] = {
        "scheme": _SCHEME,
        "project": {k: target.project.get(k) for k in ("name", "version")},
        "mode": mode,
        "bundle": target.bundle.sha256 if mode == "fast" and target.bundle else None,
        "wheel": target.wheel.sha256 if mode == "full" and target.wheel else None,
        "image": {k: image.get(k) for k in _IMAGE_KEYS},
        "images": sorted(images.items()),
    }
    data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(data).hexdigest()[:32]
