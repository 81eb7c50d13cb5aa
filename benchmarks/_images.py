"""What the image benchmarks share: the test environment's settings, a cold engine cache (a fresh
base and the removal of what earlier runs built on theirs), the code-only change, engine facts.

Imported by ``bench_image.py`` and ``bench_image_oci.py`` (run as scripts, so this directory is on
``sys.path``).
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import tarfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
ENV_FILE = REPO / ".ci" / ".docker-env"
#: The task module whose body changes, and the change (``{n}`` numbers each rebuild).
CHANGES = {
    "weather_pipeline": (
        "src/weather_pipeline/tasks.py",
        r'return "[^"]*"\.join\(',
        'return " |{n}| ".join(',
    ),
}


def setting(name: str) -> str | None:
    """``name`` from the environment, else from ``.ci/.docker-env`` (KEY=VALUE lines)."""
    if os.environ.get(name):
        return os.environ[name]
    try:
        for line in ENV_FILE.read_text().splitlines():
            key, sep, value = line.strip().partition("=")
            if sep and key.strip() == name and not key.startswith("#"):
                return value.strip() or None
    except FileNotFoundError:
        pass
    return None


def change_code(project: Path, n: int) -> None:
    """The ``n``-th code-only change: one task's body."""
    rel, pattern, new = CHANGES[project.name.partition("-")[0]]  # a copy may be named "<project>-<what>"
    path = project / rel
    text, count = re.subn(pattern, new.format(n=n), path.read_text(), count=1)
    if not count:
        raise SystemExit(f"{path}: {pattern!r} not found; cannot make a code-only change")
    path.write_text(text)


def inspect_base_unremembered(client: Any, base: str, python: str | None) -> Any:
    """``docker_backend.inspect_base`` without hatch-flyte's record of the base's Python, so that the
    measured first build finds it itself, as a first build on a new base does (a container run)."""
    from hatch_flyte.image.docker import backend as docker_backend

    os.environ["HATCH_FLYTE_NO_CACHE"] = "1"
    try:
        return docker_backend.inspect_base(client, base, python)
    finally:
        del os.environ["HATCH_FLYTE_NO_CACHE"]


# --- engine housekeeping -------------------------------------------------------------------------


def descendants(client: Any, roots: set[str]) -> list[str]:
    """Ids of the images built on ``roots`` (roots included), children before parents."""
    children: dict[str, list[str]] = {}
    for image in client.images.list(all=True):
        parent = image.attrs.get("Parent") or ""
        if parent:
            children.setdefault(parent, []).append(image.id)
    depth: dict[str, int] = {}
    stack = [(root, 0) for root in roots]
    while stack:
        image_id, d = stack.pop()
        if depth.get(image_id, -1) >= d:
            continue
        depth[image_id] = d
        stack.extend((child, d + 1) for child in children.get(image_id, ()))
    return sorted(depth, key=lambda i: -depth[i])


def remove(client: Any, image_ids: list[str]) -> int:
    import docker.errors

    removed = 0
    for image_id in image_ids:
        try:
            client.images.remove(image_id, force=True)
            removed += 1
        except docker.errors.NotFound:
            pass  # went with a child (untagged parents are pruned with it)
        except docker.errors.APIError as e:
            print(f"  note: could not remove {image_id[:19]}: {e.explanation or e}")
    return removed


def clear_bench_images(client: Any, repo: str, label: str, base_repo: str) -> tuple[int, int]:
    """Remove the project's images (its tags), then everything built on a bench base (labelled
    ``label`` or in ``base_repo``): dependency images and their dangling install stages included.
    Images of anything else on the engine stay. Returns (tagged, built on bases) removed."""
    tagged = remove(client, sorted({image.id for image in client.images.list(name=repo)}))
    bases = {image.id for image in client.images.list(all=True, filters={"label": label})}
    bases |= {image.id for image in client.images.list(name=base_repo)}
    return tagged, remove(client, descendants(client, bases))


def fresh_base(client: Any, base: str, run_id: str, label: str, base_repo: str) -> str:
    """``base`` under a new image id (``FROM base`` + a label: no new layer, the same filesystem).

    The classic builder keys its cache on the parent image id: no cache entry of another image on
    this engine (the tests' images share every dependency step) can serve a build on it, and
    nothing but this benchmark's images has to be removed to make the cache cold."""
    dockerfile = f'FROM {base}\nLABEL {label}="{run_id}"\n'.encode()
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
    context.seek(0)
    tag = f"{base_repo}:{run_id}"
    stream = client.api.build(
        fileobj=context, custom_context=True, tag=tag, decode=True, rm=True, forcerm=True,
        network_mode="none", pull=False, use_config_proxy=False,
    )  # fmt: skip
    for chunk in stream:
        if "error" in chunk:
            raise SystemExit(f"cannot derive the bench base from {base}: {chunk['error']}")
    return tag


# --- report --------------------------------------------------------------------------------------


def engine_facts(client: Any) -> str:
    info = client.info()
    return (
        f"Docker {info.get('ServerVersion')} ({info.get('Driver')} storage{data_root_fs(info)}, "
        f"classic builder), {info.get('NCPU')} CPUs, {info.get('MemTotal', 0) / (1 << 30):.0f} GiB"
    )


def data_root_fs(info: dict[str, Any]) -> str:
    """`` on <filesystem>`` of the engine's data root when it is on this machine: with vfs, whether
    its per-step copies of the root filesystem go to a disk or stay in memory sets the scale."""
    root = info.get("DockerRootDir") or ""
    if not root or not Path(root).is_dir():
        return ""
    out = subprocess.run(["stat", "-f", "-c", "%T", root], capture_output=True, text=True, check=False)
    return f" on {out.stdout.strip()}" if out.returncode == 0 and out.stdout.strip() else ""
