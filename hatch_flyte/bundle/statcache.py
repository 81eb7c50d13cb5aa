"""Remembering the digest of an unchanged tree, so a rebuild need not read every file.

flyte's digest is an md5 over all file contents, which cannot be updated piecemeal: either every
file is read or none. Like git's index, we key the last digest on each file's metadata (path,
size, mtime and ctime in nanoseconds, inode, device, mode). A file whose mtime or ctime is within
:data:`RACY_SECONDS` of the build could still change without a visible metadata change, so such a
tree is not remembered at all.

The cache lives in the user's cache directory (``HATCH_FLYTE_CACHE_DIR``, else
``$XDG_CACHE_HOME/hatch-flyte``), one small JSON file per bundle root; ``HATCH_FLYTE_NO_CACHE=1``
turns it off. Any problem with it only costs a full read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hatch_flyte.atomic import atomic_output
from hatch_flyte.bundle.selection import BundleFile
from hatch_flyte.cache import cache_dir

log = logging.getLogger(__name__)
RACY_SECONDS = 2.0
_VERSION = 1
_DIGEST = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class Fingerprint:
    key: str
    newest_ns: int


@dataclass(frozen=True)
class Entry:
    digest: str
    tar_size: int


def _entry_path(root: Path) -> Path | None:
    base = cache_dir()
    if base is None:
        return None
    return (
        base
        / "bundles"
        / (hashlib.sha256(str(root).encode("utf-8", "surrogateescape")).hexdigest()[:32] + ".json")
    )


def fingerprint(files: Sequence[BundleFile]) -> Fingerprint | None:
    """Metadata key of the selected files; None when a file cannot be stat'ed (the build will say why)."""
    h = hashlib.sha256()
    newest = 0
    for f in files:
        try:
            st = os.stat(f.path)
        except OSError:
            return None
        h.update(
            f"{f.arcname}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}\0{st.st_dev}\0{st.st_mode}\n".encode(
                "utf-8", "surrogateescape"
            )
        )
        newest = max(newest, st.st_mtime_ns, st.st_ctime_ns)
    return Fingerprint(h.hexdigest(), newest)


def lookup(root: Path, fp: Fingerprint) -> Entry | None:
    """The remembered digest of ``root`` if its files still have the fingerprint ``fp``."""
    path = _entry_path(root)
    if path is None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    # Anything else in the file (another tool's, a truncated or hand-edited one) is not trusted.
    if not isinstance(data, dict) or (data.get("version"), data.get("root"), data.get("key")) != (
        _VERSION,
        str(root),
        fp.key,
    ):
        return None
    digest, tar_size = data.get("digest"), data.get("tar_size")
    if not isinstance(digest, str) or _DIGEST.fullmatch(digest) is None:
        return None
    if not isinstance(tar_size, int) or isinstance(tar_size, bool) or tar_size < 0:
        return None
    return Entry(digest, tar_size)


def store(root: Path, fp: Fingerprint, digest: str, tar_size: int) -> None:
    """Remember ``digest`` for ``root`` unless some file changed too recently to trust its metadata."""
    path = _entry_path(root)
    if path is None:
        return
    if fp.newest_ns >= time.time_ns() - int(RACY_SECONDS * 1e9):
        log.debug("not caching the digest of %s: a file changed in the last %ss", root, RACY_SECONDS)
        return
    data = {"version": _VERSION, "root": str(root), "key": fp.key, "digest": digest, "tar_size": tar_size}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path) as f:
            f.write(json.dumps(data, sort_keys=True).encode())
    except Exception as e:  # a cache must never break a build
        log.debug("cannot write the bundle cache %s: %s", path, e)
