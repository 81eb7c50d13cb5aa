"""Bearer-token auth of the OCI backend's registry client, against a real registry behind a token gate.

distribution's own token auth needs a JWT-signing token service; instead a small loopback front
answers the Docker token flow (401 with a ``Bearer realm=...`` challenge, a token endpoint that
checks basic credentials) and forwards authorised requests to the real loopback registry.
"""

from __future__ import annotations

import base64
import http.server
import io
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from hatch_flyte.errors import ImageError
from hatch_flyte.image.credentials import Credentials
from hatch_flyte.image.oci.registry import Registry

USER, PASSWORD, TOKEN = "robot", "s3cret", "tok-123"


class _Gate(http.server.BaseHTTPRequestHandler):
    upstream = ""
    port = 0
    scopes: list[str] = []  # noqa: RUF012 - shared record of what clients asked for

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/token"):
            query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
            expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            if self.headers.get("Authorization") != expected:
                self._reply(401, b'{"errors": [{"code": "UNAUTHORIZED"}]}')
                return
            _Gate.scopes.extend(query.get("scope", []))
            self._reply(200, json.dumps({"token": TOKEN}).encode())
            return
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            challenge = f'Bearer realm="http://127.0.0.1:{self.port}/token",service="gate"'
            self._reply(401, b'{"errors": [{"code": "UNAUTHORIZED"}]}', {"WWW-Authenticate": challenge})
            return
        request = urllib.request.Request(
            self.upstream + self.path, headers={"Accept": self.headers.get("Accept", "")}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                body = response.read()
                headers = {
                    k: v
                    for k, v in response.headers.items()
                    if k.lower() in ("content-type", "docker-content-digest")
                }
                self._reply(response.status, body, headers)
        except urllib.error.HTTPError as e:
            self._reply(e.code, e.read())

    do_HEAD = do_GET

    def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


@pytest.fixture
def gate(registry: str) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Gate)
    _Gate.upstream = f"http://{registry}"
    _Gate.port = server.server_address[1]
    _Gate.scopes = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{_Gate.port}"
    finally:
        server.shutdown()


@pytest.fixture
def pushed(registry: str, base_image: str, docker_client: Any) -> tuple[str, str]:
    """A small image in the real registry: the test base under its own repository."""
    repo = f"{registry}/hatch-flyte-test/bearer-base"
    docker_client.images.get(base_image).tag(repo, "v1")
    for chunk in docker_client.images.push(repo, tag="v1", stream=True, decode=True):
        assert "error" not in chunk, chunk
    return "hatch-flyte-test/bearer-base", "v1"


def test_bearer_token_flow_pulls_manifest_and_blob(gate: str, pushed: tuple[str, str]) -> None:
    repo, tag = pushed
    client = Registry(gate, Credentials(USER, PASSWORD, "test"))
    body, media_type, digest = client.get_manifest(repo, tag)
    manifest = json.loads(body)
    assert media_type.endswith("manifest.v2+json") or "oci.image.manifest" in media_type
    assert digest.startswith("sha256:")
    out = io.BytesIO()
    size = client.fetch_blob(repo, manifest["config"]["digest"], out)
    assert size == manifest["config"]["size"] == len(out.getvalue())
    assert f"repository:{repo}:pull" in _Gate.scopes


def test_bearer_token_with_wrong_credentials_is_a_clear_error(gate: str, pushed: tuple[str, str]) -> None:
    repo, tag = pushed
    client = Registry(gate, Credentials(USER, "wrong", "test"))
    with pytest.raises(ImageError) as info:
        client.get_manifest(repo, tag)
    assert gate in str(info.value)
