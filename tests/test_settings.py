"""One model for every setting: the build hook's and the hatch target's options and the command-line
flags are checked like ``[tool.flyte]``, and the README's reference tables are the model's."""

from __future__ import annotations

import argparse
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hatch_flyte.config import (
    FLAGS,
    Flag,
    FlyteConfig,
    Override,
    load_config,
    parse_builder_options,
    parse_hook_options,
    with_overrides,
)
from hatch_flyte.config import docs as config_docs
from hatch_flyte.config.model import HATCHLING_TARGET_KEYS
from hatch_flyte.errors import ConfigError
from hatch_flyte.frontends import cli

REPO = Path(__file__).resolve().parents[1]
HOOK_TABLE = "tool.hatch.build.targets.wheel.hooks.flyte"
TARGET_TABLE = "tool.hatch.build.targets.flyte"


def test_readme_reference_tables_are_the_models() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert sorted(config_docs.regions(readme)) == sorted(config_docs.TABLES)
    assert config_docs.render(readme) == readme, (
        "README.md's reference tables differ from hatch_flyte/config/model.py: run "
        "`python -m hatch_flyte.config.docs README.md --write`"
    )


def test_docs_check_mode_catches_a_stale_table(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- reference: tool.flyte.bundle -->\n| stale |\n<!-- end reference -->\n")
    assert config_docs.main([str(readme), "--check"]) == 1
    assert config_docs.main([str(readme), "--write"]) == 0
    assert "| `compression` |" in readme.read_text() and config_docs.main([str(readme), "--check"]) == 0


def test_empty_tags_fail_when_the_file_is_read(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.flyte.image]\ntags = []\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "pyproject.toml")
    assert info.value.problems == [
        "`tool.flyte.image.tags` must not be empty: leave `tags` out for the default tags"
    ]


# --- the build hook's options -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"bundle-dirr": "dist"}, f"unknown key `{HOOK_TABLE}.bundle-dirr`; did you mean `bundle-dir`?"),
        ({"bundle-dir": ""}, f"`{HOOK_TABLE}.bundle-dir` must be a non-empty path string, got a string ('')"),
        ({"bundle-dir": 3}, f"`{HOOK_TABLE}.bundle-dir` must be a non-empty path string, got an integer (3)"),
        ({"frobnicate": 1}, f"unknown key `{HOOK_TABLE}.frobnicate`; valid keys: bundle-dir"),
    ],
)
def test_hook_options_are_checked_like_the_flyte_table(
    tmp_path: Path, options: dict[str, object], problem: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_hook_options(options, tmp_path / "pyproject.toml", HOOK_TABLE)
    assert info.value.problems == [problem]
    assert str(tmp_path / "pyproject.toml") in str(info.value)


def test_hook_leaves_hatchlings_own_options_to_hatchling(tmp_path: Path) -> None:
    options = {"bundle-dir": "../out", "dependencies": ["x"], "enable-by-default": True}
    assert parse_hook_options(options, tmp_path / "pyproject.toml", HOOK_TABLE).bundle_dir == "../out"


def test_a_misspelt_hook_option_stops_a_real_hatchling_build(tmp_path: Path) -> None:
    (tmp_path / "src" / "orders").mkdir(parents=True)
    (tmp_path / "src" / "orders" / "__init__.py").write_text("")
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "orders"\nversion = "1.0"\n[tool.hatch.build.hooks.flyte]\nbundle_dir = "dist"\n'
    )
    code = "import hatchling.build, sys; hatchling.build.build_wheel(sys.argv[1])"
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "out")], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode != 0
    assert (
        "unknown key `tool.hatch.build.hooks.flyte.bundle_dir`; did you mean `bundle-dir`?" in proc.stderr
    ), proc.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


# --- the flyte target's options ---------------------------------------------------------------------


def test_target_options_are_checked_and_hatchlings_pass(tmp_path: Path) -> None:
    where = tmp_path / "pyproject.toml"
    assert parse_builder_options({"show-files": True, "directory": "out"}, where, TARGET_TABLE).show_files
    with pytest.raises(ConfigError) as info:
        parse_builder_options({"show-file": True, "show-files": "yes"}, where, TARGET_TABLE)
    assert info.value.problems == [
        f"unknown key `{TARGET_TABLE}.show-file`; did you mean `show-files`?",
        f"`{TARGET_TABLE}.show-files` must be true or false, got a string ('yes')",
    ]


def test_hatchling_target_keys_cover_what_hatchling_reads() -> None:
    """Every option hatchling reads from a target's table passes our check (else a valid hatchling
    option would stop the build)."""
    import hatchling.builders.config

    source = inspect.getsource(hatchling.builders.config)
    read = set(re.findall(r'"([a-z][a-z-]+)" in self\.target_config', source))
    read |= set(re.findall(r'self\.target_config\.get\("([a-z][a-z-]+)"', source))
    assert read and read <= HATCHLING_TARGET_KEYS, sorted(read - HATCHLING_TARGET_KEYS)


# --- command-line flags -----------------------------------------------------------------------------


def _options(command: str) -> dict[str, argparse.Action]:
    parser = cli._parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert isinstance(sub, argparse._SubParsersAction)
    return {s: a for a in sub.choices[command]._actions for s in a.option_strings}


def test_every_flag_is_on_its_commands_with_the_keys_choices() -> None:
    for flag in FLAGS:
        for command in flag.commands:
            action = _options(command)[flag.flag]
            if flag.key == "bundle.compression":
                assert action.choices is not None
                assert tuple(action.choices) == ("fast", "compatible")
            elif flag.const is None:
                assert action.choices is None
            else:
                assert action.const == flag.const


def test_each_flag_sets_its_key_on_every_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "pkg"\nversion = "1"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    values = {"--root-dir": ("src", tmp_path / "src"), "--compression": ("compatible", "compatible")}
    for flag in FLAGS:
        given, expected = values.get(flag.flag, (None, flag.const))
        for command in flag.commands:
            args = cli._parser().parse_args([command, ".", flag.flag, *([given] if given else [])])
            project = cli._load(args)
            if flag.key == "root-dir":
                assert project.root_dir == expected, command
            else:
                table = project.config.bundle if flag.key.startswith("bundle.") else project.config
                assert getattr(table, flag.key.split(".")[-1]) == expected, (flag.flag, command)
            assert project.set_by == {flag.key: flag.flag}


def _flag(name: str) -> Flag:
    return next(f for f in FLAGS if f.flag == name)


def test_overrides_are_checked_like_the_file(tmp_path: Path) -> None:
    config = with_overrides(
        FlyteConfig(), [Override("bundle.compression", "compatible", "--compression")], tmp_path
    )
    assert config.bundle.compression == "compatible" and config.bundle.secrets == "warn"
    with pytest.raises(ConfigError) as info:
        with_overrides(
            FlyteConfig(),
            [
                Override("bundle.compression", "fastest", "--compression"),
                Override("image.tags", [], "--tags"),
            ],
            tmp_path,
        )
    assert str(info.value).startswith("invalid configuration in the command line:")
    assert info.value.problems == [
        "`--compression` must be one of 'fast', 'compatible', got a string ('fastest'); did you mean 'fast'?",
        "`--tags` must not be empty: leave `tags` out for the default tags",
    ]


def test_path_flags_are_taken_from_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "proj" / "code").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    override = Override.from_flag(_flag("--root-dir"), "proj/code")
    assert override == Override("root-dir", str(tmp_path / "proj" / "code"), "--root-dir")
    config = with_overrides(FlyteConfig(), [override], tmp_path / "proj")
    assert config.root_dir is not None
    assert (tmp_path / "proj" / config.root_dir).resolve() == tmp_path / "proj" / "code"
