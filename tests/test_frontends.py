"""End to end with real frontends on temp copies of the example projects.

Each project's ``build-system.requires`` points at a wheel of this checkout (built once per session)
by ``file://`` URI, and the frontends build in isolation exactly as they would for a user.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from flyte_names import flyte_bundle_name
from frontend_helpers import BIN, _run, copy_project, wheel_flyte_metadata

pytestmark = pytest.mark.slow


WEATHER_EPS = {"weather": "weather_pipeline.tasks:env"}
ML_EPS = {
    "ml_base": "ml_platform:base",
    "features": "ml_platform.features.pipeline:features_env",
    "training": "ml_platform.training.train:training_env",
    "serving": "ml_platform.serving.app:serving_env",
}


def _check_wheel(wheel: Path, expected: dict[str, str], package: str) -> dict[str, Any]:
    eps, manifest = wheel_flyte_metadata(wheel)
    assert eps == expected
    assert manifest is not None, f"no flyte-manifest.json in {wheel.name}"
    assert manifest["schema_version"] == 1
    assert manifest["package"] == package
    assert manifest["wheel"] is None
    assert {e["name"] for e in manifest["environments"]} == set(expected)
    return manifest


# --- PEP 517 frontends and the build hook ----------------------------------------------------------


def test_pip_wheel_carries_entry_points_and_manifest(tmp_path: Path, plugin_wheel: Path) -> None:
    project = copy_project("weather_pipeline", tmp_path, plugin_wheel)
    out = tmp_path / "wheels"
    _run([str(BIN / "pip"), "wheel", "--no-deps", "-w", str(out), str(project)], cwd=tmp_path)
    (wheel,) = out.glob("weather_pipeline-0.3.0-*.whl")
    manifest = _check_wheel(wheel, WEATHER_EPS, "weather_pipeline")
    env = manifest["environments"][0]
    assert (env["module"], env["attribute"], env["file"]) == (
        "weather_pipeline.tasks",
        "env",
        "weather_pipeline/tasks.py",
    )
    assert manifest["project"] == {"name": "weather-pipeline", "version": "0.3.0"}


def test_python_m_build_sdist_then_wheel(tmp_path: Path, plugin_wheel: Path) -> None:
    project = copy_project("ml_platform", tmp_path, plugin_wheel)
    out = tmp_path / "out"
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(project)], cwd=tmp_path)
    (sdist,) = out.glob("ml_platform-1.4.2.tar.gz")
    (wheel,) = out.glob("ml_platform-1.4.2-*.whl")
    manifest = _check_wheel(wheel, ML_EPS, "ml_platform")
    deps = {e["name"]: e["depends_on"] for e in manifest["environments"]}
    assert deps == {
        "ml_base": [],
        "features": ["ml_base"],
        "training": ["features"],
        "serving": ["training", "ml_base"],
    }
    import tarfile

    with tarfile.open(sdist) as tf:
        assert not [n for n in tf.getnames() if re.search(r"fast[0-9a-f]{32}\.tar\.gz$", n)]
    # bundle-dir: the hook wrote the bundle next to the (unpacked) project it built from.
    assert manifest["bundle"] is not None and manifest["bundle"]["name"].startswith("fast")


def test_uv_build(tmp_path: Path, plugin_wheel: Path) -> None:
    project = copy_project("weather_pipeline", tmp_path, plugin_wheel)
    out = tmp_path / "out"
    _run([str(BIN / "uv"), "build", "--wheel", "--out-dir", str(out), str(project)], cwd=tmp_path)
    (wheel,) = out.glob("weather_pipeline-0.3.0-*.whl")
    _check_wheel(wheel, WEATHER_EPS, "weather_pipeline")


def test_wheel_is_reproducible_with_source_date_epoch(tmp_path: Path, plugin_wheel: Path) -> None:
    wheels = []
    for i in range(2):
        project = copy_project("ml_platform", tmp_path / f"copy{i}", plugin_wheel)
        out = tmp_path / f"out{i}"
        _run([str(BIN / "pip"), "wheel", "--no-deps", "-w", str(out), str(project)], cwd=tmp_path)
        (wheel,) = out.glob("*.whl")
        wheels.append(wheel.read_bytes())
    assert wheels[0] == wheels[1]


def test_editable_install_has_entry_points_and_no_bundle(tmp_path: Path, plugin_wheel: Path) -> None:
    project = copy_project("ml_platform", tmp_path, plugin_wheel)
    venv = tmp_path / "venv"
    _run([str(BIN / "uv"), "venv", "-q", "--python", sys.executable, str(venv)], cwd=tmp_path)
    _run(
        [
            str(BIN / "uv"),
            "pip",
            "install",
            "-q",
            "--python",
            str(venv / "bin" / "python"),
            "--no-deps",
            "-e",
            str(project),
        ],
        cwd=tmp_path,
    )
    code = (
        "import json; from importlib.metadata import entry_points as e; "
        "print(json.dumps({x.name: x.value for x in e(group='flyte.environments')}))"
    )
    proc = _run([str(venv / "bin" / "python"), "-c", code], cwd=tmp_path)
    assert json.loads(proc.stdout) == ML_EPS
    # hatch_flyte.installed_environments() lists them without importing the project.
    _run(
        [
            str(BIN / "uv"),
            "pip",
            "install",
            "-q",
            "--python",
            str(venv / "bin" / "python"),
            "--no-deps",
            str(plugin_wheel),
        ],
        cwd=tmp_path,
    )
    listing = (
        "import json, sys, hatch_flyte; envs = hatch_flyte.installed_environments(); "
        "print(json.dumps({'envs': [[e.name, e.module, e.attribute, e.distribution] for e in envs], "
        "'imported': 'ml_platform' in sys.modules}))"
    )
    data = json.loads(_run([str(venv / "bin" / "python"), "-c", listing], cwd=tmp_path).stdout)
    assert data["imported"] is False
    assert data["envs"] == sorted([[n, *ref.split(":"), "ml-platform"] for n, ref in ML_EPS.items()])
    assert not list((project / "dist").glob("fast*.tar.gz")), "an editable build must not write a bundle"


# --- hatch build -t flyte ----------------------------------------------------------------------------


def _hatch_build(
    project: Path, *targets: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    args = [str(BIN / "hatch"), "build"]
    for t in targets:
        args += ["-t", t]
    return _run(args, cwd=project, env={"HATCH_DATA_DIR": str(project.parent / ".hatch-data"), **(env or {})})


def _check_dist(
    dist: Path, root: Path, expected_eps: dict[str, str], includes: list[Path] | None = None
) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((dist / "flyte-manifest.json").read_text())
    (wheel,) = dist.glob("*.whl")
    (bundle,) = dist.glob("fast*.tar.gz")
    assert bundle.name == flyte_bundle_name(root, includes or [])
    assert manifest["bundle"]["name"] == bundle.name
    assert manifest["wheel"]["name"] == wheel.name
    import hashlib

    listed = {a["name"]: a for a in manifest["artifacts"]}
    assert set(listed) == {wheel.name, bundle.name}
    for path in (wheel, bundle):
        assert listed[path.name]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert listed[path.name]["size"] == path.stat().st_size
    assert manifest["wheel"]["sha256"] == listed[wheel.name]["sha256"]
    eps, _ = wheel_flyte_metadata(wheel)
    assert eps == expected_eps
    return manifest


def test_hatch_build_target_flyte(tmp_path: Path, plugin_wheel: Path) -> None:
    project = copy_project("weather_pipeline", tmp_path, plugin_wheel)
    proc = _hatch_build(project, "flyte")
    _check_dist(project / "dist", project / "src", WEATHER_EPS)
    assert "weather" in proc.stdout + proc.stderr
    # Versions select artifacts; -c first removes the selected versions' artifacts only.
    dist = project / "dist"
    (wheel,) = dist.glob("*.whl")
    stale = dist / ("fast" + "0" * 32 + ".tar.gz")
    stale.write_bytes(b"stale")
    _run(
        [str(BIN / "hatch"), "build", "-c", "-t", "flyte:bundle"],
        cwd=project,
        env={"HATCH_DATA_DIR": str(tmp_path / ".hatch-data")},
    )
    assert not stale.exists()
    assert [p.name for p in dist.glob("fast*.tar.gz")] == [flyte_bundle_name(project / "src")]
    assert wheel.exists()
    manifest = json.loads((dist / "flyte-manifest.json").read_text())
    assert [a["kind"] for a in manifest["artifacts"]] == ["bundle"] and manifest["wheel"] is None


def test_hatch_build_image_without_engine_keeps_wheel_and_bundle(tmp_path: Path, plugin_wheel: Path) -> None:
    project = copy_project("weather_pipeline", tmp_path, plugin_wheel)
    pyproject = project / "pyproject.toml"
    # Images need the `docker` extra in hatch's build environment, as the README says.
    extra = f"hatch-flyte[docker] @ {plugin_wheel.as_uri()}"
    pyproject.write_text(
        pyproject.read_text() + f'\n[tool.hatch.build.targets.flyte]\ndependencies = ["{extra}"]\n'
    )
    nowhere = f"unix://{tmp_path}/no-docker.sock"
    proc = _run(
        [str(BIN / "hatch"), "build", "-t", "flyte:wheel,bundle,image"],
        cwd=project,
        env={"HATCH_DATA_DIR": str(tmp_path / ".hatch-data"), "DOCKER_HOST": nowhere},
        ok=False,
    )
    assert proc.returncode != 0
    assert f"no Docker engine answered at {nowhere}" in proc.stdout + proc.stderr
    assert "the wheel and the bundle of this build are written all the same" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    dist = project / "dist"
    manifest = json.loads((dist / "flyte-manifest.json").read_text())
    assert manifest["image"] is None
    assert sorted(a["kind"] for a in manifest["artifacts"]) == ["bundle", "wheel"]
    (bundle,) = dist.glob("fast*.tar.gz")
    assert bundle.name == flyte_bundle_name(project / "src")
    assert _check_wheel(next(dist.glob("*.whl")), WEATHER_EPS, "weather_pipeline")


def test_hatch_build_reproducible(tmp_path: Path, plugin_wheel: Path) -> None:
    outputs = []
    for i in range(2):
        project = copy_project("ml_platform", tmp_path / f"c{i}", plugin_wheel)
        _hatch_build(project, "flyte")
        dist = project / "dist"
        outputs.append({p.name: p.read_bytes() for p in sorted(dist.iterdir()) if p.is_file()})
        root = project / "src"
        # flyte has no `ignores` setting: what our `ignores = ["notebooks/"]` leaves out is what
        # flyte leaves out once the directory is gone.
        shutil.rmtree(root / "ml_platform" / "notebooks")
        _check_dist(
            dist,
            root,
            ML_EPS,
            includes=[root / "ml_platform/assets/MODEL_CARD.md", root / "ml_platform/assets/labels.txt"],
        )
    assert outputs[0].keys() == outputs[1].keys()
    for name in outputs[0]:
        assert outputs[0][name] == outputs[1][name], name


# --- hatch-flyte build on any backend ------------------------------------------------------------------


def _uv_build_project(dest: Path) -> Path:
    project = dest / "uvproj"
    pkg = project / "src" / "uvproj"
    pkg.mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["uv_build>=0.8,<0.20"]\nbuild-backend = "uv_build"\n\n'
        '[project]\nname = "uvproj"\nversion = "0.1.0"\nrequires-python = ">=3.10"\n\n[tool.flyte]\n'
    )
    (pkg / "__init__.py").write_text("")
    (pkg / "jobs.py").write_text('import flyte\n\nuv_env = flyte.TaskEnvironment(name="uv_env")\n')
    return project


@pytest.mark.parametrize("kind", ["hatchling", "setuptools", "uv_build"])
def test_hatch_flyte_build_any_backend(tmp_path: Path, plugin_wheel: Path, kind: str) -> None:
    if kind == "hatchling":
        project, eps = copy_project("weather_pipeline", tmp_path, plugin_wheel), WEATHER_EPS
    elif kind == "setuptools":
        project, eps = copy_project("setuptools_etl", tmp_path, plugin_wheel), {"etl": "etl_jobs.flows:etl"}
    else:
        project, eps = _uv_build_project(tmp_path), {}
    proc = _run([str(BIN / "hatch-flyte"), "build", str(project), "--json"], cwd=tmp_path)
    manifest = json.loads(proc.stdout)
    dist = project / "dist"
    if kind == "uv_build":
        # uv_build knows nothing of hatch-flyte: the wheel has no Flyte metadata, the manifest does.
        (bundle,) = dist.glob("fast*.tar.gz")
        assert bundle.name == flyte_bundle_name(project / "src", [])
        assert [e["name"] for e in manifest["environments"]] == ["uv_env"]
    else:
        _check_dist(dist, project / "src", eps)
    assert manifest == json.loads((dist / "flyte-manifest.json").read_text())


def test_setuptools_pip_wheel(tmp_path: Path, plugin_wheel: Path) -> None:
    project = copy_project("setuptools_etl", tmp_path, plugin_wheel)
    out = tmp_path / "w"
    _run([str(BIN / "pip"), "wheel", "--no-deps", "-w", str(out), str(project)], cwd=tmp_path)
    (wheel,) = out.glob("setuptools_etl-2.0.1-*.whl")
    manifest = _check_wheel(wheel, {"etl": "etl_jobs.flows:etl"}, "etl_jobs")
    assert manifest["project"] == {"name": "setuptools-etl", "version": "2.0.1"}


def test_setuptools_without_table_is_untouched(tmp_path: Path, plugin_wheel: Path) -> None:
    """hatch-flyte in build requires but no [tool.flyte]: the wheel equals one built without it."""
    wheels = []
    for with_plugin in (True, False):
        project = copy_project("setuptools_etl", tmp_path / str(with_plugin), plugin_wheel)
        text = (project / "pyproject.toml").read_text().replace('[tool.flyte]\nroot-dir = "src"\n', "")
        if not with_plugin:
            text = re.sub(r',\s*"hatch-flyte @ [^"]+"', "", text)
        (project / "pyproject.toml").write_text(text)
        out = tmp_path / f"w{with_plugin}"
        _run([str(BIN / "pip"), "wheel", "--no-deps", "-w", str(out), str(project)], cwd=tmp_path)
        (wheel,) = out.glob("*.whl")
        wheels.append(wheel)
    assert "hatch-flyte @" not in (tmp_path / "False" / "setuptools_etl" / "pyproject.toml").read_text()
    with zipfile.ZipFile(wheels[0]) as a, zipfile.ZipFile(wheels[1]) as b:
        assert sorted(a.namelist()) == sorted(b.namelist())
        for name in a.namelist():
            assert a.read(name) == b.read(name), name


# --- bad input -----------------------------------------------------------------------------------------


def test_build_no_package_found(tmp_path: Path) -> None:
    project = tmp_path / "empty"
    project.mkdir()
    (project / "pyproject.toml").write_text('[project]\nname = "empty"\nversion = "1"\n[tool.flyte]\n')
    (project / "notes.txt").write_text("no package here\n")
    proc = _run([str(BIN / "hatch-flyte"), "build", str(project)], cwd=tmp_path, ok=False)
    assert proc.returncode == 1
    assert "no Python package found" in proc.stderr and "tool.flyte" in proc.stderr
    assert not (project / "dist").exists()


def test_build_unwritable_output_directory(tmp_path: Path, plugin_wheel: Path) -> None:
    project = copy_project("weather_pipeline", tmp_path, plugin_wheel)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    proc = _run(
        [str(BIN / "hatch-flyte"), "build", str(project), "-o", str(blocker / "dist")], cwd=tmp_path, ok=False
    )
    assert proc.returncode == 1
    assert str(blocker) in proc.stderr and "output directory" in proc.stderr


def test_build_failing_backend_leaves_nothing(tmp_path: Path, plugin_wheel: Path) -> None:
    project = copy_project("setuptools_etl", tmp_path, plugin_wheel)
    (project / "setup.py").write_text("raise SystemExit('setup.py refuses: BROKEN_ON_PURPOSE')\n")
    out = tmp_path / "out"
    proc = _run([str(BIN / "hatch-flyte"), "build", str(project), "-o", str(out)], cwd=tmp_path, ok=False)
    assert proc.returncode == 1
    assert "BROKEN_ON_PURPOSE" in proc.stdout + proc.stderr  # the backend's own error is shown
    assert "build backend" in proc.stderr
    assert list(out.iterdir()) == []


def test_hatch_build_without_flyte_table_uses_defaults_and_says_so(
    tmp_path: Path, plugin_wheel: Path
) -> None:
    project = copy_project("dynamic_envs", tmp_path, plugin_wheel)
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text()
    pyproject.write_text(text[: text.index("[tool.flyte]")])
    proc = _hatch_build(project, "flyte")
    output = proc.stdout + proc.stderr
    assert "no [tool.flyte] table in pyproject.toml; building with defaults" in output
    assert "unresolved dynamic_envs/jobs.py:8" in output  # static discovery names what it cannot resolve
    (bundle,) = (project / "dist").glob("fast*.tar.gz")
    assert bundle.name == flyte_bundle_name(project / "src")
    eps, manifest = wheel_flyte_metadata(next((project / "dist").glob("*.whl")))
    assert eps == {"static_jobs": "dynamic_envs.jobs:static_env"}
    assert manifest is not None and [u["attribute"] for u in manifest["unresolved"]] == ["regional"]


# --- [tool.flyte.bundle] copy-style ------------------------------------------------------------------


def _copy_style_project(dest: Path, plugin_wheel: Path, bundle_table: str) -> Path:
    project = dest / "styled"
    pkg = project / "src" / "styled"
    pkg.mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        f'[build-system]\nrequires = ["hatchling", "hatch-flyte @ {plugin_wheel.as_uri()}"]\n'
        'build-backend = "hatchling.build"\n\n'
        '[project]\nname = "styled"\nversion = "0.3.0"\nrequires-python = ">=3.10"\n\n'
        f"{bundle_table}"
    )
    (pkg / "__init__.py").write_text("")
    (pkg / "helpers.py").write_text("def label() -> str:\n    return 'styled'\n")
    (pkg / "unused.py").write_text("X = 1\n")
    (pkg / "jobs.py").write_text(
        "import flyte\n\nfrom styled.helpers import label\n\n"
        'styled_env = flyte.TaskEnvironment(name="styled")\n'
    )
    return project


def test_hatch_build_copy_style_none(tmp_path: Path, plugin_wheel: Path) -> None:
    project = _copy_style_project(tmp_path, plugin_wheel, '[tool.flyte.bundle]\ncopy-style = "none"\n')
    dist = project / "dist"
    for targets in (("flyte",), ("flyte:wheel,bundle",)):
        proc = _hatch_build(project, *targets)
        assert 'copy-style = "none": no code bundle is made' in proc.stdout + proc.stderr
        assert not list(dist.glob("fast*.tar.gz"))
        manifest = json.loads((dist / "flyte-manifest.json").read_text())
        assert manifest["bundle"] is None
        assert [a["kind"] for a in manifest["artifacts"]] == ["wheel"]
        assert [e["name"] for e in manifest["environments"]] == ["styled"]
        shutil.rmtree(dist)


def test_hatch_build_copy_style_loaded_modules(tmp_path: Path, plugin_wheel: Path) -> None:
    from flyte_oracle import LoadedJob, flyte_loaded_bundles

    # The build environment has neither flyte nor the project's dependencies: import with this one.
    table = (
        f'[tool.flyte]\npython = "{sys.executable}"\n\n[tool.flyte.bundle]\ncopy-style = "loaded-modules"\n'
    )
    project = _copy_style_project(tmp_path, plugin_wheel, table)
    _hatch_build(project, "flyte")
    (bundle,) = (project / "dist").glob("fast*.tar.gz")
    (expected,) = flyte_loaded_bundles(
        [LoadedJob(project / "src", tmp_path / "flyte", ("styled.jobs",))], tmp_path / "oracle"
    )
    assert expected.files == ("styled/__init__.py", "styled/helpers.py", "styled/jobs.py")
    assert bundle.name == expected.name
    manifest = json.loads((project / "dist" / "flyte-manifest.json").read_text())
    assert manifest["bundle"]["name"] == expected.name and manifest["bundle"]["files"] == 3


# --- nothing dropped in silence ------------------------------------------------------------------------

#: Build isolation is tested above; these tests are about what the hook says, so they skip the
#: isolated environment's installs (this checkout, editable, is the plugin).
PIP_WHEEL = [str(BIN / "pip"), "wheel", "--no-deps", "--no-build-isolation"]
UNRESOLVED = "unresolved dynamic_envs/jobs.py:8: the name of this TaskEnvironment"


@pytest.mark.parametrize("frontend", ["pip", "build", "uv", "hatch-flyte", "setuptools"])
def test_every_frontend_reports_unresolved_environments(
    tmp_path: Path, plugin_wheel: Path, frontend: str
) -> None:
    """Under PEP 517 frontends the hook's warnings reach stderr (pip shows a backend's output only
    with -v when the build succeeds: pip's choice)."""
    out = tmp_path / "out"
    if frontend == "setuptools":
        project = copy_project("setuptools_etl", tmp_path, plugin_wheel)
        jobs = project / "src" / "etl_jobs" / "dynamic.py"
        jobs.write_text('import os\nimport flyte\n\nx = flyte.TaskEnvironment(name=os.environ["N"])\n')
        pip = [str(BIN / "pip"), "wheel", "--no-deps", "-v", "-w", str(out), str(project)]
        proc = _run(pip, cwd=tmp_path)  # isolated: setuptools' wheel support is not installed here
        assert (
            "hatch-flyte: warning: unresolved etl_jobs/dynamic.py:4: the name of this TaskEnvironment"
            in proc.stdout + proc.stderr
        )
        return
    project = copy_project("dynamic_envs", tmp_path, plugin_wheel)
    cmd = {
        "pip": [*PIP_WHEEL, "-v", "-w", str(out), str(project)],
        "build": [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(project)],
        "uv": [str(BIN / "uv"), "build", "--wheel", "--out-dir", str(out), str(project)],
        "hatch-flyte": [str(BIN / "hatch-flyte"), "build", str(project), "-o", str(out)],
    }[frontend]
    proc = _run(cmd, cwd=tmp_path)
    assert UNRESOLVED in proc.stdout + proc.stderr
    (wheel,) = out.glob("*.whl")
    eps, manifest = wheel_flyte_metadata(wheel)
    assert eps == {"static_jobs": "dynamic_envs.jobs:static_env"}
    assert manifest is not None and [u["line"] for u in manifest["unresolved"]] == [8]


def test_strict_fails_the_build_under_pep_517(tmp_path: Path, plugin_wheel: Path) -> None:
    project = copy_project("dynamic_envs", tmp_path, plugin_wheel)
    pyproject = project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace("[tool.flyte]\n", "[tool.flyte]\nstrict = true\n"))
    out = tmp_path / "out"
    proc = _run([*PIP_WHEEL, "-w", str(out), str(project)], cwd=tmp_path, ok=False)
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "flyte: error: 1 item(s) that discovery could not resolve, an error with `strict = true`" in output
    assert "Traceback" not in output
    assert not list(out.glob("*.whl"))


def test_image_alone_that_fails_claims_nothing_else(tmp_path: Path, plugin_wheel: Path) -> None:
    project = copy_project("weather_pipeline", tmp_path, plugin_wheel)
    nowhere = f"unix://{tmp_path}/no-docker.sock"
    out = tmp_path / "out"
    proc = _run(
        [str(BIN / "hatch-flyte"), "build", str(project), "-t", "image", "--no-isolation", "-o", str(out)],
        cwd=tmp_path,
        env={"DOCKER_HOST": nowhere},
        ok=False,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"no Docker engine answered at {nowhere}" in proc.stderr
    assert "no wheel or bundle was asked for, so none was written; the manifest lists no image" in proc.stderr
    assert "written all the same" not in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["flyte-manifest.json"]


def test_hatch_build_target_flyte_says_each_warning_once_and_always_has_entry_points(
    tmp_path: Path, plugin_wheel: Path
) -> None:
    """The target's wheel carries the Flyte metadata even where the hook is not enabled, and the
    hook reuses the target's discovery (one discovery, each warning once)."""
    project = copy_project("dynamic_envs", tmp_path, plugin_wheel)
    pyproject = project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace("[tool.hatch.build.targets.wheel.hooks.flyte]\n", ""))
    proc = _hatch_build(project, "flyte")
    assert (proc.stdout + proc.stderr).count(UNRESOLVED) == 1, proc.stdout + proc.stderr
    eps, manifest = wheel_flyte_metadata(next((project / "dist").glob("*.whl")))
    assert eps == {"static_jobs": "dynamic_envs.jobs:static_env"}
    assert manifest is not None and [u["line"] for u in manifest["unresolved"]] == [8]
