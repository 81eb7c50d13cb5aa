"""Validation of raw TOML (or command-line) values against the model, for every surface alike.

What a value must be follows from its field's type and markers (:mod:`.fields`); every problem is
collected with its dotted key, what was found and what is expected, so that one error lists them
all.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from hatch_flyte.config.fields import AnyText, NonEmpty, Pattern, Positive, ProjectPath, key_of

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Shape:
    """A field's type, taken apart: the base type, its markers, and the element shapes."""

    base: Any
    markers: tuple[Any, ...] = ()
    optional: bool = False
    #: For arrays, the items' shape; for tables of strings, the keys' and the values' shapes.
    items: tuple[Shape, ...] = ()

    def marker(self, kind: type[T]) -> T | None:
        return next((m for m in self.markers if isinstance(m, kind)), None)


def shape_of(tp: Any) -> Shape:
    """The shape of a (resolved) type hint."""
    markers: tuple[Any, ...] = ()
    optional = False
    if get_origin(tp) in (Union, types.UnionType):
        members = [a for a in get_args(tp) if a is not type(None)]
        optional = len(members) < len(get_args(tp))
        (tp,) = members
    if get_origin(tp) is Annotated:
        tp, *extra = get_args(tp)
        markers = tuple(extra)
    origin = get_origin(tp)
    if origin is tuple:
        args = get_args(tp)
        item = args[0]
        if get_origin(item) is tuple:  # tuple[tuple[K, V], ...]: a table of strings
            key, value = get_args(item)
            return Shape(dict, markers, optional, (shape_of(key), shape_of(value)))
        return Shape(tuple, markers, optional, (shape_of(item),))
    return Shape(tp, markers, optional)


_FIELDS: dict[type[Any], dict[str, tuple[dataclasses.Field[Any], Shape]]] = {}


def fields_of(cls: type[Any]) -> dict[str, tuple[dataclasses.Field[Any], Shape]]:
    """``key -> (field, shape)`` for the keys of a table class, in declaration order."""
    if cls not in _FIELDS:
        hints = get_type_hints(cls, include_extras=True)
        out = {}
        for f in dataclasses.fields(cls):
            key = key_of(f)
            if key is not None:
                out[key] = (f, shape_of(hints[f.name]))
        _FIELDS[cls] = out
    return _FIELDS[cls]


def shape_at(cls: type[Any], dotted: str) -> Shape:
    """The shape of the key ``dotted`` (``bundle.compression``) of the table class ``cls``."""
    *path, last = dotted.split(".")
    for part in path:
        cls = fields_of(cls)[part][1].base
    return fields_of(cls)[last][1]


def kind(value: Any) -> str:
    """How a TOML value is named in messages: ``a string ('x')``, ``an array``, ``a table``."""
    names = {str: "a string", bool: "a boolean", int: "an integer", float: "a number", list: "an array"}
    for t, name in names.items():
        if type(value) is t:
            return f"{name} ({value!r})" if t is not list else name
    if isinstance(value, Mapping):
        return "a table"
    return type(value).__name__


class Checker:
    """Collects the problems of one file (or one command line)."""

    def __init__(
        self,
        project_dir: Path,
        outside_fix: str = "use a path relative to the directory of pyproject.toml that stays inside it",
    ) -> None:
        self.project_dir = project_dir.resolve()
        self.problems: list[str] = []
        #: Dotted keys named otherwise in messages (a command-line flag: ``--root-dir``).
        self.names: dict[str, str] = {}
        self._outside_fix = outside_fix

    def table(
        self, cls: type[T], raw: Mapping[str, Any], prefix: str, passthrough: Collection[str] = ()
    ) -> dict[str, Any]:
        """Checked keyword arguments for ``cls`` from the table ``raw`` named ``prefix``.

        Keys in ``passthrough`` are someone else's (hatchling's) and left alone."""
        fields = fields_of(cls)
        out: dict[str, Any] = {}
        for key, value in raw.items():
            dotted = self.names.get(f"{prefix}.{key}", f"{prefix}.{key}")
            if key not in fields:
                if key in passthrough:
                    continue
                near = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.6)
                hint = (
                    f"; did you mean `{near[0]}`?" if near else f"; valid keys: {', '.join(sorted(fields))}"
                )
                self.problems.append(f"unknown key `{dotted}`{hint}")
                continue
            f, shape = fields[key]
            before = len(self.problems)
            checked = self.value(shape, value, dotted)
            if len(self.problems) == before:
                out[f.name] = checked
        return out

    def build(
        self,
        cls: type[T],
        raw: Mapping[str, Any],
        prefix: str,
        passthrough: Collection[str] = (),
        **fixed: Any,
    ) -> T:
        """An instance of ``cls`` (defaults for missing or wrong keys: raise on :attr:`problems`).

        A table class may define ``conflicts(table) -> list[str]`` for rules between its keys."""
        value = cls(**self.table(cls, raw, prefix, passthrough), **fixed)
        conflicts = getattr(value, "conflicts", None)
        if conflicts is not None:
            self.problems.extend(conflicts(prefix))
        return value

    def value(self, shape: Shape, value: Any, key: str) -> Any:
        base = shape.base
        if dataclasses.is_dataclass(base):
            if not isinstance(value, Mapping):
                self.problems.append(f"`{key}` must be a table, got {kind(value)}")
                return value
            return self.build(base, value, key)  # type: ignore[arg-type]
        if get_origin(base) is Literal:
            return self._choice(get_args(base), value, key)
        if base is bool:
            if not isinstance(value, bool):
                self.problems.append(f"`{key}` must be true or false, got {kind(value)}")
            return value
        if base is float:
            positive = shape.marker(Positive)
            numeric = not isinstance(value, bool) and isinstance(value, (int, float))
            if not numeric or (positive is not None and value <= 0):
                what = f"a positive number of {positive.unit}" if positive else "a number"
                self.problems.append(f"`{key}` must be {what}, got {kind(value)}")
                return value
            return float(value)
        if base is str:
            return self._string(shape, value, key)
        if base is tuple:
            return self._array(shape, value, key)
        if base is dict:
            return self._string_table(shape, value, key)
        raise TypeError(f"no conversion for {base!r} ({key})")  # a model error, not a user's

    def _choice(self, choices: tuple[Any, ...], value: Any, key: str) -> Any:
        if value not in choices or type(value) is not str:
            allowed = ", ".join(repr(c) for c in choices)
            near = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.5)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            self.problems.append(f"`{key}` must be one of {allowed}, got {kind(value)}{hint}")
        return value

    def _string(self, shape: Shape, value: Any, key: str, item: bool = False) -> Any:
        pattern = shape.marker(Pattern)
        path = shape.marker(ProjectPath)
        if pattern is not None and not item:
            if not isinstance(value, str) or not re.fullmatch(pattern.regex, value):
                self.problems.append(f"`{key}` must be {pattern.noun}, got {kind(value)}")
            return value
        if shape.marker(AnyText) is not None:
            if not isinstance(value, str):
                self.problems.append(f"`{key}` must be a string, got {kind(value)}")
            return value
        if not isinstance(value, str) or not value.strip():
            what = "a non-empty path string" if path is not None and not item else "a non-empty string"
            self.problems.append(f"`{key}` must be {what}, got {kind(value)}")
            return value
        if pattern is not None and not re.fullmatch(pattern.regex, value):
            self.problems.append(f"`{key}` = {value!r} is not {pattern.noun}")
        if path is not None and path.inside and not self._inside(value):
            self.problems.append(
                f"`{key}` = {value!r} escapes the project directory {self.project_dir}; {self._outside_fix}"
            )
        return value

    def _array(self, shape: Shape, value: Any, key: str) -> Any:
        if not isinstance(value, list):
            self.problems.append(f"`{key}` must be an array of strings, got {kind(value)}")
            return value
        non_empty = shape.marker(NonEmpty)
        if non_empty is not None and not value:
            self.problems.append(f"`{key}` must not be empty: {non_empty.hint}")
        (item,) = shape.items
        return tuple(self._string(item, v, f"{key}[{i}]", item=True) for i, v in enumerate(value))

    def _string_table(self, shape: Shape, value: Any, key: str) -> Any:
        if not isinstance(value, Mapping):
            self.problems.append(f"`{key}` must be a table of strings, got {kind(value)}")
            return value
        key_shape, value_shape = shape.items
        pattern = key_shape.marker(Pattern)
        for k, v in value.items():
            if pattern is not None and not re.fullmatch(pattern.regex, str(k)):
                self.problems.append(f"`{key}.{k}` is not {pattern.noun}")
            self._string(value_shape, v, f"{key}.{k}", item=True)
        return tuple(sorted((str(k), str(v)) for k, v in value.items()))

    def _inside(self, value: str) -> bool:
        target = (self.project_dir / value).resolve()
        return target == self.project_dir or self.project_dir in target.parents
