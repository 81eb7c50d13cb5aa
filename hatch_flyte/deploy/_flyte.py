"""The one module that uses flyte's private API, for the one step flyte has no public API for.

flyte 2.12's ``flyte.deploy()`` always builds a code bundle of its own; registering tasks with a
bundle that was built before needs its deployment internals: ``plan_deploy`` (environments and
their ``depends_on``), ``_deploy_task`` (translate one task to its ``TaskSpec`` and call
``TaskService/DeployTask``; ``ALREADY_EXISTS`` is success), ``ImageCache`` (the image lookup that
tasks carry in ``--image-cache``) and the CLI's configuration loader (``CLIConfig.init``: config file,
environment variables, ``FLYTE_API_KEY``, overrides), so that the connection is found exactly as
``flyte`` finds it and credentials stay flyte's business. The upload is flyte's public
``flyte.remote.upload_file``, with a handler on its progress hook (``report_uploads``).

Private API changes without notice, so this module runs only with the flyte versions it was
tested with (:data:`SUPPORTED`); anything else is refused with a clear error before flyte is
imported. Nothing of flyte is patched.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from hatch_flyte.deploy.result import Connection, EnvironmentImage, RegisteredTask
from hatch_flyte.errors import DeployError
from hatch_flyte.manifest import file_digest

#: flyte versions this module is tested with (the ``deploy`` extra pins the same range).
SUPPORTED = ">=2.12.1,<2.13"
#: A dry run needs a client object but must connect nowhere: nothing listens on the discard port.
OFFLINE_ENDPOINT = "dns:///127.0.0.1:9"
DEFAULT_REF = "default"  # flyte's name for the image of "auto" environments (`--image URI`)

log = logging.getLogger("hatch_flyte")


def check_flyte() -> str:
    """The installed flyte version; a :class:`DeployError` when it is missing or unsupported."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    try:
        found = metadata.version("flyte")
    except metadata.PackageNotFoundError:
        raise DeployError(
            f"`hatch-flyte deploy` needs flyte{SUPPORTED}, which is not installed; "
            "install it with: pip install 'hatch-flyte[deploy]'"
        ) from None
    try:
        ok = Version(found) in SpecifierSet(SUPPORTED)
    except InvalidVersion:
        ok = False
    if not ok:
        raise DeployError(
            f"flyte {found} is installed, but `hatch-flyte deploy` supports flyte{SUPPORTED} only "
            "(it registers prebuilt bundles through flyte internals that change between versions); "
            f"install a supported flyte: pip install 'flyte{SUPPORTED}'"
        )
    return found


@dataclass(frozen=True)
class Registration:
    version: str
    bundle_uri: str | None
    environments: tuple[EnvironmentImage, ...]
    tasks: tuple[RegisteredTask, ...]
    project: str | None
    domain: str | None


def configure(connection: Connection, root: Path, *, dry_run: bool) -> None:
    """``flyte.init`` the way the ``flyte`` CLI does; a dry run gets an endpoint that is never called."""
    import flyte
    import flyte.config
    from flyte.cli._common import CLIConfig

    if connection.config is not None and not connection.config.is_file():
        raise DeployError(f"flyte config file {connection.config} does not exist (option --config)")
    try:
        cfg = flyte.config.auto(config_file=str(connection.config) if connection.config else None)
        if dry_run:
            task = cfg.task
            cfg = cfg.with_params(
                type(cfg.platform)(endpoint=OFFLINE_ENDPOINT, insecure=True),
                type(task)(
                    org=connection.org or task.org,
                    project=connection.project or task.project,
                    domain=connection.domain or task.domain,
                ),
            )
            flyte.init_from_config(cfg, root_dir=root, log_level=logging.ERROR)
            return
        CLIConfig(
            config=cfg,
            ctx=None,  # type: ignore[arg-type]  # only read by click commands
            endpoint=connection.endpoint,
            insecure=connection.insecure,  # type: ignore[arg-type]  # None: keep the config's
            org=connection.org,
        ).init(connection.project, connection.domain, root_dir=str(root))
    except DeployError:
        raise
    except Exception as e:
        raise DeployError(f"flyte could not be configured: {type(e).__name__}: {e}") from None


def register(
    envs: Sequence[Any],
    *,
    root: Path,
    bundle: Path | None,
    version: Callable[[Mapping[str, str]], str],
    images: Mapping[str, str],
    manifest_image: str | None,
    connection: Connection,
    dry_run: bool,
) -> Registration:
    """Register ``envs`` (and what they depend on) with the prebuilt ``bundle`` (None: full mode).

    ``images`` are the ``--image`` values (``default`` for "auto" environments); "auto"
    environments otherwise run on ``manifest_image``. ``version`` computes the version from the
    environment -> image map.
    """
    check_flyte()
    configure(connection, root, dry_run=dry_run)
    from flyte.syncify import syncify

    run = syncify(_register)
    return run(
        list(envs),
        bundle=bundle,
        version=version,
        images=dict(images),
        manifest_image=manifest_image,
        dry_run=dry_run,
    )


async def _register(
    envs: list[Any],
    *,
    bundle: Path | None,
    version: Callable[[Mapping[str, str]], str],
    images: dict[str, str],
    manifest_image: str | None,
    dry_run: bool,
) -> Registration:
    from flyte._deploy import plan_deploy
    from flyte._initialize import get_init_config
    from flyte._task_environment import TaskEnvironment
    from flyte.models import CodeBundle, SerializationContext

    try:
        plans = plan_deploy(*envs)
    except ValueError as e:  # two environments of one name
        raise DeployError(f"the environments cannot be deployed together: {e}") from None
    # Apps (AppEnvironment) are served, not registered as tasks: left to `flyte deploy`, by name.
    apps = sorted({n for plan in plans for n, e in plan.envs.items() if not isinstance(e, TaskEnvironment)})
    if apps:
        plans = [
            replace(plan, envs={n: e for n, e in plan.envs.items() if isinstance(e, TaskEnvironment)})
            for plan in plans
        ]
        plans = [plan for plan in plans if plan.envs]
        named = f"{', '.join(map(repr, apps))} {'is an app' if len(apps) == 1 else 'are apps'}"
        if not plans:
            raise DeployError(
                f"nothing to register: {named} (not TaskEnvironments), which `hatch-flyte deploy` does "
                "not serve; deploy apps with `flyte deploy`"
            )
        log.warning(
            "not deployed: %s (`hatch-flyte deploy` registers the tasks of TaskEnvironments; deploy "
            "apps with `flyte deploy`)",
            named,
        )
    cfg = get_init_config()
    if not dry_run and not (cfg.project and cfg.domain):
        raise DeployError(
            "no Flyte project/domain: pass --project and --domain, or set task.project and "
            "task.domain in the flyte config file"
        )
    cache, env_images = await _image_cache(plans, cfg.images or {}, images, manifest_image, dry_run)
    deploy_version = version({e.name: e.image for e in env_images})

    code_bundle = None
    uri = None
    if bundle is not None:
        if dry_run:
            md5 = file_digest(bundle, "md5")
            tgz = str(bundle)
        else:
            md5, uri = await _upload(bundle)
            tgz = uri
        code_bundle = CodeBundle(computed_version=md5, destination=".", tgz=tgz)
    context = SerializationContext(
        version=deploy_version,
        project=cfg.project,
        domain=cfg.domain,
        org=cfg.org,
        code_bundle=code_bundle,
        image_cache=cache,
        root_dir=cfg.root_dir,
    )
    tasks = await _deploy_tasks(plans, context, dry_run)
    return Registration(
        version=deploy_version,
        bundle_uri=uri,
        environments=tuple(env_images),
        tasks=tuple(tasks),
        project=cfg.project,
        domain=cfg.domain,
    )


async def _image_cache(
    plans: list[Any],
    configured: Mapping[str, str],
    given: Mapping[str, str],
    manifest_image: str | None,
    dry_run: bool,
) -> tuple[Any, list[EnvironmentImage]]:
    """The image lookup flyte's deploy would build for these plans, and each environment's image.

    Same entries in the same order as flyte's ``_build_images`` (per plan: images used as given
    first, then images to build), so that ``--image-cache`` is what flyte would register. Images of
    the environments' own are built by flyte (``flyte.build``: skipped when the image exists) on a
    real deploy; a dry run only computes their names.
    """
    import flyte
    from flyte._image import Image, resolve_code_bundle_layer
    from flyte._initialize import get_init_config
    from flyte._internal.image_cache import ImageCache

    refs = dict(configured)
    if manifest_image:
        refs[DEFAULT_REF] = manifest_image
    refs.update(given)
    root = Path(get_init_config().root_dir)
    lookup: dict[str, str] = {}
    out: dict[str, EnvironmentImage] = {}
    for plan in plans:
        direct: dict[str, str] = {}
        to_build: list[tuple[str, Any]] = []
        for name, env in plan.envs.items():
            image = env.image
            if isinstance(image, Image):
                image = resolve_code_bundle_layer(image, "loaded_modules", root)
                ref = image._ref_name
                if ref is not None:
                    if ref not in refs:
                        raise DeployError(
                            f"environment {name!r} uses flyte.Image.from_ref_name({ref!r}), and no image "
                            f"of that name is known; pass --image {ref}=URI (or set image.imageRefs "
                            f"in the flyte config). Known: {', '.join(sorted(refs)) or 'none'}"
                        )
                    source = f"--image {ref}" if ref in given else f"image ref {ref!r}"
                    if not image._layers:
                        direct[name] = refs[ref]
                        out[name] = EnvironmentImage(name, refs[ref], source)
                        continue
                    image = image.clone(base_image=refs[ref])
                to_build.append((name, image))
            elif image == "auto":
                if DEFAULT_REF in refs:
                    direct[name] = refs[DEFAULT_REF]
                    if DEFAULT_REF in given:
                        source = "--image"
                    elif manifest_image:
                        source = "manifest"
                    else:
                        source = "flyte config"
                    out[name] = EnvironmentImage(name, refs[DEFAULT_REF], source)
                else:
                    # No image built and none given: flyte's published default image.
                    to_build.append((name, Image.from_debian_base()))
            else:
                # A plain URI: flyte leaves it out of the lookup and registers it as it is.
                out[name] = EnvironmentImage(name, str(image), "environment")
        lookup.update(direct)
        for name, image in to_build:
            try:
                if dry_run or (image.base_image and not image._layers):
                    uri = image.uri
                else:
                    uri = (await flyte.build.aio(image)).uri
            except Exception as e:
                hint = ""
                if isinstance(e, FileNotFoundError):
                    hint = (
                        ". The image is defined from files outside the build's code (a pyproject.toml, "
                        "a lock, a source folder): deploy the build output where it was built, inside its "
                        "project (PROJECT/dist), so that paths computed from __file__ reach the "
                        "project's files, and run from the project's directory for relative paths"
                    )
                raise DeployError(
                    f"the image of environment {name!r} could not be "
                    f"{'named' if dry_run else 'built'} by flyte: {type(e).__name__}: {e}{hint}"
                ) from None
            lookup[name] = uri
            default = isinstance(plan.envs[name].image, str)
            out[name] = EnvironmentImage(name, uri, "flyte default" if default else "environment")
    fallback = sorted(e.name for e in out.values() if e.source == "flyte default")
    if fallback:
        log.warning(
            "%s: image 'auto', and the build made no image and none was given: the tasks run on "
            "flyte's default image, without the project's dependencies (build the image target, or "
            "pass --image URI)",
            ", ".join(fallback),
        )
    cache = ImageCache(image_lookup=lookup)
    return cache, sorted(out.values(), key=lambda e: e.name)


class _Progress:
    """An upload progress handler for flyte's ``report_uploads`` hook.

    With a handler installed, flyte streams the file in 1 MiB chunks; without one it hands httpx
    the aiofiles object, which yields the file line by line (a 27 MiB bundle then takes ~12 s to
    send on loopback instead of ~0.5 s). Progress goes to the log (``-v``).
    """

    def start(self, key: str, *, name: str, phase: str, total: int) -> None:
        log.info("%s %s (%d bytes)", phase, name, total)

    def advance(self, key: str, size: int) -> None:
        pass

    def finish(self, key: str, *, failed: bool = False) -> None:
        log.debug("%s: %s", key, "failed" if failed else "done")


async def _upload(bundle: Path) -> tuple[str, str]:
    from flyte.remote import upload_file
    from flyte.remote._progress import report_uploads

    try:
        with report_uploads(_Progress()):
            md5, uri = await upload_file.aio(bundle)
    except Exception as e:
        raise DeployError(f"uploading {bundle.name} failed: {_describe(e)}; nothing was registered") from None
    return str(md5), str(uri)


async def _deploy_tasks(plans: list[Any], context: Any, dry_run: bool) -> list[RegisteredTask]:
    from flyte._deploy import _deploy_task

    # An environment that others depend on is in each of their plans: register its tasks once.
    envs = {name: env for plan in plans for name, env in plan.envs.items()}
    todo = [(name, task) for name, env in envs.items() for task in env.tasks.values()]
    results = await asyncio.gather(
        *(_deploy_task(task, context, dryrun=dry_run) for _, task in todo), return_exceptions=True
    )
    done: list[RegisteredTask] = []
    failed: list[tuple[str, BaseException]] = []
    for (env_name, task), result in zip(todo, results, strict=True):
        if isinstance(result, BaseException):
            failed.append((task.name, result))
            continue
        template = result.deployed_task.task_template
        container = template.container
        done.append(RegisteredTask(env_name, template.id.name, container.image, tuple(container.args)))
    if failed:
        names = ", ".join(sorted(t.task for t in done)) or "none"
        first_name, first = failed[0]
        raise DeployError(
            f"{len(failed)} of {len(todo)} tasks could not be registered (first: {first_name}: "
            f"{_describe(first)}). Registered: {names}. Nothing is rolled back: deploy again with "
            f"the same version ({context.version}) to finish; tasks registered already count as done"
        )
    return sorted(done, key=lambda t: (t.env, t.task))


def _describe(e: BaseException) -> str:
    """The innermost useful message of flyte's wrapped errors."""
    from connectrpc.errors import ConnectError

    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, ConnectError):
            return f"{seen.code.name}: {seen.message}"
        seen = seen.__cause__ or seen.__context__
    return f"{type(e).__name__}: {e}"
