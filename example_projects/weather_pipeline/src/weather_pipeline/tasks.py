"""Flyte tasks: thin wrappers that run the business logic remotely."""

import flyte

from weather_pipeline.logic.cleaning import drop_outliers, load_readings
from weather_pipeline.logic.stats import daily_means

env = flyte.TaskEnvironment(
    name="weather",
    resources=flyte.Resources(cpu=1, memory="1Gi"),
)


@env.task
async def station_means(csv_text: str = "") -> dict[str, float]:
    """Clean the readings and return each station's mean temperature."""
    readings = drop_outliers(load_readings(csv_text or None))
    return daily_means(readings)


@env.task
async def report() -> str:
    """A one-line report over the bundled sample data."""
    means = await station_means()
    return ", ".join(f"{station}: {value} C" for station, value in means.items())
