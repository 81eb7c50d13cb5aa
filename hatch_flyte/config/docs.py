"""The README's reference tables, generated from the model, so that docs and code cannot drift.

Each table sits in the README between ``<!-- reference: NAME -->`` and ``<!-- end reference -->``;
``python -m hatch_flyte.config.docs --write README.md`` regenerates them, ``--check`` (and a test)
fails when they differ from the model.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Callable
from typing import Any, Literal, get_args, get_origin

from hatch_flyte.config import is_path_flag, regenerate
from hatch_flyte.config.convert import Shape, fields_of
from hatch_flyte.config.fields import DEFAULT_DOC, DOC, TYPE_DOC, Pattern, ProjectPath
from hatch_flyte.config.model import (
    FLAGS,
    BuilderOptions,
    BundleConfig,
    FlyteConfig,
    HookOptions,
    ImageConfig,
)


def type_doc(shape: Shape) -> str:
    """The Type column: what TOML value a key takes."""
    base = shape.base
    if get_origin(base) is Literal:
        return " \\| ".join(f'`"{v}"`' for v in get_args(base))
    if base is bool:
        return "bool"
    if base is float:
        return "number"
    if base is str:
        pattern = shape.marker(Pattern)
        if pattern is not None and pattern.type_doc:
            return pattern.type_doc
        return "path" if shape.marker(ProjectPath) else "string"
    if base is tuple:
        item = type_doc(shape.items[0])
        plural = {"string": "strings", "path": "paths"}.get(item, item)
        return f"array of {plural}"
    if base is dict:
        return "table of strings"
    if dataclasses.is_dataclass(base):
        return "table"
    raise TypeError(f"no documentation for {base!r}")


def default_doc(f: dataclasses.Field[Any], shape: Shape) -> str:
    """The Default column: the default as TOML, or the words for a computed one."""
    words = f.metadata.get(DEFAULT_DOC)
    if words:
        return str(words)
    value = f.default
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, float):
        return f"{value:g}"
    if value == ():
        return "`{}`" if shape.base is dict else "`[]`"
    raise ValueError(f"field {f.name} needs default_doc= (its default {value!r} means nothing to a user)")


def table(cls: type[Any]) -> str:
    """The reference table of one table of the model (sub-tables get their own)."""
    rows = ["| Key | Type | Default | Meaning |", "| --- | --- | --- | --- |"]
    for key, (f, shape) in fields_of(cls).items():
        if dataclasses.is_dataclass(shape.base):
            continue
        kind = f.metadata.get(TYPE_DOC) or type_doc(shape)
        rows.append(f"| `{key}` | {kind} | {default_doc(f, shape)} | {f.metadata[DOC]} |")
    return "\n".join(rows)


def flags_table() -> str:
    """The command-line flags that set a key."""
    rows = ["| Flag | Commands | Sets |", "| --- | --- | --- |"]
    for flag in FLAGS:
        sets = f"tool.flyte.{flag.key}"
        if flag.const is not None:
            sets += f" = {_toml(flag.const)}"
        note = ""
        if is_path_flag(flag):
            note = " (a path from the current directory)"
        commands = ", ".join(f"`{c}`" for c in flag.commands)
        rows.append(f"| `{flag.flag}` | {commands} | `{sets}`{note} |")
    return "\n".join(rows)


def _toml(value: bool | str) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else f'"{value}"'


TABLES: dict[str, Callable[[], str]] = {
    "tool.flyte": lambda: table(FlyteConfig),
    "tool.flyte.bundle": lambda: table(BundleConfig),
    "tool.flyte.image": lambda: table(ImageConfig),
    "hook": lambda: table(HookOptions),
    "builder": lambda: table(BuilderOptions),
    "flags": flags_table,
}
_REGION = re.compile(r"(<!-- reference: (?P<name>[\w.]+) -->\n)(?P<body>.*?)(\n<!-- end reference -->)", re.S)


def render(text: str) -> str:
    """``text`` (the README) with every reference region regenerated."""

    def fill(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in TABLES:
            raise KeyError(f"unknown reference table {name!r}; known: {', '.join(TABLES)}")
        return f"{match[1]}{TABLES[name]()}{match[4]}"

    return _REGION.sub(fill, text)


def regions(text: str) -> list[str]:
    """The names of the reference regions in ``text``."""
    return [m["name"] for m in _REGION.finditer(text)]


def main(argv: list[str] | None = None) -> int:
    return regenerate.main(
        argv,
        description="Regenerate the reference tables in a README.",
        render=render,
        stale="reference tables differ from the model",
    )


if __name__ == "__main__":
    sys.exit(main())
