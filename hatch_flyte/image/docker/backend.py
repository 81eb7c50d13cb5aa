"""The Docker engine backend, through the ``docker`` SDK's low-level API (classic builder, no BuildKit).

Every build and push error arrives in the SDK's stream, not as an exception; each becomes an
:class:`ImageError` with the engine's or registry's own message.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

import hatch_flyte.image.basecache as basecache
from hatch_flyte.atomic import interruptible
from hatch_flyte.errors import ImageError
from hatch_flyte.image.backend import BuiltImage, ImageBackend
from hatch_flyte.image.credentials import credentials_for, env_credentials
from hatch_flyte.image.docker.dockerfile import (
    DOCKERFILE_BASE_REPOSITORY,
    deps_ref,
    project_dockerfile,
    write_context,
    write_deps_context,
)
from hatch_flyte.image.plan import IMAGE_ID_ENV, BaseInfo, ImagePlan, linux_platform
from hatch_flyte.report import progress, step

log = logging.getLogger(__name__)


class DockerBackend(ImageBackend):
    """Images built by a Docker engine (classic builder), tagged there and pushed by it."""

    name = "docker"
    how = "in the Docker engine"

    def __init__(self) -> None:
        self.client = connect()

    def base(self, ref: str, python: str | None, platform: str | None) -> BaseInfo:
        info = inspect_base(self.client, ref, python)
        # Without a configured platform the engine builds for its own.
        return info if platform else replace(info, platform=engine_platform(self.client))

    def build_base(
        self, dockerfile: Path, context: Path, build_args: Mapping[str, str], platform: str | None, where: str
    ) -> str:
        return build_dockerfile_base(self.client, dockerfile, context, build_args, platform, where)

    def build(self, plan: ImagePlan, repository: str, tags: Sequence[str], *, push: bool) -> BuiltImage:
        ref = f"{repository}:{tags[0]}"
        image_id = up_to_date(self.client, plan, ref) if plan.project_wheel is None else None
        if image_id is not None:
            log.info("image %s is up to date (%s): nothing to build", ref, image_id[:19])
            tag(self.client, image_id, ref, tags[1:])
        else:
            image_id = build(self.client, plan, ref, tags[1:])
        digest = None
        if push:
            for name in tags:
                pushed = push_tag(self.client, f"{repository}:{name}", image_id)
                digest = digest or pushed
        return BuiltImage(image_id, digest)

    def close(self) -> None:
        self.client.close()


def _where() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def connect() -> Any:
    """A docker client, or a clear error saying where we looked and what to do."""
    from hatch_flyte.extras import require

    require("docker", "the `docker` image backend", ImageError)
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except Exception as e:
        raise ImageError(
            f"no Docker engine answered at {_where()} ({e}). Start Docker, or point DOCKER_HOST at a running "
            "engine"
        ) from None
    return client


def engine_platform(client: Any) -> str:
    return linux_platform(client.version().get("Arch"))


def inspect_base(client: Any, ref: str, python: str | None) -> BaseInfo:
    """Find (or pull) the base image and the Python inside it."""
    import docker.errors

    try:
        image = client.images.get(ref)
    except docker.errors.ImageNotFound:
        try:
            with step(f"pulled base image {ref}"):
                image = client.images.pull(ref)
        except docker.errors.APIError as e:
            raise ImageError(
                f"base image {ref!r} is not in the engine at {_where()} and cannot be pulled: "
                f"{e.explanation or e}. Fix `tool.flyte.image.base` or pull/load the image first"
            ) from None
    digests = image.attrs.get("RepoDigests") or []
    arch = image.attrs.get("Architecture") or "amd64"
    candidates = [python] if python else ["python3", "python"]
    found = _cached_python(image.id, candidates) or _probe_python(client, ref, image.id, candidates)
    return BaseInfo(
        ref,
        image.id,
        _repo_digest(ref, digests),
        found[0],
        found[1],
        f"linux/{arch}",
    )


def _probe_python(client: Any, ref: str, image_id: str, candidates: list[str]) -> tuple[str, tuple[int, int]]:
    """Run each candidate interpreter in a throwaway container; the first that answers wins."""
    import docker.errors

    probe = "import sys; print(sys.version_info[0], sys.version_info[1])"
    errors = []
    # Labelled, so that an interrupted probe's container can be found and removed.
    label = {"org.hatch-flyte.probe": f"{os.getpid()}-{uuid.uuid4().hex}"}
    for exe in candidates:
        try:
            with interruptible(f"probing the Python of the base image {ref}"):
                try:
                    out = client.containers.run(
                        image_id, [exe, "-c", probe], remove=True, network_disabled=True, entrypoint=[],
                        labels=label,
                    )  # fmt: skip
                except KeyboardInterrupt:
                    _remove_containers(client, label)
                    raise
        except docker.errors.ContainerError as e:
            errors.append(f"{exe}: {e.stderr.decode(errors='replace').strip() if e.stderr else e}")
            continue
        except docker.errors.APIError as e:
            errors.append(f"{exe}: {e.explanation or e}")
            continue
        major, minor = (int(x) for x in out.decode().split())
        _store_python(image_id, candidates, exe, (major, minor))
        return exe, (major, minor)
    raise ImageError(
        f"no Python interpreter found in base image {ref!r} "
        f"(tried {', '.join(candidates)}: {'; '.join(errors)}); "
        "set `tool.flyte.image.python` or choose a base image with Python"
    )


def _remove_containers(client: Any, label: Mapping[str, str]) -> None:
    ((key, value),) = label.items()
    with contextlib.suppress(Exception):
        for container in client.containers.list(all=True, filters={"label": f"{key}={value}"}):
            container.remove(force=True)


def _cached_python(image_id: str, candidates: list[str]) -> tuple[str, tuple[int, int]] | None:
    found = basecache.load("docker-python", [image_id, candidates])
    try:
        exe, (major, minor) = str(found["python"]), found["version"]  # type: ignore[index]
        return (exe, (int(major), int(minor))) if exe in candidates else None
    except (KeyError, TypeError, ValueError):
        return None


def _store_python(image_id: str, candidates: list[str], exe: str, version: tuple[int, int]) -> None:
    basecache.store("docker-python", [image_id, candidates], {"python": exe, "version": list(version)})


def _familiar(name: str) -> str:
    for prefix in ("docker.io/library/", "index.docker.io/library/", "docker.io/", "index.docker.io/"):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def _repo_digest(ref: str, repo_digests: Iterable[str]) -> str | None:
    """The manifest digest of ``ref`` in its own repository, if the engine knows it.

    Not just any ``RepoDigests`` entry: an image pushed to (or pulled from) another repository as
    well has that repository's digests too, and which one comes first is not stable.
    """
    name, _, digest = ref.partition("@")
    if digest:
        return digest
    head, _, last = name.rpartition("/")
    repo = _familiar(f"{head}/{last.partition(':')[0]}" if head else last.partition(":")[0])
    for entry in repo_digests:
        entry_repo, _, entry_digest = entry.partition("@")
        if _familiar(entry_repo) == repo and entry_digest:
            return entry_digest
    return None


def build(client: Any, plan: ImagePlan, ref: str, tags: Iterable[str]) -> str:
    """Build the image, tag it ``ref`` and each of ``tags``; return the image id.

    The dependency image comes first, unless the engine has it already (found by its tag). When
    anything fails or a signal interrupts, each of the tags points where it pointed before.
    """
    tags = list(tags)
    repo, _, _ = ref.rpartition(":")
    refs = list(dict.fromkeys([ref, *(f"{repo}:{t}" for t in tags)]))
    with interruptible(f"building the image {ref}"):
        before = {r: _image_id(client, r) for r in refs}
        try:
            return _build_and_tag(client, plan, ref, tags)
        except KeyboardInterrupt:
            # Closing the connection cancels the engine's build (``forcerm`` removes its container).
            with contextlib.suppress(Exception):
                client.api.close()
            _restore_tags(client, before)
            raise
        except BaseException:
            _restore_tags(client, before)
            raise


def _image_id(client: Any, ref: str) -> str | None:
    import docker.errors

    try:
        return str(client.api.inspect_image(ref)["Id"])
    except docker.errors.APIError:  # not found, or not a valid name (the build says so)
        return None


def _restore_tags(client: Any, before: Mapping[str, str | None]) -> None:
    """Point each tag back where it pointed (or nowhere), so no image is left half tagged."""
    for ref, previous in before.items():
        with contextlib.suppress(Exception):
            if _image_id(client, ref) == previous:
                continue
            repo, _, name = ref.rpartition(":")
            if previous is None:
                client.api.remove_image(ref, noprune=True)
            else:
                client.api.tag(previous, repo, name, force=True)


def _build_and_tag(client: Any, plan: ImagePlan, ref: str, tags: list[str]) -> str:
    _ensure_deps_image(client, plan)
    with tempfile.TemporaryFile() as context:
        write_context(plan, project_dockerfile(plan, ref), context)
        context.seek(0)
        image_id = _build(client, context, ref, plan.platform)
    tag(client, image_id, ref, tags)
    arch = client.images.get(image_id).attrs.get("Architecture")
    want = plan.platform.split("/", 1)[1]
    if arch and arch != want:
        raise ImageError(
            f"the engine built a {arch} image although `platform` is {plan.platform}; the classic builder "
            "cannot cross-build: build on a matching machine or leave `tool.flyte.image.platform` unset"
        )
    return str(image_id)


def tag(client: Any, image_id: str, ref: str, tags: Iterable[str]) -> None:
    """Tag ``image_id`` as ``ref`` and as each of ``tags`` in ``ref``'s repository."""
    import docker.errors

    repo, _, first = ref.rpartition(":")
    for name in (first, *tags):
        try:
            client.api.tag(image_id, repo, name)
        except docker.errors.APIError as e:
            raise ImageError(
                f"the Docker engine cannot tag the image {repo}:{name}: {e.explanation or e}. A tag "
                "allows letters, digits, `_`, `.` and `-` (not first), at most 128 characters; fix "
                "`tool.flyte.image.tags`"
            ) from None


def up_to_date(client: Any, plan: ImagePlan, ref: str) -> str | None:
    """The id of the image ``ref`` when it is exactly what ``plan`` would build, else None.

    Only for a dependency-only image, whose steps on top of the dependency image (labels, the
    ``ENV`` naming it) are all in its configuration: it is the one built when the dependency image
    (found by its content tag) is its ancestor that many steps down, and its labels and name match.
    A full image's project layer cannot be checked this way; the engine's build cache serves it.
    """
    import docker.errors

    try:
        image = client.images.get(ref)
        deps = client.images.get(deps_ref(plan))
        history = client.api.history(image.id)
    except docker.errors.ImageNotFound:
        return None
    except docker.errors.APIError as e:
        raise ImageError(f"the Docker engine cannot look up the image {ref}: {e.explanation or e}") from None
    config = image.attrs.get("Config") or {}
    env = dict(str(item).partition("=")[::2] for item in config.get("Env") or [])
    labels = config.get("Labels") or {}
    steps = sum(
        1 for line in project_dockerfile(plan, ref).splitlines()[1:]
        if line and not line[0].isspace() and not line.startswith(("#", "FROM"))
    )  # fmt: skip
    ids = [str(h.get("Id")) for h in history]
    if env.get(IMAGE_ID_ENV) != ref or any(labels.get(k) != v for k, v in plan.labels.items()):
        return None
    if steps >= len(ids) or ids[steps] != deps.id:
        return None
    return str(image.id)


def build_dockerfile_base(
    client: Any,
    dockerfile: Path,
    context: Path,
    build_args: Mapping[str, str],
    platform: str | None,
    where: str,
) -> str:
    """Build the user's Dockerfile as the base, with the engine's normal network (its ``RUN`` steps
    may install system packages); return its tag, ``hatch-flyte/base:i<image id>``.

    The engine's build cache makes an unchanged Dockerfile and context give the same image id, and
    a changed context a new one, which the image's content tag then follows.
    """
    import docker.errors

    log.info("building the base from %s (context %s)", dockerfile, context)
    try:
        stream = client.api.build(
            path=str(context), dockerfile=str(dockerfile), decode=True, rm=True, forcerm=True,
            buildargs=dict(build_args), platform=platform, pull=False,
        )  # fmt: skip
        image_id = _consume_build(stream, f"{where}: building the base from {dockerfile} failed")
    except docker.errors.APIError as e:
        raise ImageError(f"{where}: the Docker engine rejected the build: {e.explanation or e}") from None
    except (OSError, docker.errors.DockerException) as e:
        raise ImageError(f"{where}: cannot send the build context {context}: {e}") from None
    repo, name = DOCKERFILE_BASE_REPOSITORY, "i" + image_id.partition(":")[2][:20]
    try:
        client.api.tag(image_id, repo, name)
    except docker.errors.APIError as e:
        raise ImageError(
            f"the Docker engine cannot tag the base {repo}:{name}: {e.explanation or e}"
        ) from None
    return f"{repo}:{name}"


def _ensure_deps_image(client: Any, plan: ImagePlan) -> None:
    import docker.errors

    ref = deps_ref(plan)
    try:
        client.images.get(ref)
    except docker.errors.ImageNotFound:
        pass
    except docker.errors.APIError as e:
        raise ImageError(f"the Docker engine cannot look up the image {ref}: {e.explanation or e}") from None
    else:
        progress.info("dependencies: %s (built before)", ref)
        return
    files = len(plan.wheelhouse.files)
    progress.info("building the dependency image %s (%d files in the wheelhouse)", ref, files)
    with tempfile.TemporaryFile() as context:
        write_deps_context(plan, context)
        context.seek(0)
        _build(client, context, ref, plan.platform)


def _build(client: Any, context: IO[bytes], tag: str, platform: str) -> str:
    """One classic-builder build with no network; the built image's id."""
    import docker.errors

    try:
        stream = client.api.build(
            fileobj=context, custom_context=True, tag=tag, decode=True, rm=True, forcerm=True,
            network_mode="none", platform=platform, pull=False, use_config_proxy=False,
        )  # fmt: skip
        return _consume_build(stream)
    except docker.errors.APIError as e:
        raise ImageError(f"the Docker engine rejected the build: {e.explanation or e}") from None


def _consume_build(stream: Iterable[Mapping[str, Any]], what: str = "the image build failed") -> str:
    image_id = None
    last_lines: list[str] = []
    current: tuple[str, float] | None = None  # the step running, and since when

    def finish() -> None:
        if current is not None:
            progress.info("%s (%.1fs)", current[0], time.perf_counter() - current[1])

    for chunk in stream:
        if "error" in chunk or "errorDetail" in chunk:
            detail = chunk.get("errorDetail") or {}
            message = (detail.get("message") or chunk.get("error") or "").strip()
            context = "\n".join(last_lines[-15:])
            raise ImageError(f"{what}: {message}" + (f"\n{context}" if context else ""))
        text = chunk.get("stream")
        if text:
            for line in text.rstrip("\n").splitlines():
                if line.strip():
                    last_lines.append(line)
                    log.debug("docker: %s", line)
                    if line.startswith("Step "):
                        log.info(
                            "docker: %s", line
                        )  # as the engine says it (-v; the image benchmark reads it)
                        finish()
                        current = (_step_line(line), time.perf_counter())
        aux = chunk.get("aux")
        if isinstance(aux, Mapping) and "ID" in aux:
            image_id = aux["ID"]
    finish()
    if image_id is None:
        raise ImageError("the Docker engine ended the build without an image id; see the output above")
    return str(image_id)


def _step_line(line: str) -> str:
    """``Step 3/7 : COPY --from=install /opt/venv /opt/venv`` -> ``docker: [3/7] COPY ...`` (shortened)."""
    head, _, instruction = line.partition(" : ")
    number = head.removeprefix("Step ").strip()
    instruction = " ".join(instruction.split())
    if len(instruction) > 80:
        instruction = instruction[:77] + "..."
    return f"docker: [{number}] {instruction}"


def registry_auth(registry: str) -> dict[str, str] | None:
    """Credentials from the environment (``HATCH_FLYTE_REGISTRY_USER``/``_PASSWORD``); else None.

    With None the docker SDK uses the standard Docker config (``~/.docker/config.json``).
    """
    found = env_credentials()
    if found is None:
        return None
    return {"username": found.username, "password": found.password, "serveraddress": registry}


def _in_registry(client: Any, ref: str, image_id: str) -> str | None:
    """The registry's digest of ``ref`` when it is this image as pushed before from this engine
    (one of its ``RepoDigests``), else None (and whenever the registry cannot tell)."""
    from hatch_flyte.image.oci.registry import Registry

    repo, _, name = ref.rpartition(":")
    registry, _, repository = repo.partition("/")
    try:
        known = client.images.get(image_id).attrs.get("RepoDigests") or []
        digests = {d.partition("@")[2] for d in known if d.partition("@")[0] == repo}
        if not digests:
            return None
        found = Registry(registry, credentials_for(registry, use_env=True)).manifest_digest(repository, name)
    except Exception as e:  # the push itself reports what is wrong with the registry
        log.debug("cannot ask %s for %s: %s", registry, ref, e)
        return None
    return found if found in digests else None


def push_tag(client: Any, ref: str, image_id: str | None = None) -> str:
    """Push ``ref``; return the registry's manifest digest. Registry errors become ImageErrors.

    With ``image_id``, nothing is pushed when the registry has that image under ``ref`` already.
    """
    repo, _, tag = ref.rpartition(":")
    registry = repo.split("/", 1)[0]
    if image_id is not None:
        found = _in_registry(client, ref, image_id)
        if found is not None:
            log.info("%s is in the registry already (%s): nothing to push", ref, found[:19])
            return found
    auth = registry_auth(registry)
    started = time.perf_counter()
    try:
        stream = client.images.push(repo, tag=tag, stream=True, decode=True, auth_config=auth)
        digest = None
        for chunk in stream:
            if "error" in chunk or "errorDetail" in chunk:
                detail = chunk.get("errorDetail") or {}
                message = (detail.get("message") or chunk.get("error") or "").strip()
                raise ImageError(
                    f"pushing {ref} failed: {message}. Check that the registry {registry} is up and that "
                    "credentials are in ~/.docker/config.json (docker login) or "
                    "HATCH_FLYTE_REGISTRY_USER/_PASSWORD"
                )
            aux = chunk.get("aux")
            if isinstance(aux, Mapping) and aux.get("Digest"):
                digest = aux["Digest"]
    except ImageError:
        raise
    except Exception as e:
        raise ImageError(f"pushing {ref} failed: {e}") from None
    if digest is None:
        raise ImageError(f"pushing {ref} ended without a digest from the registry")
    progress.info("pushed %s (%.1fs)", ref, time.perf_counter() - started)
    return str(digest)
