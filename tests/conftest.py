"""Session fixtures: the Docker ones (see tests/docker_env.py for how to write a Docker test) and a
wheel of this checkout for the tests that run real frontends."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from docker_env import (
    AuthRegistry,
    find_auth_registry,
    find_base_image,
    find_registry,
    make_docker_client,
)

if TYPE_CHECKING:
    import docker

DOCKER_FIXTURES = frozenset({"docker_client", "base_image", "registry", "auth_registry"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses a Docker fixture ``docker``, so ``-m "not docker"`` leaves it out."""
    for item in items:
        if DOCKER_FIXTURES.intersection(getattr(item, "fixturenames", ())) and not any(
            item.iter_markers("docker")
        ):
            item.add_marker(pytest.mark.docker)


@pytest.fixture
def docker_client() -> Iterator[docker.DockerClient]:
    """A ``docker.DockerClient`` for the test engine (skips, or fails when CI=true, without one).

    One per test, so that a ``login()`` in one test does not leak credentials into another."""
    client = make_docker_client()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def base_image(docker_client: docker.DockerClient) -> str:
    """Name of the offline Python base image, present in the engine."""
    return find_base_image(docker_client)


@pytest.fixture
def registry() -> str:
    """``host:port`` of the plain loopback registry (answers ``GET /v2/`` with 200)."""
    return find_registry()


@pytest.fixture
def auth_registry() -> AuthRegistry:
    """The loopback registry with htpasswd auth, with working credentials."""
    return find_auth_registry()


@pytest.fixture(scope="session")
def plugin_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel of this checkout, built once, that temp projects require by ``file://`` URI."""
    from frontend_helpers import REPO, _run

    out = tmp_path_factory.mktemp("plugin")
    _run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(REPO)],
        cwd=REPO,
    )
    (wheel,) = out.glob("hatch_flyte-*.whl")
    return wheel
