"""The project model (hatch_flyte.project): bundle root and import-package discovery."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from hatch_flyte.config import FLAGS, FlyteConfig, Override
from hatch_flyte.errors import ConfigError, ProjectError
from hatch_flyte.project import Package, load_project, normalize_name


def root_flag(value: str) -> Override:
    """``--root-dir VALUE``, as the command line passes it."""
    return Override.from_flag(next(f for f in FLAGS if f.flag == "--root-dir"), value)


def make(directory: Path, files: dict[str, str], pyproject: str | None = None) -> Path:
    """Create ``files`` (relative path -> text; a trailing ``/`` makes a directory) under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    if pyproject is not None:
        (directory / "pyproject.toml").write_text(textwrap.dedent(pyproject).lstrip(), encoding="utf-8")
    for rel, text in files.items():
        path = directory / rel
        if rel.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return directory


NAMED = '[project]\nname = "{name}"\nversion = "1.2.3"\n'


def named(name: str, extra: str = "") -> str:
    return NAMED.format(name=name) + textwrap.dedent(extra)


# --- roots ---------------------------------------------------------------------------------------


def test_src_layout(tmp_path: Path) -> None:
    d = make(tmp_path / "proj", {"src/foo/__init__.py": "", "src/foo/tasks.py": "", "tests/__init__.py": ""})
    (d / "pyproject.toml").write_text(named("foo"), encoding="utf-8")
    project = load_project(d)
    assert project.directory == d
    assert project.pyproject == d / "pyproject.toml"
    assert project.has_pyproject
    assert project.root_dir == d / "src"
    assert (project.name, project.version) == ("foo", "1.2.3")
    assert project.config == FlyteConfig()
    assert project.find_package() == Package("foo", d / "src" / "foo", "src layout")
    assert project.module_name(d / "src" / "foo" / "tasks.py") == "foo.tasks"
    assert project.module_name(d / "src" / "foo" / "__init__.py") == "foo"


def test_src_layout_skips_non_identifiers_and_non_packages(tmp_path: Path) -> None:
    d = make(
        tmp_path / "proj",
        {
            "src/foo/__init__.py": "",
            "src/my-scripts/__init__.py": "",
            "src/foo.egg-info/PKG-INFO": "",
            "src/data/x.csv": "",
        },
        named("whatever"),
    )
    assert load_project(d).find_package() == Package("foo", d / "src" / "foo", "src layout")


def test_flat_layout_single_package(tmp_path: Path) -> None:
    d = make(
        tmp_path / "proj",
        {
            "app/__init__.py": "",
            "app/wf.py": "",
            "tests/__init__.py": "",
            "docs/__init__.py": "",
            "build/__init__.py": "",
        },
        named("some-project"),
    )
    project = load_project(d)
    assert project.root_dir == d
    assert project.find_package() == Package("app", d / "app", "flat layout")
    assert project.module_name(d / "app" / "wf.py") == "app.wf"


def test_flat_layout_by_project_name(tmp_path: Path) -> None:
    d = make(tmp_path / "proj", {"my_proj/__init__.py": "", "helpers/__init__.py": ""}, named("My.Proj"))
    assert load_project(d).find_package() == Package("my_proj", d / "my_proj", "flat layout (project name)")


def test_hatch_wheel_packages(tmp_path: Path) -> None:
    d = make(
        tmp_path / "proj",
        {"src/foo/__init__.py": "", "src/bar/__init__.py": ""},
        named(
            "proj",
            """
            [tool.hatch.build.targets.wheel]
            packages = ["src/foo"]
            """,
        ),
    )
    project = load_project(d)
    assert project.root_dir == d / "src"
    assert project.find_package() == Package("foo", d / "src" / "foo", "tool.hatch packages")


def test_hatch_build_packages(tmp_path: Path) -> None:
    d = make(
        tmp_path / "proj",
        {"lib/foo/__init__.py": "", "other/__init__.py": ""},
        named(
            "proj",
            """
            [tool.hatch.build]
            packages = ["lib/foo"]
            """,
        ),
    )
    assert load_project(d).find_package() == Package("foo", d / "lib" / "foo", "tool.hatch packages")


def test_hatch_packages_that_do_not_exist_are_reported(tmp_path: Path) -> None:
    d = make(
        tmp_path / "proj",
        {"README.md": ""},
        named("proj", '[tool.hatch.build.targets.wheel]\npackages = ["src/missing"]\n'),
    )
    with pytest.raises(ProjectError) as info:
        load_project(d).find_package()
    assert "tool.hatch.build.targets.wheel.packages = ['src/missing']" in str(info.value)


# --- tool.flyte.package --------------------------------------------------------------------------


def test_explicit_package_wins_over_detection(tmp_path: Path) -> None:
    d = make(
        tmp_path / "proj",
        {"src/foo/__init__.py": "", "src/bar/__init__.py": ""},
        named("proj", '[tool.flyte]\npackage = "bar"\n'),
    )
    assert load_project(d).find_package() == Package("bar", d / "src" / "bar", "tool.flyte.package")


def test_explicit_dotted_package_and_module(tmp_path: Path) -> None:
    d = make(
        tmp_path / "proj",
        {"foo/__init__.py": "", "foo/flows/__init__.py": "", "tasks.py": ""},
        named("proj", '[tool.flyte]\npackage = "foo.flows"\n'),
    )
    assert load_project(d).find_package() == Package("foo.flows", d / "foo" / "flows", "tool.flyte.package")
    (d / "pyproject.toml").write_text(named("proj", '[tool.flyte]\npackage = "tasks"\n'), encoding="utf-8")
    assert load_project(d).find_package() == Package("tasks", d / "tasks.py", "tool.flyte.package")


def test_explicit_package_not_found_lists_where_it_looked(tmp_path: Path) -> None:
    d = make(
        tmp_path / "proj",
        {"src/foo/__init__.py": ""},
        named("proj", '[tool.flyte]\npackage = "nope.sub"\n'),
    )
    with pytest.raises(ProjectError) as info:
        load_project(d).find_package()
    assert str(info.value) == (
        f"`tool.flyte.package` = 'nope.sub' in {d / 'pyproject.toml'} was not found; looked at: "
        f"{d / 'src' / 'nope' / 'sub'}, {d / 'nope' / 'sub'}. "
        "Fix the name or set `tool.flyte.root-dir` to the directory that holds it."
    )


def test_explicit_package_not_found_with_root_dir(tmp_path: Path) -> None:
    d = make(
        tmp_path / "proj", {"code/": ""}, named("proj", '[tool.flyte]\npackage = "x"\nroot-dir = "code"\n')
    )
    with pytest.raises(ProjectError) as info:
        load_project(d).find_package()
    message = str(info.value)
    for looked in (d / "code" / "x", d / "x", d / "src" / "x"):
        assert str(looked) in message


# --- ambiguous or missing packages ---------------------------------------------------------------


def test_several_packages_prefer_the_one_named_after_the_project(tmp_path: Path) -> None:
    # As hatchling and uv_build choose: the package whose name is the normalized project name.
    d = make(
        tmp_path / "proj",
        {"src/lib_models/__init__.py": "", "src/workspace_app/__init__.py": "", "src/lib_x/__init__.py": ""},
        named("Workspace-App"),
    )
    assert load_project(d).find_package() == Package(
        "workspace_app", d / "src" / "workspace_app", "src layout (project name)"
    )


def test_several_packages_none_named_after_the_project(tmp_path: Path) -> None:
    # No package is *the* package (environments are still found in all of them): package is None.
    d = make(tmp_path / "proj", {"src/b/__init__.py": "", "src/a/__init__.py": ""}, named("proj"))
    assert load_project(d).find_package() is None
    d = make(
        tmp_path / "flat", {"one/__init__.py": "", "two/__init__.py": "", "tests/__init__.py": ""}, named("p")
    )
    assert load_project(d).find_package() is None


def test_uv_build_module_name(tmp_path: Path) -> None:
    d = make(
        tmp_path / "proj",
        {"lib/foo/__init__.py": "", "lib/bar/__init__.py": ""},
        named("proj", '[tool.uv.build-backend]\nmodule-root = "lib"\nmodule-name = "bar"\n'),
    )
    project = load_project(d)
    assert project.root_dir == d / "lib"
    assert project.find_package() == Package("bar", d / "lib" / "bar", "tool.hatch packages")


def test_namespace_package(tmp_path: Path) -> None:
    d = make(tmp_path / "proj", {"src/acme/flows/jobs.py": "", "src/acme/README.md": ""}, named("proj"))
    assert load_project(d).find_package() == Package("acme", d / "src" / "acme", "src layout")


def test_script_project_has_no_package(tmp_path: Path) -> None:
    d = make(
        tmp_path / "proj",
        {"main.py": "", "helpers.py": "", "setup.py": "", "tests/__init__.py": ""},
        named("proj"),
    )
    project = load_project(d)
    assert project.root_dir == d
    assert project.find_package() is None


def test_hatch_packages_dot_is_top_level_modules(tmp_path: Path) -> None:
    # packages = ["."]: hatchling installs the directory's modules at the top level of site-packages.
    d = make(
        tmp_path / "my_lib",
        {"__init__.py": "", "models.py": ""},
        named("my-lib", '[tool.hatch.build.targets.wheel]\npackages = ["."]\n'),
    )
    assert load_project(d).find_package() is None


def test_no_code_at_all(tmp_path: Path) -> None:
    d = make(tmp_path / "proj", {"notes.txt": "", "tests/__init__.py": ""}, named("proj"))
    with pytest.raises(ProjectError) as info:
        load_project(d).find_package()
    assert str(info.value) == (
        f"{d / 'pyproject.toml'}: no Python package found; looked at {d / 'src'}/*/ (packages, namespace "
        f"packages); {d / 'src'}/*.py. Set `package` (and `root-dir`) under [tool.flyte]."
    ).replace(f"{d / 'src'}", str(d))


def test_workspace_root_names_its_members(tmp_path: Path) -> None:
    d = make(
        tmp_path / "ws",
        {
            "packages/my_app/pyproject.toml": named("my-app"),
            "packages/my_app/src/my_app/__init__.py": "",
            "packages/my_lib/pyproject.toml": named("my-lib"),
            "packages/my_lib/src/my_lib/__init__.py": "",
        },
        named("ws", '[tool.uv.workspace]\nmembers = ["packages/*"]\n'),
    )
    with pytest.raises(ProjectError) as info:
        load_project(d).find_package()
    assert str(info.value) == (
        f"{d} is a workspace root with no Python code of its own; its members packages/my_app, "
        "packages/my_lib are its sub-projects. Build each member from its own directory, e.g. "
        "`hatch-flyte build packages/my_app` (or `cd packages/my_app && hatch build -t flyte`); "
        "a member's bundle root is its own src/ or directory"
    )


def test_development_root_gathering_its_members_packages_is_a_workspace_root(tmp_path: Path) -> None:
    # The root's wheel takes its packages from inside sub-projects (`orbit/src/orbit`): no one bundle
    # root gives the modules the names that wheel installs, so each member is built on its own.
    d = make(
        tmp_path / "dev",
        {
            "orbit/pyproject.toml": named("orbit"),
            "orbit/src/orbit/__init__.py": "",
            "orbit/src/orbit/flows.py": "import flyte\nenv = flyte.TaskEnvironment(name='orbit')\n",
            "shared/pyproject.toml": named("shared"),
            "shared/src/shared/__init__.py": "",
        },
        named(
            "dev",
            '[tool.hatch.build.targets.wheel]\npackages = ["orbit/src/orbit", "shared/src/shared"]\n',
        ),
    )
    with pytest.raises(ProjectError) as info:
        load_project(d).find_package()
    assert str(info.value) == (
        f"{d} is a workspace root with no Python code of its own; its members orbit, shared are its "
        "sub-projects (the `packages` of tool.hatch.build.targets.wheel lie inside them). Build each "
        "member from its own directory, e.g. `hatch-flyte build orbit` (or `cd orbit && hatch build -t "
        "flyte`); a member's bundle root is its own src/ or directory"
    )
    # A package merely deeper than the root, in no sub-project, is still a root-dir mistake.
    (d / "shared" / "pyproject.toml").unlink()
    (d / "orbit" / "pyproject.toml").unlink()
    with pytest.raises(ProjectError, match="does not match the layout"):
        load_project(d).find_package()


def test_no_package_without_pyproject_names_the_directory(tmp_path: Path) -> None:
    d = make(tmp_path / "plain", {"notes.txt": ""})
    with pytest.raises(ProjectError, match=rf"^{d}: no Python package found; looked at "):
        load_project(d).find_package()


def test_package_outside_root_dir(tmp_path: Path) -> None:
    d = make(
        tmp_path / "proj",
        {"src/foo/__init__.py": "", "lib/": ""},
        named("proj", '[tool.flyte]\npackage = "foo"\nroot-dir = "lib"\n'),
    )
    project = load_project(d)
    assert project.root_dir == d / "lib"
    with pytest.raises(ProjectError) as info:
        project.find_package()
    assert str(info.value) == (
        f"package 'foo' at {d / 'src' / 'foo'} is outside the bundle root {d / 'lib'}, "
        "so flyte could not import it from the bundle; "
        "set `tool.flyte.root-dir` to a directory that contains it"
    )


def test_detected_package_outside_root_dir(tmp_path: Path) -> None:
    d = make(
        tmp_path / "proj",
        {"src/foo/__init__.py": "", "lib/": ""},
        named("proj", '[tool.flyte]\nroot-dir = "lib"\n'),
    )
    with pytest.raises(ProjectError, match="is outside the bundle root"):
        load_project(d).find_package()


def test_package_that_is_a_workspace_member(tmp_path: Path) -> None:
    d = make(
        tmp_path / "ws",
        {"my_app/pyproject.toml": named("my-app"), "my_app/src/my_app/__init__.py": ""},
        named("ws", '[tool.flyte]\npackage = "my_app"\n'),
    )
    with pytest.raises(
        ProjectError, match=r"names the sub-project .*/my_app \(it has its own pyproject.toml\)"
    ):
        load_project(d).find_package()


def test_root_dir_that_does_not_match_the_layout(tmp_path: Path) -> None:
    # root-dir = "." in a src layout would give modules named src.foo..., which no wheel installs.
    d = make(tmp_path / "proj", {"src/foo/__init__.py": ""}, named("proj", '[tool.flyte]\nroot-dir = "."\n'))
    project = load_project(d)
    assert project.root_dir == d
    with pytest.raises(ProjectError) as info:
        project.find_package()
    assert str(info.value) == (
        f'`tool.flyte.root-dir` = "." in {d / "pyproject.toml"} does not match the layout: the package `foo` '
        f"is in {d / 'src'}, so its modules would be named `src.foo...`, which neither the wheel nor "
        'flyte\'s runtime can import; set `root-dir = "src"` under [tool.flyte]'
    )
    # The same with an explicit package, and with hatch's packages.
    (d / "pyproject.toml").write_text(named("proj", '[tool.flyte]\nroot-dir = "."\npackage = "foo"\n'))
    with pytest.raises(ProjectError, match=r'set `root-dir = "src"`'):
        load_project(d).find_package()


# --- root-dir problems ---------------------------------------------------------------------------


def test_configured_root_dir_missing(tmp_path: Path) -> None:
    d = make(tmp_path / "proj", {}, named("proj", '[tool.flyte]\nroot-dir = "code"\n'))
    with pytest.raises(ConfigError) as info:
        load_project(d)
    assert info.value.source == str(d / "pyproject.toml")
    assert info.value.problems == [
        f"`tool.flyte.root-dir`: {d / 'code'} does not exist; point it at the directory holding your package"
    ]


def test_configured_root_dir_is_a_file(tmp_path: Path) -> None:
    d = make(tmp_path / "proj", {"code": ""}, named("proj", '[tool.flyte]\nroot-dir = "code"\n'))
    with pytest.raises(ConfigError, match=r"`tool.flyte.root-dir`: .*/code is not a directory"):
        load_project(d)


def test_root_dir_argument_overrides_config_and_is_relative_to_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = make(tmp_path / "proj", {"src/": "", "other/": ""}, named("proj", '[tool.flyte]\nroot-dir = "src"\n'))
    monkeypatch.chdir(d)
    project = load_project(d, [root_flag("other")])
    assert project.root_dir == d / "other"
    assert (project.root_from, project.set_by) == ("--root-dir", {"root-dir": "--root-dir"})
    assert load_project(d, [root_flag(str(d / "src"))]).root_dir == d / "src"


def test_root_dir_argument_must_stay_in_the_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Checked as `tool.flyte.root-dir` is, and named by the flag.
    d = make(tmp_path / "proj", {"src/": ""}, named("proj"))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(d)
    with pytest.raises(ConfigError) as info:
        load_project(d, [root_flag("../elsewhere")])
    assert info.value.problems == [
        f"`--root-dir` = {str(tmp_path / 'elsewhere')!r} escapes the project directory {d}; "
        "pass a directory inside it"
    ]


def test_root_dir_argument_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = make(tmp_path / "proj", {}, named("proj"))
    monkeypatch.chdir(d)
    with pytest.raises(ProjectError) as info:
        load_project(d, [root_flag("nowhere")])
    assert str(info.value) == (
        f"bundle root {d / 'nowhere'} does not exist; pass an existing directory (--root-dir)"
    )


def test_bad_config_and_bad_toml_propagate(tmp_path: Path) -> None:
    d = make(tmp_path / "proj", {}, '[tool.flyte.bundle]\ncompression = "fastest"\n')
    with pytest.raises(ConfigError, match=r"did you mean 'fast'\?"):
        load_project(d)
    (d / "pyproject.toml").write_text("[project\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"malformed TOML: .*line 1, column 9"):
        load_project(d)


# --- directories without pyproject.toml ----------------------------------------------------------


def test_directory_without_pyproject_is_its_own_root(tmp_path: Path) -> None:
    # Even with a src/ directory: without pyproject.toml nothing is configured or guessed.
    d = make(tmp_path / "plain", {"src/foo/__init__.py": "", "wf.py": ""})
    project = load_project(d)
    assert project.pyproject is None
    assert not project.has_pyproject
    assert project.root_dir == d
    assert project.config == FlyteConfig()
    assert project.config.present is False
    assert (project.name, project.version) == (None, None)
    assert project.module_name(d / "wf.py") == "wf"


def test_directory_without_pyproject_with_root_dir(tmp_path: Path) -> None:
    d = make(tmp_path / "plain", {"src/foo/__init__.py": ""})
    assert load_project(d, [root_flag(str(d / "src"))]).root_dir == d / "src"
    with pytest.raises(ProjectError, match="does not exist; pass an existing directory"):
        load_project(d, [root_flag(str(d / "missing"))])


def test_relative_path_is_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make(tmp_path / "plain", {"a.py": ""})
    monkeypatch.chdir(tmp_path)
    assert load_project(Path("plain")).directory == tmp_path / "plain"


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ProjectError) as info:
        load_project(tmp_path / "missing")
    assert str(info.value) == (
        f"{tmp_path / 'missing'}: no such directory; pass a project directory or a bundle root"
    )


def test_path_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("", encoding="utf-8")
    with pytest.raises(ProjectError) as info:
        load_project(tmp_path / "pyproject.toml")
    assert str(info.value) == (
        f"{tmp_path / 'pyproject.toml'} is not a directory; pass a project directory or a bundle root"
    )


def test_resolve_path(tmp_path: Path) -> None:
    d = make(tmp_path / "proj", {"conf/a.yaml": ""}, named("proj"))
    assert load_project(d).resolve_path("conf/../conf/a.yaml") == d / "conf" / "a.yaml"


@pytest.mark.parametrize(
    ("name", "expected"),
    [("My-Project", "my_project"), ("a.b_c--d", "a_b_c_d"), ("plain", "plain"), ("X__Y", "x_y")],
)
def test_normalize_name(name: str, expected: str) -> None:
    assert normalize_name(name) == expected


def test_tool_that_is_not_a_table(tmp_path: Path) -> None:
    # Valid TOML; there is no [tool.flyte] nor hatch configuration, detection still runs.
    d = make(tmp_path / "proj", {"src/foo/__init__.py": ""}, 'tool = 3\n[project]\nname = "x"\n')
    project = load_project(d)
    assert project.config == FlyteConfig()
    assert project.find_package() == Package("foo", d / "src" / "foo", "src layout")
