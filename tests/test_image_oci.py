"""The daemonless OCI backend: registry/layout/archive bases, reproducible layers, layout + docker archive
output, push through the registry API, and its faults.

Tests without the ``docker`` mark use a tiny synthetic base (an OCI layout with a fake Python) and need
no engine; they still need the flyte wheelhouse, downloaded once into the default cache.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import http.server
import json
import os
import re
import shutil
import socketserver
import subprocess
import sys
import tarfile
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from docker_env import find_base_image, find_registry, make_docker_client
from flyte_runtime import (
    PodCase,
    assert_pod_ran,
    make_pod_project,
    prepare_pod_case,
    require_base_usable_by_any_user,
    run_pod_case,
)

from hatch_flyte.errors import ImageError
from hatch_flyte.image import ImageResult, build_image
from hatch_flyte.image.oci import layout as L
from hatch_flyte.image.oci.basepython import find_python
from hatch_flyte.image.oci.layers import write_layer
from hatch_flyte.image.oci.registry import Registry, is_insecure, parse_reference
from hatch_flyte.image.venv import Entry
from hatch_flyte.project import Project, load_project
from hatch_flyte.wheel import build_wheel

EXAMPLE = Path(__file__).resolve().parent.parent / "example_projects" / "weather_pipeline"
BASE_REPO = "hatch-flyte-test/python"
BASE_TAG = "3.11-bookworm"
NO_DOCKER = "tcp://127.0.0.1:9"
BIN = Path(sys.executable).parent  # nothing listens there: the backend must not need an engine


# -- helpers -----------------------------------------------------------------------------------------


def copy_example(dest: Path) -> Path:
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns("dist", "__pycache__", "*.egg-info"))
    return dest


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> tuple[Project, Path]:
    """The weather_pipeline example (a copy) and its wheel."""
    root = copy_example(tmp_path_factory.mktemp("example") / "weather_pipeline")
    (root / "dist").mkdir()
    wheel = build_wheel(root, root / "dist", isolation=False)
    return load_project(root), wheel


def oci_config(project: Project, **changes: Any) -> Any:
    return replace(project.config.image, backend="oci", **changes)


def fake_base(directory: Path, tag: str = "1", extra: tuple[Entry, ...] = ()) -> Path:
    """An OCI layout with a Debian-like filesystem holding a (fake) Python 3.11 and tar."""
    store = L.BlobStore(directory)
    entries = [
        *extra,
        Entry("/bin", "symlink", target="usr/bin"),
        Entry("/usr/bin/python3", "symlink", target="python3.11"),
        Entry("/usr/bin/python3.11", "file", b"#!fake\n", executable=True),
        Entry("/usr/lib/python3.11/os.py", "file", b"# os\n"),
        Entry("/usr/bin/tar", "file", b"#!fake\n", executable=True),
        Entry("/root", "dir"),
    ]
    layer = write_layer(entries, store, 0, "fake base")
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["python3"]},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
        "history": [{"created_by": "fake"}],
    }
    config_digest = store.put_bytes(L.canonical_json(config))
    manifest = L.canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": L.OCI_MANIFEST,
            "config": L.Descriptor(
                L.OCI_CONFIG, config_digest, store.path(config_digest).stat().st_size
            ).to_json(),
            "layers": [layer.descriptor.to_json()],
        }
    )
    digest = store.put_bytes(manifest)
    L.write_layout_files(directory, [L.Descriptor(L.OCI_MANIFEST, digest, len(manifest), {L.REF_NAME: tag})])
    return directory


def build(
    project: Project, wheel: Path | None, out: Path, monkeypatch: pytest.MonkeyPatch, **changes: Any
) -> ImageResult:
    monkeypatch.setenv("DOCKER_HOST", NO_DOCKER)
    push = changes.pop("push", False)
    return build_image(project, wheel, oci_config(project, **changes), output_dir=out, push=push)


def assert_clean(out: Path) -> None:
    leftovers = [p.name for p in out.iterdir()] if out.exists() else []
    assert leftovers == [], f"partial output left in {out}: {leftovers}"


# -- units --------------------------------------------------------------------------------------------


def test_parse_reference_applies_docker_defaults() -> None:
    assert str(parse_reference("python:3.11")) == "docker.io/library/python:3.11"
    ref = parse_reference("127.0.0.1:5000/a/b")
    assert (ref.registry, ref.repository, ref.reference) == ("127.0.0.1:5000", "a/b", "latest")
    digest = "sha256:" + "a" * 64
    assert parse_reference(f"ghcr.io/x/y@{digest}").reference == digest
    with pytest.raises(ImageError, match="not a valid image reference"):
        parse_reference("Registry.io/UPPER:tag")


def test_insecure_registries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HATCH_FLYTE_INSECURE_REGISTRIES", raising=False)
    assert is_insecure("127.0.0.1:5000") and is_insecure("localhost:5000") and not is_insecure("ghcr.io")
    monkeypatch.setenv("HATCH_FLYTE_INSECURE_REGISTRIES", "reg.lan:5000, other")
    assert is_insecure("reg.lan:5000") and is_insecure("other") and not is_insecure("reg.lan:6000")
    assert Registry("reg.lan:5000").base_url == "http://reg.lan:5000"
    assert Registry("docker.io").base_url == "https://registry-1.docker.io"


def test_layers_are_reproducible(tmp_path: Path) -> None:
    entries = [Entry("/opt/b", "file", b"b"), Entry("/opt/a/x", "file", b"x", executable=True)]
    one = write_layer(entries, L.BlobStore(tmp_path / "one"), 315532800, "c")
    two = write_layer(list(reversed(entries)), L.BlobStore(tmp_path / "two"), 315532800, "c")
    assert one == two
    blob = (tmp_path / "one" / "blobs" / "sha256" / one.descriptor.digest[7:]).read_bytes()
    assert blob[3] == 0 and blob[4:8] == b"\0\0\0\0"  # gzip: no file name, mtime 0
    with tarfile.open(fileobj=__import__("io").BytesIO(gzip.decompress(blob))) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["opt", "opt/a", "opt/a/x", "opt/b"]
    assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members} == {(0, 0, "", "", 315532800)}
    assert [m.mode for m in members] == [0o755, 0o755, 0o755, 0o644]
    assert "sha256:" + hashlib.sha256(gzip.decompress(blob)).hexdigest() == one.diff_id


def test_python_found_in_layers_without_running_it(tmp_path: Path) -> None:
    store = L.BlobStore(tmp_path / "s")
    first = write_layer(
        [
            Entry("/usr/local/bin/python3", "symlink", target="python3.12"),
            Entry("/usr/local/bin/python3.12", "file", b"", executable=True),
            Entry("/usr/local/lib/python3.12/os.py", "file", b""),
            Entry("/usr/bin/python3", "symlink", target="python3.11"),
            Entry("/usr/bin/python3.11", "file", b""),
            Entry("/usr/lib/python3.11/os.py", "file", b""),
            Entry("/bin", "symlink", target="usr/bin"),
            Entry("/usr/bin/tar", "file", b""),
        ],
        store,
        0,
        "",
    )
    layers = [store.path(first.descriptor.digest)]
    found = find_python(layers, None, "test")
    assert (found.interpreter, found.version, found.has_tar) == ("/usr/local/bin/python3", (3, 12), True)
    assert find_python(layers, "/usr/bin/python3", "test").version == (3, 11)
    # a later layer deletes /usr/local/bin/python3 (whiteout): the Debian one is next
    second = write_layer([Entry("/usr/local/bin/.wh.python3", "file", b"")], store, 0, "")
    found = find_python([*layers, store.path(second.descriptor.digest)], None, "test")
    assert (found.interpreter, found.version) == ("/usr/bin/python3", (3, 11))
    empty = write_layer([Entry("/etc/hostname", "file", b"x")], store, 0, "")
    with pytest.raises(ImageError, match="no Python interpreter"):
        find_python([store.path(empty.descriptor.digest)], None, "test")


# -- whole builds without an engine ---------------------------------------------------------------


def test_build_from_layout_is_reproducible_across_project_copies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = fake_base(tmp_path / "base")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    # both builds write every layer (no cached dependency layer), or this would not show reproducibility
    monkeypatch.setattr("hatch_flyte.image.oci.builder.cache_dir", lambda: None)
    results = []
    for name in ("a", "b"):
        root = copy_example(tmp_path / name / "weather_pipeline")
        (tmp_path / name / "dist").mkdir()
        wheel = build_wheel(root, tmp_path / name / "dist", isolation=False)
        project = load_project(root)
        results.append(build(project, wheel, tmp_path / name / "out", monkeypatch, base=f"oci:{base}:1"))
    one, two = results
    assert one.digest == two.digest and one.id == two.id and one.ref == two.ref
    assert one.backend == "oci" and one.archive and Path(one.archive).is_file()
    assert one.digest is not None
    layout = Path(one.archive).with_suffix("")
    assert sorted(p.name for p in layout.parent.iterdir()) == [
        "weather-pipeline.oci",
        "weather-pipeline.oci.tar",
    ]
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads((layout / "blobs" / "sha256" / one.digest[7:]).read_bytes())
    assert {m["annotations"][L.REF_NAME] for m in index["manifests"]} == {one.content_tag, "0.3.0"}
    assert len(manifest["layers"]) == 4  # base + venv + dependencies + project
    config = json.loads((layout / "blobs" / "sha256" / one.id[7:]).read_bytes())
    env = dict(e.split("=", 1) for e in config["config"]["Env"])
    assert env["VIRTUAL_ENV"] == "/opt/venv" and env["PATH"].startswith("/opt/venv/bin:")
    assert env["_F_IMG_ID"] == one.ref and config["config"]["WorkingDir"] == "/home/flyte"
    assert config["created"] == "2023-11-14T22:13:20Z"
    assert config["config"]["Labels"]["org.opencontainers.image.created"] == "2023-11-14T22:13:20Z"
    assert config["config"]["Labels"]["org.opencontainers.image.version"] == "0.3.0"
    assert (layout / "blobs" / "sha256" / one.digest[7:]).read_bytes() == L.canonical_json(manifest)
    with tarfile.open(one.archive) as tar:
        manifest_file = tar.extractfile("manifest.json")
        assert manifest_file is not None
        docker_manifest = json.load(manifest_file)
        assert docker_manifest[0]["RepoTags"] == list(one.tags)
        assert "index.json" in tar.getnames()
    # the project layer: the wheel installed into the venv with installer, scripts on the venv's python
    with tarfile.open(layout / "blobs" / "sha256" / manifest["layers"][3]["digest"][7:]) as tar:
        names = tar.getnames()
    assert "opt/venv/lib/python3.11/site-packages/weather_pipeline/__init__.py" in names
    with tarfile.open(layout / "blobs" / "sha256" / manifest["layers"][2]["digest"][7:]) as tar:
        a0 = tar.extractfile("opt/venv/bin/a0")
        assert a0 is not None and a0.readline() == b"#!/opt/venv/bin/python\n"
    with tarfile.open(layout / "blobs" / "sha256" / manifest["layers"][1]["digest"][7:]) as tar:
        assert tar.getmember("opt/venv/bin/python").linkname == "/usr/bin/python3"
        # the workdir: writable by every user id (pods run as any uid), with fixed owner and time
        workdir, home = tar.getmember("home/flyte"), tar.getmember("home")
        assert workdir.isdir() and workdir.mode == 0o1777 and home.mode == 0o755
        assert (workdir.uid, workdir.gid, workdir.uname, workdir.mtime) == (0, 0, "", 1700000000)
        cfg = tar.extractfile("opt/venv/pyvenv.cfg")
        assert cfg is not None and b"home = /usr/bin\n" in cfg.read()
    if shutil.which("skopeo"):
        out = subprocess.run(
            ["skopeo", "inspect", f"oci:{layout}:0.3.0"], capture_output=True, text=True, check=True
        )
        assert json.loads(out.stdout)["Digest"] == one.digest


def test_cli_image_build_shows_progress_without_verbose(tmp_path: Path) -> None:
    """One line per finished step with its time, at the default verbosity, on stderr (stdout stays
    the command's own report). The wheelhouse is the one the test above resolved (cached)."""
    base = fake_base(tmp_path / "base")
    root = copy_example(tmp_path / "weather_pipeline")
    pyproject = root / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text() + f'\n[tool.flyte.image]\nbackend = "oci"\nbase = "oci:{base}:1"\n'
    )
    script = Path(sys.executable).parent / "hatch-flyte"
    proc = subprocess.run(
        [str(script), "build", str(root), "-t", "image", "--no-isolation", "-o", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "DOCKER_HOST": NO_DOCKER},
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    for step in (f"base image oci:{base}:1 (linux/amd64)", "layers: dependencies, project wheel"):
        assert any(re.fullmatch(rf"{re.escape(step)} \(\d+\.\ds\)", line) for line in lines), proc.stderr
    assert "image     weather-pipeline:h" in proc.stdout


def test_base_python_read_once_per_set_of_layers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The base's Python is read from its layers once, then remembered by the layers' digests."""
    from hatch_flyte.image import basecache
    from hatch_flyte.image.oci import builder

    # The records in a directory of the test's own; the wheelhouse stays in the default cache.
    monkeypatch.setattr(basecache, "cache_dir", lambda: tmp_path / "cache")
    root = copy_example(tmp_path / "p" / "weather_pipeline")
    (tmp_path / "p" / "dist").mkdir()
    wheel = build_wheel(root, tmp_path / "p" / "dist", isolation=False)
    project = load_project(root)
    base = fake_base(tmp_path / "base")
    first = build(project, wheel, tmp_path / "out1", monkeypatch, base=f"oci:{base}:1")

    scans: list[int] = []

    def counting_find_python(layers: Any, python: Any, where: str) -> Any:
        scans.append(len(layers))
        return find_python(layers, python, where)

    monkeypatch.setattr(builder, "find_python", counting_find_python)
    again = build(project, wheel, tmp_path / "out2", monkeypatch, base=f"oci:{base}:1")
    assert scans == [] and again.digest == first.digest  # from the record, and the same image

    # A base with other layers is read, not taken from the record.
    other = fake_base(tmp_path / "other", extra=(Entry("/etc/marker", "file", b"other\n"),))
    build(project, wheel, tmp_path / "out3", monkeypatch, base=f"oci:{other}:1")
    assert scans == [1]
    # A corrupt record is ignored: the layers are read again.
    for record in (tmp_path / "cache" / "base-images").iterdir():
        record.write_text("{not json")
    build(project, wheel, tmp_path / "out4", monkeypatch, base=f"oci:{base}:1")
    assert scans == [1, 1]


def test_corrupt_layout_base(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, example: tuple[Project, Path]
) -> None:
    project, wheel = example
    base = fake_base(tmp_path / "base")
    out = tmp_path / "out"
    with pytest.raises(ImageError, match="no image tagged 'nope'"):
        build(project, wheel, out, monkeypatch, base=f"oci:{base}:nope")
    assert_clean(out)
    index = json.loads((base / "index.json").read_text())
    manifest = json.loads((base / "blobs" / "sha256" / index["manifests"][0]["digest"][7:]).read_text())
    layer = base / "blobs" / "sha256" / manifest["layers"][0]["digest"][7:]
    layer.write_bytes(layer.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ImageError, match="does not match its digest"):
        build(project, wheel, out, monkeypatch, base=f"oci:{base}:1")
    assert_clean(out)
    (base / "index.json").unlink()
    with pytest.raises(ImageError, match=r"not an OCI image layout \(index.json is missing\)"):
        build(project, wheel, out, monkeypatch, base=f"oci:{base}:1")
    assert_clean(out)


def test_registry_down_and_garbage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, example: tuple[Project, Path]
) -> None:
    project, wheel = example
    out = tmp_path / "out"
    with pytest.raises(ImageError, match=r"cannot reach the registry 127\.0\.0\.1:5999"):
        build(project, wheel, out, monkeypatch, base="127.0.0.1:5999/some/base:1")
    assert_clean(out)
    with (
        nonsense_http_server() as host,
        pytest.raises(ImageError, match=f"registry {host} answered .* not JSON"),
    ):
        build(project, wheel, out, monkeypatch, base=f"{host}/some/base:1")
    assert_clean(out)
    with not_http_server() as host, pytest.raises(ImageError, match=f"{host} answered .* not an HTTP answer"):
        build(project, wheel, out, monkeypatch, base=f"{host}/some/base:1")
    assert_clean(out)


class _Nonsense(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html>hello, I am not a registry</html>"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class _NotHttp(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.recv(1024)
        self.request.sendall(b"\x00\x01garbage garbage\r\n\r\n")


def _serve(server: socketserver.TCPServer) -> Iterator[str]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def nonsense_http_server() -> Iterator[str]:
    yield from _serve(http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Nonsense))


@contextlib.contextmanager
def not_http_server() -> Iterator[str]:
    yield from _serve(socketserver.ThreadingTCPServer(("127.0.0.1", 0), _NotHttp))


# -- with the engine and the loopback registries ----------------------------------------------------


def manifest_digest(host: str, repository: str, tag: str, auth: str | None = None) -> str | None:
    request = urllib.request.Request(f"http://{host}/v2/{repository}/manifests/{tag}", method="HEAD")
    request.add_header("Accept", ", ".join((L.OCI_MANIFEST, L.DOCKER_MANIFEST)))
    if auth:
        request.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return str(response.headers.get("Docker-Content-Digest"))
    except urllib.error.HTTPError:
        return None


def push_base(client: Any, registry: str, base_image: str) -> str:
    """The engine's test base in the loopback registry, pushed once per image id (a base imported
    anew gets a tag of its own)."""
    image = client.images.get(base_image)
    tag = f"{BASE_TAG}-{image.id[7:19]}"
    if manifest_digest(registry, BASE_REPO, tag) is None:
        target = f"{registry}/{BASE_REPO}"
        image.tag(target, tag)
        try:
            for chunk in client.images.push(target, tag=tag, stream=True, decode=True):
                assert "error" not in chunk, chunk
        finally:
            client.images.remove(f"{target}:{tag}")  # the tag only: the image stays
    return f"{registry}/{BASE_REPO}:{tag}"


@pytest.fixture
def registry_base(registry: str, base_image: str, docker_client: Any) -> str:
    """The test base image in the loopback registry (pushed there once)."""
    return push_base(docker_client, registry, base_image)


@pytest.mark.docker
def test_registry_base_build_load_run_push(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    example: tuple[Project, Path],
    registry: str,
    registry_base: str,
    docker_client: Any,
) -> None:
    project, wheel = example
    repo_prefix = f"hatch-flyte-test/oci-{os.urandom(6).hex()}"
    out = tmp_path / "out"
    result = build(project, wheel, out, monkeypatch, base=registry_base, registry=f"{registry}/{repo_prefix}")
    assert result.ref.startswith(f"{registry}/{repo_prefix}/weather-pipeline:h")
    layout = out / "weather-pipeline.oci"
    inspect = subprocess.run(
        ["skopeo", "inspect", f"oci:{layout}:0.3.0"], capture_output=True, text=True, check=True
    )
    assert json.loads(inspect.stdout)["Digest"] == result.digest
    bundle = tmp_path / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--image", f"{layout}:0.3.0", str(bundle)], capture_output=True, check=True
    )
    rootfs = bundle / "rootfs"
    assert (rootfs / "opt/venv/lib/python3.11/site-packages/weather_pipeline/__init__.py").is_file()
    assert os.readlink(rootfs / "opt/venv/bin/python") == "/usr/bin/python3"

    loaded = docker_client.images.load((Path(result.archive or "")).read_bytes())
    try:
        assert {t for image in loaded for t in image.tags} >= set(result.tags)
        assert loaded[0].id == result.id  # the engine's image id is our config digest
        output = docker_client.containers.run(
            result.ref,
            [
                "sh",
                "-c",
                'python -c "import weather_pipeline, flyte, sys; print(sys.prefix)" && command -v a0 && pwd',
            ],
            remove=True,
            network_disabled=True,
        ).decode()
        assert output.split() == ["/opt/venv", "/opt/venv/bin/a0", "/home/flyte"]
    finally:
        for tag in result.tags:
            docker_client.images.remove(tag, force=True)

    # push through the registry API: the registry's digest is ours; a second push uploads nothing
    pushed = build(
        project, wheel, out, monkeypatch, base=registry_base, registry=f"{registry}/{repo_prefix}", push=True
    )
    assert pushed.digest == result.digest
    for tag in (pushed.content_tag, "0.3.0"):
        assert manifest_digest(registry, f"{repo_prefix}/weather-pipeline", tag) == result.digest

    # pushed again: the registry has this manifest under every tag already, so nothing is sent
    sent: list[str] = []

    def put_manifest(self: Registry, repository: str, tag: str, body: bytes, media_type: str) -> str:
        sent.append(tag)
        return ""

    def upload_blob(self: Registry, repository: str, digest: str, path: Path) -> None:
        sent.append(digest)

    monkeypatch.setattr(Registry, "put_manifest", put_manifest)
    monkeypatch.setattr(Registry, "upload_blob", upload_blob)
    again = build(
        project, wheel, out, monkeypatch, base=registry_base, registry=f"{registry}/{repo_prefix}", push=True
    )
    assert again.digest == result.digest and again.pushed and sent == []


@pytest.mark.docker
def test_interrupted_push_completes_on_retry(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    example: tuple[Project, Path],
    registry: str,
    registry_base: str,
) -> None:
    from hatch_flyte.image.oci.registry import Registry as Reg

    project, wheel = example
    repo_prefix = f"hatch-flyte-test/oci-{os.urandom(6).hex()}"
    out = tmp_path / "out"
    real_upload = Reg.upload_blob
    calls: list[str] = []
    interrupted: list[str] = []

    def flaky(self: Reg, repository: str, digest: str, path: Path) -> None:
        calls.append(digest)
        if len(calls) == 2 and not interrupted:
            interrupted.append(digest)
            raise ImageError("simulated: the connection broke off")
        real_upload(self, repository, digest, path)

    monkeypatch.setattr(Reg, "upload_blob", flaky)
    with pytest.raises(ImageError, match="simulated"):
        build(
            project,
            wheel,
            out,
            monkeypatch,
            base=registry_base,
            registry=f"{registry}/{repo_prefix}",
            push=True,
        )
    assert_clean(out)
    first = list(calls)
    calls.clear()
    result = build(
        project, wheel, out, monkeypatch, base=registry_base, registry=f"{registry}/{repo_prefix}", push=True
    )
    assert first[0] not in calls  # uploaded before the interruption: skipped now
    assert manifest_digest(registry, f"{repo_prefix}/weather-pipeline", "0.3.0") == result.digest


@pytest.mark.docker
def test_auth_registry_push(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    example: tuple[Project, Path],
    auth_registry: Any,
    registry_base: str,
) -> None:
    project, wheel = example
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    target = f"{auth_registry.host}/hatch-flyte-test/oci-{os.urandom(6).hex()}"
    out = tmp_path / "out"
    monkeypatch.setenv("HATCH_FLYTE_REGISTRY_USER", auth_registry.username)
    monkeypatch.setenv("HATCH_FLYTE_REGISTRY_PASSWORD", "wrong-password")
    with pytest.raises(ImageError, match=f"refused the credentials of user '{auth_registry.username}'"):
        build(project, wheel, out, monkeypatch, base=registry_base, registry=target, push=True)
    assert_clean(out)
    monkeypatch.delenv("HATCH_FLYTE_REGISTRY_USER")
    with pytest.raises(ImageError, match="needs credentials and none were found"):
        build(project, wheel, out, monkeypatch, base=registry_base, registry=target, push=True)
    assert_clean(out)
    monkeypatch.setenv("HATCH_FLYTE_REGISTRY_USER", auth_registry.username)
    monkeypatch.setenv("HATCH_FLYTE_REGISTRY_PASSWORD", auth_registry.password)
    result = build(project, wheel, out, monkeypatch, base=registry_base, registry=target, push=True)
    basic = (
        "Basic " + base64.b64encode(f"{auth_registry.username}:{auth_registry.password}".encode()).decode()
    )
    repository = target.split("/", 1)[1] + "/weather-pipeline"
    assert manifest_digest(auth_registry.host, repository, "0.3.0", basic) == result.digest

    # The same push with the credentials in a credential helper named by the Docker config.
    from test_registry_credentials import asked, config, helper, helper_env, store

    creds = helper_env(tmp_path / "helpers", monkeypatch)
    helper(creds, "hftest")
    store(creds, {auth_registry.host: [auth_registry.username, auth_registry.password]})
    config(creds, {"credHelpers": {auth_registry.host: "hftest"}})
    shutil.rmtree(out)
    again = build(project, wheel, out, monkeypatch, base=registry_base, registry=target, push=True)
    assert again.digest == result.digest
    assert f"hftest get {auth_registry.host}" in asked(creds)


@pytest.mark.docker
def test_base_not_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, example: tuple[Project, Path], registry: str
) -> None:
    project, wheel = example
    out = tmp_path / "out"
    with pytest.raises(ImageError, match=r"is not in the registry .*fix `tool\.flyte\.image\.base`"):
        build(project, wheel, out, monkeypatch, base=f"{registry}/hatch-flyte-test/no-such-base:1")
    assert_clean(out)


@pytest.mark.docker
def test_docker_archive_base(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    example: tuple[Project, Path],
    base_image: str,
    docker_client: Any,
) -> None:
    project, wheel = example
    archive = tmp_path / "base.tar"
    with archive.open("wb") as f:
        for chunk in docker_client.images.get(base_image).save(named=True):
            f.write(chunk)
    result = build(project, wheel, tmp_path / "out", monkeypatch, base=f"docker-archive:{archive}")
    layout = tmp_path / "out" / "weather-pipeline.oci"
    inspect = subprocess.run(
        ["skopeo", "inspect", f"oci:{layout}:0.3.0"], capture_output=True, text=True, check=True
    )
    assert json.loads(inspect.stdout)["Digest"] == result.digest


def test_dependency_only_image_holds_no_code_and_is_not_rewritten_for_a_code_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    base = fake_base(tmp_path / "base")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    monkeypatch.setattr("hatch_flyte.image.oci.builder.cache_dir", lambda: tmp_path / "cache")
    root = copy_example(tmp_path / "weather_pipeline")
    out = tmp_path / "out"
    # No wheel: the dependencies come from pyproject.toml's static [project] table.
    first = build(load_project(root), None, out, monkeypatch, base=f"oci:{base}:1", include_project=False)
    assert first.contents == "dependencies" and first.to_json()["contents"] == "dependencies"
    assert first.tags == (first.ref,)  # no version tag
    layout = out / "weather-pipeline.oci"
    manifest = json.loads((layout / "blobs" / "sha256" / str(first.digest)[7:]).read_bytes())
    assert len(manifest["layers"]) == 3  # the base's, the venv skeleton, the dependencies
    names: list[str] = []
    for layer in manifest["layers"]:
        with tarfile.open(layout / "blobs" / "sha256" / layer["digest"][7:]) as tar:
            names += tar.getnames()
    assert any(n.endswith("site-packages/flyte/__init__.py") for n in names)
    assert not [n for n in names if "weather_pipeline" in n]
    config = json.loads((layout / "blobs" / "sha256" / first.id[7:]).read_bytes())
    labels = config["config"]["Labels"]
    assert labels["org.opencontainers.image.title"] == "weather-pipeline"
    assert not {"version", "revision", "description"} & {k.rpartition(".")[2] for k in labels}
    archive = out / "weather-pipeline.oci.tar"
    before = archive.stat().st_mtime_ns

    tasks = root / "src" / "weather_pipeline" / "tasks.py"
    tasks.write_text(tasks.read_text() + "\n# a code-only change\n")
    caplog.set_level(logging.INFO, logger="hatch_flyte")
    second = build(load_project(root), None, out, monkeypatch, base=f"oci:{base}:1", include_project=False)
    assert (second.ref, second.digest, second.id) == (first.ref, first.digest, first.id)
    assert "nothing to build" in caplog.text
    assert archive.stat().st_mtime_ns == before  # neither the archive nor the layout rewritten

    # A damaged output is written again, not trusted.
    archive.write_bytes(b"damaged")
    third = build(load_project(root), None, out, monkeypatch, base=f"oci:{base}:1", include_project=False)
    assert third.digest == first.digest and archive.stat().st_size > 1000


def test_dependency_only_image_without_a_wheel_needs_static_dependencies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = copy_example(tmp_path / "weather_pipeline")
    pyproject = root / "pyproject.toml"
    text = pyproject.read_text().replace('dependencies = ["flyte>=2.12"]\n', 'dynamic = ["dependencies"]\n')
    pyproject.write_text(text)
    with pytest.raises(ImageError, match="dependencies are dynamic"):
        build(
            load_project(root),
            None,
            tmp_path / "out",
            monkeypatch,
            base="oci:/nowhere:1",
            include_project=False,
        )


# -- a Flyte pod's way: flyte's own a0 runs a task in the loaded OCI image, as any user ---------------


@pytest.fixture(scope="module")
def oci_pod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, PodCase]]:
    """The pod project built once with the OCI backend by ``hatch-flyte build`` (no engine: DOCKER_HOST
    leads nowhere), its archive loaded into the engine, and flyte's dry-run commands for its task."""
    client = make_docker_client()
    base = find_base_image(client)
    registry = find_registry()
    require_base_usable_by_any_user(client, base)
    work = tmp_path_factory.mktemp("oci-pod")
    image = {"backend": "oci", "base": push_base(client, registry, base),
             "registry": f"{registry}/hatch-flyte-test/oci-pod-{os.urandom(6).hex()}"}  # fmt: skip
    project = make_pod_project(work / "pod-check", image)
    cmd = [
        str(BIN / "hatch-flyte"),
        "build",
        str(project),
        "-t",
        "wheel,bundle,image",
        "--no-isolation",
        "--json",
    ]
    env = {**os.environ, "DOCKER_HOST": NO_DOCKER, "SOURCE_DATE_EPOCH": "1700000000"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, timeout=900)
    assert proc.returncode == 0, proc.stderr[-6000:]
    manifest = json.loads(proc.stdout)
    dist = project / "dist"
    with (dist / manifest["image"]["archive"]).open("rb") as archive:
        client.images.load(archive)
    try:
        bundle = dist / next(a["name"] for a in manifest["artifacts"] if a["kind"] == "bundle")
        yield client, prepare_pod_case(project, manifest["image"]["ref"], bundle, work / "scratch")
    finally:
        import docker.errors as docker_errors

        for tag in manifest["image"]["tags"]:
            with contextlib.suppress(docker_errors.APIError):
                client.images.remove(tag, force=True)
        client.close()


@pytest.mark.docker
@pytest.mark.parametrize("user", [None, "1000:1000"], ids=["root", "uid1000"])
@pytest.mark.parametrize("mode", ["fast", "full"])
def test_flyte_runs_the_task_in_the_oci_image(
    oci_pod: tuple[Any, PodCase], mode: str, user: str | None
) -> None:
    """As the Docker backend's image: the OCI layers give a workdir any user may write into."""
    client, case = oci_pod
    run, result = run_pod_case(client, case, mode, user)
    assert_pod_ran(case, mode, user, run, result)
