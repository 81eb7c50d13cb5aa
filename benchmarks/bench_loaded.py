"""copy-style "loaded-modules": the whole command, hatch-flyte against flyte, in one run.

A generated project (``--modules`` modules in 20 subpackages; 10 environment modules that each
import a share of them; a third of the modules unused) is bundled by:

* ``hatch-flyte bundle`` with ``copy-style = "loaded-modules"`` (stat cache off, empty output
  directory): parse the config, find the environments statically, import their modules in one
  subprocess, write the bundle; and the same with ``copy-style = "all"`` on a copy of the
  project, to show what the style itself adds;
* flyte 2.12.1 the way ``flyte deploy`` bundles: a fresh interpreter that appends the root to
  ``sys.path``, imports the environment modules and calls ``build_code_bundle(copy_style=
  "loaded_modules", dryrun=True)``, with and without pigz on PATH (never ruff).

Each variant runs ``--repeat`` times in fresh processes; the best wall time is kept, and the peak
RSS is the largest process of the command (``wait4``). The bundle names must agree.

    python benchmarks/bench_loaded.py [--modules N] [--repeat N] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

FLYTE = r"""
import asyncio, importlib, pathlib, sys
root, out, modules = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
sys.path.append(root)
for name in modules:
    importlib.import_module(name)
from flyte._code_bundle.bundle import build_code_bundle
cb = asyncio.run(build_code_bundle(pathlib.Path(root), dryrun=True, copy_bundle_to=pathlib.Path(out),
                                   copy_style="loaded_modules"))
print(pathlib.Path(cb.tgz).name)
"""
SUBPACKAGES = 20
ENV_MODULES = 10


def generate(root: Path, modules: int, style: str) -> list[str]:
    """The project under ``root``; returns the environment modules' names."""
    source = Path(textwrap.__file__).read_text(encoding="utf-8")  # ~20 KB of real Python
    (root / "benchpkg").mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        f'[project]\nname = "benchpkg"\nversion = "1"\n\n[tool.flyte.bundle]\ncopy-style = "{style}"\n'
    )
    (root / "benchpkg/__init__.py").write_text("")
    names = []
    for i in range(modules):
        pkg = root / f"benchpkg/sub{i % SUBPACKAGES:02d}"
        pkg.mkdir(exist_ok=True)
        (pkg / "__init__.py").touch()
        (pkg / f"mod{i:04d}.py").write_text(f"# module {i}\n{source}")
        names.append(f"benchpkg.sub{i % SUBPACKAGES:02d}.mod{i:04d}")
    used = names[: 2 * modules // 3]
    envs = []
    for e in range(ENV_MODULES):
        share = used[e::ENV_MODULES] + used[:5]  # each its own slice, plus a few shared modules
        imports = "".join(f"import {n}\n" for n in share)
        (root / f"benchpkg/flows{e}.py").write_text(
            f'import flyte\n{imports}\nenv{e} = flyte.TaskEnvironment(name="bench-{e}")\n'
        )
        envs.append(f"benchpkg.flows{e}")
    return envs


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (MiB) of the largest process of one command (``wait4`` reports
    the child's own peak and that of the children it waited for)."""
    with tempfile.TemporaryFile("w+") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            out.seek(0)
            raise SystemExit(f"{cmd[:3]} failed ({proc.returncode}):\n{out.read()}")
    return seconds, usage.ru_maxrss // 1024


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--modules", type=int, default=600)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-loaded-"))
    root, root_all = work / "project", work / "project-all"
    for path in (root, root_all):
        shutil.rmtree(path, ignore_errors=True)
    envs = generate(root, args.modules, "loaded-modules")
    generate(root_all, args.modules, "all")
    tools = work / "tools"
    tools.mkdir(exist_ok=True)
    for tool in ("git", "tar", "gzip", "pigz"):
        found = shutil.which(tool)
        if found and not (tools / tool).exists():
            (tools / tool).symlink_to(found)
    hatch_flyte = str(Path(sys.executable).parent / "hatch-flyte")
    base = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    no_pigz = work / "tools-no-pigz"
    no_pigz.mkdir(exist_ok=True)
    for tool in ("git", "tar", "gzip"):
        if not (no_pigz / tool).exists() and (tools / tool).exists():
            (no_pigz / tool).symlink_to((tools / tool).resolve())
    variants: dict[str, tuple[Callable[[Path], list[str]], dict[str, str]]] = {
        "hatch-flyte bundle": (
            lambda out: [hatch_flyte, "bundle", str(root), "-o", str(out), "--no-cache"],
            {**base, "HATCH_FLYTE_NO_CACHE": "1"},
        ),
        # The same command and project with copy-style "all": what the style itself costs.
        "hatch-flyte, style all": (
            lambda out: [hatch_flyte, "bundle", str(root_all), "-o", str(out), "--no-cache"],
            {**base, "HATCH_FLYTE_NO_CACHE": "1"},
        ),
        "flyte + pigz": (
            lambda out: [sys.executable, "-c", FLYTE, str(root), str(out), ",".join(envs)],
            {**base, "PATH": str(tools)},
        ),
        "flyte, no pigz": (
            lambda out: [sys.executable, "-c", FLYTE, str(root), str(out), ",".join(envs)],
            {**base, "PATH": str(no_pigz)},
        ),
    }
    if not (tools / "pigz").exists():
        del variants["flyte + pigz"]
    results: dict[str, tuple[float, int]] = {}
    names: dict[str, set[str]] = {}
    for label, (command, env) in variants.items():
        best, peak = float("inf"), 0
        for i in range(args.repeat):
            out = work / "out" / f"{label.replace(' ', '_')}-{i}"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            seconds, rss = run(command(out), env)
            best, peak = min(best, seconds), max(peak, rss)
            names.setdefault(label, set()).update(p.name for p in out.glob("fast*.tar.gz"))
        results[label] = (best, peak)
    print(f"project: {args.modules} modules, {ENV_MODULES} environment modules; best of {args.repeat}")
    print(f"{'variant':<22}{'wall s':>9}{'peak RSS MB':>13}{'flyte / ours':>14}")
    ours = results["hatch-flyte bundle"][0]
    for label, (seconds, rss) in results.items():
        print(f"{label:<22}{seconds:>9.2f}{rss:>13}{seconds / ours:>13.2f}x")
    distinct = {n for label, found in names.items() if "style all" not in label for n in found}
    print(f"bundle names agree: {len(distinct) == 1} ({', '.join(sorted(distinct))})")
    return 0 if len(distinct) == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
