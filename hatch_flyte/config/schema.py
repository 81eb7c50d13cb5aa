"""The JSON Schema of ``[tool.flyte]``, derived from the model (:mod:`.model`) like the README's tables.

Every key's schema follows from its field alone: the Python type gives the JSON type (``Literal`` an
``enum``), :class:`~.fields.Pattern` an anchored ``pattern``, :class:`~.fields.NonEmpty` ``minItems``,
:class:`~.fields.Positive` ``exclusiveMinimum``, the field's documentation its ``description`` and a
plain default its ``default``; every table is closed (``additionalProperties: false``). The schema is
JSON Schema draft-07, the version validate-pyproject uses, and is shipped as
``hatch_flyte/resources/flyte.schema.json`` (``python -m hatch_flyte.config.schema --write``
regenerates it; ``--check`` and a test fail while it differs from the model), which
validate-pyproject loads through the ``validate_pyproject.tool_schema`` entry point.

What a schema cannot say, and only :mod:`.convert` checks:

- rules between keys (the tables' ``conflicts()``: ``dockerfile`` with ``base``, ``include`` with
  ``copy-style = "none"``, the workdir's normal form...);
- whether a path stays inside the project (:class:`~.fields.ProjectPath`), which depends on where
  the file is;
- in an ECMA-262 engine (editors), which non-ASCII characters are word characters: a pattern's
  ``\\w`` (Unicode in Python) becomes "an ASCII word character or any non-ASCII one".

Regular expressions: the model's are Python ``re.fullmatch`` expressions, a schema's ``pattern`` is an
ECMA-262 search. Patterns are anchored as ``^(?:...)$`` (validate-pyproject's fastjsonschema turns
``$`` into ``\\Z``, so a trailing newline is not let through; python-jsonschema searches with
Python's ``$`` and lets one through) and written in the syntax both dialects read alike;
:func:`ecma_pattern` refuses any other construct rather than let the two disagree.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from collections.abc import Iterator
from typing import Any, Literal, get_args, get_origin

from hatch_flyte.config import regenerate
from hatch_flyte.config.convert import Shape, fields_of
from hatch_flyte.config.fields import DEFAULT_DOC, DOC, AnyText, NonEmpty, Pattern, Positive
from hatch_flyte.config.model import FlyteConfig
from hatch_flyte.resources import SCHEMA_FILE

DRAFT = "http://json-schema.org/draft-07/schema#"
#: A URN, not a URL: the schema is found through the entry point, not fetched from anywhere.
SCHEMA_ID = "urn:hatch-flyte:schema:tool.flyte"

#: What a Python ``\w`` outside a character class becomes: every character but ASCII non-word ones
#: (ECMA-262's ``\w`` is ASCII only, and without the ``u`` flag no class can name Unicode letters).
_WORD = r"[^\x00-\x2f\x3a-\x40\x5b-\x5e\x60\x7b-\x7f]"
#: Escapes both dialects read alike: escaped punctuation, ``\n``/``\t``/``\r``, ``\xHH``, ``\uHHHH``.
_ESCAPE = re.compile(r"\\(?:[\\.\-/\[\](){}*+?|^$]|[ntr]|x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4})")
#: A character class without escapes the dialects read apart (``[\s\S]`` is any character in both,
#: though ``\s`` alone differs).
_CLASS = re.compile(r"\[\\s\\S\]|\[\^?\]?(?:[^\\\]]|" + _ESCAPE.pattern + r")*\]")
#: Anything else that reads alike: a plain character, a group without a name or flags.
_PLAIN = re.compile(r"\((?!\?)|\(\?[:=!]|[^\\\[(]")


def ecma_pattern(regex: str) -> str:
    """``regex`` (a Python ``fullmatch`` expression) as a JSON Schema ``pattern`` that accepts the same
    strings: anchored, ``\\w`` spelt out; ``ValueError`` for a construct the dialects read apart."""
    out = []
    pos = 0
    while pos < len(regex):
        if regex.startswith(r"\w", pos):
            out.append(_WORD)
            pos += 2
            continue
        if regex.startswith("{,", pos):
            raise ValueError(f"pattern {regex!r}: write {{0,n}}: ECMA-262 reads {{,n}} as text")
        m = _ESCAPE.match(regex, pos) or _CLASS.match(regex, pos) or _PLAIN.match(regex, pos)
        if m is None:
            raise ValueError(
                f"pattern {regex!r}: {regex[pos : pos + 4]!r} (at {pos}) does not mean the same in Python "
                "and in JSON Schema (ECMA-262) regular expressions; spell it out with ASCII classes"
            )
        out.append(m[0])
        pos = m.end()
    return f"^(?:{''.join(out)})$"


def _whitespace_ranges() -> Iterator[str]:
    """The characters ``str.strip()`` removes (``str.isspace``), as class ranges of ``\\uXXXX``."""
    spaces = [c for c in range(sys.maxunicode + 1) if chr(c).isspace()]
    if spaces[-1] > 0xFFFF:  # \uXXXX names only the BMP (no Unicode version has had one beyond it)
        raise ValueError(f"whitespace beyond the BMP: U+{spaces[-1]:X}")
    start = prev = spaces[0]
    for c in [*spaces[1:], -1]:
        if c != prev + 1:
            yield f"\\u{start:04x}" if start == prev else f"\\u{start:04x}-\\u{prev:04x}"
            start = c
        prev = c


#: A string that is not empty once stripped (a non-empty path or name): it holds a character that is
#: not whitespace by Python's definition (ECMA-262's ``\S`` differs on a few).
NOT_BLANK = f"[^{''.join(_whitespace_ranges())}]"


def value_schema(shape: Shape, item: bool = False) -> dict[str, Any]:
    """The schema of a value of ``shape``; ``item``: an array's element or a table's value, which
    :mod:`.convert` checks as such."""
    base = shape.base
    if dataclasses.is_dataclass(base):
        return table_schema(base)  # type: ignore[arg-type]
    if get_origin(base) is Literal:
        return {"type": "string", "enum": list(get_args(base))}
    if base is bool:
        return {"type": "boolean"}
    if base is float:
        out: dict[str, Any] = {"type": "number"}
        if shape.marker(Positive) is not None:
            out["exclusiveMinimum"] = 0
        return out
    if base is str:
        return _string_schema(shape, item)
    if base is tuple:
        out = {"type": "array", "items": value_schema(shape.items[0], item=True)}
        if shape.marker(NonEmpty) is not None:
            out["minItems"] = 1
        return out
    if base is dict:
        key, value = shape.items
        pattern = key.marker(Pattern)
        out = {"type": "object"}
        if pattern is not None:
            out["propertyNames"] = {"pattern": ecma_pattern(pattern.regex)}
        out["additionalProperties"] = value_schema(value, item=True)
        return out
    raise TypeError(f"no JSON Schema for {base!r}")  # a model error, not a user's


def _string_schema(shape: Shape, item: bool) -> dict[str, Any]:
    # The order of checks mirrors Checker._string: a key's pattern alone decides; an item must be
    # non-blank and then match; text may be anything.
    pattern = shape.marker(Pattern)
    out: dict[str, Any] = {"type": "string"}
    if shape.marker(AnyText) is not None and (pattern is None or item):
        return out
    if pattern is not None:
        out["pattern"] = ecma_pattern(pattern.regex)
        if item:
            out["allOf"] = [{"pattern": NOT_BLANK}]
    else:
        out["pattern"] = NOT_BLANK
    return out


def table_schema(cls: type[Any]) -> dict[str, Any]:
    """The schema of one table of the model: its keys, closed to any other."""
    properties = {}
    for key, (f, shape) in fields_of(cls).items():
        prop = value_schema(shape)
        description = f.metadata[DOC]
        words = f.metadata.get(DEFAULT_DOC)
        if words:
            description = f"{description} Default: {words}."
        prop["description"] = description
        default = _default(f, shape)
        if default is not None:
            prop["default"] = default
        properties[key] = prop
    return {"type": "object", "additionalProperties": False, "properties": properties}


def _default(f: dataclasses.Field[Any], shape: Shape) -> Any:
    """The field's default as a TOML value, or None when it is computed or a table."""
    value = f.default
    if value is dataclasses.MISSING or value is None:
        return None
    if value == ():
        return {} if shape.base is dict else []
    if isinstance(value, (bool, str, float, int)):
        return value
    raise ValueError(f"field {f.name}: no JSON form for its default {value!r}")


def flyte_schema() -> dict[str, Any]:
    """The schema of ``[tool.flyte]``."""
    return {
        "$schema": DRAFT,
        "$id": SCHEMA_ID,
        "title": "hatch-flyte settings ([tool.flyte])",
        "description": (
            "How hatch-flyte packages Flyte code: environments, the code bundle ([tool.flyte.bundle]) "
            "and the full-build image ([tool.flyte.image]). Rules between keys and whether paths stay "
            "inside the project are checked when hatch-flyte reads the file."
        ),
        **table_schema(FlyteConfig),
    }


def render() -> str:
    """The schema file's text."""
    return json.dumps(flyte_schema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    return regenerate.main(
        argv,
        description="Regenerate the JSON Schema of [tool.flyte].",
        render=lambda _old: render(),
        stale="differs from the model",
        default=SCHEMA_FILE,
    )


if __name__ == "__main__":
    sys.exit(main())
