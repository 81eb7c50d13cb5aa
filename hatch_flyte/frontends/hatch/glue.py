"""Small pieces shared by the hatch builder and build hook."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hatch_flyte.pipeline import Session

_LOGGER = logging.getLogger("hatch_flyte")


class _AppHandler(logging.Handler):
    """Forwards hatch-flyte's log records to hatch's display, so warnings look like hatch's own."""

    def __init__(self, app: Any) -> None:
        super().__init__(logging.DEBUG)
        self.app = app

    def emit(self, record: logging.LogRecord) -> None:
        message = f"flyte: {record.getMessage()}"
        if record.levelno >= logging.ERROR:
            self.app.display_error(message)
        elif record.levelno >= logging.WARNING:
            self.app.display_warning(message)
        elif record.levelno >= logging.INFO:
            self.app.display_info(message)
        else:
            self.app.display_debug(message)


@contextlib.contextmanager
def app_logging(app: Any) -> Iterator[None]:
    """Route ``hatch_flyte`` logging to ``app`` (hatch's Application) for the duration of a build."""
    handler = _AppHandler(app)
    previous_level = _LOGGER.level
    previous_propagate = _LOGGER.propagate
    _LOGGER.addHandler(handler)
    _LOGGER.setLevel(logging.DEBUG)
    _LOGGER.propagate = False
    try:
        yield
    finally:
        _LOGGER.removeHandler(handler)
        _LOGGER.setLevel(previous_level)
        _LOGGER.propagate = previous_propagate


#: The build session of the project the ``flyte`` builder is building, by project root, while its
#: own wheel build runs: the build hook inside it joins it (one walk, one discovery, each warning
#: said once).
_SHARED: dict[Path, Session] = {}


@contextlib.contextmanager
def sharing(root: Path, session: Session) -> Iterator[None]:
    """Offer ``session`` to the build hook of a wheel built meanwhile."""
    _SHARED[root.resolve()] = session
    try:
        yield
    finally:
        _SHARED.pop(root.resolve(), None)


def shared(root: Path) -> Session | None:
    """The ``flyte`` builder's session for ``root``, if this wheel is built by it."""
    return _SHARED.get(root.resolve())


#: The oldest hatchling the builder and hook are tested with. Not a requirement of the package (a
#: hatchling project brings its own hatchling; the setuptools plugin needs none), so checked here.
MIN_HATCHLING = (1, 21)


def check_hatchling() -> None:
    """Fail with a clear message when the running hatchling is older than :data:`MIN_HATCHLING`."""
    from hatchling.__about__ import __version__
    from packaging.version import InvalidVersion, Version

    try:
        release = Version(__version__).release
    except InvalidVersion:
        return  # a development build: trust it
    if release[:2] < MIN_HATCHLING:
        from hatch_flyte.errors import BuildError

        wanted = ".".join(map(str, MIN_HATCHLING))
        raise BuildError(
            f"hatch-flyte needs hatchling>={wanted}, but this build runs hatchling {__version__}: "
            f'require "hatchling>={wanted}" in [build-system] requires of pyproject.toml'
        )
