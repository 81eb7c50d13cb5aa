"""Every project shape Flyte users lay out, through every frontend, against flyte itself.

For each shape (several top-level packages, a uv workspace member with a path dependency, a
workspace root whose members are packages, a script project, PEP 420 namespace packages):
``inspect --json``, ``hatch-flyte build``, ``hatch build -t flyte`` and ``pip wheel`` (hatchling
projects) find the environments flyte 2.12.1's own loader registers when it imports the code
(``flyte deploy --recursive``), the bundle name is flyte's for the same root, and every entry point
of every wheel loads in a fresh venv. Each project is built once per module.
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flyte_names import flyte_bundle_name
from flyte_oracle import LoadedEnvironment, flyte_environments
from frontend_helpers import BIN, _run, wheel_flyte_metadata

pytestmark = pytest.mark.slow

HATCHLING = """
[build-system]
requires = ["hatchling", "hatch-flyte"]
build-backend = "hatchling.build"
"""
HOOK = "\n[tool.hatch.build.targets.wheel.hooks.flyte]\n"

ENV = "import flyte\n\n"

#: Each shape: files (path -> text) and which of its directories are built, with their bundle root.
SHAPES: dict[str, dict[str, str]] = {
    # Several top-level packages in one src/: the package named after the project is *the* package,
    # environments come from all of them.
    "multi": {
        "pyproject.toml": HATCHLING
        + '[project]\nname = "Multi-App"\nversion = "0.1.0"\ndependencies = ["flyte"]\n'
        + "[tool.hatch.build.targets.wheel]\n"
        + 'packages = ["src/multi_app", "src/lib_models", "src/lib_steps"]\n'
        + HOOK
        + "[tool.flyte]\n",
        "src/multi_app/__init__.py": "",
        "src/multi_app/pipeline.py": ENV
        + "from lib_models.schema import FIELDS\nfrom lib_steps.steps import steps_env\n\n"
        + 'app_env = flyte.TaskEnvironment(name="multi_app", depends_on=[steps_env])\n\n\n'
        + "@app_env.task\nasync def run(x: int) -> int:\n    return x + len(FIELDS)\n",
        "src/lib_models/__init__.py": "",
        "src/lib_models/schema.py": 'FIELDS = ("a", "b")\n',
        "src/lib_steps/__init__.py": "",
        "src/lib_steps/steps.py": ENV + 'steps_env = flyte.TaskEnvironment(name="steps")\n',
    },
    # PEP 420: no __init__.py anywhere.
    "namespace": {
        "pyproject.toml": HATCHLING
        + '[project]\nname = "acme-flows"\nversion = "2.0.0"\ndependencies = ["flyte"]\n'
        + '[tool.hatch.build.targets.wheel]\npackages = ["src/acme"]\n'
        + HOOK,
        "src/acme/flows/etl.py": ENV + 'etl_env = flyte.TaskEnvironment(name="ns_etl")\n',
        "src/acme/flows/ml.py": ENV
        + "from acme.flows.etl import etl_env\n\n"
        + 'ml_env = flyte.TaskEnvironment(name="ns_ml", depends_on=[etl_env])\n',
        "src/acme/README.md": "data files ride along in the bundle\n",
    },
    # A uv workspace: the root holds no code; ws_app depends on ws_lib by a workspace path source and
    # its environment depends on ws_lib's.
    "workspace": {
        "pyproject.toml": '[project]\nname = "ws"\nversion = "0"\n\n'
        + '[tool.uv.workspace]\nmembers = ["packages/*"]\n',
        "packages/ws_lib/pyproject.toml": HATCHLING
        + '[project]\nname = "ws-lib"\nversion = "1.0.0"\ndependencies = ["flyte"]\n'
        + HOOK,
        "packages/ws_lib/src/ws_lib/__init__.py": "",
        "packages/ws_lib/src/ws_lib/envs.py": ENV
        + 'lib_env = flyte.TaskEnvironment(name="ws_lib")\n\n\n'
        + "def double(x: int) -> int:\n    return 2 * x\n",
        "packages/ws_app/pyproject.toml": HATCHLING
        + '[project]\nname = "ws-app"\nversion = "1.0.0"\ndependencies = ["flyte", "ws-lib"]\n'
        + "\n[tool.uv.sources]\nws-lib = { workspace = true }\n"
        + HOOK,
        "packages/ws_app/src/ws_app/__init__.py": "",
        "packages/ws_app/src/ws_app/main.py": ENV
        + "from ws_lib.envs import double, lib_env\n\n"
        + 'app_env = flyte.TaskEnvironment(name="ws_app", depends_on=[lib_env])\n\n\n'
        + "@app_env.task\nasync def run(x: int) -> int:\n    return double(x)\n",
    },
    # A workspace whose members are packages themselves: flyte's practice is --root-dir at the
    # common parent, from which `app_pkg.main` and `lib_pkg.envs` import.
    "flatws": {
        "pyproject.toml": '[project]\nname = "flatws"\nversion = "0"\n\n'
        + '[tool.uv.workspace]\nmembers = ["app_pkg", "lib_pkg"]\n',
        "app_pkg/pyproject.toml": '[project]\nname = "app-pkg"\nversion = "0"\n',
        "app_pkg/__init__.py": "",
        "app_pkg/main.py": ENV
        + "from lib_pkg.envs import base_env\n\n"
        + 'app_env = flyte.TaskEnvironment(name="flat_app", depends_on=[base_env])\n',
        "lib_pkg/pyproject.toml": '[project]\nname = "lib-pkg"\nversion = "0"\n',
        "lib_pkg/__init__.py": "",
        "lib_pkg/envs.py": ENV + 'base_env = flyte.TaskEnvironment(name="flat_base")\n',
    },
    # A script project: top-level modules, no package, no build backend.
    "script": {
        "pyproject.toml": '[project]\nname = "nightly-scripts"\nversion = "0.1.0"\ndependencies = ["flyte"]\n'
        + "\n[tool.flyte]\n",
        "main.py": ENV + "import helpers\n\n" + 'env = flyte.TaskEnvironment(name="script_env")\n',
        "helpers.py": "def add(a: int, b: int) -> int:\n    return a + b\n",
        "report.py": ENV
        + "from main import env\n\n"
        + 'report_env = flyte.TaskEnvironment(name="report", depends_on=[env])\n',
    },
}


@dataclass(frozen=True)
class Case:
    """A directory that is built, its bundle root, and what else must be importable at run time."""

    shape: str
    directory: str
    root: str
    hatchling: bool
    package: str | None
    dependency_roots: tuple[str, ...] = ()


CASES = [
    Case("multi", ".", "src", True, "multi_app"),
    Case("namespace", ".", "src", True, "acme"),
    Case("workspace", "packages/ws_app", "packages/ws_app/src", True, "ws_app", ("packages/ws_lib/src",)),
    Case("flatws", ".", ".", False, None),
    Case("script", ".", ".", False, None),
]


@dataclass
class Built:
    """What every frontend said about one case."""

    case: Case
    top: Path
    project: Path
    inspect: dict[str, Any]
    oracle: list[LoadedEnvironment]
    build: dict[str, Any]
    build_stderr: str
    wheels: list[Path] = field(default_factory=list)
    hatch: dict[str, Any] | None = None
    pip_wheel: Path | None = None


def write_shape(dest: Path, files: dict[str, str], plugin_wheel: Path) -> Path:
    for rel, text in files.items():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.replace('"hatch-flyte"', f'"hatch-flyte @ {plugin_wheel.as_uri()}"'))
    return dest


def hatch_flyte(*args: str, cwd: Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    return _run([str(BIN / "hatch-flyte"), *args], cwd=cwd, ok=ok)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, plugin_wheel: Path) -> dict[str, Built]:
    base = tmp_path_factory.mktemp("shapes")
    out: dict[str, Built] = {}
    for case in CASES:
        top = write_shape(base / case.shape, SHAPES[case.shape], plugin_wheel)
        project = top / case.directory
        inspect = json.loads(hatch_flyte("inspect", str(project), "--json", cwd=base).stdout)
        oracle = flyte_environments(
            top / case.root, base / f"oracle-{case.shape}", [top / r for r in case.dependency_roots]
        )
        # Without isolation (here and for pip): isolated builds are tested in test_frontends; here they
        # would only install the same hatchling and plugin again, for most of the time taken.
        cli_out = base / f"cli-{case.shape}"
        proc = hatch_flyte("build", str(project), "--json", "--no-isolation", "-o", str(cli_out), cwd=base)
        item = Built(case, top, project, inspect, oracle, json.loads(proc.stdout), proc.stderr)
        if case.hatchling:
            hatch_dist = base / f"hatch-{case.shape}"
            _run(
                [str(BIN / "hatch"), "build", "-t", "flyte", str(hatch_dist)],
                cwd=project,
                env={"HATCH_DATA_DIR": str(base / ".hatch-data")},
            )
            item.hatch = json.loads((hatch_dist / "flyte-manifest.json").read_text())
            (item.pip_wheel,) = _pip_wheel(project, base / f"pip-{case.shape}")
            item.wheels = [*hatch_dist.glob("*.whl")]
        out[case.shape] = item
    return out


def _pip_wheel(project: Path, out: Path) -> list[Path]:
    _run(
        [str(BIN / "pip"), "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(project)],
        cwd=project,
    )
    return sorted(out.glob("*.whl"))


def _ours(environments: list[dict[str, Any]], dependencies: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
    """(name, module:attribute, depends_on) of the project's environments and of the dependency
    environments they name (flyte's registry holds both once the code is imported)."""
    envs: set[tuple[Any, ...]] = {
        (e["name"], f"{e['module']}:{e['attribute']}", tuple(sorted(e["depends_on"]))) for e in environments
    }
    by_name = {e["name"]: e for e in environments}
    for dep in dependencies:
        assert dep["name"] not in by_name
        envs.add((dep["name"], f"{dep['module']}:{dep['attribute']}", None))
    return envs


def _flyte(oracle: list[LoadedEnvironment], dependencies: set[str]) -> set[tuple[Any, ...]]:
    out = set()
    for env in oracle:
        (binding,) = env.bindings  # one module-level name in its own module
        out.add((env.name, binding, None if env.name in dependencies else env.depends_on))
    return out


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.shape)
def test_every_frontend_finds_what_flyte_loads(built: dict[str, Built], case: Case) -> None:
    b = built[case.shape]
    deps = {d["name"] for d in b.inspect["dependency_environments"]}
    expected = _flyte(b.oracle, deps)
    assert len(expected) >= 2
    assert _ours(b.inspect["environments"], b.inspect["dependency_environments"]) == expected
    assert b.inspect["unresolved"] == []
    assert b.inspect["package"] == case.package
    assert _ours(b.build["environments"], b.build["dependency_environments"]) == expected
    assert b.build["package"] == case.package
    # The bundle is flyte's for the same root.
    assert b.inspect["bundle"]["name"] == flyte_bundle_name(b.top / case.root)
    assert b.build["bundle"]["name"] == b.inspect["bundle"]["name"]
    if case.hatchling:
        assert b.hatch is not None and b.pip_wheel is not None
        assert _ours(b.hatch["environments"], b.hatch["dependency_environments"]) == expected
        assert b.hatch["bundle"]["name"] == b.inspect["bundle"]["name"]
        own = {(n, ref) for n, ref, deps_ in expected if deps_ is not None}
        for wheel in [*b.wheels, b.pip_wheel]:
            eps, manifest = wheel_flyte_metadata(wheel)
            assert set(eps.items()) == own, wheel
            assert manifest is not None and manifest["package"] == case.package
            assert _ours(manifest["environments"], manifest["dependency_environments"]) == expected
    else:
        # No build backend (or none that makes a wheel of it): a bundle and a manifest, no wheel.
        assert b.build["wheel"] is None
        assert [a["kind"] for a in b.build["artifacts"]] == ["bundle"]


def test_entry_points_load_in_a_fresh_venv(built: dict[str, Built], tmp_path: Path) -> None:
    """Every wheel's entry points import with only the wheels installed (flyte from this venv),
    the workspace member's path dependency from the wheel hatch-flyte builds for the image."""
    from hatch_flyte.image.wheelhouse import local_dependency_wheels
    from hatch_flyte.project import load_project

    ws = built["workspace"]
    local = local_dependency_wheels(load_project(ws.project), tmp_path / "local")
    assert [w.name.split("-")[0] for w in local] == ["ws_lib"]
    wheels = [b.pip_wheel for b in built.values() if b.pip_wheel is not None] + local
    venv = tmp_path / "venv"
    _run([str(BIN / "uv"), "venv", "-q", "--python", sys.executable, str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=tmp_path)
    # flyte and its dependencies from the test environment, after the venv's own site-packages.
    Path(site.stdout.strip(), "zz-flyte.pth").write_text(sysconfig.get_path("purelib") + "\n")
    _run(
        [str(BIN / "uv"), "pip", "install", "-q", "--python", str(python), "--no-deps", *map(str, wheels)],
        cwd=tmp_path,
    )
    code = textwrap.dedent(
        """
        import json
        from importlib.metadata import entry_points
        import flyte
        out = {}
        for ep in entry_points(group="flyte.environments"):
            env = ep.load()
            assert isinstance(env, flyte.Environment), ep
            out[ep.name] = [env.name, sorted(d.name for d in env.depends_on)]
        print(json.dumps(out))
        """
    )
    loaded = json.loads(_run([str(python), "-c", code], cwd=tmp_path).stdout)
    assert loaded == {
        "multi_app": ["multi_app", ["steps"]],
        "steps": ["steps", []],
        "ns_etl": ["ns_etl", []],
        "ns_ml": ["ns_ml", ["ns_etl"]],
        "ws_lib": ["ws_lib", []],
        "ws_app": ["ws_app", ["ws_lib"]],
    }


def test_workspace_root_names_the_members_and_the_command(built: dict[str, Built]) -> None:
    root = built["workspace"].top
    proc = hatch_flyte("inspect", str(root), cwd=root, ok=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert (
        "is a workspace root with no Python code of its own; its members packages/ws_app (1 environment)"
        in (proc.stderr)
    )
    assert "packages/ws_lib (1 environment) hold Flyte environments" in proc.stderr
    assert "`hatch-flyte build packages/ws_app`" in proc.stderr


def test_workspace_member_manifest_names_the_dependency_distribution(built: dict[str, Built]) -> None:
    deps = built["workspace"].build["dependency_environments"]
    assert deps == [
        {
            "attribute": "lib_env",
            "distribution": "ws-lib",
            "kind": "TaskEnvironment",
            "module": "ws_lib.envs",
            "name": "ws_lib",
        }
    ]


def test_environments_the_wheel_does_not_hold_are_named(tmp_path: Path, plugin_wheel: Path) -> None:
    """Several packages in src/ but a backend told to ship one (uv_build's default module-name,
    hatch's `packages`): the bundle holds every package, the wheel does not, and the builds say so
    (the hook leaves the entry points that could never load out of the wheel)."""
    files = dict(SHAPES["multi"])
    pyproject = files.pop("pyproject.toml")
    uv = write_shape(tmp_path / "uv", files, plugin_wheel)
    (uv / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["uv_build>=0.8,<0.20"]\nbuild-backend = "uv_build"\n\n'
        '[project]\nname = "multi-app"\nversion = "0.1.0"\ndependencies = ["flyte"]\n'
    )
    proc = hatch_flyte("build", str(uv), "--json", cwd=tmp_path)
    assert (
        "the wheel multi_app-0.1.0-py3-none-any.whl does not contain lib_steps, where environment(s) steps"
        in (proc.stderr)
    )
    assert {e["name"] for e in json.loads(proc.stdout)["environments"]} == {"multi_app", "steps"}
    proc = hatch_flyte("build", str(uv), "-t", "wheel,bundle,image", "--strict", cwd=tmp_path, ok=False)
    assert proc.returncode == 1 and "does not contain lib_steps" in proc.stderr

    hatch = write_shape(tmp_path / "hatch", files, plugin_wheel)
    (hatch / "pyproject.toml").write_text(
        pyproject.replace('"src/multi_app", "src/lib_models", "src/lib_steps"', '"src/multi_app"')
    )
    (wheel,) = _pip_wheel(hatch, tmp_path / "wheels")
    eps, manifest = wheel_flyte_metadata(wheel)
    assert eps == {"multi_app": "multi_app.pipeline:app_env"}
    assert manifest is not None and {e["name"] for e in manifest["environments"]} == {"multi_app", "steps"}
