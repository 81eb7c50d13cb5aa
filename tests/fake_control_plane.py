"""A fake Flyte control plane on loopback that speaks the protocol flyte's own client speaks.

Connect over HTTP/1.1, served by flyteidl2's generated WSGI applications (the same service
descriptions flyte's client is generated from), for the calls one deploy makes:
``ClusterService/SelectCluster``, ``DataProxyService/CreateUploadLocation``, an HTTP ``PUT`` of the
bytes to the signed URL (checked against ``Content-MD5`` as an object store does), and
``TaskService/DeployTask`` per task (``ALREADY_EXISTS`` for a task id registered before).

Uploaded objects are kept as files under ``storage``; their native URL is a ``file://`` URI there,
so that flyte's runtime (``a0 --tgz``) can download exactly what was uploaded, offline.

Faults are switched on per test (:meth:`FakeControlPlane.reset` switches them off again):
``refuse_upload`` (the object store answers 403), ``fail_deploy_after`` (``DeployTask`` fails with
``INTERNAL`` once that many tasks were registered).

Run it alone (for the benchmark or by hand): ``python fake_control_plane.py STORAGE_DIR``; it prints
its endpoint on the first line of stdout.
"""

from __future__ import annotations

import base64
import hashlib
import io
import socketserver
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from flyteidl2.cluster import payload_pb2 as cluster_pb2
from flyteidl2.cluster.service_connect import ClusterServiceWSGIApplication
from flyteidl2.dataproxy import dataproxy_service_pb2 as dataproxy_pb2
from flyteidl2.dataproxy.dataproxy_service_connect import DataProxyServiceWSGIApplication
from flyteidl2.task import task_service_pb2
from flyteidl2.task.task_service_connect import TaskServiceWSGIApplication

UPLOAD_PREFIX = "/upload/"


@dataclass
class Upload:
    """One object PUT to a signed URL."""

    key: str
    path: Path
    content_md5: str
    content_length: int
    data: bytes


@dataclass
class FakeControlPlane:
    """State and behaviour of the fake; ``endpoint`` is set once it serves."""

    storage: Path
    endpoint: str = ""
    calls: list[tuple[str, Any]] = field(default_factory=list)
    uploads: list[Upload] = field(default_factory=list)
    tasks: dict[tuple[str, str, str, str, str], Any] = field(default_factory=dict)
    refuse_upload: bool = False
    fail_deploy_after: int | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _expected_md5: dict[str, bytes] = field(default_factory=dict)

    def reset(self) -> None:
        """Forget calls, uploads and registered tasks; switch faults off."""
        with self._lock:
            self.calls.clear()
            self.uploads.clear()
            self.tasks.clear()
            self._expected_md5.clear()
            self.refuse_upload = False
            self.fail_deploy_after = None

    def methods(self) -> list[str]:
        """The names of the calls made, in order (``PUT`` for an upload)."""
        return [name for name, _ in self.calls]

    def requests(self, name: str) -> list[Any]:
        return [req for n, req in self.calls if n == name]

    # --- Connect services (flyteidl2's *Sync protocols) -------------------------------------

    def select_cluster(self, request: cluster_pb2.SelectClusterRequest, ctx: Any) -> Any:
        self._record("SelectCluster", request)
        return cluster_pb2.SelectClusterResponse()  # empty: "use this endpoint"

    def create_upload_location(self, request: dataproxy_pb2.CreateUploadLocationRequest, ctx: Any) -> Any:
        self._record("CreateUploadLocation", request)
        if len(request.content_md5) != 16:
            raise ConnectError(Code.INVALID_ARGUMENT, "content_md5 must be the raw 16-byte md5")
        key = f"{request.project}/{request.domain}/{request.content_md5.hex()}/{request.filename}"
        with self._lock:
            self._expected_md5[key] = bytes(request.content_md5)
        base = self.endpoint.replace("dns:///", "http://")
        return dataproxy_pb2.CreateUploadLocationResponse(
            signed_url=f"{base}{UPLOAD_PREFIX}{key}?X-Signature=fake",
            native_url=(self.storage / key).as_uri(),
        )

    def deploy_task(self, request: task_service_pb2.DeployTaskRequest, ctx: Any) -> Any:
        self._record("DeployTask", request)
        t = request.task_id
        key = (t.org, t.project, t.domain, t.name, t.version)
        with self._lock:
            if self.fail_deploy_after is not None and len(self.tasks) >= self.fail_deploy_after:
                raise ConnectError(Code.INTERNAL, "injected failure: the database is down")
            if key in self.tasks:
                raise ConnectError(Code.ALREADY_EXISTS, f"task {t.name} version {t.version} already exists")
            self.tasks[key] = request
        return task_service_pb2.DeployTaskResponse()

    # --- the object store ---------------------------------------------------------------------

    def _put(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        key = environ["PATH_INFO"][len(UPLOAD_PREFIX) :]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        data = environ["wsgi.input"].read(length)
        md5_header = environ.get("HTTP_CONTENT_MD5", "")
        self._record("PUT", key)
        with self._lock:
            expected = self._expected_md5.get(key)
            refuse = self.refuse_upload
        if refuse or expected is None:
            start_response("403 Forbidden", [("Content-Type", "application/xml")])
            return [b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"]
        digest = hashlib.md5(data).digest()
        if md5_header != base64.b64encode(expected).decode() or digest != expected:
            start_response("400 Bad Request", [("Content-Type", "application/xml")])
            return [b"<Error><Code>BadDigest</Code></Error>"]
        path = self.storage / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        with self._lock:
            self.uploads.append(Upload(key, path, md5_header, length, data))
        start_response("200 OK", [("Content-Length", "0")])
        return [b""]

    def _record(self, name: str, request: Any) -> None:
        with self._lock:
            self.calls.append((name, request))

    def wsgi_app(self) -> Callable[..., Iterable[bytes]]:
        service = _Services(self)
        apps = {
            app.path: app
            for app in (
                ClusterServiceWSGIApplication(service),
                DataProxyServiceWSGIApplication(service),
                TaskServiceWSGIApplication(service),
            )
        }

        def dispatch(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            path = environ.get("PATH_INFO", "")
            if environ["REQUEST_METHOD"] == "PUT" and path.startswith(UPLOAD_PREFIX):
                return self._put(environ, start_response)
            service = path.rsplit("/", 1)[0]
            if service in apps:
                # wsgiref hands the raw socket over as wsgi.input, and connectrpc drains it to EOF
                # after an error: give it the request body alone, as production WSGI servers do.
                length = int(environ.get("CONTENT_LENGTH") or 0)
                environ["wsgi.input"] = io.BytesIO(environ["wsgi.input"].read(length))
                return apps[service](environ, start_response)
            self._record("UNEXPECTED", f"{environ['REQUEST_METHOD']} {path}")
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not served by the fake control plane"]

        return dispatch


class _Services:
    """The fake's methods; any other method of the three services answers ``UNIMPLEMENTED``."""

    def __init__(self, fake: FakeControlPlane) -> None:
        self._fake = fake

    def __getattr__(self, name: str) -> Callable[..., Any]:
        own = getattr(type(self._fake), name, None)
        if own is not None and not name.startswith("_"):
            method: Callable[..., Any] = getattr(self._fake, name)
            return method

        def unimplemented(request: Any, ctx: Any) -> Any:
            self._fake._record(f"UNIMPLEMENTED {name}", request)
            raise ConnectError(Code.UNIMPLEMENTED, f"{name} is not served by the fake control plane")

        return unimplemented


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class Running:
    """A fake control plane serving on 127.0.0.1 in a background thread."""

    def __init__(self, storage: Path) -> None:
        self.state = FakeControlPlane(storage=storage)
        self._server = make_server(
            "127.0.0.1", 0, self.state.wsgi_app(), server_class=_Server, handler_class=_QuietHandler
        )
        self.port = self._server.server_address[1]
        self.state.endpoint = f"dns:///127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return self.state.endpoint

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


if __name__ == "__main__":
    server = Running(Path(sys.argv[1]))
    sys.stdout.write(server.endpoint + "\n")
    sys.stdout.flush()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.close()
