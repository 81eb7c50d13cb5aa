"""Every fault path of the bundle engine, produced for real wherever the machine allows it.

Each fault must raise a hatch-flyte error whose message names the path (or key) and says how to
fix it, and must leave nothing in the output directory, temporary files included. Also here: the
secrets guard, and reuse of an existing bundle (atomicity: an equal bundle is never rewritten).

We run as root, which reads and writes everything, so the permission faults run the build in a
subprocess as the unprivileged user 65534 on a tree in a world-accessible temporary directory.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar, cast

import pytest

import hatch_flyte.bundle as bundle_mod
from hatch_flyte.atomic import PendingFile
from hatch_flyte.bundle import NOTHING_TO_BUNDLE, Bundle, BundleOptions, build, digest, select, statcache
from hatch_flyte.bundle.archive import gzip_header, write_archive
from hatch_flyte.bundle.guard import looks_secret
from hatch_flyte.config import Compression
from hatch_flyte.errors import BuildError, BundleError, HatchFlyteError, SecretsError

T = TypeVar("T")
COMPRESSIONS = ("fast", "compatible")
NOBODY = 65534
OLD_NS = 1_000_000_000 * 10**9  # 2001-09-09, for "was this file rewritten?" checks


# --- helpers -----------------------------------------------------------------------------------


def write(path: Path, data: str | bytes = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def make_tree(root: Path) -> Path:
    write(root / "pkg" / "__init__.py", "")
    write(root / "pkg" / "mod.py", "VALUE = 1\n")
    write(root / "pkg" / "data" / "table.csv", "a,b\n1,2\n")
    return root


def listing(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


def outdir(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    return out


def flyte_digest(root: Path, arcnames: tuple[str, ...]) -> str:
    """flyte's digest, computed independently: file bytes then the path without separators."""
    md5 = hashlib.md5()
    for arcname in sorted(arcnames, key=lambda a: str(root / a)):
        md5.update((root / arcname).read_bytes())
        md5.update(arcname.replace("/", "").encode())
    return md5.hexdigest()


def members(bundle: Path) -> dict[str, bytes]:
    with tarfile.open(bundle, "r:gz") as tar:
        out = {}
        for m in tar.getmembers():
            member = tar.extractfile(m)
            assert member is not None, m.name
            out[m.name] = member.read()
        return out


def call_with_timeout(fn: Callable[[], T], timeout: float = 30.0) -> T:
    """Run ``fn`` on a thread; fail (instead of hanging the suite) if it does not return in time."""
    returned: list[T] = []
    raised: list[BaseException] = []

    def run() -> None:
        try:
            returned.append(fn())
        except BaseException as e:
            raised.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        pytest.fail(f"the build did not finish within {timeout}s (it hangs)")
    if raised:
        raise raised[0]
    return returned[0]


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own stat cache (never the user's)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("HATCH_FLYTE_CACHE_DIR", str(cache))
    monkeypatch.delenv("HATCH_FLYTE_NO_CACHE", raising=False)
    return cache


def cache_entries(cache: Path) -> list[Path]:
    return sorted((cache / "bundles").glob("*.json"))


# --- bad roots and empty bundles ---------------------------------------------------------------


def test_missing_root(tmp_path: Path) -> None:
    out = outdir(tmp_path)
    root = tmp_path / "missing"
    with pytest.raises(BundleError) as info:
        build(root, out)
    assert str(info.value) == f"bundle root {root} does not exist; pass an existing directory"
    assert listing(out) == []


def test_root_is_a_file(tmp_path: Path) -> None:
    out = outdir(tmp_path)
    root = write(tmp_path / "wf.py", "x = 1\n")
    with pytest.raises(BundleError) as info:
        build(root, out)
    assert str(info.value) == (
        f"bundle root {root} is not a directory; pass the directory that holds your package"
    )
    assert listing(out) == []


@pytest.mark.parametrize(
    ("files", "ignores"),
    [
        ({}, ()),
        (
            {
                "__pycache__/m.cpython-311.pyc": "",
                "pkg/__pycache__/m.cpython-311.pyc": "",
                ".venv/lib/site.py": "",
                "venv/bin/activate": "",
                "dist/pkg-1.0-py3-none-any.whl": "",
                "build/lib/pkg/a.py": "",
                "debug.log": "",
                ".env": "TOKEN=1\n",
                "pkg.egg-info/PKG-INFO": "",
                ".git/config": "",
                ".mypy_cache/x.json": "",
            },
            (),
        ),
        ({"pkg/a.py": "", "pkg/b.py": ""}, ("*.py",)),
        ({".flyteignore": "*\n", "pkg/a.py": ""}, ()),
    ],
    ids=["empty", "only-standard-ignores", "tool-flyte-ignores", "flyteignore"],
)
def test_nothing_to_bundle(tmp_path: Path, files: dict[str, str], ignores: tuple[str, ...]) -> None:
    out = outdir(tmp_path)
    root = tmp_path / "root"
    root.mkdir()
    for rel, text in files.items():
        write(root / rel, text)
    options = BundleOptions(ignores=ignores)
    with pytest.raises(BundleError) as info:
        build(root, out, options)
    message = str(info.value)
    assert message == NOTHING_TO_BUNDLE.format(root=root)
    assert message.startswith(f"no files to bundle in {root}.\n")
    assert "set `tool.flyte.root-dir` or pass --root-dir" in message
    assert listing(out) == []
    with pytest.raises(BundleError, match="no files to bundle"):
        digest(root, options)


# --- entries a bundle cannot hold --------------------------------------------------------------


def test_symlink_loop(tmp_path: Path) -> None:
    out = outdir(tmp_path)
    root = make_tree(tmp_path / "root")
    (root / "pkg" / "a").symlink_to("b")
    (root / "pkg" / "b").symlink_to("a")
    with pytest.raises(BundleError) as info:
        call_with_timeout(lambda: build(root, out))
    assert str(info.value) == (
        f"{root / 'pkg' / 'a'} is a symlink loop (it never resolves to a file), which a bundle cannot "
        "hold; fix or delete it, or add it to `tool.flyte.bundle.ignores`"
    )
    assert listing(out) == []
    # The suggested fix works.
    bundle = build(root, out, BundleOptions(ignores=("pkg/a", "pkg/b")))
    assert "pkg/a" not in bundle.files and "pkg/mod.py" in bundle.files


def test_directory_links_in_a_cycle(tmp_path: Path) -> None:
    """Found by the differential fuzzer: two directory links that lead back up the tree. A
    directory reached again keeps walking its subdirectories (flyte's walk, kept), so this loop
    never ends: flyte walks it until the system refuses the path, then crashes with "Too many
    levels of symbolic links" (checked by hand with flyte 2.12.1: 9-38 s on such trees);
    hatch-flyte says so at once."""
    out = outdir(tmp_path)
    root = make_tree(tmp_path / "root")
    (root / "pkg" / "sub").mkdir()
    (root / "pkg" / "sub" / "up").symlink_to("..")
    (root / "pkg" / "alias").symlink_to("sub")
    with pytest.raises(BundleError) as info:
        call_with_timeout(lambda: build(root, out), timeout=10)
    assert str(info.value) == (
        f"symlink loop: {root}/pkg/sub/up is {root}/pkg again (a directory link leads back up its own "
        "tree, so the walk never ends; flyte fails on it too). Remove the link or add it to "
        "`tool.flyte.bundle.ignores`"
    )
    assert listing(out) == []
    bundle = build(root, out, BundleOptions(ignores=("pkg/sub/up",)))
    assert "pkg/mod.py" in bundle.files


def test_directory_link_to_itself_reached_twice(tmp_path: Path) -> None:
    """Found by the differential fuzzer: ``pkg/self -> .`` with ``pkg`` also reached through
    another link. flyte walks ``pkg/self/self/...`` until the system refuses the path and then
    stops silently (its walk ignores that error), so it bundles the tree; hatch-flyte refuses such
    a loop at once (a documented difference), and bundles what flyte does once it is ignored."""
    out = outdir(tmp_path)
    root = make_tree(tmp_path / "root")
    (root / "pkg" / "self").symlink_to(".")
    (root / "alias").symlink_to("pkg")
    with pytest.raises(BundleError, match=r"^symlink loop: .*/self is .*/pkg again"):
        call_with_timeout(lambda: build(root, out), timeout=10)
    assert listing(out) == []
    bundle = build(root, out, BundleOptions(ignores=("self",)))
    assert "pkg/mod.py" in bundle.files or "alias/mod.py" in bundle.files


def test_self_referencing_symlink(tmp_path: Path) -> None:
    out = outdir(tmp_path)
    root = make_tree(tmp_path / "root")
    (root / "self").symlink_to("self")
    with pytest.raises(BundleError, match=rf"^{root / 'self'} is a symlink loop"):
        call_with_timeout(lambda: build(root, out))
    assert listing(out) == []


def test_named_pipe_errors_instead_of_hanging(tmp_path: Path) -> None:
    out = outdir(tmp_path)
    root = make_tree(tmp_path / "root")
    fifo = root / "pkg" / "events"
    os.mkfifo(fifo)
    with pytest.raises(BundleError) as info:
        call_with_timeout(lambda: build(root, out), timeout=20)
    assert str(info.value) == (
        f"{fifo} is a named pipe, which a bundle cannot hold; fix or delete it, or add it to "
        "`tool.flyte.bundle.ignores`"
    )
    assert listing(out) == []
    with pytest.raises(BundleError, match="is a named pipe"):
        call_with_timeout(lambda: digest(root, BundleOptions()), timeout=20)
    bundle = call_with_timeout(lambda: build(root, out, BundleOptions(ignores=("events",))), timeout=20)
    assert bundle.files == ("pkg/__init__.py", "pkg/data/table.csv", "pkg/mod.py")


def test_include_outside_the_root(tmp_path: Path) -> None:
    out = outdir(tmp_path)
    root = make_tree(tmp_path / "root")
    outside = write(tmp_path / "elsewhere" / "conf.yaml", "a: 1\n")
    with pytest.raises(BundleError) as info:
        build(root, out, BundleOptions(include=(outside,)))
    assert str(info.value) == (
        f"include path {outside} is outside the bundle root {root}; move it under the root or set "
        "`tool.flyte.root-dir` one level up"
    )
    assert listing(out) == []


def test_include_that_matches_nothing(tmp_path: Path) -> None:
    out = outdir(tmp_path)
    root = make_tree(tmp_path / "root")
    pattern = root / "conf" / "*.yaml"
    with pytest.raises(BundleError) as info:
        build(root, out, BundleOptions(include=(pattern,)))
    assert str(info.value) == (
        f"include path {pattern} is not a file, a directory or a glob that matches anything; "
        "fix `tool.flyte.bundle.include`"
    )
    assert listing(out) == []


# --- permission faults, as an unprivileged user ------------------------------------------------

_BUILD_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    from hatch_flyte.bundle import BundleOptions, build
    from hatch_flyte.errors import HatchFlyteError
    result = {"euid": os.geteuid()}
    try:
        b = build(Path(sys.argv[1]), Path(sys.argv[2]), BundleOptions(**json.loads(sys.argv[3])))
    except HatchFlyteError as e:
        result.update(error=type(e).__name__, message=str(e))
    else:
        result.update(path=str(b.path), files=list(b.files))
    print(json.dumps(result))
    """
)


def _drop_privileges() -> None:
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def build_unprivileged(shared: Path, root: Path, out: Path, **options: Any) -> dict[str, Any]:
    """Build in a subprocess as user 65534 (when we are root; else as ourselves, unprivileged)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(shared),
        "HATCH_FLYTE_NO_CACHE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    command = [sys.executable, "-c", _BUILD_SCRIPT, str(root), str(out), json.dumps(options)]
    preexec: Callable[[], None] | None = None
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is not None:
            command = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *command]
        else:
            preexec = _drop_privileges
    proc = subprocess.run(
        command,
        cwd=shared,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=preexec,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    assert result.pop("euid") != 0, "the build ran as root: the permission fault is not real"
    return result


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory the unprivileged user can enter (tmp_path's parents are 0700)."""
    directory = Path(tempfile.mkdtemp(dir="/tmp", prefix="hatch-flyte-faults-"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        for dirpath, dirnames, _ in os.walk(directory):
            for name in dirnames:
                path = os.path.join(dirpath, name)
                if not os.path.islink(path):
                    os.chmod(path, 0o755)
        shutil.rmtree(directory)


def shared_tree(shared: Path) -> tuple[Path, Path]:
    root = make_tree(shared / "root")
    for dirpath, dirnames, filenames in os.walk(shared):
        for name in dirnames:
            os.chmod(os.path.join(dirpath, name), 0o755)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644)
    out = shared / "out"
    out.mkdir()
    out.chmod(0o777)  # the unprivileged user can write here: only the input is at fault
    return root, out


def test_unreadable_file(shared: Path) -> None:
    root, out = shared_tree(shared)
    secret = write(root / "pkg" / "private.bin", b"\0" * 100)
    secret.chmod(0o000)
    result = build_unprivileged(shared, root, out)
    assert result == {
        "error": "BundleError",
        "message": f"cannot read {secret}: Permission denied; make it readable or add it to "
        "`tool.flyte.bundle.ignores`",
    }
    assert listing(out) == []  # the temporary archive was removed
    # The suggested fix works.
    result = build_unprivileged(shared, root, out, ignores=["pkg/private.bin"])
    assert result["files"] == ["pkg/__init__.py", "pkg/data/table.csv", "pkg/mod.py"]


def test_unreadable_directory(shared: Path) -> None:
    root, out = shared_tree(shared)
    private = root / "pkg" / "private"
    write(private / "x.py", "")
    private.chmod(0o000)
    result = build_unprivileged(shared, root, out)
    assert result == {
        "error": "BundleError",
        "message": f"cannot read directory {private}: Permission denied; make it readable or add it to "
        "`tool.flyte.bundle.ignores`",
    }
    assert listing(out) == []
    assert "error" not in build_unprivileged(shared, root, out, ignores=["pkg/private/"])


def test_output_directory_not_writable(shared: Path) -> None:
    root, _ = shared_tree(shared)
    readonly = shared / "readonly"
    readonly.mkdir()
    readonly.chmod(0o555)
    result = build_unprivileged(shared, root, readonly)
    assert result == {
        "error": "BuildError",
        "message": f"cannot write into {readonly}: Permission denied; check its permissions or choose "
        "another output directory",
    }
    assert listing(readonly) == []
    below = readonly / "dist"
    result = build_unprivileged(shared, root, below)
    assert result == {
        "error": "BuildError",
        "message": f"cannot create output directory {below}: Permission denied; choose another one",
    }
    assert not below.exists()


def test_output_directory_under_a_regular_file(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root")
    blocker = write(tmp_path / "blocker", "not a directory\n")
    with pytest.raises(BuildError) as info:
        build(root, blocker / "dist")
    assert str(info.value) == (
        f"cannot create output directory {blocker / 'dist'}: Not a directory; choose another one"
    )
    with pytest.raises(BuildError) as info:
        build(root, blocker)
    assert str(info.value) == f"output directory {blocker} exists and is not a directory; choose another one"
    assert blocker.read_text() == "not a directory\n"
    assert listing(tmp_path) == ["blocker", "root"]  # nothing written beside it either


# --- disk full ---------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path | None]:
    """A 256 KiB tmpfs, or None where mounting is not permitted."""
    disk = tmp_path / "disk"
    disk.mkdir()
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=256k,mode=0755", "tmpfs", str(disk)],
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        mounted = None
    if mounted is None or mounted.returncode != 0:
        yield None
        return
    try:
        yield disk
    finally:
        done = subprocess.run(["umount", str(disk)], capture_output=True, timeout=30, check=False)
        if done.returncode != 0:  # still busy (a hung build holds a file): detach it anyway
            subprocess.run(["umount", "-l", str(disk)], capture_output=True, timeout=30, check=False)


class _FullDiskFile:
    """Fallback only (mount not permitted): a file that fails with ENOSPC past 200 KiB."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.budget = 200 * 1024

    def write(self, data: bytes) -> int:
        if len(data) > self.budget:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.budget -= len(data)
        return int(self.real.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize(
    "size",
    # About the disk's size: only the last buffered bytes do not fit, so the error comes when the
    # temporary file is flushed or closed. One tar chunk: the disk fills up while the compressor
    # flushes after the end of its input. Several chunks: it fills up while tar data still comes.
    [256 * 1024, 300 * 1024, 3 * 1024 * 1024],
    ids=["fails-on-close", "fails-at-the-end", "fails-midway"],
)
def test_disk_full(
    tmp_path: Path,
    small_disk: Path | None,
    monkeypatch: pytest.MonkeyPatch,
    compression: Compression,
    size: int,
) -> None:
    root = make_tree(tmp_path / "root")
    write(root / "pkg" / "blob.bin", random.Random(size).randbytes(size))  # incompressible
    if small_disk is None:
        # Mounting a small tmpfs is not permitted on this machine, so the full disk is simulated:
        # the archive's file object raises ENOSPC once 200 KiB have been written.
        class FullDiskPendingFile(PendingFile):
            def __init__(self, directory: Path, prefix: str = ".hatch-flyte-") -> None:
                super().__init__(directory, prefix)
                # The stand-in delegates every attribute but write() to the real file.
                self.file = cast(IO[bytes], _FullDiskFile(self.file))

        monkeypatch.setattr(bundle_mod, "PendingFile", FullDiskPendingFile)
        disk = tmp_path / "fake-disk"
    else:
        disk = small_disk
    out = disk / "out"
    options = BundleOptions(compression=compression)
    with pytest.raises(BundleError) as info:
        call_with_timeout(lambda: build(root, out, options))
    assert str(info.value) == (
        f"disk full while writing the bundle into {out}; free some space or choose another output directory"
    )
    assert listing(out) == []
    if small_disk is not None:
        st = os.statvfs(small_disk)
        assert st.f_bfree == st.f_blocks, "the partial archive still takes space"
    # Once the input fits, the same directory works again.
    (root / "pkg" / "blob.bin").unlink()
    bundle = build(root, out, options)
    assert listing(out) == [bundle.name]


# --- the secrets guard -------------------------------------------------------------------------

SECRET_TREE = {
    "pkg/__init__.py": "",
    "pkg/settings/.env": "TOKEN=abc\n",
    "certs/server.pem": "-----BEGIN PRIVATE KEY-----\n",
    "keys/id_rsa": "-----BEGIN OPENSSH PRIVATE KEY-----\n",
    "keys/id_rsa.pub": "ssh-rsa AAAA\n",
    "pkg/.env.example": "TOKEN=\n",
    ".env": "TOP=1\n",  # on flyte's standard ignore list: never bundled, so never flagged
}
FLAGGED = ("certs/server.pem", "keys/id_rsa", "pkg/settings/.env")


def secret_tree(root: Path) -> Path:
    for rel, text in SECRET_TREE.items():
        write(root / rel, text)
    return root


def test_secrets_warn_by_default(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = secret_tree(tmp_path / "root")
    out = outdir(tmp_path)
    with caplog.at_level(logging.WARNING, logger="hatch_flyte"):
        bundle = build(root, out)
    assert bundle.secrets == FLAGGED
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "hatch_flyte.bundle"]
    assert len(warnings) == 1
    assert warnings[0].getMessage() == (
        "these files look like secrets and will be in the bundle: "
        "certs/server.pem, keys/id_rsa, pkg/settings/.env (ignore them in .flyteignore or "
        '`tool.flyte.bundle.ignores`; `secrets = "error"` makes this fatal)'
    )
    # A warning only: everything selected is bundled, harmless look-alikes included.
    assert set(members(bundle.path)) == {
        "certs/server.pem",
        "keys/id_rsa",
        "keys/id_rsa.pub",
        "pkg/.env.example",
        "pkg/__init__.py",
        "pkg/settings/.env",
    }


def test_secrets_error_names_the_files_and_writes_nothing(tmp_path: Path) -> None:
    root = secret_tree(tmp_path / "root")
    out = outdir(tmp_path)
    with pytest.raises(SecretsError) as info:
        build(root, out, BundleOptions(secrets="error"))
    assert isinstance(info.value, BundleError)
    assert str(info.value) == (
        f"files that look like secrets would be bundled from {root}: "
        "certs/server.pem, keys/id_rsa, pkg/settings/.env. Remove them, add them to "
        "`tool.flyte.bundle.ignores` or .flyteignore, or, to bundle them anyway, set "
        '`tool.flyte.bundle.secrets = "warn"` ("off" with `strict`)'
    )
    assert "id_rsa.pub" not in str(info.value) and ".env.example" not in str(info.value)
    assert listing(out) == []
    with pytest.raises(SecretsError):
        select(root, BundleOptions(secrets="error"))


def test_secrets_error_passes_once_they_are_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = secret_tree(tmp_path / "root")
    with caplog.at_level(logging.WARNING, logger="hatch_flyte"):
        bundle = build(
            root, outdir(tmp_path), BundleOptions(secrets="error", ignores=("*.pem", "id_rsa", ".env"))
        )
    assert bundle.secrets == ()
    assert bundle.files == ("keys/id_rsa.pub", "pkg/.env.example", "pkg/__init__.py")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_secrets_off(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = secret_tree(tmp_path / "root")
    with caplog.at_level(logging.WARNING, logger="hatch_flyte"):
        bundle = build(root, outdir(tmp_path), BundleOptions(secrets="off"))
    assert bundle.secrets == ()
    assert "pkg/settings/.env" in bundle.files
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_harmless_look_alikes_are_not_flagged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "root"
    for rel in (
        "pkg/__init__.py",
        "keys/id_rsa.pub",
        "pkg/.env.example",
        "conf/.env.sample",
        "tls/ca.pem.dist",
    ):
        write(root / rel, "x\n")
    with caplog.at_level(logging.WARNING, logger="hatch_flyte"):
        bundle = build(root, outdir(tmp_path), BundleOptions(secrets="error"))
    assert bundle.secrets == ()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize(
    ("arcname", "secret"),
    [
        ("a/.env", True),
        (".env.production", True),
        ("x/server.PEM", True),
        ("id_rsa", True),
        ("home/.ssh/id_ed25519", True),
        ("deploy/gcp-service-account.json", True),
        ("infra/terraform.tfstate", True),
        ("a/.netrc", True),
        ("id_rsa.pub", False),
        (".env.example", False),
        ("docs/credentials.md", False),
        ("pkg/environment.py", False),
        ("envs/.envrc", False),
    ],
)
def test_looks_secret(arcname: str, secret: bool) -> None:
    assert looks_secret(arcname) is secret


# --- reuse and atomicity -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def aged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Trees whose files are older than the stat cache's racy window, so their digest is cached.

    ctime cannot be set back, so this waits (once for the module) instead.
    """
    base = tmp_path_factory.mktemp("aged")
    for name in ("hit", "changed", "replace-hit", "replace-miss"):
        make_tree(base / name)
    time.sleep(statcache.RACY_SECONDS + 0.2)
    return base


def _age(path: Path) -> os.stat_result:
    os.utime(path, ns=(OLD_NS, OLD_NS))
    return path.stat()


def _same_file(before: os.stat_result, path: Path) -> bool:
    after = path.stat()
    return (after.st_ino, after.st_mtime_ns, after.st_size) == (
        before.st_ino,
        before.st_mtime_ns,
        before.st_size,
    )


def test_cache_hit_reuses_the_bundle_without_reading_or_writing(
    aged: Path, tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = aged / "hit"
    out = outdir(tmp_path)
    first = build(root, out)
    assert not first.reused
    assert len(cache_entries(cache_dir)) == 1
    before = _age(first.path)

    def must_not_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("the files were read and an archive written despite an unchanged tree")

    monkeypatch.setattr(bundle_mod, "write_archive", must_not_run)
    second = build(root, out)
    assert second.reused
    assert (second.path, second.digest, second.files) == (first.path, first.digest, first.files)
    assert (second.size, second.tar_size) == (first.size, first.tar_size)
    assert _same_file(before, first.path)
    assert listing(out) == [first.name]


@pytest.mark.parametrize("how", ["env", "option"])
def test_cache_miss_reuses_the_bundle_without_rewriting_it(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    root = make_tree(tmp_path / "root")
    out = outdir(tmp_path)
    if how == "env":
        monkeypatch.setenv("HATCH_FLYTE_NO_CACHE", "1")
        options = BundleOptions()
    else:
        options = BundleOptions(use_cache=False)
    calls: list[int] = []

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return write_archive(*args, **kwargs)

    monkeypatch.setattr(bundle_mod, "write_archive", counting)
    first = build(root, out, options)
    before = _age(first.path)
    second = build(root, out, options)
    assert len(calls) == 2  # really a miss: every file read again
    assert second.reused and not first.reused
    assert (second.path, second.digest, second.size) == (first.path, first.digest, first.size)
    assert _same_file(before, first.path)
    assert listing(out) == [first.name]  # the second archive was discarded
    assert cache_entries(cache_dir) == []


def test_recently_changed_tree_is_not_cached(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Files changed within the racy window could change again without a visible metadata change.
    root = make_tree(tmp_path / "root")
    out = outdir(tmp_path)
    calls: list[int] = []

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return write_archive(*args, **kwargs)

    monkeypatch.setattr(bundle_mod, "write_archive", counting)
    first = build(root, out)
    second = build(root, out)
    assert len(calls) == 2
    assert cache_entries(cache_dir) == []
    assert second.reused and second.digest == first.digest


def test_changed_file_with_same_size_and_mtime_is_rebuilt(
    aged: Path, tmp_path: Path, cache_dir: Path
) -> None:
    root = aged / "changed"
    out = outdir(tmp_path)
    first = build(root, out)
    assert len(cache_entries(cache_dir)) == 1
    target = root / "pkg" / "mod.py"
    old = target.stat()
    new_text = b"VALUE = 2\n"
    assert len(new_text) == old.st_size
    target.write_bytes(new_text)
    os.utime(target, ns=(old.st_atime_ns, old.st_mtime_ns))
    now = target.stat()
    assert (now.st_size, now.st_mtime_ns, now.st_ino) == (old.st_size, old.st_mtime_ns, old.st_ino)
    assert now.st_ctime_ns != old.st_ctime_ns  # the only trace of the change

    second = build(root, out)
    assert not second.reused
    assert second.digest != first.digest
    assert second.digest == flyte_digest(root, second.files)
    assert members(second.path)["pkg/mod.py"] == new_text
    assert listing(out) == sorted([first.name, second.name])


@pytest.mark.parametrize("cache", ["hit", "miss"])
def test_compatible_build_replaces_a_fast_bundle_of_the_same_name(
    aged: Path, tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch, cache: str
) -> None:
    root = aged / f"replace-{cache}"
    if cache == "miss":
        monkeypatch.setenv("HATCH_FLYTE_NO_CACHE", "1")
    out = outdir(tmp_path)
    fast = build(root, out, BundleOptions(compression="fast"))
    assert len(cache_entries(cache_dir)) == (1 if cache == "hit" else 0)
    name = fast.name
    fast_bytes = fast.path.read_bytes()
    compatible_header = gzip_header(name, 9)
    assert fast_bytes[:2] == b"\x1f\x8b" and not fast_bytes.startswith(compatible_header)
    fast_inode = fast.path.stat().st_ino

    compatible = build(root, out, BundleOptions(compression="compatible"))
    assert compatible.path == fast.path and compatible.digest == fast.digest
    assert not compatible.reused
    data = compatible.path.read_bytes()
    assert data.startswith(compatible_header)
    assert compatible.path.stat().st_ino != fast_inode
    tar = gzip.decompress(data)
    assert tar == gzip.decompress(fast_bytes)
    # Byte for byte what flyte writes without pigz.
    expected = io.BytesIO()
    with gzip.GzipFile(filename=str(compatible.path), mode="wb", mtime=0, fileobj=expected) as gz:
        gz.write(tar)
    assert data == expected.getvalue()
    assert listing(out) == [name]

    # Now each mode accepts the compatible file: compatible needs its header, fast any gzip.
    before = _age(compatible.path)
    compressions: tuple[Compression, ...] = ("compatible", "fast")
    for compression in compressions:
        again: Bundle = build(root, out, BundleOptions(compression=compression))
        assert again.reused, compression
        assert _same_file(before, compatible.path)
    assert compatible.path.read_bytes() == data


def test_every_exception_hatch_flyte_defines_is_a_hatch_flyte_error() -> None:
    """One ``except HatchFlyteError`` in a frontend catches every error of ours, in any module."""
    import importlib
    import inspect
    import pkgutil

    import hatch_flyte

    defined = {}
    for info in pkgutil.walk_packages(hatch_flyte.__path__, "hatch_flyte."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == info.name:
                defined[f"{info.name}.{name}"] = value
    assert {"hatch_flyte.errors.BuildError", "hatch_flyte.errors.SecretsError"} <= set(defined)
    # An interruption by a signal is no error: a KeyboardInterrupt, so no `except Exception` swallows it.
    outside = sorted(
        name for name, cls in defined.items() if not issubclass(cls, (HatchFlyteError, KeyboardInterrupt))
    )
    assert "hatch_flyte.atomic.Interrupted" in defined
    assert outside == [], f"exceptions outside the HatchFlyteError family: {outside}"
