"""hatch-flyte: package Flyte 2 code from the project's own build.

The core (``config``, ``project``, ``manifest``, ``pipeline``) drives the wings ``discovery``,
``bundle`` and ``image``; ``deploy`` registers what a build wrote with Flyte
(:func:`hatch_flyte.deploy`); ``frontends`` (hatch, setuptools, the CLI) are thin adapters over it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hatch_flyte.__about__ import __version__

__all__ = [
    "ENTRY_POINT_GROUP",
    "DeployResult",
    "InstalledEnvironment",
    "__version__",
    "deploy",
    "installed_environments",
]

ENTRY_POINT_GROUP = "flyte.environments"


@dataclass(frozen=True)
class InstalledEnvironment:
    """A Flyte environment advertised by an installed distribution's entry points."""

    name: str
    module: str
    attribute: str
    distribution: str | None
    _entry_point: Any

    def load(self) -> Any:
        """Import the module and return the environment object."""
        return self._entry_point.load()


def installed_environments() -> list[InstalledEnvironment]:
    """Environments of installed distributions, from their ``flyte.environments`` entry points.

    Nothing is imported until :meth:`InstalledEnvironment.load` is called.
    """
    from importlib import metadata  # not at import time: the build hook imports this package

    found = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        module, _, attribute = ep.value.partition(":")
        dist = getattr(ep, "dist", None)
        found.append(
            InstalledEnvironment(ep.name, module.strip(), attribute.strip(), dist.name if dist else None, ep)
        )
    return sorted(found, key=lambda e: (e.name, e.module))


# Bound last, and eagerly: importing the ``hatch_flyte.deploy`` wing sets the package attribute
# ``deploy`` to the module, and this rebinds it to the function (flyte itself is imported lazily).
from hatch_flyte.deploy import DeployResult, deploy  # noqa: E402
