"""Image benchmark: the first full-build image of a project against a code-only rebuild, in one run.

Each build is ``hatch-flyte build COPY -t wheel,bundle,image --no-isolation`` in a fresh process (what
a user runs), on a copy of an example project under ``--workdir``, timed by this script:

1. **first build**: the engine's build cache is cold for the project, and the base's Python is
   probed (not taken from hatch-flyte's cache). Images of earlier runs of this
   benchmark are removed (its repository's tags, then the dangling dependency-stage images and the
   other untagged images built on its bases), and the project is built on a *fresh* base: a copy of
   the base image under a new id (``FROM base`` + a label), so no cache entry of any other image on
   this engine (the tests', a user's) can serve a step. The build log must show no cache hit, or the
   result says so. The dependency wheelhouse is warmed beforehand (downloaded once per machine,
   cached by its inputs under ``HATCH_FLYTE_CACHE_DIR``) and not measured: the report says whether
   it was already warm.
2. an unchanged rebuild (for information);
3. **code-only rebuilds**: one task module's body changes before each; the median counts.

Target: the code-only rebuild is at least 5x faster than the first build (PASS/FAIL; ``--check``
exits 1 on FAIL). The engine, the base image and the storage driver set the scale: on the ``vfs``
driver of the test environment every build step (even an ``ENV``) copies the whole root filesystem,
so a step costs seconds, and more when the data root is on a disk rather than a tmpfs (the report
names the data root's filesystem). A code-only rebuild runs two steps (the project's ``COPY`` and
the ``ENV`` naming the image); the first build runs the dependency image's too.

    python benchmarks/bench_image.py [--project weather_pipeline] [--base IMAGE] [--repeat 3]
                                     [--json FILE] [--check] [--keep] [--workdir DIR]

Needs a Docker engine (``DOCKER_HOST``) and a base image with Python; ``--base`` defaults to
``HATCH_FLYTE_TEST_BASE_IMAGE`` from the environment or ``.ci/.docker-env`` (see tests/docker_env.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from _images import (
    CHANGES,
    change_code,
    clear_bench_images,
    engine_facts,
    fresh_base,
    inspect_base_unremembered,
    setting,
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
EXAMPLES = REPO / "example_projects"
DEFAULT_WORKDIR = HERE / ".work" / "image"
BIN = Path(sys.executable).parent
TARGET_RATIO = 5.0
#: A dependency-only image's code-only rebuild (the whole ``-t image`` command), in seconds.
DEPS_TARGET_S = 1.0
EPOCH = "1700000000"
#: Every image this benchmark builds carries this label (through its base) or this repository.
BENCH_LABEL = "io.github.hatch-flyte.bench"
BENCH_BASE_REPO = "hatch-flyte-bench/base"
BENCH_REPO_PREFIX = "hatch-flyte-bench/"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.invalid",
    "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z",
}


# --- environment ---------------------------------------------------------------------------------


def connect() -> Any:
    import docker

    host = setting("DOCKER_HOST")
    client = docker.DockerClient(base_url=host) if host else docker.from_env()
    client.ping()
    return client


# --- engine housekeeping -------------------------------------------------------------------------


# --- the project copy ----------------------------------------------------------------------------


def prepare_project(name: str, workdir: Path, base: str, repo: str, extra: str = "") -> Path:
    target = workdir / name
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(
        EXAMPLES / name.partition("-")[0],
        target,
        ignore=shutil.ignore_patterns("dist", "build", "*.egg-info", "__pycache__"),
    )
    with (target / "pyproject.toml").open("a") as f:
        f.write(f'\n[tool.flyte.image]\nbase = "{base}"\nname = "{repo}"\n{extra}')
    # Its own git repository, as a real project is (and as the bundle needs: inside this checkout,
    # whose .gitignore excludes the work directory, git would report every file as ignored).
    git_env = {**os.environ, **GIT_ENV}
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "bench"]):
        subprocess.run(["git", *cmd], cwd=target, env=git_env, check=True, capture_output=True)
    return target


def warm_wheelhouse(project_dir: Path, base: str) -> dict[str, Any]:
    """Resolve the image's wheelhouse now (downloading it if needed), outside the measurements."""
    from hatch_flyte.image import plan_image
    from hatch_flyte.image.docker import backend
    from hatch_flyte.project import load_project
    from hatch_flyte.wheel import build_wheel

    project = load_project(project_dir)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = build_wheel(project_dir, Path(tmp), isolation=False)
        client = backend.connect()
        info = inspect_base_unremembered(client, base, project.config.image.python)
        info = replace(info, platform=project.config.image.platform or backend.engine_platform(client))
        started, wall = time.perf_counter(), time.time()
        plan = plan_image(project, wheel, project.config.image, info)
        seconds = time.perf_counter() - started
        client.close()
    directory = plan.wheelhouse.directory
    # A wheelhouse is renamed into place when complete: one older than this call was already cached.
    was_warm = directory.stat().st_mtime < wall
    size = sum((directory / n).stat().st_size for n, _ in plan.wheelhouse.files)
    return {
        "directory": str(directory),
        "files": len(plan.wheelhouse.files),
        "mib": size / (1 << 20),
        "was_warm": was_warm,
        "seconds": seconds,
    }


# --- one build -----------------------------------------------------------------------------------


@dataclass
class Run:
    label: str
    total_s: float
    before_engine_s: float
    engine_s: float
    #: Build steps other than FROM: executed, and served from the engine's cache.
    executed: int
    cached: int
    ref: str
    image_id: str
    step_seconds: list[tuple[str, float]] = field(default_factory=list)


def build(project: Path, label: str, env: dict[str, str], targets: str = "wheel,bundle,image") -> Run:
    cmd = [str(BIN / "hatch-flyte"), "build", str(project), "-t", targets]
    cmd += ["--no-isolation", "--json", "-vv"]
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd, cwd=project.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None and proc.stdout is not None
    engine_start = None
    executed = cached = 0
    current = ""
    step_times: list[tuple[str, float]] = []
    log: list[str] = []
    for line in proc.stderr:
        now = time.monotonic() - started
        log.append(line)
        if engine_start is None and line.startswith("info: building image "):
            engine_start = now
        m = re.match(r"info: docker: Step (\d+)/\d+ : (\S+)", line)
        if m:
            current = m.group(2)
            executed += current != "FROM"
            step_times.append((f"{m.group(1)} {current}", now))
        if "---> Using cache" in line and current != "FROM":
            executed -= 1
            cached += 1
    stdout = proc.stdout.read()
    code = proc.wait()
    total = time.monotonic() - started
    if code != 0:
        sys.stderr.write("".join(log[-40:]))
        raise SystemExit(f"{label}: hatch-flyte build failed ({code})")
    image = json.loads(stdout)["image"]
    # Seconds per step: from its "Step" line to the next one (the last one to the process end).
    marks = [*step_times, ("end", total)]
    per_step = [(marks[i][0], marks[i + 1][1] - marks[i][1]) for i in range(len(step_times))]
    start = engine_start if engine_start is not None else total
    return Run(label, total, start, total - start, executed, cached, image["ref"], image["id"], per_step)


INNER = """
import json, sys, time
from pathlib import Path
import docker  # imported before the clock starts, as everything else
from hatch_flyte.image import ProjectMetadata, build_image
from hatch_flyte.project import load_project

project = load_project(Path(sys.argv[1]))
started = time.perf_counter()
result = build_image(project, None, metadata=ProjectMetadata.from_pyproject(project))
print(json.dumps({"seconds": time.perf_counter() - started, "ref": result.ref, "id": result.id}))
"""


def inner_build(project: Path, env: dict[str, str]) -> tuple[float, str, str]:
    """``hatch_flyte.image.build_image`` alone (a fresh process; imports and project load not timed)."""
    proc = subprocess.run(
        [sys.executable, "-c", INNER, str(project)], env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit("the inner build_image call failed")
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    return float(doc["seconds"]), str(doc["ref"]), str(doc["id"])


def dependency_only(
    name: str, workdir: Path, base: str, repo: str, env: dict[str, str], repeat: int
) -> tuple[list[Run], list[float], list[str]]:
    """A dependency-only image (``include-project = false``) of the same project on the same base:
    its first build (``-t image``), then code-only rebuilds of the image target, each timed as the
    whole command and as the inner ``build_image`` call. Checks: the same image every time, no step."""
    project = prepare_project(f"{name}-deps", workdir, base, repo, "include-project = false\n")
    runs = [build(project, "deps-only first build", env, "image")]
    inner: list[float] = []
    checks: list[str] = []
    for n in range(1, repeat + 1):
        change_code(project, 100 + n)
        time.sleep(0.05)
        run = build(project, f"deps-only code-only #{n}", env, "image")
        runs.append(run)
        change_code(project, 200 + n)
        seconds, ref, image_id = inner_build(project, env)
        inner.append(seconds)
        if (run.ref, run.image_id) != (runs[0].ref, runs[0].image_id) or (ref, image_id) != (
            runs[0].ref,
            runs[0].image_id,
        ):
            checks.append(f"FAIL: {run.label}: a code-only change gave another dependency-only image")
        if run.executed or run.cached:
            checks.append(f"FAIL: {run.label}: the engine ran {run.executed + run.cached} build step(s)")
    return runs, inner, checks


# --- report --------------------------------------------------------------------------------------


def row(run: Run) -> str:
    return (
        f"{run.label:<28}{run.total_s:>9.1f}{run.before_engine_s:>10.1f}{run.engine_s:>10.1f}"
        f"{run.executed:>8d}{run.cached:>8d}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", default="weather_pipeline", choices=sorted(CHANGES))
    parser.add_argument("--base", default=None, help="base image (default: HATCH_FLYTE_TEST_BASE_IMAGE)")
    parser.add_argument("--repeat", type=int, default=3, help="code-only rebuilds (median taken)")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--json", type=Path, help="write the results as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 when the target is missed")
    parser.add_argument("--keep", action="store_true", help="keep the images (default: remove them)")
    parser.add_argument(
        "--dependency-only",
        action="store_true",
        help="also a dependency-only image (include-project = false): its code-only rebuild (target < 1 s)",
    )
    args = parser.parse_args(argv)

    base = args.base or setting("HATCH_FLYTE_TEST_BASE_IMAGE")
    if not base:
        raise SystemExit("no base image: pass --base or set HATCH_FLYTE_TEST_BASE_IMAGE (.ci/docker-env.sh)")
    docker_host = setting("DOCKER_HOST")
    env = {**os.environ, "SOURCE_DATE_EPOCH": EPOCH, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    # As installed: modules come with their bytecode (the first build writes it, under the work
    # directory), not compiled again by every command as with PYTHONDONTWRITEBYTECODE.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(args.workdir.resolve() / "pycache")
    if docker_host:
        env["DOCKER_HOST"] = docker_host
        os.environ["DOCKER_HOST"] = docker_host  # for the in-process wheelhouse warm-up
    os.environ["SOURCE_DATE_EPOCH"] = EPOCH
    client = connect()
    run_id = uuid.uuid4().hex[:12]
    repo = f"{BENCH_REPO_PREFIX}{args.project.replace('_', '-')}"
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)

    print(f"hatch-flyte image benchmark: {args.project} on {base}")
    print(
        f"engine: {engine_facts(client)}; Python {platform.python_version()}; load {os.getloadavg()[0]:.2f}"
    )
    tagged, built = clear_bench_images(client, repo, BENCH_LABEL, BENCH_BASE_REPO)
    removed = tagged + built
    print(f"engine cache: removed {removed} image(s) left by earlier runs of this benchmark")
    bench_base = fresh_base(client, base, run_id, BENCH_LABEL, BENCH_BASE_REPO)
    base_id = client.images.get(bench_base).id
    print(f"engine cache: cold for this run: fresh base {bench_base} (id {base_id[:19]})")
    project = prepare_project(args.project, workdir, bench_base, repo)

    warm = warm_wheelhouse(project, bench_base)
    state = (
        "warm (already cached)" if warm["was_warm"] else f"was cold: downloaded now in {warm['seconds']:.1f}s"
    )
    print(f"wheelhouse: {state}, not measured: {warm['files']} files, {warm['mib']:.1f} MiB")
    print(f"  in {warm['directory']}")

    runs: list[Run] = []
    try:
        first = build(project, "first build (cold cache)", env)
        runs.append(first)
        runs.append(build(project, "unchanged rebuild", env))
        code_only = []
        for n in range(1, args.repeat + 1):
            change_code(project, n)
            time.sleep(0.05)
            code_only.append(build(project, f"code-only rebuild #{n}", env))
        runs += code_only

        print()
        print(f"{'build':<28}{'total s':>9}{'before s':>10}{'engine s':>10}{'run':>8}{'cached':>8}")
        for run in runs:
            print(row(run))
        median = statistics.median(r.total_s for r in code_only)
        ratio = first.total_s / median
        print(f"{'code-only rebuild (median)':<28}{median:>9.1f}")
        print()
        print("before s: wheel, bundle, base probe, wheelhouse hashing; engine s: the engine's build and")
        print("tagging; run/cached: build steps (FROM aside) executed / served from the engine's cache.")
        print("seconds per step, first build:")
        print("  " + ", ".join(f"{name} {s:.1f}" for name, s in first.step_seconds))
        print(f"seconds per step, {code_only[-1].label}:")
        print("  " + ", ".join(f"{name} {s:.1f}" for name, s in code_only[-1].step_seconds))

        checks = []
        if first.cached:
            checks.append(f"WARN: the first build used the cache for {first.cached} step(s): not cold")
        if runs[1].executed or runs[1].image_id != first.image_id:
            checks.append("FAIL: the unchanged rebuild did not reuse the first build's image")
        old_layers = client.images.get(first.image_id).attrs["RootFS"]["Layers"]
        new_layers = client.images.get(code_only[-1].image_id).attrs["RootFS"]["Layers"]
        pairs = zip(old_layers, new_layers, strict=False)
        shared = next((i for i, (a, b) in enumerate(pairs) if a != b), min(len(old_layers), len(new_layers)))
        print(
            f"layers: code-only rebuild shares {shared} of {len(new_layers)} layers with the first build "
            f"(the project's own {len(new_layers) - shared} differ)"
        )
        fewest = min(r.executed for r in code_only)
        for r in code_only:
            if r.executed > fewest:
                checks.append(
                    f"WARN: {r.label} executed {r.executed} steps, not {fewest}: cached images went away "
                    "meanwhile (another process on this engine?)"
                )
        if len({r.ref for r in code_only} | {first.ref}) != len(code_only) + 1:
            checks.append("FAIL: a code-only change did not change the content tag")
        for line in checks:
            print(line)
        verdict = "PASS" if ratio >= TARGET_RATIO else "FAIL"
        print()
        print(
            f"first build {first.total_s:.1f}s / code-only rebuild {median:.1f}s (median of "
            f"{len(code_only)}) = {ratio:.1f}x; target >= {TARGET_RATIO:.0f}x: {verdict}"
        )
        deps: dict[str, Any] = {}
        if args.dependency_only:
            deps_runs, inner, deps_checks = dependency_only(
                args.project, workdir, bench_base, f"{repo}-deps", env, args.repeat
            )
            checks += deps_checks
            for line in deps_checks:
                print(line)
            whole = statistics.median(r.total_s for r in deps_runs[1:])
            inner_s = statistics.median(inner)
            deps_verdict = "PASS" if whole < DEPS_TARGET_S else "FAIL"
            print()
            print("dependency-only image (include-project = false), `hatch-flyte build -t image`:")
            for run in deps_runs:
                print(row(run))
            print(
                f"code-only rebuild: whole command {whole:.2f}s, inner build_image {inner_s:.3f}s "
                f"(medians of {len(inner)}); full image's code-only rebuild {median:.1f}s in this run: "
                f"{median / whole:.0f}x (whole command), {median / inner_s:.0f}x (inner call)"
            )
            print(
                f"target: dependency-only code-only rebuild < {DEPS_TARGET_S:.0f} s (whole command): "
                f"{deps_verdict}"
            )
            if deps_verdict == "FAIL":
                checks.append("FAIL: dependency-only code-only rebuild over the target")
            deps = {
                "runs": [asdict(r) for r in deps_runs],
                "code_only_whole_s": whole,
                "code_only_inner_s": inner_s,
                "inner_s": inner,
                "target_s": DEPS_TARGET_S,
                "verdict": deps_verdict,
            }
        print(f"load average at the end: {os.getloadavg()[0]:.2f} (other processes make the numbers noisy)")
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "project": args.project,
                        "base": base,
                        "engine": engine_facts(client),
                        "wheelhouse": warm,
                        "runs": [asdict(r) for r in runs],
                        "code_only_median_s": median,
                        "ratio": ratio,
                        "target": TARGET_RATIO,
                        "verdict": verdict,
                        "checks": checks,
                        "dependency_only": deps,
                    },
                    indent=2,
                )
            )
        failed = verdict == "FAIL" or any(c.startswith("FAIL") for c in checks)
        return 1 if args.check and failed else 0
    finally:
        if not args.keep:
            clear_bench_images(client, f"{repo}-deps", BENCH_LABEL, BENCH_BASE_REPO)
            clear_bench_images(client, repo, BENCH_LABEL, BENCH_BASE_REPO)
        client.close()


if __name__ == "__main__":
    sys.exit(main())
