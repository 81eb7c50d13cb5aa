"""Atomic output, interruption and leftovers: the one place every writer goes through.

- Files appear atomically: written beside the target under a temporary name, then renamed.
- SIGINT, SIGTERM and SIGHUP (Ctrl-C, a cancelled CI job, ``docker stop``, Kubernetes, a closed
  terminal) interrupt a write the same way: inside :func:`interruptible` each becomes an
  :class:`Interrupted` exception, so every ``finally`` and context manager on the way out removes
  what it made. Where hatch-flyte is a library (hatch, pip, setuptools), the signal is then handed
  back to the process's own handler; the ``hatch-flyte`` command exits with status 128+signal.
- Temporary names carry their owner (host, boot, pid and the process's start time), so that the
  next run in the same directory removes what a process killed outright (SIGKILL, power loss) left
  behind, and nothing of a process that is still running.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import IO, Any

from hatch_flyte.errors import BuildError

log = logging.getLogger(__name__)

#: The signals turned into :class:`Interrupted`.
SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class Interrupted(KeyboardInterrupt):
    """A signal stopped the work; raised where the main thread was, so cleanups run.

    A :class:`KeyboardInterrupt`, so code that already cleans up after Ctrl-C (and hosts that
    report it) treat SIGTERM and SIGHUP the same way.
    """

    def __init__(self, signum: int, doing: str) -> None:
        super().__init__(signum, doing)
        self.signum = signum
        self.doing = doing

    @property
    def exit_status(self) -> int:
        return 128 + self.signum

    def __str__(self) -> str:
        name = signal.Signals(self.signum).name
        return f"interrupted by {name} while {self.doing}; its temporary files were removed"


# -- interruption ---------------------------------------------------------------------------------

_activities: list[str] = []
_installed: dict[int, Any] = {}
_pending: list[Interrupted] = []
#: Set while a child process starts: an interruption then waits until it has a pid to kill.
_starting: list[Interrupted | None] = []


def _handler(signum: int, frame: FrameType | None) -> None:
    if _pending:
        return  # already unwinding: a second signal must not cut the cleanup short
    error = Interrupted(signum, _activities[-1] if _activities else "working")
    _pending.append(error)
    if _starting:
        _starting[-1] = error
        return
    raise error


def run_child(cmd: Sequence[str], *, check: bool = False, **popen: Any) -> subprocess.CompletedProcess[Any]:
    """:func:`subprocess.run`, safe against interruption: the child is killed and waited for.

    ``subprocess.run`` cannot kill a child when the signal lands while it is being started (the
    exception leaves ``Popen()`` before it returns the process): that child would run on, orphaned,
    after our cleanup removed its files. Here the interruption waits for the child's pid.
    """
    proc = None
    try:
        _starting.append(None)
        try:
            proc = subprocess.Popen(cmd, **popen)
        finally:
            deferred = _starting.pop()
        if deferred is not None:
            raise deferred
        out, err = proc.communicate()
    except BaseException:
        if proc is not None:
            proc.kill()
            proc.wait()
        raise
    if check and proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd, out, err)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@contextlib.contextmanager
def interruptible(doing: str, *, hand_back: bool = True) -> Iterator[None]:
    """Run the block with SIGINT, SIGTERM and SIGHUP raising :class:`Interrupted`.

    ``doing`` says what is interrupted ("writing the code bundle into dist/"); nested blocks name
    the innermost activity. The outermost block installs the handlers and restores the previous
    ones on exit (signals reach the main thread only; elsewhere the block does nothing). A signal
    whose previous handler was ``SIG_IGN`` (``nohup``) stays ignored. With ``hand_back`` (a library
    in someone else's process) an interruption is then re-delivered to the previous handler, so the
    host process ends as it would have; without it (our own command) :class:`Interrupted` goes on.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved: dict[int, Any] = {}
    if not _installed:
        for sig in SIGNALS:
            previous = signal.getsignal(sig)
            if previous is signal.SIG_IGN or previous is None:
                continue
            saved[sig] = previous
            signal.signal(sig, _handler)
        _installed.update(saved)
    _activities.append(doing)
    try:
        yield
    except Interrupted as e:
        if saved:
            _restore(saved)
            if hand_back and e.signum in saved:
                _redeliver(e, saved[e.signum])
        raise
    finally:
        _activities.pop()
        if saved:
            _restore(saved)


def _restore(saved: dict[int, Any]) -> None:
    for sig, previous in saved.items():
        signal.signal(sig, previous)
    _installed.clear()
    _pending.clear()


def _redeliver(error: Interrupted, previous: Any) -> None:
    log.error("hatch-flyte: %s", error)
    if previous is signal.default_int_handler:
        return  # the host's own Ctrl-C handling raises KeyboardInterrupt: this is one
    # The previous disposition now applies (by default: the process ends by this signal).
    os.kill(os.getpid(), error.signum)


# -- owner identity of temporary names ------------------------------------------------------------

_OWNED = re.compile(r"\.hf(?P<host>[0-9a-f]{8})-(?P<boot>[0-9a-f]{8})-(?P<pid>\d+)-(?P<start>\d+)-")
_identity: tuple[int, str] | None = None
_reaped: set[tuple[int, str]] = set()


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _host_token() -> str:
    # The pid namespace too: containers of one pod share a hostname and a volume, not their pids.
    try:
        ns = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        ns = ""
    return hashlib.sha256(f"{socket.gethostname()}\0{ns}".encode()).hexdigest()[:8]


def _boot_token() -> str:
    boot = (_read("/proc/sys/kernel/random/boot_id") or "").strip()
    return hashlib.sha256(boot.encode()).hexdigest()[:8] if boot else "00000000"


def _start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot), or None when that is unknown (no /proc)."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    try:
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def owner_tag() -> str:
    """``hf<host>-<boot>-<pid>-<start>``: what identifies this process in temporary names."""
    global _identity
    pid = os.getpid()
    if _identity is None or _identity[0] != pid:  # recomputed after a fork
        _identity = (pid, f"hf{_host_token()}-{_boot_token()}-{pid}-{_start_time(pid) or 0}")
    return _identity[1]


def _owner_gone(name: str) -> bool:
    m = _OWNED.search(name)
    if m is None:
        return False
    tag = owner_tag()
    host, boot = tag[2:10], tag[11:19]
    if m["host"] != host:
        return False  # another machine (a shared file system) or container: not ours to judge
    if m["boot"] != boot:
        return True  # written before this machine last booted
    pid, start = int(m["pid"]), int(m["start"])
    if pid == os.getpid():
        return int(start) != (_start_time(pid) or 0)
    actual = _start_time(pid)
    if actual is not None:
        return actual != start
    if os.path.exists("/proc/self/stat"):
        return True  # /proc works and has no such process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def reap(directory: Path) -> list[Path]:
    """Remove temporary files and directories in ``directory`` whose owner process is gone.

    Runs once per directory and process; returns what it removed.
    """
    key = (os.getpid(), str(directory))
    if key in _reaped:
        return []
    _reaped.add(key)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(".") or not _owner_gone(entry.name):
            continue
        path = Path(entry.path)
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:
            continue  # another run reaped it first
        except OSError as e:
            log.debug("cannot remove the leftover %s: %s", path, e)
            continue
        log.info("removed %s, left behind by a build that was killed", path)
        removed.append(path)
    return removed


def temp_prefix(prefix: str) -> str:
    """A temporary name's prefix: ``.<prefix>.<owner tag>-`` (random characters follow)."""
    return f".{prefix.strip('.-')}.{owner_tag()}-"


def temp_dir(directory: Path, prefix: str) -> Path:
    """A new owned temporary directory in ``directory`` (leftovers of dead owners removed first)."""
    reap(directory)
    return Path(tempfile.mkdtemp(prefix=temp_prefix(prefix), suffix=".tmp", dir=directory))


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """An owned temporary directory in the system's temporary directory, removed at the end."""
    path = temp_dir(Path(tempfile.gettempdir()), prefix)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def temp_file(directory: Path, prefix: str) -> tuple[int, str]:
    """A new owned temporary file in ``directory``: ``(fd, path)``, like :func:`tempfile.mkstemp`."""
    reap(directory)
    return tempfile.mkstemp(prefix=temp_prefix(prefix), suffix=".tmp", dir=directory)


# -- atomic output --------------------------------------------------------------------------------


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
    manager, anything not published by the end of the block is deleted (an interruption too).
    """

    def __init__(self, directory: Path, prefix: str = "hatch-flyte") -> None:
        try:
            fd, name = temp_file(directory, prefix)
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
    with interruptible(f"writing {target}"), PendingFile(target.parent, prefix=target.name) as pending:
        yield pending.file
        pending.publish(target, mode)


def write_bytes_atomic(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically."""
    try:
        with atomic_output(target) as f:
            f.write(data)
    except OSError as e:
        raise BuildError(f"cannot write {target}: {e.strerror}") from None
