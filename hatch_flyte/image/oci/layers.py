"""Reproducible layer tars, written in pure Python.

Each layer is a tar of sorted entries with every timestamp at ``SOURCE_DATE_EPOCH``, owner 0/0 with
empty names, modes normalized (directories 0755, files 0644 or 0755 when executable, symlinks 0777),
parent directories listed, gzip-compressed with mtime 0 and no file name. Wheels are laid out with
pypa ``installer`` into a staging directory (scripts get ``#!/opt/venv/bin/python``; no bytecode is
compiled, as the docker backend's ``pip --no-compile``), and the staging directory becomes the layer.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import posixpath
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from installer import install
from installer.destinations import WheelDestination
from installer.exceptions import InstallerError
from installer.records import Hash, RecordEntry
from installer.scripts import Script
from installer.sources import WheelFile
from installer.utils import Scheme, construct_record_file, copyfileobj_with_hashing, fix_shebang

from hatch_flyte.errors import ImageError
from hatch_flyte.image.oci.layout import OCI_LAYER_GZIP, BlobStore, Descriptor, HashingWriter

if TYPE_CHECKING:
    from installer.scripts import ScriptSection

VENV = "/opt/venv"
INSTALLER_NAME = b"hatch-flyte\n"


@dataclass(frozen=True)
class Entry:
    """One member of a layer: ``path`` is absolute in the image."""

    path: str
    kind: str  # "dir", "file" or "symlink"
    source: Path | bytes | None = None
    executable: bool = False
    target: str = ""


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
        info.type, info.mode = tarfile.DIRTYPE, 0o755
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


def staged_entries(staging: Path) -> Iterator[Entry]:
    """The files, symlinks and directories under ``staging``, as image paths from its root."""
    for dirpath, dirnames, filenames in os.walk(staging):
        rel = Path(dirpath).relative_to(staging).as_posix()
        prefix = "/" if rel == "." else f"/{rel}/"
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            if path.is_symlink():
                yield Entry(prefix + name, "symlink", target=os.readlink(path))
            elif path.is_dir():
                yield Entry(prefix + name, "dir")
            else:
                yield Entry(prefix + name, "file", path, executable=bool(path.stat().st_mode & 0o111))


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


def site_packages(version: tuple[int, int]) -> str:
    return f"{VENV}/lib/python{version[0]}.{version[1]}/site-packages"


def install_wheels(wheels: Iterable[Path], staging: Path, version: tuple[int, int]) -> None:
    """Lay ``wheels`` out into ``staging`` (the image's root) as installed into ``/opt/venv``."""
    for wheel in wheels:
        try:
            with WheelFile.open(wheel) as source:
                schemes = {
                    "purelib": site_packages(version),
                    "platlib": site_packages(version),
                    "scripts": f"{VENV}/bin",
                    "data": VENV,
                    "headers": f"{VENV}/include/site/python{version[0]}.{version[1]}/{source.distribution}",
                }
                install(source, _StagingDestination(staging, schemes), {"INSTALLER": INSTALLER_NAME})
        except (InstallerError, ValueError, KeyError, OSError) as e:
            raise ImageError(
                f"cannot install the wheel {wheel.name} into the image's venv ({type(e).__name__}: {e}); "
                f"the wheel is broken: delete {wheel} (a cached wheelhouse is downloaded again) and build "
                "again"
            ) from None


class _StagingDestination(WheelDestination):
    """An ``installer`` destination writing under ``staging`` as though it were the image's root."""

    def __init__(self, staging: Path, schemes: dict[str, str]) -> None:
        self.staging = staging
        self.schemes = schemes
        self.interpreter = f"{VENV}/bin/python"

    def _image_path(self, scheme: str, path: str) -> str:
        root = self.schemes[scheme]
        full = posixpath.normpath(posixpath.join(root, path))
        if not (full + "/").startswith(root.rstrip("/") + "/"):
            raise ValueError(f"{path} points outside {root}")
        return full

    def _write(self, scheme: str, path: str, stream: BinaryIO, executable: bool) -> RecordEntry:
        target = self.staging / self._image_path(scheme, path).lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.exists():
            target.unlink()  # a later wheel wins, as with pip
        with target.open("wb") as f:
            digest, size = copyfileobj_with_hashing(stream, f, "sha256")
        target.chmod(0o755 if executable else 0o644)
        return RecordEntry(path, Hash("sha256", digest), size)

    def write_file(
        self, scheme: Scheme, path: str | os.PathLike[str], stream: BinaryIO, is_executable: bool
    ) -> RecordEntry:
        name = os.fspath(path)
        if scheme == "scripts":
            with fix_shebang(stream, self.interpreter) as fixed:
                return self._write(scheme, name, fixed, is_executable)
        return self._write(scheme, name, stream, is_executable)

    def write_script(self, name: str, module: str, attr: str, section: ScriptSection) -> RecordEntry:
        script_name, data = Script(name, module, attr, section).generate(self.interpreter, "posix")
        return self._write("scripts", script_name, io.BytesIO(data), True)

    def finalize_installation(
        self, scheme: Scheme, record_file_path: str, records: Iterable[tuple[Scheme, RecordEntry]]
    ) -> None:
        def prefix_for_scheme(file_scheme: str) -> str | None:
            if file_scheme == scheme:
                return None
            return posixpath.relpath(self.schemes[file_scheme], self.schemes[scheme]) + "/"

        with construct_record_file(list(records), prefix_for_scheme) as stream:
            self._write(scheme, record_file_path, stream, False)
