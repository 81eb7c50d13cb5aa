"""The vocabulary of the configuration model: how a setting is declared, and the constraints a type
can carry beyond its Python type (``Annotated[str, Pattern(...)]``).

A setting is a dataclass field declared with :func:`setting` (or :func:`table` for a sub-table); its
Python type says what TOML value it takes, its markers say what else must hold, its ``doc`` is the
reference documentation. Nothing here validates: :mod:`.convert` does, for every surface alike.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Pattern:
    """A string that must match ``regex`` (fully); ``noun`` completes "must be ..." / "is not ..."."""

    regex: str
    noun: str
    #: The Type column of the reference tables (default: "string").
    type_doc: str | None = None


@dataclass(frozen=True)
class ProjectPath:
    """A path relative to the project directory; with ``inside``, it may not leave it."""

    inside: bool = True


@dataclass(frozen=True)
class Positive:
    """A number greater than zero, in ``unit``."""

    unit: str


@dataclass(frozen=True)
class NonEmpty:
    """An array that may not be empty; ``hint`` says what leaving the key out does instead."""

    hint: str


@dataclass(frozen=True)
class AnyText:
    """A string that may be empty (an environment variable's value)."""


#: Field metadata keys.
DOC = "hatch_flyte.doc"
DEFAULT_DOC = "hatch_flyte.default_doc"
TYPE_DOC = "hatch_flyte.type_doc"
KEY = "hatch_flyte.key"


def setting(default: Any, doc: str, *, default_doc: str | None = None, type_doc: str | None = None) -> Any:
    """A key of a table: its default, its documentation (Meaning column) and, when the default is
    computed (``None`` in the model), the words that say what it is (Default column)."""
    metadata = {DOC: doc, DEFAULT_DOC: default_doc, TYPE_DOC: type_doc}
    return dataclasses.field(default=default, metadata=metadata)


def table(cls: type[Any], doc: str) -> Any:
    """A sub-table (its keys documented in their own reference table)."""
    return dataclasses.field(default_factory=cls, metadata={DOC: doc})


def internal(default: Any) -> Any:
    """A field that is not a key (derived while loading)."""
    return dataclasses.field(default=default, metadata={KEY: None})


def key_of(f: dataclasses.Field[Any]) -> str | None:
    """The TOML key of a field (``root_dir`` -> ``root-dir``), or None for internal fields."""
    if KEY in f.metadata:
        key: str | None = f.metadata[KEY]
        return key
    return f.name.replace("_", "-")
