"""``hatch-flyte deploy``: the built artifacts registered as they are, against a fake control plane
that speaks flyte's real protocol to flyte's real client, and run by flyte's own runtime (``a0``).

One fake control plane and one build serve the whole module; every test gets a fresh ``HOME``
(flyte keeps caches under ``~/.flyte``) and a reset fake.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, cast

import pytest
from fake_control_plane import Running
from flyte_runtime import Result, TaskSpec, dry_run_tasks, run_on_host

import hatch_flyte
from hatch_flyte.deploy import DeployResult
from hatch_flyte.errors import DeployError
from hatch_flyte.frontends.cli import main
from hatch_flyte.manifest import MANIFEST_NAME
from hatch_flyte.pipeline import build_artifacts
from hatch_flyte.project import load_project

EXAMPLES = Path(__file__).resolve().parent.parent / "example_projects"
SCRIPT = Path(sys.executable).parent / "hatch-flyte"
IMAGE = "127.0.0.1:5000/orbit-tools:1.2.0"
CUDA = "127.0.0.1:5000/cuda-runtime:12"

BODIES = {"earth": 1.0, "mars": 1.523679, "jupiter": 5.2044}

ORBIT = {
    "pyproject.toml": """\
        [build-system]
        requires = ["hatchling"]
        build-backend = "hatchling.build"

        [project]
        name = "orbit-tools"
        version = "1.2.0"
        dependencies = ["flyte"]

        [tool.hatch.build.targets.wheel]
        packages = ["src/orbit"]
        """,
    "src/orbit/__init__.py": "",
    "src/orbit/physics.py": """\
        def period_days(semi_major_axis_au: float) -> float:
            return round(365.256363004 * semi_major_axis_au**1.5, 3)
        """,
    "src/orbit/data/bodies.json": json.dumps(BODIES),
    "src/orbit/flows.py": """\
        import json
        from pathlib import Path

        import flyte

        from orbit.physics import period_days

        # Read at import time: the task only loads when the bundle carries its data.
        BODIES = json.loads((Path(__file__).parent / "data" / "bodies.json").read_text())

        base = flyte.TaskEnvironment(name="orbit_base")
        flows = flyte.TaskEnvironment(name="orbit_flows", depends_on=[base])


        @base.task
        def period(body: str) -> float:
            return period_days(BODIES[body])


        @base.task
        def fail(body: str) -> float:
            raise ValueError(f"no such body: {body}")


        @flows.task
        async def table(bodies: list[str]) -> str:
            return ", ".join(f"{b}={period(b)}" for b in bodies)
        """,
    "src/orbit/accel.py": """\
        import flyte

        gpu = flyte.TaskEnvironment(name="orbit_gpu", image=flyte.Image.from_ref_name("cuda"))
        archive = flyte.TaskEnvironment(name="orbit_archive", image="127.0.0.1:5000/orbit-archive:7")


        @gpu.task
        def device() -> str:
            return "cuda"


        @archive.task
        def keep(name: str) -> str:
            return name
        """,
}
TASKS = {
    "orbit_base.period",
    "orbit_base.fail",
    "orbit_flows.table",
    "orbit_gpu.device",
    "orbit_archive.keep",
}


def write_project(directory: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    server = Running(tmp_path_factory.mktemp("object-store"))
    yield server
    server.close()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The orbit project built once (wheel + bundle + manifest); tests copy it before changing it."""
    directory = write_project(tmp_path_factory.mktemp("orbit"), ORBIT)
    out = directory / "dist"
    build_artifacts(load_project(directory), out, ["wheel", "bundle"], isolation=False)
    return out


@pytest.fixture(autouse=True)
def fresh_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var in ("FLYTE_API_KEY", "FLYTECTL_CONFIG", "UCTL_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture
def cp(control_plane: Running) -> Running:
    control_plane.state.reset()
    return control_plane


def connect(cp: Running) -> list[str]:
    return ["--endpoint", cp.endpoint, "--insecure", "--org", "acme", "--project", "orbit", "--domain", "dev"]


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def deploy_json(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> tuple[int, dict[str, Any] | None, str]:
    code, out, err = run_cli(["deploy", *args, "--json"], capsys)
    return code, (json.loads(out) if code == 0 else None), err


def manifest(directory: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((directory / MANIFEST_NAME).read_text())
    return data


def bundle_path(directory: Path) -> Path:
    name: str = manifest(directory)["bundle"]["name"]
    return directory / name


def with_image(built: Path, where: Path, ref: str = IMAGE) -> Path:
    """A copy of the build whose manifest also lists an image, as the image target writes it (the
    registration needs only its name: no engine here)."""
    shutil.copytree(built, where)
    doc = manifest(where)
    doc["image"] = {"ref": ref, "id": "sha256:" + "1" * 64, "digest": None, "backend": "docker"}
    (where / MANIFEST_NAME).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return where


def arg(args: list[str], flag: str) -> str | None:
    return args[args.index(flag) + 1] if flag in args else None


# --- a real deploy against the fake control plane -----------------------------------------------


def test_fast_deploy_uploads_the_built_bundle_once_and_registers_every_task(
    built: Path, cp: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = cp.state
    built = with_image(built, tmp_path / "dist")  # the build also made an image
    code, doc, err = deploy_json([str(built), *connect(cp), "--image", f"cuda={CUDA}"], capsys)
    assert code == 0, err
    assert doc is not None
    data = bundle_path(built).read_bytes()

    # flyte's protocol, in flyte's order: one upload location, one PUT, then one DeployTask per task.
    methods = state.methods()
    assert methods[:3] == ["SelectCluster", "CreateUploadLocation", "PUT"], methods
    assert methods[3:] == ["DeployTask"] * len(TASKS)
    (location,) = state.requests("CreateUploadLocation")
    assert location.content_md5 == hashlib.md5(data).digest()
    assert (location.project, location.domain, location.org) == ("orbit", "dev", "acme")
    assert location.filename == bundle_path(built).name
    (upload,) = state.uploads
    assert upload.data == data
    assert upload.content_md5 == base64.b64encode(hashlib.md5(data).digest()).decode()
    uri = upload.path.as_uri()
    assert doc["bundle"] == {
        "name": bundle_path(built).name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "uri": uri,
    }

    registered = {req.task_id.name: req for req in state.requests("DeployTask")}
    assert set(registered) == TASKS
    images = {
        "orbit_base": IMAGE,
        "orbit_flows": IMAGE,
        "orbit_gpu": CUDA,
        "orbit_archive": "127.0.0.1:5000/orbit-archive:7",
    }
    for name, req in registered.items():
        container = req.spec.task_template.container
        args = list(container.args)
        assert req.task_id.version == doc["version"]
        assert (req.task_id.org, req.task_id.project, req.task_id.domain) == ("acme", "orbit", "dev")
        assert arg(args, "--tgz") == uri and arg(args, "--dest") == ".", args
        assert arg(args, "--version") == doc["version"]
        assert container.image == images[name.split(".")[0]]
    assert {t["task"]: t["args"] for t in doc["tasks"]} == {
        n: list(r.spec.task_template.container.args) for n, r in registered.items()
    }
    sources = {e["name"]: e["source"] for e in doc["environments"]}
    assert sources == {
        "orbit_base": "manifest",
        "orbit_flows": "manifest",
        "orbit_gpu": "--image cuda",
        "orbit_archive": "environment",
    }

    # The same build again: the same version, flyte's "already exists" is success, nothing new.
    code, again, err = deploy_json([str(built), *connect(cp), "--image", f"cuda={CUDA}"], capsys)
    assert code == 0, err
    assert again == doc
    assert len(state.tasks) == len(TASKS)
    assert len(state.requests("DeployTask")) == 2 * len(TASKS)


def test_full_mode_uploads_nothing_and_runs_on_the_manifest_image(
    built: Path, cp: Running, tmp_path: Path
) -> None:
    dist = with_image(built, tmp_path / "dist")
    result = hatch_flyte.deploy(
        dist,
        mode="full",
        images={"cuda": CUDA},
        endpoint=cp.endpoint,
        insecure=True,
        org="acme",
        project="orbit",
        domain="dev",
    )
    assert isinstance(result, DeployResult)
    assert result.mode == "full" and result.bundle is None
    assert "CreateUploadLocation" not in cp.state.methods() and cp.state.uploads == []
    by_env = {e.name: e for e in result.environments}
    assert by_env["orbit_base"].image == IMAGE and by_env["orbit_base"].source == "manifest"
    for req in cp.state.requests("DeployTask"):
        args = list(req.spec.task_template.container.args)
        assert "--tgz" not in args and "--dest" not in args
        if req.task_id.name.startswith(("orbit_base.", "orbit_flows.")):
            assert req.spec.task_template.container.image == IMAGE
    assert {t.task for t in result.tasks} == TASKS

    fast = hatch_flyte.deploy(dist, images={"cuda": CUDA}, dry_run=True)
    assert fast.mode == "fast" and fast.version != result.version  # the mode is part of the version

    # A build without a bundle (wheel + image): full mode by default, environments from the wheel.
    doc = manifest(dist)
    (dist / doc["bundle"]["name"]).unlink()
    doc["bundle"] = None
    doc["artifacts"] = [a for a in doc["artifacts"] if a["kind"] != "bundle"]
    (dist / MANIFEST_NAME).write_text(json.dumps(doc))
    wheel_only = hatch_flyte.deploy(dist, images={"cuda": CUDA}, dry_run=True)
    assert wheel_only.mode == "full" and wheel_only.version == result.version
    assert [(t.task, t.args) for t in wheel_only.tasks] == [(t.task, t.args) for t in result.tasks]


# --- flyte's own runtime runs what was registered -------------------------------------------------


def test_connection_comes_from_flyte_config_with_options_overriding(
    built: Path, cp: Running, fresh_home: Path, tmp_path: Path
) -> None:
    """The console script in fresh processes: flyte looks its config file up once per process."""
    config = (
        f"admin:\n  endpoint: {cp.endpoint}\n  insecure: true\n"
        "task:\n  org: acme\n  project: orbit\n  domain: dev\n"
    )
    (fresh_home / ".flyte").mkdir()
    (fresh_home / ".flyte" / "config.yaml").write_text(config)  # where flyte looks by default

    def deploy(*args: str) -> dict[str, Any]:
        proc = subprocess.run(
            [str(SCRIPT), "deploy", str(built), "--json", "--image", f"cuda={CUDA}", *args],
            capture_output=True, text=True, check=False, cwd=tmp_path,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return dict(json.loads(proc.stdout))

    doc = deploy()
    assert (doc["project"], doc["domain"]) == ("orbit", "dev")
    assert {
        (r.task_id.org, r.task_id.project, r.task_id.domain) for r in cp.state.requests("DeployTask")
    } == {("acme", "orbit", "dev")}

    cp.state.reset()
    other = tmp_path / "other.yaml"
    other.write_text(config.replace("project: orbit", "project: nowhere"))
    deploy("-c", str(other), "--domain", "prod")
    (location,) = cp.state.requests("CreateUploadLocation")
    assert (location.project, location.domain) == ("nowhere", "prod")

    cp.state.reset()  # a dry run reads the project from the config but calls nothing
    assert deploy("--dry-run")["project"] == "orbit"
    assert cp.state.calls == []


def test_flyte_runtime_runs_the_registered_task_from_the_uploaded_bundle(
    built: Path, cp: Running, tmp_path: Path
) -> None:
    result = hatch_flyte.deploy(
        built,
        images={"cuda": CUDA},
        endpoint=cp.endpoint,
        insecure=True,
        org="acme",
        project="orbit",
        domain="dev",
    )
    registered = {
        r.task_id.name: TaskSpec.registered(r.spec.task_template) for r in cp.state.requests("DeployTask")
    }
    (upload,) = cp.state.uploads
    period = registered["orbit_base.period"]
    assert result.bundle is not None
    assert period.option("--tgz") == upload.path.as_uri() == result.bundle.uri

    # a0 downloads the bundle from the registered URL: the uploaded object.
    root = built.parent / "src"  # only to write the inputs and read the outputs with flyte
    run, got = run_on_host(root, period, {"body": "mars"}, tmp_path / "period", bundle=period.option("--tgz"))
    assert run.exit_code == 0, run.logs[-3000:]
    assert got == Result(value=round(365.256363004 * BODIES["mars"] ** 1.5, 3))
    # The task ran from the bundle flyte downloaded into the working directory.
    workdir = tmp_path / "period" / "work"
    assert (workdir / "orbit/flows.py").read_bytes() == (built.parent / "src/orbit/flows.py").read_bytes()
    assert (workdir / upload.path.name).read_bytes() == bundle_path(built).read_bytes()

    fail = registered["orbit_base.fail"]
    run, failed = run_on_host(root, fail, {"body": "pluto"}, tmp_path / "fail", bundle=fail.option("--tgz"))
    assert run.exit_code == 0, run.logs[-3000:]  # a0 exits 0 even when the task raised
    assert failed.value is None and "no such body: pluto" in str(failed.error)


# --- the dry run equals what flyte itself would register -------------------------------------


def without_bundle_uri(args: list[str]) -> list[str]:
    i = args.index("--tgz")
    return [*args[: i + 1], "<bundle>", *args[i + 2 :]]


@pytest.mark.parametrize(
    "name", ["orbit", "weather_pipeline", "ml_platform", "setuptools_etl", "dynamic_envs"]
)
def test_dry_run_registers_what_flyte_deploy_would(
    name: str, built: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = {"default": IMAGE}
    if name == "orbit":
        dist = built
        images["cuda"] = CUDA
    else:
        project = tmp_path / name
        shutil.copytree(EXAMPLES / name, project, ignore=shutil.ignore_patterns("dist", "__pycache__"))
        dist = tmp_path / "dist"
        build_artifacts(load_project(project), dist, ["bundle"])
    args = [str(dist), "--dry-run", "--project", "orbit", "--domain", "dev", "--org", "acme"]
    for ref, uri in images.items():
        args += ["--image", uri if ref == "default" else f"{ref}={uri}"]
    code, doc, err = deploy_json(args, capsys)
    assert code == 0, err
    assert doc is not None and doc["bundle"]["uri"] is None
    assert all(arg(t["args"], "--tgz") == str(bundle_path(dist)) for t in doc["tasks"])

    m = manifest(dist)
    root = (dist.parent / m["root_dir"]) if name == "orbit" else (tmp_path / name / m["root_dir"])
    specs = dry_run_tasks(
        root,
        [f"{e['module']}:{e['attribute']}" for e in m["environments"]],
        image=IMAGE,
        images=images,
        version=doc["version"],
        mode="fast",
        scratch=tmp_path / "oracle",
        recursive=True,
    )
    theirs: list[dict[str, Any]] = [
        {"env": t.env, "task": t.task, "image": t.image, "args": list(t.args)} for t in specs
    ]
    ours = [{**t, "args": without_bundle_uri(t["args"])} for t in doc["tasks"]]
    # flyte registers an environment once per plan that holds it (a dependency of two environments
    # twice), with the same spec each time; we register it once.
    unique: dict[str, dict[str, Any]] = {}
    for t in theirs:
        t = {**t, "args": without_bundle_uri(t["args"])}
        assert unique.setdefault(t["task"], t) == t
    assert ours == sorted(unique.values(), key=lambda t: (t["env"], t["task"]))
    assert ours, "no tasks"


# --- versions ----------------------------------------------------------------------------------


def test_default_version_is_stable_across_processes_and_changes_with_code_image_and_mode(
    built: Path, tmp_path: Path
) -> None:
    def version(path: Path, *extra: str) -> str:
        proc = subprocess.run(
            [str(SCRIPT), "deploy", str(path), "--dry-run", "--json", "--image", f"cuda={CUDA}", *extra],
            capture_output=True, text=True, check=False, env={**os.environ, "PYTHONHASHSEED": "random"},
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return str(json.loads(proc.stdout)["version"])

    first = version(built)
    assert version(built) == first  # another process, another hash seed
    other_image = version(built, "--image", "127.0.0.1:5000/other:1")
    assert other_image != first

    changed = tmp_path / "changed"
    write_project(
        changed, {**ORBIT, "src/orbit/physics.py": textwrap.dedent(ORBIT["src/orbit/physics.py"]) + "# v2\n"}
    )
    build_artifacts(load_project(changed), changed / "dist", ["bundle"])
    assert version(changed / "dist") != first

    explicit = hatch_flyte.deploy(built, version="release-7", images={"cuda": CUDA}, dry_run=True)
    assert explicit.version == "release-7"
    assert all(arg(list(t.args), "--version") == "release-7" for t in explicit.tasks)


# --- faults: exit 1 with a message that says what, where and how; nothing sent -------------------


def copy_build(built: Path, where: Path) -> Path:
    shutil.copytree(built, where)
    return where


def test_tampered_or_missing_artifacts_are_refused_before_anything_is_sent(
    built: Path, cp: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tampered = copy_build(built, tmp_path / "tampered")
    bundle = bundle_path(tampered)
    data = bytearray(bundle.read_bytes())
    data[-10] ^= 0xFF
    bundle.write_bytes(bytes(data))
    code, out, err = run_cli(["deploy", str(tampered), *connect(cp)], capsys)
    assert code == 1 and out == ""
    assert str(bundle) in err and "does not match" in err and "nothing was sent" in err

    missing = copy_build(built, tmp_path / "missing")
    wheel = next(missing.glob("*.whl"))
    wheel.unlink()
    code, _, err = run_cli(["deploy", str(missing), *connect(cp)], capsys)
    assert code == 1 and str(wheel) in err and "missing" in err
    assert cp.state.calls == []

    code, _, err = run_cli(["deploy", str(tmp_path / "nothing-here"), *connect(cp)], capsys)
    assert code == 1 and "does not exist" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(["deploy", str(tmp_path / "empty")], capsys)
    assert code == 1 and MANIFEST_NAME in err and "build first" in err


def test_upload_refused_registers_nothing(
    built: Path, cp: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    cp.state.refuse_upload = True
    code, out, err = run_cli(["deploy", str(built), *connect(cp), "--image", f"cuda={CUDA}"], capsys)
    assert code == 1 and out == ""
    assert "uploading" in err and bundle_path(built).name in err and "nothing was registered" in err
    assert "PUT" in cp.state.methods() and "DeployTask" not in cp.state.methods()


def test_deploy_failing_half_way_says_what_was_registered(
    built: Path, cp: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    cp.state.fail_deploy_after = 2
    code, _, err = run_cli(["deploy", str(built), *connect(cp), "--image", f"cuda={CUDA}"], capsys)
    assert code == 1
    registered = sorted(key[3] for key in cp.state.tasks)
    assert len(registered) == 2
    assert f"3 of {len(TASKS)} tasks could not be registered" in err
    assert f"Registered: {', '.join(registered)}." in err
    assert "INTERNAL: injected failure" in err and "deploy again with the same version" in err

    # Deploying again finishes the job: the two already there count as done.
    cp.state.fail_deploy_after = None
    code, _, err = run_cli(["deploy", str(built), *connect(cp), "--image", f"cuda={CUDA}"], capsys)
    assert code == 0, err
    assert {key[3] for key in cp.state.tasks} == TASKS


def test_unreachable_control_plane(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ["--endpoint", f"dns:///127.0.0.1:{port}", "--insecure", "--project", "p", "--domain", "d"]
    code, out, err = run_cli(["deploy", str(built), *args, "--image", f"cuda={CUDA}"], capsys)
    assert code == 1 and out == ""
    assert "uploading" in err and "nothing was registered" in err


def test_environment_that_no_longer_loads_is_named(
    built: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dist = copy_build(built, tmp_path / "dist")
    doc = manifest(dist)
    gone = next(e for e in doc["environments"] if e["name"] == "orbit_flows")
    gone["attribute"] = "renamed"
    (dist / MANIFEST_NAME).write_text(json.dumps(doc))
    code, _, err = run_cli(["deploy", str(dist), "--dry-run"], capsys)
    assert code == 1
    assert "'orbit_flows' (orbit.flows:renamed" in err and "no attribute 'renamed'" in err


def test_bundle_without_a_file_the_code_reads_is_refused(tmp_path: Path) -> None:
    """The environments load from the bundle alone: loaded-modules leaves the data file out, and
    the deploy says so before registering tasks that would fail in the pod."""
    settings = '\n[tool.flyte.bundle]\ncopy-style = "loaded-modules"\n'
    project = write_project(tmp_path / "p", ORBIT)
    with (project / "pyproject.toml").open("a") as f:
        f.write(settings)
    build_artifacts(load_project(project), project / "dist", ["bundle"])
    with pytest.raises(DeployError) as exc:
        hatch_flyte.deploy(project / "dist", images={"cuda": CUDA}, dry_run=True)
    message = str(exc.value)
    assert "'orbit_base' (orbit.flows:base" in message and "does not load from the build" in message
    assert "bodies.json" in message and "include" in message


UV_IMAGE = {
    "pyproject.toml": """\
        [project]
        name = "lanes"
        version = "0.3.0"
        dependencies = ["flyte"]
    """,
    "uv.lock": "version = 1\n",
    "src/lanes/__init__.py": "",
    "src/lanes/envs.py": """\
        import pathlib

        import flyte

        PROJECT = pathlib.Path(__file__).parents[2]
        env = flyte.TaskEnvironment(
            name="lanes",
            image=flyte.Image.from_debian_base(python_version=(3, 11))
            .with_uv_project(pyproject_file=PROJECT / "pyproject.toml")
            .with_source_folder(PROJECT.parent / "lane_tools"),
        )


        @env.task
        async def merge(a: int, b: int) -> int:
            return a + b
    """,
}


def test_images_that_read_project_files_are_named_as_flyte_names_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An environment's image computed from files outside the bundle root (its project's
    pyproject.toml and uv.lock, a neighbouring source folder) is named from the project's files,
    as flyte's deploy names it from the working tree, while the code still comes from the bundle."""
    project = write_project(tmp_path / "lanes", UV_IMAGE)
    write_project(tmp_path / "lane_tools", {"tools.py": "SPEED = 3\n"})
    build_artifacts(load_project(project), project / "dist", ["bundle"])
    code, doc, err = deploy_json([str(project / "dist"), "--dry-run"], capsys)
    assert code == 0, err
    assert doc is not None
    (env,) = doc["environments"]
    specs = dry_run_tasks(
        project / "src", ["lanes.envs:env"], image=IMAGE, version=doc["version"], mode="fast",
        scratch=tmp_path / "oracle",
    )  # fmt: skip
    assert [(t.task, t.image) for t in specs] == [(t["task"], t["image"]) for t in doc["tasks"]]
    assert env["image"] == specs[0].image and env["source"] == "environment"

    # The uv.lock is part of the image's name: another lock, another image.
    (project / "uv.lock").write_text("version = 1\n# changed\n")
    code, again, err = deploy_json([str(project / "dist"), "--dry-run"], capsys)
    assert code == 0, err
    assert again is not None and again["environments"][0]["image"] != env["image"]

    # Moved away from its project, the build cannot name that image: the error says why.
    moved = shutil.copytree(project / "dist", tmp_path / "elsewhere" / "dist")
    code, _, err = run_cli(["deploy", str(moved), "--dry-run"], capsys)
    assert code == 1
    assert "could not be named by flyte: FileNotFoundError" in err and "pyproject.toml" in err
    assert "inside its project (PROJECT/dist)" in err


def test_tasks_in_modules_that_import_the_environment_are_registered(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """The manifest names the environment's module; its tasks may live in modules that import it
    (directly, relatively, through the package): they are registered as `flyte deploy --recursive`
    registers them. A tests/ module beside them is not imported; an environment with no task at all
    is named in a warning."""
    files = {
        **{k: v for k, v in UV_IMAGE.items() if not k.startswith("src/")},
        "src/lanes/__init__.py": "from lanes.envs import env as env\n",
        "src/lanes/envs.py": """\
            import flyte

            env = flyte.TaskEnvironment(name="lanes")
            idle = flyte.TaskEnvironment(name="idle")
        """,
        "src/lanes/jobs.py": """\
            from .envs import env


            @env.task
            async def merge(a: int, b: int) -> int:
                return a + b
        """,
        "src/lanes/more/steps.py": """\
            from lanes import env
            from lanes.jobs import merge


            @env.task
            async def twice(a: int) -> int:
                return await merge(a, a)
        """,
        "src/lanes/tests/test_jobs.py": "import pytest_not_installed\nfrom lanes.jobs import merge\n",
    }
    project = write_project(tmp_path / "lanes", files)
    build_artifacts(load_project(project), project / "dist", ["bundle"])
    code, doc, err = deploy_json([str(project / "dist"), "--dry-run", "--image", IMAGE], capsys)
    assert code == 0, err
    assert doc is not None
    refs = [f"{e['module']}:{e['attribute']}" for e in manifest(project / "dist")["environments"]]
    specs = dry_run_tasks(
        project / "src", refs, image=IMAGE, version=doc["version"], mode="fast", scratch=tmp_path / "oracle",
        recursive=True, ignore_load_errors=True,  # the tests/ module fails under flyte too
    )  # fmt: skip
    assert sorted(t.task for t in specs) == ["lanes.merge", "lanes.twice"]
    assert [t["task"] for t in doc["tasks"]] == ["lanes.merge", "lanes.twice"]
    assert "environment 'idle' has no tasks" in caplog.text


def test_a_task_defined_apart_from_its_environment_runs_from_the_uploaded_bundle(
    tmp_path: Path, cp: Running
) -> None:
    """flyte's a0 runs a task registered from a module that only imports the environment."""
    files = {
        **{k: v for k, v in UV_IMAGE.items() if not k.startswith("src/")},
        "src/lanes/__init__.py": "",
        "src/lanes/envs.py": "import flyte\n\nenv = flyte.TaskEnvironment(name='lanes')\n",
        "src/lanes/steps/__init__.py": "",
        "src/lanes/steps/twice.py": """\
            from ..envs import env


            @env.task
            async def twice(a: int) -> int:
                return 2 * a
        """,
    }
    project = write_project(tmp_path / "lanes", files)
    build_artifacts(load_project(project), project / "dist", ["bundle"])
    hatch_flyte.deploy(
        project / "dist", images={"default": IMAGE}, endpoint=cp.endpoint, insecure=True, org="acme",
        project="lanes", domain="dev",
    )  # fmt: skip
    (request,) = cp.state.requests("DeployTask")
    spec = TaskSpec.registered(request.spec.task_template)
    assert (spec.task, spec.module) == ("lanes.twice", "lanes.steps.twice")
    run, got = run_on_host(project / "src", spec, {"a": 21}, tmp_path / "run", bundle=spec.option("--tgz"))
    assert run.exit_code == 0, run.logs[-3000:]
    assert got == Result(value=42)


def test_apps_are_named_and_left_to_flyte_deploy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    app = (
        "import flyte.app\n\n"
        "app = flyte.app.AppEnvironment(name='lanes-ui', image='127.0.0.1:5000/ui:1', args='serve')\n"
    )
    files = {
        **{k: v for k, v in UV_IMAGE.items() if not k.startswith("src/")},
        "src/lanes/__init__.py": "",
        "src/lanes/ui.py": app,
        "src/lanes/envs.py": "import flyte\n\nenv = flyte.TaskEnvironment(name='lanes')\n\n\n"
        "@env.task\nasync def ping() -> int:\n    return 1\n",
    }
    project = write_project(tmp_path / "lanes", files)
    build_artifacts(load_project(project), project / "dist", ["bundle"])
    code, doc, err = deploy_json([str(project / "dist"), "--dry-run", "--image", IMAGE], capsys)
    assert code == 0, err
    assert doc is not None and [t["task"] for t in doc["tasks"]] == ["lanes.ping"]
    assert [e["name"] for e in doc["environments"]] == ["lanes"]
    assert "not deployed: 'lanes-ui' is an app" in caplog.text and "has no tasks" not in caplog.text

    # With nothing but the app, nothing is registered, and the message says why.
    (project / "src/lanes/envs.py").unlink()
    build_artifacts(load_project(project), project / "dist", ["bundle"])
    code, _, err = run_cli(["deploy", str(project / "dist"), "--dry-run", "--image", IMAGE], capsys)
    assert code == 1
    assert "nothing to register: 'lanes-ui' is an app (not TaskEnvironments)" in err


def test_a_task_module_that_does_not_load_stops_the_deploy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = {
        **{k: v for k, v in UV_IMAGE.items() if not k.startswith("src/")},
        "src/lanes/__init__.py": "",
        "src/lanes/envs.py": "import flyte\n\nenv = flyte.TaskEnvironment(name='lanes')\n",
        "src/lanes/jobs.py": "import lanes_missing_dependency\n\nfrom lanes.envs import env\n",
    }
    project = write_project(tmp_path / "lanes", files)
    build_artifacts(load_project(project), project / "dist", ["bundle"])
    code, out, err = run_cli(["deploy", str(project / "dist"), "--dry-run", "--image", IMAGE], capsys)
    assert (code, out) == (1, "")
    assert "error: lanes.jobs imports lanes.envs.env (an environment listed in" in err
    assert "No module named 'lanes_missing_dependency'" in err and "Install the packages" in err


def test_usage_and_configuration_errors(
    built: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["deploy", str(built), "--mode", "slow"])
    assert exc.value.code == 2
    capsys.readouterr()

    code, _, err = run_cli(["deploy", str(built), "--mode", "full", "--dry-run"], capsys)
    assert code == 1 and "needs an image" in err and "key 'image'" in err

    deps_only = with_image(built, tmp_path / "deps-only")
    doc = manifest(deps_only)
    doc["image"]["contents"] = "dependencies"
    (deps_only / MANIFEST_NAME).write_text(json.dumps(doc))
    code, _, err = run_cli(["deploy", str(deps_only), "--mode", "full", "--dry-run"], capsys)
    assert code == 1 and "holds only the dependencies" in err and "--mode fast" in err

    code, _, err = run_cli(["deploy", str(built), "--dry-run"], capsys)  # no --image cuda=...
    assert code == 1 and "'orbit_gpu'" in err and "--image cuda=URI" in err

    with pytest.raises(DeployError, match="does not exist"):
        hatch_flyte.deploy(built, dry_run=True, config=tmp_path / "nope.yaml")


def test_unsupported_flyte_version_is_refused(built: Path, tmp_path: Path) -> None:
    """Another flyte's metadata first on sys.path: the version check reads what is installed."""
    shadow = tmp_path / "shadow" / "flyte-2.13.0.dist-info"
    shadow.mkdir(parents=True)
    (shadow / "METADATA").write_text("Metadata-Version: 2.1\nName: flyte\nVersion: 2.13.0\n")
    proc = subprocess.run(
        [str(SCRIPT), "deploy", str(built), "--dry-run"],
        capture_output=True, text=True, check=False, env={**os.environ, "PYTHONPATH": str(shadow.parent)},
    )  # fmt: skip
    assert proc.returncode == 1
    assert "flyte 2.13.0 is installed" in proc.stderr and ">=2.12.1,<2.13" in proc.stderr


def test_dry_run_contacts_nothing_and_prints_a_table(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["deploy", str(built.parent), "--dry-run", "--image", f"cuda={CUDA}"], capsys)
    assert code == 0, err
    assert f"Would register {len(TASKS)} tasks" in out and "not uploaded (dry run)" in out
    assert "orbit_gpu" in out and CUDA in out and "--image cuda" in out
    import flyte

    # No image built, none given: "auto" environments get flyte's default image, with a warning.
    default = flyte.Image.from_debian_base().uri
    assert re.search(rf"orbit_base +{re.escape(default)} +flyte default", out), out
    assert "orbit_base, orbit_flows: image 'auto'" in err and "without the project's dependencies" in err


def test_bundle_reader_reads_what_tarfile_reads(built: Path, tmp_path: Path) -> None:
    """The deploy's own tar reader against :mod:`tarfile`, on a bundle with a pax long name."""
    import gzip
    import tarfile

    from hatch_flyte.bundle import BundleOptions, build
    from hatch_flyte.deploy.loading import _tar_files

    deep = tmp_path / "tree" / ("very_long_directory_name_" * 5) / "pkg"
    deep.mkdir(parents=True)
    (deep / "module.py").write_text("X = 1\n")
    (deep / "data.bin").write_bytes(bytes(range(256)) * 9)
    for path in (bundle_path(built), build(tmp_path / "tree", tmp_path / "out", BundleOptions()).path):
        with tarfile.open(path, "r:gz") as tf:
            expected = []
            for m in tf:
                member = tf.extractfile(m)
                assert member is not None, m.name
                expected.append((m.name, member.read()))
        with gzip.open(path, "rb") as f:
            # A GzipFile is a binary file object; typeshed just does not derive it from IO[bytes].
            assert list(_tar_files(cast(IO[bytes], f))) == expected
