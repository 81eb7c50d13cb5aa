"""Image benchmark: the daemonless ``oci`` backend against the ``docker`` backend, in one run.

On a temporary copy of an example project (one copy per backend, the same code), this times
:func:`hatch_flyte.image.build_image` alone: the project's wheel is built beforehand for every build
(``hatch_flyte.wheel.build_wheel``, no isolation) and not measured. Each build runs in a fresh
interpreter that imports everything first, so imports are not measured either. In order:

1. **docker, first build**: the engine's build cache cold for the project. The images of earlier
   runs are removed first: the benchmark's repository (``hatch-flyte-bench-oci/<project>``) and
   everything built on a benchmark base, the dangling dependency stages included. The build then
   uses a *fresh* base: the test base under a new image id (``FROM base`` + a label: the same
   layers), because the classic builder keys its cache on the parent image id and other images on
   the engine (the tests' builds of the same example) share every dependency step with this one;
   removing those is not this benchmark's business. Cached steps are counted (a ``WARN`` if any).
   The base image is in the engine (no pull).
2. **docker, code-only rebuild**: after a change of one task module's body.
3. **oci, first build**: its layer cache cold for the project: ``HATCH_FLYTE_CACHE_DIR`` is a fresh
   directory, so the base's blobs are pulled from the loopback registry and the dependency layer is
   written. ``DOCKER_HOST`` points at a socket that does not exist: no engine is involved.
4. **oci, code-only rebuild**: the same change, the same cache directory.

Both backends start with the same warm dependency wheelhouse: it is resolved (downloaded once per
machine) into the default cache before measuring, and its ``wheelhouses/`` directory is copied into
the oci backend's fresh cache directory.

Target: the oci code-only rebuild at least 3x faster than the docker backend's (PASS/FAIL;
``--check`` exits 1 on FAIL). The oci first build against the docker first build is printed too.

    python benchmarks/bench_image_oci.py [--project weather_pipeline] [--repeat N] [--json FILE]
                                         [--check] [--keep] [--workdir DIR]

Needs a Docker engine (``DOCKER_HOST``), the test base image in it and in the loopback registry
(``HATCH_FLYTE_TEST_BASE_IMAGE``, ``HATCH_FLYTE_TEST_REGISTRY`` from the environment or
``.ci/.docker-env``; the base is pushed to the registry when missing there). Nothing else is pushed.
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
import urllib.error
import urllib.request
import uuid
from dataclasses import asdict, dataclass
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
TARGET_RATIO = 3.0
EPOCH = "1700000000"
BENCH_REPO_PREFIX = "hatch-flyte-bench-oci/"
#: The docker backend's base: the test base under a new id, labelled, in this repository.
BENCH_BASE_REPO = "hatch-flyte-bench-oci/base"
BENCH_LABEL = "io.github.hatch-flyte.bench-oci"
MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
)


# --- environment ---------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    from hatch_flyte.cache import cache_dir

    cache = cache_dir()
    if cache is None:
        raise SystemExit("HATCH_FLYTE_NO_CACHE is set: the benchmark needs the cache (unset it)")
    return cache


def registry_has(host: str, repository: str, tag: str) -> bool:
    request = urllib.request.Request(f"http://{host}/v2/{repository}/manifests/{tag}", method="HEAD")
    request.add_header("Accept", MANIFEST_TYPES)
    try:
        with urllib.request.urlopen(request, timeout=10):
            return True
    except urllib.error.HTTPError:
        return False


def ensure_registry_base(client: Any, base: str, registry: str) -> str:
    """The base image in the loopback registry (pushed there from the engine when missing)."""
    name, _, tag = base.rpartition(":")
    if not registry_has(registry, name, tag):
        target = f"{registry}/{name}"
        client.images.get(base).tag(target, tag)
        for chunk in client.images.push(target, tag=tag, stream=True, decode=True):
            if "error" in chunk:
                raise SystemExit(f"cannot push the base to {registry}: {chunk['error']}")
    return f"{registry}/{base}"


# --- engine housekeeping -------------------------------------------------------------------------


# --- the project copies --------------------------------------------------------------------------


def prepare_project(name: str, dest: Path, backend: str, base: str, repo: str, extra: str = "") -> Path:
    target = dest / name
    shutil.copytree(
        EXAMPLES / name, target, ignore=shutil.ignore_patterns("dist", "build", "*.egg-info", "__pycache__")
    )
    with (target / "pyproject.toml").open("a") as f:
        f.write(f'\n[tool.flyte.image]\nbackend = "{backend}"\nbase = "{base}"\nname = "{repo}"\n{extra}')
    return target


def make_wheel(project: Path) -> Path:
    """The project's wheel in ``dist/`` (not measured; the backend's output goes to /dev/null)."""
    from hatch_flyte.wheel import build_wheel

    dist = project / "dist"
    dist.mkdir(exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "wb") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            return build_wheel(project, dist, isolation=False)
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def warm_wheelhouse(project_dir: Path, wheel: Path, client: Any, base: str) -> dict[str, Any]:
    """Resolve the image's wheelhouse into the default cache now (downloading it if needed)."""
    from dataclasses import replace

    from hatch_flyte.image import plan_image
    from hatch_flyte.image.docker import backend as docker_backend
    from hatch_flyte.project import load_project

    project = load_project(project_dir)
    info = inspect_base_unremembered(client, base, project.config.image.python)
    info = replace(info, platform=project.config.image.platform or docker_backend.engine_platform(client))
    started, wall = time.perf_counter(), time.time()
    plan = plan_image(project, wheel, project.config.image, info)
    seconds = time.perf_counter() - started
    directory = plan.wheelhouse.directory
    size = sum((directory / n).stat().st_size for n, _ in plan.wheelhouse.files)
    return {
        "directory": str(directory),
        "files": len(plan.wheelhouse.files),
        "mib": size / (1 << 20),
        "was_warm": directory.stat().st_mtime < wall,  # renamed into place when complete
        "seconds": seconds,
        "python": f"{info.python_version[0]}.{info.python_version[1]}",
        "platform": info.platform,
    }


# --- one measured build (in a fresh interpreter) ---------------------------------------------------


@dataclass
class Run:
    label: str
    backend: str
    seconds: float
    ref: str
    image_id: str
    digest: str | None
    layers: list[str]
    #: docker: build steps (FROM aside) executed / served from the engine's cache.
    executed: int = 0
    cached: int = 0
    #: oci: base blobs pulled from the registry; whether the dependency layer came from the cache.
    pulled: int = 0
    deps_layer_cached: bool = False
    archive_mib: float = 0.0
    #: oci: the layout and archive of an earlier build were found up to date (nothing written).
    reused: bool = False


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Child side: import everything, then time ``build_image`` alone."""
    import logging

    import docker  # noqa: F401  (imported now: not measured)
    import installer  # noqa: F401

    from hatch_flyte.image import build_image
    from hatch_flyte.image.docker import backend as docker_backend
    from hatch_flyte.image.oci import builder  # noqa: F401
    from hatch_flyte.project import load_project

    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            # docker_backend logs every line of the engine at DEBUG and the Step lines again at INFO
            if not (record.levelno > logging.DEBUG and record.getMessage().startswith("docker: ")):
                lines.append(record.getMessage())

    logger = logging.getLogger("hatch_flyte")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(Collect())
    project = load_project(Path(spec["project"]))
    wheel = Path(spec["wheel"])
    started = time.perf_counter()
    result = build_image(project, wheel)
    seconds = time.perf_counter() - started
    out: dict[str, Any] = {"seconds": seconds, "ref": result.ref, "id": result.id, "digest": result.digest}
    if result.backend == "oci":
        assert result.archive is not None
        layout = Path(result.archive).with_suffix("")
        manifest = json.loads((layout / "blobs" / "sha256" / str(result.digest)[7:]).read_bytes())
        out["layers"] = [d["digest"] for d in manifest["layers"]]
        out["archive_mib"] = Path(result.archive).stat().st_size / (1 << 20)
        out["pulled"] = sum(line.startswith("pulling sha256:") for line in lines)
        out["deps_layer_cached"] = any(
            line.startswith("dependency layer") and line.endswith("from the cache") for line in lines
        )
        out["reused"] = any(line.endswith("nothing to build") for line in lines)
        return out
    client = docker_backend.connect()
    out["layers"] = client.images.get(result.id).attrs["RootFS"]["Layers"]
    client.close()
    executed = cached = 0
    step = ""
    for line in lines:
        text = line.removeprefix("docker: ")
        m = re.match(r"Step \d+/\d+ : (\S+)", text)
        if m:
            step = m.group(1)
            executed += step != "FROM"
        elif "---> Using cache" in text and step != "FROM":
            executed -= 1
            cached += 1
    out.update(executed=executed, cached=cached)
    return out


def run_build(label: str, backend: str, project: Path, env: dict[str, str]) -> Run:
    wheel = make_wheel(project)
    spec = json.dumps({"project": str(project), "wheel": str(wheel)})
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--measure", spec],
        env=env, capture_output=True, text=True, cwd=project,
    )  # fmt: skip
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-6000:])
        raise SystemExit(f"{label}: the build failed ({proc.returncode})")
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    return Run(
        label=label,
        backend=backend,
        seconds=doc["seconds"],
        ref=doc["ref"],
        image_id=doc["id"],
        digest=doc["digest"],
        layers=doc["layers"],
        executed=doc.get("executed", 0),
        cached=doc.get("cached", 0),
        pulled=doc.get("pulled", 0),
        deps_layer_cached=doc.get("deps_layer_cached", False),
        archive_mib=doc.get("archive_mib", 0.0),
        reused=doc.get("reused", False),
    )


# --- report --------------------------------------------------------------------------------------


def detail(run: Run) -> str:
    if run.backend == "docker":
        return f"{run.executed} steps run, {run.cached} from the engine's cache"
    if run.reused:
        return "layout and archive up to date: nothing written"
    deps = "from the layer cache" if run.deps_layer_cached else "written"
    return f"{run.pulled} base blobs pulled, dependency layer {deps}, archive {run.archive_mib:.0f} MiB"


def shared_layers(a: list[str], b: list[str]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", default="weather_pipeline", choices=sorted(CHANGES))
    parser.add_argument("--repeat", type=int, default=1, help="code-only rebuilds per backend (median)")
    parser.add_argument("--workdir", type=Path, help="where the project copies go (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="write the results as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 when the target is missed")
    parser.add_argument("--keep", action="store_true", help="keep the images and the work directory")
    parser.add_argument(
        "--dependency-only",
        action="store_true",
        help="also a dependency-only oci image (include-project = false): its code-only rebuild",
    )
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # child mode: one measured build
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(json.loads(args.measure))))
        return 0

    base = setting("HATCH_FLYTE_TEST_BASE_IMAGE")
    registry = setting("HATCH_FLYTE_TEST_REGISTRY")
    docker_host = setting("DOCKER_HOST")
    if not base or not registry:
        raise SystemExit(
            "needs HATCH_FLYTE_TEST_BASE_IMAGE and HATCH_FLYTE_TEST_REGISTRY (.ci/docker-env.sh writes them)"
        )
    if docker_host:
        os.environ["DOCKER_HOST"] = docker_host
    os.environ["SOURCE_DATE_EPOCH"] = EPOCH
    import docker

    client = docker.from_env()
    client.ping()
    repo = f"{BENCH_REPO_PREFIX}{args.project.replace('_', '-')}"
    if args.workdir:
        workdir = args.workdir.resolve()
        if workdir.exists():
            shutil.rmtree(workdir)
        workdir.mkdir(parents=True)
    else:
        workdir = Path(tempfile.mkdtemp(prefix="hatch-flyte-bench-oci-"))
    registry_base = ensure_registry_base(client, base, registry)
    run_id = uuid.uuid4().hex[:12]

    print(f"hatch-flyte image benchmark, oci against docker backend: {args.project}")
    print(f"engine: {engine_facts(client)}; Python {platform.python_version()}")
    tagged, built = clear_bench_images(client, repo, BENCH_LABEL, BENCH_BASE_REPO)
    bench_base = fresh_base(client, base, run_id, BENCH_LABEL, BENCH_BASE_REPO)
    base_id = client.images.get(bench_base).id
    print(
        f"engine cache: removed {tagged} image(s) of {repo} and {built} image(s) built on earlier runs' "
        "bases (dangling dependency stages included); other images on the engine are left alone"
    )
    print(f"base, docker: {bench_base} = {base} under a new id ({base_id[:19]}: the same layers, one label),")
    print("  so that no cached step of another image on this engine serves the first build")
    print(f"base, oci: {registry_base} (the same layers, in the loopback registry, plain HTTP)")
    print("timed: hatch_flyte.image.build_image only, in a fresh process after its imports; the wheel is")
    print("built before every build (hatch_flyte.wheel.build_wheel, no isolation) and not timed")
    print(f"load average at the start: {os.getloadavg()[0]:.2f}")

    docker_project = prepare_project(args.project, workdir / "docker", "docker", bench_base, repo)
    oci_project = prepare_project(args.project, workdir / "oci", "oci", registry_base, repo)
    base_env = {**os.environ, "SOURCE_DATE_EPOCH": EPOCH, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    default_cache = default_cache_dir()

    # The same warm wheelhouse for both: resolved into the default cache, copied for the oci backend.
    warm = warm_wheelhouse(docker_project, make_wheel(docker_project), client, bench_base)
    state = "already warm" if warm["was_warm"] else f"was cold, downloaded now in {warm['seconds']:.1f}s"
    print(
        f"wheelhouse (Python {warm['python']}, {warm['platform']}): {state}, not timed: {warm['files']} "
        f"files, {warm['mib']:.1f} MiB"
    )
    oci_cache = workdir / "oci-cache"
    shutil.copytree(default_cache / "wheelhouses", oci_cache / "wheelhouses")
    print(f"  docker backend: the default cache {default_cache}")
    print(f"  oci backend: a fresh HATCH_FLYTE_CACHE_DIR {oci_cache}, its wheelhouses/ copied from there")

    docker_env = {**base_env}
    oci_env = {
        **base_env,
        "HATCH_FLYTE_CACHE_DIR": str(oci_cache),
        "DOCKER_HOST": f"unix://{workdir}/no-docker-here.sock",
    }

    runs: list[Run] = []
    try:
        d_first = run_build("docker first build", "docker", docker_project, docker_env)
        runs.append(d_first)
        d_code = []
        for n in range(1, args.repeat + 1):
            change_code(docker_project, n)
            d_code.append(run_build(f"docker code-only rebuild #{n}", "docker", docker_project, docker_env))
        runs += d_code
        o_first = run_build("oci first build", "oci", oci_project, oci_env)
        runs.append(o_first)
        o_code = []
        for n in range(1, args.repeat + 1):
            change_code(oci_project, n)
            o_code.append(run_build(f"oci code-only rebuild #{n}", "oci", oci_project, oci_env))
        runs += o_code

        print()
        print(f"{'build':<30}{'seconds':>9}  details")
        for run in runs:
            print(f"{run.label:<30}{run.seconds:>9.2f}  {detail(run)}")
        d_med = statistics.median(r.seconds for r in d_code)
        o_med = statistics.median(r.seconds for r in o_code)
        if args.repeat > 1:
            print(f"{'docker code-only (median)':<30}{d_med:>9.2f}")
            print(f"{'oci code-only (median)':<30}{o_med:>9.2f}")
        print()
        print("warm/cold: docker first build: base in the engine, wheelhouse warm, engine build cache cold")
        print("for the project; oci first build: wheelhouse warm, base blobs and dependency layer cold")
        print("(fresh cache dir), no engine. Code-only rebuilds: everything warm but the project's code.")
        for first, rebuilt in ((d_first, d_code[-1]), (o_first, o_code[-1])):
            same = shared_layers(first.layers, rebuilt.layers)
            print(
                f"layers ({first.backend}): the code-only rebuild shares {same} of {len(rebuilt.layers)} "
                f"layers with the first build"
            )

        checks = []
        if d_first.cached:
            checks.append(
                f"WARN: the docker first build took {d_first.cached} step(s) from the engine's cache: "
                "not cold"
            )
        if o_first.deps_layer_cached or not o_first.pulled:
            checks.append("WARN: the oci first build was not cold (cached dependency layer or no pull)")
        if not all(r.deps_layer_cached and not r.pulled for r in o_code):
            checks.append("FAIL: an oci code-only rebuild did not reuse the cached base and dependency layer")
        for first, code in ((d_first, d_code), (o_first, o_code)):
            if len({r.ref for r in code} | {first.ref}) != len(code) + 1:
                checks.append(f"FAIL: {first.backend}: a code-only change did not change the content tag")
        for line in checks:
            print(line)

        deps: dict[str, Any] = {}
        if args.dependency_only:
            deps_project = prepare_project(
                args.project, workdir / "oci-deps", "oci", registry_base, f"{repo}-deps",
                "include-project = false\n",
            )  # fmt: skip
            deps_runs = [run_build("oci deps-only first build", "oci", deps_project, oci_env)]
            for n in range(1, args.repeat + 1):
                change_code(deps_project, n)
                deps_runs.append(run_build(f"oci deps-only code-only #{n}", "oci", deps_project, oci_env))
            runs += deps_runs
            print()
            for run in deps_runs:
                print(f"{run.label:<30}{run.seconds:>9.2f}  {detail(run)}")
            deps_med = statistics.median(r.seconds for r in deps_runs[1:])
            print(
                f"dependency-only code-only rebuild (oci, build_image): {deps_med:.3f}s; full oci image "
                f"{o_med:.2f}s in this run: {o_med / deps_med:.0f}x"
            )
            if not all(r.reused and r.digest == deps_runs[0].digest for r in deps_runs[1:]):
                checks.append("FAIL: an oci dependency-only code-only rebuild wrote a new image")
                print(checks[-1])
            deps = {"code_only_s": deps_med, "runs": [asdict(r) for r in deps_runs]}

        code_ratio = d_med / o_med
        first_ratio = d_first.seconds / o_first.seconds
        verdict = "PASS" if code_ratio >= TARGET_RATIO else "FAIL"
        print()
        print(
            f"first build: docker {d_first.seconds:.2f}s / oci {o_first.seconds:.2f}s = {first_ratio:.1f}x "
            f"({'oci faster' if first_ratio >= 1 else 'oci slower'})"
        )
        print(
            f"per backend: first / code-only = docker {d_first.seconds / d_med:.1f}x, "
            f"oci {o_first.seconds / o_med:.1f}x"
        )
        print(
            f"code-only rebuild: docker {d_med:.2f}s / oci {o_med:.2f}s = {code_ratio:.1f}x; "
            f"target >= {TARGET_RATIO:.0f}x: {verdict}"
        )
        print(f"load average at the end: {os.getloadavg()[0]:.2f} (other processes make the numbers noisy)")
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "project": args.project,
                        "base": {"docker": base, "oci": registry_base},
                        "engine": engine_facts(client),
                        "wheelhouse": warm,
                        "runs": [asdict(r) for r in runs],
                        "docker_code_only_s": d_med,
                        "oci_code_only_s": o_med,
                        "code_only_ratio": code_ratio,
                        "first_build_ratio": first_ratio,
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
            clear_bench_images(client, repo, BENCH_LABEL, BENCH_BASE_REPO)
            shutil.rmtree(workdir, ignore_errors=True)
        client.close()


if __name__ == "__main__":
    sys.exit(main())
