"""Flyte tasks for the ETL jobs."""

import flyte

from etl_jobs.transform import normalize_names

etl = flyte.TaskEnvironment(name="etl", resources=flyte.Resources(cpu=1, memory="1Gi"))


@etl.task
async def clean(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return normalize_names(rows)
