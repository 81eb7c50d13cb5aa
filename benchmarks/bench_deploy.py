"""Deploy benchmark: ``hatch-flyte deploy`` of a built project against ``flyte deploy`` of the same
project, both against the same fake control plane (loopback, flyte's real protocol), in one run.

The project is the ``py100`` tree of ``bench_bundle.py`` (5,000 files, 100 MiB of Python source in
a git repository; ``--quick``: 300 files, 6 MiB) made deployable: a clean ``acme/__init__.py`` and
an ``acme/flows.py`` with two environments and four tasks. It is built once with
``hatch-flyte build -t bundle`` (not measured: that is the CI build). Then, each in a fresh process
with a fresh ``HOME`` (flyte skips uploads it cached under ``~/.flyte``) and a fresh object store:

* ``hatch-flyte deploy``: verify the manifest, upload the built bundle as it is, register;
* ``flyte deploy --copy-style all``: walk, tar and compress the whole package again (pigz when it
  is on PATH), upload, register: the same code as hatch-flyte's bundle;
* ``flyte deploy`` (default ``loaded_modules``): only the modules the environments import, which
  leaves the rest of the package (and any data file) out of the bundle; shown for reference.

Times are whole commands (interpreter start and imports included), best of N: wall time (the
target) and CPU time (user + system of the command and its children, pigz included), which the
other processes on a shared machine disturb less.

    python benchmarks/bench_deploy.py [--quick] [--repeat N] [--json FILE] [--check] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_bundle  # noqa: E402

FAKE = HERE.parent / "tests" / "fake_control_plane.py"
BIN = Path(sys.executable).parent
IMAGE = "127.0.0.1:5000/acme:0.1.0"
TARGET = 5.0

FLOWS = '''\
"""Flyte environments of the benchmark project."""

import flyte

base = flyte.TaskEnvironment(name="acme_base")
flows = flyte.TaskEnvironment(name="acme_flows", depends_on=[base])


@base.task
def clean(text: str) -> str:
    return text.strip()


@base.task
def count(text: str) -> int:
    return len(text.split())


@flows.task
async def report(text: str) -> str:
    return f"{count(clean(text))} words"


@flows.task
async def echo(text: str) -> str:
    return text
'''


def make_project(workdir: Path, tree: bench_bundle.Tree) -> Path:
    """A copy of the tree with a Flyte entry point, committed (made once per tree generation)."""
    project = workdir / "deploy" / tree.spec.name
    stamp = project.parent / f"{tree.spec.name}.stamp"
    if stamp.is_file() and stamp.read_text() == str(tree.generated_at) and project.is_dir():
        return project
    print(f"preparing the deploy project {project} ...", flush=True)
    shutil.rmtree(project, ignore_errors=True)
    shutil.copytree(tree.root, project, symlinks=True)
    # The synthetic __init__ is a slice of stdlib source: importing the package must work.
    (project / "acme" / "__init__.py").write_text('"""acme."""\n')
    (project / "acme" / "flows.py").write_text(FLOWS)
    # The other modules are slices of stdlib source (not all valid Python): name the environments.
    with (project / "pyproject.toml").open("a") as f:
        f.write('\n[tool.flyte]\nenvironments = ["acme.flows:base", "acme.flows:flows"]\n')
    bench_bundle._git(project, "add", "-A")
    bench_bundle._git(project, "commit", "-q", "-m", "flyte entry point")
    stamp.write_text(str(tree.generated_at))
    return project


class ControlPlane:
    def __init__(self, storage: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(FAKE), str(storage)], stdout=subprocess.PIPE, text=True, cwd=FAKE.parent
        )
        assert self.proc.stdout is not None
        self.endpoint = self.proc.stdout.readline().strip()
        if not self.endpoint.startswith("dns:///"):
            raise SystemExit("the fake control plane did not start")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def timed(cmd: list[str], cwd: Path, home: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system, the command and its children) of one run."""
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env={**env, "HOME": str(home)}, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} ... failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the small tree, one run each")
    parser.add_argument("--repeat", type=int, default=None, help="runs per variant, best taken (default 3)")
    parser.add_argument("--json", dest="json_file", help="save the measurements to this JSON file")
    parser.add_argument("--check", action="store_true", help=f"exit 1 below {TARGET:.0f}x")
    parser.add_argument("--workdir", type=Path, default=bench_bundle.DEFAULT_WORKDIR)
    args = parser.parse_args(argv)
    repeat = args.repeat or (1 if args.quick else 3)
    workdir: Path = args.workdir.resolve()
    spec = (bench_bundle.QUICK_TREES if args.quick else bench_bundle.FULL_TREES)["py100"]

    tree = bench_bundle.ensure_tree(workdir, spec)
    project = make_project(workdir, tree)
    scratch = workdir / "deploy-scratch"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HATCH_FLYTE_", "FLYTE"))}
    dist = scratch / "dist"
    subprocess.run(
        [str(BIN / "hatch-flyte"), "build", str(project), "-t", "bundle", "-o", str(dist)],
        check=True, env=env, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    manifest = json.loads((dist / "flyte-manifest.json").read_text())
    print(f"built {manifest['bundle']['name']}: {manifest['bundle']['files']} files, "
          f"{manifest['bundle']['size'] / 2**20:.1f} MiB")  # fmt: skip

    plane = ControlPlane(scratch / "store")
    connect = ["--endpoint", plane.endpoint, "--insecure", "--org", "bench"]
    where = ["--project", "bench", "--domain", "dev", "--image", IMAGE]
    flyte = [str(BIN / "flyte"), *connect, "deploy", *where, "--root-dir", str(project)]
    variants = {
        "hatch-flyte deploy": [str(BIN / "hatch-flyte"), "deploy", str(dist), *connect, *where],
        "flyte deploy --copy-style all": [*flyte, "--copy-style", "all", "--all", "acme/flows.py"],
        "flyte deploy (loaded_modules)": [*flyte, "--all", "acme/flows.py"],
    }
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    try:
        for _ in range(repeat):
            for name, cmd in variants.items():
                shutil.rmtree(scratch / "store", ignore_errors=True)
                results[name].append(timed(cmd, project, scratch / "home", env))
    finally:
        plane.close()
        shutil.rmtree(scratch, ignore_errors=True)

    best = {name: min(w for w, _ in runs) for name, runs in results.items()}
    cpu = {name: min(c for _, c in runs) for name, runs in results.items()}
    ours = best["hatch-flyte deploy"]
    print(f"\n{spec.name}: {tree.files} files; whole commands, best of {repeat}; pigz on PATH: "
          f"{'yes' if shutil.which('pigz') else 'no'}")  # fmt: skip
    print(f"{'variant':34} {'wall s':>7} {'vs ours':>8} {'cpu s':>7} {'vs ours':>8}")
    for name, seconds in best.items():
        mine = cpu["hatch-flyte deploy"]
        print(f"{name:34} {seconds:7.2f} {seconds / ours:7.1f}x {cpu[name]:7.2f} {cpu[name] / mine:7.1f}x")
    ratio = best["flyte deploy --copy-style all"] / ours
    ok = ratio >= TARGET
    print(f"\ntarget: hatch-flyte deploy >= {TARGET:.0f}x faster than flyte deploy --copy-style all: "
          f"{ratio:.1f}x {'ok' if ok else 'MISSED'}")  # fmt: skip
    if args.json_file:
        report: dict[str, Any] = {"tree": spec.name, "repeat": repeat, "seconds": results, "ratio": ratio}
        Path(args.json_file).write_text(json.dumps(report, indent=1, sort_keys=True))
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
