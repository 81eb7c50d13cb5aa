"""The hatchling plugins: the ``flyte`` builder, the ``flyte`` build hook and their registration."""
