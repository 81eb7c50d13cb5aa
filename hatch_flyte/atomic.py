"""Atomic file output: write beside the target, then rename; nothing is left behind on failure."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from hatch_flyte.errors import BuildError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def ensure_directory(directory: Path) -> Path:
    """Create ``directory`` if needed; raise a clear error when it cannot be used for output."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise BuildError(
            f"output directory {directory} exists and is not a directory; choose another one"
        ) from None
    except OSError as e:
        raise BuildError(
            f"cannot create output directory {directory}: {e.strerror}; choose another one"
        ) from None
    if not directory.is_dir():
        raise BuildError(f"output directory {directory} is not a directory; choose another one")
    return directory


class PendingFile:
    """A temporary file in ``directory`` that is either published under its final name or removed.

    Made in the destination directory so that publishing is one atomic rename; used as a context
    manager, anything not published by the end of the block is deleted.
    """

    def __init__(self, directory: Path, prefix: str = ".hatch-flyte-") -> None:
        try:
            fd, name = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=directory)
            # Reopened by name so that ``file.name`` is the path (error messages show where).
            with os.fdopen(fd, "rb"):
                self.file: IO[bytes] = open(name, "r+b")
        except OSError as e:
            raise BuildError(
                f"cannot write into {directory}: {e.strerror}; check its permissions or "
                "choose another output directory"
            ) from None
        self.path = Path(name)
        self._done = False

    def publish(self, target: Path, mode: int = 0o666) -> None:
        """Close the file and move it to ``target`` (replacing it), with ``mode`` minus the umask."""
        self.file.close()
        os.chmod(self.path, mode & ~_umask())
        os.replace(self.path, target)
        self._done = True

    def discard(self) -> None:
        """Close and delete the file."""
        # close() flushes and can fail (disk full); the file must be deleted all the same.
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._done = True

    def __enter__(self) -> PendingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._done:
            self.discard()


@contextlib.contextmanager
def atomic_output(target: Path, mode: int = 0o666) -> Iterator[IO[bytes]]:
    """Yield a file that becomes ``target`` only if the block succeeds."""
    with PendingFile(target.parent, prefix=f".{target.name}.") as pending:
        yield pending.file
        pending.publish(target, mode)


def write_bytes_atomic(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically."""
    try:
        with atomic_output(target) as f:
            f.write(data)
    except OSError as e:
        raise BuildError(f"cannot write {target}: {e.strerror}") from None
