"""hatch-flyte's cache directory, shared by the bundle's stat cache and the image backends.

``HATCH_FLYTE_CACHE_DIR``, else ``$XDG_CACHE_HOME/hatch-flyte`` (``~/.cache/hatch-flyte``);
``HATCH_FLYTE_NO_CACHE=1`` turns every cache off. What is kept there only saves work: a record
that cannot be read or written is ignored.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path | None:
    """Where cached records are kept, or None when caching is turned off."""
    if os.environ.get("HATCH_FLYTE_NO_CACHE", "") not in ("", "0"):
        return None
    explicit = os.environ.get("HATCH_FLYTE_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hatch-flyte"
