"""hatch-flyte: package Flyte 2 code from the project's own build.

The build logic (``config``, ``project``, ``ignore``, ``selection``, ``archive``, ``bundle``) is
plain Python; ``hooks`` (hatch) and ``setuptools`` glue are thin adapters over it.
"""

from hatch_flyte.__about__ import __version__

__all__ = ["__version__"]
