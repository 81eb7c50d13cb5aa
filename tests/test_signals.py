"""Interruptions and leftovers, with real signals sent to real ``hatch-flyte`` processes.

SIGINT, SIGTERM and SIGHUP stop a build the same way at any point: temporary files removed,
exit status 128+signal, one line saying what was interrupted. A process killed outright
(SIGKILL) leaves its temporary file, which the next run in the same directory removes, and
nothing that belongs to a process still running is touched.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hatch_flyte import atomic
from hatch_flyte.bundle import BundleOptions, build

FILES, FILE_SIZE = 32, 1_250_000  # 40 MB of text: a few seconds of compatible (level 9) gzip


@pytest.fixture(scope="module")
def big_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hatchling project whose package is 40 MB of Python-like text."""
    project = tmp_path_factory.mktemp("big") / "proj"
    pkg = project / "src" / "bigpkg"
    pkg.mkdir(parents=True)
    r = random.Random(15)
    words = [bytes(r.choices(b"abcdefghijklmnopqrstuvwxyz_", k=r.randint(2, 9))) for _ in range(4000)]
    for i in range(FILES):
        out = bytearray()
        while len(out) < FILE_SIZE:
            out += b"# " + b" ".join(r.choices(words, k=12)) + b"\n"
        (pkg / f"m{i:02d}.py").write_bytes(bytes(out))
    (pkg / "__init__.py").write_text("import flyte\n\nenv = flyte.TaskEnvironment(name='big')\n")
    (project / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [build-system]
            requires = ["hatchling"]
            build-backend = "hatchling.build"

            [project]
            name = "bigpkg"
            version = "1.0"
            dependencies = ["flyte"]

            [tool.flyte]
            """
        )
    )
    return project


def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, "HATCH_FLYTE_CACHE_DIR": str(cache)}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "hatch_flyte.frontends.cli", *args]


def _temps(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob(".*") if ".hf" in p.name) if directory.is_dir() else []


def _bundle_temp_at_least(size: int) -> Callable[[Path], bool]:
    def ready(outdir: Path) -> bool:
        for p in _temps(outdir):
            try:
                if p.name.startswith(".fast-bundle.") and p.stat().st_size >= size:
                    return True
            except FileNotFoundError:
                pass
        return False

    return ready


def _interrupt(
    cmd: list[str], outdir: Path, ready: Callable[[Path], bool], sig: int, env: dict[str, str], **kw: Any
) -> tuple[subprocess.Popen[str], str]:
    """Start ``cmd``, wait until ``ready(outdir)``, send ``sig``; return the process and its stderr."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    deadline = time.monotonic() + 120
    while not ready(outdir):
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"the build ended ({proc.returncode}) before the point to interrupt it:\n{err}")
        assert time.monotonic() < deadline, "the build never reached the point to interrupt it"
        time.sleep(0.005)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return proc, err


@pytest.mark.parametrize(
    ("sig", "written"),
    [
        pytest.param(signal.SIGTERM, 1, id="SIGTERM-first-bytes"),
        pytest.param(signal.SIGHUP, 4_000_000, id="SIGHUP-middle"),
        pytest.param(signal.SIGINT, 10_000_000, id="SIGINT-late"),
    ],
)
def test_bundle_interrupted_leaves_nothing(big_project: Path, tmp_path: Path, sig: int, written: int) -> None:
    out = tmp_path / "out"
    cmd = _cli("bundle", str(big_project), "-o", str(out), "--compression", "compatible", "--no-cache")
    proc, err = _interrupt(cmd, out, _bundle_temp_at_least(written), sig, _env(tmp_path / "cache"))
    assert proc.returncode == 128 + sig, err
    name = signal.Signals(sig).name
    assert err.splitlines() == [
        f"hatch-flyte: interrupted by {name} while writing the code bundle into {out}; "
        "its temporary files were removed"
    ]
    assert list(out.iterdir()) == []


def test_build_interrupted_while_the_wheel_is_built(big_project: Path, tmp_path: Path) -> None:
    """``hatch-flyte build``: SIGTERM while the backend writes the wheel (a child process)."""
    out = tmp_path / "out"

    def wheel_started(outdir: Path) -> bool:
        return any(p.name.startswith(".hatch-flyte-wheel.") for p in _temps(outdir))

    cmd = _cli("build", str(big_project), "-o", str(out), "--no-isolation")
    proc, err = _interrupt(cmd, out, wheel_started, signal.SIGTERM, _env(tmp_path / "cache"))
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert err.splitlines()[-1] == (
        f"hatch-flyte: interrupted by SIGTERM while building the wheel of {big_project} into {out}; "
        "its temporary files were removed"
    )
    assert list(out.iterdir()) == []


def test_build_interrupted_while_the_bundle_is_written(big_project: Path, tmp_path: Path) -> None:
    """After the wheel: the wheel stays (it is complete), the bundle's temporary file goes, no
    manifest is written."""
    out = tmp_path / "out"
    cmd = _cli("build", str(big_project), "-o", str(out), "--no-isolation", "--compression", "compatible")
    proc, err = _interrupt(cmd, out, _bundle_temp_at_least(1), signal.SIGHUP, _env(tmp_path / "cache"))
    assert proc.returncode == 128 + signal.SIGHUP, err
    assert "interrupted by SIGHUP while writing the code bundle" in err.splitlines()[-1]
    assert [p.name for p in out.iterdir()] == ["bigpkg-1.0-py2.py3-none-any.whl"]


def test_nohup_keeps_building(big_project: Path, tmp_path: Path) -> None:
    """A SIGHUP that the caller ignores (``nohup``) stays ignored."""
    out = tmp_path / "out"
    cmd = _cli("bundle", str(big_project), "-o", str(out), "--no-cache")

    def ignore_hup() -> None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    proc, err = _interrupt(
        cmd, out, _bundle_temp_at_least(1), signal.SIGHUP, _env(tmp_path / "cache"), preexec_fn=ignore_hup
    )
    assert proc.returncode == 0, err
    assert [p.name.startswith("fast") for p in out.iterdir()] == [True]


def test_library_hands_the_signal_back(big_project: Path, tmp_path: Path) -> None:
    """Inside someone else's process (hatch, pip), hatch-flyte cleans up, then the signal does
    what it would have done there: here, end the process by SIGTERM."""
    out = tmp_path / "out"
    script = (
        "import sys; from pathlib import Path; from hatch_flyte.bundle import BundleOptions, build; "
        "build(Path(sys.argv[1]), Path(sys.argv[2]), "
        "BundleOptions(compression='compatible', use_cache=False))"
    )
    cmd = [sys.executable, "-c", script, str(big_project), str(out)]
    proc, err = _interrupt(cmd, out, _bundle_temp_at_least(1), signal.SIGTERM, _env(tmp_path / "cache"))
    assert proc.returncode == -signal.SIGTERM, err
    assert list(out.iterdir()) == []
    assert "interrupted by SIGTERM while writing the code bundle" in err


def test_killed_builds_leftovers_are_removed_by_the_next_run(big_project: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cmd = _cli("bundle", str(big_project), "-o", str(out), "--compression", "compatible", "--no-cache")
    proc, _ = _interrupt(cmd, out, _bundle_temp_at_least(1_000_000), signal.SIGKILL, _env(tmp_path / "cache"))
    assert proc.returncode == -signal.SIGKILL
    (leftover,) = _temps(out)
    assert f"-{proc.pid}-" in leftover.name

    # Temporary files of processes that still run: ours, and one of another machine.
    mine = out / f"{atomic.temp_prefix('fast-bundle')}live.tmp"
    mine.write_bytes(b"in progress")
    other_host = out / ".fast-bundle.hf00000000-00000000-1-1-elsewhere.tmp"
    other_host.write_bytes(b"another machine's")

    done = subprocess.run(
        _cli("bundle", str(big_project), "-o", str(out), "--no-cache"),
        env=_env(tmp_path / "cache"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert not leftover.exists()
    assert mine.exists() and other_host.exists()
    assert len([p for p in out.iterdir() if p.name.startswith("fast")]) == 1


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_reap_judges_owners(tmp_path: Path) -> None:
    tag = atomic.owner_tag()
    host, boot, pid, start = tag[2:].split("-")
    dead = _dead_pid()
    gone = [
        f".x.hf{host}-{boot}-{dead}-{start}-a.tmp",  # no such process
        f".x.hf{host}-{boot}-{pid}-{int(start) + 1}-b.tmp",  # this pid, but a process started later
        f".x.hf{host}-ffffffff-{pid}-{start}-c.tmp",  # written before the machine last booted
    ]
    kept = [
        f".x.hf{host}-{boot}-{pid}-{start}-d.tmp",  # this very process
        f".x.hf{host}-{boot}-1-{atomic._start_time(1) or 0}-e.tmp",  # init, alive
        f".x.hf0000000{'1' if host != '00000001' else '2'}-{boot}-{dead}-1-f.tmp",  # another host
        "fastabc.tar.gz",
        ".x.tmp",
    ]
    for name in gone + kept:
        (tmp_path / name).write_text("x")
    (tmp_path / f".y.hf{host}-{boot}-{dead}-{start}-dir.tmp").mkdir()
    (tmp_path / f".y.hf{host}-{boot}-{dead}-{start}-dir.tmp" / "inner").write_text("x")
    removed = {p.name for p in atomic.reap(tmp_path)}
    assert removed == {*gone, f".y.hf{host}-{boot}-{dead}-{start}-dir.tmp"}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)


def test_in_process_build_after_interrupt_handlers_are_restored(tmp_path: Path) -> None:
    """The handlers are ours only while we write."""
    before = {s: signal.getsignal(s) for s in atomic.SIGNALS}
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.py").write_text("A = 1\n")
    build(root, tmp_path / "out", BundleOptions(use_cache=False))
    assert {s: signal.getsignal(s) for s in atomic.SIGNALS} == before


def test_oci_image_build_interrupted_leaves_nothing(tmp_path: Path) -> None:
    """SIGTERM while the OCI backend lays the dependencies into a layer: no layout, no archive,
    no work directory in the output directory."""
    from test_image_oci import copy_example, fake_base

    base = fake_base(tmp_path / "base")
    project = copy_example(tmp_path / "weather_pipeline")
    with (project / "pyproject.toml").open("a") as f:
        f.write(f'\n[tool.flyte.image]\nbackend = "oci"\nbase = "oci:{base}:1"\n')
    out = tmp_path / "out"
    # A SOURCE_DATE_EPOCH of its own: the dependency layer is not in the cache, so it is written now.
    env = {
        **os.environ,
        "SOURCE_DATE_EPOCH": str(1_600_000_000 + random.randrange(10**8)),
        "DOCKER_HOST": "tcp://127.0.0.1:9",
    }

    def staging_dependencies(outdir: Path) -> bool:
        return any((p / "deps").is_dir() for p in _temps(outdir) if p.name.startswith(".hatch-flyte-oci."))

    cmd = _cli("build", str(project), "-t", "image", "-o", str(out), "--no-isolation")
    proc, err = _interrupt(cmd, out, staging_dependencies, signal.SIGTERM, env)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert err.splitlines()[-1] == (
        f"hatch-flyte: interrupted by SIGTERM while building the image weather-pipeline into {out}; "
        "its temporary files were removed"
    )
    assert [p.name for p in out.iterdir()] == ["flyte-manifest.json"]


_SPAWN = """
import os, signal, sys
from pathlib import Path
from hatch_flyte.atomic import interruptible, run_child

marker = Path(sys.argv[1])
child = f"import time, pathlib; time.sleep(2); pathlib.Path({str(marker)!r}).write_text('survived')"
with interruptible("running a child"):
    # The signal lands while the child is being started (after fork, before exec).
    run_child([sys.executable, "-c", child], preexec_fn=lambda: os.kill(os.getppid(), signal.SIGTERM))
print("not interrupted")
"""


def test_signal_while_a_child_starts_does_not_orphan_it(tmp_path: Path) -> None:
    """``subprocess.run`` loses a child whose start a signal interrupts; :func:`run_child` kills it."""
    marker = tmp_path / "survived"
    proc = subprocess.run(
        [sys.executable, "-c", _SPAWN, str(marker)], capture_output=True, text=True, check=False, timeout=60
    )
    assert proc.returncode == -signal.SIGTERM, proc.stderr
    assert "interrupted by SIGTERM while running a child" in proc.stderr
    time.sleep(3)
    assert not marker.exists(), "the child ran on after its parent was interrupted"
