import os

import flyte

static_env = flyte.TaskEnvironment(name="static_jobs")

# The name depends on where the code is imported: only known at run time.
regional = flyte.TaskEnvironment(name=f"jobs_{os.environ.get('FLYTE_REGION', 'eu')}")


@regional.task
async def hello() -> str:
    return "hello"
