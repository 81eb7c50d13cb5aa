"""A hatch-flyte bundle loads in flyte's own task runtime.

A small src-layout Flyte project is bundled by hatch-flyte (copy-style "all" and "loaded-modules");
then, in a fresh interpreter whose working directory is an empty directory (the container's
workdir), flyte's runtime code downloads
and extracts the bundle (``download_code_bundle``: ``tar --overwrite -xvf`` into the destination,
which goes on ``sys.path``) and loads the task through the default resolver, by module name, as
``a0 ... --tgz <bundle> --dest . --resolver ...DefaultTaskResolver mod <module> instance <task>``
does. The source tree is nowhere on ``sys.path``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from flyte_oracle import oracle_env, tools_dir

from hatch_flyte.bundle import BundleOptions, build
from hatch_flyte.config import Compression
from hatch_flyte.pipeline import Session
from hatch_flyte.project import load_project

PACKAGE_FILES = {
    "hello_flyte/__init__.py": '"""Hello, Flyte."""\n',
    "hello_flyte/text.py": "def shout(text: str) -> str:\n    return text.upper() + '!'\n",
    "hello_flyte/data/greeting.txt": "hello\n",
    "hello_flyte/tasks.py": """\
from pathlib import Path

import flyte

from hello_flyte.text import shout

env = flyte.TaskEnvironment(name="hello_flyte")

GREETING = (Path(__file__).parent / "data" / "greeting.txt").read_text().strip()


@env.task
def say_hello(name: str) -> str:
    return shout(f"{GREETING}, {name}")


@env.task
async def add(a: int, b: int) -> int:
    return a + b
""",
    "hello_flyte/workflows/__init__.py": "",
    "hello_flyte/workflows/pipeline.py": """\
import flyte

from hello_flyte.tasks import env as tasks_env
from hello_flyte.tasks import say_hello

env = flyte.TaskEnvironment(name="hello_pipeline", depends_on=[tasks_env])


@env.task
def pipeline(name: str) -> str:
    return say_hello.forward(name) + "?"
""",
}

#: Files under the root that must not travel (flyte's standard ignores).
JUNK = {
    "hello_flyte/__pycache__/tasks.cpython-311.pyc": b"\x00" * 32,
    ".venv/pyvenv.cfg": b"home = /usr\n",
    "hello_flyte.egg-info/PKG-INFO": b"Name: hello-flyte\n",
}

RUNTIME = r"""
import asyncio
import importlib
import json
import sys
from pathlib import Path

archive, source, out = sys.argv[1:4]
source = Path(source).resolve()

from flyte.models import CodeBundle
from flyte._internal.runtime.entrypoints import download_code_bundle, load_task

bundle = asyncio.run(download_code_bundle(CodeBundle(computed_version="v", tgz=archive, destination=".")))
cwd = Path.cwd()
extracted = sorted(p.relative_to(cwd).as_posix() for p in cwd.rglob("*") if p.is_file())

task = load_task(
    "flyte._internal.resolvers.default.DefaultTaskResolver",
    "mod", "hello_flyte.tasks", "instance", "say_hello",
)
tasks = importlib.import_module("hello_flyte.tasks")
pipeline = importlib.import_module("hello_flyte.workflows.pipeline")

import flyte
from flyte._environment import list_loaded_environments
from flyte._task import TaskTemplate


def under_source(p):
    try:
        return Path(p).resolve().is_relative_to(source)
    except OSError:
        return False


result = {
    "downloaded": str(bundle.downloaded_path),
    "extracted": extracted,
    "tasks_file": tasks.__file__,
    "pipeline_file": pipeline.__file__,
    "env_is_task_environment": isinstance(tasks.env, flyte.TaskEnvironment),
    "pipeline_env_is_task_environment": isinstance(pipeline.env, flyte.TaskEnvironment),
    "env_name": tasks.env.name,
    "pipeline_depends_on": [e.name for e in pipeline.env.depends_on],
    "loaded_environments": sorted(e.name for e in list_loaded_environments()),
    "task_is_template": isinstance(task, TaskTemplate),
    "task_is_module_attribute": task is tasks.say_hello,
    "task_in_environment": any(t is task for t in tasks.env.tasks.values()),
    "forward": task.forward("Ada"),
    "func": task.func("Bob"),
    "async_forward": asyncio.run(tasks.add.forward(2, 3)),
    "pipeline": pipeline.pipeline.forward("Cy"),
    "source_on_sys_path": [p for p in sys.path if p and under_source(p)],
    "modules_from_source": sorted(
        name for name, m in list(sys.modules.items())
        if isinstance(getattr(m, "__file__", None), str) and under_source(m.__file__)
    ),
}
Path(out).write_text(json.dumps(result))
"""


def make_project(directory: Path, flyte: str = "") -> Path:
    """A src-layout project; returns its bundle root (``src``)."""
    (directory / "pyproject.toml").parent.mkdir(parents=True)
    (directory / "pyproject.toml").write_text(
        f'[project]\nname = "hello-flyte"\nversion = "0.1.0"\ndependencies = ["flyte"]\n\n{flyte}'
    )
    (directory / "tests").mkdir()
    (directory / "tests/test_tasks.py").write_text("def test_nothing():\n    pass\n")
    src = directory / "src"
    for rel, text in PACKAGE_FILES.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(text)
    for rel, data in JUNK.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    return src


@pytest.mark.parametrize(
    ("style", "compression"), [("all", "fast"), ("all", "compatible"), ("loaded-modules", "fast")]
)
def test_bundle_loads_in_flyte_runtime(style: str, compression: Compression, tmp_path: Path) -> None:
    project = tmp_path / "project"
    if style == "all":
        root = make_project(project)
        bundle = build(root, tmp_path / "dist", BundleOptions(compression=compression))
    else:
        # The modules the environments load, and the data file they read through include.
        table = '[tool.flyte.bundle]\ncopy-style = "loaded-modules"\ninclude = ["src/hello_flyte/data"]\n'
        root = make_project(project, table)
        loaded = load_project(project)
        options = Session(loaded).options
        assert options is not None
        bundle = build(root, tmp_path / "dist", options)
    assert sorted(bundle.files) == sorted(PACKAGE_FILES)

    dest = tmp_path / "workdir"
    dest.mkdir()
    out = tmp_path / "result.json"
    env = oracle_env(tools_dir(tmp_path / "tools"), {"PYTHONDONTWRITEBYTECODE": "1"})
    proc = subprocess.run(
        [sys.executable, "-c", RUNTIME, str(bundle.path), str(project), str(out)],
        cwd=dest,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(out.read_text())

    # Extraction: exactly the bundle's files (plus flyte's archive, lock and done marker).
    flyte_artifacts = {bundle.name, f".{bundle.name}.lock", f".{bundle.name}.extracted"}
    assert set(result["extracted"]) - flyte_artifacts == set(bundle.files)
    assert flyte_artifacts <= set(result["extracted"])
    for rel in bundle.files:
        assert (dest / rel).read_bytes() == (root / rel).read_bytes(), rel
    assert Path(result["downloaded"]) == dest / bundle.name

    # Imported by module name from the extracted tree, never from the source tree.
    assert Path(result["tasks_file"]) == dest / "hello_flyte/tasks.py"
    assert Path(result["pipeline_file"]) == dest / "hello_flyte/workflows/pipeline.py"
    assert result["source_on_sys_path"] == []
    assert result["modules_from_source"] == []

    # The environment and its tasks are real flyte objects that work.
    assert result["env_is_task_environment"] is True
    assert result["pipeline_env_is_task_environment"] is True
    assert result["env_name"] == "hello_flyte"
    assert result["pipeline_depends_on"] == ["hello_flyte"]
    assert result["loaded_environments"] == ["hello_flyte", "hello_pipeline"]
    assert result["task_is_template"] is True
    assert result["task_is_module_attribute"] is True
    assert result["task_in_environment"] is True
    assert result["forward"] == "HELLO, ADA!"
    assert result["func"] == "HELLO, BOB!"
    assert result["async_forward"] == 5
    assert result["pipeline"] == "HELLO, CY!?"


def test_runtime_fails_without_the_bundle(tmp_path: Path) -> None:
    """Control: the same runtime script cannot import the package when the bundle lacks it, so
    the test above really imports from the extracted bundle."""
    project = tmp_path / "project"
    root = make_project(project)
    (root / ".flyteignore").write_text("hello_flyte/\n")
    (root / "other.py").write_text("X = 1\n")
    bundle = build(root, tmp_path / "dist", BundleOptions())
    assert list(bundle.files) == [".flyteignore", "other.py"]
    dest = tmp_path / "workdir"
    dest.mkdir()
    env = oracle_env(tools_dir(tmp_path / "tools"), {"PYTHONDONTWRITEBYTECODE": "1"})
    proc = subprocess.run(
        [sys.executable, "-c", RUNTIME, str(bundle.path), str(project), str(tmp_path / "r.json")],
        cwd=dest,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0
    assert "ModuleNotFoundError" in proc.stderr
    assert not (tmp_path / "r.json").exists()
