"""Full-build images (``-t image``) on a real Docker engine, real registries and real frontends.

Needs the environment of ``.ci/docker-env.sh`` (see ``tests/docker_env.py``): the engine, the plain
registry on 127.0.0.1:5000, the htpasswd one on 127.0.0.1:5001 and the offline Python base image.

One image of ``weather_pipeline`` is built once for the module (``weather``) and shared by the tests
that only look at it; the tests that change a project or its configuration work on copies under
their own repository names, so that no test depends on another one's tags. Builds run
``hatch-flyte build --no-isolation`` (the wheel from this environment's hatchling) except
``test_hatch_build_target_flyte_image``, which runs ``hatch build -t flyte:image`` in hatch's own
isolated build environment. The pod project (``tests/flyte_runtime.py``: same requirements, so the
same dependency image) is built once too (``pod``), and flyte's own ``a0`` runs its task in it.

The dependency wheelhouse is cached by its inputs under ``HATCH_FLYTE_CACHE_DIR`` (default
``$XDG_CACHE_HOME/hatch-flyte``), so only the first run on a machine downloads it. Every image and
build-cache image the module makes is removed at its end; registries keep what was pushed (fresh
repository names each run).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from docker_env import (
    AUTH_REGISTRY_VAR,
    AuthRegistry,
    find_base_image,
    find_registry,
    make_docker_client,
    setting,
    unique_repository,
)
from fake_control_plane import Running, Upload
from flyte_runtime import (
    PodCase,
    TaskSpec,
    assert_pod_ran,
    make_pod_project,
    prepare_pod_case,
    require_base_usable_by_any_user,
    run_pod_case,
)
from frontend_helpers import EPOCH, copy_project, wheel_flyte_metadata
from test_frontends import WEATHER_EPS

if TYPE_CHECKING:
    import docker

pytestmark = [pytest.mark.docker, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
#: ``org.opencontainers.image.created`` for SOURCE_DATE_EPOCH = EPOCH (1700000000).
CREATED = "2023-11-14T22:13:20Z"
CONTENT_TAG = re.compile(r"h[0-9a-f]{20}")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
#: Keys hatch-flyte may set under org.opencontainers.image (the spec's own, nothing invented).
OCI_KEYS = {"created", "version", "revision", "source", "title", "description", "licenses"}
OCI_KEYS |= {"base.name", "base.digest"}
_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
DEPS_REPOSITORY = "hatch-flyte/deps"


# --- helpers -----------------------------------------------------------------------------------------


@dataclass
class Engine:
    """The module's view of the test engine: a client, the base image, the plain registry."""

    client: docker.DockerClient
    base: str
    registry: str
    #: An empty DOCKER_CONFIG, so that no credentials of this machine's ~/.docker leak into a test.
    docker_config: Path
    #: Repositories whose images the module removes at its end.
    repos: set[str] = field(default_factory=set)

    def new_name(self, what: str, registry: str | None = None) -> str:
        """A fresh ``tool.flyte.image.name`` (``hatch-flyte-test/<what>-<hex>``); its images in
        ``registry`` (default: the plain one) are removed at the end."""
        repo = unique_repository(registry or self.registry, what)
        self.repos.add(repo)
        return repo.split("/", 1)[1]

    @property
    def arch(self) -> str:
        arch = str(self.client.version().get("Arch", ""))
        return _ARCH.get(arch, arch)


def tool_env(engine: Engine, **extra: str) -> dict[str, str]:
    """The environment of a frontend run: the test engine, fixed SOURCE_DATE_EPOCH, no registry creds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HATCH_FLYTE_REGISTRY_")}
    env.update(
        SOURCE_DATE_EPOCH=EPOCH,
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        DOCKER_CONFIG=str(engine.docker_config),
    )
    docker_host = setting("DOCKER_HOST")
    if docker_host:
        env["DOCKER_HOST"] = docker_host
    env.update(extra)
    return env


def run(
    cmd: list[str], cwd: Path, env: dict[str, str], ok: bool = True, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if ok and proc.returncode != 0:
        raise AssertionError(
            f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


def hatch_flyte_build(
    engine: Engine, project: Path, ok: bool = True, **env: str
) -> subprocess.CompletedProcess[str]:
    """``hatch-flyte build PROJECT -t wheel,bundle,image --no-isolation --json``."""
    cmd = [str(BIN / "hatch-flyte"), "build", str(project), "-t", "wheel,bundle,image"]
    cmd += ["--no-isolation", "--json"]
    return run(cmd, project.parent, tool_env(engine, **env), ok=ok)


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)


def configure_image(project: Path, **keys: object) -> None:
    """Append ``[tool.flyte.image]`` (keys with ``_`` written as ``-``) to the project's pyproject.toml."""
    lines = ["", "[tool.flyte.image]", *(f"{k.replace('_', '-')} = {_toml(v)}" for k, v in keys.items())]
    with (project / "pyproject.toml").open("a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def copy_of(project: Path, dest: Path) -> Path:
    """A copy of an already configured project, without its build outputs."""
    target = dest / project.name
    shutil.copytree(project, target, ignore=shutil.ignore_patterns("dist", "build", "__pycache__"))
    return target


def read_manifest(project: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((project / "dist" / "flyte-manifest.json").read_text())
    return data


def check_wheel_and_bundle(project: Path, manifest: dict[str, Any]) -> None:
    """The wheel and the bundle are on disk, listed with their sha256, and readable."""
    dist = project / "dist"
    listed = {a["kind"]: a for a in manifest["artifacts"]}
    assert sorted(listed) == ["bundle", "wheel"]
    for entry in listed.values():
        path = dist / entry["name"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"], path
        assert path.stat().st_size == entry["size"]
    wheel = dist / listed["wheel"]["name"]
    with zipfile.ZipFile(wheel) as zf:
        assert zf.testzip() is None
    assert wheel_flyte_metadata(wheel)[0] == WEATHER_EPS
    with tarfile.open(dist / listed["bundle"]["name"]) as tf:
        assert "weather_pipeline/tasks.py" in tf.getnames()


def remove_images(client: docker.DockerClient, *, repo: str | None = None, ids: Iterable[str] = ()) -> None:
    """Remove every image tagged (or pulled by digest) in ``repo`` and the images ``ids``."""
    import docker.errors

    targets = set(ids)
    if repo is not None:
        targets |= {image.id for image in client.images.list(name=repo)}
    for image_id in targets:
        # Already gone with another image, or still the parent of one that is not ours: leave it.
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(image_id, force=True)


def docker_errors() -> Any:
    import docker.errors

    return docker.errors


def deps_images(client: docker.DockerClient) -> set[str]:
    """Tags of the dependency images in the engine (``hatch-flyte/deps:<key>``)."""
    return {tag for image in client.images.list(name=DEPS_REPOSITORY) for tag in image.tags}


def build_cache_images(client: docker.DockerClient, base_id: str) -> set[str]:
    """Untagged images of the dependency image's install stage built right on ``base_id`` (the
    classic builder's cache: RUN pip install <- COPY wheelhouse <- base)."""
    import docker.errors

    out = set()
    for image in client.images.list(filters={"dangling": True}):
        cmd = (image.attrs.get("ContainerConfig") or {}).get("Cmd") or []
        if "/tmp/wheelhouse/requirements.txt" not in " ".join(cmd):
            continue
        try:
            copy_step = client.images.get(image.attrs.get("Parent") or "")
        except (docker.errors.NotFound, docker.errors.APIError):
            continue
        if copy_step.attrs.get("Parent") == base_id:
            out.add(image.id)
    return out


def containers_from(client: docker.DockerClient, image: str) -> set[str]:
    """Containers (running or not) whose image is ``image`` or one built on it."""
    return {c.id for c in client.containers.list(all=True, filters={"ancestor": image})}


def build_derived_image(client: Any, base: str, tag: str, *instructions: str) -> None:
    """``FROM base`` plus ``instructions``, built with no network and tagged ``tag`` (never pushed)."""
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        dockerfile = "\n".join([f"FROM {base}", *instructions, ""]).encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
    context.seek(0)
    stream = client.api.build(
        fileobj=context, custom_context=True, tag=tag, decode=True, rm=True, forcerm=True,
        network_mode="none",
    )  # fmt: skip
    errors = [chunk for chunk in stream if "error" in chunk]
    assert not errors, errors


def built_on(client: docker.DockerClient, image_id: str) -> list[str]:
    """Ids of the images whose parent chain reaches ``image_id``, children before their parents."""
    parents = {image.id: image.attrs.get("Parent") or "" for image in client.images.list(all=True)}

    def depth(i: str) -> int:
        d = 0
        while i and i != image_id:
            i, d = parents.get(i, ""), d + 1
        return d if i == image_id else -1

    found = [(depth(i), i) for i in parents if i != image_id]
    return [i for d, i in sorted(found, reverse=True) if d > 0]


def history(client: docker.DockerClient, image_id: str) -> list[tuple[str, str]]:
    """``docker history``, oldest step first: (intermediate image id, instruction)."""
    return [(h["Id"], h["CreatedBy"]) for h in reversed(client.api.history(image_id))]


def registry_get(
    host: str, path: str, auth: tuple[str, str] | None = None
) -> tuple[dict[str, str], dict[str, Any]]:
    """``GET http://HOST/v2/PATH`` (manifests in the Docker v2 schema): headers and JSON body."""
    accept = ", ".join(
        ["application/vnd.docker.distribution.manifest.v2+json", "application/vnd.oci.image.manifest.v1+json"]
    )
    request = urllib.request.Request(f"http://{host}/v2/{path}", headers={"Accept": accept})
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=30) as response:
        return dict(response.headers), json.loads(response.read())


def split_ref(ref: str) -> tuple[str, str, str]:
    """``host:port/name:tag`` -> (host:port, name, tag)."""
    repo, _, tag = ref.rpartition(":")
    host, _, name = repo.partition("/")
    return host, name, tag


# --- fixtures ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plugin(plugin_wheel: Path) -> Path:
    """A wheel of this checkout, for the copies' ``build-system.requires`` (the session's)."""
    return plugin_wheel


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    client = make_docker_client()
    base = find_base_image(client)
    registry = find_registry()
    base_id = client.images.get(base).id
    cache_before = build_cache_images(client, base_id)
    deps_before = deps_images(client)
    eng = Engine(client, base, registry, tmp_path_factory.mktemp("docker-config"))
    try:
        yield eng
    finally:
        for repo in sorted(eng.repos):
            remove_images(client, repo=repo)
        # The dependency images and their install stage, unless an earlier build had made them.
        for tag in sorted(deps_images(client) - deps_before):
            with contextlib.suppress(docker_errors().APIError):
                client.images.remove(tag)
        remove_images(client, ids=build_cache_images(client, base_id) - cache_before)
        client.close()


@dataclass(frozen=True)
class Built:
    project: Path
    repo: str
    manifest: dict[str, Any]
    seconds: float

    @property
    def image(self) -> dict[str, Any]:
        image: dict[str, Any] = self.manifest["image"]
        return image


@pytest.fixture(scope="module")
def weather(engine: Engine, plugin: Path, tmp_path_factory: pytest.TempPathFactory) -> Built:
    """weather_pipeline built once: ``hatch-flyte build -t wheel,bundle,image`` on the test base."""
    project = copy_project("weather_pipeline", tmp_path_factory.mktemp("weather"), plugin)
    name = engine.new_name("weather")
    configure_image(project, base=engine.base, registry=engine.registry, name=name)
    started = time.monotonic()
    proc = hatch_flyte_build(engine, project)
    seconds = time.monotonic() - started
    manifest = json.loads(proc.stdout)
    assert manifest == read_manifest(project)
    return Built(project, f"{engine.registry}/{name}", manifest, seconds)


@pytest.fixture
def no_leftover_containers(docker_client: docker.DockerClient, base_image: str) -> Iterator[None]:
    """The test leaves no container behind (build steps, the base probe, ``docker run``)."""
    before = containers_from(docker_client, base_image)
    yield
    left = containers_from(docker_client, base_image) - before
    # Another build on the same engine (a parallel session, a benchmark) has short-lived step
    # containers of its own; ours would stay. Give transient ones a moment to go away.
    deadline = time.monotonic() + 20
    while left and time.monotonic() < deadline:
        time.sleep(1)
        left &= containers_from(docker_client, base_image)
    assert not left, f"containers left behind: {sorted(left)}"


# --- 1. the image and the manifest ---------------------------------------------------------------------


def test_manifest_image_matches_engine(weather: Built, engine: Engine, docker_client: Any) -> None:
    image = weather.image
    repo = weather.repo
    content_tag = image["ref"].rpartition(":")[2]
    assert CONTENT_TAG.fullmatch(content_tag), image["ref"]
    assert image["ref"] == f"{repo}:{content_tag}"
    assert image["tags"] == [image["ref"], f"{repo}:0.3.0"]
    assert image["backend"] == "docker"
    assert image["digest"] is None  # not pushed

    built = docker_client.images.get(image["ref"])
    assert built.id == image["id"]
    assert sorted(built.tags) == sorted(image["tags"])
    assert image["platform"] == f"linux/{engine.arch}"
    assert (built.attrs["Os"], built.attrs["Architecture"]) == ("linux", engine.arch)

    base = docker_client.images.get(engine.base)
    # The base's digest in its own repository when the engine has one (pulled by that name), else
    # none: a digest it got from being pushed elsewhere says nothing about `base`, and its id is
    # not a manifest digest.
    base_repo = engine.base.rpartition(":")[0] if ":" in engine.base.rpartition("/")[2] else engine.base
    own = [d.split("@", 1)[1] for d in base.attrs.get("RepoDigests") or [] if d.split("@", 1)[0] == base_repo]
    expected_base_digest = own[0] if own else None
    assert (image["base"], image["base_digest"]) == (engine.base, expected_base_digest)
    # The image is the base plus layers: the base's layers come first, unchanged.
    base_layers = base.attrs["RootFS"]["Layers"]
    assert built.attrs["RootFS"]["Layers"][: len(base_layers)] == base_layers

    config = built.attrs["Config"]
    labels = {k.removeprefix("org.opencontainers.image."): v for k, v in config["Labels"].items()}
    assert set(labels) <= OCI_KEYS, f"unexpected label keys: {set(labels) - OCI_KEYS}"
    revision = labels.pop("revision", None)
    assert revision is None or re.fullmatch(r"[0-9a-f]{40}", revision)
    description = "Daily weather station statistics on Flyte 2 (hatch-flyte example: hatchling, src layout)."
    assert labels == {
        "created": CREATED,
        "version": "0.3.0",
        "title": "weather-pipeline",
        "description": description,
        "base.name": engine.base,
        **({"base.digest": expected_base_digest} if expected_base_digest else {}),
    }
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["_F_IMG_ID"] == image["ref"]
    assert env["VIRTUAL_ENV"] == "/opt/venv"
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert config["WorkingDir"] == "/home/flyte"

    # The wheel and the bundle of the same run are listed next to the image.
    check_wheel_and_bundle(weather.project, weather.manifest)
    assert weather.manifest["wheel"]["name"] == "weather_pipeline-0.3.0-py3-none-any.whl"
    print(f"first image build of weather_pipeline: {weather.seconds:.1f}s")


# --- 2. it runs ----------------------------------------------------------------------------------------

PROBE = r"""
import asyncio, importlib.metadata as md, importlib.util, json, os, shutil, subprocess, sys, sysconfig
import flyte
import weather_pipeline
from weather_pipeline import tasks

purelib = sysconfig.get_paths()["purelib"]
envs = {}
for ep in md.entry_points(group="flyte.environments"):
    env = ep.load()
    envs[ep.name] = {
        "value": ep.value,
        "dist": ep.dist.name if ep.dist else None,
        "is_task_environment": isinstance(env, flyte.TaskEnvironment),
        "name": env.name,
        "tasks": sorted(env.tasks),
    }
with open("probe.txt", "w") as f:
    f.write("written")
a0 = subprocess.run(["a0", "--help"], capture_output=True, text=True)
print(json.dumps({
    "executable": sys.executable,
    "purelib": purelib,
    "package": weather_pipeline.__file__,
    "copies": [p for p in sys.path if os.path.isdir(os.path.join(p or ".", "weather_pipeline"))],
    "source_dir": os.path.exists("/opt/hatch-flyte/source"),
    "flyte": flyte.__version__,
    "flyte_bytecode": os.path.exists(importlib.util.cache_from_source(flyte.__file__)),
    "installer": md.distribution("weather-pipeline").read_text("INSTALLER"),
    "envs": envs,
    "means": asyncio.run(tasks.station_means.func()),
    "a0": shutil.which("a0"),
    "a0_help": [a0.returncode, a0.stdout[:200]],
    "tar": shutil.which("tar"),
    "cwd": os.getcwd(),
    "written": open(os.path.join(os.getcwd(), "probe.txt")).read(),
}))
"""


def expected_means(project: Path) -> dict[str, float]:
    """The task's result computed on the host from the project's source (its logic has no flyte import)."""
    code = (
        "import json; from weather_pipeline.logic.cleaning import drop_outliers, load_readings; "
        "from weather_pipeline.logic.stats import daily_means; "
        "print(json.dumps(daily_means(drop_outliers(load_readings()))))"
    )
    env = {**os.environ, "PYTHONPATH": str(project / "src")}
    means: dict[str, float] = json.loads(run([sys.executable, "-c", code], project, env).stdout)
    return means


def test_image_runs_offline(weather: Built, docker_client: Any, no_leftover_containers: None) -> None:
    image_id = weather.image["id"]
    out = docker_client.containers.run(
        image_id, ["python", "-c", PROBE], network_disabled=True, remove=True, stdout=True, stderr=False
    )
    data = json.loads(out.decode().strip().splitlines()[-1])

    assert data["executable"] == "/opt/venv/bin/python"
    site_packages = data["purelib"]
    assert re.fullmatch(r"/opt/venv/lib/python3\.\d+/site-packages", site_packages)
    # The installed wheel, not a copy of the source: no other weather_pipeline on sys.path.
    assert data["package"] == f"{site_packages}/weather_pipeline/__init__.py"
    assert data["copies"] == [site_packages]
    assert data["source_dir"] is False
    assert data["flyte"]
    # The dependencies come compiled (pip's default, as in flyte's own images); the project's wheel
    # was laid out on the host by hatch-flyte, as pip would have installed it.
    assert data["flyte_bytecode"] is True
    assert data["installer"] == "hatch-flyte\n"
    assert data["envs"] == {
        "weather": {
            "value": WEATHER_EPS["weather"],
            "dist": "weather-pipeline",
            "is_task_environment": True,
            "name": "weather",
            "tasks": ["weather.report", "weather.station_means"],
        }
    }
    assert data["means"] == expected_means(weather.project)
    assert data["a0"] == "/opt/venv/bin/a0"
    assert data["a0_help"][0] == 0 and "Usage: a0" in data["a0_help"][1]
    assert data["tar"]
    assert (data["cwd"], data["written"]) == ("/home/flyte", "written")
    assert not containers_from(docker_client, image_id)


def test_base_python_probed_once_per_image_id(
    engine: Engine, docker_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The base's Python is found by running it once per image id: the engine shows no probe
    container on a later build from the same image, and one for an image with another id."""
    from hatch_flyte.image import basecache
    from hatch_flyte.image.docker import backend as docker_backend

    monkeypatch.setattr(basecache, "cache_dir", lambda: tmp_path / "cache")
    # Another image id with the same filesystem: a label on top of the base (tagged, never pushed).
    other = f"{engine.registry}/{engine.new_name('probe-base')}:1"
    build_derived_image(docker_client, engine.base, other, "LABEL io.github.hatch-flyte.test=probe-cache")

    def probe(image: str, python: str | None = None) -> tuple[Any, int]:
        """inspect_base(image), and how many containers the engine created from the image meanwhile."""
        image_id = docker_client.images.get(image).id
        time.sleep(1.1)  # events are filtered by whole seconds
        since = time.time()
        found = docker_backend.inspect_base(docker_client, image, python)
        time.sleep(1.1)
        # Probe containers only (they carry this label): a step container of another build on the
        # same engine, or one of the derived image's build a second earlier, is not a probe.
        filters = {"type": "container", "event": "create", "label": "org.hatch-flyte.probe"}
        events = docker_client.events(since=since, until=time.time(), decode=True, filters=filters)
        return found, sum(1 for event in events if event.get("from") == image_id)

    first, n_first = probe(engine.base)
    again, n_again = probe(engine.base)
    assert (n_first, n_again) == (1, 0)
    assert again == first and first.python == "python3" and first.python_version[0] == 3
    found, n_other = probe(other)
    assert n_other == 1 and found.python_version == first.python_version
    # Another interpreter asked for: a question of its own, probed again.
    _, n_named = probe(engine.base, "python3")
    assert n_named == 1


def test_base_digest_is_the_manifest_digest_of_the_base_in_its_repository(
    engine: Engine, docker_client: Any
) -> None:
    """``base.digest`` is what ``base.name@digest`` resolves: the manifest digest the registry gives
    for the base under its own name, never the image id; unknown (a local image) means no label."""
    from hatch_flyte.image.docker import backend as docker_backend
    from hatch_flyte.image.plan import oci_labels

    name = engine.new_name("digest-base")
    ref = f"{engine.registry}/{name}:1"
    docker_client.images.get(engine.base).tag(f"{engine.registry}/{name}", "1")
    for chunk in docker_client.images.push(f"{engine.registry}/{name}", tag="1", stream=True, decode=True):
        assert "error" not in chunk, chunk
    headers, _ = registry_get(engine.registry, f"{name}/manifests/1")
    info = docker_backend.inspect_base(docker_client, ref, None)
    assert info.digest == headers["Docker-Content-Digest"] != info.id
    labels = oci_labels(created_epoch=0, version=None, title=None, description=None, licenses=None,
                        revision=None, base=ref, base_digest=info.digest)  # fmt: skip
    assert labels["org.opencontainers.image.base.digest"] == info.digest
    # The same image under a name it was never pushed or pulled by: no digest of its own, no label
    # (its digests in other repositories say nothing about this name).
    unpushed = f"{engine.registry}/{engine.new_name('unpushed-base')}"
    docker_client.images.get(engine.base).tag(unpushed, "1")
    local = docker_backend.inspect_base(docker_client, f"{unpushed}:1", None)
    assert local.digest is None and local.id == info.id
    labels = oci_labels(created_epoch=0, version=None, title=None, description=None, licenses=None,
                        revision=None, base=f"{unpushed}:1", base_digest=None)  # fmt: skip
    assert "org.opencontainers.image.base.digest" not in labels


# --- 3. layer reuse ------------------------------------------------------------------------------------


def test_code_only_rebuild_reuses_every_other_layer(
    weather: Built, engine: Engine, docker_client: Any, base_image: str, tmp_path: Path
) -> None:
    project = copy_of(weather.project, tmp_path)
    pyproject = project / "pyproject.toml"
    name = engine.new_name("rebuild")
    text = pyproject.read_text().replace(weather.repo.split("/", 1)[1], name)
    # A console script: laid out on the host, it must still run in the image's venv.
    text = text.replace(
        "[tool.flyte.image]",
        '[project.scripts]\nweather-hello = "weather_pipeline.hello:main"\n\n[tool.flyte.image]',
    )
    pyproject.write_text(text)
    (project / "src" / "weather_pipeline" / "hello.py").write_text(
        "import sys\n\ndef main():\n    print('hello from', sys.executable)\n"
    )

    first = hatch_flyte_build(engine, project)
    old = json.loads(first.stdout)["image"]

    # Unchanged rebuild: same content tag, same image id (every step from the engine's cache).
    again = json.loads(hatch_flyte_build(engine, project).stdout)["image"]
    assert (again["ref"], again["id"], again["tags"]) == (old["ref"], old["id"], old["tags"])

    # A code-only change: one task's body.
    tasks = project / "src" / "weather_pipeline" / "tasks.py"
    source = tasks.read_text()
    assert 'return ", ".join(' in source
    tasks.write_text(source.replace('return ", ".join(', 'return " | ".join('))
    rebuilt_proc = hatch_flyte_build(engine, project)
    new = json.loads(rebuilt_proc.stdout)["image"]
    assert new["ref"] != old["ref"] and new["id"] != old["id"]
    assert CONTENT_TAG.fullmatch(new["ref"].rpartition(":")[2])
    assert new["tags"][1] == old["tags"][1] == f"{engine.registry}/{name}:0.3.0"
    assert docker_client.images.get(new["tags"][1]).id == new["id"]  # the version tag moved

    # docker history: every step before the ENV naming the image came from the cache (same
    # intermediate image ids); from there on, every step is new.
    old_steps, new_steps = history(docker_client, old["id"]), history(docker_client, new["id"])
    names_image = re.compile(r"#\(nop\)\s+ENV _F_IMG_ID=")
    project_copy = re.compile(r"#\(nop\) COPY dir:[0-9a-f]+ in / *$")
    cut = next(i for i, (_, step) in enumerate(new_steps) if names_image.search(step))
    assert names_image.search(old_steps[cut][1])
    assert [i for i, _ in new_steps[:cut]] == [i for i, _ in old_steps[:cut]]
    assert not {i for i, _ in new_steps[cut:]} & {i for i, _ in old_steps[cut:]}
    # Only the image's name and the project's files are rebuilt: no RUN, no pip.
    rebuilt = [step for _, step in new_steps[cut:]]
    assert len(rebuilt) == 2 and project_copy.search(rebuilt[1]), rebuilt
    assert new["ref"] in rebuilt[0]
    # Below the labels: the dependency image, under its tag, the same one for all three builds.
    assert "LABEL " in new_steps[cut - 1][1]
    deps_tags = docker_client.images.get(new_steps[cut - 2][0]).tags
    assert [t for t in deps_tags if re.fullmatch(rf"{DEPS_REPOSITORY}:h[0-9a-f]{{20}}", t)], deps_tags
    # The dependency image was built once (it already was, by the module's build): never here.
    for proc in (first, rebuilt_proc):
        assert "building the dependency image" not in proc.stderr, proc.stderr

    # RootFS: the base's layers and the dependencies' layer are shared; the project's layer differs.
    base_layers = docker_client.images.get(base_image).attrs["RootFS"]["Layers"]
    old_layers = docker_client.images.get(old["id"]).attrs["RootFS"]["Layers"]
    new_layers = docker_client.images.get(new["id"]).attrs["RootFS"]["Layers"]
    shared = len(base_layers) + 2  # the dependency image: the workdir's RUN and the venv's COPY
    assert len(old_layers) == len(new_layers) == shared + 1
    assert new_layers[:shared] == old_layers[:shared] and new_layers[: len(base_layers)] == base_layers
    assert new_layers[shared] != old_layers[shared]

    # The new layer holds the new code, and the console script runs with the venv's Python.
    code = "import inspect, weather_pipeline.tasks as t; print(inspect.getsource(t.report.func))"
    out = docker_client.containers.run(new["id"], ["python", "-c", code], network_disabled=True, remove=True)
    assert '" | ".join(' in out.decode()
    out = docker_client.containers.run(new["id"], ["weather-hello"], network_disabled=True, remove=True)
    assert out.decode().strip() == "hello from /opt/venv/bin/python"
    assert not containers_from(docker_client, new["id"])

    # With a tag that stays (`tags = ["dev"]`) the image's name does not change with the code: a
    # code-only change rebuilds the project's COPY alone.
    pyproject.write_text(pyproject.read_text() + 'tags = ["dev"]\n')  # [tool.flyte.image] is last
    dev = json.loads(hatch_flyte_build(engine, project).stdout)["image"]
    assert dev["tags"] == [f"{engine.registry}/{name}:dev"]
    tasks.write_text(tasks.read_text().replace('" | ".join(', '" / ".join('))
    dev2 = json.loads(hatch_flyte_build(engine, project).stdout)["image"]
    assert dev2["ref"] == dev["ref"] and dev2["id"] != dev["id"]
    dev_steps, dev2_steps = history(docker_client, dev["id"]), history(docker_client, dev2["id"])
    assert [i for i, _ in dev2_steps[:-1]] == [i for i, _ in dev_steps[:-1]]
    assert project_copy.search(dev2_steps[-1][1]) and dev2_steps[-1][0] != dev_steps[-1][0]
    # The first dev image lost its only tag to the second: not removed with the repository's tags.
    remove_images(docker_client, ids=[dev["id"]])


# --- 4. push to the plain registry ---------------------------------------------------------------------


def test_push_records_digest_and_pulls_back(
    weather: Built, engine: Engine, docker_client: Any, tmp_path: Path
) -> None:
    project = copy_of(weather.project, tmp_path)
    pyproject = project / "pyproject.toml"
    name = engine.new_name("push")
    text = pyproject.read_text().replace(weather.repo.split("/", 1)[1], name)
    # A PEP 440 local version: `+` is not allowed in a tag, the version tag reads 0.3.0-build.7.
    text = text.replace('version = "0.3.0"', 'version = "0.3.0+build.7"')
    pyproject.write_text(text + "push = true\n")  # [tool.flyte.image] is the file's last table
    image = json.loads(hatch_flyte_build(engine, project).stdout)["image"]
    repo = f"{engine.registry}/{name}"
    content_tag = image["ref"].rpartition(":")[2]
    assert image["tags"] == [f"{repo}:{content_tag}", f"{repo}:0.3.0-build.7"]
    assert DIGEST.fullmatch(image["digest"] or ""), image
    assert read_manifest(project)["image"]["digest"] == image["digest"]

    # The registry holds both tags, as this very image (its config digest is the image id).
    host, path, _ = split_ref(image["ref"])
    _, tag_list = registry_get(host, f"{path}/tags/list")
    assert sorted(tag_list["tags"]) == sorted([content_tag, "0.3.0-build.7"])
    headers, manifest = registry_get(host, f"{path}/manifests/{content_tag}")
    assert headers["Docker-Content-Digest"] == image["digest"]
    assert manifest["config"]["digest"] == image["id"]

    # Pull it back by digest, with the local copy gone first, so the layers come from the registry.
    docker_client.images.remove(image["id"], force=True)
    pulled = docker_client.images.pull(f"{repo}@{image['digest']}")
    assert pulled.id == image["id"]
    assert f"{repo}@{image['digest']}" in pulled.attrs["RepoDigests"]


# --- 5. push to the registry with auth ----------------------------------------------------------------


@pytest.fixture(scope="module")
def auth_name(engine: Engine) -> str:
    """One repository name for the module's pushes to the auth registry: after the first build, the
    others are served from the engine's cache."""
    return engine.new_name("auth", setting(AUTH_REGISTRY_VAR))


def _auth_build(
    weather: Built, engine: Engine, auth_registry: AuthRegistry, name: str, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """``build_image(..., push=True)`` to the auth registry, in process, from the module's wheel."""
    from hatch_flyte.image import build_image
    from hatch_flyte.project import load_project

    for key, value in tool_env(engine).items():
        if key in ("DOCKER_HOST", "SOURCE_DATE_EPOCH"):
            monkeypatch.setenv(key, value)
    project = load_project(weather.project)
    wheel = weather.project / "dist" / weather.manifest["wheel"]["name"]
    config = replace(project.config.image, registry=auth_registry.host, name=name)
    return build_image(project, wheel, config, push=True)


def _check_in_auth_registry(result: Any, auth_registry: AuthRegistry) -> None:
    assert DIGEST.fullmatch(result.digest or "")
    host, path, tag = split_ref(result.ref)
    assert host == auth_registry.host
    with pytest.raises(urllib.error.HTTPError) as denied:
        registry_get(host, f"{path}/manifests/{tag}")
    assert denied.value.code == 401
    headers, manifest = registry_get(
        host, f"{path}/manifests/{tag}", auth=(auth_registry.username, auth_registry.password)
    )
    assert headers["Docker-Content-Digest"] == result.digest
    assert manifest["config"]["digest"] == result.id


def test_push_auth_registry_credentials_from_environment(
    weather: Built,
    engine: Engine,
    auth_registry: AuthRegistry,
    auth_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(engine.docker_config))  # nothing there
    monkeypatch.setenv("HATCH_FLYTE_REGISTRY_USER", auth_registry.username)
    monkeypatch.setenv("HATCH_FLYTE_REGISTRY_PASSWORD", auth_registry.password)
    _check_in_auth_registry(
        _auth_build(weather, engine, auth_registry, auth_name, monkeypatch), auth_registry
    )


def test_push_auth_registry_credentials_from_docker_config(
    weather: Built,
    engine: Engine,
    auth_registry: AuthRegistry,
    auth_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config_dir = tmp_path / "docker-config"
    config_dir.mkdir()
    token = base64.b64encode(f"{auth_registry.username}:{auth_registry.password}".encode()).decode()
    (config_dir / "config.json").write_text(json.dumps({"auths": {auth_registry.host: {"auth": token}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config_dir))
    monkeypatch.delenv("HATCH_FLYTE_REGISTRY_USER", raising=False)
    monkeypatch.delenv("HATCH_FLYTE_REGISTRY_PASSWORD", raising=False)
    _check_in_auth_registry(
        _auth_build(weather, engine, auth_registry, auth_name, monkeypatch), auth_registry
    )


@pytest.mark.parametrize("credentials", ["wrong-password", "none"])
def test_push_auth_registry_refused(
    weather: Built,
    engine: Engine,
    auth_registry: AuthRegistry,
    auth_name: str,
    tmp_path: Path,
    credentials: str,
    no_leftover_containers: None,
) -> None:
    project = copy_of(weather.project, tmp_path)
    pyproject = project / "pyproject.toml"
    name = auth_name
    text = pyproject.read_text().replace(weather.repo.split("/", 1)[1], name)
    text = text.replace(f'registry = "{engine.registry}"', f'registry = "{auth_registry.host}"')
    pyproject.write_text(text + "push = true\n")
    env = {}
    if credentials == "wrong-password":
        env = {"HATCH_FLYTE_REGISTRY_USER": auth_registry.username, "HATCH_FLYTE_REGISTRY_PASSWORD": "wrong"}
    proc = hatch_flyte_build(engine, project, ok=False, **env)
    assert proc.returncode == 1 and proc.stdout == ""
    assert "error: pushing " in proc.stderr, proc.stderr
    assert f"{auth_registry.host}/{name}:" in proc.stderr
    assert f"registry {auth_registry.host} " in proc.stderr
    assert "HATCH_FLYTE_REGISTRY_USER" in proc.stderr
    assert "Traceback" not in proc.stderr
    # The manifest was written before the image step and claims no image.
    manifest = read_manifest(project)
    assert manifest["image"] is None
    check_wheel_and_bundle(project, manifest)


# --- 6. faults -----------------------------------------------------------------------------------------


@pytest.fixture
def weather_copy(weather: Built, engine: Engine, tmp_path: Path) -> Path:
    """A copy of the module's project under a fresh image name (the last table is [tool.flyte.image])."""
    project = copy_of(weather.project, tmp_path)
    pyproject = project / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace(weather.repo.split("/", 1)[1], engine.new_name("fault"))
    )
    return project


def _failed(proc: subprocess.CompletedProcess[str], project: Path) -> str:
    """The build failed cleanly: exit 1, one error, and the wheel and bundle written with a manifest
    that claims no image."""
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.count("error: ") == 1 and "Traceback" not in proc.stderr, proc.stderr
    manifest = read_manifest(project)
    assert manifest["image"] is None
    check_wheel_and_bundle(project, manifest)
    return proc.stderr


def test_no_engine(engine: Engine, weather_copy: Path, no_leftover_containers: None) -> None:
    nowhere = "unix:///nonexistent.sock"
    err = _failed(hatch_flyte_build(engine, weather_copy, ok=False, DOCKER_HOST=nowhere), weather_copy)
    assert f"no Docker engine answered at {nowhere}" in err
    assert "DOCKER_HOST" in err
    assert "wheel and the bundle of this build are written" in err


@pytest.mark.parametrize("where", ["hub", "registry"])
def test_base_image_missing(
    engine: Engine, weather_copy: Path, where: str, no_leftover_containers: None
) -> None:
    missing = unique_repository(engine.registry, "no-such-base") + ":1"
    if where == "hub":  # no internet: the engine cannot reach Docker Hub
        missing = missing.split("/", 1)[1]
    pyproject = weather_copy / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace(f'base = "{engine.base}"', f'base = "{missing}"'))
    err = _failed(hatch_flyte_build(engine, weather_copy, ok=False), weather_copy)
    assert f"base image {missing!r} is not in the engine" in err and "cannot be pulled" in err
    assert "tool.flyte.image.base" in err


def test_dependency_that_does_not_exist(
    engine: Engine, weather_copy: Path, no_leftover_containers: None
) -> None:
    pyproject = weather_copy / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + 'extra-packages = ["definitely-not-a-real-package-xyz"]\n')
    err = _failed(hatch_flyte_build(engine, weather_copy, ok=False), weather_copy)
    assert "cannot resolve the image's dependencies into a wheelhouse" in err
    assert "definitely-not-a-real-package-xyz" in err


def test_install_step_failing_in_the_engine(
    engine: Engine, weather_copy: Path, docker_client: Any, no_leftover_containers: None
) -> None:
    """A base without tar passes the host's checks; the dependency image's RUN refuses it. The build
    fails with that message, removes its containers and tags no dependency image."""
    no_tar = f"{engine.registry}/{engine.new_name('no-tar-base')}:1"
    build_derived_image(docker_client, engine.base, no_tar, "RUN rm -f /usr/bin/tar /bin/tar")
    pyproject = weather_copy / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace(f'base = "{engine.base}"', f'base = "{no_tar}"'))
    deps_before = deps_images(docker_client)
    try:
        err = _failed(hatch_flyte_build(engine, weather_copy, ok=False), weather_copy)
        assert "the image build failed" in err
        assert "the base image has no tar, which flyte needs to extract bundles" in err
        assert deps_images(docker_client) == deps_before
    finally:
        # The steps before the failing one stay in the engine's cache as children of the base, which
        # then cannot be removed by its name at the module's end: remove them first.
        remove_images(docker_client, ids=built_on(docker_client, docker_client.images.get(no_tar).id))


def test_project_without_flyte(engine: Engine, weather_copy: Path, no_leftover_containers: None) -> None:
    pyproject = weather_copy / "pyproject.toml"
    text = pyproject.read_text()
    assert 'dependencies = ["flyte>=2.12"]' in text
    pyproject.write_text(text.replace('dependencies = ["flyte>=2.12"]', "dependencies = []"))
    err = _failed(hatch_flyte_build(engine, weather_copy, ok=False), weather_copy)
    assert "does not depend on flyte" in err and "extra-packages" in err


def test_registry_down(engine: Engine, weather_copy: Path, no_leftover_containers: None) -> None:
    down = "127.0.0.1:5999"
    pyproject = weather_copy / "pyproject.toml"
    text = pyproject.read_text().replace(f'registry = "{engine.registry}"', f'registry = "{down}"')
    name = re.search(r'name = "([^"]+)"', text.split("[tool.flyte.image]")[1])
    assert name is not None
    engine.repos.add(f"{down}/{name.group(1)}")
    pyproject.write_text(text + "push = true\n")
    err = _failed(hatch_flyte_build(engine, weather_copy, ok=False), weather_copy)
    assert f"error: pushing {down}/" in err and f"registry {down} is up" in err
    assert "connection refused" in err


# --- 7. hatch build -t flyte:image ---------------------------------------------------------------------


def _hatch_project(weather: Built, engine: Engine, tmp_path: Path, docker_dependency: bool) -> Path:
    project = copy_of(weather.project, tmp_path)
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text().replace(weather.repo.split("/", 1)[1], engine.new_name("hatch"))
    if docker_dependency:
        # The build environment needs the `docker` extra: the flyte target's own dependencies.
        found = re.search(r'"hatch-flyte @ ([^"]+)"', text)
        assert found is not None
        text += f'\n[tool.hatch.build.targets.flyte]\ndependencies = ["hatch-flyte[docker] @ {found[1]}"]\n'
    pyproject.write_text(text)
    return project


def _hatch_build_image(engine: Engine, project: Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = tool_env(engine, HATCH_DATA_DIR=str(project.parent / ".hatch-data"))
    return run([str(BIN / "hatch"), "build", "-t", "flyte:image"], project, env, ok=ok)


def test_hatch_build_target_flyte_image(
    weather: Built, engine: Engine, docker_client: Any, tmp_path: Path, no_leftover_containers: None
) -> None:
    project = _hatch_project(weather, engine, tmp_path, docker_dependency=True)
    proc = _hatch_build_image(engine, project)
    manifest = read_manifest(project)
    image = manifest["image"]
    assert image is not None and f"flyte: image {image['ref']}" in proc.stdout + proc.stderr
    assert manifest["artifacts"] == []  # only the image was asked for; its wheel was made aside
    assert CONTENT_TAG.fullmatch(image["ref"].rpartition(":")[2])
    built = docker_client.images.get(image["ref"])
    assert built.id == image["id"]
    assert sorted(built.tags) == sorted(image["tags"])
    env = dict(item.split("=", 1) for item in built.attrs["Config"]["Env"])
    assert env["_F_IMG_ID"] == image["ref"]
    # Same base and dependencies as the module's image, built by another frontend: the layers below
    # the project's are the very same ones (the engine's cache served them).
    module_layers = docker_client.images.get(weather.image["id"]).attrs["RootFS"]["Layers"]
    layers = built.attrs["RootFS"]["Layers"]
    assert layers[:-1] == module_layers[:-1] and len(layers) == len(module_layers)


def test_hatch_build_image_without_docker_sdk(
    weather: Built, engine: Engine, tmp_path: Path, no_leftover_containers: None
) -> None:
    project = _hatch_project(weather, engine, tmp_path, docker_dependency=False)
    proc = _hatch_build_image(engine, project, ok=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "`installer`" in out and "hatch-flyte[docker]" in out  # the extras, named


# --- 5. dependency-only images (include-project = false) ----------------------------------------------


def _named_copy(weather: Built, engine: Engine, tmp_path: Path, what: str) -> tuple[Path, str]:
    """A copy of the module's project under a fresh image name (``[tool.flyte.image]`` stays last)."""
    project = copy_of(weather.project, tmp_path)
    name = engine.new_name(what)
    pyproject = project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace(weather.repo.split("/", 1)[1], name))
    return project, name


def test_dependency_only_image_runs_tasks_from_the_bundle(
    weather: Built, engine: Engine, docker_client: Any, tmp_path: Path, no_leftover_containers: None
) -> None:
    project, name = _named_copy(weather, engine, tmp_path, "deps-only")
    with (project / "pyproject.toml").open("a") as f:
        f.write("include-project = false\npush = true\n")
    proc = hatch_flyte_build(engine, project)
    image = json.loads(proc.stdout)["image"]
    repo = f"{engine.registry}/{name}"
    assert image["contents"] == "dependencies"
    assert image["ref"] == f"{repo}:{image['ref'].rpartition(':')[2]}"
    assert image["tags"] == [image["ref"]]  # no version tag: the image holds no version of the project
    # The same dependencies on the same base as the module's full image: its dependency image serves.
    assert "building the dependency image" not in proc.stderr, proc.stderr
    built = docker_client.images.get(image["ref"])
    labels = {
        k.removeprefix("org.opencontainers.image."): v for k, v in built.attrs["Config"]["Labels"].items()
    }
    assert not {"version", "revision", "description"} & set(labels), labels
    host, repository, tag = split_ref(image["ref"])
    headers, _ = registry_get(host, f"{repository}/manifests/{tag}")
    assert headers["Docker-Content-Digest"] == image["digest"]
    out = docker_client.containers.run(
        built.id, ["python", "-c", "import importlib.util as u; print(u.find_spec('weather_pipeline'))"],
        network_disabled=True, remove=True,
    )  # fmt: skip
    assert out.decode().strip() == "None"

    # A code-only change: the image target builds nothing and pushes nothing (no wheel either).
    tasks = project / "src" / "weather_pipeline" / "tasks.py"
    source = tasks.read_text()
    assert "return daily_means(readings)" in source
    tasks.write_text(
        source.replace("return daily_means(readings)", 'return {**daily_means(readings), "new": 1.0}')
    )
    cmd = [
        str(BIN / "hatch-flyte"),
        "build",
        str(project),
        "-t",
        "bundle,image",
        "--no-isolation",
        "--json",
        "-v",
    ]
    started = time.monotonic()
    again = run(cmd, project.parent, tool_env(engine))
    seconds = time.monotonic() - started
    second = json.loads(again.stdout)
    assert (second["image"]["ref"], second["image"]["id"]) == (image["ref"], image["id"])
    assert second["image"]["digest"] == image["digest"] and second["wheel"] is None
    assert "nothing to build" in again.stderr and "nothing to push" in again.stderr, again.stderr
    assert "docker: Step" not in again.stderr
    print(f"code-only rebuild of a dependency-only image (bundle + image, whole command): {seconds:.2f}s")
    # hatch's builder plans it from hatchling's metadata (no wheel): the very same image.
    plugin = re.search(r'"hatch-flyte @ ([^"]+)"', (project / "pyproject.toml").read_text())
    assert plugin is not None
    with (project / "pyproject.toml").open("a") as f:  # the docker extra in hatch's build environment
        f.write(f'\n[tool.hatch.build.targets.flyte]\ndependencies = ["hatch-flyte[docker] @ {plugin[1]}"]\n')
    hatch = _hatch_build_image(engine, project)
    assert read_manifest(project)["image"]["id"] == image["id"], hatch.stdout + hatch.stderr

    # flyte's own a0, in the image, with no network: the task runs from the new bundle (fast mode) ...
    bundle = project / "dist" / second["bundle"]["name"]
    case = prepare_pod_case(project / "src", image["ref"], bundle, tmp_path / "a0",
                            env="weather_pipeline.tasks:env", task="weather.station_means",
                            values={"csv_text": ""})  # fmt: skip
    ran, result = run_pod_case(docker_client, case, "fast", None)
    assert ran.exit_code == 0 and result.error is None, ran.logs[-3000:]
    assert result.value == {**expected_means(project), "new": 1.0}
    # ... and without it (full mode) the package is not there to import.
    bare, missing = run_pod_case(docker_client, case, "full", None)
    assert missing.value is None
    seen = f"{missing.error}\n{bare.logs}"
    assert "No module named 'weather_pipeline'" in seen, (missing, bare.logs[-3000:])


# --- 6. a custom Dockerfile as the base ----------------------------------------------------------------

BASE_DOCKERFILE = """\
ARG BASE
FROM ${BASE}
ARG GREETING=unset
COPY marker.txt /opt/marker.txt
RUN echo "$GREETING" > /opt/greeting.txt
"""


def _with_dockerfile(project: Path, base: str, dockerfile: str = BASE_DOCKERFILE) -> None:
    """``docker/Dockerfile`` (context: its directory) instead of ``base``, with build args."""
    (project / "docker").mkdir()
    (project / "docker" / "Dockerfile").write_text(dockerfile)
    (project / "docker" / "marker.txt").write_text("one\n")
    pyproject = project / "pyproject.toml"
    text = re.sub(r'(?m)^base = ".*"\n', "", pyproject.read_text())
    text += 'dockerfile = "docker/Dockerfile"\n\n[tool.flyte.image.build-args]\n'
    text += f'BASE = "{base}"\nGREETING = "hi"\n'
    pyproject.write_text(text)


def test_dockerfile_base_with_hatch_flyte_layers_on_top(
    weather: Built,
    engine: Engine,
    docker_client: Any,
    tmp_path: Path,
    no_leftover_containers: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hatch_flyte.image import ProjectMetadata, plan_for
    from hatch_flyte.image.docker.backend import DockerBackend
    from hatch_flyte.project import load_project

    for key, value in tool_env(engine).items():
        monkeypatch.setenv(key, value)  # the same SOURCE_DATE_EPOCH and engine as the builds here
    project, _ = _named_copy(weather, engine, tmp_path, "dockerfile")
    _with_dockerfile(project, engine.base)
    bases: set[str] = set()
    try:
        image = json.loads(hatch_flyte_build(engine, project).stdout)["image"]
        assert (image["contents"], image["base_dockerfile"]) == ("full", "docker/Dockerfile")
        assert re.fullmatch(r"hatch-flyte/base:i[0-9a-f]{20}", image["base"]) and image["base_digest"] is None
        bases.add(image["base"])
        base_id = docker_client.images.get(image["base"]).id
        assert image["base"] == f"hatch-flyte/base:i{base_id[7:27]}"
        # The user's layers, then hatch-flyte's: the venv with flyte, the project, the checks passed.
        code = (
            "import weather_pipeline, flyte, shutil; print(open('/opt/greeting.txt').read().strip(), "
            "open('/opt/marker.txt').read().strip(), weather_pipeline.__file__, shutil.which('a0'))"
        )
        out = docker_client.containers.run(
            image["id"], ["python", "-c", code], network_disabled=True, remove=True
        )
        greeting, marker, package, a0 = out.decode().split()
        assert (greeting, marker, a0) == ("hi", "one", "/opt/venv/bin/a0")
        assert package.startswith("/opt/venv/lib/python3.") and package.endswith(
            "/weather_pipeline/__init__.py"
        )
        built = docker_client.images.get(image["id"])
        base_layers = docker_client.images.get(base_id).attrs["RootFS"]["Layers"]
        assert built.attrs["RootFS"]["Layers"][: len(base_layers)] == base_layers
        assert "org.opencontainers.image.base.name" not in built.attrs["Config"]["Labels"]

        # The content tag follows the built base: an unchanged context gives the same base (the
        # engine's cache) and tag; a changed file in the context, a new base and a new tag.
        project_model = load_project(project)
        config = project_model.config.image
        wheel = next((project / "dist").glob("*.whl"))
        meta = ProjectMetadata.from_wheel(wheel)
        backend = DockerBackend()
        same = plan_for(backend, project_model, wheel, config, meta)
        assert (same.base, same.content_tag()) == (image["base"], image["ref"].rpartition(":")[2])
        (project / "docker" / "marker.txt").write_text("two\n")
        changed = plan_for(backend, project_model, wheel, config, meta)
        bases.add(changed.base)
        assert changed.base != image["base"] and changed.base_id != base_id
        assert changed.content_tag() != same.content_tag()
        backend.close()
    finally:
        # Everything built on the bases (the project's image, its dependency image and install
        # stage), children first, then the bases with their intermediate steps.
        for tag in bases:
            with contextlib.suppress(docker_errors().APIError):
                for image_id in [*built_on(docker_client, docker_client.images.get(tag).id), tag]:
                    with contextlib.suppress(docker_errors().APIError):
                        docker_client.images.remove(image_id, force=True)


def test_dockerfile_failing_step_names_the_file(
    weather: Built, engine: Engine, tmp_path: Path, no_leftover_containers: None
) -> None:
    project, _ = _named_copy(weather, engine, tmp_path, "dockerfile-bad")
    # It fails at its first step, before the engine keeps any step as cache.
    broken = "ARG BASE\nFROM ${BASE}\nRUN echo broken-on-purpose >&2 && exit 3\n"
    _with_dockerfile(project, engine.base, broken)
    proc = hatch_flyte_build(engine, project, ok=False)
    assert proc.returncode != 0
    message = _failed(proc, project)
    assert "docker/Dockerfile" in message and "broken-on-purpose" in message, message
    assert "returned a non-zero code: 3" in message, message

    # A Dockerfile that is not there: named with its key, before the engine is asked to build.
    pyproject = project / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace('dockerfile = "docker/Dockerfile"', 'dockerfile = "Dockerfile"')
    )
    missing = _failed(hatch_flyte_build(engine, project, ok=False), project)
    assert "`tool.flyte.image.dockerfile` = 'Dockerfile'" in missing and "is not a file" in missing, missing


# --- 8. a Flyte pod's way: flyte's own a0 runs a task in the image, as any user ----------------------


@pytest.fixture(scope="module")
def pod(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> PodCase:
    """The pod project built once (``hatch-flyte build -t wheel,bundle,image``), with flyte's
    dry-run commands for its task on that image in both modes."""
    require_base_usable_by_any_user(engine.client, engine.base)
    work = tmp_path_factory.mktemp("pod")
    name = engine.new_name("pod")
    project = make_pod_project(
        work / "pod-check", {"base": engine.base, "registry": engine.registry, "name": name}
    )
    manifest = json.loads(hatch_flyte_build(engine, project).stdout)
    bundle = next(a["name"] for a in manifest["artifacts"] if a["kind"] == "bundle")
    return prepare_pod_case(project, manifest["image"]["ref"], project / "dist" / bundle, work / "scratch")


@pytest.mark.parametrize("user", [None, "1000:1000"], ids=["root", "uid1000"])
@pytest.mark.parametrize("mode", ["fast", "full"])
def test_flyte_runs_the_task_in_the_image(
    pod: PodCase, docker_client: docker.DockerClient, mode: str, user: str | None
) -> None:
    """``a0`` with the args ``flyte.deploy(dry_run=True)`` registers, ``--network none``: fast mode
    extracts the bundle into the workdir and runs it from there, full mode runs the wheel's code;
    either as root or as a user the image does not know."""
    run, result = run_pod_case(docker_client, pod, mode, user)
    assert_pod_ran(pod, mode, user, run, result)


@pytest.mark.parametrize(("mode", "denied"), [("fast", "'.'"), ("full", "'config.yaml'")])
def test_a_workdir_only_root_may_enter_fails_for_other_users(
    pod: PodCase, docker_client: docker.DockerClient, mode: str, denied: str
) -> None:
    """Control: the same run in ``/root`` (0700, the workdir images had before) fails as a non-root
    user the way a pod failed: fast mode cannot extract the bundle, full mode cannot look for flyte's
    ``config.yaml``. The test above would see it."""
    _, result = run_pod_case(docker_client, pod, mode, "1000:1000", working_dir="/root")
    assert result.value is None, result
    assert result.error is not None and f"Permission denied: {denied}" in result.error, result.error


def test_flyte_runs_what_was_deployed(
    pod: PodCase, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    """``hatch-flyte deploy`` of the pod build against the fake control plane (fast, then full mode):
    the task's container args AS REGISTERED run in the built image, ``--network none``, as
    1000:1000 (root is covered above), fast mode on the very bytes that were uploaded."""
    home = tmp_path / "home"
    home.mkdir()  # flyte keeps a bundle cache under ~/.flyte
    flyte_vars = ("FLYTE_API_KEY", "FLYTECTL_CONFIG", "UCTL_CONFIG")  # no connection but the options'
    env = {**{k: v for k, v in os.environ.items() if k not in flyte_vars}, "HOME": str(home)}
    server = Running(tmp_path / "object-store")
    printed: dict[str, dict[str, Any]] = {}
    registered: dict[str, TaskSpec] = {}
    uploads: dict[str, list[Upload]] = {}
    try:
        for mode in ("fast", "full"):
            server.state.reset()
            cmd = [str(BIN / "hatch-flyte"), "deploy", str(pod.root / "dist"), "--json", "--mode", mode,
                   "--endpoint", server.endpoint, "--insecure", "--org", "acme", "--project", "pods",
                   "--domain", "dev"]  # fmt: skip
            printed[mode] = json.loads(run(cmd, tmp_path, env).stdout)
            (request,) = server.state.requests("DeployTask")
            registered[mode] = TaskSpec.registered(request.spec.task_template)
            uploads[mode] = list(server.state.uploads)
    finally:
        server.close()

    (upload,) = uploads["fast"]
    assert uploads["full"] == [] and upload.data == pod.bundle.read_bytes()
    assert registered["fast"].option("--tgz") == upload.path.as_uri() == printed["fast"]["bundle"]["uri"]
    deployed = replace(pod, bundle=upload.path, specs=registered, scratch=tmp_path / "a0")
    for mode in ("fast", "full"):
        assert [t["args"] for t in printed[mode]["tasks"]] == [list(registered[mode].args)]
        ran, result = run_pod_case(docker_client, deployed, mode, "1000:1000")
        assert_pod_ran(deployed, mode, "1000:1000", ran, result)


# --- interruption --------------------------------------------------------------------------------------


def test_interrupted_image_build_leaves_no_container_and_moves_no_tag(
    weather: Built, engine: Engine, docker_client: Any, tmp_path: Path, no_leftover_containers: None
) -> None:
    """SIGTERM while the engine runs the project image's build steps: the engine's build is
    cancelled (no container left), the new content tag never appears, the version tag still names
    the previous image, and the command exits 143 with one line saying what was interrupted."""
    import signal

    project = copy_of(weather.project, tmp_path)
    pyproject = project / "pyproject.toml"
    name = engine.new_name("interrupted")
    pyproject.write_text(pyproject.read_text().replace(weather.repo.split("/", 1)[1], name))
    old = json.loads(hatch_flyte_build(engine, project).stdout)["image"]
    tasks = project / "src" / "weather_pipeline" / "tasks.py"
    tasks.write_text(tasks.read_text() + "\nINTERRUPTED = True\n")

    cmd = [
        str(BIN / "hatch-flyte"),
        "build",
        str(project),
        "-t",
        "wheel,bundle,image",
        "--no-isolation",
        "-v",
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=project.parent,
        env=tool_env(engine),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line.rstrip("\n"))
        if line.startswith("info: docker: Step 2/"):
            proc.send_signal(signal.SIGTERM)
            break
    else:
        pytest.fail("the build ended before its steps ran:\n" + "\n".join(seen[-20:]))
    rest = proc.stderr.read()
    proc.wait(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, rest
    last = rest.strip().splitlines()[-1]
    assert re.fullmatch(
        rf"hatch-flyte: interrupted by SIGTERM while building the image {re.escape(engine.registry)}/"
        rf"{re.escape(name)}:h[0-9a-f]{{20}}; its temporary files were removed",
        last,
    ), last
    tags = {t for image in docker_client.images.list(name=f"{engine.registry}/{name}") for t in image.tags}
    assert tags == set(old["tags"])
    assert docker_client.images.get(old["tags"][1]).id == old["id"]
    dist = project / "dist"
    assert not [p.name for p in dist.iterdir() if p.name.startswith(".")]
    assert read_manifest(project)["image"] is None  # written before the image, claims none
