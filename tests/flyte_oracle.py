"""The real flyte as a test oracle: build code bundles with flyte 2.12 itself, in a subprocess.

flyte compresses with ``pigz`` when it is on PATH and with :mod:`gzip` otherwise, so the oracle
runs with a PATH that holds only the tools it needs (links to ``git``, ``tar`` and ``gzip``),
which is the setup hatch-flyte's ``compression="compatible"`` promises to reproduce byte for byte.

One subprocess builds any number of bundles (importing flyte costs a second or two).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

#: Tools the oracle and the runtime extraction may call: git (GitIgnore), tar and gzip (``tar -x``
#: of a .tar.gz). Never pigz.
TOOLS = ("git", "tar", "gzip")

#: For the git commands that make the trees handed to the oracle: none of the caller's ``GIT_*``
#: variables and no global or system config, so that the machine's git setup (hooks, signing,
#: excludes) cannot change what a tree tracks.
GIT_ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}

_SCRIPT = r"""
import asyncio
import json
import pathlib
import sys

from flyte._code_bundle.bundle import build_code_bundle

jobs = json.loads(pathlib.Path(sys.argv[1]).read_text())
results = []


async def run():
    for job in jobs:
        root = pathlib.Path(job["root"])
        out = pathlib.Path(job["outdir"])
        out.mkdir(parents=True, exist_ok=True)
        try:
            cb = await build_code_bundle(root, dryrun=True, copy_bundle_to=out, copy_style="all")
        except Exception as e:
            results.append({"error": f"{type(e).__name__}: {e}"})
            continue
        results.append(
            {
                "path": cb.tgz,
                "files": [pathlib.PurePosixPath(f).relative_to(root).as_posix() for f in cb.files],
                "computed_version": cb.computed_version,
            }
        )


asyncio.run(run())
pathlib.Path(sys.argv[2]).write_text(json.dumps(results))
"""


@dataclass(frozen=True)
class FlyteBundle:
    """What flyte produced for one root (``error`` is set instead when flyte raised)."""

    path: Path | None
    files: tuple[str, ...]
    computed_version: str | None
    error: str | None = None

    @property
    def name(self) -> str:
        assert self.path is not None, self.error
        return self.path.name

    def read_bytes(self) -> bytes:
        assert self.path is not None, self.error
        return self.path.read_bytes()

    def tar_bytes(self) -> bytes:
        return gzip.decompress(self.read_bytes())


def tools_dir(where: Path, tools: Sequence[str] = TOOLS) -> Path:
    """A directory of links to ``tools`` only (default :data:`TOOLS`), to use as the whole PATH."""
    where.mkdir(parents=True, exist_ok=True)
    for tool in tools:
        found = shutil.which(tool)
        if found is None:
            raise RuntimeError(f"{tool} is needed by the compatibility tests but is not on PATH")
        link = where / tool
        if not link.exists():
            link.symlink_to(found)
    assert shutil.which("pigz", path=str(where)) is None
    return where


def oracle_env(tools: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The current environment with PATH replaced by ``tools`` (no pigz) and no PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("PATH", "PYTHONPATH")}
    env["PATH"] = str(tools)
    env.update(extra or {})
    return env


def flyte_bundles(
    jobs: Sequence[tuple[Path, Path]], workdir: Path, tools: Sequence[str] = TOOLS
) -> list[FlyteBundle]:
    """Run ``flyte``'s ``build_code_bundle(root, copy_style="all", dryrun=True)`` for each
    ``(root, outdir)``, with only ``tools`` on PATH; roots are resolved first, as flyte's CLI
    resolves ``--root-dir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = tools_dir(workdir / "tools", tools)
    spec = [{"root": str(Path(root).resolve()), "outdir": str(outdir)} for root, outdir in jobs]
    jobs_file = workdir / "jobs.json"
    results_file = workdir / "results.json"
    jobs_file.write_text(json.dumps(spec))
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(jobs_file), str(results_file)],
        cwd=workdir,
        env=oracle_env(path),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"the flyte oracle failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    out: list[FlyteBundle] = []
    for item in json.loads(results_file.read_text()):
        if "error" in item:
            out.append(FlyteBundle(None, (), None, item["error"]))
        else:
            out.append(FlyteBundle(Path(item["path"]), tuple(item["files"]), item["computed_version"]))
    return out


_LOADED_SCRIPT = r"""
import asyncio
import importlib
import json
import pathlib
import sys

jobs = json.loads(pathlib.Path(sys.argv[1]).read_text())
# What `flyte deploy --all <module>` does for each environment module, all in one process:
# flyte.init() appends the root to sys.path, then the modules are imported.
for job in jobs:
    sys.path.append(job["root"])
for job in jobs:
    for name in job["modules"]:
        importlib.import_module(name)

from flyte._code_bundle._includes import collect_env_include_files
from flyte._code_bundle.bundle import build_code_bundle
from flyte._environment import list_loaded_environments

results = []


async def run():
    for job in jobs:
        root = pathlib.Path(job["root"])
        out = pathlib.Path(job["outdir"])
        out.mkdir(parents=True, exist_ok=True)
        envs = [
            e for e in list_loaded_environments()
            if e._declaring_file and pathlib.Path(e._declaring_file).is_relative_to(root)
        ]
        extra = tuple(job["include"]) + collect_env_include_files(envs)
        cb = await build_code_bundle(
            root, dryrun=True, copy_bundle_to=out, copy_style="loaded_modules", additional_files=extra
        )
        results.append(
            {
                "path": cb.tgz,
                "files": [pathlib.PurePosixPath(f).relative_to(root).as_posix() for f in cb.files],
                "computed_version": cb.computed_version,
            }
        )


asyncio.run(run())
pathlib.Path(sys.argv[2]).write_text(json.dumps(results))
"""


@dataclass(frozen=True)
class LoadedJob:
    """One ``copy_style="loaded_modules"`` bundle for the oracle to build."""

    root: Path
    outdir: Path
    #: The environments' modules, imported (all jobs' in one process) before bundling.
    modules: tuple[str, ...]
    #: Absolute paths flyte adds as ``additional_files`` (hatch-flyte's ``tool.flyte.bundle.include``);
    #: the loaded environments' own ``include`` entries are added by flyte itself.
    include: tuple[Path, ...] = ()


def flyte_loaded_bundles(
    jobs: Sequence[LoadedJob], workdir: Path, tools: Sequence[str] = TOOLS
) -> list[FlyteBundle]:
    """flyte's own ``build_code_bundle(copy_style="loaded_modules")`` for each job, in one process
    that first imported every job's modules with the roots appended to ``sys.path``. With the
    default ``tools`` there is no ``ruff`` (and no pigz) on PATH, so flyte lists ``sys.modules``
    only."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = tools_dir(workdir / "tools", tools)
    spec = [
        {
            "root": str(Path(j.root).resolve()),
            "outdir": str(j.outdir),
            "modules": list(j.modules),
            "include": [str(i) for i in j.include],
        }
        for j in jobs
    ]
    jobs_file = workdir / "loaded-jobs.json"
    results_file = workdir / "loaded-results.json"
    jobs_file.write_text(json.dumps(spec))
    proc = subprocess.run(
        [sys.executable, "-c", _LOADED_SCRIPT, str(jobs_file), str(results_file)],
        cwd=workdir,
        env=oracle_env(path),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"the flyte oracle failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return [
        FlyteBundle(Path(item["path"]), tuple(item["files"]), item["computed_version"])
        for item in json.loads(results_file.read_text())
    ]


def flyte_bundle(root: Path, outdir: Path, workdir: Path) -> FlyteBundle:
    """:func:`flyte_bundles` for one root."""
    return flyte_bundles([(root, outdir)], workdir)[0]


def tar_member_names(tar: bytes) -> list[str]:
    """Member names of an uncompressed tar, in archive order."""
    with tarfile.open(fileobj=io.BytesIO(tar), mode="r:") as tf:
        return [m.name for m in tf.getmembers()]


# --- the registry of loaded environments ---------------------------------------------------------

_ENVIRONMENTS_SCRIPT = r"""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1]).resolve()
sys.path.insert(0, str(root))
sys.path.extend(sys.argv[3:])  # local path dependencies, as an installed copy would provide them

from flyte._environment import list_loaded_environments
from flyte._utils.module_loader import load_python_modules

loaded, failed = load_python_modules(root, root, recursive=True)
envs = []
for env in list_loaded_environments():
    declared = env._declaring_file
    bindings = sorted(
        f"{name}:{attr}"
        for name, module in list(sys.modules.items())
        if module is not None and getattr(module, "__file__", None) == declared
        for attr, value in vars(module).items()
        if value is env
    )
    envs.append(
        {
            "name": env.name,
            "depends_on": sorted(d.name for d in env.depends_on),
            "bindings": bindings,
            "file": declared,
        }
    )
failures = [[str(p), e] for p, e in failed]
pathlib.Path(sys.argv[2]).write_text(json.dumps({"environments": envs, "failed": failures}))
"""


@dataclass(frozen=True)
class LoadedEnvironment:
    """One entry of flyte's registry after importing every module under a root."""

    name: str
    #: ``module:attribute`` names bound to it in the module that declares it.
    bindings: tuple[str, ...]
    depends_on: tuple[str, ...]
    file: str


def flyte_environments(root: Path, workdir: Path, paths: Sequence[Path] = ()) -> list[LoadedEnvironment]:
    """What ``flyte deploy --recursive --root-dir ROOT ROOT`` loads: flyte 2.12.1's own module loader
    imports every module under ``root`` (``paths`` on ``sys.path`` too), then its registry of loaded
    environments is read. Raises when a module fails to load."""
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / "environments.json"
    proc = subprocess.run(
        [sys.executable, "-c", _ENVIRONMENTS_SCRIPT, str(root), str(out), *map(str, paths)],
        cwd=workdir,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"flyte's loader failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    data = json.loads(out.read_text())
    if data["failed"]:
        raise RuntimeError(f"flyte could not load {data['failed']}")
    return [
        LoadedEnvironment(e["name"], tuple(e["bindings"]), tuple(e["depends_on"]), e["file"])
        for e in data["environments"]
    ]


_SERVER = r"""
import asyncio
import json
import pathlib
import sys

from flyte._code_bundle.bundle import build_code_bundle

results = open(int(sys.argv[1]), "w")
for line in sys.stdin:
    job = json.loads(line)
    root = pathlib.Path(job["root"])
    out = pathlib.Path(job["outdir"])
    out.mkdir(parents=True, exist_ok=True)
    try:
        cb = asyncio.run(build_code_bundle(root, dryrun=True, copy_bundle_to=out, copy_style="all"))
        item = {
            "path": cb.tgz,
            "files": [pathlib.PurePosixPath(f).relative_to(root).as_posix() for f in cb.files],
            "computed_version": cb.computed_version,
        }
    except Exception as e:
        item = {"error": f"{type(e).__name__}: {e}"}
    results.write(json.dumps(item) + "\n")
    results.flush()
"""


class FlyteOracle:
    """One long-lived flyte process that builds a bundle per request (for property-based tests,
    where a new process per tree would cost more than the tree)."""

    def __init__(self, workdir: Path, tools: Sequence[str] = TOOLS) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        path = tools_dir(workdir / "tools", tools)
        read_fd, write_fd = os.pipe()
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _SERVER, str(write_fd)],
            cwd=workdir,
            env=oracle_env(path),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(write_fd,),
            text=True,
        )
        os.close(write_fd)
        self._results = os.fdopen(read_fd, "r")

    def build(self, root: Path, outdir: Path) -> FlyteBundle:
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps({"root": str(Path(root).resolve()), "outdir": str(outdir)}) + "\n")
        self._proc.stdin.flush()
        line = self._results.readline()
        if not line:
            raise RuntimeError(f"the flyte oracle died (exit status {self._proc.wait()})")
        item = json.loads(line)
        if "error" in item:
            return FlyteBundle(None, (), None, item["error"])
        return FlyteBundle(Path(item["path"]), tuple(item["files"]), item["computed_version"])

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        self._proc.wait(timeout=30)
        self._results.close()
