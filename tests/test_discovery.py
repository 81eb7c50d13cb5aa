"""Environment discovery: static (ast) and import (subprocess with the real flyte) must agree."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from flyte_oracle import flyte_environments

from hatch_flyte.config import Discovery
from hatch_flyte.discovery import (
    ENVIRONMENT_CLASSES,
    DiscoveryResult,
    Environment,
    Unresolved,
    discover,
)
from hatch_flyte.errors import DiscoveryError
from hatch_flyte.project import Project, load_project

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("flyte") is None, reason="needs flyte (the `test` extra)"
)


def make_project(tmp_path: Path, files: dict[str, str], flyte: str = "") -> Project:
    (tmp_path / "pyproject.toml").write_text(
        f'[project]\nname = "shop"\nversion = "0.1"\n\n[tool.flyte]\n{textwrap.dedent(flyte)}\n'
    )
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return load_project(tmp_path)


def using(project: Project, method: Discovery, **config: Any) -> Project:
    return dataclasses.replace(
        project, config=dataclasses.replace(project.config, discovery=method, **config)
    )


def both(project: Project) -> tuple[DiscoveryResult, DiscoveryResult]:
    return discover(using(project, "static")), discover(using(project, "import"))


def key(env: Environment) -> tuple[object, ...]:
    return (env.name, env.module, env.attribute, env.kind, env.depends_on, env.file, env.line, env.include)


def by_ref(result: DiscoveryResult) -> dict[str, Environment]:
    return {e.ref: e for e in result.environments}


# --- a realistic project, both methods ----------------------------------------------------------

SHOP = {
    "src/shop/__init__.py": """
        import flyte

        base = flyte.TaskEnvironment(
            name="base",
            resources=flyte.Resources(cpu=1, memory="1Gi"),
        )
    """,
    "src/shop/settings.py": """
        PREFIX = "shop"
    """,
    "src/shop/etl.py": """
        import flyte as fl

        from shop import base
        from shop.settings import PREFIX

        etl = fl.TaskEnvironment(
            name=f"{PREFIX}-etl",
            depends_on=[base],
            include=["data/*.csv"],
            image="ghcr.io/acme/etl:1",
        )
    """,
    "src/shop/train.py": """
        from flyte import TaskEnvironment as TE

        from . import etl as etl_mod

        train_env: TE = TE("train", depends_on=[etl_mod.etl])
        gpu = train_env.clone_with(name="train-gpu")
    """,
    "src/shop/serving/__init__.py": """
        import flyte.app as app

        from shop.train import gpu, train_env

        web = app.AppEnvironment(name="web", depends_on=[train_env])
        web.add_dependency(gpu)
    """,
    "src/shop/fakes.py": """
        class TaskEnvironment:
            def __init__(self, name, **kwargs):
                self.name = name

        fake = TaskEnvironment(name="fake")
    """,
    "src/shop/other.py": """
        import flyte
        from shop.fakes import TaskEnvironment

        also_fake = TaskEnvironment(name="fake-two")
        real = flyte.TaskEnvironment(name="real")
    """,
    "src/shop/dynamic.py": """
        import os

        import flyte

        rt = flyte.TaskEnvironment(name=os.environ.get("SHOP_ENV_NAME", "runtime-env"))
    """,
    "src/shop/factory.py": """
        import flyte


        def make(name):
            return flyte.TaskEnvironment(name=name)
    """,
    # Never looked at: ignored by the bundle rules, and broken on purpose.
    "src/.venv/lib/broken.py": "def (:\n",
    "src/build/gen.py": "import flyte\nx = flyte.TaskEnvironment(name='base')\n",
    "tests/test_shop.py": "import flyte\nt = flyte.TaskEnvironment(name='base')\n",
}


def test_static_and_import_discovery_agree(tmp_path: Path) -> None:
    project = make_project(tmp_path, SHOP)
    static, imported = both(project)
    assert static.method == "static" and imported.method == "import"

    s, i = by_ref(static), by_ref(imported)
    assert (
        set(s)
        == set(i)
        == {
            "shop:base",
            "shop.etl:etl",
            "shop.train:train_env",
            "shop.train:gpu",
            "shop.serving:web",
            "shop.other:real",
            "shop.dynamic:rt",
        }
    )
    for ref in s:
        if ref != "shop.dynamic:rt":
            assert key(s[ref]) == key(i[ref]), ref
        assert (s[ref].image, s[ref].resources) == (i[ref].image, i[ref].resources), ref

    assert s["shop.etl:etl"].name == "shop-etl"
    assert s["shop.etl:etl"].depends_on == ("base",)
    assert s["shop.etl:etl"].include == ("data/*.csv",)
    assert s["shop:base"].file == "shop/__init__.py" and s["shop:base"].line == 3
    assert s["shop.serving:web"].kind == "AppEnvironment"
    assert s["shop.serving:web"].depends_on == ("train", "train-gpu")
    assert s["shop.train:gpu"].depends_on == ("shop-etl",)  # inherited by clone_with
    for env in (s["shop:base"], i["shop:base"]):
        assert env.resources == {"cpu": 1, "memory": "1Gi"}
    assert s["shop.etl:etl"].image == i["shop.etl:etl"].image == "ghcr.io/acme/etl:1"

    # A name chosen at run time: static knows where, import knows the name.
    assert s["shop.dynamic:rt"].name is None
    assert i["shop.dynamic:rt"].name == "runtime-env"
    assert key(s["shop.dynamic:rt"])[1:] == key(i["shop.dynamic:rt"])[1:]
    (runtime_name,) = [u for u in static.unresolved if u.attribute == "rt"]
    assert runtime_name.file == "shop/dynamic.py" and runtime_name.line == 5
    assert "only known at run time" in runtime_name.reason

    # An environment made in a function is reported statically, never silently dropped.
    (made,) = [u for u in static.unresolved if u.file == "shop/factory.py"]
    assert made.line == 5 and "make()" in made.reason
    assert imported.unresolved == ()


def test_json_is_deterministic_and_round_trips(tmp_path: Path) -> None:
    project = make_project(tmp_path, SHOP)
    first = discover(project)
    again = discover(project)
    assert json.dumps(first.to_json()) == json.dumps(again.to_json())
    data = json.loads(json.dumps(first.to_json()))
    assert list(data) == sorted(data)
    assert all(list(e) == sorted(e) for e in data["environments"])
    assert DiscoveryResult.from_json(data) == first


def test_modules_root_restricts_the_search(tmp_path: Path) -> None:
    project = make_project(tmp_path, SHOP)
    result = discover(project, modules_root=tmp_path / "src" / "shop" / "serving")
    assert [e.ref for e in result.environments] == ["shop.serving:web"]
    assert result.environments[0].depends_on == ("train", "train-gpu")
    imported = discover(using(project, "import"), modules_root=tmp_path / "src" / "shop" / "serving")
    assert [key(e) for e in imported.environments] == [key(e) for e in result.environments]
    with pytest.raises(DiscoveryError, match="outside the bundle root"):
        discover(project, modules_root=tmp_path / "tests")


# --- static discovery details --------------------------------------------------------------------


def static_of(tmp_path: Path, source: str, extra: dict[str, str] | None = None) -> DiscoveryResult:
    files = {"pkg/__init__.py": "", "pkg/mod.py": source, **(extra or {})}
    return discover(make_project(tmp_path, files))


def test_every_import_spelling_is_followed(tmp_path: Path) -> None:
    result = static_of(
        tmp_path,
        """
        import flyte
        import flyte.app
        import flyte.app as fa
        from flyte import *
        from flyte import app
        from flyte.app import AppEnvironment
        from flyte.app.extras import FastAPIAppEnvironment as Fast
        from flyte._task_environment import TaskEnvironment as Private

        a = flyte.TaskEnvironment(name="a")
        b = flyte.app.AppEnvironment(name="b")
        c = fa.AppEnvironment(name="c")
        d = app.AppEnvironment(name="d")
        e = AppEnvironment(name="e")
        f = Fast(name="f")
        g = Private(name="g")
        h = TaskEnvironment(name="h")
        i = flyte.TaskEnvironment.from_task("i")
        j: flyte.TaskEnvironment
        """,
    )
    kinds = {e.attribute: (e.name, e.kind) for e in result.environments}
    assert kinds == {
        "a": ("a", "TaskEnvironment"),
        "b": ("b", "AppEnvironment"),
        "c": ("c", "AppEnvironment"),
        "d": ("d", "AppEnvironment"),
        "e": ("e", "AppEnvironment"),
        "f": ("f", "FastAPIAppEnvironment"),
        "g": ("g", "TaskEnvironment"),
        "h": ("h", "TaskEnvironment"),
        "i": ("i", "TaskEnvironment"),
    }
    assert result.unresolved == ()


def test_look_alikes_are_not_environments(tmp_path: Path) -> None:
    result = static_of(
        tmp_path,
        """
        import flyte
        from otherlib import TaskEnvironment as Other
        import otherlib as flyte2

        class TaskEnvironment:
            pass

        a = TaskEnvironment(name="a")
        b = Other(name="b")
        c = flyte2.TaskEnvironment(name="c")

        flyte = object()
        d = flyte.TaskEnvironment(name="d")
        """,
    )
    assert result.environments == () and result.unresolved == ()


def test_project_subclasses_and_aliases(tmp_path: Path) -> None:
    result = static_of(
        tmp_path,
        """
        import flyte
        from pkg.base import MyEnv

        TE = flyte.TaskEnvironment
        a = TE(name="a")
        b = MyEnv(name="b", depends_on=[a])
        also_a = a
        """,
        {"pkg/base.py": "import flyte\n\nclass MyEnv(flyte.TaskEnvironment):\n    pass\n"},
    )
    assert {(e.attribute, e.kind, e.depends_on) for e in result.environments} == {
        ("a", "TaskEnvironment", ()),
        ("b", "MyEnv", ("a",)),
    }


def test_module_level_control_flow(tmp_path: Path) -> None:
    result = static_of(
        tmp_path,
        """
        import os
        from typing import TYPE_CHECKING

        import flyte

        if TYPE_CHECKING:
            typed = flyte.TaskEnvironment(name="typing-only")

        if os.environ.get("GPU"):
            env = flyte.TaskEnvironment(name="gpu")
        else:
            env = flyte.TaskEnvironment(name="cpu")

        try:
            fancy = flyte.TaskEnvironment(name="fancy")
        except ImportError:
            fancy = None

        for i in range(3):
            looped = flyte.TaskEnvironment(name=f"loop-{i}")

        envs = [flyte.TaskEnvironment(name="in-a-list")]

        class Holder:
            inner = flyte.TaskEnvironment(name="in-a-class")

        if __name__ == "__main__":
            main_only = flyte.TaskEnvironment(name="main-only")

        for other in [fancy]:
            env.add_dependency(other)
        """,
    )
    assert {(e.attribute, e.name) for e in result.environments} == {("env", "gpu"), ("fancy", "fancy")}
    reasons = {u.line: u.reason for u in result.unresolved}
    assert set(reasons) == {12, 20, 22, 25, 31}
    assert "'gpu'" in reasons[31] and "depends_on may be incomplete" in reasons[31]
    assert "'cpu'" in reasons[12] and "run-time condition" in reasons[12]
    assert "loop" in reasons[20]
    assert "'in-a-list'" in reasons[22] and "module-level" in reasons[22]
    assert "class `Holder`" in reasons[25]
    assert all(u.file == "pkg/mod.py" for u in result.unresolved)


def test_summaries_and_unresolved_arguments(tmp_path: Path) -> None:
    result = static_of(
        tmp_path,
        """
        import flyte
        from flyte import Resources
        from shared_lib import shared_env

        NAME = "base"
        PATHS = ["a.txt"]

        base = flyte.TaskEnvironment(
            NAME,
            image=flyte.Image.from_debian_base(python="3.12").with_pip_packages("pandas"),
            resources=Resources(2, memory=("1Gi", "2Gi")),
        )
        other = flyte.TaskEnvironment(
            name="other",
            image=None,
            resources=Resources(cpu=compute()),
            depends_on=[base, shared_env, *more],
            include=PATHS,
        )
        third = base.clone_with("third", image="python:3.12")
        """,
    )
    envs = {e.attribute: e for e in result.environments}
    assert envs["base"].name == "base"
    assert envs["base"].image == "flyte.Image.from_debian_base(...).with_pip_packages(...)"
    assert envs["base"].resources == {"cpu": 2, "memory": ("1Gi", "2Gi")}
    assert envs["base"].to_json()["resources"] == {"cpu": 2, "memory": ["1Gi", "2Gi"]}
    assert envs["other"].image is None and envs["other"].resources is None
    assert envs["other"].depends_on == ("base",)
    assert envs["third"].image == "python:3.12"
    assert envs["third"].resources == envs["base"].resources
    problems = sorted((u.line, u.attribute) for u in result.unresolved)
    assert problems == [(17, "other"), (17, "other"), (18, "other")]
    text = " ".join(u.reason for u in result.unresolved)
    assert "shared_lib.shared_env" in text and "*more" in text and "include=`PATHS`" in text


def test_invalid_names_are_reported(tmp_path: Path) -> None:
    result = static_of(tmp_path, 'import flyte\nbad = flyte.TaskEnvironment(name="Not Valid")\n')
    assert result.environments == ()
    (problem,) = result.unresolved
    assert (problem.file, problem.line, problem.attribute) == ("pkg/mod.py", 2, "bad")
    assert "snake_case" in problem.reason


def test_import_cycles_behave_like_python(tmp_path: Path) -> None:
    files = {
        "pkg/__init__.py": "",
        "pkg/mod.py": (
            "import flyte\nfrom pkg.z import z\na = flyte.TaskEnvironment(name='a', depends_on=[z])\n"
        ),
        "pkg/z.py": "import flyte\nimport pkg.mod\nz = flyte.TaskEnvironment(name='z')\n",
    }
    static, imported = both(make_project(tmp_path, files))
    assert {(e.name, e.depends_on) for e in static.environments} == {("a", ("z",)), ("z", ())}
    assert [key(e) for e in static.environments] == [key(e) for e in imported.environments]


def test_the_class_list_matches_flyte_sources() -> None:
    """Every subclass of Environment in the installed flyte sources is known, by its class name."""
    import ast

    spec = importlib.util.find_spec("flyte")
    assert spec is not None and spec.origin is not None
    kinds = {"Environment"}
    classes = []
    for path in Path(spec.origin).parent.rglob("*.py"):
        if "_protos" in path.parts:
            continue  # generated protobuf code
        for node in ast.walk(ast.parse(path.read_bytes())):
            if isinstance(node, ast.ClassDef):
                bases = {ast.unparse(b).rpartition(".")[2] for b in node.bases}
                classes.append((node.name, bases))
    changed = True
    while changed:
        found = {name for name, bases in classes if bases & kinds}
        changed = not found <= kinds
        kinds |= found
    assert kinds == set(ENVIRONMENT_CLASSES.values())


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_the_class_list_covers_flyte_exports() -> None:
    import flyte
    import flyte.app
    import flyte.app.extras

    for qualname, kind in ENVIRONMENT_CLASSES.items():
        module, _, name = qualname.rpartition(".")
        if module.startswith(("flyte.ai", "flyte.extras.webhooks", "flyte.clustered")):
            continue  # optional dependencies
        cls = getattr(__import__(module, fromlist=[name]), name)
        assert cls.__name__ == kind and issubclass(cls, flyte.Environment)
    for exported in (flyte, flyte.app, flyte.app.extras):
        for name in exported.__all__:
            value = getattr(exported, name)
            if isinstance(value, type) and issubclass(value, flyte.Environment):
                assert f"{exported.__name__}.{name}" in ENVIRONMENT_CLASSES


# --- bad input -----------------------------------------------------------------------------------


def test_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    bad = "import flyte\nenv = flyte.TaskEnvironment(name='bad')\ny = (2,\n"
    project = make_project(tmp_path, {"src/shop/__init__.py": "", "src/shop/bad.py": bad})
    with pytest.raises(DiscoveryError, match=r"shop/bad\.py:3:\d+: .*was never closed"):
        discover(project)
    imported = discover(using(project, "import"))
    (failure,) = imported.unresolved
    assert failure.file == "shop/bad.py" and failure.line == 3 and "SyntaxError" in failure.reason


LAZY = {
    "src/shop/__init__.py": "",
    # Never read by static discovery: nothing in it can create an environment (flyte's deploy of
    # shop.flows never imports it either).
    "src/shop/broken.py": "def f(:\n",
    # Read because flows imports it; it names no environment class itself.
    "src/shop/names.py": "PREFIX = 'shop'\n",
    # An alias of flyte's class, found in a module analysed after the alias's users were first looked at.
    "src/shop/zbase.py": "import flyte\n\nEnv = flyte.TaskEnvironment\n",
    "src/shop/aflows.py": (
        "import shop.names\nfrom shop.zbase import Env\n\nenv = Env(name=shop.names.PREFIX + '-flows')\n"
    ),
    # No class name in its source, only the project alias `Env` through an attribute.
    "src/shop/more.py": "import shop.zbase as b\n\nother = b.Env(name='other')\n",
    # add_dependency in a module that no environment module imports.
    "src/shop/wiring.py": (
        "from shop.aflows import env\nfrom shop.more import other\n\nenv.add_dependency(other)\n"
    ),
}


def test_static_reads_only_modules_that_may_create_environments(tmp_path: Path) -> None:
    project = make_project(tmp_path, LAZY)
    found = {e.name: e for e in discover(project).environments}
    assert set(found) == {"other", "shop-flows"}
    assert found["shop-flows"].module == "shop.aflows" and found["shop-flows"].depends_on == ("other",)
    assert found["other"].module == "shop.more"
    imported = {e.name: e for e in discover(using(project, "import")).environments}
    assert {n: (e.module, e.depends_on) for n, e in imported.items()} == {
        n: (e.module, e.depends_on) for n, e in found.items()
    }


def test_static_skips_modules_that_name_environments_only_in_prose(tmp_path: Path) -> None:
    """A class name in comments, docstrings and messages makes nothing: such a module is not
    parsed (this one would not parse), whereas one name in code is enough."""
    prose = (
        '"""Builds a flyte.TaskEnvironment for the docs."""\n'
        "# env = flyte.TaskEnvironment(name='commented')\n"
        "MESSAGE = 'TaskEnvironment missing'  # see TaskEnvironment\n"
        "def broken(:\n"
    )
    code = (
        "import flyte\n'''TaskEnvironment'''\nenv = flyte.TaskEnvironment(name='code')  # TaskEnvironment\n"
    )
    project = make_project(
        tmp_path, {"src/shop/__init__.py": "", "src/shop/prose.py": prose, "src/shop/real.py": code}
    )
    assert [e.ref for e in discover(project).environments] == ["shop.real:env"]
    (tmp_path / "src/shop/prose.py").write_text(prose + "x = flyte.TaskEnvironment\n")
    with pytest.raises(DiscoveryError, match=r"shop/prose\.py:4"):
        discover(project)


DUPLICATES = {
    "src/shop/__init__.py": "",
    "src/shop/a.py": "import flyte\n\nfirst = flyte.TaskEnvironment(name='same')\n",
    "src/shop/b.py": "import flyte\n\n\nsecond = flyte.TaskEnvironment(name='same')\n",
}


@pytest.mark.parametrize("method", ["static", "import"])
def test_duplicate_names_name_both_places(tmp_path: Path, method: Discovery) -> None:
    project = using(make_project(tmp_path, DUPLICATES), method)
    with pytest.raises(DiscoveryError) as info:
        discover(project)
    message = str(info.value)
    assert "'same'" in message and "shop/a.py:3" in message and "shop/b.py:4" in message
    assert "unique name" in message


@pytest.mark.parametrize("method", ["static", "import"])
def test_explicit_environments(tmp_path: Path, method: Discovery) -> None:
    project = make_project(tmp_path, SHOP, 'environments = ["shop.train:gpu", "shop:base"]')
    result = discover(using(project, method))
    assert [e.ref for e in result.environments] == ["shop:base", "shop.train:gpu"]
    assert result.environments[1].depends_on == ("shop-etl",)


@pytest.mark.parametrize("method", ["static", "import"])
@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("shop.missing:env", r"environments\[0\]` = 'shop.missing:env'.*no module `shop.missing`"),
        ("shop.train:nope", r"environments\[0\]` = 'shop.train:nope'.*(no module-level name|no attribute)"),
        ("shop.settings:PREFIX", r"environments\[0\]` = 'shop.settings:PREFIX'.*not .*environment"),
        ("shop.fakes:fake", r"environments\[0\]` = 'shop.fakes:fake'.*not .*environment"),
    ],
)
def test_explicit_environment_that_does_not_exist(
    tmp_path: Path, method: Discovery, ref: str, expected: str
) -> None:
    project = make_project(tmp_path, SHOP, f'environments = ["{ref}"]')
    with pytest.raises(DiscoveryError, match=expected) as info:
        discover(using(project, method))
    assert "pyproject.toml" in str(info.value)


# --- import discovery specifics ------------------------------------------------------------------


def test_import_failures_are_reported_per_module(tmp_path: Path) -> None:
    project = make_project(
        tmp_path,
        {
            "src/shop/__init__.py": "",
            "src/shop/good.py": (
                "import flyte\nprint('noise on stdout')\nenv = flyte.TaskEnvironment(name='good')\n"
            ),
            "src/shop/bad.py": "import shop.helper\n",
            "src/shop/helper.py": "x = 1\ny = 2\nraise RuntimeError('boom')\n",
        },
    )
    result = discover(using(project, "import"))
    assert [e.name for e in result.environments] == ["good"]
    failures = {u.file: u for u in result.unresolved}
    assert failures["shop/bad.py"].line == 1
    assert "RuntimeError: boom" in failures["shop/bad.py"].reason
    assert "raised at shop/helper.py:3" in failures["shop/bad.py"].reason
    assert failures["shop/helper.py"].line == 3


def test_import_discovery_fails_when_no_module_imports(tmp_path: Path) -> None:
    project = make_project(tmp_path, {"src/shop/__init__.py": "import not_installed_anywhere\n"})
    with pytest.raises(DiscoveryError, match="could not import any of the 1 modules"):
        discover(using(project, "import"))


def test_import_discovery_timeout(tmp_path: Path) -> None:
    project = make_project(tmp_path, {"src/shop/__init__.py": "import time\ntime.sleep(60)\n"})
    with pytest.raises(DiscoveryError, match=r"tool\.flyte\.discovery-timeout"):
        discover(using(project, "import", discovery_timeout=0.5))


def test_import_discovery_without_flyte(tmp_path: Path) -> None:
    fake = tmp_path / "fake_site"
    fake.mkdir()
    (fake / "flyte.py").write_text("raise ImportError('flyte is not installed here')\n")
    python = tmp_path / "python-without-flyte"
    python.write_text(f'#!/bin/sh\nPYTHONPATH={fake} exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    project = make_project(tmp_path, {"src/shop/__init__.py": ""})
    with pytest.raises(DiscoveryError, match=r"install flyte.*discovery = \"static\"") as info:
        discover(using(project, "import", python=str(python)))
    assert "flyte is not installed here" in str(info.value)


def test_without_flyte_the_projects_own_venv_is_suggested(tmp_path: Path) -> None:
    # Under `hatch build` the running interpreter is the build environment's, without flyte; a
    # project with a .venv (uv's, hatch's) is told the setting that points there.
    fake = tmp_path / "fake_site"
    fake.mkdir()
    (fake / "flyte.py").write_text("raise ImportError('flyte is not installed here')\n")
    files = {"src/shop/__init__.py": "", ".venv/bin/python": ""}
    project = make_project(tmp_path, files, flyte='discovery = "import"')
    proc = subprocess.run(
        [sys.executable, "-m", "hatch_flyte.frontends.cli", "inspect", str(project.directory)],
        env={**os.environ, "PYTHONPATH": str(fake)}, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "flyte is not installed here" in proc.stderr
    suggestion = '(the project has one: `python = ".venv/bin/python"` under [tool.flyte])'
    assert f"an interpreter that has it {suggestion}" in proc.stderr


def test_import_discovery_bad_interpreter(tmp_path: Path) -> None:
    project = make_project(tmp_path, {"src/shop/__init__.py": ""})
    with pytest.raises(DiscoveryError, match=r"tool\.flyte\.python.*not an executable"):
        discover(using(project, "import", python="./no/such/python"))
    with pytest.raises(DiscoveryError, match="no `no-such-python-here` on PATH"):
        discover(using(project, "import", python="no-such-python-here"))


def test_import_discovery_reports_unbound_environments(tmp_path: Path) -> None:
    project = make_project(
        tmp_path,
        {
            "src/shop/__init__.py": "",
            "src/shop/mod.py": """
                import flyte

                envs = [flyte.TaskEnvironment(name="listed")]
            """,
        },
    )
    static, imported = both(project)
    assert static.environments == imported.environments == ()
    for result in (static, imported):
        (problem,) = result.unresolved
        assert (problem.file, problem.line) == ("shop/mod.py", 3)
        assert "'listed'" in problem.reason and "module-level" in problem.reason


def test_environments_made_in_decorators_are_reported_by_both(tmp_path: Path) -> None:
    """An environment made in a decorator exists once the module is imported (flyte's registry has
    it, and flyte deploys it) but has no name to load it by: neither method may drop it silently."""
    project = make_project(
        tmp_path,
        {
            "src/shop/__init__.py": "",
            "src/shop/mod.py": """
                import flyte

                base = flyte.TaskEnvironment(name="base")


                @base.clone_with(name="cloned", depends_on=[base]).task
                async def first() -> int:
                    return 1


                @flyte.TaskEnvironment(name="made").task
                async def second() -> int:
                    return 2


                @base.task
                async def third() -> int:
                    return 3
            """,
        },
    )
    static, imported = both(project)
    registry = {e.name for e in flyte_environments(project.root_dir, tmp_path / "oracle")}
    assert registry == {"base", "cloned", "made"}
    for result in (static, imported):
        assert [e.name for e in result.environments] == ["base"]
        problems = {(u.file, u.line): u.reason for u in result.unresolved}
        assert sorted(problems) == [("shop/mod.py", 6), ("shop/mod.py", 11)], result.method
        assert "'cloned'" in problems["shop/mod.py", 6] and "'made'" in problems["shop/mod.py", 11]
    assert "in the decorator of `first()`" in static.unresolved[0].reason
    assert "discovery" not in static.unresolved[0].reason  # import discovery would not name it either


def test_files_that_are_not_modules_are_reported(tmp_path: Path) -> None:
    project = make_project(
        tmp_path,
        {
            "src/shop/__init__.py": "",
            "src/shop/__main__.py": "import flyte\ncli = flyte.TaskEnvironment(name='cli')\n",
            "src/scripts/run-me.py": "import flyte\n\nscript = flyte.TaskEnvironment(name='script')\n",
            "src/setup.py": "raise SystemExit('setup() must not run')\n",
        },
    )
    static, imported = both(project)
    assert static.environments == imported.environments == ()
    assert static.unresolved == imported.unresolved
    places = {(u.file, u.line): u.reason for u in static.unresolved}
    assert set(places) == {("shop/__main__.py", 2), ("scripts/run-me.py", 3)}
    assert "'script'" in places[("scripts/run-me.py", 3)] and "rename" in places[("scripts/run-me.py", 3)]
    assert "program" in places[("shop/__main__.py", 2)]


def test_value_objects_are_plain_data() -> None:
    env = Environment("a", "pkg.mod", "env", "TaskEnvironment", "pkg/mod.py", 3, resources={"cpu": 1})
    assert hash(env) == hash(dataclasses.replace(env, resources=None))
    assert Environment.from_json(env.to_json()) == env
    problem = Unresolved("pkg/mod.py", 4, "why", "env")
    assert Unresolved.from_json(problem.to_json()) == problem
    assert str(problem) == "pkg/mod.py:4: why"
    assert os.fspath(Path(env.file)) == "pkg/mod.py"


# --- workspaces: sub-projects and local path dependencies ---------------------------------------


def test_dependency_environments_of_a_workspace_member(tmp_path: Path) -> None:
    """An environment of a workspace member the project depends on is a dependency of that
    distribution (both methods), never unresolved; a sub-project under the root is not the
    project's code."""
    (tmp_path / "pyproject.toml").write_text('[tool.uv.workspace]\nmembers = ["libs/*", "app"]\n')
    lib = tmp_path / "libs" / "base_lib"
    (lib / "src" / "base_lib").mkdir(parents=True)
    (lib / "pyproject.toml").write_text('[project]\nname = "Base.Lib"\nversion = "1"\n')
    (lib / "src" / "base_lib" / "__init__.py").write_text("")
    (lib / "src" / "base_lib" / "envs.py").write_text(
        'import flyte\n\nroot_env = flyte.TaskEnvironment(name="root_env")\n'
        'lib_env = flyte.TaskEnvironment(name="lib_env", depends_on=[root_env])\n'
        'unused = flyte.TaskEnvironment(name="unused")\n'
    )
    app = tmp_path / "app"
    (app / "pyproject.toml").parent.mkdir()
    (app / "pyproject.toml").write_text(
        '[project]\nname = "app"\nversion = "1"\ndependencies = ["base-lib>=1"]\n\n'
        "[tool.uv.sources]\nbase-lib = { workspace = true }\n"
    )
    (app / "app").mkdir()
    (app / "app" / "__init__.py").write_text("")
    (app / "app" / "main.py").write_text(
        "import flyte\nfrom base_lib.envs import lib_env\n\n"
        'env = flyte.TaskEnvironment(name="app_env", depends_on=[lib_env])\n'
    )
    # A sub-project inside the app's root: its own build, not the app's modules.
    (app / "tools" / "gen").mkdir(parents=True)
    (app / "tools" / "gen" / "pyproject.toml").write_text('[project]\nname = "gen"\nversion = "1"\n')
    (app / "tools" / "gen" / "gen.py").write_text('import flyte\n\ng = flyte.TaskEnvironment(name="gen")\n')
    project = load_project(app)
    assert [d.name for d in project.local_dependencies()] == ["base-lib"]
    for result in both(project):
        assert [(e.name, e.ref, e.depends_on) for e in result.environments] == [
            ("app_env", "app.main:env", ("lib_env",))
        ], result.method
        assert result.unresolved == (), result.method
        assert [(d.name, d.module, d.attribute, d.distribution) for d in result.dependencies] == [
            ("lib_env", "base_lib.envs", "lib_env", "base-lib"),
            ("root_env", "base_lib.envs", "root_env", "base-lib"),
        ], result.method
