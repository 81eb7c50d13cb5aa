"""``[tool.flyte]`` parsing and validation (hatch_flyte.config).

Every problem must name the dotted key, say what was found and what is expected; all problems of
one file come together in a single :class:`ConfigError` that names the file.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from hatch_flyte.config import BundleConfig, FlyteConfig, load_config, parse_config
from hatch_flyte.errors import ConfigError, HatchFlyteError


def pyproject(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "pyproject.toml"
    path.write_text(textwrap.dedent(body).lstrip(), encoding="utf-8")
    return path


def problems_of(tmp_path: Path, body: str) -> list[str]:
    path = pyproject(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.source == str(path)
    return info.value.problems


def only_problem(tmp_path: Path, body: str) -> str:
    problems = problems_of(tmp_path, body)
    assert len(problems) == 1, problems
    return problems[0]


# --- defaults and valid input ------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        '[project]\nname = "x"\n',
        "",
        "[tool.black]\nline-length = 100\n",
        "[tool.hatch.build]\npackages = ['x']\n",
    ],
    ids=["project-only", "empty-file", "other-tool", "hatch-only"],
)
def test_no_tool_flyte_table_gives_defaults(tmp_path: Path, body: str) -> None:
    config = load_config(pyproject(tmp_path, body))
    assert config == FlyteConfig()
    assert config.present is False
    assert config.bundle == BundleConfig()
    assert config.bundle.compression == "fast"
    assert config.bundle.secrets == "warn"
    assert config.bundle.keep_default_ignores is True
    assert config.discovery == "static"
    assert config.discovery_timeout == 300.0
    assert config.package is None and config.root_dir is None and config.environments is None


def test_empty_tool_flyte_table_is_present_with_defaults(tmp_path: Path) -> None:
    config = load_config(pyproject(tmp_path, "[tool.flyte]\n"))
    assert config.present is True
    assert config == FlyteConfig(present=True)


def test_every_key_valid(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    config = load_config(
        pyproject(
            tmp_path,
            """
            [tool.flyte]
            package = "my_pkg.flows"
            root-dir = "src"
            environments = ["my_pkg.envs:env", "my_pkg.other:gpu_env"]
            discovery = "import"
            python = "/usr/bin/python3"
            discovery-timeout = 12

            [tool.flyte.bundle]
            copy-style = "all"
            ignores = ["*.csv", "data/"]
            keep-default-ignores = false
            include = ["README.md", "conf/*.yaml"]
            compression = "compatible"
            secrets = "error"
            """,
        )
    )
    assert config == FlyteConfig(
        package="my_pkg.flows",
        root_dir="src",
        environments=("my_pkg.envs:env", "my_pkg.other:gpu_env"),
        discovery="import",
        python="/usr/bin/python3",
        discovery_timeout=12.0,
        bundle=BundleConfig(
            copy_style="all",
            ignores=("*.csv", "data/"),
            keep_default_ignores=False,
            include=("README.md", "conf/*.yaml"),
            compression="compatible",
            secrets="error",
        ),
        present=True,
    )
    assert isinstance(config.discovery_timeout, float)


def test_bundle_as_inline_table_and_paths_inside_the_project(tmp_path: Path) -> None:
    config = load_config(
        pyproject(
            tmp_path,
            """
            [tool.flyte]
            root-dir = "./src/../src"
            bundle = { include = [".", "a/b/../c"], secrets = "off" }
            """,
        )
    )
    assert config.root_dir == "./src/../src"  # kept as written
    assert config.bundle.include == (".", "a/b/../c")
    assert config.bundle.secrets == "off"


def test_parse_config_takes_already_parsed_data(tmp_path: Path) -> None:
    data = {"tool": {"flyte": {"bundle": {"compression": "compatible"}}}}
    config = parse_config(data, tmp_path / "pyproject.toml")
    assert config.present is True
    assert config.bundle.compression == "compatible"
    assert parse_config({"tool": "not a table"}, tmp_path / "pyproject.toml") == FlyteConfig()


# --- unknown keys ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "typo", "meant"),
    [
        ("tool.flyte", "bundel", "bundle"),
        ("tool.flyte", "pakage", "package"),
        ("tool.flyte", "root_dir", "root-dir"),
        ("tool.flyte", "discovery_timeout", "discovery-timeout"),
        ("tool.flyte.bundle", "compresion", "compression"),
        ("tool.flyte.bundle", "ignore", "ignores"),
        ("tool.flyte.bundle", "secret", "secrets"),
        ("tool.flyte.bundle", "keep-default-ignore", "keep-default-ignores"),
    ],
)
def test_unknown_key_suggests_the_nearest(tmp_path: Path, table: str, typo: str, meant: str) -> None:
    problem = only_problem(tmp_path, f'[{table}]\n{typo} = "x"\n')
    assert problem == f"unknown key `{table}.{typo}`; did you mean `{meant}`?"


def test_unknown_key_without_a_near_match_lists_valid_keys(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, '[tool.flyte.bundle]\nfrobnicate = "x"\n')
    assert problem == (
        "unknown key `tool.flyte.bundle.frobnicate`; valid keys: compression, copy-style, ignores, "
        "include, keep-default-ignores, secrets"
    )


# --- wrong types -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('[tool]\nflyte = "yes"\n', "`tool.flyte` must be a table, got a string ('yes')"),
        ("[tool.flyte]\nbundle = 3\n", "`tool.flyte.bundle` must be a table, got an integer (3)"),
        ("[tool.flyte]\npackage = 3\n", "`tool.flyte.package` must be an importable package name"),
        ('[tool.flyte]\npackage = "my-pkg"\n', "got a string ('my-pkg')"),
        ('[tool.flyte]\npackage = ""\n', "`tool.flyte.package` must be an importable package name"),
        ("[tool.flyte]\nroot-dir = 1\n", "`tool.flyte.root-dir` must be a non-empty path string, got an"),
        ('[tool.flyte]\nroot-dir = " "\n', "`tool.flyte.root-dir` must be a non-empty path string"),
        ("[tool.flyte]\npython = 3\n", "`tool.flyte.python` must be a non-empty string, got an integer (3)"),
        (
            "[tool.flyte]\ndiscovery-timeout = true\n",
            "`tool.flyte.discovery-timeout` must be a positive number of seconds, got a boolean (True)",
        ),
        (
            "[tool.flyte]\ndiscovery-timeout = 0\n",
            "`tool.flyte.discovery-timeout` must be a positive number of seconds, got an integer (0)",
        ),
        (
            '[tool.flyte]\ndiscovery-timeout = "10"\n',
            "`tool.flyte.discovery-timeout` must be a positive number of seconds, got a string ('10')",
        ),
        (
            '[tool.flyte]\nenvironments = "pkg.mod:env"\n',
            "`tool.flyte.environments` must be an array of strings, got a string ('pkg.mod:env')",
        ),
        (
            '[tool.flyte]\nenvironments = ["pkg.mod"]\n',
            "`tool.flyte.environments[0]` = 'pkg.mod' is not of the form 'package.module:attribute'",
        ),
        (
            '[tool.flyte.bundle]\nignores = "*.csv"\n',
            "`tool.flyte.bundle.ignores` must be an array of strings, got a string ('*.csv')",
        ),
        (
            '[tool.flyte.bundle]\nignores = ["ok", 2]\n',
            "`tool.flyte.bundle.ignores[1]` must be a non-empty string, got an integer (2)",
        ),
        (
            '[tool.flyte.bundle]\ninclude = [""]\n',
            "`tool.flyte.bundle.include[0]` must be a non-empty string, got a string ('')",
        ),
        (
            '[tool.flyte.bundle]\nkeep-default-ignores = "no"\n',
            "`tool.flyte.bundle.keep-default-ignores` must be true or false, got a string ('no')",
        ),
        (
            "[tool.flyte.bundle]\ncompression = 9\n",
            "`tool.flyte.bundle.compression` must be one of 'fast', 'compatible', got an integer (9)",
        ),
        (
            "[tool.flyte.bundle]\nsecrets = []\n",
            "`tool.flyte.bundle.secrets` must be one of 'warn', 'error', 'off', got an array",
        ),
        (
            "[tool.flyte.bundle]\nsecrets = {}\n",
            "`tool.flyte.bundle.secrets` must be one of 'warn', 'error', 'off', got a table",
        ),
    ],
)
def test_wrong_types(tmp_path: Path, body: str, expected: str) -> None:
    path = pyproject(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert len(info.value.problems) == 1, info.value.problems
    assert expected in info.value.problems[0]
    assert str(path) in str(info.value)


# --- enumerations ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        (
            "bundle.compression",
            "fastest",
            "`tool.flyte.bundle.compression` must be one of 'fast', 'compatible', got a string "
            "('fastest'); did you mean 'fast'?",
        ),
        (
            "bundle.compression",
            "compat",
            "`tool.flyte.bundle.compression` must be one of 'fast', 'compatible', got a string "
            "('compat'); did you mean 'compatible'?",
        ),
        (
            "bundle.secrets",
            "errors",
            "`tool.flyte.bundle.secrets` must be one of 'warn', 'error', 'off', got a string ('errors'); "
            "did you mean 'error'?",
        ),
        (
            "discovery",
            "imports",
            "`tool.flyte.discovery` must be one of 'static', 'import', got a string ('imports'); "
            "did you mean 'import'?",
        ),
        (
            "bundle.copy-style",
            "loaded",
            "`tool.flyte.bundle.copy-style` must be one of 'all', 'loaded-modules', 'none', got a string "
            "('loaded'); did you mean 'loaded-modules'?",
        ),
        (
            "bundle.copy-style",
            "loaded_modules",
            "`tool.flyte.bundle.copy-style` must be one of 'all', 'loaded-modules', 'none', got a string "
            "('loaded_modules'); did you mean 'loaded-modules'?",
        ),
        (
            "bundle.compression",
            "brotli",
            "`tool.flyte.bundle.compression` must be one of 'fast', 'compatible', got a string ('brotli')",
        ),
    ],
)
def test_bad_enum_value(tmp_path: Path, key: str, value: str, expected: str) -> None:
    table, _, name = f"tool.flyte.{key}".rpartition(".")
    assert only_problem(tmp_path, f'[{table}]\n{name} = "{value}"\n') == expected


@pytest.mark.parametrize("style", ["all", "loaded-modules", "none"])
def test_copy_styles(tmp_path: Path, style: str) -> None:
    config = load_config(pyproject(tmp_path, f'[tool.flyte.bundle]\ncopy-style = "{style}"\n'))
    assert config.bundle.copy_style == style


def test_include_without_a_bundle_is_an_error(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, '[tool.flyte.bundle]\ncopy-style = "none"\ninclude = ["data"]\n')
    assert problem == (
        '`tool.flyte.bundle.include` is set but `tool.flyte.bundle.copy-style` is "none", so no bundle '
        'is made to hold it; remove `include`, or choose copy-style "all" or "loaded-modules"'
    )


# --- paths that leave the project ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "key", "value"),
    [
        ('[tool.flyte]\nroot-dir = "../x"\n', "tool.flyte.root-dir", "../x"),
        ('[tool.flyte]\nroot-dir = "src/../../x"\n', "tool.flyte.root-dir", "src/../../x"),
        ('[tool.flyte]\nroot-dir = "/etc"\n', "tool.flyte.root-dir", "/etc"),
        ('[tool.flyte.bundle]\ninclude = ["ok.txt", "../x"]\n', "tool.flyte.bundle.include[1]", "../x"),
    ],
)
def test_path_that_escapes_the_project(tmp_path: Path, body: str, key: str, value: str) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    problem = only_problem(project, body)
    assert problem == (
        f"`{key}` = {value!r} escapes the project directory {project}; "
        "use a path relative to the directory of pyproject.toml that stays inside it"
    )


def test_symlink_that_escapes_the_project(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (project / "link").symlink_to(tmp_path / "elsewhere")
    problem = only_problem(project, '[tool.flyte]\nroot-dir = "link"\n')
    assert problem.startswith("`tool.flyte.root-dir` = 'link' escapes the project directory")


# --- malformed files ---------------------------------------------------------------------------


def test_malformed_toml_names_file_line_and_column(tmp_path: Path) -> None:
    path = pyproject(tmp_path, '[tool.flyte]\npackage = "a"\nroot-dir = \n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"invalid configuration in {path}:\n  - malformed TOML: ")
    assert "line 3, column 12" in message


def test_malformed_toml_duplicate_table(tmp_path: Path) -> None:
    path = pyproject(tmp_path, "[tool.flyte]\n[tool.flyte]\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "malformed TOML" in str(info.value)
    assert "line 2, column 1" in str(info.value)


def test_missing_pyproject(tmp_path: Path) -> None:
    path = tmp_path / "pyproject.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (
        f"invalid configuration in {path}:\n  - file not found: create it or point at the project directory"
    )


def test_unreadable_pyproject(tmp_path: Path) -> None:
    path = tmp_path / "pyproject.toml"
    path.mkdir()  # reading a directory fails for root too
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"invalid configuration in {path}:\n  - cannot read the file: Is a directory"


# --- all problems at once ----------------------------------------------------------------------


def test_several_problems_in_one_error(tmp_path: Path) -> None:
    path = pyproject(
        tmp_path,
        """
        [project]
        name = "x"

        [tool.flyte]
        bundel = {}
        package = "my-pkg"
        root-dir = "../x"
        discovery-timeout = -1

        [tool.flyte.bundle]
        compresion = "fast"
        compression = "fastest"
        include = ["ok", "../y"]
        keep-default-ignores = "yes"
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    error = info.value
    assert isinstance(error, HatchFlyteError)
    keys = [
        "tool.flyte.bundel",
        "tool.flyte.package",
        "tool.flyte.root-dir",
        "tool.flyte.discovery-timeout",
        "tool.flyte.bundle.compresion",
        "tool.flyte.bundle.compression",
        "tool.flyte.bundle.include[1]",
        "tool.flyte.bundle.keep-default-ignores",
    ]
    assert len(error.problems) == len(keys)
    for key, problem in zip(keys, error.problems, strict=True):
        assert f"`{key}`" in problem
    lines = str(error).splitlines()
    assert lines[0] == f"invalid configuration in {path}:"
    assert lines[1:] == [f"  - {p}" for p in error.problems]
    assert "did you mean `bundle`?" in lines[1]
    assert "did you mean 'fast'?" in lines[6]


def test_good_keys_do_not_hide_bad_ones(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        """
        [tool.flyte]
        package = "ok_pkg"
        python = ""
        [tool.flyte.bundle]
        compression = "compatible"
        secrets = "never"
        """,
    )
    assert [p.split("`")[1] for p in problems] == ["tool.flyte.python", "tool.flyte.bundle.secrets"]


# --- [tool.flyte.image] ------------------------------------------------------------------------


def test_image_defaults_and_every_key(tmp_path: Path) -> None:
    from hatch_flyte.config import ImageConfig

    (tmp_path / "constraints.txt").write_text("")
    assert load_config(pyproject(tmp_path, "[tool.flyte]\n")).image == ImageConfig()
    assert ImageConfig().lock is True and ImageConfig().workdir == "/home/flyte"
    config = load_config(
        pyproject(
            tmp_path,
            """
            [tool.flyte.image]
            backend = "oci"
            base = "python:3.12-slim"
            registry = "ghcr.io/acme"
            name = "weather"
            tags = ["latest", "v1.2_3"]
            platform = "linux/arm64"
            push = true
            python = "/usr/local/bin/python3"
            env = { B = "2", A_1 = "x y" }
            workdir = "/srv"
            source = true
            extra-packages = ["pandas>=2"]
            constraints = "constraints.txt"
            lock = false
            """,
        )
    ).image
    assert config == ImageConfig(
        backend="oci", base="python:3.12-slim", registry="ghcr.io/acme", name="weather",
        tags=("latest", "v1.2_3"), platform="linux/arm64", push=True, python="/usr/local/bin/python3",
        env=(("A_1", "x y"), ("B", "2")), workdir="/srv", source=True, extra_packages=("pandas>=2",),
        constraints="constraints.txt", lock=False,
    )  # fmt: skip


def test_image_problems_all_at_once(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        """
        [tool.flyte.image]
        backend = "podman"
        tags = ["ok", "-bad", "has space"]
        platform = "windows/amd64"
        push = "yes"
        env = { "1BAD" = "x", GOOD = 1 }
        workdir = "relative/dir"
        lock = "no"
        constraints = "../outside.txt"
        extra-packages = "pandas"
        pushh = true
        """,
    )
    keys = [p.split("`")[1] for p in problems]
    assert sorted(keys) == sorted(
        [
            "tool.flyte.image.backend",
            "tool.flyte.image.tags[1]",
            "tool.flyte.image.tags[2]",
            "tool.flyte.image.platform",
            "tool.flyte.image.push",
            "tool.flyte.image.env.1BAD",
            "tool.flyte.image.env.GOOD",
            "tool.flyte.image.workdir",
            "tool.flyte.image.lock",
            "tool.flyte.image.constraints",
            "tool.flyte.image.extra-packages",
            "tool.flyte.image.pushh",
        ]
    ), problems
    by_key = dict(zip(keys, problems, strict=True))
    assert "did you mean `push`?" in by_key["tool.flyte.image.pushh"]
    assert "'linux/amd64'" in by_key["tool.flyte.image.platform"]
    assert "absolute path" in by_key["tool.flyte.image.workdir"]


def test_image_dependency_only_and_dockerfile_keys(tmp_path: Path) -> None:
    from hatch_flyte.config import ImageConfig

    defaults = ImageConfig()
    assert (defaults.include_project, defaults.dockerfile, defaults.context, defaults.build_args) == (
        True, None, None, ()
    )  # fmt: skip
    config = load_config(
        pyproject(
            tmp_path,
            """
            [tool.flyte.image]
            include-project = false
            dockerfile = "docker/Dockerfile"
            context = "."

            [tool.flyte.image.build-args]
            CUDA_VERSION = "12.4"
            APT_PACKAGES = "libgomp1 curl"
            """,
        )
    ).image
    assert config == ImageConfig(
        include_project=False, dockerfile="docker/Dockerfile", context=".",
        build_args=(("APT_PACKAGES", "libgomp1 curl"), ("CUDA_VERSION", "12.4")),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("body", "key", "words"),
    [
        ('dockerfile = "Dockerfile"\nbase = "python:3.12-slim"', "tool.flyte.image.dockerfile",
         ["`tool.flyte.image.base`", "mutually exclusive"]),
        ('dockerfile = "Dockerfile"\nbackend = "oci"', "tool.flyte.image.dockerfile",
         ['base = "oci:', "docker-archive:", "`tool.flyte.image.backend"]),
        ('context = "."', "tool.flyte.image.context", ["`tool.flyte.image.dockerfile`", "not set"]),
        ("build-args = { A = \"1\" }", "tool.flyte.image.build-args", ["`tool.flyte.image.dockerfile`"]),
        ("source = true\ninclude-project = false", "tool.flyte.image.source",
         ["`tool.flyte.image.include-project` = false", "bundle"]),
        ('dockerfile = "Dockerfile"\nbuild-args = { "1X" = "a", Y = 2 }', "tool.flyte.image.build-args.1X",
         ["build argument name"]),
        ('include-project = "no"', "tool.flyte.image.include-project", ["true or false"]),
        ('dockerfile = ""', "tool.flyte.image.dockerfile", ["non-empty path"]),
        ('include-project = false\n[tool.flyte.bundle]\ncopy-style = "none"',
         "tool.flyte.image.include-project", ["`tool.flyte.bundle.copy-style`", "no task could run"]),
    ],
    ids=["with-base", "with-oci", "context-alone", "build-args-alone", "source-without-project",
         "bad-build-args", "include-project-type", "empty-dockerfile", "no-code-anywhere"],
)  # fmt: skip
def test_image_key_combinations(tmp_path: Path, body: str, key: str, words: list[str]) -> None:
    problems = problems_of(tmp_path, f"[tool.flyte.image]\n{body}\n")
    first = next((p for p in problems if p.split("`")[1] == key), None)
    assert first is not None, problems
    for word in words:
        assert word in first, first


@pytest.mark.parametrize("workdir", ["/", "/srv/../etc", "/srv/", "//srv", "/srv/./x", "/a\nRUN x"])
def test_image_workdir_must_be_a_plain_directory(tmp_path: Path, workdir: str) -> None:
    """The workdir is made writable by every user: never `/`, never a path spelled two ways."""
    problems = problems_of(tmp_path, f"[tool.flyte.image]\nworkdir = {json.dumps(workdir)}\n")
    assert len(problems) == 1 and "`tool.flyte.image.workdir`" in problems[0], problems
    assert "normalized absolute path" in problems[0]
