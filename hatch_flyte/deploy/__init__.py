"""Register exactly what a build made with Flyte: :func:`deploy`.

``fast`` mode uploads the manifest's code bundle as it is (same bytes; nothing is walked or
compressed again) and registers every task with ``--tgz <its URL> --dest .``; ``full`` mode
uploads nothing and registers the tasks on the manifest's image, which holds the code. Environments
are loaded by their manifest ``module:attribute`` from the build's own files, never rediscovered.

The files the manifest lists are verified against their sha256 before anything is sent. flyte
(``pip install 'hatch-flyte[deploy]'``) is imported only here, lazily.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from hatch_flyte.deploy.result import (
    Connection,
    DeployedBundle,
    DeployResult,
    EnvironmentImage,
    Mode,
    RegisteredTask,
)
from hatch_flyte.errors import DeployError

if TYPE_CHECKING:
    from hatch_flyte.deploy.target import Target

__all__ = [
    "Connection",
    "DeployResult",
    "DeployedBundle",
    "EnvironmentImage",
    "RegisteredTask",
    "deploy",
    "parse_images",
]

log = logging.getLogger("hatch_flyte")

MODES = ("fast", "full")


def parse_images(values: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``--image`` values: ``NAME=URI`` serves ``flyte.Image.from_ref_name(NAME)``, a bare ``URI``
    the environments whose image is ``"auto"`` (as in ``flyte deploy``)."""
    out = {}
    for value in values:
        name, sep, uri = value.partition("=")
        if not sep:
            name, uri = "default", value
        if not name or not uri:
            raise DeployError(f"--image {value!r}: expected NAME=URI or URI")
        out[name] = uri
    return out


def deploy(
    path: str | Path = "dist",
    *,
    mode: Mode | None = None,
    version: str | None = None,
    dry_run: bool = False,
    images: Mapping[str, str] | None = None,
    endpoint: str | None = None,
    insecure: bool | None = None,
    org: str | None = None,
    project: str | None = None,
    domain: str | None = None,
    config: str | Path | None = None,
) -> DeployResult:
    """Register the build in ``path`` (a directory holding ``flyte-manifest.json``, a project
    whose ``dist/`` holds one, or the manifest itself) with Flyte.

    ``mode`` defaults to ``"fast"`` when the manifest has a bundle, else ``"full"``. ``version``
    defaults to a digest of the manifest, the images and the mode (the same build deployed again
    gets the same version; flyte's "already exists" counts as success). The connection is flyte's
    own configuration (``config``, its environment variables, its config files) with the other
    keyword arguments overriding it (flyte looks for its default config file once per process);
    a dry run contacts nothing. ``images``: as ``--image``
    (``{"default": uri}`` for "auto" environments, ``{name: uri}`` for
    ``flyte.Image.from_ref_name(name)``).

    Raises :class:`hatch_flyte.errors.DeployError` (nothing is sent when the manifest, its files or
    the environments are not as built).
    """
    from hatch_flyte.deploy import _flyte, loading
    from hatch_flyte.deploy.target import load_target
    from hatch_flyte.deploy.version import default_version

    target = load_target(Path(path))
    chosen = _mode(target, mode)
    if version is not None and not version.strip():
        raise DeployError("--version is empty; pass a version or leave it out for the default")
    if not target.environments:
        raise DeployError(
            f"{target.manifest_path} lists no environments to deploy"
            + (f" ({len(target.unresolved)} unresolved by static discovery)" if target.unresolved else "")
        )
    for item in target.unresolved:
        log.warning("not deployed (static discovery could not resolve it at build time): %s", item)
    _flyte.check_flyte()
    given = dict(images or {})

    def version_for(env_images: Mapping[str, str]) -> str:
        return version or default_version(target, chosen, env_images)

    connection = Connection(
        endpoint=endpoint,
        insecure=insecure,
        org=org,
        project=project,
        domain=domain,
        config=Path(config) if config is not None else None,
    )
    bundle = target.bundle if chosen == "fast" else None
    with (
        loading.code_root(target) as root,
        loading.environments(root, target.environments, target.manifest_path) as envs,
    ):
        registration = _flyte.register(
            envs,
            root=root.path,
            bundle=bundle.path if bundle else None,
            version=version_for,
            images=given,
            manifest_image=target.image_ref,
            connection=connection,
            dry_run=dry_run,
        )
    with_tasks = {t.env for t in registration.tasks}
    registered = {e.name for e in registration.environments}  # apps are not (a warning says so)
    for spec in target.environments:
        if spec.name in registered and spec.name not in with_tasks:
            log.warning(
                "environment %r has no tasks: none is defined in %s, in what it imports, or in the "
                "build's modules that import it",
                spec.name,
                spec.module,
            )
    return DeployResult(
        version=registration.version,
        mode=chosen,
        dry_run=dry_run,
        image=target.image_ref,
        bundle=(
            DeployedBundle(bundle.path.name, bundle.sha256, registration.bundle_uri, bundle.path)
            if bundle
            else None
        ),
        environments=registration.environments,
        tasks=registration.tasks,
        project=registration.project,
        domain=registration.domain,
        manifest=target.manifest_path,
    )


def _mode(target: Target, mode: str | None) -> Mode:
    if mode is None:
        mode = "fast" if target.bundle is not None else "full"
    if mode == "fast":
        if target.bundle is None:
            raise DeployError(
                f"--mode fast needs a code bundle, and {target.manifest_path} lists none; build the "
                "bundle target too, or deploy with --mode full"
            )
        return "fast"
    if mode == "full":
        if (target.image or {}).get("contents") == "dependencies":
            raise DeployError(
                f"--mode full runs the code the image holds, and the image in {target.manifest_path} "
                f"({target.image_ref}) holds only the dependencies (key 'image.contents'); deploy with "
                "--mode fast (the bundle brings the code), or build an image with the project"
            )
        if target.image_ref is None:
            raise DeployError(
                f"--mode full needs an image that holds the code, and {target.manifest_path} has none "
                "(key 'image'); build the image target (`hatch-flyte build -t wheel,bundle,image`), "
                "or deploy with --mode fast"
            )
        return "full"
    raise DeployError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
