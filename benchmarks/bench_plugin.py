"""Plugin weight: an isolated ``pip wheel`` with the ``flyte`` build hook against plain hatchling.

Two copies of the same 3-module hatchling project, one plain and one with ``hatch-flyte`` in
``build-system.requires``, the ``flyte`` wheel hook and a ``[tool.flyte]`` table, are built by
``pip wheel`` exactly as a user's ``pip wheel .`` builds them: in an isolated build environment
that pip creates and fills for every build. What those environments may hold comes from a local
wheelhouse (``--no-index``; no pip configuration, no cache), made once before measuring: a wheel of
this checkout and ``pip download`` of hatchling and of that wheel's requirements.

Measured, in interleaved pairs (plain then hook, hook then plain, ...) so that drift hits both:

- **whole command**: CPU time (``pip`` and every process it waited for: the build environment's
  install, the backend's hook calls) and wall time of ``pip wheel``;
- **backend call**: CPU time of a fresh interpreter that imports hatchling and runs its PEP 517
  ``build_wheel`` in the project (no pip, no environment to fill): the hook's own work shows here.
  It runs in a venv made once from the wheelhouse (hatchling and the measured hatch-flyte).

The ratios are of medians (hook / plain) and the median of the per-pair ratios. Target: whole
command CPU <= 1.25x (``--check``: exit 1 on FAIL). Then one census build per variant with
``--no-clean`` keeps pip's build environment: its distributions are counted and sized, and the hook
variant may hold nothing beyond the plain one's but hatch-flyte itself. The hook's wheel must carry
the Flyte manifest (else the hook did not run and the comparison means nothing).

    python benchmarks/bench_plugin.py [--pairs N] [--json FILE] [--check] [--workdir DIR]

Needs pip and hatchling in the running interpreter (the ``test`` extra), and the package index
that pip is configured with, once, for the wheelhouse.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_WORKDIR = HERE / ".work" / "plugin"
TARGET_RATIO = 1.25
EPOCH = "1700000000"
VARIANTS = ("plain", "hook")
MANIFEST = ".dist-info/extra_metadata/flyte-manifest.json"

_MODULES = {
    "__init__.py": '"""Orders: a small Flyte project."""\n',
    "tasks.py": (
        "import flyte\n\nfrom orders.pricing import total\n\n"
        'env = flyte.TaskEnvironment(name="orders")\n\n\n'
        "@env.task\nasync def price(items: list[float]) -> float:\n    return total(items)\n"
    ),
    "pricing.py": ("def total(items: list[float]) -> float:\n    return round(sum(items) * 1.2, 2)\n"),
}


def _pyproject(hook: bool) -> str:
    requires = '["hatchling", "hatch-flyte"]' if hook else '["hatchling"]'
    text = (
        f'[build-system]\nrequires = {requires}\nbuild-backend = "hatchling.build"\n\n'
        '[project]\nname = "orders"\nversion = "1.0.0"\nrequires-python = ">=3.10"\n'
        'dependencies = ["flyte"]\n'
    )
    if hook:
        text += '\n[tool.hatch.build.targets.wheel.hooks.flyte]\n\n[tool.flyte]\npackage = "orders"\n'
    return text


def make_project(directory: Path, hook: bool) -> Path:
    """The benchmark's project: ``src/orders`` with three modules, plain or with the hook."""
    if directory.exists():
        shutil.rmtree(directory)
    package = directory / "src" / "orders"
    package.mkdir(parents=True)
    for name, text in _MODULES.items():
        (package / name).write_text(text)
    (directory / "pyproject.toml").write_text(_pyproject(hook))
    return directory


def _clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without pip's settings: the wheelhouse is the only source."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "HATCH_FLYTE_"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", SOURCE_DATE_EPOCH=EPOCH)
    env.update(extra)
    return env


def make_wheelhouse(workdir: Path, source: Path) -> Path:
    """hatch-flyte's wheel (of ``source``) and hatchling, with their requirements, for this Python."""
    wheelhouse = workdir / "wheelhouse"
    shutil.rmtree(wheelhouse, ignore_errors=True)
    wheelhouse.mkdir(parents=True)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheelhouse), str(source)], check=True
    )
    (plugin,) = wheelhouse.glob("hatch_flyte-*.whl")
    # From the configured index, once: the measured builds never see it.
    subprocess.run([*pip, "download", "-d", str(wheelhouse), "hatchling", str(plugin)], check=True)
    return wheelhouse


def make_backend_env(workdir: Path, wheelhouse: Path) -> Path:
    """A venv holding what the hook variant's build environment holds; its interpreter."""
    venv = workdir / "backend-venv"
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    cmd = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-index"]
    cmd += ["--find-links", str(wheelhouse), "hatchling", "hatch-flyte"]
    subprocess.run(cmd, check=True, env=_clean_env())
    return python


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(CPU s of the process and everything it waited for, wall s)."""
    cpu0, t0 = _children_cpu(), time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed in {cwd}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return cpu, wall


def pip_wheel(project: Path, wheelhouse: Path, out: Path, *, keep_env: bool = False) -> list[str]:
    """The measured command: a user's ``pip wheel .``, with the wheelhouse as the only index."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-index", "--find-links", str(wheelhouse)]
    cmd += ["--no-cache-dir", "-q", "-w", str(out), str(project)]
    if keep_env:
        cmd.insert(4, "--no-clean")
    return cmd


_BACKEND_CALL = (
    "import sys, time\n"
    "t = time.process_time()\n"
    "import hatchling.build\n"
    "hatchling.build.build_wheel(sys.argv[1])\n"
    "print(time.process_time() - t)\n"
)


@dataclass
class Series:
    """The measurements of one variant."""

    cpu: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    backend_cpu: list[float] = field(default_factory=list)
    env_dists: list[str] = field(default_factory=list)
    env_bytes: int = 0


def measure_pair(
    order: tuple[str, ...],
    projects: dict[str, Path],
    wheelhouse: Path,
    workdir: Path,
    backend_python: Path,
    series: dict[str, Series],
) -> None:
    for name in order:
        out = workdir / "out" / name
        cpu, wall = _timed(pip_wheel(projects[name], wheelhouse, out), projects[name], _clean_env())
        series[name].cpu.append(cpu)
        series[name].wall.append(wall)
    for name in order:
        # The backend alone, from the venv of the wheelhouse's hatchling and hatch-flyte.
        out = workdir / "out" / f"{name}-backend"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        proc = subprocess.run(
            [str(backend_python), "-c", _BACKEND_CALL, str(out)],
            cwd=projects[name],
            env=_clean_env(),
            capture_output=True,
            text=True,
            check=True,
        )
        series[name].backend_cpu.append(float(proc.stdout.strip().splitlines()[-1]))


def census(project: Path, wheelhouse: Path, workdir: Path) -> tuple[list[str], int, Path]:
    """Distributions and bytes of the build environment pip made for ``project`` (kept by --no-clean)."""
    tmp = workdir / "census" / project.name
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    out = workdir / "out" / f"{project.name}-census"
    cmd = pip_wheel(project, wheelhouse, out, keep_env=True)
    _timed(cmd, project, _clean_env(TMPDIR=str(tmp)))
    envs = sorted(tmp.glob("pip-build-env-*"))
    if len(envs) != 1:
        raise SystemExit(f"expected one pip build environment under {tmp}, found {envs}")
    dists = sorted(
        p.name.split("-")[0].lower().replace("_", "-") for p in envs[0].rglob("*.dist-info") if p.is_dir()
    )
    size = sum(p.stat().st_size for p in envs[0].rglob("*") if p.is_file() and not p.is_symlink())
    (wheel,) = out.glob("*.whl")
    shutil.rmtree(tmp, ignore_errors=True)
    return dists, size, wheel


def has_manifest(wheel: Path) -> bool:
    with zipfile.ZipFile(wheel) as zf:
        return any(n.endswith(MANIFEST) for n in zf.namelist())


def _ratio(hook: list[float], plain: list[float]) -> float:
    return statistics.median(hook) / statistics.median(plain)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=6, help="interleaved pairs of builds (default 6)")
    parser.add_argument("--json", dest="json_file", help="save all measurements to this JSON file")
    parser.add_argument("--check", action="store_true", help="exit 1 when the target or a check fails")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="projects and wheelhouse")
    parser.add_argument(
        "--plugin-source",
        type=Path,
        default=REPO,
        help="the hatch-flyte checkout to measure (default: this one)",
    )
    args = parser.parse_args()

    workdir: Path = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    wheelhouse = make_wheelhouse(workdir, args.plugin_source.resolve())
    backend_python = make_backend_env(workdir, wheelhouse)
    projects = {name: make_project(workdir / name, hook=name == "hook") for name in VARIANTS}
    series = {name: Series() for name in VARIANTS}

    # One unmeasured build each: the page cache warm for pip and the wheelhouse alike.
    for name in VARIANTS:
        _timed(pip_wheel(projects[name], wheelhouse, workdir / "out" / name), projects[name], _clean_env())
    for i in range(args.pairs):
        order = VARIANTS if i % 2 == 0 else VARIANTS[::-1]
        measure_pair(order, projects, wheelhouse, workdir, backend_python, series)

    failures = []
    wheels = {}
    for name in VARIANTS:
        series[name].env_dists, series[name].env_bytes, wheels[name] = census(
            projects[name], wheelhouse, workdir
        )
    if not has_manifest(wheels["hook"]):
        failures.append("the hook variant's wheel has no Flyte manifest: the hook did not run")
    if has_manifest(wheels["plain"]):
        failures.append("the plain variant's wheel has a Flyte manifest")
    extra = sorted(set(series["hook"].env_dists) - set(series["plain"].env_dists))
    if extra != ["hatch-flyte"]:
        failures.append(f"the hook's build environment adds {extra}, expected only hatch-flyte")

    pair_ratios = [h / p for h, p in zip(series["hook"].cpu, series["plain"].cpu, strict=True)]
    cpu_ratio = _ratio(series["hook"].cpu, series["plain"].cpu)
    pair_median = statistics.median(pair_ratios)
    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    print(f"{args.pairs} interleaved pairs of isolated `pip wheel` (--no-index, local wheelhouse)\n")
    print(f"| {'median':<28} | {'plain hatchling':>15} | {'with the hook':>13} | {'ratio':>6} |")
    print(f"| {'-' * 28} | {'-' * 15}:| {'-' * 13}:| {'-' * 6}:|")
    rows = [
        ("pip wheel CPU s", "cpu"),
        ("pip wheel wall s", "wall"),
        ("backend call CPU s", "backend_cpu"),
    ]
    for label, attr in rows:
        plain, hook = getattr(series["plain"], attr), getattr(series["hook"], attr)
        print(
            f"| {label:<28} | {statistics.median(plain):>15.2f} | {statistics.median(hook):>13.2f} "
            f"| {_ratio(hook, plain):>5.2f}x |"
        )
    plain_env, hook_env = series["plain"], series["hook"]
    print(
        f"| {'build env distributions':<28} | {len(plain_env.env_dists):>15} | {len(hook_env.env_dists):>13} "
        f"| {'':>6} |"
    )
    print(
        f"| {'build env MB':<28} | {plain_env.env_bytes / 1e6:>15.1f} | {hook_env.env_bytes / 1e6:>13.1f} "
        f"| {hook_env.env_bytes / plain_env.env_bytes:>5.2f}x |"
    )
    print(f"\nplain build env: {', '.join(plain_env.env_dists)}")
    print(f"hook build env:  {', '.join(hook_env.env_dists)}")
    print(f"per-pair CPU ratios: {', '.join(f'{r:.2f}' for r in pair_ratios)} (median {pair_median:.2f})")
    verdict = "PASS" if cpu_ratio <= TARGET_RATIO else "FAIL"
    print(f"\npip wheel CPU, hook / plain = {cpu_ratio:.2f}x (target <= {TARGET_RATIO}x: {verdict})")
    for failure in failures:
        print(f"FAIL {failure}")
    if args.json_file:
        result: dict[str, Any] = {
            "python": platform.python_version(),
            "pairs": args.pairs,
            "series": {name: asdict(s) for name, s in series.items()},
            "cpu_ratio": cpu_ratio,
            "pair_ratio_median": pair_median,
            "failures": failures,
        }
        Path(args.json_file).write_text(json.dumps(result, indent=2))
    return 1 if args.check and (failures or verdict == "FAIL") else 0


if __name__ == "__main__":
    sys.exit(main())
