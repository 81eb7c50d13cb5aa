"""Reproducible layer tars, written in pure Python.

Each layer is a tar of sorted entries with every timestamp at ``SOURCE_DATE_EPOCH``, owner 0/0 with
empty names, modes normalized (directories 0755 unless an entry says otherwise, files 0644 or 0755
when executable, symlinks 0777),
parent directories listed, gzip-compressed with mtime 0 and no file name. Wheels are laid out into a
staging directory by :mod:`hatch_flyte.image.venv`, and the staging directory becomes the layer.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import posixpath
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from hatch_flyte.image.oci.layout import OCI_LAYER_GZIP, BlobStore, Descriptor, HashingWriter
from hatch_flyte.image.venv import VENV, Entry


@dataclass(frozen=True)
class Layer:
    descriptor: Descriptor
    diff_id: str
    comment: str


def write_layer(entries: Iterable[Entry], store: BlobStore, mtime: int, comment: str) -> Layer:
    """Write the entries (later ones win on equal paths) as a gzip layer blob; parents are added."""
    by_path: dict[str, Entry] = {}
    for entry in entries:
        path = posixpath.normpath("/" + entry.path.lstrip("/"))
        if path == "/":
            continue
        parent = posixpath.dirname(path)
        while parent != "/" and parent not in by_path:
            by_path[parent] = Entry(parent, "dir")
            parent = posixpath.dirname(parent)
        by_path[path] = entry
    tmp_file = store.temp()
    tmp = Path(tmp_file.name)
    try:
        with tmp_file:
            compressed = HashingWriter(tmp_file)
            with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0, compresslevel=6) as gz:
                raw = HashingWriter(gz)
                with tarfile.open(fileobj=raw, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
                    for path in sorted(by_path):
                        _add(tar, path[1:], by_path[path], mtime)
        store.adopt(tmp, compressed.digest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return Layer(Descriptor(OCI_LAYER_GZIP, compressed.digest, compressed.size), raw.digest, comment)


def _add(tar: tarfile.TarFile, name: str, entry: Entry, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if entry.kind == "dir":
        info.type, info.mode = tarfile.DIRTYPE, 0o755 if entry.mode is None else entry.mode
        tar.addfile(info)
    elif entry.kind == "symlink":
        info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, entry.target
        tar.addfile(info)
    else:
        info.type, info.mode = tarfile.REGTYPE, 0o755 if entry.executable else 0o644
        if isinstance(entry.source, bytes):
            info.size = len(entry.source)
            tar.addfile(info, io.BytesIO(entry.source))
        else:
            assert entry.source is not None
            info.size = entry.source.stat().st_size
            with entry.source.open("rb") as f:
                tar.addfile(info, f)


def venv_skeleton(python: str, version: tuple[int, int]) -> list[Entry]:
    """``/opt/venv`` as ``python -m venv --without-pip`` lays it out, with no interpreter run.

    ``python`` is the base's interpreter path (e.g. ``/usr/bin/python3``): ``bin/python`` links to it
    and ``home`` in ``pyvenv.cfg`` is its directory, which is how ``site`` finds the standard library.
    """
    major, minor = version
    cfg = (
        f"home = {posixpath.dirname(python)}\n"
        "include-system-site-packages = false\n"
        f"version = {major}.{minor}\n"
        f"executable = {python}\n"
        f"command = {python} -m venv --without-pip {VENV}\n"
    )
    return [
        Entry(f"{VENV}/pyvenv.cfg", "file", cfg.encode()),
        Entry(f"{VENV}/bin/python", "symlink", target=python),
        Entry(f"{VENV}/bin/python3", "symlink", target="python"),
        Entry(f"{VENV}/bin/python{major}.{minor}", "symlink", target="python"),
        Entry(f"{VENV}/include", "dir"),
        Entry(f"{VENV}/lib/python{major}.{minor}/site-packages", "dir"),
        Entry(f"{VENV}/lib64", "symlink", target="lib"),
    ]
