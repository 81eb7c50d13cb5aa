"""``[tool.flyte.bundle] copy-style``: "loaded-modules" against flyte 2.12.1 itself, and "none".

For "loaded-modules" the expected bundle is flyte's own ``build_code_bundle(copy_style=
"loaded_modules")`` run in a process that imported the environments' modules the way ``flyte
deploy`` does (see :func:`flyte_oracle.flyte_loaded_bundles`); hatch-flyte must give the same file
list, name and tar bytes (and, in compatible compression, the same ``.tar.gz`` bytes).
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from flyte_oracle import GIT_ENV, TOOLS, FlyteBundle, LoadedJob, flyte_loaded_bundles, tar_member_names

from hatch_flyte.bundle import BundleOptions, build
from hatch_flyte.errors import DiscoveryError, SecretsError
from hatch_flyte.frontends.cli import main
from hatch_flyte.pipeline import Session
from hatch_flyte.project import load_project


def write(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def git_commit(directory: Path) -> None:
    for args in (
        ["init", "-q"],
        ["add", "-A"],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"],
    ):
        subprocess.run(["git", *args], cwd=directory, env=GIT_ENV, check=True, capture_output=True)


def pyproject(directory: Path, name: str, flyte: str) -> None:
    write(directory / "pyproject.toml", f'[project]\nname = "{name}"\nversion = "1.0"\n\n{flyte}')


def flat_project(base: Path) -> tuple[Path, LoadedJob]:
    """A flat layout (the root is the project directory) with most of what a bundle meets:
    a utility package shared by two environment modules, an unused module, a namespace package,
    a module that is gitignored (untracked) and .flyteignored yet imported, data files added by
    ``tool.flyte.bundle.include`` and by an environment's ``include``, and a lazy import."""
    root = base / "flat"
    pyproject(
        root,
        "lmflat",
        '[tool.flyte.bundle]\ncopy-style = "loaded-modules"\ninclude = ["data/lookup.csv", "conf"]\n',
    )
    write(root / "lmflat/__init__.py", '"""Flat project."""\n')
    write(root / "lmflat/shared/__init__.py", "from lmflat.shared.units import KB\n")
    write(root / "lmflat/shared/units.py", "KB = 1024\n")
    write(root / "lmflat/shared/text.py", "def shout(s: str) -> str:\n    return s.upper()\n")
    write(root / "lmflat/shared/unused_helper.py", "UNUSED = True\n")
    write(root / "lmflat/generated.py", "BUILD = 'dev'\n")
    write(root / "lmflat/unused.py", "import lmflat.shared.units\n")
    write(root / "lmflat/lazy_only.py", "LAZY = 1\n")
    write(
        root / "lmflat/workflows/train.py",
        """
        import flyte

        from lmflat import generated
        from lmflat.shared import text

        env = flyte.TaskEnvironment(name="lm-train", include=["prompts/system.txt", "prompts/*.md"])


        @env.task
        async def train(n: int) -> str:
            # Imported when the task runs, not when the module loads: only ruff's graph sees it.
            from lmflat import lazy_only

            return text.shout(generated.BUILD) + str(n + lazy_only.LAZY)
        """,
    )
    write(root / "lmflat/workflows/prompts/system.txt", "You are helpful.\n")
    write(root / "lmflat/workflows/prompts/guide.md", "# guide\n")
    write(root / "lmflat/workflows/prompts/unused.txt", "not included\n")
    write(
        root / "lmflat/serving.py",
        """
        import flyte

        from lmflat.shared import KB
        from nsutils.io import helpers

        serve_env = flyte.TaskEnvironment(name="lm-serve")


        @serve_env.task
        async def size() -> int:
            return helpers.twice(KB)
        """,
    )
    write(root / "nsutils/io/helpers.py", "def twice(x: int) -> int:\n    return 2 * x\n")
    write(root / "nsutils/io/unused.py", "X = 0\n")
    write(root / "data/lookup.csv", "a,b\n1,2\n")
    write(root / "data/other.csv", "not included\n")
    write(root / "conf/app.yaml", "debug: false\n")
    write(root / "conf/__pycache__/stale.pyc", "")  # an included directory keeps its ignore rules
    write(root / "README.md", "# flat\n")
    write(root / "scripts/oneoff.py", "print('never imported')\n")
    write(root / ".gitignore", "lmflat/generated.py\n")
    write(root / ".flyteignore", "lmflat/shared/\n")
    git_commit(root)
    job = LoadedJob(
        root,
        base / "flyte-flat",
        ("lmflat.serving", "lmflat.workflows.train"),
        (root / "data/lookup.csv", root / "conf"),
    )
    return root, job


def src_project(base: Path) -> tuple[Path, LoadedJob]:
    """A src layout (the root is ``src/``): environments that depend on each other across
    modules, a package ``__init__`` that imports a submodule, a module imported by name at import
    time (``importlib``), a top-level module beside the package, and modules reached through
    directory links (one to a directory inside the root, one to a directory outside it)."""
    project = base / "srcproj"
    pyproject(project, "lmsrc", '[tool.flyte.bundle]\ncopy-style = "loaded-modules"\n')
    src = project / "src"
    write(src / "lmsrc/__init__.py", "from lmsrc import registry as registry\n")
    write(src / "lmsrc/registry.py", "PLUGINS = ['csv']\n")
    write(src / "lmsrc/plugins/__init__.py", "")
    write(src / "lmsrc/plugins/csv_plugin.py", "NAME = 'csv'\n")
    write(src / "lmsrc/plugins/parquet_plugin.py", "NAME = 'parquet'\n")
    write(src / "topconf.py", "RETRIES = 3\n")
    write(
        src / "lmsrc/flows/base.py",
        """
        import flyte

        import topconf

        base_env = flyte.TaskEnvironment(name="lm-base")


        @base_env.task
        async def retries() -> int:
            return topconf.RETRIES
        """,
    )
    write(
        src / "lmsrc/flows/etl.py",
        """
        import importlib

        import flyte

        from lmsrc.flows.base import base_env, retries
        from lmsrc.registry import PLUGINS

        loaded = [importlib.import_module(f"lmsrc.plugins.{p}_plugin") for p in PLUGINS]
        etl_env = flyte.TaskEnvironment(name="lm-etl", depends_on=[base_env])


        @etl_env.task
        async def run() -> int:
            return await retries() + len(loaded)
        """,
    )
    write(project / "shared_data/vocab.py", "WORDS = ['a']\n")
    (src / "vocab_link").symlink_to(project / "shared_data", target_is_directory=True)
    (src / "lmsrc/compat").symlink_to("plugins", target_is_directory=True)
    write(
        src / "lmsrc/flows/words.py",
        "from lmsrc.compat import parquet_plugin as parquet_plugin\nfrom vocab_link.vocab import WORDS\n",
    )
    write(src / "lmsrc/flows/__init__.py", "from lmsrc.flows import words as words\n")
    return project, LoadedJob(src, base / "flyte-src", ("lmsrc.flows.base", "lmsrc.flows.etl"))


def tasks_apart_project(base: Path) -> tuple[Path, LoadedJob]:
    """The environment in one module, its tasks in another that imports it (relatively), a helper
    only that one imports, a module nothing imports, and a test inside the package."""
    project = base / "tasks-apart"
    src = project / "src"
    pyproject(project, "lmapart", '[tool.flyte.bundle]\ncopy-style = "loaded-modules"\n')
    write(src / "lmapart/__init__.py")
    write(src / "lmapart/envs.py", "import flyte\n\nenv = flyte.TaskEnvironment(name='lm-apart')\n")
    write(
        src / "lmapart/jobs.py",
        """
        from lmapart.helpers import double

        from .envs import env


        @env.task
        async def twice(x: int) -> int:
            return double(x)
        """,
    )
    write(src / "lmapart/helpers.py", "def double(x: int) -> int:\n    return 2 * x\n")
    write(src / "lmapart/unused.py", "VALUE = 1\n")
    write(src / "lmapart/tests/__init__.py")
    write(src / "lmapart/tests/test_jobs.py", "from lmapart.jobs import twice\n")
    # What `flyte deploy src/lmapart/jobs.py` imports: the module with the tasks, and what it loads.
    return project, LoadedJob(src, base / "flyte-apart", ("lmapart.jobs",))


@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, FlyteBundle]]:
    base = tmp_path_factory.mktemp("copy-style")
    flat, flat_job = flat_project(base)
    srcp, src_job = src_project(base)
    apart, apart_job = tasks_apart_project(base)
    expected = flyte_loaded_bundles([flat_job, src_job, apart_job], base / "oracle")
    return {"flat": (flat, expected[0]), "src": (srcp, expected[1]), "tasks-apart": (apart, expected[2])}


@pytest.mark.parametrize("name", ["flat", "src", "tasks-apart"])
def test_loaded_modules_bundle_is_flytes(
    projects: dict[str, tuple[Path, FlyteBundle]], name: str, tmp_path: Path
) -> None:
    directory, expected = projects[name]
    project = load_project(directory)
    options = Session(project).options
    assert options is not None and options.modules is not None
    for compression in ("fast", "compatible"):
        bundle = build(
            project.root_dir,
            tmp_path / compression,
            BundleOptions(**{**options.__dict__, "compression": compression, "use_cache": False}),
        )
        assert bundle.files == expected.files
        assert bundle.name == expected.name
        assert gzip.decompress(bundle.path.read_bytes()) == expected.tar_bytes()
        if compression == "compatible":  # flyte without pigz: gzip level 9, header name, mtime 0
            assert bundle.path.read_bytes() == expected.read_bytes()


def test_flat_project_holds_what_flyte_loads(projects: dict[str, tuple[Path, FlyteBundle]]) -> None:
    """What the oracle's (and so our) list means, spelled out for the generated project."""
    _, expected = projects["flat"]
    assert expected.files == (
        "conf/app.yaml",  # tool.flyte.bundle.include, a directory (its __pycache__ left out)
        "data/lookup.csv",  # tool.flyte.bundle.include, a file
        "lmflat/__init__.py",  # a package's __init__.py comes with its submodules
        "lmflat/generated.py",  # gitignored and untracked, yet imported: no ignore rule applies
        "lmflat/serving.py",
        "lmflat/shared/__init__.py",  # .flyteignored, yet imported
        "lmflat/shared/text.py",
        "lmflat/shared/units.py",
        "lmflat/workflows/prompts/guide.md",  # the environment's include=, a glob
        "lmflat/workflows/prompts/system.txt",  # the environment's include=, a file
        "lmflat/workflows/train.py",  # lmflat/workflows is a namespace package: no file of its own
        "nsutils/io/helpers.py",  # nested namespace packages contribute their modules only
    )
    tar = gzip.decompress(expected.read_bytes())
    assert tar_member_names(tar) == list(expected.files)


def test_src_project_holds_what_flyte_loads(projects: dict[str, tuple[Path, FlyteBundle]]) -> None:
    _, expected = projects["src"]
    assert expected.files == (
        "lmsrc/__init__.py",
        # The link inside the root: the file under the name it was imported by (once per name).
        "lmsrc/compat/__init__.py",
        "lmsrc/compat/parquet_plugin.py",
        "lmsrc/flows/__init__.py",
        "lmsrc/flows/base.py",
        "lmsrc/flows/etl.py",
        "lmsrc/flows/words.py",
        "lmsrc/plugins/__init__.py",
        "lmsrc/plugins/csv_plugin.py",  # imported by name at import time
        "lmsrc/registry.py",
        "topconf.py",
        # vocab_link/vocab.py resolves outside the root: flyte leaves it out.
    )


def test_ruff_on_path_is_the_documented_difference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``ruff >= 0.14.6`` on PATH flyte adds ruff's static import graph (README): the flat
    project's function-level import then lands in flyte's bundle, and its name differs."""
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("no ruff installed")
    version = subprocess.run([ruff, "--version"], capture_output=True, text=True, check=True).stdout
    if tuple(int(x) for x in version.split()[1].split(".")[:3]) < (0, 14, 6):
        pytest.skip(f"{version.strip()} is older than flyte's minimum for its import graph")
    monkeypatch.setenv("PATH", f"{Path(ruff).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    _, job = flat_project(tmp_path)
    (with_ruff,) = flyte_loaded_bundles([job], tmp_path / "oracle", tools=(*TOOLS, "ruff"))
    (without,) = flyte_loaded_bundles([job], tmp_path / "oracle-plain")
    assert set(with_ruff.files) - set(without.files) == {"lmflat/lazy_only.py"}
    assert with_ruff.name != without.name


# --- errors ------------------------------------------------------------------------------------


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def small_project(directory: Path, module: str, flyte: str = "") -> Path:
    pyproject(directory, "small", f'[tool.flyte.bundle]\ncopy-style = "loaded-modules"\n{flyte}')
    write(directory / "small/__init__.py")
    write(directory / "small/flows.py", module)
    return directory


def test_import_error_names_the_module_and_the_exception(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = small_project(
        tmp_path / "p",
        """
        import flyte

        from small import settings

        env = flyte.TaskEnvironment(name="small")
        """,
    )
    write(project / "small/settings.py", "import os\n\nTOKEN = os.environ['SMALL_TOKEN']\n")
    code, out, err = run_main(capsys, "bundle", str(project), "-o", str(tmp_path / "out"))
    assert code == 1 and out == ""
    assert 'copy-style = "loaded-modules" imports the environments\' modules with' in err
    assert "importing `small.flows` failed: KeyError: 'SMALL_TOKEN' (raised at small/settings.py:3)" in err
    assert 'set `tool.flyte.bundle.copy-style = "all"`' in err
    assert not (tmp_path / "out").exists()


def test_installed_copy_that_shadows_the_root_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    flows = 'import flyte\n\nenv = flyte.TaskEnvironment(name="small")\n'
    project = small_project(tmp_path / "p", flows)
    # An older copy of the package ahead of the root on sys.path (as site-packages is for flyte).
    installed = tmp_path / "installed"
    write(installed / "small/__init__.py")
    write(installed / "small/flows.py", flows)
    monkeypatch.setenv("PYTHONPATH", str(installed))
    code, _, err = run_main(capsys, "bundle", str(project), "-o", str(tmp_path / "out"))
    assert code == 1
    root = project.resolve()
    assert f"an installed copy of the project shadows the bundle root {root}" in err
    assert f"`small` from {installed / 'small/__init__.py'} instead of {root / 'small/__init__.py'}" in err
    assert f"`small.flows` from {installed / 'small/flows.py'} instead of {root / 'small/flows.py'}" in err
    assert "pip install -e ." in err


def test_no_environment_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = small_project(tmp_path / "p", "X = 1\n")
    code, _, err = run_main(capsys, "bundle", str(project), "-o", str(tmp_path / "out"))
    assert code == 1
    assert "bundles the modules that the environments' modules load, but no environment was found" in err


def test_secrets_guard_still_applies_to_includes(tmp_path: Path) -> None:
    project_dir = small_project(
        tmp_path / "p",
        'import flyte\n\nenv = flyte.TaskEnvironment(name="small", include=["conf"])\n',
        'secrets = "error"\n',
    )
    write(project_dir / "small/conf/.env", "TOKEN=x\n")
    project = load_project(project_dir)
    options = Session(project).options
    assert options is not None
    with pytest.raises(SecretsError, match=r"small/conf/\.env"):
        build(project.root_dir, tmp_path / "out", options)


def test_interpreter_without_flyte_says_which_and_how(tmp_path: Path) -> None:
    # An interpreter without this venv's site-packages: flyte is not importable there.
    bare = tmp_path / "bare-python"
    bare.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    bare.chmod(0o755)
    project_dir = small_project(tmp_path / "p", 'import flyte\n\nenv = flyte.TaskEnvironment(name="small")\n')
    text = (project_dir / "pyproject.toml").read_text()
    write(
        project_dir / "pyproject.toml",
        text.replace("[tool.flyte.bundle]", f'[tool.flyte]\npython = "{bare}"\n\n[tool.flyte.bundle]'),
    )
    project = load_project(project_dir)
    with pytest.raises(DiscoveryError) as info:
        _ = Session(project).options
    message = str(info.value)
    assert message.startswith('copy-style = "loaded-modules" needs flyte in the interpreter')
    assert 'or set `tool.flyte.bundle.copy-style = "all"`' in message


# --- copy-style = "none" -------------------------------------------------------------------------


def none_project(directory: Path) -> Path:
    pyproject(directory, "fullbuild", '[tool.flyte.bundle]\ncopy-style = "none"\n')
    text = (directory / "pyproject.toml").read_text()
    write(
        directory / "pyproject.toml",
        '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n\n' + text,
    )
    write(directory / "fullbuild/__init__.py")
    write(directory / "fullbuild/flows.py", 'import flyte\n\nenv = flyte.TaskEnvironment(name="full")\n')
    return directory


def test_none_bundle_command_makes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = none_project(tmp_path / "p")
    code, out, err = run_main(capsys, "bundle", str(project), "-o", str(tmp_path / "out"), "--json")
    assert (code, out) == (0, "null\n")
    assert 'copy-style = "none": no code bundle is made' in err
    assert not (tmp_path / "out").exists()
    code, out, _ = run_main(capsys, "inspect", str(project), "--json")
    assert code == 0 and json.loads(out)["bundle"] is None


def test_none_build_makes_the_wheel_and_records_no_bundle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = none_project(tmp_path / "p")
    out_dir = tmp_path / "dist"
    code, out, _ = run_main(
        capsys, "build", str(project), "-t", "wheel,bundle", "--no-isolation", "-o", str(out_dir)
    )
    assert code == 0
    assert 'bundle    none (copy-style = "none": no code bundle is made' in out
    (wheel,) = out_dir.glob("fullbuild-1.0-*.whl")
    assert sorted(p.name for p in out_dir.iterdir()) == ["flyte-manifest.json", wheel.name]
    manifest = json.loads((out_dir / "flyte-manifest.json").read_text())
    assert manifest["bundle"] is None
    assert [a["kind"] for a in manifest["artifacts"]] == ["wheel"]
    assert [e["name"] for e in manifest["environments"]] == ["full"]


def test_none_warns_about_environment_includes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    project_dir = none_project(tmp_path / "p")
    write(
        project_dir / "fullbuild/flows.py",
        'import flyte\n\nenv = flyte.TaskEnvironment(name="full", include=["model.json"])\n',
    )
    write(project_dir / "fullbuild/model.json", "{}\n")
    project = load_project(project_dir)
    with caplog.at_level("WARNING", logger="hatch_flyte"):
        options = Session(project).options
    assert options is None
    assert [r.getMessage() for r in caplog.records] == [
        'copy-style = "none" makes no bundle, so the include= files of environment(s) full are not shipped '
        "beside the image: make them package data of the wheel, or choose another copy-style"
    ]


@pytest.mark.parametrize("style", ["loaded-modules", "none"])
def test_image_source_follows_the_copy_style(tmp_path: Path, style: str) -> None:
    """``[tool.flyte.image] source = true`` copies the bundle's files; with no bundle, the tree's."""
    project_dir = small_project(tmp_path / "p", 'import flyte\n\nenv = flyte.TaskEnvironment(name="small")\n')
    write(project_dir / "small/unused.py", "X = 1\n")
    text = (project_dir / "pyproject.toml").read_text().replace("loaded-modules", style)
    write(project_dir / "pyproject.toml", text + "\n[tool.flyte.image]\nsource = true\n")
    project = load_project(project_dir)
    names = [arcname for _, arcname in Session(project).source_files()]
    if style == "loaded-modules":
        assert names == ["small/__init__.py", "small/flows.py"]
    else:
        assert names == ["pyproject.toml", "small/__init__.py", "small/flows.py", "small/unused.py"]
