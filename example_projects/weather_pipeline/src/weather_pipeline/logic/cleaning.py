"""Reading and cleaning station readings."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class Reading:
    station: str
    day: str
    temperature_c: float


def load_readings(text: str | None = None) -> list[Reading]:
    """Parse readings from CSV text (default: the bundled sample data)."""
    if text is None:
        text = resources.files("weather_pipeline.data").joinpath("readings.csv").read_text()
    rows = csv.DictReader(text.splitlines())
    out = []
    for row in rows:
        value = row["temperature_c"].strip()
        if not value:
            continue  # a missing reading is skipped, not treated as zero
        out.append(Reading(row["station"], row["day"], float(value)))
    return out


def drop_outliers(readings: list[Reading], low: float = -60.0, high: float = 60.0) -> list[Reading]:
    """Remove physically implausible temperatures."""
    return [r for r in readings if low <= r.temperature_c <= high]
