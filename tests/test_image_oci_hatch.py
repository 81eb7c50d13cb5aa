"""``hatch build -t flyte:wheel,bundle,image`` with the daemonless oci backend, for real: the plugin
runs in hatch's isolated build environment (this checkout's wheel by ``file://`` URI), the base comes
from the loopback registry and ``DOCKER_HOST`` points at a socket that does not exist. Then
``hatch-flyte build -t image`` on the same project must give the same image (reproducible across
frontends, ``SOURCE_DATE_EPOCH`` set).

Each frontend gets its own fresh cache directory holding only the dependency wheelhouse (warmed here,
outside the builds, so that no build downloads), so each writes every layer of the image itself.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from docker_env import unavailable
from flyte_names import flyte_bundle_name
from frontend_helpers import BIN, _run, copy_project

from hatch_flyte.image.oci import layout as L

pytestmark = pytest.mark.slow

BASE_REPO = "hatch-flyte-test/python"
BASE_TAG = "3.11-bookworm"
NAME = "weather-pipeline"


def _manifest_digest(host: str, repository: str, tag: str) -> str | None:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"http://{host}/v2/{repository}/manifests/{tag}", method="HEAD")
    request.add_header("Accept", ", ".join((L.OCI_MANIFEST, L.DOCKER_MANIFEST)))
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return str(response.headers.get("Docker-Content-Digest"))
    except urllib.error.HTTPError:
        return None


@pytest.fixture
def registry_base(registry: str, request: pytest.FixtureRequest) -> str:
    """The test base image in the loopback registry; the engine is used only to push it there once."""
    if _manifest_digest(registry, BASE_REPO, BASE_TAG) is None:
        base_image = request.getfixturevalue("base_image")
        client = request.getfixturevalue("docker_client")
        client.images.get(base_image).tag(f"{registry}/{BASE_REPO}", BASE_TAG)
        for chunk in client.images.push(f"{registry}/{BASE_REPO}", tag=BASE_TAG, stream=True, decode=True):
            assert "error" not in chunk, chunk
    return f"{registry}/{BASE_REPO}:{BASE_TAG}"


def _warm_cache(cache: Path, project: Path, scratch: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``cache`` with the image's wheelhouse only: copied from the default cache when it has it, else
    downloaded by this process's pip (as :func:`hatch_flyte.image.plan_image` would resolve it)."""
    from hatch_flyte.cache import cache_dir
    from hatch_flyte.image.oci.builder import host_platform_name
    from hatch_flyte.image.wheelhouse import Target, build_wheelhouse, requires_flyte, wheel_requirements
    from hatch_flyte.wheel import build_wheel

    default = cache_dir()
    if default is not None and (default / "wheelhouses").is_dir():
        shutil.copytree(default / "wheelhouses", cache / "wheelhouses")
    else:
        cache.mkdir(parents=True)
    monkeypatch.setenv("HATCH_FLYTE_CACHE_DIR", str(cache))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    scratch.mkdir()
    wheel = build_wheel(project, scratch, isolation=False)
    major, minor = (int(x) for x in re.findall(r"\d+", BASE_TAG)[:2])  # the base's Python
    target = Target((major, minor), host_platform_name())
    requirements = wheel_requirements(wheel, target)
    assert requires_flyte(requirements)
    build_wheelhouse(requirements, target)
    assert sorted(p.name for p in cache.iterdir()) == ["wheelhouses"]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _skopeo_digest(layout: Path, tag: str) -> str:
    out = subprocess.run(
        ["skopeo", "inspect", f"oci:{layout}:{tag}"], capture_output=True, text=True, check=True
    )
    return str(json.loads(out.stdout)["Digest"])


def test_hatch_build_oci_image_daemonless_and_reproducible_across_frontends(
    tmp_path: Path, plugin_wheel: Path, registry_base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if shutil.which("skopeo") is None:
        unavailable("skopeo is not installed (it checks the OCI layout independently)")
    project = copy_project("weather_pipeline", tmp_path, plugin_wheel)
    with (project / "pyproject.toml").open("a") as f:
        f.write(f'\n[tool.flyte.image]\nbackend = "oci"\nbase = "{registry_base}"\n')
        # hatch's build environment gets the image extra (pypa installer, pip) from the target.
        extra = f"hatch-flyte[image] @ {plugin_wheel.as_uri()}"
        f.write(f'\n[tool.hatch.build.targets.flyte]\ndependencies = ["{extra}"]\n')
    nowhere = f"unix://{tmp_path}/no-docker.sock"  # nothing listens there: no engine, for real
    caches = [tmp_path / "cache-hatch", tmp_path / "cache-cli"]
    for i, cache in enumerate(caches):
        _warm_cache(cache, project, tmp_path / f"scratch-{i}", monkeypatch)
    env = {"DOCKER_HOST": nowhere, "HATCH_FLYTE_NO_CACHE": "0", "HATCH_DATA_DIR": str(tmp_path / ".hatch")}

    # -- hatch build: the plugin in hatch's own build environment --------------------------------
    proc = _run(
        [str(BIN / "hatch"), "build", "-t", "flyte:wheel,bundle,image"],
        cwd=project,
        env={**env, "HATCH_FLYTE_CACHE_DIR": str(caches[0])},
    )
    log = proc.stdout + proc.stderr
    assert "without a daemon" in log and "pulling sha256:" in log, log  # the base came from the registry
    assert "from the cache" not in log, log  # every layer written in this build
    dist = project / "dist"
    (wheel,) = dist.glob("weather_pipeline-0.3.0-*.whl")
    (bundle,) = dist.glob("fast*.tar.gz")
    layout, archive = dist / f"{NAME}.oci", dist / f"{NAME}.oci.tar"
    assert sorted(p.name for p in dist.iterdir()) == sorted(
        [wheel.name, bundle.name, layout.name, archive.name, "flyte-manifest.json"]
    )
    assert bundle.name == flyte_bundle_name(project / "src")
    assert layout.is_dir() and archive.is_file()
    manifest = json.loads((dist / "flyte-manifest.json").read_text())
    image = manifest["image"]
    assert image["backend"] == "oci"
    assert image["ref"].startswith(f"{NAME}:h") and image["ref"] in image["tags"]
    assert f"{NAME}:0.3.0" in image["tags"]
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", image["digest"])
    assert image["archive"] == archive.name  # relative to the manifest's own directory
    assert image["base"] == registry_base
    listed = {a["name"]: a for a in manifest["artifacts"]}
    assert set(listed) == {wheel.name, bundle.name, archive.name}
    assert listed[archive.name]["kind"] == "image-archive"
    for path in (wheel, bundle, archive):
        assert listed[path.name]["sha256"] == _sha256(path), path.name
        assert listed[path.name]["size"] == path.stat().st_size
    # the layout, read by another tool: the manifest digest under both tags
    content_tag = image["ref"].rpartition(":")[2]
    assert _skopeo_digest(layout, "0.3.0") == image["digest"]
    assert _skopeo_digest(layout, content_tag) == image["digest"]
    # and the layout's own config is the image id
    blob = json.loads((layout / "blobs" / "sha256" / image["digest"][7:]).read_bytes())
    assert blob["config"]["digest"] == image["id"]

    # -- hatch-flyte build: the CLI (pypa build for the wheel), its own fresh cache ------------------
    out = tmp_path / "cli-dist"
    proc = _run(
        [str(BIN / "hatch-flyte"), "build", str(project), "-t", "image", "-o", str(out), "--json", "-v"],
        cwd=tmp_path,
        env={**env, "HATCH_FLYTE_CACHE_DIR": str(caches[1])},
    )
    cli = json.loads(proc.stdout)
    assert "without a daemon" in proc.stderr and "from the cache" not in proc.stderr, proc.stderr
    assert cli["image"]["digest"] == image["digest"]  # the same image from both frontends
    assert {k: v for k, v in cli["image"].items() if k != "archive"} == {
        k: v for k, v in image.items() if k != "archive"
    }
    cli_archive = out / f"{NAME}.oci.tar"
    assert [a["name"] for a in cli["artifacts"]] == [cli_archive.name]
    assert cli["artifacts"][0]["sha256"] == listed[archive.name]["sha256"] == _sha256(cli_archive)
    assert _skopeo_digest(out / f"{NAME}.oci", "0.3.0") == image["digest"]
    assert not Path(nowhere.removeprefix("unix://")).exists()
