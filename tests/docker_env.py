"""Helpers for tests that need a real Docker engine, a local registry or the offline base image.

The environment comes from ``.ci/docker-env.sh`` (run as root; ``.ci/run`` runs it before pytest). It
starts dockerd, a plain registry on 127.0.0.1:5000 and an htpasswd one on 127.0.0.1:5001, imports an
offline Debian bookworm image with Python 3.11 and writes its facts to ``.ci/.docker-env``:

    HATCH_FLYTE_TEST_BASE_IMAGE     image with python3 (+ venv, no pip) and tar, present in the engine;
                                    its / is 0755, so that non-root users can run in it
    HATCH_FLYTE_TEST_REGISTRY       host:port of the plain registry (HTTP, no auth)
    HATCH_FLYTE_TEST_AUTH_REGISTRY  host:port of the registry with htpasswd auth (HTTP)
    HATCH_FLYTE_TEST_AUTH_USER / HATCH_FLYTE_TEST_AUTH_PASSWORD
    DOCKER_HOST                     the engine's socket

Each value is taken from the process environment first, then from ``.ci/.docker-env``.

Writing a Docker test
---------------------
Ask for the fixtures in ``tests/conftest.py`` and mark the test ``@pytest.mark.docker`` (tests using
these fixtures get the marker automatically too, so ``pytest -m "not docker"`` leaves them out)::

    import pytest
    from docker_env import unique_repository

    @pytest.mark.docker
    def test_something(docker_client, base_image, registry, auth_registry): ...

- ``docker_client``: a ``docker.DockerClient`` for the engine (a new one per test, closed after it).
- ``base_image``: the base image's name (a ``str``), present in the engine.
- ``registry``: ``"127.0.0.1:5000"``, answering ``GET /v2/``.
- ``auth_registry``: an :class:`AuthRegistry` (``host``, ``username``, ``password``,
  ``auth_config()`` for the SDK's ``push(..., auth_config=...)``).

When something is missing the fixture skips the test, except when ``CI=true``: there a skipped Docker
test would hide a broken environment, so it fails instead.

Rules for Docker tests: only loopback registries (the fixtures refuse other hosts; the engine started by
the script also refuses any pull from elsewhere, e.g. the Hub pull that ``containers.run()`` attempts for
an image it does not have); push to a fresh repository name (:func:`unique_repository`); remove the
images and containers a test makes; disable the network of containers that don't need it.
"""

from __future__ import annotations

import ipaddress
import os
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest

if TYPE_CHECKING:
    import docker

ENV_FILE = Path(__file__).resolve().parent.parent / ".ci" / ".docker-env"
SETUP_HINT = "run `bash .ci/docker-env.sh` as root to set up the Docker test environment"

BASE_IMAGE_VAR = "HATCH_FLYTE_TEST_BASE_IMAGE"
REGISTRY_VAR = "HATCH_FLYTE_TEST_REGISTRY"
AUTH_REGISTRY_VAR = "HATCH_FLYTE_TEST_AUTH_REGISTRY"
AUTH_USER_VAR = "HATCH_FLYTE_TEST_AUTH_USER"
AUTH_PASSWORD_VAR = "HATCH_FLYTE_TEST_AUTH_PASSWORD"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def unavailable(reason: str) -> NoReturn:
    """Skip the current test, or fail it when ``CI=true`` (a skipped Docker test in CI is a failure)."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: Docker tests must run in CI; {SETUP_HINT})", pytrace=False)
    pytest.skip(f"{reason}; {SETUP_HINT}")


def read_env_file(path: Path = ENV_FILE) -> dict[str, str]:
    """``KEY=VALUE`` lines of ``.ci/.docker-env`` (blank lines and ``#`` comments ignored)."""
    values: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return values
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip()
    return values


def setting(name: str, path: Path = ENV_FILE) -> str | None:
    """The value of ``name`` from the environment, else from ``.ci/.docker-env``, else ``None``."""
    value = os.environ.get(name)
    if value:
        return value
    return read_env_file(path).get(name) or None


def require_loopback(host: str) -> str:
    """Return ``host`` (``host:port``) if it is on loopback; refuse anything else."""
    if host.startswith("[") and "]" in host:  # [IPv6]:port
        hostname = host[1 : host.index("]")]
    elif host.count(":") == 1:  # name:port or IPv4:port
        hostname = host.split(":", 1)[0]
    else:  # bare name, IPv4 or IPv6 address
        hostname = host
    if hostname == "localhost":
        return host
    try:
        if ipaddress.ip_address(hostname).is_loopback:
            return host
    except ValueError:
        pass
    pytest.fail(f"Docker tests use loopback registries only, not {host!r}", pytrace=False)


def registry_status(host: str, timeout: float = 5.0) -> int | None:
    """HTTP status of ``GET http://HOST/v2/`` (200: open registry, 401: auth), ``None`` if no answer."""
    require_loopback(host)
    request = urllib.request.Request(f"http://{host}/v2/", method="GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return None


def unique_repository(registry: str, name: str = "check") -> str:
    """A repository no earlier test run used: ``<registry>/hatch-flyte-test/<name>-<12 hex digits>``."""
    return f"{registry}/hatch-flyte-test/{name}-{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class AuthRegistry:
    """The registry with htpasswd auth and the credentials that work for it."""

    host: str
    username: str
    password: str

    def auth_config(self) -> dict[str, str]:
        """Credentials in the form ``docker`` SDK calls take (``push``, ``pull``: ``auth_config=``)."""
        return {"username": self.username, "password": self.password, "serveraddress": self.host}


def make_docker_client() -> docker.DockerClient:
    """A client for the engine at ``DOCKER_HOST`` (environment or ``.ci/.docker-env``); it has answered a
    ping. Skips (fails in CI) when the SDK is missing or no engine answers."""
    try:
        import docker
        import docker.errors
    except ImportError as exc:  # pragma: no cover - the test extra installs it
        unavailable(f"the docker SDK is not installed ({exc})")
    base_url = setting("DOCKER_HOST")
    where = base_url or "the default socket"
    problem = ""
    client = None
    try:
        client = docker.DockerClient(base_url=base_url) if base_url else docker.from_env()
        client.ping()
    except Exception as exc:  # DockerException, requests' ConnectionError, APIError ...
        problem = f"no Docker engine answers at {where}: {exc}"
    if problem:  # outside the except block: no chained traceback in the report
        if client is not None:
            client.close()
        unavailable(problem)
    assert client is not None
    return client


def find_base_image(client: docker.DockerClient) -> str:
    """The base image's name; skips (fails in CI) when it is not configured or not in the engine."""
    import docker.errors

    name = setting(BASE_IMAGE_VAR)
    if not name:
        unavailable(f"{BASE_IMAGE_VAR} is not set and {ENV_FILE} does not name it")
    try:
        client.images.get(name)
        present = True
    except docker.errors.ImageNotFound:
        present = False
    if not present:
        unavailable(f"the base image {name} is not in the Docker engine")
    return name


def find_registry() -> str:
    """``host:port`` of the plain registry; skips (fails in CI) unless it answers ``GET /v2/`` with 200."""
    host = setting(REGISTRY_VAR)
    if not host:
        unavailable(f"{REGISTRY_VAR} is not set and {ENV_FILE} does not name it")
    status = registry_status(host)
    if status != 200:
        unavailable(f"the registry at {host} does not answer GET /v2/ with 200 (got {status})")
    return host


def find_auth_registry() -> AuthRegistry:
    """The htpasswd registry; skips (fails in CI) unless it answers ``GET /v2/`` with 401."""
    values = {var: setting(var) for var in (AUTH_REGISTRY_VAR, AUTH_USER_VAR, AUTH_PASSWORD_VAR)}
    missing = [var for var, value in values.items() if not value]
    if missing:
        unavailable(f"{', '.join(missing)} not set and not in {ENV_FILE}")
    host = values[AUTH_REGISTRY_VAR] or ""
    status = registry_status(host)
    if status != 401:
        unavailable(f"the auth registry at {host} does not answer GET /v2/ with 401 (got {status})")
    return AuthRegistry(host, values[AUTH_USER_VAR] or "", values[AUTH_PASSWORD_VAR] or "")
