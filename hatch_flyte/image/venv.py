"""The image's virtual environment at ``/opt/venv``, laid out on the host.

Both backends place wheels into ``/opt/venv`` without running the image: pypa ``installer`` writes
each wheel into a staging directory that stands for the image's root (scripts get
``#!/opt/venv/bin/python``; no bytecode is compiled: the host's interpreter need not be the image's).
:func:`staged_entries` reads the staging directory back as image paths, for either backend's output.
"""

from __future__ import annotations

import io
import os
import posixpath
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from hatch_flyte.errors import ImageError
from hatch_flyte.extras import missing_extra_message

try:
    from installer import install
    from installer.destinations import WheelDestination
    from installer.exceptions import InstallerError
    from installer.records import Hash, RecordEntry
    from installer.scripts import Script
    from installer.sources import WheelFile
    from installer.utils import Scheme, construct_record_file, copyfileobj_with_hashing, fix_shebang
except ImportError:  # every image path imports this module first: say which extra is missing
    raise ImageError(missing_extra_message("building images", "image", ["installer"])) from None

if TYPE_CHECKING:
    from installer.scripts import ScriptSection

VENV = "/opt/venv"
#: The image's PATH, the venv first (both backends set it).
VENV_PATH = f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
INSTALLER_NAME = b"hatch-flyte\n"


@dataclass(frozen=True)
class Entry:
    """One member of a layer: ``path`` is absolute in the image."""

    path: str
    kind: str  # "dir", "file" or "symlink"
    source: Path | bytes | None = None
    executable: bool = False
    target: str = ""
    #: A directory's mode when it is not the usual 0755 (the workdir's 1777).
    mode: int | None = None


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
