"""Serving: a small environment that depends on training and the base."""

import flyte

from ml_platform import base
from ml_platform.training.train import training_env

serving_env = flyte.TaskEnvironment(name="serving", depends_on=[training_env, base])


@serving_env.task
async def predict(x: float, mean: float) -> bool:
    return x > mean
