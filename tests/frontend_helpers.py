"""Helpers for the tests that run real frontends on temp projects (the plugin wheel fixture is in
conftest.py, built once per session)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "example_projects"
BIN = Path(sys.executable).parent
EPOCH = "1700000000"


def _run(
    cmd: list[str], cwd: Path, env: dict[str, str] | None = None, ok: bool = True
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "SOURCE_DATE_EPOCH": EPOCH, "PIP_DISABLE_PIP_VERSION_CHECK": "1", **(env or {})}
    proc = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=600)
    if ok and proc.returncode != 0:
        raise AssertionError(
            f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


def copy_project(name: str, dest: Path, plugin_wheel: Path) -> Path:
    """A copy of an example project whose build requirements use this checkout's plugin wheel."""
    target = dest / name
    shutil.copytree(
        EXAMPLES / name, target, ignore=shutil.ignore_patterns("dist", "build", "*.egg-info", "__pycache__")
    )
    pyproject = target / "pyproject.toml"
    text = pyproject.read_text()
    text = re.sub(r'"hatch-flyte"', f'"hatch-flyte @ {plugin_wheel.as_uri()}"', text)
    pyproject.write_text(text)
    return target


def wheel_flyte_metadata(wheel: Path) -> tuple[dict[str, str], dict[str, Any] | None]:
    """The wheel's ``flyte.environments`` entry points and its manifest (or None)."""
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        eps_name = next((n for n in names if n.endswith(".dist-info/entry_points.txt")), None)
        group: dict[str, str] = {}
        if eps_name:
            current = None
            for line in zf.read(eps_name).decode().splitlines():
                line = line.strip()
                if line.startswith("["):
                    current = line[1:-1]
                elif line and current == "flyte.environments":
                    key, _, value = line.partition("=")
                    group[key.strip()] = value.strip()
        manifest_name = next(
            (n for n in names if n.endswith(".dist-info/extra_metadata/flyte-manifest.json")), None
        )
        manifest: dict[str, Any] | None = json.loads(zf.read(manifest_name)) if manifest_name else None
    return group, manifest
