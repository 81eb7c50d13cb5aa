"""Per-station daily statistics."""

from __future__ import annotations

from collections import defaultdict
from statistics import mean

from weather_pipeline.logic.cleaning import Reading


def daily_means(readings: list[Reading]) -> dict[str, float]:
    """Mean temperature per station, rounded to 0.1 degree."""
    by_station: dict[str, list[float]] = defaultdict(list)
    for r in readings:
        by_station[r.station].append(r.temperature_c)
    return {station: round(mean(values), 1) for station, values in sorted(by_station.items())}
