"""A light build plugin: what hatch-flyte requires, what its extras bring, and what it imports."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
from importlib import metadata
from pathlib import Path

import pytest
from flyte_names import flyte_bundle_name
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from hatch_flyte.config import load_toml
from hatch_flyte.errors import BuildError
from hatch_flyte.extras import EXTRAS

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "example_projects"
PYPROJECT = load_toml(REPO / "pyproject.toml")
#: What the build hook needs, and nothing more (issue: a build plugin that weighs almost nothing).
CORE = {"pathspec", "packaging", "tomli"}


def _extra_distributions(extra: str) -> set[str]:
    """Distributions an extra of hatch-flyte brings, following its references to other extras."""
    found: set[str] = set()
    for line in PYPROJECT["project"]["optional-dependencies"][extra]:
        req = Requirement(line)
        if canonicalize_name(req.name) == "hatch-flyte":
            for inner in req.extras:
                found |= _extra_distributions(inner)
        else:
            found.add(canonicalize_name(req.name))
    return found


def test_core_requirements_are_what_the_hook_needs() -> None:
    names = {canonicalize_name(Requirement(r).name) for r in PYPROJECT["project"]["dependencies"]}
    assert names == CORE


@pytest.mark.parametrize("extra", sorted(EXTRAS))
def test_each_extra_brings_the_modules_its_commands_check_for(extra: str) -> None:
    providers = metadata.packages_distributions()
    needed = {canonicalize_name(providers[module][0]) for module in EXTRAS[extra]}
    assert needed <= _extra_distributions(extra)
    assert _extra_distributions("all") >= _extra_distributions(extra)


def _hatchling_project(tmp_path: Path, hook_options: str) -> Path:
    (tmp_path / "src" / "orders").mkdir(parents=True)
    (tmp_path / "src" / "orders" / "__init__.py").write_text("")
    (tmp_path / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["hatchling", "hatch-flyte"]\nbuild-backend = "hatchling.build"\n'
        '[project]\nname = "orders"\nversion = "1.0"\n'
        f"[tool.hatch.build.targets.wheel.hooks.flyte]\n{hook_options}\n"
    )
    return tmp_path


@pytest.mark.parametrize(("options", "expected"), [("", []), ('bundle-dir = "dist"', ["isal>=1.6"])])
def test_hook_asks_for_isal_only_when_it_writes_a_bundle(
    tmp_path: Path, options: str, expected: list[str]
) -> None:
    """What hatchling answers to a frontend's ``get_requires_for_build_wheel``, for real."""
    project = _hatchling_project(tmp_path, options)
    code = "import hatchling.build, json; print(json.dumps(hatchling.build.get_requires_for_build_wheel()))"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=project, capture_output=True, text=True, check=True
    )
    assert json.loads(proc.stdout) == expected


def test_hook_registration_imports_nothing_of_the_pipeline() -> None:
    """hatchling registers the hook for every wheel build in the environment, used or not."""
    code = (
        "import sys, hatch_flyte.frontends.hatch.plugin as h\n"
        "h.hatch_register_build_hook()\n"
        "import json\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('hatch_flyte', 'isal')))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = json.loads(out)
    assert "hatch_flyte.frontends.hatch.hook" in loaded
    # The wings and the core's pipeline wait for a build that uses the hook (light value types such
    # as the errors or deploy's results may load with the package).
    wings = {"pipeline", "project", "config", "manifest", "wheel", "bundle", "discovery", "image"}
    heavy = [m for m in loaded if m.startswith("isal") or (m.split(".")[1:2] and m.split(".")[1] in wings)]
    assert heavy == []


def test_old_hatchling_is_refused_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    import hatchling.__about__

    from hatch_flyte.frontends.hatch.glue import check_hatchling

    check_hatchling()  # the installed one is new enough
    monkeypatch.setattr(hatchling.__about__, "__version__", "1.20.3")
    with pytest.raises(BuildError, match=r"needs hatchling>=1\.21, but this build runs hatchling 1\.20\.3"):
        check_hatchling()


@pytest.mark.slow
def test_core_install_bundles_and_names_the_missing_extras(tmp_path: Path, plugin_wheel: Path) -> None:
    """hatch-flyte with its core requirements only, in a fresh venv: the bundle works (zlib instead
    of isal), and what needs an extra says which, instead of a traceback."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", str(plugin_wheel)],
        check=True,
        capture_output=True,
    )
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "list", "--format", "json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert {canonicalize_name(d["name"]) for d in json.loads(listed)} - {"tomli"} == {
        "hatch-flyte",
        "pathspec",
        "packaging",
    }
    cli = venv / "bin" / "hatch-flyte"
    project = EXAMPLES / "weather_pipeline"

    proc = subprocess.run(
        [str(cli), "bundle", str(project), "-o", str(tmp_path / "out"), "--json", "--no-cache"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    bundle = json.loads(proc.stdout)
    assert bundle["name"] == flyte_bundle_name(project / "src")
    with tarfile.open(bundle["path"]) as tar:  # zlib's deflate: any gzip reader takes it
        assert sorted(tar.getnames()) == sorted(bundle["files"])

    proc = subprocess.run(
        [str(cli), "build", str(project), "-o", str(tmp_path / "dist")], capture_output=True, text=True
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert re.search(
        r"`hatch-flyte build` needs `build`, not installed in .*'hatch-flyte\[cli\]'", proc.stderr
    )
    assert not (tmp_path / "dist").exists()

    code = "from hatch_flyte.image import build_image"
    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    assert (
        "ImageError: building images needs `installer`" in proc.stderr and "hatch-flyte[image]" in proc.stderr
    )
