"""Run one task with flyte's own ``a0`` inside an image, offline (``docker run --network none``).

The container's arguments are flyte's own: ``flyte.deploy(env, dry_run=True)`` on the host builds
the task spec (no control plane: ``flyte.init`` points at a closed port), and its container args
are used as they are, with the template's placeholders filled in and ``--tgz`` pointing at a
bundle mounted into the container (or left out, with ``--dest``, to run without a bundle). Inputs
are written and outputs read with flyte's own runtime helpers, in a host subprocess that imports
the task from the project's root.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Where the host's I/O directory is mounted in the container.
IO = "/io"
#: The values a cluster fills in for the task template's placeholders.
PLACEHOLDERS = {
    "{{.input}}": f"{IO}/inputs.pb",
    "{{.outputPrefix}}": f"{IO}/outputs",
    "{{.rawOutputDataPrefix}}": f"{IO}/raw",
    "{{.checkpointOutputPrefix}}": f"{IO}/checkpoint",
    "{{.prevCheckpointPrefix}}": "",
    "{{.runName}}": "r0",
    "{{.actionName}}": "a0",
    "{{.runStartTime}}": "2024-01-01T00:00:00Z",
}
#: What flyte's runtime needs in the environment (``_bin/runtime.py``).
RUNTIME_ENV = {
    "_U_ORG_NAME": "testorg",
    "FLYTE_INTERNAL_EXECUTION_PROJECT": "testproject",
    "FLYTE_INTERNAL_EXECUTION_DOMAIN": "development",
    "RUN_NAME": "r0",
    "ACTION_NAME": "a0",
    "_U_RUN_BASE": f"{IO}/run",
}

_HOST = r"""
import asyncio, importlib, json, sys
from pathlib import Path

mode, root, module, task_name, io_dir, arg = sys.argv[1:7]
sys.path.insert(0, root)
mod = importlib.import_module(module)
task = getattr(mod, task_name)
if mode == "spec":
    import flyte
    from flyte._internal.runtime.convert import convert_from_native_to_inputs
    from flyte._internal.runtime.io import upload_inputs

    flyte.init(endpoint="dns:///127.0.0.1:9", insecure=True, root_dir=Path(root), images={"default": arg})
    env = next(v for v in vars(mod).values()
               if isinstance(v, flyte.TaskEnvironment) and any(t is task for t in v.tasks.values()))
    found = None
    for deployment in flyte.deploy(env, dry_run=True, copy_style="all", version="v1"):
        for env in deployment.envs.values():
            for deployed in env.deployed_entities:
                if deployed.get_name() == task.name:
                    found = deployed.deployed_task.task_template.container
    kwargs = json.loads(sys.argv[7])
    inputs = asyncio.run(convert_from_native_to_inputs(task.native_interface, **kwargs))
    asyncio.run(upload_inputs(inputs, str(Path(io_dir) / "inputs.pb")))
    print(json.dumps({"image": found.image, "args": list(found.args),
                      "env": {e.key: e.value for e in found.env}}))
else:
    from flyte._internal.runtime.convert import convert_outputs_to_native
    from flyte._internal.runtime.io import load_error, load_outputs

    out = Path(io_dir) / "outputs"
    if (out / "outputs.pb").exists():
        outputs = asyncio.run(load_outputs(str(out / "outputs.pb")))
        print(json.dumps({"output": asyncio.run(convert_outputs_to_native(task.native_interface, outputs))}))
    elif (out / "error.pb").exists():
        err = asyncio.run(load_error(str(out / "error.pb")))
        print(json.dumps({"error": f"{err.code}: {err.message}"}))
    else:
        print(json.dumps({}))
"""


@dataclass(frozen=True)
class TaskRun:
    exit_code: int
    log: str
    #: The task's output, converted back by flyte (None when it failed).
    output: Any = None
    #: flyte's error document, ``code: message`` (None when it succeeded).
    error: str | None = None


def _host(mode: str, root: Path, module: str, task: str, io_dir: Path, *args: str) -> dict[str, Any]:
    env = {**os.environ, "HOME": str(io_dir / "home")}  # flyte's bundle cache lives under $HOME
    proc = subprocess.run(
        [sys.executable, "-c", _HOST, mode, str(root), module, task, str(io_dir), *args],
        cwd=io_dir, env=env, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    if proc.returncode != 0:
        raise AssertionError(f"flyte on the host failed ({mode}):\n{proc.stderr[-4000:]}")
    doc: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return doc


def task_args(
    root: Path, module: str, task: str, image: str, io_dir: Path, bundle: Path | None, **inputs: Any
) -> tuple[list[str], dict[str, str]]:
    """flyte's container args and env for ``module.task`` on ``image``; writes the inputs to
    ``io_dir``. ``--tgz`` points at ``bundle`` (copied into ``io_dir``), or is dropped."""
    io_dir.mkdir(parents=True, exist_ok=True)
    spec = _host("spec", root, module, task, io_dir, image, json.dumps(inputs))
    assert spec["image"] == image, spec
    args = [PLACEHOLDERS.get(a, a) for a in spec["args"]]
    i = args.index("--tgz")
    if bundle is None:
        j = args.index("--dest")
        args = [a for k, a in enumerate(args) if k not in (i, i + 1, j, j + 1)]
    else:
        (io_dir / bundle.name).write_bytes(bundle.read_bytes())
        args[i + 1] = f"{IO}/{bundle.name}"
    return args, spec["env"]


def run_task(
    client: Any,
    root: Path,
    module: str,
    task: str,
    image: str,
    io_dir: Path,
    bundle: Path | None,
    **inputs: Any,
) -> TaskRun:
    """Run the task in ``image`` with no network, as a cluster would, and read what it produced."""
    import docker.errors

    args, env = task_args(root, module, task, image, io_dir, bundle, **inputs)
    (io_dir / "outputs").mkdir(exist_ok=True)
    container = client.containers.run(
        image, args, detach=True, network_disabled=True, network_mode="none",
        environment={**env, **RUNTIME_ENV}, volumes={str(io_dir): {"bind": IO, "mode": "rw"}},
    )  # fmt: skip
    try:
        code = int(container.wait(timeout=300)["StatusCode"])
        log = container.logs().decode(errors="replace")
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)
    result = _host("outputs", root, module, task, io_dir, "")
    return TaskRun(code, log, result.get("output"), result.get("error"))
