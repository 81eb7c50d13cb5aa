"""The values a deploy produces (no dependency beyond the standard library: importing
:mod:`hatch_flyte` imports this)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Mode = Literal["fast", "full"]


@dataclass(frozen=True)
class Connection:
    """Overrides of flyte's own configuration; ``None`` keeps what flyte finds."""

    endpoint: str | None = None
    insecure: bool | None = None
    org: str | None = None
    project: str | None = None
    domain: str | None = None
    config: Path | None = None


@dataclass(frozen=True)
class EnvironmentImage:
    """The image an environment's tasks are registered with, and where it came from."""

    name: str
    image: str
    source: str


@dataclass(frozen=True)
class RegisteredTask:
    env: str
    task: str
    image: str
    args: tuple[str, ...]


@dataclass(frozen=True)
class DeployedBundle:
    """The code bundle of a fast deploy; ``uri`` is where it was uploaded (None in a dry run)."""

    name: str
    sha256: str
    uri: str | None
    path: Path


@dataclass(frozen=True)
class DeployResult:
    """What :func:`deploy` registered (or, in a dry run, would register)."""

    version: str
    mode: Mode
    dry_run: bool
    image: str | None
    bundle: DeployedBundle | None
    environments: tuple[EnvironmentImage, ...]
    tasks: tuple[RegisteredTask, ...]
    project: str | None
    domain: str | None
    manifest: Path

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document."""
        return {
            "version": self.version,
            "mode": self.mode,
            "dry_run": self.dry_run,
            "project": self.project,
            "domain": self.domain,
            "image": self.image,
            "bundle": (
                {"name": self.bundle.name, "sha256": self.bundle.sha256, "uri": self.bundle.uri}
                if self.bundle
                else None
            ),
            "environments": [
                {"name": e.name, "image": e.image, "source": e.source} for e in self.environments
            ],
            "tasks": [
                {"env": t.env, "task": t.task, "image": t.image, "args": list(t.args)} for t in self.tasks
            ],
        }
