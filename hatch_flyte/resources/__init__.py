"""Data files shipped inside the package: ``flyte.schema.json``, the JSON Schema of ``[tool.flyte]``
(generated from the settings model by :mod:`hatch_flyte.config.schema`).

validate-pyproject loads it through the ``validate_pyproject.tool_schema`` entry point
:func:`flyte_schema`. Importing this module loads nothing of hatch-flyte's model: a validator that
lists its plugins pays for a JSON file, nothing more.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["SCHEMA_FILE", "flyte_schema"]

SCHEMA_FILE = Path(__file__).with_name("flyte.schema.json")


def flyte_schema(tool: str = "flyte") -> dict[str, Any]:
    """hatch-flyte's settings in [tool.$tool]: environments, the code bundle and the image."""
    # validate-pyproject passes the entry point's name (the table under `tool`); there is one.
    if tool != "flyte":
        raise ValueError(f"hatch-flyte has a schema for [tool.flyte], not [tool.{tool}]")
    schema: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return schema
