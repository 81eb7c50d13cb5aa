"""A full-build image must import every manifest environment: each module's file is in the wheel.

Checked before anything is built (no engine, no registry, nothing written), through the real CLI on
a real hatchling project whose wheel leaves a module with an environment out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from hatch_flyte.errors import ImageError
from hatch_flyte.image.modules import check_modules_in_wheel, importable_modules

BIN = Path(sys.executable).parent


def test_modules_a_wheel_installs() -> None:
    members = [
        "pkg/__init__.py",
        "pkg/tasks.py",
        "pkg/sub/__init__.py",
        "pkg/fast.cpython-311-x86_64-linux-gnu.so",
        "pkg/stable.abi3.so",
        "pkg/compiled.pyc",
        "pkg/__pycache__/tasks.cpython-311.pyc",
        "pkg/data/table.csv",
        "ns/inner/flows.py",  # a namespace package: no __init__.py anywhere
        "top.py",
        "pkg-1.0.data/purelib/extra/mod.py",
        "pkg-1.0.data/scripts/run.py",
        "pkg-1.0.dist-info/RECORD",
    ]
    assert importable_modules(members) == {
        "pkg", "pkg.tasks", "pkg.sub", "pkg.fast", "pkg.stable", "pkg.compiled", "ns.inner.flows", "top",
        "extra.mod",
    }  # fmt: skip


class Env:
    def __init__(self, name: str | None, module: str, file: str) -> None:
        self.name, self.module, self.file = name, module, file


def make_wheel(path: Path, members: list[str]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for member in members:
            zf.writestr(member, "")
    return path


def test_missing_modules_are_named(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "p-1.0-py3-none-any.whl", ["p/__init__.py", "p/tasks.py"])
    check_modules_in_wheel(wheel, [Env("ok", "p.tasks", "p/tasks.py"), Env(None, "gone", "gone.py")], "x")
    with pytest.raises(ImageError) as info:
        check_modules_in_wheel(
            wheel,
            [Env("ok", "p.tasks", "p/tasks.py"), Env("flows", "workflows", "workflows.py"),
             Env("deep", "p.other.deep", "p/other/deep.py")],
            "/proj/pyproject.toml",
        )  # fmt: skip
    message = str(info.value)
    assert message.startswith("/proj/pyproject.toml: the image could not import these environments")
    assert "p-1.0-py3-none-any.whl" in message
    assert "environment 'flows': module workflows (from workflows.py)" in message
    assert "environment 'deep': module p.other.deep (from p/other/deep.py)" in message
    assert "'ok'" not in message
    assert "[tool.hatch.build.targets.wheel] packages" in message


PYPROJECT = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "outside-env"
version = "0.1.0"
dependencies = ["flyte"]

[tool.hatch.build.targets.wheel]
packages = ["outside_env"]

[tool.flyte.image]
backend = "oci"
"""


def test_build_refuses_an_image_without_an_environments_module(tmp_path: Path) -> None:
    project = tmp_path / "outside-env"
    (project / "outside_env").mkdir(parents=True)
    (project / "pyproject.toml").write_text(PYPROJECT)
    (project / "outside_env" / "__init__.py").write_text("")
    env_code = textwrap.dedent(
        """\
        import flyte

        env = flyte.TaskEnvironment(name="{name}")


        @env.task
        def hello() -> str:
            return "hi"
        """
    )
    (project / "outside_env" / "tasks.py").write_text(env_code.format(name="inside"))
    (project / "workflows.py").write_text(env_code.format(name="outside"))
    out = tmp_path / "dist"
    env = {**os.environ, "DOCKER_HOST": "tcp://127.0.0.1:9"}  # nothing there: nothing may be contacted
    proc = subprocess.run(
        [str(BIN / "hatch-flyte"), "build", str(project), "-t", "wheel,bundle,image", "--no-isolation",
         "-o", str(out)],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "environment 'outside': module workflows (from workflows.py)" in proc.stderr
    assert "'inside'" not in proc.stderr
    # The wheel, bundle and manifest are written first; the manifest claims no image, no OCI output.
    manifest = json.loads((out / "flyte-manifest.json").read_text())
    assert manifest.get("image") is None
    assert sorted(p.name for p in out.iterdir() if "oci" in p.name) == []
