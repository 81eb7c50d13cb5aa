"""The base image: from a registry, an OCI layout (``oci:/path[:tag]``) or a ``docker save`` archive
(``docker-archive:/path.tar``), its config and layers copied into the layout being written.

Registry blobs are kept in a content-addressed cache (``<cache>/oci-blobs/sha256/<hex>``, checked
against their digest) so that a second build does not download the base again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hatch_flyte.atomic import temp_file
from hatch_flyte.cache import cache_dir
from hatch_flyte.errors import ImageError
from hatch_flyte.image.credentials import credentials_for
from hatch_flyte.image.oci import layout as L
from hatch_flyte.image.oci.registry import Reference, Registry, parse_reference, select_platform

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BaseImage:
    ref: str
    manifest_digest: str
    config_digest: str
    config: dict[str, Any]
    layers: tuple[L.Descriptor, ...]
    #: Where it came from, for cross-repository mounts when pushing to the same registry.
    registry: Reference | None = None


def load_base(ref: str, platform: str, store: L.BlobStore, push_registry: str | None) -> BaseImage:
    """Copy the base image's config and layers into ``store``."""
    if ref.startswith("oci:"):
        return _from_layout(ref, ref[4:], platform, store)
    if ref.startswith("docker-archive:"):
        return _from_archive(ref, Path(ref[len("docker-archive:") :]), store)
    reference = parse_reference(ref)
    registry = Registry(
        reference.registry, credentials_for(reference.registry, use_env=reference.registry == push_registry)
    )
    return _from_registry(ref, reference, registry, platform, store)


def _check_config(config: dict[str, Any], layers: int, where: str) -> None:
    rootfs = config.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list) or len(diff_ids) != layers:
        raise ImageError(
            f"{where}: the image config lists {len(diff_ids) if isinstance(diff_ids, list) else 'no'} layers "
            f"(rootfs.diff_ids) but the manifest {layers}; the base image is corrupt"
        )


def _manifest_parts(manifest: dict[str, Any], where: str) -> tuple[L.Descriptor, tuple[L.Descriptor, ...]]:
    config = L.descriptor_from(manifest.get("config"), where)
    layers_doc = manifest.get("layers")
    if not isinstance(layers_doc, list):
        raise ImageError(f"{where}: the manifest has no `layers` list; the base image is corrupt")
    layers = []
    for doc in layers_doc:
        d = L.descriptor_from(doc, where)
        media_type = L.TO_OCI.get(d.media_type, d.media_type)
        if media_type not in (L.OCI_LAYER_GZIP, L.OCI_LAYER):
            raise ImageError(
                f"{where}: layer {d.digest} has media type {d.media_type!r}, which hatch-flyte cannot "
                "use (gzip or plain tar layers only); choose another base image"
            )
        layers.append(L.Descriptor(media_type, d.digest, d.size))
    return config, tuple(layers)


# -- registry ---------------------------------------------------------------------------------------


def _from_registry(
    ref: str, reference: Reference, registry: Registry, platform: str, store: L.BlobStore
) -> BaseImage:
    where = f"base image {ref}"
    body, media_type, digest = registry.get_manifest(reference.repository, reference.reference)
    if media_type in (L.OCI_INDEX, L.DOCKER_LIST):
        chosen = select_platform(L.read_json(body, where), platform, f"the {where}")
        body, media_type, digest = registry.get_manifest(reference.repository, str(chosen["digest"]))
    manifest = L.read_json(body, where)
    config_d, layers = _manifest_parts(manifest, where)
    for d in (config_d, *layers):
        _cached_blob(registry, reference.repository, d.digest, store)
    config = L.read_json(store.read(config_d.digest), f"{where}: config")
    _check_config(config, len(layers), where)
    return BaseImage(ref, digest, config_d.digest, config, layers, reference)


def _blob_cache() -> Path | None:
    base = cache_dir()
    return base / "oci-blobs" / "sha256" if base is not None else None


def _cached_blob(registry: Registry, repository: str, digest: str, store: L.BlobStore) -> None:
    if store.has(digest):
        return
    cache = _blob_cache()
    cached = cache / digest[7:] if cache is not None else None
    if cached is not None and cached.is_file():
        store.put_file(cached, digest)
        return
    log.info("pulling %s from %s/%s", digest[:19], registry.host, repository)
    directory = cache if cache is not None else store.directory
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = temp_file(directory, "blob")
    try:
        with os.fdopen(fd, "wb") as out:
            registry.fetch_blob(repository, digest, out)
        if cached is not None:
            os.replace(name, cached)
            store.put_file(cached, digest)
        else:
            store.adopt(Path(name), digest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


# -- OCI layout -------------------------------------------------------------------------------------


def _split_layout(text: str) -> tuple[Path, str | None]:
    path, sep, tag = text.rpartition(":")
    if sep and tag and "/" not in tag and path:
        return Path(path), tag
    return Path(text), None


def _from_layout(ref: str, text: str, platform: str, store: L.BlobStore) -> BaseImage:
    path, tag = _split_layout(text)
    source = L.LayoutSource(path)
    where = f"base image {ref}"
    d = source.find(tag)
    body = source.read_blob(d.digest)
    doc = L.read_json(body, f"{where}: manifest {d.digest}")
    media_type = str(doc.get("mediaType") or d.media_type)
    if media_type in (L.OCI_INDEX, L.DOCKER_LIST):
        chosen = L.descriptor_from(select_platform(doc, platform, f"the {where}"), where)
        d = chosen
        body = source.read_blob(d.digest)
        doc = L.read_json(body, f"{where}: manifest {d.digest}")
    config_d, layers = _manifest_parts(doc, where)
    for blob in (config_d, *layers):
        src = source.blob(blob.digest)
        if src.stat().st_size != blob.size or not L.verify_file(src, blob.digest):
            raise ImageError(
                f"the blob {blob.digest} in the OCI layout {path} does not match its digest or size; the "
                "layout is corrupt. Copy the image again"
            )
        store.put_file(src, blob.digest)
    config = L.read_json(store.read(config_d.digest), f"{where}: config")
    _check_config(config, len(layers), where)
    return BaseImage(ref, d.digest, config_d.digest, config, layers)


# -- docker save archive ----------------------------------------------------------------------------


def _from_archive(ref: str, path: Path, store: L.BlobStore) -> BaseImage:
    where = f"base image {ref}"
    tar, entry = L.open_docker_archive(path)
    with tar:
        config_name, layer_names = entry.get("Config"), entry.get("Layers")
        if not isinstance(config_name, str) or not isinstance(layer_names, list):
            raise ImageError(f"{path}: manifest.json has no Config/Layers; the archive is corrupt")
        config_digest, _ = _extract(tar, config_name, store, path)
        layers = []
        for name in layer_names:
            digest, size = _extract(tar, str(name), store, path)
            with store.path(digest).open("rb") as f:
                gzipped = f.read(2) == b"\x1f\x8b"
            layers.append(L.Descriptor(L.OCI_LAYER_GZIP if gzipped else L.OCI_LAYER, digest, size))
    config = L.read_json(store.read(config_digest), f"{where}: config")
    _check_config(config, len(layers), where)
    manifest = L.image_manifest(store, config_digest, layers)
    return BaseImage(ref, L.sha256_digest(L.canonical_json(manifest)), config_digest, config, tuple(layers))


def _extract(tar: Any, name: str, store: L.BlobStore, path: Path) -> tuple[str, int]:
    try:
        member = tar.extractfile(name)
    except (KeyError, OSError) as e:
        raise ImageError(
            f"{path}: {name} listed in manifest.json is missing ({e}); the archive is corrupt"
        ) from None
    if member is None:
        raise ImageError(f"{path}: {name} is not a file; the archive is corrupt")
    tmp_file = store.temp()
    try:
        with tmp_file:
            writer = L.HashingWriter(tmp_file)
            shutil.copyfileobj(member, writer)
        store.adopt(Path(tmp_file.name), writer.digest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_file.name)
    return writer.digest, writer.size
