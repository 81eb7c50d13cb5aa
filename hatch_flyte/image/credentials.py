"""Registry credentials, found as the Docker CLI finds them.

In order: ``HATCH_FLYTE_REGISTRY_USER``/``_PASSWORD`` (for the registry the image is pushed to); the
Docker config (``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``): its credential helper
for the registry (``credHelpers``), else its default store (``credsStore``), both run as
``docker-credential-<name> get`` with the server on standard input; then its ``auths`` entries
(base64 ``user:password`` in ``auth``), which also serve when a helper has nothing for the registry.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hatch_flyte.errors import ImageError

USER_ENV = "HATCH_FLYTE_REGISTRY_USER"
PASSWORD_ENV = "HATCH_FLYTE_REGISTRY_PASSWORD"
DOCKER_HUB = "docker.io"
_HUB_CONFIG_KEY = "https://index.docker.io/v1/"
HELPER_TIMEOUT = 60.0


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    #: Where they came from, for error messages (never the secret).
    source: str


def docker_config_path() -> Path:
    root = os.environ.get("DOCKER_CONFIG")
    return Path(root) / "config.json" if root else Path.home() / ".docker" / "config.json"


def env_credentials() -> Credentials | None:
    """``HATCH_FLYTE_REGISTRY_USER``/``_PASSWORD``, when both are set."""
    user, password = os.environ.get(USER_ENV), os.environ.get(PASSWORD_ENV)
    return Credentials(user, password, f"{USER_ENV}/{PASSWORD_ENV}") if user and password else None


def credentials_for(registry: str, *, use_env: bool) -> Credentials | None:
    """Credentials for ``registry`` (``host[:port]``, ``docker.io`` for Docker Hub), or None."""
    found = env_credentials() if use_env else None
    if found is not None:
        return found
    path = docker_config_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise ImageError(f"cannot read the Docker config {path}: {e}; fix or remove the file") from None
    if not isinstance(data, dict):
        return None
    names = _config_keys(registry)
    helper = None
    helpers = data.get("credHelpers")
    if isinstance(helpers, dict):
        helper = next((v for k, v in helpers.items() if _norm(str(k)) in names and isinstance(v, str)), None)
    store = data.get("credsStore")
    helper = helper or (store if isinstance(store, str) else None)
    if helper:
        found = _from_helper(helper, _HUB_CONFIG_KEY if registry == DOCKER_HUB else registry, path)
        if found is not None:
            return found
    return _from_auths(data.get("auths"), registry, names, path)


def _norm(key: str) -> str:
    return key.rstrip("/")


def _config_keys(registry: str) -> set[str]:
    """The spellings of ``registry`` as a key of the Docker config."""
    names = {registry, f"https://{registry}", f"http://{registry}", f"https://{registry}/v1"}
    if registry == DOCKER_HUB:
        names |= {_HUB_CONFIG_KEY, "docker.io", "index.docker.io", "registry-1.docker.io"}
    return {_norm(n) for n in names}


def _from_auths(auths: Any, registry: str, names: set[str], path: Path) -> Credentials | None:
    if not isinstance(auths, Mapping):
        return None
    for key, entry in auths.items():
        if _norm(str(key)) not in names or not isinstance(entry, Mapping):
            continue
        encoded = entry.get("auth")
        if not encoded:
            continue
        try:
            decoded = base64.b64decode(encoded).decode()
        except (ValueError, UnicodeDecodeError):
            raise ImageError(
                f"{path}: the `auth` of {key!r} is not base64 of user:password; run `docker login {registry}`"
            ) from None
        name, sep, secret = decoded.partition(":")
        if sep:
            return Credentials(name, secret, str(path))
    return None


def _from_helper(helper: str, server: str, config: Path) -> Credentials | None:
    """``docker-credential-<helper> get``; None when it has no credentials for ``server``."""
    program = f"docker-credential-{helper}"
    where = f"{config} names the credential helper {program!r} for {server}"
    try:
        proc = subprocess.run(
            [program, "get"],
            input=server,
            capture_output=True,
            text=True,
            timeout=HELPER_TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        raise ImageError(
            f"{where}, and it is not installed (not on PATH); install it, log in again with `docker login`, "
            f"or set {USER_ENV}/{PASSWORD_ENV}"
        ) from None
    except subprocess.TimeoutExpired:
        raise ImageError(f"{where}, and it did not answer within {HELPER_TIMEOUT:.0f} s") from None
    except OSError as e:
        raise ImageError(f"{where}, and it cannot be run: {e}") from None
    said = (proc.stdout.strip() or proc.stderr.strip())[:500]
    if proc.returncode != 0:
        if "credentials not found" in said.lower():
            return None  # the protocol's answer for "nothing stored for this server"
        raise ImageError(f"{where}, and it failed (exit {proc.returncode}): {said}")
    try:
        answer = json.loads(proc.stdout)
        username, secret = answer["Username"], answer["Secret"]
    except (ValueError, KeyError, TypeError):
        raise ImageError(f"{where}, and it answered no Username/Secret JSON: {said[:200]!r}") from None
    if not isinstance(username, str) or not isinstance(secret, str):
        raise ImageError(f"{where}, and its Username/Secret are not strings")
    if username == "<token>":
        raise ImageError(
            f"{where}, and it holds an identity token, which hatch-flyte's registry client does not use; "
            f"set {USER_ENV}/{PASSWORD_ENV} (e.g. to a registry token) instead"
        )
    return Credentials(username, secret, program)
