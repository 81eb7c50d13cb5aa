"""The Docker test environment works for real: engine, offline base image, both loopback registries.

Also the skip-or-fail rule of the fixtures: outside CI a missing Docker environment skips, in CI
(``CI=true``) it fails.
"""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
import urllib.request
from pathlib import Path

import docker
import docker.errors
import pytest
from docker_env import (
    AuthRegistry,
    read_env_file,
    require_loopback,
    setting,
    unavailable,
    unique_repository,
)

PYTHON_CHECK = (
    "import socket, sys, venv\n"
    "print('%d.%d.%d' % sys.version_info[:3])\n"
    "print(','.join(sorted(name for _, name in socket.if_nameindex())))\n"
)


def import_tiny_image(client: docker.DockerClient, repository: str, tag: str) -> str:
    """Import a one-file image (a few hundred bytes) as ``repository:tag``; return its id."""
    data = b"hatch-flyte docker test environment\n"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        info.mtime = 0
        tar.addfile(info, io.BytesIO(data))
    client.api.import_image_from_data(buffer.getvalue(), repository=repository, tag=tag)
    return str(client.images.get(f"{repository}:{tag}").id)


def push(client: docker.DockerClient, repository: str, tag: str, **kwargs: object) -> list[dict[str, object]]:
    """Push and return the decoded progress chunks (registry errors arrive as chunks, not exceptions)."""
    return list(client.images.push(repository, tag=tag, stream=True, decode=True, **kwargs))


def errors_of(chunks: list[dict[str, object]]) -> list[str]:
    return [str(chunk["error"]) for chunk in chunks if "error" in chunk]


def pushed_digest(chunks: list[dict[str, object]]) -> str:
    assert not errors_of(chunks), errors_of(chunks)
    aux = [a for chunk in chunks if isinstance(a := chunk.get("aux"), dict)]
    assert aux, f"no digest in the push output: {chunks}"
    digest = aux[-1]["Digest"]
    assert isinstance(digest, str) and digest.startswith("sha256:")
    return digest


def remove_images(client: docker.DockerClient, *names: str) -> None:
    """Remove images by name or id (forced; missing ones are fine)."""
    for name in names:
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.remove(name, force=True)


# --- the fixtures' rules, no Docker needed ------------------------------------------------------------


def test_unavailable_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no engine"):
        unavailable("no engine")


@pytest.mark.parametrize("value", ["true", "TRUE", "true "])
def test_unavailable_fails_in_ci(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match=r"no engine.*CI=true"):
        unavailable("no engine")


def test_settings_come_from_the_environment_then_the_env_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env_file = tmp_path / ".docker-env"
    env_file.write_text("# facts\nHATCH_FLYTE_TEST_REGISTRY=127.0.0.1:5000\n\nDOCKER_HOST=unix:///x.sock\n")
    assert read_env_file(env_file) == {
        "HATCH_FLYTE_TEST_REGISTRY": "127.0.0.1:5000",
        "DOCKER_HOST": "unix:///x.sock",
    }
    assert read_env_file(tmp_path / "missing") == {}
    monkeypatch.delenv("HATCH_FLYTE_TEST_REGISTRY", raising=False)
    assert setting("HATCH_FLYTE_TEST_REGISTRY", env_file) == "127.0.0.1:5000"
    monkeypatch.setenv("HATCH_FLYTE_TEST_REGISTRY", "127.0.0.1:5999")
    assert setting("HATCH_FLYTE_TEST_REGISTRY", env_file) == "127.0.0.1:5999"
    assert setting("HATCH_FLYTE_TEST_NOPE", env_file) is None


def test_only_loopback_registries() -> None:
    for host in ("127.0.0.1:5000", "localhost:5000", "127.0.0.2", "[::1]:5000"):
        assert require_loopback(host) == host
    for host in ("10.0.0.1:5000", "registry.example:5000", "docker.io"):
        with pytest.raises(pytest.fail.Exception, match="loopback"):
            require_loopback(host)


def test_auth_config_for_the_sdk() -> None:
    reg = AuthRegistry("127.0.0.1:5001", "u", "p")
    assert reg.auth_config() == {"username": "u", "password": "p", "serveraddress": "127.0.0.1:5001"}


# --- the real environment -----------------------------------------------------------------------------


@pytest.mark.docker
def test_base_image_runs_python_without_network(docker_client: docker.DockerClient, base_image: str) -> None:
    out = docker_client.containers.run(
        base_image, ["python3", "-c", PYTHON_CHECK], network_disabled=True, remove=True
    )
    version, interfaces = out.decode().split()
    assert version.startswith("3.11."), version
    assert interfaces == "lo"  # no network in the container but loopback
    # A venv without pip (how an image layer gets its interpreter) and tar are in the image too.
    out = docker_client.containers.run(
        base_image,
        ["sh", "-c", "python3 -m venv --without-pip /tmp/v && /tmp/v/bin/python -V && tar --version"],
        network_disabled=True,
        remove=True,
    )
    assert out.decode().startswith("Python 3.11."), out
    assert "GNU tar" in out.decode()


@pytest.mark.docker
def test_push_to_registry_and_pull_back_by_digest(docker_client: docker.DockerClient, registry: str) -> None:
    repository = unique_repository(registry, "push-pull")
    image_id = import_tiny_image(docker_client, repository, "v1")
    try:
        digest = pushed_digest(push(docker_client, repository, "v1"))

        # The registry serves the manifest under that digest.
        name = repository.split("/", 1)[1]
        request = urllib.request.Request(
            f"http://{registry}/v2/{name}/manifests/{digest}",
            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.headers["Docker-Content-Digest"] == digest
            manifest = json.load(response)
        assert manifest["config"]["digest"] == image_id

        # Gone from the engine, then pulled back from the registry by digest.
        remove_images(docker_client, f"{repository}:v1")
        with pytest.raises(docker.errors.ImageNotFound):
            docker_client.images.get(image_id)
        pulled = docker_client.images.pull(f"{repository}@{digest}")
        assert pulled.id == image_id
        assert f"{repository}@{digest}" in pulled.attrs["RepoDigests"]
    finally:
        remove_images(docker_client, image_id)  # by id: every tag and digest reference goes


@pytest.mark.docker
def test_auth_registry_login(docker_client: docker.DockerClient, auth_registry: AuthRegistry) -> None:
    answer = docker_client.login(
        auth_registry.username, auth_registry.password, registry=auth_registry.host, reauth=True
    )
    assert answer["Status"] == "Login Succeeded"

    with pytest.raises(docker.errors.APIError) as excinfo:
        docker_client.login(
            auth_registry.username, "wrong-password", registry=auth_registry.host, reauth=True
        )
    # Docker 20.10 answers 500 with the registry's 401 in the message; newer engines answer 401.
    message = str(excinfo.value)
    assert "401" in message or "unauthorized" in message.lower(), message


@pytest.mark.docker
def test_auth_registry_push_needs_the_right_credentials(
    docker_client: docker.DockerClient, auth_registry: AuthRegistry
) -> None:
    repository = unique_repository(auth_registry.host, "auth-push")
    import_tiny_image(docker_client, repository, "v1")
    try:
        wrong = {**auth_registry.auth_config(), "password": "wrong-password"}
        errors = errors_of(push(docker_client, repository, "v1", auth_config=wrong))
        assert errors and "unauthorized" in errors[-1].lower(), errors
        assert pushed_digest(push(docker_client, repository, "v1", auth_config=auth_registry.auth_config()))
    finally:
        remove_images(docker_client, f"{repository}:v1")
