"""The guard: name what should not ship unnoticed in a bundle, before it does.

Files that look like credentials, and symlinks that lead out of the bundle root (flyte follows
them, so the bytes of ``~/.aws/credentials`` or a mounted secret would go into the bundle).
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable
from pathlib import Path

from hatch_flyte.bundle.listing import Listing

#: Base-name patterns of files that usually hold secrets. flyte bundles a nested ``.env`` (its
#: standard list only leaves out the top-level one), so it is here too.
SECRET_PATTERNS: tuple[str, ...] = (
    ".env", ".env.*", "*.pem", "*.key", "*.p12", "*.pfx", "*.jks", "*.keystore", "*.kdbx",
    "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*", ".netrc", ".pgpass", ".pypirc", ".npmrc",
    ".git-credentials", ".htpasswd", "credentials", "credentials.json", "*service-account*.json",
    "*.tfstate", "kubeconfig",
)  # fmt: skip
#: Look-alikes that are meant to be shared.
_HARMLESS = re.compile(r"(\.pub|\.example|\.sample|\.template|\.dist)$", re.IGNORECASE)
_REGEX = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in SECRET_PATTERNS), re.IGNORECASE)


def looks_secret(arcname: str) -> bool:
    """Whether a bundle member's base name looks like a credentials file."""
    base = arcname.rsplit("/", 1)[-1]
    return _REGEX.match(base) is not None and _HARMLESS.search(base) is None


def find_secrets(arcnames: Iterable[str]) -> list[str]:
    """The members among ``arcnames`` that look like secrets, in their order."""
    return [a for a in arcnames if looks_secret(a)]


def links_leaving(root: Path, paths: Iterable[str], listing: Listing | None = None) -> list[tuple[str, str]]:
    """``(link, target)`` for each symlink through which a bundled file resolves outside ``root``.

    ``paths`` are the bundled files under the resolved ``root``; ``link`` is relative to it (POSIX),
    ``target`` the absolute path the link resolves to. A link to a directory outside is named once,
    whatever number of files lie under it. Costs one ``scandir`` and one ``realpath`` per
    directory (a file's own link shows in its directory's listing, with no ``lstat`` of its own);
    none of the ``scandir`` calls when ``listing`` holds the directories already (the build's walk).
    """
    listing = listing if listing is not None else Listing()
    top = str(root)
    prefix = top.rstrip(os.sep) + os.sep

    def inside(path: str) -> bool:
        return path == top or path.startswith(prefix)

    escapes: dict[str, tuple[str, str] | None] = {}

    def escape_of(directory: str) -> tuple[str, str] | None:
        """The first directory link on the way from the root to ``directory`` that leaves it."""
        if directory not in escapes:
            if directory == top or not inside(directory):
                escapes[directory] = None
            else:
                parent = escape_of(os.path.dirname(directory))
                if parent is None:
                    real = os.path.realpath(directory)
                    parent = None if inside(real) else (directory, real)
                escapes[directory] = parent
        return escapes[directory]

    def links_in(directory: str) -> frozenset[str] | None:
        """Names of the symlinks in ``directory`` (None: cannot list it, ask each file)."""
        try:
            return listing.links(directory)
        except OSError:
            return None

    found: dict[str, str] = {}
    current: str | None = None
    escaped: tuple[str, str] | None = None
    links: frozenset[str] | None = frozenset()
    # Files come sorted by path, so a directory's files are consecutive: look at it once.
    for path in paths:
        directory, _, name = path.rpartition(os.sep)
        if directory != current:
            current, escaped = directory, escape_of(directory)
            links = links_in(directory) if escaped is None else frozenset()
        leaving = escaped
        if leaving is None and (name in links if links is not None else os.path.islink(path)):
            real = os.path.realpath(path)
            leaving = None if inside(real) else (path, real)
        if leaving is not None:
            found.setdefault(leaving[0][len(prefix) :].replace(os.sep, "/"), leaving[1])
    return sorted(found.items())
