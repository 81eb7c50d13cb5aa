"""The JSON Schema of ``[tool.flyte]`` is the model's: the packaged file is what the model generates,
a validator using it gives the model's verdict on every per-key problem, and validate-pyproject picks
it up from an installed hatch-flyte."""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import subprocess
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import fastjsonschema
import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hatch_flyte.config import FlyteConfig, parse_config
from hatch_flyte.config import schema as config_schema
from hatch_flyte.config.convert import Checker, fields_of
from hatch_flyte.config.fields import Pattern, setting
from hatch_flyte.errors import ConfigError
from hatch_flyte.resources import SCHEMA_FILE, flyte_schema

SCHEMA = flyte_schema("flyte")
VALIDATE = fastjsonschema.compile(SCHEMA)  # validate-pyproject's engine
#: The model's check that no schema can make (where a path leads depends on where the file is).
ESCAPES = "escapes the project directory"


def test_packaged_schema_is_the_models() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == config_schema.render(), (
        "hatch_flyte/resources/flyte.schema.json differs from hatch_flyte/config/model.py: run "
        "`python -m hatch_flyte.config.schema --write`"
    )


def test_schema_check_mode_catches_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "flyte.schema.json"
    stale.write_text('{"properties": {}}\n')
    assert config_schema.main([str(stale), "--check"]) == 1
    assert config_schema.main([str(stale), "--write"]) == 0
    assert json.loads(stale.read_text()) == SCHEMA and config_schema.main([str(stale), "--check"]) == 0


def test_schema_follows_validate_pyprojects_conventions() -> None:
    assert SCHEMA["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert SCHEMA["$id"] and SCHEMA["title"]
    jsonschema.Draft7Validator.check_schema(SCHEMA)  # against the meta-schema jsonschema ships


# --- the schema's verdict is the model's -----------------------------------------------------------


class _ConflictRecorder(Checker):
    """A checker that also keeps what the tables' ``conflicts()`` found: rules between keys, which no
    schema states."""

    def __init__(self, project_dir: Path) -> None:
        super().__init__(project_dir)
        self.conflicts: set[str] = set()

    def build(self, cls: Any, raw: Any, prefix: str, passthrough: Any = (), **fixed: Any) -> Any:
        value = super().build(cls, raw, prefix, passthrough, **fixed)
        self.conflicts.update(value.conflicts(prefix) if hasattr(value, "conflicts") else ())
        return value


def _cross_key(raw: Mapping[str, Any], project: Path) -> set[str]:
    checker = _ConflictRecorder(project)
    checker.build(FlyteConfig, raw, "tool.flyte")
    return checker.conflicts


def model_problems(raw: Any, project: Path) -> list[str]:
    """What ``parse_config`` rejects ``[tool.flyte] = raw`` for, but for what the schema leaves to it
    (module docstring of hatch_flyte.config.schema): rules between keys, and paths leaving the project."""
    try:
        parse_config({"tool": {"flyte": raw}}, project / "pyproject.toml")
    except ConfigError as e:
        problems = e.problems
    else:
        return []
    if not isinstance(raw, Mapping):
        return problems
    cross = _cross_key(raw, project)
    return [p for p in problems if p not in cross and ESCAPES not in p]


def schema_accepts(raw: Any) -> bool:
    try:
        VALIDATE(raw)
    except fastjsonschema.JsonSchemaValueException:
        return False
    return True


#: Every key, valid, in two tables (a Dockerfile's keys exclude `base`, `oci` and `source`).
FULL_BASE = {
    "package": "my_pkg",
    "root-dir": "src",
    "environments": ["my_pkg.tasks:env", "my_pkg.more.deep:other_env"],
    "discovery": "import",
    "python": "/usr/bin/python3",
    "discovery-timeout": 12.5,
    "strict": True,
    "bundle": {
        "copy-style": "loaded-modules",
        "ignores": ["*.csv", "data/"],
        "keep-default-ignores": False,
        "include": ["src/my_pkg/data", "conf/*.yaml"],
        "compression": "compatible",
        "secrets": "error",
    },
    "image": {
        "backend": "oci",
        "base": "oci:/layouts/py:3.12",
        "registry": "127.0.0.1:5000/team",
        "name": "orders",
        "tags": ["latest", "v1.2.3-rc_1"],
        "platform": "linux/arm/v7",
        "push": True,
        "python": "python3.12",
        "env": {"MODE": "prod", "EMPTY": "", "_X1": "a b"},
        "workdir": "/home/flyte",
        "source": True,
        "extra-packages": ["numpy>=2", "pandas"],
        "constraints": "constraints.txt",
        "lock": False,
        "include-project": True,
    },
}
FULL_DOCKERFILE = {
    "discovery-timeout": 300,
    "bundle": {"copy-style": "none"},
    "image": {
        "backend": "docker",
        "include-project": True,
        "dockerfile": "../docker/Dockerfile",
        "context": "../docker",
        "build-args": {"PY_VERSION": "3.12", "EMPTY": ""},
    },
}

VALID = {
    "empty table": {},
    "every key (base)": FULL_BASE,
    "every key (dockerfile)": FULL_DOCKERFILE,
    "integer timeout": {"discovery-timeout": 1},
    "empty arrays and tables": {"bundle": {"ignores": [], "include": []}, "image": {"env": {}}},
    "unicode identifier": {"package": "café.módulo"},
    "workdir with a newline inside": {"image": {"workdir": "/home/a\nb/c"}},
}
INVALID = {
    "not a table": "flyte",
    "unknown key": {"packages": "my_pkg"},
    "unknown nested key": {"bundle": {"compresion": "fast"}},
    "unknown key in image": {"image": {"tag": ["latest"]}},
    "sub-table not a table": {"bundle": "all"},
    "image not a table": {"image": ["docker"]},
    "wrong type: bool as string": {"strict": "yes"},
    "wrong type: string as bool": {"image": {"push": 1}},
    "wrong type: number as string": {"discovery-timeout": "300"},
    "wrong type: bool as number": {"discovery-timeout": True},
    "wrong type: array as string": {"environments": "my_pkg:env"},
    "wrong type: date": {"python": datetime.date(2024, 1, 1)},
    "non-positive timeout": {"discovery-timeout": 0},
    "negative timeout": {"discovery-timeout": -1.5},
    "bad enum": {"discovery": "imports"},
    "bad nested enum": {"bundle": {"copy-style": "loaded_modules"}},
    "enum of wrong type": {"image": {"backend": 1}},
    "bad compression": {"bundle": {"compression": "gzip"}},
    "bad secrets": {"bundle": {"secrets": True}},
    "bad package": {"package": "my-pkg"},
    "package with a trailing newline": {"package": "my_pkg\n"},
    "package ending in a dot": {"package": "my_pkg."},
    "bad environment ref": {"environments": ["my_pkg.tasks"]},
    "environment ref with spaces": {"environments": ["my_pkg: env"]},
    "blank environment": {"environments": [" "]},
    "non-string environment": {"environments": [3]},
    "empty tags": {"image": {"tags": []}},
    "bad tag": {"image": {"tags": ["-latest"]}},
    "tag too long": {"image": {"tags": ["v" * 129]}},
    "blank tag": {"image": {"tags": [""]}},
    "bad platform": {"image": {"platform": "windows/amd64"}},
    "platform with a trailing newline": {"image": {"platform": "linux/amd64\n"}},
    "relative workdir": {"image": {"workdir": "home/flyte"}},
    "empty path": {"root-dir": ""},
    "blank path": {"image": {"constraints": " \t"}},
    "path with Python-only whitespace": {"root-dir": "\x1c\x85"},
    "non-string path": {"bundle": {"include": [1]}},
    "blank include": {"bundle": {"include": [""]}},
    "blank python": {"python": "\u3000"},
    "bad env name": {"image": {"env": {"1MODE": "x"}}},
    "env name with a dash": {"image": {"env": {"MY-VAR": "x"}}},
    "non-string env value": {"image": {"env": {"MODE": 1}}},
    "env not a table": {"image": {"env": ["MODE=prod"]}},
    "bad build-arg name": {"image": {"dockerfile": "Dockerfile", "build-args": {"A B": "x"}}},
    "blank extra package": {"image": {"extra-packages": [""]}},
    "strings as array items": {"bundle": {"ignores": [1]}},
    "blank ignore pattern": {"bundle": {"ignores": ["*.csv", " "]}},
}


@pytest.mark.parametrize(
    ("raw", "valid"),
    [*((v, True) for v in VALID.values()), *((v, False) for v in INVALID.values())],
    ids=[*VALID, *INVALID],
)
def test_schema_and_model_agree(tmp_path: Path, raw: Any, valid: bool) -> None:
    problems = model_problems(raw, tmp_path)
    assert (problems == []) is valid, problems
    assert schema_accepts(raw) is valid


def _keys(cls: type[Any], prefix: str = "") -> set[str]:
    out = set()
    for key, (_, shape) in fields_of(cls).items():
        out.add(prefix + key)
        if isinstance(shape.base, type) and dataclasses.is_dataclass(shape.base):
            out |= _keys(shape.base, f"{prefix}{key}.")
    return out


def _set_keys(raw: Any, prefix: str = "") -> set[str]:
    if not isinstance(raw, Mapping):
        return set()
    return {prefix + k for k in raw} | {x for k, v in raw.items() for x in _set_keys(v, f"{prefix}{k}.")}


def test_the_corpus_covers_every_key() -> None:
    """A new key must join the corpus: valid, set in one of the full tables."""
    assert _keys(FlyteConfig) <= _set_keys(FULL_BASE) | _set_keys(FULL_DOCKERFILE)


#: What the schema leaves to the model (hatch_flyte.config.schema's docstring): the schema accepts
#: these, hatch-flyte does not.
MODEL_ONLY = {
    "rule between keys": ({"image": {"dockerfile": "Dockerfile", "base": "python:3"}}, "mutually exclusive"),
    "across tables": ({"bundle": {"copy-style": "none"}, "image": {"include-project": False}}, "no bundle"),
    "workdir's normal form": ({"image": {"workdir": "/home/../etc"}}, "normalized absolute path"),
    "path leaving the project": ({"root-dir": "../elsewhere"}, ESCAPES),
    "non-ASCII non-word character": ({"package": "my—pkg"}, "an importable package name"),
}  # fmt: skip


@pytest.mark.parametrize(("raw", "problem"), MODEL_ONLY.values(), ids=MODEL_ONLY)
def test_what_only_the_model_checks(tmp_path: Path, raw: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"tool": {"flyte": raw}}, tmp_path / "pyproject.toml")
    assert any(problem in p for p in info.value.problems), info.value.problems
    assert schema_accepts(raw)


_VALUES: list[Any] = [
    "", " ", "\t", "\x1c", "my_pkg", "pkg.tasks:env", "pkg.tasks", "pkg:", "café", "x\n", "a b",
    "linux/amd64", "linux/arm/v7", "windows/amd64", "/home/flyte", "/", "/opt\n", "relative/dir",
    "latest", "v1.0", "-bad", "all", "none", "loaded-modules", "fast", "compatible", "warn", "error",
    "off", "static", "import", "docker", "oci", "A_B", "1A",
    0, 1, -1, 2.5, 0.0, -0.5, math.inf, -math.inf, math.nan, True, False, datetime.date(2024, 1, 1),
    [], [""], [" "], ["latest"], ["-x"], ["pkg.tasks:env"], ["a b"], [1], ["src"], [True],
    {}, {"A_B": "x"}, {"A_B": ""}, {"1A": "x"}, {"A": 1}, {"A": True}, {"": "x"},
]  # fmt: skip


def _tables(cls: type[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Tables with some of ``cls``'s keys (and now and then a misspelt one), each set to a sub-table
    of the same kind or to any value of :data:`_VALUES`."""
    entries = {}
    for key, (_, shape) in fields_of(cls).items():
        value = st.sampled_from(_VALUES)
        if isinstance(shape.base, type) and dataclasses.is_dataclass(shape.base):
            value = st.one_of(_tables(shape.base), value)
        entries[key] = value
    entries[next(iter(entries)) + "s"] = st.sampled_from(_VALUES)
    return st.fixed_dictionaries({}, optional=entries)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=_tables(FlyteConfig))
def test_schema_and_model_agree_on_random_tables(tmp_path: Path, raw: dict[str, Any]) -> None:
    problems = model_problems(raw, tmp_path)
    assert schema_accepts(raw) is (problems == []), problems


@dataclasses.dataclass(frozen=True)
class _Odd:
    """Shapes the model does not use yet, checked the same way."""

    blanks: tuple[Annotated[str, Pattern(r"[ a]*", "spaces or a's")], ...] = setting((), "Items.")
    words: Annotated[str, Pattern(r"[ a]*", "spaces or a's")] = setting("", "A key's pattern alone.")


@pytest.mark.parametrize(
    "raw",
    [
        {"blanks": [" "]},
        {"blanks": [""]},
        {"blanks": ["a a"]},
        {"blanks": ["b"]},
        {"words": " "},
        {"words": ""},
    ],
)
def test_schema_and_model_agree_on_shapes_the_model_does_not_use_yet(
    tmp_path: Path, raw: dict[str, Any]
) -> None:
    checker = Checker(tmp_path)
    checker.build(_Odd, raw, "t")
    try:
        fastjsonschema.compile(config_schema.table_schema(_Odd))(raw)
    except fastjsonschema.JsonSchemaValueException:
        accepted = False
    else:
        accepted = True
    assert accepted is (checker.problems == []), checker.problems


# --- regular expressions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "regex", [r"\d+", r"[\w.]+", r"\s+", r"a\b", r"(?P<x>a)", r"(?i)a", r"a{,3}", r"\Aa"]
)
def test_a_pattern_the_dialects_read_apart_is_refused(regex: str) -> None:
    with pytest.raises(ValueError, match="ECMA-262"):
        config_schema.ecma_pattern(regex)


def test_patterns_are_anchored_and_portable() -> None:
    assert config_schema.ecma_pattern(r"a|b") == "^(?:a|b)$"  # the anchors hold for every branch
    assert config_schema.ecma_pattern(r"/[\s\S]*") == r"^(?:/[\s\S]*)$"
    assert r"\w" not in json.dumps(SCHEMA).replace(r"\\w", "")


# --- validate-pyproject ----------------------------------------------------------------------------


def _validate_pyproject(tmp_path: Path, flyte: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "pyproject.toml").write_text(f'[project]\nname = "orders"\nversion = "1.0"\n\n{flyte}')
    return subprocess.run(
        [sys.executable, "-m", "validate_pyproject", str(tmp_path / "pyproject.toml")],
        capture_output=True,
        text=True,
    )


def test_validate_pyproject_accepts_a_good_table(tmp_path: Path) -> None:
    proc = _validate_pyproject(
        tmp_path,
        '[tool.flyte]\npackage = "orders"\ndiscovery-timeout = 60\n\n'
        '[tool.flyte.bundle]\ncopy-style = "loaded-modules"\n\n'
        '[tool.flyte.image]\ntags = ["latest"]\nenv = { MODE = "prod" }\n',
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ("[tool.flyte.image]\ntags = []\n", "`tool.flyte.image.tags`"),
        ('[tool.flyte.bundle]\ncompresion = "fast"\n', "compresion"),
        ('[tool.flyte]\ndiscovery = "imports"\n', "`tool.flyte.discovery`"),
    ],
)
def test_validate_pyproject_rejects_a_bad_table_naming_the_key(
    tmp_path: Path, table: str, named: str
) -> None:
    proc = _validate_pyproject(tmp_path, table)
    assert proc.returncode == 1
    assert named in proc.stderr, proc.stderr


def test_the_entry_point_loads_the_file_and_nothing_of_the_model() -> None:
    """validate-pyproject loads every tool's entry point on each run: ours reads one JSON file."""
    code = (
        "import json, sys\nfrom importlib.metadata import entry_points\n"
        "import hatch_flyte\nbefore = set(sys.modules)\n"
        "(ep,) = entry_points(group='validate_pyproject.tool_schema', name='flyte')\n"
        "schema = ep.load()(ep.name)\n"
        "print(json.dumps([schema['$id'], sorted(set(sys.modules) - before)]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    schema_id, loaded = json.loads(out)
    assert schema_id == SCHEMA["$id"]
    assert [m for m in loaded if m.startswith("hatch_flyte")] == ["hatch_flyte.resources"]


def test_the_wheel_ships_the_schema_and_its_entry_point(plugin_wheel: Path) -> None:
    with zipfile.ZipFile(plugin_wheel) as wheel:
        shipped = json.loads(wheel.read("hatch_flyte/resources/flyte.schema.json"))
        (entry_points,) = (n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt"))
        text = wheel.read(entry_points).decode()
    assert shipped == SCHEMA
    assert "[validate_pyproject.tool_schema]\nflyte = hatch_flyte.resources:flyte_schema\n" in text
