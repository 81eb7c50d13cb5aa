"""Feature engineering."""

import flyte as fl

from ml_platform import base

features_env = fl.TaskEnvironment(
    name="features",
    depends_on=[base],
    resources=fl.Resources(cpu=2, memory="2Gi"),
)


def scale(values: list[float]) -> list[float]:
    """Min-max scaling; a constant column maps to zeros."""
    lo, hi = min(values), max(values)
    return [0.0 if hi == lo else (v - lo) / (hi - lo) for v in values]


@features_env.task
async def build_features(raw: list[float]) -> list[float]:
    return scale(raw)
