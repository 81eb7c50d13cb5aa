"""The secrets guard: name files that look like credentials before they ship in a bundle."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable

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
