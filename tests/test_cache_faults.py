"""Caches under faults: the stat cache, the base-Python cache and the wheelhouse cache.

A truncated, corrupt or foreign file is ignored and rewritten, never trusted; processes that fill
the same entry at once all succeed; a wheelhouse whose wheels no longer match their recorded
hashes is made again. Concurrency is real (separate processes), files are really damaged.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import logging
import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

import hatch_flyte.bundle as bundle_mod
from hatch_flyte.bundle import BundleOptions, build, statcache
from hatch_flyte.bundle.archive import write_archive
from hatch_flyte.image import basecache
from hatch_flyte.image.wheelhouse import HASHES, REQUIREMENTS, Target, build_wheelhouse


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "cache"
    monkeypatch.setenv("HATCH_FLYTE_CACHE_DIR", str(directory))
    monkeypatch.delenv("HATCH_FLYTE_NO_CACHE", raising=False)
    return directory


@pytest.fixture(scope="module")
def aged_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tree older than the stat cache's racy window (ctime cannot be set back: this waits)."""
    root = tmp_path_factory.mktemp("aged") / "root"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("")
    for i in range(50):
        (root / "pkg" / f"m{i}.py").write_text(f"X = {i}\n" * 200)
    time.sleep(statcache.RACY_SECONDS + 0.2)
    return root.resolve()


def _entry(root: Path) -> Path:
    path = statcache._entry_path(root)
    assert path is not None
    return path


def _spy_archive(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return write_archive(*args, **kwargs)

    monkeypatch.setattr(bundle_mod, "write_archive", counting)
    return calls


# -- stat cache -----------------------------------------------------------------------------------

STAT_FAULTS = {
    "empty": lambda good: b"",
    "truncated": lambda good: good[: len(good) // 2],
    "binary": lambda good: b"\x00\xff\xfe garbage \x80",
    "a list": lambda good: b"[1, 2, 3]",
    "another root": lambda good: json.dumps({**json.loads(good), "root": "/elsewhere"}).encode(),
    "another version": lambda good: json.dumps({**json.loads(good), "version": 99}).encode(),
    "a digest that is a path": lambda good: json.dumps(
        {**json.loads(good), "digest": "../../../etc/passwd"}
    ).encode(),
    "a negative size": lambda good: json.dumps({**json.loads(good), "tar_size": -1}).encode(),
    "a directory": None,
}


@pytest.mark.parametrize("fault", list(STAT_FAULTS))
def test_stat_cache_fault_is_ignored_and_rewritten(
    fault: str, aged_root: Path, cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = build(aged_root, tmp_path / "first")
    entry = _entry(aged_root)
    good = entry.read_bytes()
    damage = STAT_FAULTS[fault]
    entry.unlink()
    if damage is None:
        entry.mkdir()
    else:
        entry.write_bytes(damage(good))

    calls = _spy_archive(monkeypatch)
    out = tmp_path / "out"
    again = build(aged_root, out)
    assert calls == [1], "a damaged entry was trusted"
    assert (again.digest, again.files) == (first.digest, first.files)
    assert gzip.decompress(again.path.read_bytes()) == gzip.decompress(first.path.read_bytes())
    assert sorted(p.name for p in out.iterdir()) == [first.name]
    if damage is not None:
        # Rewritten: the next build is a hit (nothing read).
        assert json.loads(entry.read_bytes()) == json.loads(good)
        assert build(aged_root, tmp_path / "third").digest == first.digest
        assert calls == [1, 1]
        assert build(aged_root, out).reused and calls == [1, 1]


def _cli_bundle(root: Path, out: Path, cache: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "hatch_flyte.frontends.cli", "bundle", str(root), "-o", str(out), "--json"],
        env={**os.environ, "HATCH_FLYTE_CACHE_DIR": str(cache)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_parallel_builds_into_one_directory_and_one_cache(
    aged_root: Path, cache: Path, tmp_path: Path
) -> None:
    """8 processes at once, same root, output directory and cache: all succeed, one bundle."""
    out = tmp_path / "out"
    procs = [_cli_bundle(aged_root, out, cache) for _ in range(8)]
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    assert [rc for rc, _, _ in results] == [0] * 8, [err for _, _, err in results]
    names = {json.loads(stdout)["name"] for _, stdout, _ in results}
    assert len(names) == 1
    assert sorted(p.name for p in out.iterdir()) == sorted(names)
    tar = gzip.decompress((out / names.pop()).read_bytes())
    assert tar == gzip.decompress(
        build(aged_root, tmp_path / "check", BundleOptions(use_cache=False)).path.read_bytes()
    )
    entry = json.loads(_entry(aged_root).read_text())
    assert entry["digest"] == json.loads(results[0][1])["digest"]
    assert [p.name for p in _entry(aged_root).parent.iterdir()] == [_entry(aged_root).name]


# -- base-Python cache ----------------------------------------------------------------------------

KEY = ["sha256:" + "ab" * 32, "python3"]
FOUND = {"python": "python3", "version": [3, 11]}


@pytest.mark.parametrize(
    "content",
    [b"", b'{"kind": "docker-python", "key"', b"\xff\xfe\x00", b"[]", b'"text"', b"null"],
    ids=["empty", "truncated", "binary", "a list", "a string", "null"],
)
def test_base_cache_fault_is_ignored_and_rewritten(cache: Path, content: bytes) -> None:
    basecache.store("docker-python", KEY, FOUND)
    (record,) = (cache / "base-images").iterdir()
    record.write_bytes(content)
    assert basecache.load("docker-python", KEY) is None
    basecache.store("docker-python", KEY, FOUND)
    assert basecache.load("docker-python", KEY) == FOUND


def test_base_cache_foreign_records_are_not_trusted(cache: Path) -> None:
    basecache.store("docker-python", KEY, FOUND)
    (record,) = (cache / "base-images").iterdir()
    doc = json.loads(record.read_text())
    for foreign in (
        {**doc, "kind": "oci-python"},  # another kind of record at this name
        {**doc, "key": [KEY[0], "python"]},  # another key (a hash collision, a copied file)
        {**doc, "found": ["python3"]},  # not a mapping
    ):
        record.write_text(json.dumps(foreign))
        assert basecache.load("docker-python", KEY) is None


_STORE_LOOP = """
import sys
from hatch_flyte.image import basecache
key, found = ["sha256:" + "ab" * 32, "python3"], {"python": "python3", "version": [3, 11]}
for i in range(int(sys.argv[1])):
    basecache.store("docker-python", key, found)
    got = basecache.load("docker-python", key)
    assert got in (None, found), got
print("ok")
"""


def test_base_cache_filled_by_two_processes_at_once(cache: Path) -> None:
    env = {**os.environ, "HATCH_FLYTE_CACHE_DIR": str(cache)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _STORE_LOOP, "150"], env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    assert [p.communicate(timeout=120)[0].strip() for p in procs] == ["ok", "ok"]
    assert [p.returncode for p in procs] == [0, 0]
    assert basecache.load("docker-python", KEY) == FOUND
    assert len(list((cache / "base-images").iterdir())) == 1  # no temporary file left


# -- wheelhouse cache -----------------------------------------------------------------------------


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def _tiny_wheel(directory: Path, name: str = "tinypkg", version: str = "1.0") -> Path:
    """A minimal pure wheel, made here (no network)."""
    files = {
        f"{name}/__init__.py": b"VALUE = 1\n",
        f"{name}-{version}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
        ),
        f"{name}-{version}.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = f"{name}-{version}.dist-info/RECORD"
    lines = [_record_line(n, d) for n, d in files.items()] + [f"{record},,"]
    path = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for n, d in files.items():
            zf.writestr(n, d)
        zf.writestr(record, "\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def find_links(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local index: our tiny wheel and a pip wheel (Python's own bundled one, else from PyPI)."""
    import ensurepip

    directory = tmp_path_factory.mktemp("find-links")
    _tiny_wheel(directory)
    bundled = sorted((Path(ensurepip.__file__).parent / "_bundled").glob("pip-*.whl"))
    if bundled:
        (directory / bundled[-1].name).write_bytes(bundled[-1].read_bytes())
    else:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "-d",
                str(directory),
                "pip",
            ],
            check=True,
            capture_output=True,
        )
    return directory


@pytest.fixture
def offline_pip(find_links: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(find_links))
    return cache


TARGET = Target((3, 11), "linux/amd64")
REQS = [Requirement("tinypkg")]


def test_wheelhouse_with_a_changed_wheel_is_rebuilt(
    offline_pip: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = build_wheelhouse(REQS, TARGET)
    names = [n for n, _ in first.files]
    assert REQUIREMENTS in names and any(n.startswith("tinypkg-") for n in names)
    assert (first.directory / HASHES).is_file()
    wheel = next(first.directory / n for n in names if n.startswith("tinypkg-"))
    good = wheel.read_bytes()
    wheel.write_bytes(good + b"tampered")

    with caplog.at_level(logging.WARNING, logger="hatch_flyte"):
        again = build_wheelhouse(REQS, TARGET)
    assert again.files == first.files and again.digest == first.digest
    assert wheel.read_bytes() == good
    assert any("does not match its record of wheel hashes" in r.getMessage() for r in caplog.records)
    assert [p.name for p in again.directory.parent.iterdir()] == [again.directory.name]


def test_wheelhouse_faults_are_rebuilt(offline_pip: Path) -> None:
    """Each damage in turn (one wheelhouse, rebuilt after each)."""
    first = build_wheelhouse(REQS, TARGET)
    d = first.directory
    record = d / HASHES
    damages: dict[str, Callable[[], object]] = {
        "record missing": lambda: record.unlink(),
        "record truncated": lambda: record.write_bytes(record.read_bytes()[:20]),
        "record foreign": lambda: record.write_text(json.dumps(["not", "ours"])),
        "wheel missing": lambda: next(d.glob("tinypkg-*.whl")).unlink(),
        "extra file": lambda: (d / "evil-1.0-py3-none-any.whl").write_bytes(b"PK"),
        "requirements gone": lambda: (d / REQUIREMENTS).unlink(),
    }
    for name, damage in damages.items():
        damage()
        again = build_wheelhouse(REQS, TARGET)
        assert again.files == first.files, name
        assert sorted(p.name for p in d.iterdir()) == sorted([HASHES, *(n for n, _ in first.files)]), name


_WHEELHOUSE = """
from packaging.requirements import Requirement
from hatch_flyte.image.wheelhouse import Target, build_wheelhouse
w = build_wheelhouse([Requirement("tinypkg")], Target((3, 11), "linux/amd64"))
print(w.digest)
"""


def test_wheelhouse_filled_by_two_processes_at_once(offline_pip: Path, find_links: Path) -> None:
    env = {**os.environ, "HATCH_FLYTE_CACHE_DIR": str(offline_pip)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WHEELHOUSE],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err for _, err in results]
    assert len({out.strip() for out, _ in results}) == 1
    (entry,) = (offline_pip / "wheelhouses").iterdir()  # one entry, no temporary directories left
    assert build_wheelhouse(REQS, TARGET).digest == results[0][0].strip()
    assert entry.name != ""


def test_wheelhouse_interrupted_while_pip_downloads(offline_pip: Path) -> None:
    """SIGTERM while pip fills a new entry: pip is stopped, no temporary directory stays, the
    process ends by the signal (hatch-flyte as a library hands it back), and the next build
    makes the entry."""
    import signal

    env = {**os.environ, "HATCH_FLYTE_CACHE_DIR": str(offline_pip)}
    proc = subprocess.Popen([sys.executable, "-c", _WHEELHOUSE], env=env, stderr=subprocess.PIPE, text=True)
    root = offline_pip / "wheelhouses"
    deadline = time.monotonic() + 60
    while not (root.is_dir() and any(p.name.startswith(".wheelhouse.") for p in root.iterdir())):
        assert proc.poll() is None, "the wheelhouse was made before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGTERM, err
    left = sorted(p.name for p in root.iterdir())
    if "interrupted by SIGTERM while filling the wheelhouse" in err:
        assert left == [], err
    else:
        # On a loaded machine the signal can land after pip finished: then the entry is whole.
        assert len(left) == 1 and not left[0].startswith("."), (left, err)
    assert build_wheelhouse(REQS, TARGET).files
