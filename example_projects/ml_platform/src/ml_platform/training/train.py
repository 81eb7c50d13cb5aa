"""Training: depends on the feature environment."""

from flyte import Resources
from flyte import TaskEnvironment as TE

from ml_platform.features.pipeline import build_features, features_env

training_env = TE(
    name="training",
    depends_on=[features_env],
    resources=Resources(cpu=4, memory="8Gi"),
    include=["../assets/labels.txt"],
)


def fit_mean(values: list[float]) -> float:
    return sum(values) / len(values)


@training_env.task
async def train(raw: list[float]) -> float:
    features = await build_features(raw)
    return fit_mean(features)
