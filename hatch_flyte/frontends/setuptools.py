"""setuptools integration: the same entry points and manifest as the hatch build hook, no setup.py code.

setuptools runs every ``setuptools.finalize_distribution_options`` entry point for every build in an
environment where hatch-flyte is installed, so :func:`finalize_distribution_options` does nothing
unless the project's pyproject.toml has a ``[tool.flyte]`` table. When it has one, the ``egg_info``
command (which both ``dist_info`` and ``bdist_wheel`` run) is wrapped: it adds the
``flyte.environments`` entry points and writes ``extra_metadata/flyte-manifest.json`` into the
egg-info directory, which ``bdist_wheel`` copies into the wheel's ``.dist-info``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hatch_flyte.config import load_toml

log = logging.getLogger(__name__)
MANIFEST_PATH = Path("extra_metadata", "flyte-manifest.json")


def _project_dir(dist: Any) -> Path:
    return Path(getattr(dist, "src_root", None) or os.getcwd())


def has_flyte_table(project_dir: Path) -> bool:
    """Whether ``project_dir/pyproject.toml`` has a ``[tool.flyte]`` table (cheap: parse only)."""
    pyproject = project_dir / "pyproject.toml"
    if not pyproject.is_file():
        return False
    tool = load_toml(pyproject).get("tool", {})
    return isinstance(tool, dict) and "flyte" in tool


def finalize_distribution_options(dist: Any) -> None:
    """setuptools hook: wrap ``egg_info`` for projects with a ``[tool.flyte]`` table."""
    if not has_flyte_table(_project_dir(dist)):
        return
    base = dist.cmdclass.get("egg_info") or dist.get_command_class("egg_info")
    if getattr(base, "_hatch_flyte", False):
        return
    dist.cmdclass["egg_info"] = _wrap_egg_info(base)


# setuptools sorts these hooks by `order`; run after its own pyproject handling.
finalize_distribution_options.order = 100  # type: ignore[attr-defined]


def _wrap_egg_info(base: type[Any]) -> type[Any]:
    class FlyteEggInfo(base):  # type: ignore[misc]
        _hatch_flyte = True

        def run(self) -> None:
            from hatch_flyte.errors import HatchFlyteError
            from hatch_flyte.manifest import dumps, make_manifest
            from hatch_flyte.pipeline import Session, entry_points
            from hatch_flyte.project import load_project

            try:
                project = load_project(_project_dir(self.distribution))
                with _stderr_logging():
                    analysis = Session(project).analysis
            except HatchFlyteError as e:
                # One message, as setuptools reports its own errors, not a traceback.
                raise SystemExit(f"hatch-flyte: error: {e}") from None
            _add_entry_points(self.distribution, entry_points(analysis.discovery))
            super().run()
            manifest = make_manifest(
                project,
                analysis,
                name=self.distribution.get_name(),
                version=self.distribution.get_version(),
            )
            target = Path(self.egg_info) / MANIFEST_PATH
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(dumps(manifest))

    FlyteEggInfo.__name__ = base.__name__
    return FlyteEggInfo


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"hatch-flyte: {record.levelname.lower()}: {record.getMessage()}"


@contextlib.contextmanager
def _stderr_logging() -> Iterator[None]:
    """hatch-flyte's warnings on stderr, prefixed, whatever logging setuptools configured."""
    logger = logging.getLogger("hatch_flyte")
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(_Formatter())
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _add_entry_points(dist: Any, points: dict[str, str]) -> None:
    from hatch_flyte import ENTRY_POINT_GROUP

    current = dist.entry_points
    if isinstance(current, str) or current is None:
        current = {} if not current else _parse_ini(current)
    group = current.get(ENTRY_POINT_GROUP, [])
    if isinstance(group, str):
        group = [line for line in group.splitlines() if line.strip()]
    elif isinstance(group, dict):
        group = [f"{k} = {v}" for k, v in group.items()]
    existing = {line.split("=", 1)[0].strip() for line in group}
    group = list(group) + [f"{name} = {ref}" for name, ref in sorted(points.items()) if name not in existing]
    current = dict(current)
    current[ENTRY_POINT_GROUP] = group
    dist.entry_points = current


def _parse_ini(text: str) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    name = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            name = line[1:-1].strip()
            groups.setdefault(name, [])
        elif line and name is not None and not line.startswith(("#", ";")):
            groups[name].append(line)
    return groups
