"""Writing a bundle archive in one pass over the files.

Each file is read once: the bytes go to flyte's md5 digest and, framed as the tar that
:mod:`tarfile` writes for flyte (headers taken from tarfile itself, see :class:`_Headers`), to a
compressor running on a second thread. Memory is bounded by a few MiB of buffers whatever the
bundle's size.

Two gzip flavours:

* ``compatible``: header, deflate level 9 and trailer exactly as ``gzip.GzipFile(filename=<final
  name>, mtime=0)`` writes them, which is what flyte uploads on a machine without pigz. The
  header holds the final name, which depends on the digest, known only at the end; its length
  is fixed, so a placeholder is written first and patched in place.
* ``fast``: ISA-L deflate (zlib level 1 when isal is not installed), any gzip reader accepts it.
"""

from __future__ import annotations

import errno
import functools
import gzip
import hashlib
import io
import os
import queue
import tarfile
import threading
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Any, Protocol

from hatch_flyte.bundle.selection import BundleFile
from hatch_flyte.errors import BundleError


@functools.cache
def _isal() -> Any:
    """isal's zlib, or None: imported on the first fast bundle, not by every build that loads the hook."""
    try:
        from isal import isal_zlib
    except ImportError:  # isal comes with the `cli` extra; zlib does the same job, slower
        return None
    return isal_zlib


#: flyte sets every member's mtime to 1981-01-01T00:00:00Z as a float (tarfile then adds a PAX
#: ``mtime`` record on the Pythons that store float times).
FLYTE_MTIME = 347155200.0
FAST_PREFIX = "fast"
SUFFIX = ".tar.gz"
_CHUNK = 1 << 20
_DIRECT = 1 << 16  # writes this large skip the small-write buffer
_WHOLE = 1 << 20  # files up to this size are read in one call; larger ones in chunks of this size
_QUEUE_DEPTH = 8


def bundle_name(digest: str) -> str:
    """``fast<md5>.tar.gz``, flyte's name for a bundle with this digest."""
    return f"{FAST_PREFIX}{digest}{SUFFIX}"


def gzip_header(name: str, level: int) -> bytes:
    """The gzip header :class:`gzip.GzipFile` writes for ``filename=name`` and ``mtime=0``."""
    buf = io.BytesIO()
    gz = gzip.GzipFile(filename=name, mode="wb", compresslevel=level, mtime=0, fileobj=buf)
    header = buf.getvalue()
    gz.close()
    return header


COMPATIBLE_LEVEL = 9
FAST_LEVEL = 1  # only decides the header's XFL byte ("fastest") in fast mode


class _Compressor(Protocol):
    def compress(self, data: bytes, /) -> bytes: ...
    def flush(self, mode: int = ..., /) -> bytes: ...


def _compressor(compression: str) -> tuple[_Compressor, Callable[[bytes, int], int]]:
    isal = _isal()
    if compression == "compatible":
        # The same compressor gzip.GzipFile makes for level 9.
        comp: Any = zlib.compressobj(COMPATIBLE_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS, zlib.DEF_MEM_LEVEL, 0)
    elif isal is not None:
        comp = isal.compressobj(2, zlib.DEFLATED, -zlib.MAX_WBITS)
    else:
        comp = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
    crc32: Callable[[bytes, int], int] = isal.crc32 if isal is not None else zlib.crc32
    return comp, crc32


@dataclass(frozen=True)
class ArchiveResult:
    digest: str
    tar_size: int
    size: int


class _GzipPipe:
    """A write-only stream whose bytes are gzipped on another thread, into ``out``."""

    def __init__(self, out: IO[bytes], compression: str) -> None:
        self.out = out
        self.compression = compression
        self.header_len = len(gzip_header(bundle_name("0" * 32), self._level))
        self._write_out(b"\0" * self.header_len)  # patched by finish()
        self._buf: list[bytes] = []
        self._buffered = 0
        self._written = 0
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=_QUEUE_DEPTH)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="hatch-flyte-gzip", daemon=True)
        self._thread.start()

    @property
    def _level(self) -> int:
        return COMPATIBLE_LEVEL if self.compression == "compatible" else FAST_LEVEL

    def tell(self) -> int:
        return self._written

    def write(self, data: bytes) -> int:
        n = len(data)
        self._written += n
        if n >= _DIRECT:
            self._flush_buffer()
            self._put(data)
            return n
        self._buf.append(data)
        self._buffered += n
        if self._buffered >= _CHUNK:
            self._flush_buffer()
        return n

    def _flush_buffer(self) -> None:
        if self._buf:
            self._put(b"".join(self._buf))
            self._buf.clear()
            self._buffered = 0

    def _put(self, chunk: bytes) -> None:
        if self._error is not None:
            raise output_error(self.out, self._error)
        self._queue.put(chunk)

    def _write_out(self, data: bytes) -> None:
        try:
            self.out.write(data)
        except OSError as e:
            raise output_error(self.out, e) from None

    def _run(self) -> None:
        comp, crc32 = _compressor(self.compression)
        crc = 0
        ended = False  # the end marker was taken: nothing more will be queued
        try:
            while True:
                chunk = self._queue.get()
                if chunk is None:
                    ended = True
                    break
                crc = crc32(chunk, crc)
                self.out.write(comp.compress(chunk))
            self.out.write(comp.flush())
            self.out.write(crc.to_bytes(4, "little") + (self._written & 0xFFFFFFFF).to_bytes(4, "little"))
        except BaseException as e:  # handed to the writing thread
            self._error = e
            # Keep draining so the producer never blocks on a full queue (unless it is done: a
            # failed final flush must not wait for a second end marker).
            while not ended and self._queue.get() is not None:
                pass

    def finish(self, name: str) -> int:
        """Flush, write the trailer and the real header; return the archive's size in bytes."""
        self._flush_buffer()
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise output_error(self.out, self._error)
        header = gzip_header(name, self._level)
        if len(header) != self.header_len:  # pragma: no cover - names have a fixed length
            raise BundleError(f"internal error: gzip header for {name} has an unexpected length")
        try:  # seek() and flush() write buffered bytes, which can fail (disk full)
            end = self.out.tell()
            self.out.seek(0)
            self.out.write(header)
            self.out.flush()
        except OSError as e:
            raise output_error(self.out, e) from None
        return end

    def abort(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


def output_error(out: IO[bytes], error: BaseException) -> BundleError:
    """A clear error for a failed write of the archive file ``out``."""
    name = getattr(out, "name", None)  # an int for a file opened from a descriptor
    where = (os.path.dirname(name) or ".") if isinstance(name, str) else "the output directory"
    if isinstance(error, OSError):
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            return BundleError(
                f"disk full while writing the bundle into {where}; free some space or "
                "choose another output directory"
            )
        return BundleError(f"cannot write the bundle into {where}: {error.strerror or error}")
    return BundleError(f"writing the bundle into {where} failed: {error!r}")


def flyte_tarinfo(arcname: str, st: os.stat_result) -> tarfile.TarInfo:
    """The member header flyte writes: dereferenced, fixed mtime, no owner, mode kept."""
    info = tarfile.TarInfo(arcname)
    info.size = st.st_size
    info.mode = st.st_mode & 0o7777
    info.mtime = FLYTE_MTIME  # a float on purpose, as flyte stores it
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


def path_digest_bytes(arcname: str) -> bytes:
    """What flyte feeds md5 for a member's path: the relative path with its separators removed."""
    return arcname.replace("/", "").encode("utf-8")


class _Headers:
    """Member headers byte-identical to ``tarfile``'s for flyte's members, made without tarfile's cost.

    ``TarInfo.tobuf`` takes ~0.2 ms a member (a PAX record for the float mtime, then a ustar
    block), which dominated bundling time. Every member with a short ASCII name gets the same PAX
    block and a ustar block that differs only in name, mode, size and checksum, so we take both
    from tarfile once and patch those fields. Other members (long or non-ASCII names, huge files)
    go through tarfile itself. A self-check against tarfile decides whether the fast path is used
    at all on this Python.
    """

    def __init__(self) -> None:
        sample = flyte_tarinfo("x", os.stat_result((0o100644, 0, 0, 1, 0, 0, 0, 0, 0, 0))).tobuf(
            tarfile.PAX_FORMAT, "utf-8", "surrogateescape"
        )
        self.pax, template = sample[:-BLOCK], sample[-BLOCK:]
        self.template = bytearray(template)
        self.fast = all(self._fast(n, m, s) == self._slow(n, m, s) for n, m, s in _SELF_CHECK)

    def _slow(self, name: str, mode: int, size: int) -> bytes:
        info = flyte_tarinfo(name, os.stat_result((0o100000 | mode, 0, 0, 1, 0, 0, size, 0, 0, 0)))
        return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")

    def _fast(self, name: str, mode: int, size: int) -> bytes:
        block = bytearray(self.template)
        raw = name.encode("ascii")
        block[0:100] = raw.ljust(100, b"\0")
        block[100:108] = b"%07o\0" % mode
        block[124:136] = b"%011o\0" % size
        block[148:156] = b"        "
        block[148:155] = b"%06o\0" % sum(block)
        return self.pax + bytes(block)

    def header(self, name: str, mode: int, size: int) -> bytes:
        if self.fast and len(name) <= 100 and name.isascii() and size < _USTAR_MAX_SIZE:
            return self._fast(name, mode, size)
        return self._slow(name, mode, size)


BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE
_USTAR_MAX_SIZE = 8**11
_SELF_CHECK = (
    ("a.py", 0o644, 0),
    ("pkg/sub/m.py", 0o755, 12345),
    ("x" * 100, 0o400, 8**11 - 1),
    ("d/e", 0o7777, 513),
)


@functools.lru_cache(maxsize=1)
def _headers() -> _Headers:
    return _Headers()


def write_archive(files: Sequence[BundleFile], out: IO[bytes], compression: str) -> ArchiveResult:
    """Write ``files`` as a gzipped tar to ``out`` (seekable); return the flyte digest.

    The tar stream is what ``tarfile`` writes for flyte's members (headers, data padded to 512
    bytes, two zero blocks, zero-padding to a 10240-byte record).
    """
    md5 = hashlib.md5()
    headers = _headers()
    pipe = _GzipPipe(out, compression)
    try:
        for member in files:
            _add(pipe, headers, member, md5)
        pipe.write(b"\0" * (2 * BLOCK))
        remainder = pipe.tell() % RECORD
        if remainder:
            pipe.write(b"\0" * (RECORD - remainder))
        digest = md5.hexdigest()
        size = pipe.finish(bundle_name(digest))
    except BaseException:
        pipe.abort()
        raise
    return ArchiveResult(digest=digest, tar_size=pipe.tell(), size=size)


def _read_error(member: BundleFile, e: OSError) -> BundleError:
    return BundleError(
        f"cannot read {member.path}: {e.strerror}; make it readable or add it to `tool.flyte.bundle.ignores`"
    )


def left_out_of_tar(arcname: str) -> bool:
    """Whether flyte 2.12 leaves this member out of the tar while keeping it in the digest.

    flyte skips a member whose relative path *starts with* ``..`` as if it were outside the root,
    so a top-level ``..name`` file is hashed and listed but not archived.
    """
    return arcname.startswith("..")


def _add(pipe: _GzipPipe, headers: _Headers, member: BundleFile, md5: Any) -> None:
    if left_out_of_tar(member.arcname):
        pipe = _Discard()  # type: ignore[assignment]
    try:
        f = open(member.path, "rb", buffering=0)
    except OSError as e:
        raise _read_error(member, e) from None
    with f:
        try:
            st = os.fstat(f.fileno())
            size = st.st_size
            pipe.write(headers.header(member.arcname, st.st_mode & 0o7777, size))
            left = size
            while True:
                last = left <= _WHOLE
                # The last read asks for one byte more than expected: getting it means the file grew.
                data = _read(f, left + 1 if last else _WHOLE)
                if len(data) > left:
                    raise BundleError(
                        f"{member.path} changed while it was being bundled (it grew); build again"
                    )
                if len(data) < (left if last else _WHOLE):
                    raise BundleError(
                        f"{member.path} changed while it was being bundled (it shrank); build again"
                    )
                if data:
                    md5.update(data)
                    pipe.write(data)
                left -= len(data)
                if last:
                    break
        except OSError as e:
            raise _read_error(member, e) from None
    padding = -size % BLOCK
    if padding:
        pipe.write(b"\0" * padding)
    md5.update(path_digest_bytes(member.arcname))


class _Discard:
    """Stands in for the tar stream where flyte hashes a member without archiving it."""

    def write(self, data: bytes) -> int:
        return len(data)


def _read(f: Any, n: int) -> bytes:
    """Up to ``n`` bytes; short only at the end of the file."""
    chunks = []
    while n > 0:
        data = f.read(n)
        if not data:
            break
        chunks.append(data)
        n -= len(data)
    return b"".join(chunks)


def digest_files(files: Sequence[BundleFile]) -> str:
    """flyte's digest of ``files`` without writing anything (used by ``inspect`` and dry runs)."""
    md5 = hashlib.md5()
    for member in files:
        try:
            with open(member.path, "rb") as f:
                while chunk := f.read(_CHUNK):
                    md5.update(chunk)
        except OSError as e:
            raise BundleError(f"cannot read {member.path}: {e.strerror}") from None
        md5.update(path_digest_bytes(member.arcname))
    return md5.hexdigest()
