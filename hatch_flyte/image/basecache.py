"""What was found inside a base image, remembered by the image's content address.

An image id (the digest of its config) or a list of layer digests names a filesystem for good, so
what a probe found there (its Python, whether it has tar) never goes stale. Records are small JSON
files under the cache directory (``HATCH_FLYTE_CACHE_DIR``; ``HATCH_FLYTE_NO_CACHE=1`` turns them
off); a record that cannot be read or written is ignored: the cache only saves a probe.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

from hatch_flyte.atomic import write_bytes_atomic
from hatch_flyte.cache import cache_dir
from hatch_flyte.errors import BuildError


def _record(kind: str, key: Any) -> Path | None:
    base = cache_dir()
    if base is None:
        return None
    digest = hashlib.sha256(json.dumps([kind, key], sort_keys=True).encode()).hexdigest()[:32]
    return base / "base-images" / f"{digest}.json"


def load(kind: str, key: Any) -> dict[str, Any] | None:
    """The record stored for ``key``, or None."""
    record = _record(kind, key)
    if record is None:
        return None
    try:
        doc = json.loads(record.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("kind") != kind or doc.get("key") != key:
        return None
    found = doc.get("found")
    return found if isinstance(found, dict) else None


def store(kind: str, key: Any, found: dict[str, Any]) -> None:
    """Remember ``found`` for ``key`` (JSON values only)."""
    record = _record(kind, key)
    if record is None:
        return
    with contextlib.suppress(OSError, BuildError):
        record.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(record, json.dumps({"kind": kind, "key": key, "found": found}).encode())
