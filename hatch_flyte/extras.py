"""Optional dependencies: which extra provides what, and the error when one is missing.

A build plugin stays light: every PEP 517 build of a project that uses the hook installs
hatch-flyte's core requirements, so only what the hook needs is required. Commands that need more
(``hatch-flyte build``, images) check for it before doing any work and say which extra to install.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence

from hatch_flyte.errors import HatchFlyteError, ImageError

#: extra -> the modules without which its commands cannot work (``cli`` also brings isal, which only
#: speeds bundles up: without it they are compressed with zlib). pyproject.toml's extras list the
#: distributions; a test keeps the two in step.
EXTRAS: dict[str, tuple[str, ...]] = {
    "cli": ("build",),
    "image": ("installer", "pip"),
    "docker": ("installer", "pip", "docker"),
    "deploy": ("flyte",),
}


def missing_modules(modules: Sequence[str]) -> list[str]:
    """Those of ``modules`` that cannot be imported here (found without importing them)."""
    return [m for m in modules if importlib.util.find_spec(m) is None]


def missing_extra_message(what: str, extra: str, missing: Sequence[str]) -> str:
    """What needs the extra, what is missing, and the two ways to install it."""
    names = ", ".join(f"`{m}`" for m in missing)
    # `docker` includes `image`: name it, so that a docker user installs once, not twice.
    wider = " (or `docker`, which includes it, for the docker backend)" if extra == "image" else ""
    return (
        f"{what} needs {names}, not installed in {sys.prefix}: install hatch-flyte with the "
        f"`{extra}` extra{wider} (pip install 'hatch-flyte[{extra}]'), or for `hatch build -t flyte` "
        f'add "hatch-flyte[{extra}]" to `dependencies` under [tool.hatch.build.targets.flyte]'
    )


def require(extra: str, what: str, error: type[HatchFlyteError]) -> None:
    """Raise ``error`` naming ``extra`` unless every module it provides is importable."""
    missing = missing_modules(EXTRAS[extra])
    if missing:
        raise error(missing_extra_message(what, extra, missing))


def require_image_backend(backend: str) -> None:
    """The extra of an image backend (``docker`` includes ``image``), checked before any work."""
    require("docker" if backend == "docker" else "image", f"the `{backend}` image backend", ImageError)
