"""Directory listings read once per build: the walk for ignore files and the selection walk share them.

flyte walks a bundle root twice (once for ``.gitignore``/``.flyteignore`` files, once for the files
themselves); so does :class:`~hatch_flyte.bundle.ignore.IgnoreRules` followed by
:func:`~hatch_flyte.bundle.selection.select_files`. :class:`Listing` remembers what each directory
held the first time it was read, and :func:`walk` replays :func:`os.walk` from it, in the same
order, with the same answers for links and errors.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator


class Listing:
    """Each directory's entries, read at most once: subdirectories, other names, and symlinks."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[list[str], list[str], frozenset[str]] | OSError] = {}

    def _get(self, top: str) -> tuple[list[str], list[str], frozenset[str]]:
        seen = self._seen.get(top)
        if seen is None:
            seen = self._seen[top] = _read(top)
        if isinstance(seen, OSError):
            raise seen
        return seen

    def entries(self, top: str) -> tuple[list[str], list[str]]:
        """As :func:`os.walk` splits them (a link to a directory counts as a directory); raises the
        :class:`OSError` of reading ``top``, again on every call."""
        dirs, other, _ = self._get(top)
        return list(dirs), list(other)

    def links(self, top: str) -> frozenset[str]:
        """The names of the symlinks in ``top`` (for the secrets guard); raises like :meth:`entries`."""
        return self._get(top)[2]


def _read(top: str) -> tuple[list[str], list[str], frozenset[str]] | OSError:
    dirs: list[str] = []
    other: list[str] = []
    links: list[str] = []
    try:
        with os.scandir(top) as it:
            for entry in it:
                try:
                    is_dir = entry.is_dir()
                except OSError:
                    is_dir = False
                (dirs if is_dir else other).append(entry.name)
                if entry.is_symlink():
                    links.append(entry.name)
    except OSError as e:
        return e
    return dirs, other, frozenset(links)


def walk(
    top: str,
    listing: Listing,
    onerror: Callable[[OSError], None] | None = None,
    followlinks: bool = False,
) -> Iterator[tuple[str, list[str], list[str]]]:
    """:func:`os.walk` (top-down) over ``listing``: the caller may prune ``dirnames`` in place."""
    try:
        dirs, other = listing.entries(top)
    except OSError as e:
        if onerror is not None:
            onerror(e)
        return
    yield top, dirs, other
    for name in dirs:
        path = os.path.join(top, name)
        if followlinks or not os.path.islink(path):
            yield from walk(path, listing, onerror, followlinks)
