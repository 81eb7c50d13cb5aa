"""Daily statistics for weather stations."""

__version__ = "0.3.0"
