"""A small client for the registry HTTP API (OCI distribution spec / Docker registry API v2), on urllib.

Authentication: anonymous first; on ``401`` the ``WWW-Authenticate`` challenge says ``Basic`` (send
the credentials) or ``Bearer`` (get a token from the challenge's realm, with the credentials when
there are any). Where credentials come from: :mod:`hatch_flyte.image.credentials`.

HTTPS always, except plain HTTP for loopback hosts (``localhost``, ``127.0.0.0/8``, ``::1``) and the
hosts listed in ``HATCH_FLYTE_INSECURE_REGISTRIES`` (``host:port,host2``).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import ipaddress
import json
import logging
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from hatch_flyte.errors import ImageError
from hatch_flyte.image.credentials import DOCKER_HUB, PASSWORD_ENV, USER_ENV, Credentials
from hatch_flyte.image.oci.layout import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST

log = logging.getLogger(__name__)

INSECURE_ENV = "HATCH_FLYTE_INSECURE_REGISTRIES"
_HUB_API = "registry-1.docker.io"
TIMEOUT = 60.0
_CHUNK = 1 << 20

MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_CREDENTIALS_HINT = f"set {USER_ENV}/{PASSWORD_ENV} or log in with `docker login` (~/.docker/config.json)"


@dataclass(frozen=True)
class Reference:
    """``registry/repository:tag`` or ``registry/repository@sha256:...``, Docker's defaults applied."""

    registry: str
    repository: str
    tag: str | None
    digest: str | None

    @property
    def reference(self) -> str:
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        tail = f"@{self.digest}" if self.digest else f":{self.tag or 'latest'}"
        return f"{self.registry}/{self.repository}{tail}"


def parse_reference(text: str) -> Reference:
    """Split an image reference as Docker does (``python:3.11`` is ``docker.io/library/python:3.11``)."""
    name, at, digest_text = text.partition("@")
    digest = digest_text if at else None
    tag: str | None = None
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, rest
    else:
        registry, repository = DOCKER_HUB, name
        if "/" not in repository:
            repository = f"library/{repository}"
    if (
        not repository
        or repository != repository.lower()
        or (digest is not None and not _DIGEST.match(digest))
        or (tag is not None and not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", tag))
    ):
        raise ImageError(
            f"{text!r} is not a valid image reference; write registry/repository:tag "
            "(lowercase repository) or registry/repository@sha256:<64 hex digits>"
        )
    return Reference(registry, repository, tag, digest)


def is_insecure(host: str) -> bool:
    """Plain HTTP for loopback hosts and those in ``HATCH_FLYTE_INSECURE_REGISTRIES``."""
    listed = {h.strip() for h in os.environ.get(INSECURE_ENV, "").split(",") if h.strip()}
    if host in listed:
        return True
    hostname = host
    if host.startswith("["):
        hostname = host[1 : host.find("]")]
    elif host.count(":") == 1:
        hostname = host.split(":", 1)[0]
    if hostname == "localhost" or hostname in listed:
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


@dataclass
class _Response:
    status: int
    headers: Any
    stream: IO[bytes]
    url: str

    def read(self) -> bytes:
        return self.stream.read()

    def close(self) -> None:
        self.stream.close()


class _NoAuthOnRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects (blob storage) get no Authorization header: it is added as an unredirected header."""


class Registry:
    """One registry host, with the authorization it has obtained so far."""

    def __init__(self, host: str, credentials: Credentials | None = None) -> None:
        self.host = host
        self.credentials = credentials
        api = _HUB_API if host == DOCKER_HUB else host
        self.base_url = f"{'http' if is_insecure(host) else 'https'}://{api}"
        self._authorization: dict[str, str] = {}  # scope -> header value
        self._opener = urllib.request.build_opener(_NoAuthOnRedirect())

    # -- transport -------------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return path if "://" in path else self.base_url + path

    def _send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | IO[bytes] | None,
        auth: str | None,
    ) -> _Response:
        request = urllib.request.Request(url, data=body, method=method, headers=dict(headers))
        if auth:
            request.add_unredirected_header("Authorization", auth)
        try:
            response = self._opener.open(request, timeout=TIMEOUT)
            return _Response(response.status, response.headers, response, response.url)
        except urllib.error.HTTPError as e:
            return _Response(e.code, e.headers, e, url)
        except urllib.error.URLError as e:
            reason = e.reason.strerror if isinstance(e.reason, OSError) and e.reason.strerror else e.reason
            raise self._unreachable(str(reason)) from None
        except TimeoutError:
            raise self._unreachable(f"no answer within {TIMEOUT:.0f}s") from None
        except (http.client.HTTPException, OSError) as e:
            raise self._garbage(f"{method} {url}", f"not an HTTP answer ({type(e).__name__}: {e})") from None

    def _unreachable(self, reason: str) -> ImageError:
        return ImageError(
            f"cannot reach the registry {self.host} at {self.base_url} ({reason}); check that it is up and "
            f"the name is right (plain-HTTP registries other than loopback go in {INSECURE_ENV})"
        )

    def _garbage(self, what: str, detail: str) -> ImageError:
        return ImageError(
            f"the registry {self.host} answered {what} with {detail}; is {self.base_url} really a container "
            "registry (distribution API v2)? Check the image reference and `tool.flyte.image.registry`"
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        scope: str,
        headers: Mapping[str, str] | None = None,
        body: bytes | IO[bytes] | None = None,
    ) -> _Response:
        """Send a request; on ``401`` answer the challenge once and send it again."""
        url = self._url(path)
        headers = dict(headers or {})
        start = body.tell() if body is not None and not isinstance(body, bytes) else 0
        response = self._send(method, url, headers, body, self._authorization.get(scope))
        if response.status != 401:
            return response
        challenge = response.headers.get("WWW-Authenticate", "")
        response.close()
        self._authorization[scope] = self._authorize(challenge, scope)
        if body is not None and not isinstance(body, bytes):
            body.seek(start)
        response = self._send(method, url, headers, body, self._authorization[scope])
        if response.status == 401:
            response.close()
            raise self._refused()
        return response

    def _refused(self) -> ImageError:
        if self.credentials is None:
            return ImageError(
                f"the registry {self.host} needs credentials and none were found; {_CREDENTIALS_HINT}"
            )
        return ImageError(
            f"the registry {self.host} refused the credentials of user {self.credentials.username!r} "
            f"(from {self.credentials.source}); fix them: {_CREDENTIALS_HINT}"
        )

    def _authorize(self, challenge: str, scope: str) -> str:
        kind, _, params_text = challenge.strip().partition(" ")
        params = dict(re.findall(r'(\w+)="([^"]*)"', params_text))
        if kind.lower() == "basic":
            if self.credentials is None:
                raise self._refused()
            raw = f"{self.credentials.username}:{self.credentials.password}".encode()
            return "Basic " + base64.b64encode(raw).decode()
        if kind.lower() != "bearer" or "realm" not in params:
            raise self._garbage("401", f"an authentication challenge it does not understand: {challenge!r}")
        query = {"service": params["service"]} if "service" in params else {}
        scopes = [scope, *([params["scope"]] if params.get("scope") not in (None, scope) else [])]
        url = (
            params["realm"] + "?" + urllib.parse.urlencode([*query.items(), *(("scope", s) for s in scopes)])
        )
        headers: dict[str, str] = {}
        auth = None
        if self.credentials is not None:
            raw = f"{self.credentials.username}:{self.credentials.password}".encode()
            auth = "Basic " + base64.b64encode(raw).decode()
        response = self._send("GET", url, headers, None, auth)
        try:
            if response.status in (401, 403):
                raise self._refused()
            data = _json(self, response, "the token request")
        finally:
            response.close()
        token = data.get("token") or data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(token, str):
            raise self._garbage("the token request", "JSON without a token")
        return f"Bearer {token}"

    def _error(self, response: _Response, what: str) -> ImageError:
        try:
            body = response.read()[:4000]
        finally:
            response.close()
        detail = ""
        try:
            errors = json.loads(body).get("errors") or []
            detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors if isinstance(e, dict))
        except (ValueError, AttributeError):
            detail = body.decode(errors="replace").strip()[:200]
        if response.status == 403:
            return ImageError(
                f"the registry {self.host} denied {what} (403 {detail}); the credentials lack the "
                f"permission: {_CREDENTIALS_HINT}"
            )
        return ImageError(f"the registry {self.host} failed {what}: HTTP {response.status} {detail}".rstrip())

    # -- API -------------------------------------------------------------------------------------

    def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str, str]:
        """``(bytes, media type, digest)`` of a manifest or index."""
        response = self.request(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            scope=f"repository:{repository}:pull",
            headers={"Accept": ", ".join(MANIFEST_TYPES)},
        )
        if response.status == 404:
            response.close()
            raise ImageError(
                f"the image {self.host}/{repository}:{reference} is not in the registry (manifest unknown); "
                "fix `tool.flyte.image.base` or push the base image there first"
            )
        if response.status != 200:
            raise self._error(response, f"GET manifest {repository}:{reference}")
        try:
            body = response.read()
        finally:
            response.close()
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if reference.startswith("sha256:") and reference != digest:
            raise ImageError(
                f"the registry {self.host} returned a manifest for {repository}@{reference} whose digest is "
                f"{digest}; the registry is corrupt or something in between altered the answer"
            )
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise self._garbage(f"GET manifest {repository}:{reference}", "something that is not JSON")
        media_type = str(doc.get("mediaType") or media_type)
        if media_type not in MANIFEST_TYPES:
            raise self._garbage(
                f"GET manifest {repository}:{reference}", f"an unsupported media type {media_type!r}"
            )
        return body, media_type, digest

    def fetch_blob(self, repository: str, digest: str, out: IO[bytes]) -> int:
        """Stream a blob into ``out``, checking its digest; return its size."""
        response = self.request(
            "GET", f"/v2/{repository}/blobs/{digest}", scope=f"repository:{repository}:pull"
        )
        if response.status != 200:
            raise self._error(response, f"GET blob {digest} of {repository}")
        h = hashlib.sha256()
        size = 0
        try:
            while chunk := response.stream.read(_CHUNK):
                h.update(chunk)
                out.write(chunk)
                size += len(chunk)
        except (OSError, http.client.HTTPException) as e:
            raise self._unreachable(f"the download of {digest} broke off: {e}") from None
        finally:
            response.close()
        if "sha256:" + h.hexdigest() != digest:
            raise ImageError(
                f"the blob {digest} of {self.host}/{repository} does not match its digest; the registry "
                "is corrupt or the download was altered. Try again"
            )
        return size

    def manifest_digest(self, repository: str, reference: str) -> str | None:
        """The digest of the manifest ``repository:reference`` (a ``HEAD``), or None when absent."""
        response = self.request(
            "HEAD",
            f"/v2/{repository}/manifests/{reference}",
            scope=f"repository:{repository}:pull",
            headers={"Accept": ", ".join(MANIFEST_TYPES)},
        )
        response.close()
        if response.status == 404:
            return None
        if response.status != 200:
            raise self._error(response, f"HEAD manifest {repository}:{reference}")
        digest = response.headers.get("Docker-Content-Digest")
        return digest if isinstance(digest, str) and _DIGEST.match(digest) else None

    def blob_exists(self, repository: str, digest: str) -> bool:
        response = self.request(
            "HEAD", f"/v2/{repository}/blobs/{digest}", scope=f"repository:{repository}:pull,push"
        )
        response.close()
        if response.status in (200, 404):
            return response.status == 200
        raise self._error(response, f"HEAD blob {digest} of {repository}")

    def _start_upload(self, repository: str, query: str = "") -> _Response:
        return self.request(
            "POST",
            f"/v2/{repository}/blobs/uploads/{query}",
            scope=f"repository:{repository}:pull,push",
            headers={"Content-Length": "0"},
            body=b"",
        )

    def mount_blob(self, repository: str, digest: str, source: str) -> bool:
        """Mount a blob from another repository of this registry; False when the registry did not."""
        query = "?" + urllib.parse.urlencode({"mount": digest, "from": source})
        response = self._start_upload(repository, query)
        if response.status == 201:
            response.close()
            return True
        if response.status == 202:  # an ordinary upload session instead; cancel it
            location = response.headers.get("Location")
            response.close()
            if location:
                self.request(
                    "DELETE",
                    urllib.parse.urljoin(self.base_url + "/", location),
                    scope=f"repository:{repository}:pull,push",
                ).close()
            return False
        raise self._error(response, f"mount {digest} from {source} into {repository}")

    def upload_blob(self, repository: str, digest: str, path: Path) -> None:
        """Monolithic upload: POST for a session, then PUT the whole blob with its digest."""
        response = self._start_upload(repository)
        if response.status != 202:
            raise self._error(response, f"start an upload to {repository}")
        location = response.headers.get("Location")
        response.close()
        if not location:
            raise self._garbage(f"POST /v2/{repository}/blobs/uploads/", "202 without a Location header")
        url = urllib.parse.urljoin(self.base_url + "/", location)
        url += ("&" if "?" in url else "?") + urllib.parse.urlencode({"digest": digest})
        size = path.stat().st_size
        with path.open("rb") as f:
            response = self.request(
                "PUT",
                url,
                scope=f"repository:{repository}:pull,push",
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
                body=f,
            )
        if response.status not in (201, 204):
            raise self._error(response, f"upload of {digest} to {repository}")
        response.close()

    def put_manifest(self, repository: str, tag: str, body: bytes, media_type: str) -> str:
        response = self.request(
            "PUT",
            f"/v2/{repository}/manifests/{tag}",
            scope=f"repository:{repository}:pull,push",
            headers={"Content-Type": media_type},
            body=body,
        )
        if response.status not in (200, 201, 202):
            raise self._error(response, f"PUT manifest {repository}:{tag}")
        digest = response.headers.get("Docker-Content-Digest") or "sha256:" + hashlib.sha256(body).hexdigest()
        response.close()
        return digest


def _json(registry: Registry, response: _Response, what: str) -> Any:
    try:
        return json.loads(response.read())
    except ValueError:
        raise registry._garbage(what, "something that is not JSON") from None


def select_platform(index: Mapping[str, Any], platform: str, where: str) -> Mapping[str, Any]:
    """The manifest descriptor of ``platform`` (``os/arch[/variant]``) in an image index."""
    os_name, _, rest = platform.partition("/")
    arch, _, variant = rest.partition("/")
    manifests = index.get("manifests")
    if not isinstance(manifests, list):
        raise ImageError(f"{where}: the image index has no `manifests` list; the base image is corrupt")
    found: list[Mapping[str, Any]] = []
    offered: list[str] = []
    for m in manifests:
        p = m.get("platform") if isinstance(m, dict) else None
        if not isinstance(p, dict):
            continue
        offered.append("/".join(x for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x))
        if (
            p.get("os") == os_name
            and p.get("architecture") == arch
            and (not variant or p.get("variant") == variant)
        ):
            found.append(m)
    if not found:
        raise ImageError(
            f"{where} has no image for {platform} (it has {', '.join(offered) or 'none'}); set "
            "`tool.flyte.image.platform` to one of those or choose another base"
        )
    return found[0]
