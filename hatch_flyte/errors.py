"""The one exception family of hatch-flyte.

Every error says what went wrong, where (file, key or path) and how to fix it, so that the hatch
and setuptools adapters and the CLI can show ``str(error)`` as is.
"""

from __future__ import annotations

from collections.abc import Sequence


class HatchFlyteError(Exception):
    """Base class of every error hatch-flyte raises on purpose."""


class ConfigError(HatchFlyteError):
    """``[tool.flyte]`` (or pyproject.toml itself) is malformed.

    ``problems`` holds one line per problem, each naming the dotted key; all problems of one file
    are reported together so that a user fixes them in one go.
    """

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid configuration in {source}:\n{lines}")


class ProjectError(HatchFlyteError):
    """The project layout does not say which package to bundle, or the root is unusable."""


class BundleError(HatchFlyteError):
    """The code bundle could not be made (bad input, unreadable file, disk full...)."""


class SecretsError(BundleError):
    """Files that look like secrets would be bundled and the secrets guard is set to ``error``."""


class DiscoveryError(HatchFlyteError):
    """Flyte environments could not be discovered (syntax error, missing or duplicate environment)."""


class BuildError(HatchFlyteError):
    """A build step (wheel backend, output directory, manifest) failed."""


class ImageError(HatchFlyteError):
    """An image could not be built, pushed or checked."""


class DeployError(HatchFlyteError):
    """Registering the built artifacts with Flyte failed, or was refused before anything was sent."""
