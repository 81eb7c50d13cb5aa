"""Code-bundle benchmark: hatch-flyte against flyte's own ``build_code_bundle``, in one run.

Synthetic trees (generated once under the work directory, reused while their parameters match):

* ``py100``: ~5,000 files, ~100 MiB of real Python source (stdlib files cycled, a unique header in
  each), nested packages, a git repository with a ``.gitignore`` and some untracked ignored files
  (``__pycache__``, ``.venv``, ``dist``) like a real project;
* ``tiny20k``: 20,000 files of tens of bytes in nested directories (git repository);
* ``big200``: one 200 MiB file of mixed content, source text with random bytes (git repository).

Each tree is its own git repository: the default work directory lies inside this (git-ignored)
checkout, and a tree outside a repository of its own would see the checkout's ``.gitignore`` exclude
everything through ``git ls-files -io``.

Every measured build runs in a fresh interpreter (``_runner.py``) that reports its own import time,
build-call time and peak RSS. Ratios use the build call alone (best of N); the whole-process wall
time, interpreter start and imports included, is shown beside it.

    python benchmarks/bench_bundle.py [--trees py100,tiny20k,big200] [--repeat N] [--quick]
                                      [--json FILE] [--check] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import platform
import random
import re
import resource
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RUNNER = HERE / "_runner.py"
DEFAULT_WORKDIR = HERE / ".work"
MiB = 1 << 20
#: Bump when the generators change, so stale trees are rebuilt.
GENERATOR_VERSION = 2
SEED = 20240601
#: The stat cache refuses files changed within 2 s of a build; stay clear of that.
RACY_WAIT_S = 2.5
#: Other processes busy on more than this many CPUs on average make the numbers noisy.
FOREIGN_CPU_WARNING = 0.2

GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.invalid",
    "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z",
}

# --- tree parameters ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TreeSpec:
    name: str
    kind: str  # "py", "tiny" or "big"
    files: int = 0
    total_bytes: int = 0
    #: Repeats of the slow variants (ours compatible, flyte without pigz) unless --repeat is given.
    slow_repeat: int = 2

    def params(self) -> dict[str, Any]:
        p: dict[str, Any] = {
            "kind": self.kind,
            "files": self.files,
            "total_bytes": self.total_bytes,
            "generator": GENERATOR_VERSION,
            "seed": SEED,
        }
        if self.kind != "tiny":  # content comes from this Python's stdlib
            p["python"] = platform.python_version()
        return p


FULL_TREES = {
    "py100": TreeSpec("py100", "py", files=5000, total_bytes=100 * MiB, slow_repeat=2),
    "tiny20k": TreeSpec("tiny20k", "tiny", files=20000, slow_repeat=2),
    "big200": TreeSpec("big200", "big", files=1, total_bytes=200 * MiB, slow_repeat=1),
}
QUICK_TREES = {
    "py100": TreeSpec("py100-quick", "py", files=300, total_bytes=6 * MiB, slow_repeat=1),
    "tiny20k": TreeSpec("tiny20k-quick", "tiny", files=1000, slow_repeat=1),
    "big200": TreeSpec("big200-quick", "big", files=1, total_bytes=16 * MiB, slow_repeat=1),
}

# --- generation ---------------------------------------------------------------------------------


def _stdlib_sources() -> list[Path]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "dist-packages", "__pycache__"}
    found = [p for p in stdlib.rglob("*.py") if not skip.intersection(p.relative_to(stdlib).parts)]
    return sorted(found, key=lambda p: p.relative_to(stdlib).as_posix())


class Corpus:
    """An endless stream of real Python source: the stdlib files, one after the other, cycled."""

    def __init__(self) -> None:
        parts = []
        for path in _stdlib_sources():
            try:
                parts.append(path.read_bytes())
            except OSError:
                continue
        self.data = b"".join(parts)
        if not self.data:
            raise SystemExit("no Python source found in the stdlib to build the synthetic trees from")
        self.pos = 0

    def take(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            chunk = self.data[self.pos : self.pos + n - len(out)]
            out += chunk
            self.pos = (self.pos + len(chunk)) % len(self.data)
        return bytes(out)

    def at(self, offset: int, n: int) -> bytes:
        offset %= len(self.data)
        chunk = self.data[offset : offset + n]
        return chunk if len(chunk) == n else chunk + self.data[: n - len(chunk)]


def _valid_python(body: bytes, rel: str) -> bytes:
    """``body`` made a module that parses, as a real project's are (hatch-flyte's discovery reads
    some of them): from its first top-level statement to the end of its last complete one, the
    rest commented out; the whole body commented out if that still does not parse."""
    starts = [m.start() + 1 for m in re.finditer(rb"\n(?=(?:def|class|import|from) )", body)]
    if len(starts) >= 2:
        first, last = starts[0], starts[-1]
        candidate = _commented(body[:first]) + body[first:last] + _commented(body[last:])
        try:
            compile(candidate, rel, "exec", ast.PyCF_ONLY_AST, dont_inherit=True)
            return candidate
        except (SyntaxError, ValueError):
            pass
    return _commented(body)


def _commented(text: bytes) -> bytes:
    return b"".join(b"#" + line for line in text.splitlines(keepends=True))


_WORDS = (
    "core", "io", "models", "utils", "api", "jobs", "data", "train", "evaluate", "serving", "plugins",
    "schemas", "storage", "metrics", "config", "cli", "features", "pipelines", "tasks", "clients",
)  # fmt: skip


def _package_dirs(count: int) -> list[str]:
    """``count`` nested package directories under ``acme/``, breadth first, fan-out 5."""
    dirs = ["acme"]
    i = 0
    while len(dirs) < count:
        parent = dirs[i]
        for k in range(5):
            if len(dirs) >= count:
                break
            dirs.append(f"{parent}/{_WORDS[(i * 5 + k) % len(_WORDS)]}{k}")
        i += 1
    return dirs


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


GITIGNORE = b"""\
__pycache__/
*.py[cod]
.venv/
dist/
build/
*.egg-info/
.mypy_cache/
.pytest_cache/
*.log
"""

PYPROJECT = b"""\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "acme"
version = "0.1.0"
requires-python = ">=3.10"
dependencies = ["flyte"]
"""


def _gen_py(root: Path, spec: TreeSpec, rng: random.Random) -> None:
    corpus = Corpus()
    root_files = {
        ".gitignore": GITIGNORE,
        "pyproject.toml": PYPROJECT,
        "README.md": b"# acme\n\nPipelines.\n",
    }
    for rel, data in root_files.items():
        _write(root / rel, data)
    dirs = _package_dirs(max(1, spec.files // 20))
    modules = spec.files - len(root_files) - len(dirs)  # every package also has an __init__.py
    budget = spec.total_bytes - sum(len(d) for d in root_files.values()) - 200 * len(dirs)
    weights = [rng.lognormvariate(0.0, 0.9) for _ in range(modules)]
    scale = budget / sum(weights)
    per_dir: dict[str, int] = {}
    counter = 0

    def source(rel: str, size: int) -> bytes:
        nonlocal counter
        counter += 1
        header = f'"""{rel}: synthetic module {counter} (hatch-flyte bundle benchmark)."""\n'.encode()
        body = corpus.take(max(0, size - len(header)))
        cut = body.rfind(b"\n")
        body = body[: cut + 1] if cut > len(body) // 2 else body
        return header + _valid_python(body, rel)

    for d in dirs:
        _write(root / d / "__init__.py", source(f"{d}/__init__.py", 200))
    for w in weights:
        d = dirs[rng.randrange(len(dirs))]
        n = per_dir[d] = per_dir.get(d, 0) + 1
        rel = f"{d}/{_WORDS[n % len(_WORDS)]}_{n}.py"
        _write(root / rel, source(rel, max(64, int(w * scale))))
    # What a working copy also holds: untracked files that .gitignore and flyte's list leave out.
    for d in dirs[:: max(1, len(dirs) // 10)]:
        _write(root / d / "__pycache__" / "__init__.cpython-311.pyc", rng.randbytes(2048))
    _write(root / "build.log", b"built\n")
    _write(root / ".venv" / "pyvenv.cfg", b"home = /usr/bin\n")
    for k in range(20):
        _write(root / ".venv" / "lib" / "site-packages" / f"dep{k}.py", corpus.take(4096))
    _write(root / ".mypy_cache" / "3.11" / "acme.data.json", b"{}\n")
    _write(root / "dist" / "acme-0.1.0-py3-none-any.whl", rng.randbytes(8192))


def _gen_tiny(root: Path, spec: TreeSpec, rng: random.Random) -> None:
    _write(root / ".gitignore", b"__pycache__/\n*.pyc\n")
    per_leaf = 100
    leaves = max(1, (spec.files - 1 + per_leaf - 1) // per_leaf)
    made = 0
    for leaf in range(leaves):
        d = root / "data" / f"group{leaf // 10:02d}" / f"part{leaf % 10}"
        for k in range(per_leaf):
            if made >= spec.files - 1:
                break
            made += 1
            if k % 2:
                text = f'{{"id": {made}, "value": {rng.random():.6f}}}\n'
                _write(d / f"item{k:03d}.json", text.encode())
            else:
                _write(d / f"item{k:03d}.py", f"VALUE_{made} = {rng.randrange(10**6)}\n".encode())


def _gen_big(root: Path, spec: TreeSpec, rng: random.Random) -> None:
    """Source text at random offsets with random bytes mixed in (~15% of the bytes)."""
    corpus = Corpus()
    path = root / "models" / "weights.bin"
    path.parent.mkdir(parents=True, exist_ok=True)
    left = spec.total_bytes
    with path.open("wb") as f:
        while left > 0:
            if rng.random() < 0.3:
                piece = rng.randbytes(rng.randrange(256, 4096))
            else:
                piece = corpus.at(rng.randrange(1 << 40), rng.randrange(1024, 16384))
            piece = piece[:left]
            f.write(piece)
            left -= len(piece)


GENERATORS = {"py": _gen_py, "tiny": _gen_tiny, "big": _gen_big}


def _git(root: Path, *args: str) -> None:
    subprocess.run(
        [
            "git",
            "-c",
            "core.looseCompression=1",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "core.hooksPath=/dev/null",
            *args,
        ],
        cwd=root,
        env={**os.environ, **GIT_ENV},
        check=True,
        stdout=subprocess.DEVNULL,
    )


def _count_files(root: Path) -> int:
    n = 0
    for _, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        n += len(filenames)
    return n


@dataclass
class Tree:
    spec: TreeSpec
    root: Path
    files: int
    generated_at: float
    reused: bool


def ensure_tree(workdir: Path, spec: TreeSpec) -> Tree:
    """The tree for ``spec``, generated unless a stamp says one with the same parameters exists."""
    root = workdir / "trees" / spec.name
    stamp = workdir / "trees" / f"{spec.name}.stamp.json"
    params = spec.params()
    try:
        old = json.loads(stamp.read_text())
        if old["params"] == params and _count_files(root) == old["files_on_disk"]:
            return Tree(spec, root, old["files_on_disk"], old["generated_at"], reused=True)
    except (OSError, ValueError, KeyError):
        pass
    print(f"generating {spec.name} in {root} ...", flush=True)
    started = time.perf_counter()
    stamp.unlink(missing_ok=True)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    GENERATORS[spec.kind](root, spec, random.Random(f"{SEED}-{spec.kind}"))
    _git(root, "-c", "init.defaultBranch=main", "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "synthetic tree")
    files = _count_files(root)
    now = time.time()
    stamp.write_text(json.dumps({"params": params, "files_on_disk": files, "generated_at": now}, indent=1))
    print(f"  done in {time.perf_counter() - started:.1f}s", flush=True)
    return Tree(spec, root, files, now, reused=False)


def _iter_files(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in filenames:
            yield Path(dirpath, name)


def warm_page_cache(root: Path) -> int:
    """Read every file once so that every variant starts from the same (warm) page cache."""
    total = 0
    for path in _iter_files(root):
        with path.open("rb") as f:
            while chunk := f.read(MiB):
                total += len(chunk)
    return total


# --- measuring ----------------------------------------------------------------------------------

VARIANTS = ("fast", "command", "compatible", "unchanged", "flyte_pigz", "flyte_nopigz")
LABELS = {
    "fast": "ours fast (cold)",
    "command": "hatch-flyte bundle (cold)",
    "compatible": "ours compatible (cold)",
    "unchanged": "ours unchanged rebuild",
    "flyte_pigz": "flyte + pigz",
    "flyte_nopigz": "flyte, no pigz",
}
SLOW = {"compatible", "flyte_nopigz"}


class BenchError(Exception):
    pass


@dataclass
class Env:
    base: dict[str, str]
    nopigz_path: str
    has_pigz: bool


def make_env(scratch: Path) -> Env:
    base = {k: v for k, v in os.environ.items() if not k.startswith("HATCH_FLYTE_")}
    bindir = scratch / "bin-nopigz"
    bindir.mkdir(parents=True, exist_ok=True)
    for tool in ("git", "tar"):
        found = shutil.which(tool)
        if found is None:
            raise SystemExit(f"{tool} is needed on PATH for the benchmark")
        link = bindir / tool
        if not link.exists():
            link.symlink_to(found)
    return Env(base, str(bindir), shutil.which("pigz") is not None)


@dataclass
class Variant:
    key: str
    runs: list[dict[str, Any]] = field(default_factory=list)

    def best(self, metric: str) -> float:
        return float(min(r[metric] for r in self.runs))

    def peak_mb(self, metric: str = "rss_kb") -> float:
        return float(max(r[metric] for r in self.runs)) / 1024


def run_one(
    spec: dict[str, Any], env: dict[str, str], scratch: Path, cwd: Path, timeout: float = 1800
) -> dict[str, Any]:
    fd, result_path = tempfile.mkstemp(dir=scratch, suffix=".json")
    os.close(fd)
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(RUNNER), json.dumps(spec), result_path],
        env=env,
        cwd=cwd,
        capture_output=True,
        timeout=timeout,
    )
    wall = time.perf_counter() - started
    try:
        if proc.returncode != 0:
            raise BenchError(
                f"{spec['tool']} build of {spec['root']} failed (exit {proc.returncode}):\n"
                + proc.stderr.decode(errors="replace")[-4000:]
            )
        with open(result_path) as f:
            result: dict[str, Any] = json.load(f)
    finally:
        os.unlink(result_path)
    result["process_s"] = wall
    return result


def _file_md5(path: str) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(MiB):
            h.update(chunk)
    return h.hexdigest()


def measure_tree(tree: Tree, env: Env, scratch: Path, repeat: int | None) -> dict[str, Variant]:
    runs_dir = scratch / "runs" / tree.spec.name
    shutil.rmtree(runs_dir, ignore_errors=True)
    runs_dir.mkdir(parents=True)
    root = str(tree.root.resolve())
    counts = {
        v: (repeat if repeat is not None else (tree.spec.slow_repeat if v in SLOW else 3)) for v in VARIANTS
    }
    if not env.has_pigz:
        print("  pigz is not on PATH: 'flyte + pigz' is skipped", flush=True)
        counts["flyte_pigz"] = 0
    results = {v: Variant(v) for v in VARIANTS if counts[v] > 0}
    cold_env = {**env.base, "HATCH_FLYTE_NO_CACHE": "1"}
    cache_dir = runs_dir / "statcache"
    warm_env = {**env.base, "HATCH_FLYTE_CACHE_DIR": str(cache_dir)}
    nopigz_env = {**env.base, "PATH": env.nopigz_path}
    unchanged_out = runs_dir / "unchanged-out"
    unchanged_out.mkdir()

    def spec_for(variant: str, out: Path) -> tuple[dict[str, Any], dict[str, str]]:
        if variant in ("fast", "compatible"):
            return {"tool": "ours", "root": root, "out": str(out), "compression": variant}, cold_env
        if variant == "command":
            return {"tool": "cli", "root": root, "out": str(out)}, cold_env
        if variant == "unchanged":
            return {"tool": "ours", "root": root, "out": str(out), "compression": "fast"}, warm_env
        e = env.base if variant == "flyte_pigz" else nopigz_env
        return {"tool": "flyte", "root": root, "out": str(out)}, e

    # Warm-up for the unchanged rebuild: a full build that fills the stat cache. It has to start
    # RACY_WAIT_S after the tree last changed, or the cache rightly refuses to remember it.
    if "unchanged" in results:
        wait = tree.generated_at + RACY_WAIT_S - time.time()
        if wait > 0:
            time.sleep(wait)
        spec, e = spec_for("unchanged", unchanged_out)
        warm = run_one(spec, e, scratch, runs_dir)
        print(f"  warm-up build for the unchanged rebuild: {warm['build_s']:.2f}s", flush=True)

    # Round robin, so slow drift (thermal, other load) spreads over all variants alike.
    for r in range(max(counts.values())):
        for v in VARIANTS:
            if r >= counts[v]:
                continue
            out = unchanged_out if v == "unchanged" else runs_dir / f"{v}-{r}"
            out.mkdir(exist_ok=True)
            spec, e = spec_for(v, out)
            res = run_one(spec, e, scratch, runs_dir)
            if v in ("compatible", "flyte_nopigz"):
                res["md5"] = _file_md5(res["path"])
            if v != "unchanged":
                shutil.rmtree(out, ignore_errors=True)
            results[v].runs.append(res)
            print(
                f"  {LABELS[v]:<24} run {r + 1}/{counts[v]}: build {res['build_s']:7.2f}s  "
                f"process {res['process_s']:7.2f}s  peak RSS {res['rss_kb'] / 1024:7.1f} MB",
                flush=True,
            )
    shutil.rmtree(runs_dir, ignore_errors=True)
    return results


class ForeignCpu:
    """How busy other processes kept the machine: all CPU time (``/proc/stat``) minus ours."""

    def __init__(self) -> None:
        self.start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float] | None:
        try:
            with open("/proc/stat") as f:
                fields = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        busy = sum(fields[:3]) + sum(fields[5:8])  # user nice system, irq softirq steal
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        own = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
        return busy / os.sysconf("SC_CLK_TCK"), own, time.monotonic()

    def average(self) -> float | None:
        """Average number of CPUs other processes used since this meter was made."""
        end = self._sample()
        if self.start is None or end is None or end[2] <= self.start[2]:
            return None
        foreign = (end[0] - self.start[0]) - (end[1] - self.start[1])
        return max(0.0, foreign / (end[2] - self.start[2]))


def wait_for_idle(limit_s: float) -> None:
    """Wait (up to ``limit_s``) until other processes leave the CPUs alone for two seconds."""
    deadline = time.monotonic() + limit_s
    told = False
    while time.monotonic() < deadline:
        meter = ForeignCpu()
        time.sleep(2.0)
        busy = meter.average()
        if busy is None or busy <= FOREIGN_CPU_WARNING:
            return
        if not told:
            print(f"  waiting for an idle machine (other processes use {busy:.2f} CPUs) ...", flush=True)
            told = True
    print("  the machine did not become idle; measuring anyway", flush=True)


# --- reporting ----------------------------------------------------------------------------------


@dataclass
class Verdicts:
    failures: list[str] = field(default_factory=list)

    def check(self, ok: bool, text: str) -> str:
        if not ok:
            self.failures.append(text)
        return ("PASS  " if ok else "FAIL  ") + text


def _speedup(res: dict[str, Variant], ours: str, peer: str, metric: str) -> float | None:
    if ours not in res or peer not in res:
        return None
    return res[peer].best(metric) / res[ours].best(metric)


def _rss_ratio(res: dict[str, Variant], ours: str, peer: str) -> float | None:
    if ours not in res or peer not in res:
        return None
    return res[ours].peak_mb() / res[peer].peak_mb()


def report_tree(
    tree: Tree, res: dict[str, Variant], verdicts: Verdicts, foreign: float | None
) -> dict[str, Any]:
    spec = tree.spec
    size = sum(p.stat().st_size for p in _iter_files(tree.root))
    lines = [
        "",
        f"== {spec.name}: {tree.files} files on disk, {size / MiB:.1f} MiB (git repository at {tree.root})",
    ]
    if foreign is not None:
        lines.append(f"other processes kept {foreign:.2f} of {os.cpu_count()} CPUs busy on average meanwhile")
        if foreign > FOREIGN_CPU_WARNING:
            lines.append(
                "WARNING: the machine was not idle; times are noisy (the cpu s column is less so). "
                "Rerun on an idle machine."
            )
    lines.append(
        f"{'variant':<24} {'build s':>8} {'cpu s':>7} {'process s':>10} {'import s':>9} {'peak RSS MB':>12} "
        f"{'after import':>13} {'bundle MB':>10} {'files':>6} {'runs':>5}"
    )
    for v in VARIANTS:
        if v not in res:
            continue
        r = res[v]
        last = r.runs[-1]
        lines.append(
            f"{LABELS[v]:<24} {r.best('build_s'):8.2f} {r.best('build_cpu_s'):7.2f} "
            f"{r.best('process_s'):10.2f} {r.best('import_s'):9.2f} "
            f"{r.peak_mb():12.1f} {r.peak_mb('rss_import_kb'):13.1f} "
            f"{last['size'] / MiB:10.1f} {last['files']:6d} {len(r.runs):5d}"
        )
    ratios: dict[str, float | None] = {
        "fast_vs_flyte_pigz": _speedup(res, "fast", "flyte_pigz", "build_s"),
        "fast_vs_flyte_nopigz": _speedup(res, "fast", "flyte_nopigz", "build_s"),
        "compatible_vs_flyte_nopigz": _speedup(res, "compatible", "flyte_nopigz", "build_s"),
        "unchanged_vs_flyte_pigz": _speedup(res, "unchanged", "flyte_pigz", "build_s"),
    }
    process_ratios = {
        "command_vs_flyte_pigz": _speedup(res, "command", "flyte_pigz", "process_s"),
        "command_vs_flyte_nopigz": _speedup(res, "command", "flyte_nopigz", "process_s"),
        "fast_vs_flyte_pigz": _speedup(res, "fast", "flyte_pigz", "process_s"),
        "fast_vs_flyte_nopigz": _speedup(res, "fast", "flyte_nopigz", "process_s"),
        "compatible_vs_flyte_nopigz": _speedup(res, "compatible", "flyte_nopigz", "process_s"),
        "unchanged_vs_flyte_pigz": _speedup(res, "unchanged", "flyte_pigz", "process_s"),
    }
    rss = {
        "rss_fast_over_flyte_nopigz": _rss_ratio(res, "fast", "flyte_nopigz"),
        "rss_compatible_over_flyte_nopigz": _rss_ratio(res, "compatible", "flyte_nopigz"),
    }
    names = {
        "fast vs flyte + pigz": "fast_vs_flyte_pigz",
        "fast vs flyte, no pigz": "fast_vs_flyte_nopigz",
        "compatible vs flyte, no pigz": "compatible_vs_flyte_nopigz",
        "unchanged rebuild vs flyte + pigz": "unchanged_vs_flyte_pigz",
    }
    lines.append("speed-ups: peer time / our time, build call only (whole process in parentheses)")
    for label, key in names.items():
        a, b = ratios[key], process_ratios[key]
        if a is not None and b is not None:
            lines.append(f"  {label:<36} {a:7.2f}x  ({b:.2f}x)")
    lines.append("whole command: `hatch-flyte bundle` process / flyte's process (imports included)")
    for label, key in (
        ("hatch-flyte bundle vs flyte + pigz", "command_vs_flyte_pigz"),
        ("hatch-flyte bundle vs flyte, no pigz", "command_vs_flyte_nopigz"),
    ):
        val = process_ratios[key]
        if val is not None:
            lines.append(f"  {label:<36} {val:7.2f}x")
    lines.append("peak RSS, whole process: ours / peer")
    for label, key in (
        ("ours fast / flyte, no pigz", "rss_fast_over_flyte_nopigz"),
        ("ours compatible / flyte, no pigz", "rss_compatible_over_flyte_nopigz"),
    ):
        val = rss[key]
        if val is not None:
            lines.append(f"  {label:<36} {val:7.2f}")

    # Same name from everyone (the name is flyte's digest of the file list and contents).
    bundle_names = {v: {r["name"] for r in res[v].runs} for v in res}
    all_names = set().union(*bundle_names.values())
    if len(all_names) == 1:
        lines.append(verdicts.check(True, f"bundle name, all variants agree: {all_names.pop()}"))
    else:
        detail = "; ".join(f"{LABELS[v]}={sorted(n)}" for v, n in bundle_names.items())
        lines.append(verdicts.check(False, f"!!! BUNDLE NAMES DIFFER on {spec.name}: {detail}"))
    if "compatible" in res and "flyte_nopigz" in res:
        same = {r["md5"] for r in res["compatible"].runs} == {r["md5"] for r in res["flyte_nopigz"].runs}
        lines.append(
            verdicts.check(same, "compatible .tar.gz byte-identical to flyte's without pigz")
            if same
            else verdicts.check(
                False, f"!!! compatible .tar.gz differs from flyte's without pigz ({spec.name})"
            )
        )
    if "unchanged" in res:
        reused = all(r.get("reused") for r in res["unchanged"].runs)
        lines.append(
            verdicts.check(reused, "unchanged rebuilds were served from the stat cache (reused=True)")
        )

    targets: list[str] = []
    if spec.kind == "py":
        lines.append(f"targets ({spec.name}; build call times):")

        def target(val: float | None, ok_if: Any, text: str) -> None:
            if val is None:
                targets.append(verdicts.check(False, f"{text}: not measured"))
            else:
                targets.append(verdicts.check(bool(ok_if(val)), f"{text}: {val:.2f}"))

        target(ratios["fast_vs_flyte_pigz"], lambda x: x >= 4, "fast >= 4x faster than flyte + pigz")
        target(ratios["fast_vs_flyte_nopigz"], lambda x: x >= 15, "fast >= 15x faster than flyte, no pigz")
        target(
            ratios["compatible_vs_flyte_nopigz"],
            lambda x: x >= 1.0,
            "compatible no slower than flyte, no pigz (>= 1.0x)",
        )
        target(
            ratios["unchanged_vs_flyte_pigz"],
            lambda x: x >= 10,
            "unchanged rebuild >= 10x faster than flyte + pigz",
        )
        target(
            process_ratios["command_vs_flyte_nopigz"],
            lambda x: x >= 15,
            "whole `hatch-flyte bundle` >= 15x faster than flyte's process, no pigz",
        )
        target(
            process_ratios["command_vs_flyte_pigz"],
            lambda x: x >= 8,
            "whole `hatch-flyte bundle` >= 8x faster than flyte's process + pigz",
        )
        target(
            rss["rss_fast_over_flyte_nopigz"],
            lambda x: x <= 1 / 3,
            "peak RSS ours fast <= 1/3 of flyte, no pigz (ratio)",
        )
        target(
            rss["rss_compatible_over_flyte_nopigz"],
            lambda x: x <= 1 / 3,
            "peak RSS ours compatible <= 1/3 of flyte, no pigz (ratio)",
        )
        lines.extend("  " + t for t in targets)
    print("\n".join(lines), flush=True)
    return {
        "tree": {
            "name": spec.name,
            "root": str(tree.root),
            "files_on_disk": tree.files,
            "bytes_on_disk": size,
        },
        "params": spec.params(),
        "variants": {v: r.runs for v, r in res.items()},
        "ratios_build_call": ratios,
        "ratios_process": process_ratios,
        "rss_ratios": rss,
        "targets": targets,
        "foreign_cpus": foreign,
        "report": lines,
    }


# --- main ---------------------------------------------------------------------------------------


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "machine": platform.machine(), "cpus": str(os.cpu_count())}
    for dist in ("hatch-flyte", "flyte", "isal"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    pigz = shutil.which("pigz")
    if pigz:
        proc = subprocess.run([pigz, "--version"], capture_output=True, text=True, check=False)
        out["pigz"] = (proc.stdout or proc.stderr).strip()
    return out


def byte_compile_ours() -> str:
    """Byte-compile hatch-flyte's modules where they are imported from, as flyte's are.

    pip compiles an installed package's modules; a checkout (an editable install) under
    ``PYTHONDONTWRITEBYTECODE=1`` would compile every module again in every measured process,
    ~35 ms that no user waits for, and that flyte's process does not pay either."""
    import compileall
    import importlib.util

    spec = importlib.util.find_spec("hatch_flyte")
    if spec is None or not spec.submodule_search_locations:
        return "no (hatch_flyte not found)"
    where = next(iter(spec.submodule_search_locations))
    ok = compileall.compile_dir(where, quiet=1)
    return f"yes ({where})" if ok else f"partly ({where}: some modules failed to compile)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--trees", default="py100,tiny20k,big200", help="comma-separated: py100,tiny20k,big200"
    )
    parser.add_argument(
        "--repeat", type=int, help="runs per variant, best taken (default 3; 1-2 for the slow variants)"
    )
    parser.add_argument("--quick", action="store_true", help="small trees, one run each: checks the script")
    parser.add_argument("--json", dest="json_file", help="save all measurements to this JSON file")
    parser.add_argument("--check", action="store_true", help="exit 1 when any check or target fails")
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each tree, wait up to this long for other processes to leave the CPUs idle",
    )
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="trees and scratch files")
    args = parser.parse_args(argv)

    catalogue = QUICK_TREES if args.quick else FULL_TREES
    names = [t.strip() for t in args.trees.split(",") if t.strip()]
    unknown = [n for n in names if n not in catalogue]
    if unknown:
        parser.error(f"unknown tree(s) {', '.join(unknown)}; choose from {', '.join(catalogue)}")
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be at least 1")
    repeat = args.repeat if args.repeat is not None else (1 if args.quick else None)

    workdir: Path = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    scratch = workdir / "scratch"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    env = make_env(scratch)
    compiled = byte_compile_ours()
    versions = _versions()
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()), flush=True)
    print(f"hatch-flyte's modules byte-compiled, as pip installs them (flyte's are): {compiled}", flush=True)

    trees = [ensure_tree(workdir, catalogue[n]) for n in names]
    verdicts = Verdicts()
    report: dict[str, Any] = {"versions": versions, "started": time.time(), "trees": {}}
    started = time.perf_counter()
    try:
        for tree in trees:
            print(f"\nmeasuring {tree.spec.name} ...", flush=True)
            warm_page_cache(tree.root)
            if args.wait_idle:
                wait_for_idle(args.wait_idle)
            meter = ForeignCpu()
            res = measure_tree(tree, env, scratch, repeat)
            report["trees"][tree.spec.name] = report_tree(tree, res, verdicts, meter.average())
    except BenchError as e:
        print(f"\nbenchmark error: {e}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report["seconds"] = time.perf_counter() - started
    report["failures"] = verdicts.failures

    print(f"\nmeasured in {report['seconds']:.0f}s; ratios use the build call (best of N), not process time")
    if verdicts.failures:
        print(f"{len(verdicts.failures)} check(s) FAILED:")
        for text in verdicts.failures:
            print(f"  FAIL  {text}")
    else:
        print("all checks passed")
    if args.json_file:
        Path(args.json_file).write_text(json.dumps(report, indent=1, sort_keys=True))
        print(f"results saved to {args.json_file}")
    return 1 if (args.check and verdicts.failures) else 0


if __name__ == "__main__":
    sys.exit(main())
