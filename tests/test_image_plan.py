"""Planning an image, whichever backend builds it: does the project's own wheel run on the image?

The wheel is laid out into the image's venv on the host (no pip in the image to refuse it), so a
wheel for another Python or platform must be refused before anything is built. Expected answers
follow PEP 425 (a ``py3`` wheel runs on any Python 3, ``abi3`` from an older CPython runs on a newer
one, a ``cp312`` wheel does not run on 3.11) and PEP 600 (``manylinux_2_17_x86_64`` is an x86_64
glibc wheel).
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from hatch_flyte.errors import ImageError
from hatch_flyte.image import build_image
from hatch_flyte.image.wheelhouse import Target, check_wheel_fits
from hatch_flyte.project import load_project
from hatch_flyte.wheel import build_wheel

EXAMPLE = Path(__file__).resolve().parent.parent / "example_projects" / "weather_pipeline"
AMD64_311 = Target((3, 11), "linux/amd64")


@pytest.mark.parametrize(
    ("name", "runs"),
    [
        ("p-1.0-py3-none-any.whl", True),
        ("p-1.0-py311-none-any.whl", True),
        ("p-1.0-cp311-none-any.whl", True),
        ("p-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", True),
        ("p-1.0-cp311-cp311-linux_x86_64.whl", True),
        ("p-1.0-cp38-abi3-manylinux2014_x86_64.whl", True),
        ("p-1.0-py2-none-any.whl", False),
        ("p-1.0-cp312-cp312-manylinux_2_17_x86_64.whl", False),
        ("p-1.0-cp312-abi3-manylinux_2_17_x86_64.whl", False),
        ("p-1.0-cp311-cp311-manylinux_2_17_aarch64.whl", False),
        ("p-1.0-cp311-cp311-macosx_11_0_arm64.whl", False),
        ("p-1.0-cp311-cp311-win_amd64.whl", False),
    ],
)
def test_project_wheel_must_run_on_the_image(name: str, runs: bool) -> None:
    if runs:
        check_wheel_fits(Path(name), AMD64_311)
    else:
        with pytest.raises(ImageError, match=r"does not run on the image's Python 3\.11 on linux/amd64"):
            check_wheel_fits(Path(name), AMD64_311)


def test_arm64_target() -> None:
    check_wheel_fits(Path("p-1.0-cp311-cp311-manylinux_2_28_aarch64.whl"), Target((3, 11), "linux/arm64"))
    with pytest.raises(ImageError):
        check_wheel_fits(Path("p-1.0-cp311-cp311-manylinux_2_28_x86_64.whl"), Target((3, 11), "linux/arm64"))


def test_build_refuses_a_wheel_for_another_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """End to end with the OCI backend (no engine): the error comes before any output."""
    from test_image_oci import NO_DOCKER, fake_base

    root = tmp_path / "weather_pipeline"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("dist", "__pycache__", "*.egg-info"))
    wheel = build_wheel(root, tmp_path / "dist", isolation=False)  # creates dist/
    foreign = wheel.with_name(wheel.name.replace("-py3-none-any", "-cp312-cp312-manylinux_2_17_x86_64"))
    wheel.rename(foreign)
    project = load_project(root)
    base = fake_base(tmp_path / "base")  # Python 3.11
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setenv("DOCKER_HOST", NO_DOCKER)
    config = replace(project.config.image, backend="oci", base=f"oci:{base}:1")
    with pytest.raises(ImageError) as error:
        build_image(project, foreign, config, output_dir=out)
    assert foreign.name in str(error.value) and "tool.flyte.image.base" in str(error.value)
    assert list(out.iterdir()) == []


@pytest.mark.parametrize(
    ("requires_python", "building", "expected"),
    [
        (None, (3, 11), "python:3.11-slim-bookworm"),
        (">=3.10", (3, 11), "python:3.11-slim-bookworm"),
        (">=3.12", (3, 11), "python:3.12-slim-bookworm"),  # the oldest series the project allows
        ("<3.11", (3, 12), "python:3.9-slim-bookworm"),
        (">=3.11.4,<3.12", (3, 11), "python:3.11-slim-bookworm"),  # the image has the newest 3.11
        ("~=3.13.0", (3, 10), "python:3.13-slim-bookworm"),
        (">=4", (3, 11), "python:3.11-slim-bookworm"),  # nothing fits: the building Python's
        ("not a specifier", (3, 11), "python:3.11-slim-bookworm"),
    ],
)
def test_default_base_matches_the_projects_python(
    requires_python: str | None, building: tuple[int, int], expected: str
) -> None:
    from hatch_flyte.image import default_base

    assert default_base(requires_python, building) == expected


def test_dependency_only_plan_hashes_only_what_is_in_the_image(tmp_path: Path) -> None:
    """``include-project = false``: the content tag follows the dependencies, base and platform, not
    the code or the version; the wheel's metadata and the static ``[project]`` table plan the same."""
    from hatch_flyte.image import BaseInfo, ProjectMetadata, plan_image

    root = tmp_path / "weather_pipeline"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("dist", "__pycache__", "*.egg-info"))
    base = BaseInfo("base:1", "sha256:" + "1" * 64, None, "/usr/bin/python3", (3, 11), "linux/amd64")

    def plans(include_project: bool) -> list[str]:
        tags = []
        for n, version in enumerate(("0.3.0", "0.3.0", "0.4.0")):
            pyproject = root / "pyproject.toml"
            pyproject.write_text(pyproject.read_text().replace('version = "0.3.0"', f'version = "{version}"'))
            (root / "src" / "weather_pipeline" / "tasks.py").write_text(f"# code change {n}\n")
            wheel = build_wheel(root, tmp_path / f"dist-{include_project}-{n}", isolation=False)
            project = load_project(root)
            config = replace(project.config.image, include_project=include_project)
            plan = plan_image(project, wheel, config, base)
            assert plan.contents == ("full" if include_project else "dependencies")
            tags.append(plan.content_tag())
            if not include_project:
                static = ProjectMetadata.from_pyproject(project)
                assert plan_image(project, None, config, base, metadata=static).content_tag() == tags[-1]
                assert not {"version", "revision", "description"} & {
                    k.rpartition(".")[2] for k in plan.labels
                }
            pyproject.write_text(pyproject.read_text().replace(f'version = "{version}"', 'version = "0.3.0"'))
        return tags

    assert len(set(plans(include_project=False))) == 1
    assert len(set(plans(include_project=True))) == 3
    other_base = replace(base, id="sha256:" + "2" * 64)
    project = load_project(root)
    config = replace(project.config.image, include_project=False)
    assert plan_image(project, None, config, other_base).content_tag() != plans(include_project=False)[0]


def test_docker_build_steps_are_reported_with_their_time(caplog: pytest.LogCaptureFixture) -> None:
    """The engine's build stream (as the docker SDK decodes it) becomes one progress line per step,
    logged when the step ends; a failure carries the engine's own message and its last lines."""
    from hatch_flyte.image.docker.backend import _consume_build

    stream: list[dict[str, Any]] = [
        {"stream": "Step 1/3 : FROM hatch-flyte/deps:h0123\n"},
        {"stream": " ---> 1a2b\n"},
        {"stream": "Step 2/3 : ENV _F_IMG_ID=weather-pipeline:h42\n"},
        {"stream": "Step 3/3 : COPY   venv/ /opt/venv/\n"},
        {"aux": {"ID": "sha256:feed"}},
    ]
    with caplog.at_level("INFO", logger="hatch_flyte.progress"):
        assert _consume_build(stream) == "sha256:feed"
    lines = [r.getMessage() for r in caplog.records if r.name == "hatch_flyte.progress"]
    assert [line.rsplit(" (", 1)[0] for line in lines] == [
        "docker: [1/3] FROM hatch-flyte/deps:h0123",
        "docker: [2/3] ENV _F_IMG_ID=weather-pipeline:h42",
        "docker: [3/3] COPY venv/ /opt/venv/",
    ]
    assert all(line.endswith("s)") for line in lines)
    failing: list[dict[str, Any]] = [
        {"stream": "Step 1/2 : RUN pip install x\n"},
        {"stream": "ERROR: No matching distribution found for x\n"},
        {"errorDetail": {"message": "The command returned a non-zero code: 1"}},
    ]
    with pytest.raises(ImageError) as info:
        _consume_build(failing)
    assert "The command returned a non-zero code: 1" in str(info.value)
    assert "No matching distribution found for x" in str(info.value)


def test_local_path_dependencies_go_into_the_wheelhouse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `path` source the project depends on is built into a wheel that the wheelhouse takes
    (no index has it); the wheelhouse's cache key follows that wheel's bytes."""
    from packaging.requirements import Requirement

    from hatch_flyte.image.wheelhouse import build_wheelhouse, local_dependency_wheels

    monkeypatch.setenv("HATCH_FLYTE_CACHE_DIR", str(tmp_path / "cache"))
    lib = tmp_path / "tiny_lib"
    (lib / "tiny_lib").mkdir(parents=True)
    (lib / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n'
        '[project]\nname = "tiny-lib"\nversion = "0.1.0"\n'
    )
    (lib / "tiny_lib" / "__init__.py").write_text("VALUE = 1\n")
    app = tmp_path / "app"
    (app / "app").mkdir(parents=True)
    (app / "app" / "__init__.py").write_text("")
    (app / "pyproject.toml").write_text(
        '[project]\nname = "app"\nversion = "1"\ndependencies = ["tiny-lib"]\n\n'
        '[tool.uv.sources]\ntiny-lib = { path = "../tiny_lib" }\n'
    )
    (local,) = local_dependency_wheels(load_project(app), tmp_path / "local")
    assert local.name == "tiny_lib-0.1.0-py2.py3-none-any.whl"
    house = build_wheelhouse([Requirement("tiny-lib")], AMD64_311, local_wheels=[local])
    assert "tiny_lib-0.1.0-py2.py3-none-any.whl" in {name for name, _ in house.files}
    (lib / "tiny_lib" / "__init__.py").write_text("VALUE = 2\n")
    (changed,) = local_dependency_wheels(load_project(app), tmp_path / "local2")
    other = build_wheelhouse([Requirement("tiny-lib")], AMD64_311, local_wheels=[changed])
    assert other.directory != house.directory
