"""The ``oci`` backend: base + venv skeleton + dependency layer + project layer (+ source), written as
an OCI layout directory and a ``docker load`` archive, and optionally pushed through the registry API.

Everything is built in a temporary directory inside the output directory and renamed into place at
the end (``<name>.oci/`` and ``<name>.oci.tar``); a failure, a push included, leaves nothing there.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import zlib
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import hatch_flyte.image.basecache as basecache
from hatch_flyte.atomic import ensure_directory, temp_dir, write_bytes_atomic
from hatch_flyte.cache import cache_dir
from hatch_flyte.errors import HatchFlyteError, ImageError
from hatch_flyte.image.backend import BuiltImage, ImageBackend
from hatch_flyte.image.credentials import credentials_for
from hatch_flyte.image.oci import layout as L
from hatch_flyte.image.oci.base import BaseImage, load_base
from hatch_flyte.image.oci.basepython import BasePython, find_python
from hatch_flyte.image.oci.layers import Layer, venv_skeleton, write_layer
from hatch_flyte.image.oci.layout import OCI_LAYER_GZIP
from hatch_flyte.image.oci.registry import Registry, parse_reference
from hatch_flyte.image.plan import (
    IMAGE_ID_ENV,
    SOURCE_DIR,
    WORKDIR_MODE,
    BaseInfo,
    ImagePlan,
    linux_platform,
    source_date_epoch,
)
from hatch_flyte.image.venv import VENV, VENV_PATH, Entry, install_wheels, staged_entries
from hatch_flyte.report import step

log = logging.getLogger(__name__)
#: Bumped when the layers hatch-flyte writes change for the same inputs (invalidates cached layers).
LAYER_FORMAT = "1"


def host_platform_name() -> str:
    return linux_platform()


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class OciBackend(ImageBackend):
    """Images written as an OCI layout and a ``docker load`` archive into ``output_dir``, without a
    daemon; pushed through the registry API.

    Everything is made in a work directory inside ``output_dir``, removed by :meth:`close`.
    """

    name = "oci"
    how = "without a daemon"

    def __init__(self, output_dir: Path, repository: str, *, push: bool) -> None:
        try:
            self.output_dir = ensure_directory(output_dir).resolve()
        except HatchFlyteError as e:
            raise ImageError(str(e)) from None
        self.push_registry = parse_reference(f"{repository}:x").registry
        if push:  # fail before the slow part when the registry is down or refuses the credentials
            target = parse_reference(f"{repository}:x")
            registry = Registry(target.registry, credentials_for(target.registry, use_env=True))
            registry.blob_exists(target.repository, L.sha256_digest(b""))
        try:
            self.work = temp_dir(self.output_dir, "hatch-flyte-oci")
        except OSError as e:
            raise ImageError(
                f"cannot write into {self.output_dir}: {e.strerror}; choose another output directory"
            ) from None
        self.layout_dir = self.work / "layout"
        self.store = L.BlobStore(self.layout_dir)
        self.bases: dict[str, BaseImage] = {}

    def close(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        try:
            yield
        except OSError as e:
            raise ImageError(
                f"writing the image into {self.output_dir} failed: {e.strerror or e} ({e.filename or ''}); "
                "free some space or choose another output directory"
            ) from None

    def base(self, ref: str, python: str | None, platform: str | None) -> BaseInfo:
        platform = platform or host_platform_name()
        with self._writing(), step(f"base image {ref} ({platform})"):
            base = load_base(ref, platform, self.store, self.push_registry)
            base_python = _base_python(base, self.store, python, ref)
        if not base_python.has_tar:
            raise ImageError(
                f"the base image {ref} has no tar, which flyte needs to extract bundles; "
                "choose a base image with tar"
            )
        self.bases[ref] = base
        return BaseInfo(
            ref,
            base.config_digest,
            base.manifest_digest,
            base_python.interpreter,
            base_python.version,
            platform,
        )

    def build(self, plan: ImagePlan, repository: str, tags: Sequence[str], *, push: bool) -> BuiltImage:
        with self._writing():
            return self._build(plan, repository, tags, push)

    def _build(self, plan: ImagePlan, repo: str, tags: Sequence[str], push: bool) -> BuiltImage:
        base, store, work, layout_dir = self.bases[plan.base], self.store, self.work, self.layout_dir
        epoch = source_date_epoch()
        ref = f"{repo}:{tags[0]}"
        name = repo.rsplit("/", 1)[-1]
        layout_out, archive_out = self.output_dir / f"{name}.oci", self.output_dir / f"{name}.oci.tar"
        key = _output_key(plan, base, repo, tags, epoch) if plan.project_wheel is None else None
        reused = _reuse(key, layout_out, archive_out, tags) if key is not None else None
        if reused is not None:
            config_digest, manifest_digest = reused
            log.info(
                "image %s is up to date in %s (%s): nothing to build", ref, layout_out, manifest_digest[:19]
            )
            if push:
                done = L.BlobStore(layout_out)
                push_layout(done, done.read(manifest_digest), manifest_digest, repo, tags, base)
            return BuiltImage(config_digest, manifest_digest, archive=archive_out)
        with step("layers: dependencies, project wheel"):
            layers = _layers(plan, store, epoch, work)
        config_doc = _config(base, plan, layers, ref, epoch, plan.platform)
        config_digest = store.put_bytes(L.canonical_json(config_doc))
        manifest_doc = L.image_manifest(
            store,
            config_digest,
            [*base.layers, *(layer.descriptor for layer in layers)],
            {
                "org.opencontainers.image.base.name": plan.base,
                "org.opencontainers.image.base.digest": base.manifest_digest,
            },
        )
        manifest = L.canonical_json(manifest_doc)
        manifest_digest = store.put_bytes(manifest)
        full_tags = tuple(f"{repo}:{t}" for t in tags)
        L.write_layout_files(
            layout_dir,
            [
                L.Descriptor(
                    L.OCI_MANIFEST,
                    manifest_digest,
                    len(manifest),
                    {L.REF_NAME: t, "io.containerd.image.name": f"{repo}:{t}"},
                )
                for t in tags
            ],
        )
        archive_tmp = work / "image.tar"
        docker_manifest = [
            {
                "Config": f"blobs/sha256/{config_digest[7:]}",
                "RepoTags": list(full_tags),
                "Layers": [
                    f"blobs/sha256/{d.digest[7:]}" for d in (*base.layers, *(x.descriptor for x in layers))
                ],
            }
        ]
        with step("wrote the docker-load archive"), archive_tmp.open("wb") as out:
            L.write_docker_archive(layout_dir, out, docker_manifest, epoch)
        if push:
            with step(f"pushed {repo}"):
                push_layout(store, manifest, manifest_digest, repo, tags, base)
        _publish(layout_dir, layout_out, work)
        archive_tmp.replace(archive_out)
        if key is not None:
            _remember(key, layout_out, archive_out, config_digest, manifest_digest)
        log.info("image %s: %s (layout %s, archive %s)", ref, manifest_digest, layout_out, archive_out)
        return BuiltImage(config_digest, manifest_digest, archive=archive_out)


def _output_key(plan: ImagePlan, base: BaseImage, repo: str, tags: Sequence[str], epoch: int) -> str:
    """What determines the bytes of a dependency-only image's layout and archive: its content tag
    (the plan: wheelhouse, base config, labels, environment, platform), the base's layers as
    stored, the names, the epoch, and the tools that write the layers."""
    import installer

    doc = [LAYER_FORMAT, plan.content_tag(), base.manifest_digest, repo, list(tags), epoch,
           installer.__version__, zlib.ZLIB_RUNTIME_VERSION]  # fmt: skip
    return hashlib.sha256(L.canonical_json(doc)).hexdigest()


def _record_path(layout: Path) -> Path | None:
    cache = cache_dir()
    name = hashlib.sha256(str(layout).encode()).hexdigest()[:32]
    return cache / "oci-outputs" / f"{name}.json" if cache is not None else None


def _stat(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _reuse(key: str, layout: Path, archive: Path, tags: Sequence[str]) -> tuple[str, str] | None:
    """``(config digest, manifest digest)`` of the image in ``layout`` when this machine wrote it
    from the same inputs and neither it nor the archive changed since (a stat of each), else None."""
    record = _record_path(layout)
    if record is None:
        return None
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        doc = json.loads(record.read_text())
        index = layout / "index.json"
        if doc["key"] != key or doc["archive"] != _stat(archive) or doc["index"] != _stat(index):
            return None
        manifest, config = str(doc["manifest"]), str(doc["config"])
        listed = {
            str(m.get("annotations", {}).get(L.REF_NAME)): m.get("digest")
            for m in json.loads(index.read_bytes()).get("manifests", [])
        }
        store = L.BlobStore(layout)
        if all(listed.get(t) == manifest for t in tags) and store.has(manifest) and store.has(config):
            return config, manifest
    return None


def _remember(key: str, layout: Path, archive: Path, config: str, manifest: str) -> None:
    record = _record_path(layout)
    if record is None:
        return
    doc = {"key": key, "archive": _stat(archive), "index": _stat(layout / "index.json"),
           "config": config, "manifest": manifest}  # fmt: skip
    with contextlib.suppress(OSError, HatchFlyteError):  # the record only saves a rebuild
        record.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(record, L.canonical_json(doc))


def _base_python(base: BaseImage, store: L.BlobStore, python: str | None, where: str) -> BasePython:
    """The base's Python, read from its layers once per set of layers (reading them is most of a
    code-only rebuild otherwise)."""
    key = [[d.digest for d in base.layers], python]
    found = basecache.load("oci-python", key)
    with contextlib.suppress(KeyError, TypeError, ValueError):
        major, minor = found["version"]  # type: ignore[index]
        return BasePython(str(found["interpreter"]), (int(major), int(minor)), bool(found["has_tar"]))  # type: ignore[index]
    result = find_python([store.path(d.digest) for d in base.layers], python, where)
    doc = {"interpreter": result.interpreter, "version": list(result.version), "has_tar": result.has_tar}
    basecache.store("oci-python", key, doc)
    return result


def _publish(new: Path, target: Path, work: Path) -> None:
    """Replace the directory ``target`` by ``new`` (the old one is moved aside first, then deleted)."""
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.exists():
        target.rename(work / "old-layout")
    new.rename(target)


def _layers(plan: ImagePlan, store: L.BlobStore, epoch: int, work: Path) -> list[Layer]:
    python, version = plan.python, plan.python_version
    # The workdir travels with the venv skeleton (one small layer): writable by every user id, as the
    # docker backend's RUN makes it.
    skeleton = [*venv_skeleton(python, version), Entry(plan.workdir, "dir", mode=WORKDIR_MODE)]
    comment = f"hatch-flyte: venv {VENV} for {python}, workdir {plan.workdir}"
    layers = [write_layer(skeleton, store, epoch, comment)]
    layers.append(_dependency_layer(plan, version, store, epoch, work))
    if plan.project_wheel is not None:
        project_stage = work / "project"
        install_wheels([plan.project_wheel], project_stage, version)
        comment = f"hatch-flyte: {plan.project_wheel.name}"
        layers.append(write_layer(staged_entries(project_stage), store, epoch, comment))
        shutil.rmtree(project_stage)
    if plan.source_files:
        entries = [Entry(f"{SOURCE_DIR}/{name}", "file", Path(path)) for path, name in plan.source_files]
        layers.append(write_layer(entries, store, epoch, f"hatch-flyte: source in {SOURCE_DIR}"))
    return layers


def _config(
    base: BaseImage, plan: ImagePlan, layers: list[Layer], ref: str, epoch: int, platform: str
) -> dict[str, Any]:
    doc = {
        k: v for k, v in base.config.items() if k not in ("container", "container_config", "docker_version")
    }
    os_name, _, rest = platform.partition("/")
    arch, _, variant = rest.partition("/")
    doc["os"], doc["architecture"] = os_name, arch
    if variant:
        doc["variant"] = variant
    created = _iso(epoch)
    doc["created"] = created
    cfg = dict(doc.get("config") or {})
    env: dict[str, str] = {}
    for item in cfg.get("Env") or []:
        key, _, value = str(item).partition("=")
        env[key] = value
    env["VIRTUAL_ENV"] = VENV
    env["PATH"] = VENV_PATH
    for key, value in plan.env:
        env[key] = value
    env[IMAGE_ID_ENV] = ref
    cfg["Env"] = [f"{k}={v}" for k, v in env.items()]
    cfg["WorkingDir"] = plan.workdir
    cfg["Labels"] = {**(cfg.get("Labels") or {}), **plan.labels}
    doc["config"] = cfg
    rootfs = dict(doc.get("rootfs") or {})
    rootfs["type"] = "layers"
    rootfs["diff_ids"] = [*rootfs.get("diff_ids", []), *(layer.diff_id for layer in layers)]
    doc["rootfs"] = rootfs
    history = list(doc.get("history") or [])
    history += [{"created": created, "created_by": layer.comment} for layer in layers]
    history.append(
        {
            "created": created,
            "created_by": f"hatch-flyte: env, workdir {plan.workdir}, labels",
            "empty_layer": True,
        }
    )
    doc["history"] = history
    return doc


def push_layout(
    store: L.BlobStore, manifest: bytes, manifest_digest: str, repo: str, tags: Sequence[str], base: BaseImage
) -> str:
    """Push blobs (skipping those already there, mounting base layers from the base's repository of the
    same registry) and the manifest under each tag; return the registry's digest."""
    target = parse_reference(f"{repo}:{tags[0]}")
    registry = Registry(target.registry, credentials_for(target.registry, use_env=True))
    doc = L.read_json(manifest, "the manifest")
    base_digests = {d.digest for d in base.layers} | {base.config_digest}
    mount_from = (
        base.registry.repository if base.registry and base.registry.registry == target.registry else None
    )
    there = {tag: registry.manifest_digest(target.repository, tag) for tag in tags}
    if all(digest == manifest_digest for digest in there.values()):
        log.info("%s is in the registry already under every tag: nothing to push", repo)
        return manifest_digest
    blobs = [str(doc["config"]["digest"]), *(str(d["digest"]) for d in doc["layers"])]
    uploaded = mounted = skipped = 0
    for digest in blobs:
        if registry.blob_exists(target.repository, digest):
            skipped += 1
            continue
        if (
            mount_from
            and digest in base_digests
            and registry.mount_blob(target.repository, digest, mount_from)
        ):
            mounted += 1
            continue
        log.info("pushing %s to %s/%s", digest[:19], target.registry, target.repository)
        registry.upload_blob(target.repository, digest, store.path(digest))
        uploaded += 1
    pushed = ""
    for tag in tags:
        if there[tag] == manifest_digest:
            pushed = manifest_digest
            continue
        pushed = registry.put_manifest(target.repository, tag, manifest, L.OCI_MANIFEST)
        if pushed != manifest_digest:
            raise ImageError(
                f"the registry {target.registry} stored {target.repository}:{tag} as {pushed}, not "
                f"{manifest_digest}: it rewrote the manifest, so the image is not the one built. Use a "
                "registry that keeps OCI manifests as they are"
            )
    log.info("pushed %s (%d blobs uploaded, %d mounted, %d already there)", repo, uploaded, mounted, skipped)
    return pushed


def _dependency_layer(
    plan: ImagePlan, version: tuple[int, int], store: L.BlobStore, epoch: int, work: Path
) -> Layer:
    """The wheelhouse installed into the venv; cached by its inputs (the slow part: ~100 MB of gzip)."""
    import installer

    key = hashlib.sha256(
        L.canonical_json(
            [
                LAYER_FORMAT,
                plan.wheelhouse.digest,
                list(version),
                epoch,
                VENV,
                installer.__version__,
                zlib.ZLIB_RUNTIME_VERSION,
            ]
        )
    ).hexdigest()[:32]
    cache = cache_dir()
    record = cache / "oci-layers" / f"{key}.json" if cache is not None else None
    blobs = cache / "oci-blobs" / "sha256" if cache is not None else None
    if record is not None and blobs is not None and record.is_file():
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            doc = json.loads(record.read_text())
            blob = blobs / str(doc["digest"])[7:]
            if blob.is_file() and L.verify_file(blob, doc["digest"]):
                store.put_file(blob, doc["digest"])
                log.info("dependency layer %s from the cache", str(doc["digest"])[:19])
                descriptor = L.Descriptor(OCI_LAYER_GZIP, doc["digest"], int(doc["size"]))
                return Layer(descriptor, str(doc["diff_id"]), str(doc["comment"]))
    stage = work / "deps"
    wheels = sorted(plan.wheelhouse.directory / n for n, _ in plan.wheelhouse.files if n.endswith(".whl"))
    install_wheels(wheels, stage, version)
    if not (stage / VENV.lstrip("/") / "bin" / "a0").is_file():
        raise ImageError("hatch-flyte: flyte (its a0 entry point) is not installed in the image; "
                         "add `flyte` to the project's dependencies")  # fmt: skip
    layer = write_layer(
        staged_entries(stage), store, epoch, f"hatch-flyte: dependencies ({len(wheels)} wheels)"
    )
    shutil.rmtree(stage)
    if record is not None and blobs is not None:
        with contextlib.suppress(OSError, HatchFlyteError):  # the cache is an optimization only
            blobs.mkdir(parents=True, exist_ok=True)
            record.parent.mkdir(parents=True, exist_ok=True)
            L.BlobStore.link_or_copy(store.path(layer.descriptor.digest), blobs / layer.descriptor.digest[7:])
            doc = {"digest": layer.descriptor.digest, "size": layer.descriptor.size, "diff_id": layer.diff_id,
                   "comment": layer.comment}  # fmt: skip
            write_bytes_atomic(record, L.canonical_json(doc))
    return layer
