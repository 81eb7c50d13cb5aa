"""Business logic: plain Python, no Flyte import, unit tested on its own."""
