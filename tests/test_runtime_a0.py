"""flyte's own ``a0`` runs a task from a hatch-flyte bundle on the host, with the container args that
``flyte.deploy(dry_run=True)`` registers: no image, no engine (the in-image runs are in
``test_image_docker.py`` and ``test_image_oci.py``).

The test environment has flyte but not the project: the task's code comes from the bundle only.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

from flyte_runtime import (
    POD_ENV,
    POD_INPUTS,
    POD_TEXT,
    dry_run_tasks,
    make_pod_project,
    run_on_host,
)

from hatch_flyte.bundle import BundleOptions, build


def test_a0_runs_the_task_from_the_bundle(tmp_path: Path) -> None:
    assert importlib.util.find_spec("pod_check") is None  # the project is not installed here
    root = make_pod_project(tmp_path / "pod-check")
    bundle = build(root, tmp_path / "dist", BundleOptions())
    scratch = tmp_path / "scratch"
    (spec,) = dry_run_tasks(root, [POD_ENV], image="registry.test/pod:1", version="v1", mode="fast",
                            scratch=scratch)  # fmt: skip
    assert spec.task == "pod_check.greet" and spec.option("--dest") == "."

    run, result = run_on_host(root, spec, POD_INPUTS, tmp_path / "run", bundle=bundle.path)
    assert result.error is None and run.exit_code == 0, f"{result.error}\n{run.logs[-4000:]}"
    value = json.loads(result.value)
    work = tmp_path / "run" / "work"
    assert value["text"] == POD_TEXT
    # a0 puts the registered _F_SYS_PATH (``./.``) on sys.path: the module's path says ``work/././``.
    assert value["cwd"] == str(work)
    assert os.path.normpath(value["module"]) == str(work / "pod_check" / "tasks.py")
    # flyte extracted exactly the bundle's files into the working directory (plus its markers).
    extracted = {p.relative_to(work).as_posix() for p in work.rglob("*") if p.is_file()}
    extracted = {p for p in extracted if "__pycache__" not in p}
    markers = {bundle.name, f".{bundle.name}.lock", f".{bundle.name}.extracted"}
    assert extracted - markers == set(bundle.files)
