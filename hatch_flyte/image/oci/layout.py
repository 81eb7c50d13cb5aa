"""OCI image layouts (``oci-layout``, ``index.json``, ``blobs/sha256/<hex>``) and ``docker load`` archives.

JSON documents are canonical: sorted keys, no spaces, UTF-8, so equal content gives equal digests.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from hatch_flyte.errors import ImageError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
#: Docker media types of the same bytes, mapped to their OCI names for the manifest we write.
TO_OCI = {DOCKER_LAYER_GZIP: OCI_LAYER_GZIP, DOCKER_CONFIG: OCI_CONFIG}
REF_NAME = "org.opencontainers.image.ref.name"
_CHUNK = 1 << 20


def canonical_json(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            doc["annotations"] = dict(self.annotations)
        return doc


def descriptor_from(doc: Any, where: str) -> Descriptor:
    if not isinstance(doc, dict):
        raise ImageError(f"{where}: a descriptor is not an object; the image is corrupt")
    digest, size, media_type = doc.get("digest"), doc.get("size"), doc.get("mediaType")
    if not isinstance(digest, str) or not digest.startswith("sha256:") or len(digest) != 71:
        raise ImageError(
            f"{where}: descriptor digest {digest!r} is not sha256:<64 hex>; the image is corrupt"
        )
    if not isinstance(size, int) or size < 0:
        raise ImageError(f"{where}: descriptor {digest} has no valid size; the image is corrupt")
    return Descriptor(str(media_type or ""), digest, size)


class Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...

    def flush(self) -> None: ...


class HashingWriter:
    """A write-only stream that hashes and counts what passes through to ``out``."""

    def __init__(self, out: Writable) -> None:
        self.out = out
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        self.out.write(data)
        return len(data)

    def flush(self) -> None:
        self.out.flush()

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


class BlobStore:
    """The ``blobs/sha256`` directory of a layout being written."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.directory = root / "blobs" / "sha256"
        self.directory.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.directory / digest.split(":", 1)[1]

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def put_bytes(self, data: bytes) -> str:
        digest = sha256_digest(data)
        if not self.has(digest):
            tmp = self.directory / f".{digest[7:]}.tmp"
            tmp.write_bytes(data)
            tmp.replace(self.path(digest))
        return digest

    def temp(self) -> IO[bytes]:
        return tempfile.NamedTemporaryFile(dir=self.directory, prefix=".blob-", suffix=".tmp", delete=False)

    def adopt(self, tmp: Path, digest: str) -> None:
        """Move a finished temporary file in under its digest."""
        os.replace(tmp, self.path(digest))

    def put_file(self, source: Path, digest: str) -> None:
        """A copy (or hard link) of a file whose digest is known (e.g. from the blob cache)."""
        if self.has(digest):
            return
        self.link_or_copy(source, self.path(digest))

    @staticmethod
    def link_or_copy(source: Path, target: Path) -> None:
        """``target`` becomes a hard link to (or else a copy of) ``source``, atomically."""
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
        os.replace(tmp, target)

    def read(self, digest: str) -> bytes:
        return self.path(digest).read_bytes()


def verify_file(path: Path, digest: str) -> bool:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest() == digest


# -- reading layouts and archives -------------------------------------------------------------------


def read_json(data: bytes, where: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise ImageError(f"{where} is not valid JSON ({e}); the image is corrupt") from None
    if not isinstance(doc, dict):
        raise ImageError(f"{where} is not a JSON object; the image is corrupt")
    return doc


@dataclass(frozen=True)
class LayoutSource:
    """A base image in an OCI layout directory: ``oci:/path[:tag]``."""

    root: Path

    def blob(self, digest: str) -> Path:
        path = self.root / "blobs" / digest.replace(":", "/", 1)
        if not path.is_file():
            raise ImageError(
                f"the OCI layout {self.root} lacks the blob {digest}; the layout is corrupt or incomplete. "
                "Copy the image again (e.g. `skopeo copy ... oci:DIR:TAG`)"
            )
        return path

    def read_blob(self, digest: str) -> bytes:
        data = self.blob(digest).read_bytes()
        if sha256_digest(data) != digest:
            raise ImageError(f"the blob {digest} in the OCI layout {self.root} does not match its digest; "
                             "the layout is corrupt. Copy the image again")  # fmt: skip
        return data

    def index(self) -> dict[str, Any]:
        marker = self.root / "oci-layout"
        try:
            version = read_json(marker.read_bytes(), str(marker)).get("imageLayoutVersion")
            data = (self.root / "index.json").read_bytes()
        except FileNotFoundError as e:
            raise ImageError(
                f"{self.root} is not an OCI image layout ({Path(e.filename).name} is missing); point "
                "`tool.flyte.image.base` at a layout directory (oci:/path/to/layout[:tag])"
            ) from None
        except OSError as e:
            raise ImageError(f"cannot read the OCI layout {self.root}: {e.strerror}") from None
        if version != "1.0.0":
            raise ImageError(f"{marker}: imageLayoutVersion {version!r} is not 1.0.0; the layout is corrupt")
        return read_json(data, str(self.root / "index.json"))

    def find(self, tag: str | None) -> Descriptor:
        """The manifest (or index) descriptor named ``tag`` (or the only one when no tag is given)."""
        where = str(self.root / "index.json")
        manifests = self.index().get("manifests")
        if not isinstance(manifests, list):
            raise ImageError(f"{where} has no `manifests` list; the layout is corrupt")
        names = []
        for doc in manifests:
            name = doc.get("annotations", {}).get(REF_NAME) if isinstance(doc, dict) else None
            names.append(str(name))
            if tag is None or name == tag:
                if tag is None and len(manifests) > 1:
                    break
                d = descriptor_from(doc, where)
                return Descriptor(d.media_type or OCI_MANIFEST, d.digest, d.size)
        if tag is None:
            raise ImageError(
                f"{where} holds {len(manifests)} images; name one: oci:{self.root}:TAG "
                f"(tags: {', '.join(names) or 'none'})"
            )
        raise ImageError(
            f"{where} has no image tagged {tag!r} (tags: "
            f"{', '.join(n for n in names if n != 'None') or 'none'}); fix the tag in `tool.flyte.image.base`"
        )


def open_docker_archive(path: Path) -> tuple[tarfile.TarFile, dict[str, Any]]:
    """A ``docker save`` archive and its first ``manifest.json`` entry."""
    try:
        tar = tarfile.open(path, "r:")
    except FileNotFoundError:
        raise ImageError(
            f"the docker archive {path} does not exist; fix `tool.flyte.image.base` "
            "(docker-archive:/path.tar)"
        ) from None
    except (tarfile.TarError, OSError) as e:
        raise ImageError(
            f"{path} is not a docker archive (an uncompressed tar from `docker save`): {e}"
        ) from None
    try:
        member = tar.extractfile("manifest.json")
        if member is None:
            raise KeyError("manifest.json")
        entries = json.loads(member.read())
    except (KeyError, ValueError, tarfile.TarError) as e:
        tar.close()
        raise ImageError(
            f"{path} has no readable manifest.json ({e}); it is not a `docker save` archive or it is corrupt"
        ) from None
    if not isinstance(entries, list) or not entries or not isinstance(entries[0], dict):
        tar.close()
        raise ImageError(f"{path}: manifest.json lists no image; the archive is corrupt")
    return tar, entries[0]


# -- writing -----------------------------------------------------------------------------------------


def image_manifest(
    store: BlobStore,
    config_digest: str,
    layers: Sequence[Descriptor],
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """An OCI image manifest for a config already in ``store`` and ``layers``."""
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": Descriptor(OCI_CONFIG, config_digest, store.path(config_digest).stat().st_size).to_json(),
        "layers": [d.to_json() for d in layers],
    }
    if annotations:
        doc["annotations"] = dict(annotations)
    return doc


def write_layout_files(root: Path, manifests: Sequence[Descriptor]) -> None:
    (root / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [m.to_json() for m in manifests],
    }
    (root / "index.json").write_bytes(canonical_json(index))


def _info(name: str, kind: bytes, size: int, mode: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    info.mode = mode
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_docker_archive(
    layout: Path, out: IO[bytes], docker_manifest: Iterable[Mapping[str, Any]], mtime: int
) -> None:
    """A tar of the layout plus Docker's ``manifest.json``: loadable by ``docker load``, readable as OCI."""
    manifest = canonical_json(list(docker_manifest))
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        members: list[tuple[str, Path | bytes | None]] = [("manifest.json", manifest)]
        for name in ("index.json", "oci-layout"):
            members.append((name, layout / name))
        members += [("blobs", None), ("blobs/sha256", None)]
        blobs = layout / "blobs" / "sha256"
        members += [(f"blobs/sha256/{p.name}", p) for p in blobs.iterdir() if not p.name.startswith(".")]
        for name, content in sorted(members, key=lambda m: m[0]):
            if content is None:
                tar.addfile(_info(name, tarfile.DIRTYPE, 0, 0o755, mtime))
            elif isinstance(content, bytes):
                import io

                tar.addfile(_info(name, tarfile.REGTYPE, len(content), 0o644, mtime), io.BytesIO(content))
            else:
                with content.open("rb") as f:
                    tar.addfile(_info(name, tarfile.REGTYPE, content.stat().st_size, 0o644, mtime), f)
