"""hatch plugin registration (entry point group ``hatch``): the ``flyte`` builder and build hook.

Imports happen inside the hooks: hatchling loads this module for every build in an environment
where hatch-flyte is installed, and most of those builds never use it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hatchling.plugin import hookimpl

if TYPE_CHECKING:
    from hatch_flyte.frontends.hatch.builder import FlyteBuilder
    from hatch_flyte.frontends.hatch.hook import FlyteBuildHook


@hookimpl
def hatch_register_builder() -> type[FlyteBuilder]:
    from hatch_flyte.frontends.hatch.builder import FlyteBuilder

    return FlyteBuilder


@hookimpl
def hatch_register_build_hook() -> type[FlyteBuildHook]:
    from hatch_flyte.frontends.hatch.hook import FlyteBuildHook

    return FlyteBuildHook
