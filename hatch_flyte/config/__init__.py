"""hatch-flyte's configuration: one typed model (:mod:`.model`) for ``[tool.flyte]``, the build hook's
and the hatch target's options and the command-line flags, validated the same way (:mod:`.convert`),
documented from the same fields (:mod:`.docs`), and given as a JSON Schema (:mod:`.schema`).

All problems in one file are collected and raised as a single :class:`ConfigError`, each naming the
dotted key, what was found and what is expected.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar, get_args

from hatch_flyte.config.convert import Checker, fields_of, kind, shape_at
from hatch_flyte.config.fields import ProjectPath
from hatch_flyte.config.model import (
    FLAGS,
    HATCHLING_HOOK_KEYS,
    HATCHLING_TARGET_KEYS,
    BuilderOptions,
    BundleConfig,
    Compression,
    CopyStyle,
    Discovery,
    Flag,
    FlyteConfig,
    HookOptions,
    ImageConfig,
    SecretsPolicy,
)
from hatch_flyte.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

__all__ = [
    "COMPRESSIONS",
    "DISCOVERIES",
    "FLAGS",
    "SECRETS_POLICIES",
    "BuilderOptions",
    "BundleConfig",
    "Compression",
    "Discovery",
    "Flag",
    "FlyteConfig",
    "HookOptions",
    "ImageConfig",
    "Override",
    "SecretsPolicy",
    "flag_choices",
    "flags_for",
    "is_path_flag",
    "load_config",
    "load_toml",
    "parse_builder_options",
    "parse_config",
    "parse_hook_options",
    "with_overrides",
]

T = TypeVar("T")

COMPRESSIONS: tuple[str, ...] = get_args(Compression)
SECRETS_POLICIES: tuple[str, ...] = get_args(SecretsPolicy)
DISCOVERIES: tuple[str, ...] = get_args(Discovery)
COPY_STYLES: tuple[str, ...] = get_args(CopyStyle)


def load_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file, turning syntax errors into a :class:`ConfigError` with line and column."""
    try:
        with path.open("rb") as f:
            data: dict[str, Any] = tomllib.load(f)
            return data
    except FileNotFoundError:
        raise ConfigError(
            str(path), ["file not found: create it or point at the project directory"]
        ) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(str(path), [f"malformed TOML: {e}"]) from None
    except OSError as e:
        raise ConfigError(str(path), [f"cannot read the file: {e.strerror or e}"]) from None


def load_config(pyproject: Path) -> FlyteConfig:
    """Load and validate ``[tool.flyte]`` from ``pyproject``."""
    return parse_config(load_toml(pyproject), pyproject)


def parse_config(data: Mapping[str, Any], pyproject: Path) -> FlyteConfig:
    """Validate the ``[tool.flyte]`` part of an already parsed pyproject.toml."""
    tool = data.get("tool", {})
    raw = tool.get("flyte") if isinstance(tool, Mapping) else None
    if raw is None:
        return FlyteConfig()
    if not isinstance(raw, Mapping):
        raise ConfigError(str(pyproject), [f"`tool.flyte` must be a table, got {kind(raw)}"])
    checker = Checker(pyproject.parent)
    config = checker.build(FlyteConfig, raw, "tool.flyte", present=True)
    if checker.problems:
        raise ConfigError(str(pyproject), checker.problems)
    return config


def parse_hook_options(options: Mapping[str, Any], pyproject: Path, table: str) -> HookOptions:
    """Validate the build hook's table (``table`` names it in messages); hatchling's keys pass."""
    return _parse_plugin_table(HookOptions, options, pyproject, table, HATCHLING_HOOK_KEYS)


def parse_builder_options(options: Mapping[str, Any], pyproject: Path, table: str) -> BuilderOptions:
    """Validate the ``flyte`` target's table; the options hatchling reads in any target pass."""
    return _parse_plugin_table(BuilderOptions, options, pyproject, table, HATCHLING_TARGET_KEYS)


def _parse_plugin_table(
    cls: type[T], options: Mapping[str, Any], pyproject: Path, table: str, passthrough: Collection[str]
) -> T:
    checker = Checker(pyproject.parent)
    parsed = checker.build(cls, _table(options, table, checker), table, passthrough=passthrough)
    if checker.problems:
        raise ConfigError(str(pyproject), checker.problems)
    return parsed


def _table(raw: Any, name: str, checker: Checker) -> Mapping[str, Any]:
    if isinstance(raw, Mapping):
        return raw
    checker.problems.append(f"`{name}` must be a table, got {kind(raw)}")
    return {}


def flags_for(command: str) -> tuple[Flag, ...]:
    """The flags that set a key, for ``command``."""
    return tuple(f for f in FLAGS if command in f.commands)


def flag_choices(flag: Flag) -> tuple[str, ...] | None:
    """The values a flag accepts, from its key's type (None: any string)."""
    if flag.const is not None:
        return None
    base = shape_at(FlyteConfig, flag.key).base
    args = get_args(base)
    return tuple(args) if args else None


def is_path_flag(flag: Flag) -> bool:
    """Whether a flag's key is a path (given on the command line relative to the current directory)."""
    return shape_at(FlyteConfig, flag.key).marker(ProjectPath) is not None


@dataclass(frozen=True)
class Override:
    """A ``[tool.flyte]`` key set for one run from outside pyproject.toml (a command-line flag)."""

    #: Dotted key below ``tool.flyte`` (``bundle.compression``).
    key: str
    value: Any
    #: How messages name where the value came from (``--compression``).
    source: str

    @classmethod
    def from_flag(cls, flag: Flag, value: Any) -> Override:
        """The override a flag's value makes; a path is taken relative to the current directory."""
        if is_path_flag(flag) and isinstance(value, str) and value.strip():
            value = os.path.abspath(value)
        return cls(flag.key, value, flag.flag)


def with_overrides(config: FlyteConfig, overrides: Sequence[Override], project_dir: Path) -> FlyteConfig:
    """``config`` with the ``overrides`` set, each checked as its key in ``[tool.flyte]`` is (paths
    must stay inside ``project_dir``) and named in messages by its source."""
    checker = Checker(project_dir, outside_fix="pass a directory inside it")
    for o in overrides:
        checker.names[f"tool.flyte.{o.key}"] = o.source
        config = _replace_at(config, o.key.split("."), o.value, checker, "tool.flyte")
    if checker.problems:
        raise ConfigError("the command line", checker.problems)
    return config


def _replace_at(table: T, path: list[str], value: Any, checker: Checker, prefix: str) -> T:
    head, *rest = path
    if not rest:
        return replace(table, **checker.table(type(table), {head: value}, prefix))  # type: ignore[type-var]
    name = fields_of(type(table))[head][0].name
    inner = _replace_at(getattr(table, name), rest, value, checker, f"{prefix}.{head}")
    return replace(table, **{name: inner})  # type: ignore[type-var]
