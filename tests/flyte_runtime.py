"""Run a task the way a Flyte pod runs it, offline, with flyte's own runtime (``a0``).

The oracle for a task's container command is flyte itself: :func:`dry_run_tasks` runs
``flyte.deploy(..., dry_run=True)`` (a client object pointed at a closed port: nothing is contacted)
for the given environments, image and version, in fast mode (``copy_style="loaded_modules"``, a
``--tgz``) or full mode (``copy_style="none"``, no bundle); :meth:`TaskSpec.registered` takes a task
as a control plane received it instead (``hatch-flyte deploy`` against ``fake_control_plane``).
Inputs are written and outputs read back with flyte's own literal conversion and ``runtime/io.py``
helpers (:func:`write_inputs`, :func:`read_result`). :func:`run_in_container` runs the command with
the task's registered environment in an image with no network, as any user, copying the inputs (and
the bundle, given as ``--tgz``) into the container and the outputs back out, as a pod's data plane
would; :func:`run_on_host` runs it with this environment's ``a0`` (flyte, not the project) in an
empty working directory. Every a0 run of the test suite goes through this module.

Everything that imports flyte runs in a subprocess (flyte keeps global state, and importing it costs
a second or two), with the project's root first on ``sys.path``.
"""

from __future__ import annotations

import io
import json
import posixpath
import re
import subprocess
import sys
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from docker_env import unavailable
from flyte_oracle import oracle_env, tools_dir

if TYPE_CHECKING:
    import docker

#: A small project to run in pods: one task whose result says where its code came from, which user
#: ran it and in which directory. Flat layout (the bundle root is the project directory).
POD_PROJECT = {
    "pod_check/__init__.py": '"""Runs in a pod."""\n',
    "pod_check/text.py": "def shout(text: str) -> str:\n    return text.upper() + '!'\n",
    "pod_check/data/greeting.txt": "hello\n",
    "pod_check/tasks.py": """\
import json
import os
from pathlib import Path

import flyte

from pod_check.text import shout

env = flyte.TaskEnvironment(name="pod_check")

GREETING = (Path(__file__).parent / "data" / "greeting.txt").read_text().strip()


@env.task
def greet(name: str, times: int) -> str:
    return json.dumps(
        {"text": " ".join([shout(f"{GREETING}, {name}")] * times), "module": __file__, "uid": os.getuid(),
         "cwd": os.getcwd()}
    )
""",
}
POD_ENV = "pod_check.tasks:env"
POD_INPUTS = {"name": "Ada", "times": 2}
POD_TEXT = "HELLO, ADA! HELLO, ADA!"


def make_pod_project(directory: Path, image: Mapping[str, str] | None = None) -> Path:
    """Write the pod project (hatchling, ``flyte>=2.12``, the same requirement as the example
    projects, so that image tests share one dependency image) with ``[tool.flyte.image]`` keys."""
    directory.mkdir(parents=True)
    lines = [
        '[build-system]', 'requires = ["hatchling"]', 'build-backend = "hatchling.build"', "",
        "[project]", 'name = "pod-check"', 'version = "1.0.0"', 'dependencies = ["flyte>=2.12"]', "",
        "[tool.flyte.image]", *(f"{k} = {json.dumps(v)}" for k, v in (image or {}).items()),
    ]  # fmt: skip
    (directory / "pyproject.toml").write_text("\n".join(lines) + "\n")
    for rel, text in POD_PROJECT.items():
        (directory / rel).parent.mkdir(parents=True, exist_ok=True)
        (directory / rel).write_text(text)
    return directory


#: What a0 needs from its pod's environment (flyte's ``_bin/runtime.py``); the values are arbitrary.
ORG, PROJECT, DOMAIN, RUN_NAME, ACTION_NAME = "testorg", "testproject", "development", "r0", "a0"
#: Where :func:`run_in_container` puts inputs, outputs and the bundle inside the container.
CONTAINER_RUN_DIR = "/tmp/flyte-run"

_SCRIPT = r"""
import asyncio
import importlib
import json
import pathlib
import sys

command, job_file, out_file = sys.argv[1:4]
job = json.loads(pathlib.Path(job_file).read_text())
sys.path.insert(0, job["root"])

import flyte


def task_of(module, function):
    return getattr(importlib.import_module(module), function)


def deploy():
    flyte.init(endpoint="dns:///127.0.0.1:9", insecure=True, root_dir=pathlib.Path(job["root"]),
               images=job["images"], project=job["project"], domain=job["domain"], org=job["org"])
    if job.get("recursive"):
        # What `flyte deploy --recursive ROOT` imports: every module under the root.
        from flyte._utils.module_loader import load_python_modules

        _, failed = load_python_modules(pathlib.Path(job["root"]), pathlib.Path(job["root"]), recursive=True)
        assert not failed or job["ignore_load_errors"], failed
    envs = []
    for ref in job["envs"]:
        module, _, attribute = ref.partition(":")
        envs.append(getattr(importlib.import_module(module), attribute))
    style = "loaded_modules" if job["mode"] == "fast" else "none"
    deployments = flyte.deploy(*envs, dry_run=True, version=job["version"], copy_style=style)
    tasks = []
    for deployment in deployments:
        for env_name, deployed in deployment.envs.items():
            for entity in deployed.deployed_entities:
                template = entity.deployed_task.task_template
                tasks.append({"env": env_name, "task": template.id.name, "version": template.id.version,
                              "image": template.container.image, "args": list(template.container.args),
                              "environment": {e.key: e.value for e in template.container.env}})
    return tasks


def inputs():
    from flyte._internal.runtime.convert import convert_from_native_to_inputs
    from flyte._internal.runtime.io import upload_inputs

    task = task_of(job["module"], job["function"])
    values = asyncio.run(convert_from_native_to_inputs(task.native_interface, **job["values"]))
    asyncio.run(upload_inputs(values, job["path"]))
    return None


def outputs():
    from flyte._internal.runtime.convert import convert_error_to_native, convert_outputs_to_native
    from flyte._internal.runtime.io import error_path, load_error, load_outputs, outputs_path

    task = task_of(job["module"], job["function"])
    directory = pathlib.Path(job["path"])
    if (directory / "outputs.pb").is_file():
        loaded = asyncio.run(load_outputs(outputs_path(str(directory))))
        return {"value": asyncio.run(convert_outputs_to_native(task.native_interface, loaded))}
    if (directory / "error.pb").is_file():
        err = asyncio.run(load_error(error_path(str(directory))))
        native = convert_error_to_native(err)
        return {"error": f"{type(native).__name__}: {native}"}
    found = sorted(p.name for p in directory.iterdir())
    return {"error": f"neither outputs.pb nor error.pb in {directory}: {found}"}


result = {"deploy": deploy, "inputs": inputs, "outputs": outputs}[command]()
pathlib.Path(out_file).write_text(json.dumps(result))
"""


@dataclass(frozen=True)
class TaskSpec:
    """One registered task as flyte's dry run serializes it."""

    env: str
    #: flyte's registered name, ``<env>.<function>``.
    task: str
    version: str
    image: str
    #: The container's args as registered (``a0 --inputs {{.input}} ...``).
    args: tuple[str, ...]
    #: The container's environment as registered (``_F_SYS_PATH``: a0 reads it), set in the pod.
    environment: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def registered(cls, template: Any) -> TaskSpec:
        """The task of a ``TaskTemplate`` message as a control plane received it (``DeployTask``)."""
        container = template.container
        return cls(
            env=template.id.name.rpartition(".")[0],
            task=template.id.name,
            version=template.id.version,
            image=container.image,
            args=tuple(container.args),
            environment={e.key: e.value for e in container.env},
        )

    @property
    def module(self) -> str:
        return self.args[self.args.index("mod") + 1]

    @property
    def function(self) -> str:
        return self.args[self.args.index("instance") + 1]

    def option(self, name: str) -> str | None:
        """The value after ``name`` in the args, or None."""
        return self.args[self.args.index(name) + 1] if name in self.args else None


def _flyte(command: str, job: Mapping[str, Any], scratch: Path) -> Any:
    scratch.mkdir(parents=True, exist_ok=True)
    job_file, out_file = scratch / f"{command}-job.json", scratch / f"{command}-out.json"
    job_file.write_text(json.dumps(job))
    # Only git, tar and gzip on PATH: no pigz, no ruff (which would widen loaded_modules bundles).
    env = oracle_env(
        tools_dir(scratch / "tools"),
        {"PYTHONDONTWRITEBYTECODE": "1", "HOME": str(scratch), "TMPDIR": str(scratch)},
    )
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, command, str(job_file), str(out_file)],
        cwd=scratch, env=env, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(
            f"flyte ({command}) failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-6000:]}"
        )
    return json.loads(out_file.read_text())


def dry_run_tasks(
    root: Path,
    envs: Sequence[str],
    *,
    image: str,
    version: str,
    mode: str,
    scratch: Path,
    images: Mapping[str, str] | None = None,
    recursive: bool = False,
    ignore_load_errors: bool = False,
) -> list[TaskSpec]:
    """The tasks of ``envs`` (``module:attribute``, imported from ``root``) as ``flyte.deploy(...,
    dry_run=True)`` registers them with ``image`` for ``auto`` environments (and ``images`` for
    ``Image.from_ref_name(name)``): ``mode`` ``"fast"`` (``copy_style="loaded_modules"``, flyte's
    default; args with ``--tgz``) or ``"full"`` (``copy_style="none"``). ``recursive``: first import
    every module under ``root`` with flyte's own loader, as ``flyte deploy --recursive`` does (with
    ``ignore_load_errors``, as ``--ignore-load-errors`` does)."""
    job = {"root": str(root), "envs": list(envs), "images": {"default": image, **(images or {})},
           "version": version, "mode": mode, "project": PROJECT, "domain": DOMAIN, "org": ORG,
           "recursive": recursive, "ignore_load_errors": ignore_load_errors}  # fmt: skip
    return [
        TaskSpec(t["env"], t["task"], t["version"], t["image"], tuple(t["args"]), t["environment"])
        for t in _flyte("deploy", job, scratch)
    ]


def write_inputs(root: Path, spec: TaskSpec, values: Mapping[str, Any], path: Path, scratch: Path) -> Path:
    """Write ``values`` as the task's ``inputs.pb`` at ``path`` with flyte's literal conversion."""
    path.parent.mkdir(parents=True, exist_ok=True)
    job = {"root": str(root), "module": spec.module, "function": spec.function, "values": dict(values),
           "path": str(path)}  # fmt: skip
    _flyte("inputs", job, scratch)
    return path


@dataclass(frozen=True)
class Result:
    """What a0 left in the outputs directory: the task's value, or its error."""

    value: Any = None
    error: str | None = None


def read_result(root: Path, spec: TaskSpec, outputs: Path, scratch: Path) -> Result:
    """The task's outputs (``outputs.pb``) as Python values, or its error (``error.pb``)."""
    job = {"root": str(root), "module": spec.module, "function": spec.function, "path": str(outputs)}
    found = _flyte("outputs", job, scratch)
    return Result(value=found.get("value"), error=found.get("error"))


def a0_args(spec: TaskSpec, *, run_dir: str, tgz: str | None) -> list[str]:
    """The registered args with what the platform fills in at launch: inputs, outputs and data paths
    under ``run_dir``, and (fast mode) the bundle at ``tgz`` instead of the upload's URL."""
    templates = {
        "{{.input}}": f"{run_dir}/inputs/inputs.pb",
        "{{.outputPrefix}}": f"{run_dir}/outputs",
        "{{.rawOutputDataPrefix}}": f"{run_dir}/raw",
        "{{.checkpointOutputPrefix}}": f"{run_dir}/checkpoint",
        "{{.prevCheckpointPrefix}}": "",
        "{{.runName}}": RUN_NAME,
        "{{.actionName}}": ACTION_NAME,
        "{{.runStartTime}}": "2024-01-01T00:00:00Z",
    }
    args = [templates.get(a, a) for a in spec.args]
    leftover = [a for a in args if "{{" in a]
    assert not leftover, f"unknown templates in the task's args: {leftover}"
    if "--tgz" in args:
        assert tgz is not None, "a fast-mode task needs the bundle"
        args[args.index("--tgz") + 1] = tgz
    else:
        assert tgz is None, "a full-mode task takes no bundle"
    return args


def a0_environment(run_dir: str) -> dict[str, str]:
    """The environment variables a0 needs (flyte's pod sets them)."""
    return {
        "_U_ORG_NAME": ORG,
        "FLYTE_INTERNAL_EXECUTION_PROJECT": PROJECT,
        "FLYTE_INTERNAL_EXECUTION_DOMAIN": DOMAIN,
        "RUN_NAME": RUN_NAME,
        "ACTION_NAME": ACTION_NAME,
        "_U_RUN_BASE": f"{run_dir}/base",
    }


@dataclass(frozen=True)
class A0Run:
    """One run of a0 (in a container or on the host)."""

    exit_code: int
    logs: str
    #: The outputs directory (copied out of the container; empty when a0 wrote nothing).
    outputs: Path


def _run_dir_tar(inputs: Path, bundle: Path | None, owner: int) -> bytes:
    """``flyte-run/`` for ``/tmp``: inputs, the bundle, and empty directories a0 writes into, owned
    by the container's user (a pod's volumes are writable by it)."""
    buf = io.BytesIO()
    base = PurePosixPath(CONTAINER_RUN_DIR).name
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in ("", "/inputs", "/outputs", "/raw", "/checkpoint", "/base"):
            info = tarfile.TarInfo(base + name)
            info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, 0o755, owner, owner
            tar.addfile(info)
        files = [(f"{base}/inputs/inputs.pb", inputs)]
        if bundle is not None:
            files.append((f"{base}/{bundle.name}", bundle))
        for name, path in files:
            data = path.read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid, info.gid = len(data), 0o644, owner, owner
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def run_in_container(
    client: docker.DockerClient,
    image: str,
    spec: TaskSpec,
    inputs: Path,
    out_dir: Path,
    *,
    bundle: Path | None = None,
    user: str | None = None,
    working_dir: str | None = None,
    timeout: float = 300,
) -> A0Run:
    """``docker run --network none [--user U] IMAGE <a0 args>`` with ``inputs`` (and ``bundle`` as
    ``--tgz``) copied in first; the outputs directory is copied back into ``out_dir``."""
    tgz = f"{CONTAINER_RUN_DIR}/{bundle.name}" if bundle is not None else None
    args = a0_args(spec, run_dir=CONTAINER_RUN_DIR, tgz=tgz)
    owner = int(user.split(":", 1)[0]) if user else 0
    container = client.containers.create(
        image, args, user=user or "", network_mode="none",
        environment={**spec.environment, **a0_environment(CONTAINER_RUN_DIR)},
        working_dir=working_dir,
    )  # fmt: skip
    try:
        assert container.put_archive(
            str(PurePosixPath(CONTAINER_RUN_DIR).parent), _run_dir_tar(inputs, bundle, owner)
        )
        container.start()
        status = container.wait(timeout=timeout)
        logs = container.logs().decode(errors="replace")
        out_dir.mkdir(parents=True, exist_ok=True)
        stream, _ = container.get_archive(f"{CONTAINER_RUN_DIR}/outputs/.")
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            for member in tar.getmembers():
                if member.isfile():
                    extracted = tar.extractfile(member)
                    assert extracted is not None
                    (out_dir / PurePosixPath(member.name).name).write_bytes(extracted.read())
        return A0Run(int(status.get("StatusCode", -1)), logs, out_dir)
    finally:
        container.remove(force=True)


@dataclass(frozen=True)
class PodCase:
    """One built image of a project, with flyte's commands for one of its tasks and its inputs."""

    root: Path
    image: str
    bundle: Path
    specs: Mapping[str, TaskSpec]  # by mode
    inputs: Path
    scratch: Path


def prepare_pod_case(
    root: Path,
    image: str,
    bundle: Path,
    scratch: Path,
    *,
    env: str = POD_ENV,
    task: str = "pod_check.greet",
    values: Mapping[str, Any] = POD_INPUTS,
) -> PodCase:
    """flyte's dry-run commands for ``task`` of ``env`` (default: the pod project's) on ``image`` in
    both modes, and its inputs ``values``."""
    specs = {}
    for mode in ("fast", "full"):
        found = dry_run_tasks(root, [env], image=image, version="v1", mode=mode, scratch=scratch)
        (specs[mode],) = (s for s in found if s.task == task)
    inputs = write_inputs(root, specs["full"], values, scratch / "inputs" / "inputs.pb", scratch)
    return PodCase(root, image, bundle, specs, inputs, scratch)


def run_pod_case(
    client: docker.DockerClient, case: PodCase, mode: str, user: str | None, working_dir: str | None = None
) -> tuple[A0Run, Result]:
    """Run the pod project's task in its image (``mode`` fast: the bundle as ``--tgz``), and read
    back what a0 wrote."""
    where = case.scratch / "runs" / f"{mode}-{user or 'root'}-{(working_dir or 'image').strip('/')}"
    bundle = case.bundle if mode == "fast" else None
    run = run_in_container(
        client,
        case.image,
        case.specs[mode],
        case.inputs,
        where,
        bundle=bundle,
        user=user,
        working_dir=working_dir,
    )
    return run, read_result(case.root, case.specs[mode], run.outputs, case.scratch)


def require_base_usable_by_any_user(client: docker.DockerClient, base: str) -> None:
    """Skip (fail in CI) when a non-root user cannot even start a program in ``base`` (its ``/`` is
    not 0755, as in test bases imported by older versions of ``.ci/docker-env.sh``)."""
    import docker.errors

    container = client.containers.create(base, ["true"], user="65534:65534", network_mode="none")
    problem = None
    try:
        container.start()
        container.wait(timeout=60)
    except docker.errors.APIError as e:
        problem = e.explanation
    finally:
        container.remove(force=True)  # a container that could not start stays behind otherwise
    if problem is not None:
        unavailable(f"the base image {base} cannot run a program as a non-root user ({problem}); "
                    "run `bash .ci/docker-env.sh` again to import it anew")  # fmt: skip


def assert_pod_ran(case: PodCase, mode: str, user: str | None, run: A0Run, result: Result) -> None:
    """The pod project's task ran and returned its real result: code from the extracted bundle in
    the workdir (fast) or from the wheel in the venv (full), as ``user``, in ``/home/flyte``."""
    spec = case.specs[mode]
    assert spec.image == case.image and spec.task == "pod_check.greet"
    assert (spec.option("--tgz") is not None) is (mode == "fast")
    assert result.error is None and run.exit_code == 0, f"{result.error}\n{run.logs[-4000:]}"
    value = json.loads(result.value)
    assert value["text"] == POD_TEXT
    assert value["uid"] == (int(user.split(":")[0]) if user else 0)
    assert value["cwd"] == "/home/flyte"
    if mode == "fast":  # the bundle's copy shadows the wheel's (a0 puts "." first on sys.path)
        # (found through the registered _F_SYS_PATH, ``./.``: the path says ``/home/flyte/././``)
        assert posixpath.normpath(value["module"]) == "/home/flyte/pod_check/tasks.py"
    else:
        assert re.fullmatch(r"/opt/venv/lib/python3\.\d+/site-packages/pod_check/tasks\.py", value["module"])


def run_on_host(
    root: Path, spec: TaskSpec, values: Mapping[str, Any], run_dir: Path, *, bundle: Path | str | None
) -> tuple[A0Run, Result]:
    """``a0 <args>`` with this environment's flyte (which has not the project: fast mode brings it
    in the bundle, a local path or a URL such as the registered ``--tgz``) in an empty working
    directory ``run_dir/work``, with only git, tar and gzip on PATH, on inputs ``values``; the
    outputs land in ``run_dir/outputs`` and are read back."""
    work, outputs, scratch = run_dir / "work", run_dir / "outputs", run_dir / "flyte"
    for directory in (work, outputs):
        directory.mkdir(parents=True)
    write_inputs(root, spec, values, run_dir / "inputs" / "inputs.pb", scratch)  # where a0_args says
    args = a0_args(spec, run_dir=str(run_dir), tgz=str(bundle) if bundle is not None else None)
    a0 = Path(sys.executable).parent / args[0]
    pod_env = {**spec.environment, **a0_environment(str(run_dir)), "HOME": str(run_dir)}
    env = oracle_env(tools_dir(run_dir / "tools"), pod_env)
    proc = subprocess.run(
        [str(a0), *args[1:]], cwd=work, env=env, capture_output=True, text=True, check=False, timeout=300
    )
    run = A0Run(proc.returncode, proc.stdout + proc.stderr, outputs)
    return run, read_result(root, spec, outputs, scratch)
