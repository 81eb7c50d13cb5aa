"""The image must import every environment the manifest names: each module's file is in the wheel.

A full-build image runs a task as ``a0 ... mod <module> instance <task>`` with no bundle, so the
module has to come from the project's wheel in the image's venv. A module that the wheel leaves out
(a top-level ``workflows.py`` next to the package, a directory the build backend does not package)
would only fail when a pod imports it; the build says so first.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from hatch_flyte.errors import ImageError

#: Wheel members under ``<name>.data/purelib/`` or ``platlib/`` install next to the root ones.
_DATA_LIB = re.compile(r"^[^/]+\.data/(?:purelib|platlib)/")
#: Extension modules, whatever the image's ABI tag (``.cpython-311-x86_64-linux-gnu.so``, ``.abi3.so``).
_EXTENSION = re.compile(r"(?:\.[A-Za-z0-9_-]+)?\.so$")


class EnvironmentSource(Protocol):
    """What the check needs of a discovered environment."""

    @property
    def name(self) -> str | None: ...
    @property
    def module(self) -> str: ...
    @property
    def file(self) -> str: ...


def importable_modules(members: Iterable[str]) -> set[str]:
    """Dotted names of the modules a wheel with these members installs (packages included)."""
    found: set[str] = set()
    for member in members:
        path = _DATA_LIB.sub("", member)
        stem, _, name = path.rpartition("/")
        if stem.split("/", 1)[0].endswith((".dist-info", ".data")) or "__pycache__" in stem.split("/"):
            continue
        if name.endswith(".py"):
            base = name[:-3]
        elif name.endswith(".pyc"):
            base = name[:-4]
        elif _EXTENSION.search(name):
            base = _EXTENSION.sub("", name)
        else:
            continue
        parts = stem.split("/") if stem else []
        if base != "__init__":
            parts.append(base)
        if parts:
            found.add(".".join(parts))
    return found


def check_modules_in_wheel(wheel: Path, environments: Iterable[EnvironmentSource], where: str) -> None:
    """Raise :class:`ImageError` naming every named environment whose module the wheel does not hold."""
    wanted = [env for env in environments if env.name]
    if not wanted:
        return
    try:
        with zipfile.ZipFile(wheel) as zf:
            modules = importable_modules(zf.namelist())
    except (OSError, zipfile.BadZipFile) as e:
        raise ImageError(f"cannot read the wheel {wheel}: {e}; build it again") from None
    missing = [env for env in wanted if env.module not in modules]
    if not missing:
        return
    lines = "\n".join(
        f"  - environment {env.name!r}: module {env.module} (from {env.file})" for env in missing
    )
    raise ImageError(
        f"{where}: the image could not import these environments, because the wheel {wheel.name} does not "
        f"contain their modules:\n{lines}\nA full-build image runs tasks from the installed wheel: move the "
        "module into the package the wheel ships, or make the build backend include it (hatchling: "
        "`[tool.hatch.build.targets.wheel] packages`/`only-include`; setuptools: `packages`/`py-modules`)"
    )
