"""One build lists each directory of the tree once, whichever frontend runs it (issue: one build
session). Counted for real: ``os.scandir`` is wrapped, and the calls made by hatch-flyte's code
(not hatchling's own file selection) are counted per directory."""

from __future__ import annotations

import collections
import os
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from hatch_flyte.frontends import cli

DEEP = ("src", "orders", "pricing", "rules", "regional")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "orders"
    deep = root.joinpath(*DEEP)
    deep.mkdir(parents=True)
    for directory in [root.joinpath(*DEEP[:i]) for i in range(2, len(DEEP) + 1)]:
        (directory / "__init__.py").write_text("")
    (root / "src" / "orders" / "tasks.py").write_text(
        'import flyte\n\nenv = flyte.TaskEnvironment(name="orders")\n\n\n@env.task\nasync def f() -> int:\n'
        "    return 1\n"
    )
    (deep / "eu.py").write_text("RATE = 0.2\n")
    (deep / "secrets.env").write_text("")
    (root / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["hatchling", "hatch-flyte"]\nbuild-backend = "hatchling.build"\n'
        '[project]\nname = "orders"\nversion = "1.0"\n'
        '[tool.hatch.build.targets.wheel.hooks.flyte]\nbundle-dir = "dist"\n'
        "[tool.flyte.image]\nsource = true\n"
    )
    return root


@pytest.fixture
def scans(monkeypatch: pytest.MonkeyPatch) -> collections.Counter[str]:
    """Directories listed by hatch-flyte's code, counted."""
    counter: collections.Counter[str] = collections.Counter()
    real = os.scandir

    def counting(path: Any = ".") -> Any:
        frame: FrameType | None = sys._getframe(1)
        while frame is not None and frame.f_globals.get("__name__") == "os":
            frame = frame.f_back
        if frame is not None and str(frame.f_globals.get("__name__", "")).startswith("hatch_flyte"):
            counter[os.fspath(path)] += 1
        return real(path)

    monkeypatch.setattr(os, "scandir", counting)
    return counter


def _deep_counts(project: Path, scans: collections.Counter[str]) -> list[int]:
    """How often each directory from the project's src/ down to the deepest was listed."""
    return [scans[str(project.joinpath(*DEEP[:i]))] for i in range(1, len(DEEP) + 1)]


@pytest.mark.parametrize(
    "command",
    [
        ["bundle", "{project}", "-o", "{out}"],
        ["inspect", "{project}", "--json"],
        ["build", "{project}", "-t", "bundle", "-o", "{out}"],
    ],
    ids=["bundle", "inspect", "build"],
)
def test_cli_lists_each_directory_once(
    project: Path, tmp_path: Path, scans: collections.Counter[str], command: list[str]
) -> None:
    args = [a.format(project=project, out=tmp_path / "out") for a in command]
    assert cli.main(args) == 0
    assert _deep_counts(project, scans) == [1] * len(DEEP)


def test_hatch_builder_and_its_hook_list_each_directory_once(
    project: Path, tmp_path: Path, scans: collections.Counter[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``hatch build -t flyte:wheel,bundle`` in-process: the wheel's build hook joins the builder's
    session (its bundle goes to its own bundle-dir, from the same walk)."""
    from hatch_flyte.frontends.hatch.builder import FlyteBuilder

    monkeypatch.chdir(project)
    built = list(
        FlyteBuilder(str(project)).build(directory=str(tmp_path / "out"), versions=["wheel", "bundle"])
    )
    assert len(built) == 2 and list((project / "dist").glob("fast*.tar.gz"))
    assert _deep_counts(project, scans) == [1] * len(DEEP)


def test_build_hook_alone_lists_each_directory_once(
    project: Path, tmp_path: Path, scans: collections.Counter[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What pip, build and uv run: hatchling's PEP 517 build_wheel, with the hook writing a bundle."""
    import hatchling.build

    monkeypatch.chdir(project)
    hatchling.build.build_wheel(str(tmp_path / "out"))
    assert list((project / "dist").glob("fast*.tar.gz"))
    assert _deep_counts(project, scans) == [1] * len(DEEP)
