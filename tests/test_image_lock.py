"""The image's dependencies follow the project's lock (``uv.lock`` or PEP 751 ``pylock.toml``).

The oracle is uv itself: ``uv lock`` writes the lock of a real project, and ``uv export`` turns the
same lock into requirement lines with markers; what hatch-flyte pins for a target must equal those
lines with their markers evaluated for that target. Needs the package index (as ``uv lock`` and the
wheelhouse do); no Docker engine.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from hatch_flyte.errors import ImageError
from hatch_flyte.image import plan_image
from hatch_flyte.image.lock import find_lock, read_pins
from hatch_flyte.image.plan import BaseInfo, ImagePlan
from hatch_flyte.image.wheelhouse import Target
from hatch_flyte.project import load_project
from hatch_flyte.wheel import build_wheel

EXAMPLE = Path(__file__).resolve().parent.parent / "example_projects" / "weather_pipeline"
UV = str(Path(sys.executable).parent / "uv")
TARGETS = [Target((3, 11), "linux/amd64"), Target((3, 10), "linux/amd64"), Target((3, 12), "linux/arm64")]


def uv(*args: str, cwd: Path) -> str:
    proc = subprocess.run([UV, *args], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """weather_pipeline with the uv.lock that ``uv lock`` writes for it."""
    root = tmp_path_factory.mktemp("locked") / "weather_pipeline"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("dist", "__pycache__", "*.egg-info"))
    uv("lock", "-q", cwd=root)
    return root


def exported_pins(root: Path, target: Target) -> set[tuple[str, str]]:
    """``uv export`` of the lock, markers evaluated for ``target``: the pins hatch-flyte must use."""
    text = uv("export", "--format", "requirements-txt", "--no-hashes", "--no-emit-project",
              "--no-header", "--no-annotate", cwd=root)  # fmt: skip
    pins: set[tuple[str, str]] = set()
    for line in text.splitlines():
        if not line.strip() or line.startswith(("#", "-")):
            continue
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(target.marker_environment()):
            (spec,) = req.specifier
            assert spec.operator == "=="
            pins.add((canonicalize_name(req.name), spec.version))
    return pins


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: f"{t.python[0]}.{t.python[1]}-{t.arch}")
def test_uv_lock_pins_what_uv_exports(locked: Path, target: Target) -> None:
    pins = read_pins(locked / "uv.lock", target.marker_environment(), "weather-pipeline")
    assert pins.source == locked / "uv.lock"
    # Every package uv installs on the target is pinned at uv's version. uv.lock also pins packages
    # the target never installs (pywin32-ctypes, exceptiongroup on 3.11): as constraints they are
    # inert, pip only applies a constraint to a package it needs.
    exported = exported_pins(locked, target)
    assert exported <= set(pins.pins)
    assert len(exported) > 40
    names = dict(pins.pins)
    assert "flyte" in names and "weather-pipeline" not in names  # the project itself is never pinned


def test_pylock_from_uv_pins_the_same(locked: Path, tmp_path: Path) -> None:
    """PEP 751: the same lock exported by uv as pylock.toml, preferred to uv.lock when both exist."""
    root = tmp_path / "p"
    shutil.copytree(locked, root)
    uv("export", "--format", "pylock.toml", "-o", "pylock.toml", "-q", cwd=root)
    assert find_lock(root) == root / "pylock.toml"
    for target in TARGETS:
        env = target.marker_environment()
        from_pylock = read_pins(root / "pylock.toml", env, "weather-pipeline")
        # pylock.toml carries a marker per package, so it pins exactly what the target installs.
        assert set(from_pylock.pins) == exported_pins(root, target)
        assert set(from_pylock.pins) <= set(read_pins(root / "uv.lock", env, "weather-pipeline").pins)


def test_only_index_packages_are_pinned(tmp_path: Path) -> None:
    (tmp_path / "uv.lock").write_text(
        """version = 1
requires-python = ">=3.10"

[[package]]
name = "me"
version = "1.0"
source = { editable = "." }

[[package]]
name = "from-git"
version = "0.1"
source = { git = "https://example.invalid/x.git?rev=main#abc" }

[[package]]
name = "from-path"
version = "0.2"
source = { path = "vendor/from_path-0.2-py3-none-any.whl" }

[[package]]
name = "Old_Python"
version = "1.0"
source = { registry = "https://pypi.org/simple" }
resolution-markers = ["python_full_version < '3.11'"]

[[package]]
name = "old-python"
version = "2.0"
source = { registry = "https://pypi.org/simple" }
resolution-markers = ["python_full_version >= '3.11'"]

[[package]]
name = "plain"
version = "3.0"
source = { registry = "https://pypi.org/simple" }
"""
    )
    env = Target((3, 11), "linux/amd64").marker_environment()
    assert read_pins(tmp_path / "uv.lock", env, "me").lines() == ["old-python==2.0", "plain==3.0"]


def test_broken_lock_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "uv.lock").write_text("version = 1\n[[package]\n")
    with pytest.raises(ImageError) as error:
        read_pins(tmp_path / "uv.lock", Target((3, 11), "linux/amd64").marker_environment(), None)
    message = str(error.value)
    assert str(tmp_path / "uv.lock") in message and "tool.flyte.image.lock = false" in message


def test_wheelhouse_follows_the_lock(tmp_path: Path) -> None:
    """A lock with the lowest allowed flyte: the image gets that flyte, not the newest; with
    ``lock = false`` (or an explicit ``constraints``) the lock is not read."""
    root = tmp_path / "weather_pipeline"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("dist", "__pycache__", "*.egg-info"))
    uv("lock", "-q", "--resolution", "lowest-direct", cwd=root)
    project = load_project(root)
    wheel = build_wheel(root, tmp_path / "dist", isolation=False)
    info = BaseInfo("unused", "sha256:" + "0" * 64, "sha256:" + "0" * 64, "python3", (3, 11), "linux/amd64")
    env = Target((3, 11), "linux/amd64").marker_environment()
    locked_flyte = dict(read_pins(root / "uv.lock", env, project.name).pins)["flyte"]

    def flyte_in(plan: ImagePlan) -> str:
        names = [n for n, _ in plan.wheelhouse.files if n.startswith("flyte-")]
        assert len(names) == 1, names
        return names[0].split("-")[1]

    unlocked = flyte_in(plan_image(project, wheel, replace(project.config.image, lock=False), info))
    assert unlocked != locked_flyte, "the lowest allowed flyte is the newest: this test shows nothing"
    assert flyte_in(plan_image(project, wheel, project.config.image, info)) == locked_flyte
    (root / "constraints.txt").write_text("")
    explicit = replace(project.config.image, constraints="constraints.txt")
    assert flyte_in(plan_image(project, wheel, explicit, info)) == unlocked


def test_workspace_member_uses_the_workspace_lock(tmp_path: Path) -> None:
    """A uv workspace locks its members in one uv.lock at its root: a member's image follows it; a
    directory outside the repository, or a lock that does not name the project, is not used."""
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)  # the repository's root: the search stops here
    (root / "pyproject.toml").write_text(
        '[project]\nname = "monorepo"\nversion = "0"\nrequires-python = ">=3.10"\n\n'
        '[tool.uv.workspace]\nmembers = ["packages/*"]\n'
    )
    member = root / "packages" / "weather_pipeline"
    shutil.copytree(EXAMPLE, member, ignore=shutil.ignore_patterns("dist", "__pycache__", "*.egg-info"))
    uv("lock", "-q", cwd=root)
    assert not (member / "uv.lock").exists()
    assert find_lock(member, "weather-pipeline") == root / "uv.lock"
    assert find_lock(member, "someone-else") is None
    assert find_lock(member) is None  # without a name to check, only the project's own directory
    env = Target((3, 11), "linux/amd64").marker_environment()
    assert "flyte" in dict(read_pins(root / "uv.lock", env, "weather-pipeline").pins)
    # A lock above the repository's root is someone else's.
    outside = tmp_path / "uv.lock"
    shutil.copy(root / "uv.lock", outside)
    (root / "uv.lock").unlink()
    assert find_lock(member, "weather-pipeline") is None
