"""The image's dependencies, resolved on the host into a wheelhouse for the image's Python and platform.

The image build then installs from it with ``--no-index`` and no network. Wheelhouses are cached
by their inputs (requirements, constraints, Python, platform) under the user's cache directory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from hatch_flyte.atomic import interruptible, run_child, temp_dir
from hatch_flyte.cache import cache_dir
from hatch_flyte.errors import ImageError
from hatch_flyte.extras import missing_extra_message
from hatch_flyte.manifest import sha256_file
from hatch_flyte.project import Project, load_project
from hatch_flyte.report import step
from hatch_flyte.wheel import build_wheel, read_metadata

log = logging.getLogger(__name__)
REQUIREMENTS = "requirements.txt"
#: Written last into a wheelhouse: every file's sha256; a wheelhouse that no longer matches it is
#: not used but made again.
HASHES = ".hatch-flyte-hashes.json"

_ARCH_TAGS = {
    "amd64": ("x86_64", ["manylinux_2_17", "manylinux2014", "manylinux_2_28", "manylinux_2_34", "linux"]),
    "arm64": ("aarch64", ["manylinux_2_17", "manylinux2014", "manylinux_2_28", "manylinux_2_34", "linux"]),
}


@dataclass(frozen=True)
class Target:
    """Where the wheels must run: the image's Python (major, minor) and platform (``linux/amd64``)."""

    python: tuple[int, int]
    platform: str

    @property
    def arch(self) -> str:
        return self.platform.split("/", 1)[1]

    def marker_environment(self) -> dict[str, str]:
        machine = _ARCH_TAGS.get(self.arch, (self.arch, []))[0]
        version = f"{self.python[0]}.{self.python[1]}"
        return {
            "python_version": version,
            "python_full_version": f"{version}.0",
            "implementation_name": "cpython",
            "platform_python_implementation": "CPython",
            "sys_platform": "linux",
            "os_name": "posix",
            "platform_system": "Linux",
            "platform_machine": machine,
            "extra": "",
        }


@dataclass(frozen=True)
class Wheelhouse:
    """A directory of wheels plus the requirements file the image installs."""

    directory: Path
    #: ``(file name, sha256)`` of every file, sorted by name.
    files: tuple[tuple[str, str], ...]
    pip_wheel: str

    @property
    def digest(self) -> str:
        h = hashlib.sha256()
        for name, sha in self.files:
            h.update(f"{name}\0{sha}\n".encode())
        return h.hexdigest()


def wheel_requirements(wheel: Path, target: Target) -> list[Requirement]:
    """The wheel's ``Requires-Dist`` that apply on ``target`` (markers evaluated, no extras)."""
    return requirements_on(read_metadata(wheel).get_all("Requires-Dist") or [], target)


def requirements_on(requires_dist: Sequence[str], target: Target) -> list[Requirement]:
    """The requirements (``Requires-Dist`` strings) that apply on ``target`` (markers evaluated, no
    extras)."""
    env = target.marker_environment()
    out = []
    for raw in requires_dist:
        try:
            req = Requirement(raw)
        except InvalidRequirement as e:
            raise ImageError(f"the project's dependency {raw!r} is not a requirement: {e}") from None
        if req.marker is None or req.marker.evaluate(env):
            req.marker = None
            out.append(req)
    return out


def parse_extra_packages(packages: Sequence[str], where: str) -> list[Requirement]:
    out = []
    for i, text in enumerate(packages):
        try:
            out.append(Requirement(text))
        except InvalidRequirement as e:
            raise ImageError(  # noqa: B904 - the requirement error is in the message
                f"{where}: `tool.flyte.image.extra-packages[{i}]` = {text!r} is not a requirement: {e}"
            )
    return out


def requires_flyte(requirements: Sequence[Requirement]) -> bool:
    return any(canonicalize_name(r.name) == "flyte" for r in requirements)


def supported_tags(target: Target) -> frozenset[Tag]:
    """The wheel tags that install on ``target`` with a glibc Linux base (PEP 425, 600)."""
    machine = _ARCH_TAGS.get(target.arch, (target.arch, []))[0]
    legacy = [f"manylinux{v}_{machine}" for v in ("2014", "2010", "1")]
    platforms = (
        [f"manylinux_2_{minor}_{machine}" for minor in range(60, 4, -1)] + legacy + [f"linux_{machine}"]
    )
    return frozenset(
        [
            *cpython_tags(target.python, platforms=platforms),
            *compatible_tags(target.python, f"cp{target.python[0]}{target.python[1]}", platforms),
        ]
    )


def check_wheel_fits(wheel: Path, target: Target) -> None:
    """Raise a clear error when ``wheel`` (the project's own) cannot run on ``target``.

    The image gets the wheel laid out as is, with no installer in the image to refuse it.
    """
    try:
        tags = parse_wheel_filename(wheel.name)[3]
    except InvalidWheelFilename as e:
        raise ImageError(f"{wheel}: not a wheel file name ({e})") from None
    if tags & supported_tags(target):
        return
    major, minor = target.python
    raise ImageError(
        f"the project's wheel {wheel.name} does not run on the image's Python {major}.{minor} on "
        f"{target.platform} (its tags: {', '.join(sorted(str(t) for t in tags))}). Build the wheel for "
        "that Python and platform, or choose a base image (`tool.flyte.image.base`) that matches it"
    )


def _platform_args(target: Target) -> list[str]:
    machine, prefixes = _ARCH_TAGS.get(target.arch, (None, []))
    if machine is None:
        raise ImageError(
            f"platform {target.platform} is not supported for the wheelhouse; use linux/amd64 or linux/arm64"
        )
    major, minor = target.python
    args = ["--only-binary=:all:", "--implementation", "cp", "--python-version", f"{major}.{minor}"]
    for abi in (f"cp{major}{minor}", "abi3", "none"):
        args += ["--abi", abi]
    for prefix in prefixes:
        args += ["--platform", f"{prefix}_{machine}"]
    return args


def build_wheelhouse(
    requirements: Sequence[Requirement],
    target: Target,
    constraints: Path | None = None,
    pins: Sequence[str] = (),
    local_wheels: Sequence[Path] = (),
) -> Wheelhouse:
    """Download wheels for ``requirements`` (and pip itself) for ``target``, cached by inputs.

    ``constraints`` is a pip constraints file; ``pins`` are constraint lines of the project's lock;
    ``local_wheels`` are wheels built from the project's local path dependencies (workspace
    members), found by pip before any index.
    """
    lines = [*sorted({str(r) for r in requirements}), "pip"]
    key = hashlib.sha256()
    key.update("\n".join(lines).encode())
    key.update(f"\n{target.python}\n{target.platform}\n".encode())
    if constraints is not None:
        key.update(constraints.read_bytes())
    if pins:
        key.update(("\0pins\n" + "\n".join(pins)).encode())
    for wheel in sorted(local_wheels):
        key.update(f"\0local\n{wheel.name}\0{sha256_file(wheel)}".encode())
    base = cache_dir()
    root = (
        base / "wheelhouses" if base is not None else Path(tempfile.gettempdir()) / "hatch-flyte-wheelhouses"
    )
    directory = root / key.hexdigest()[:32]
    found = _verified(directory)
    if found is not None:
        return found
    if directory.exists() and _verified(directory) is None:
        if (directory / HASHES).exists():
            log.warning(
                "the cached wheelhouse %s does not match its record of wheel hashes (a file changed, "
                "or a build was cut short): building it again",
                directory,
            )
        else:
            log.info(
                "the cached wheelhouse %s has no record of its wheel hashes: building it again", directory
            )
        _discard(directory)
    _download(lines, target, constraints, pins, directory, local_wheels)
    found = _verified(directory)
    if found is None:
        raise ImageError(
            f"the wheelhouse {directory} changed while this build made it (is another program writing "
            "there?); build again"
        )
    return found


def _hashes(directory: Path) -> list[list[str]]:
    return sorted(
        [p.name, sha256_file(p)] for p in directory.iterdir() if p.is_file() and not p.name.startswith(".")
    )


def _verified(directory: Path) -> Wheelhouse | None:
    """The wheelhouse in ``directory`` if every file still has the hash recorded when it was made."""
    try:
        record = json.loads((directory / HASHES).read_text(encoding="utf-8"))
        files = _hashes(directory)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("files") != files:
        return None
    pip_wheel = next((n for n, _ in files if n.startswith("pip-") and n.endswith(".whl")), None)
    if pip_wheel is None or not any(n == REQUIREMENTS for n, _ in files):
        return None
    return Wheelhouse(directory, tuple((n, h) for n, h in files), pip_wheel)


def _discard(directory: Path) -> None:
    """Remove a cache entry: renamed aside first, so no reader ever sees it half deleted."""
    trash = temp_dir(directory.parent, "wheelhouse-old")
    try:
        directory.rename(trash / "old")
    except FileNotFoundError:
        pass  # another build removed it first
    finally:
        shutil.rmtree(trash, ignore_errors=True)


def local_dependency_wheels(project: Project, outdir: Path) -> list[Path]:
    """Wheels of the project's local path dependencies (uv workspace members, ``path`` sources),
    transitively, built with each one's own PEP 517 backend: the image installs them from its
    wheelhouse, since no index has them."""
    wheels: list[Path] = []
    seen = {project.directory}
    pending = list(project.local_dependencies())
    while pending:
        dep = pending.pop(0)
        if dep.directory in seen:
            continue
        seen.add(dep.directory)
        with step(f"built the wheel of the local dependency {dep.name} ({dep.directory})"):
            wheels.append(build_wheel(dep.directory, outdir))
        pending.extend(load_project(dep.directory).local_dependencies())
    return wheels


def _download(
    lines: list[str],
    target: Target,
    constraints: Path | None,
    pins: Sequence[str],
    directory: Path,
    local_wheels: Sequence[Path] = (),
) -> None:
    directory.parent.mkdir(parents=True, exist_ok=True)
    with interruptible(f"filling the wheelhouse {directory}"):
        _fill(lines, target, constraints, pins, directory, local_wheels)


def _fill(
    lines: list[str],
    target: Target,
    constraints: Path | None,
    pins: Sequence[str],
    directory: Path,
    local_wheels: Sequence[Path],
) -> None:
    tmp = temp_dir(directory.parent, "wheelhouse")
    # Beside the wheels, not in the wheelhouse: only requirements.txt and wheels go there.
    pin_file = directory.parent / f"{tmp.name}.pins"
    try:
        req_file = tmp / REQUIREMENTS
        req_file.write_text("\n".join(lines) + "\n")
        cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--dest", str(tmp)]
        cmd += [*_platform_args(target), "-r", str(req_file)]
        if constraints is not None:
            cmd += ["-c", str(constraints)]
        for folder in sorted({w.parent for w in local_wheels}):
            cmd += ["--find-links", str(folder)]
        if pins:
            pin_file.write_text("\n".join(pins) + "\n")
            cmd += ["-c", str(pin_file)]
        python = f"{target.python[0]}.{target.python[1]}"
        with step(f"resolved the image's dependencies for Python {python} on {target.platform}"):
            proc = run_child(
                cmd,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "PIP_NO_INPUT": "1"},
            )
        if "No module named pip" in proc.stderr:
            raise ImageError(
                missing_extra_message("the image's wheelhouse (`pip download`)", "image", ["pip"])
            )
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-12:])
            hint = (
                "; the project's lock pins versions too: if it is stale, lock again or set "
                "`tool.flyte.image.lock = false`"
                if pins
                else ""
            )
            raise ImageError(
                "cannot resolve the image's dependencies into a wheelhouse for Python "
                f"{target.python[0]}.{target.python[1]} on {target.platform} "
                f"(every dependency needs a wheel for that platform{hint}):\n{tail}"
            )
        (tmp / HASHES).write_text(json.dumps({"files": _hashes(tmp)}), encoding="utf-8")
        for _ in range(3):
            try:
                tmp.rename(directory)
                return
            except OSError:
                if not directory.is_dir():
                    raise
            # Another build filled the same entry meanwhile: a verified one is as good as ours; one
            # without a record (an older hatch-flyte's) or a half-made one gives way to ours.
            if _verified(directory) is not None:
                return
            _discard(directory)
    finally:
        pin_file.unlink(missing_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
