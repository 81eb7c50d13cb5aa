"""The whole job as plain steps, shared by the hatch builder, the build hook, setuptools and the CLI.

analyse (package + environments) -> bundle -> manifest. Nothing here knows about hatch.
"""

from __future__ import annotations

import logging
import tempfile
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hatch_flyte.bundle import Bundle, BundleOptions, build
from hatch_flyte.discovery import DiscoveryResult, Environment, discover, loaded_module_files
from hatch_flyte.errors import BundleError, DiscoveryError, HatchFlyteError, ImageError
from hatch_flyte.manifest import make_manifest
from hatch_flyte.project import Project, WorkspaceRootError, load_project

if TYPE_CHECKING:
    from hatch_flyte.image import ImageResult

log = logging.getLogger("hatch_flyte")


@dataclass(frozen=True)
class Analysis:
    """What a project holds: its import package (``None``: top-level modules) and its environments."""

    package: str | None
    discovery: DiscoveryResult


def analyse(project: Project, *, strict: bool = False) -> Analysis:
    """Find the package and discover the environments (static by default: imports nothing).

    What discovery could not settle, and finding no environment at all, are logged as warnings
    (every frontend shows them); with ``strict`` (or ``strict = true`` in ``[tool.flyte]``)
    unresolved environments are an error instead.
    """
    try:
        package = project.find_package()
    except WorkspaceRootError as e:
        raise WorkspaceRootError(project, e.members, _environment_counts(e.members)) from None
    analysis = Analysis(package=package.name if package else None, discovery=discover(project))
    report(project, analysis, strict=strict or project.config.strict)
    return analysis


def _environment_counts(members: Iterable[Path]) -> dict[Path, int]:
    counts = {}
    for member in members:
        try:
            counts[member] = len(discover(load_project(member)).environments)
        except HatchFlyteError:
            continue  # the member's own build reports its problems
    return counts


def report(project: Project, analysis: Analysis, *, strict: bool, warn_empty: bool = True) -> None:
    """Warn about every unresolved item and (with ``warn_empty``) about finding no environment;
    raise when ``strict``."""
    found = analysis.discovery
    if strict and found.unresolved:
        where = "--strict" if not project.config.strict else f"`strict = true` in {project.pyproject}"
        raise DiscoveryError(
            f"{len(found.unresolved)} item(s) that discovery could not resolve, an error with {where}:\n"
            + "\n".join(f"  - {u}" for u in found.unresolved)
            + "\nFix each one (the reason says how), or build without strict to leave them out with a warning"
        )
    for item in found.unresolved:
        log.warning("unresolved %s (left out of the entry points)", item)
    if warn_empty and not found.environments:
        what = f"the package {analysis.package}" if analysis.package else "its modules"
        log.warning(
            "no Flyte environments found: %s discovery looked at %s under the bundle root %s (files that "
            "the bundle's ignore rules leave out are not read); define a module-level "
            "flyte.TaskEnvironment there, or set `root-dir`/`environments` under [tool.flyte]",
            found.method,
            what,
            project.root_dir,
        )


def entry_points(discovery: DiscoveryResult) -> dict[str, str]:
    """``flyte.environments`` entry points: environment name -> ``module:attribute``."""
    return {
        e.name: f"{e.module}:{e.attribute}" for e in sorted(discovery.environments, key=_env_key) if e.name
    }


def outside_wheel(discovery: DiscoveryResult, top_level: Iterable[str]) -> list[Environment]:
    """Environments whose module lies in a top-level package or module the wheel does not hold."""
    tops = set(top_level)
    return [e for e in discovery.environments if e.module.split(".")[0] not in tops]


def outside_wheel_message(envs: Sequence[Environment], wheel: str) -> str:
    packages = ", ".join(sorted({e.module.split(".")[0] for e in envs}))
    names = ", ".join(f"{e.name} ({e.ref})" for e in envs)
    return (
        f"the wheel {wheel} does not contain {packages}, where environment(s) {names} live: an installed "
        "wheel (and an image made from it) cannot import them. Ship them in the wheel (hatch: "
        "`packages`; uv_build: `module-name` as a list; setuptools: `packages`); the code bundle holds them"
    )


def wheel_top_level(wheel: Path) -> set[str]:
    """Top-level packages and modules of a wheel file."""
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    tops = {n.split("/", 1)[0] for n in names}
    return {t.removesuffix(".py") for t in tops if not t.endswith((".dist-info", ".data"))}


def _env_key(env: Any) -> tuple[str, str]:
    return (env.name or "", env.module)


def environment_includes(project: Project, discovery: DiscoveryResult) -> list[Path]:
    """``Environment.include`` entries as absolute paths, anchored at each declaring file's directory.

    flyte deploy adds these to the bundle on top of the ignore rules, so our bundle does too.
    """
    out: list[Path] = []
    for env in discovery.environments:
        anchor = (project.root_dir / env.file).parent
        for inc in env.include:
            path = Path(inc)
            out.append(path if path.is_absolute() else (anchor / path).resolve())
    return list(dict.fromkeys(out))


def with_environment_includes(
    project: Project, options: BundleOptions, discovery: DiscoveryResult
) -> BundleOptions:
    """``options`` plus the environments' ``include`` paths, as flyte deploy bundles them."""
    extra = environment_includes(project, discovery)
    if not extra:
        return options
    return replace(options, include=tuple(dict.fromkeys((*options.include, *extra))))


def project_bundle_options(
    project: Project, options: BundleOptions, discovery: DiscoveryResult | None = None
) -> BundleOptions | None:
    """What the project's bundle holds, as ``tool.flyte.bundle.copy-style`` says; None for "none".

    The environments' ``include`` paths are added (when ``discovery`` is known). For
    "loaded-modules" the environments' modules are imported (one subprocess, see
    :func:`hatch_flyte.discovery.loaded_module_files`) and the files they load are the bundle's.
    """
    style = project.config.bundle.copy_style
    if style == "none":
        including = sorted(
            e.name or e.ref for e in (discovery.environments if discovery else ()) if e.include
        )
        if including:
            # flyte deploy would upload these files alone as a bundle; here the image must hold them.
            log.warning(
                'copy-style = "none" makes no bundle, so the include= files of environment(s) %s are not '
                "shipped beside the image: make them package data of the wheel, or choose another copy-style",
                ", ".join(including),
            )
        return None
    if style == "loaded-modules" and discovery is None:
        discovery = discover(project)
    if discovery is not None:
        options = with_environment_includes(project, options, discovery)
    if style == "loaded-modules":
        assert discovery is not None
        modules = tuple(dict.fromkeys(e.module for e in discovery.environments))
        if not modules:
            raise BundleError(
                f'`tool.flyte.bundle.copy-style = "loaded-modules"` bundles the modules that the '
                f"environments' modules load, but no environment was found under {project.root_dir}; "
                'add one, list them in `tool.flyte.environments`, or set copy-style = "all"'
            )
        options = replace(options, modules=loaded_module_files(project, modules))
    return options


NO_BUNDLE = 'copy-style = "none": no code bundle is made (the image carries the code)'


def bundle_for(
    project: Project, outdir: Path, options: BundleOptions, analysis: Analysis | None = None
) -> Bundle | None:
    """Build the project's bundle as its copy-style says (None for "none"), with its
    environments' ``include`` paths when known."""
    resolved = project_bundle_options(project, options, analysis.discovery if analysis else None)
    return build(project.root_dir, outdir, resolved) if resolved is not None else None


def manifest_for(
    project: Project,
    analysis: Analysis | None,
    *,
    bundle: Bundle | None = None,
    wheel: Path | None = None,
    image: Mapping[str, Any] | None = None,
    artifacts: Iterable[Mapping[str, Any]] = (),
    name: str | None = None,
    version: str | None = None,
) -> dict[str, Any]:
    """The manifest document for what was analysed and built."""
    return make_manifest(
        project,
        package=analysis.package if analysis else None,
        discovery=analysis.discovery if analysis else None,
        bundle=bundle,
        wheel=wheel,
        image=image,
        artifacts=artifacts,
        name=name,
        version=version,
    )


TARGETS = ("wheel", "bundle", "image")


def has_build_backend(project: Project) -> bool:
    """Whether pyproject.toml names a build backend (else PEP 517 frontends fall back to setuptools'
    legacy backend, which has nothing to package in a script project)."""
    system = project.data.get("build-system")
    return isinstance(system, Mapping) and isinstance(system.get("build-backend"), str)


@dataclass(frozen=True)
class BuildResult:
    """What :func:`build_artifacts` wrote."""

    analysis: Analysis
    manifest: Path
    wheel: Path | None = None
    bundle: Bundle | None = None
    image: ImageResult | None = None


def build_artifacts(
    project: Project,
    outdir: Path,
    targets: Iterable[str] | None = None,
    *,
    isolation: bool = True,
    options: BundleOptions | None = None,
    strict: bool = False,
) -> BuildResult:
    """The whole job for a project on any PEP 517 backend: wheel, bundle, then the manifest.

    ``targets`` defaults to the wheel and the bundle, or the bundle alone for a project without a
    ``[build-system]`` (a script project: no backend makes a wheel of it). The wheel comes first:
    when the backend fails nothing is written. The manifest is written last and lists only
    artifacts that exist.
    """
    from hatch_flyte.atomic import ensure_directory
    from hatch_flyte.errors import BuildError
    from hatch_flyte.extras import require, require_image_backend
    from hatch_flyte.manifest import MANIFEST_NAME, artifact_entry, write_manifest
    from hatch_flyte.wheel import build_wheel

    if project.pyproject is None:
        raise BuildError(
            f"{project.directory} has no pyproject.toml; `build` needs a project "
            "(use `hatch-flyte bundle` for a plain directory)"
        )
    backend = has_build_backend(project)
    if targets is None:
        wanted = ["wheel", "bundle"] if backend else ["bundle"]
        if not backend:
            log.info(
                "%s has no [build-system] table, so no wheel: building the bundle only", project.pyproject
            )
    else:
        wanted = list(dict.fromkeys(targets))
    unknown = [t for t in wanted if t not in TARGETS]
    if unknown or not wanted:
        raise BuildError(
            f"unknown build target(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(TARGETS)}"
        )
    # A dependency-only image (include-project = false) is planned from pyproject.toml, no wheel.
    if not backend and ("wheel" in wanted or ("image" in wanted and project.config.image.include_project)):
        raise BuildError(
            f"{project.pyproject} has no [build-system] table, so no backend can make the wheel "
            f"{'the image is built from' if 'image' in wanted else 'asked for'}; add one "
            '(e.g. [build-system] requires = ["hatchling"], build-backend = "hatchling.build") or build '
            "`-t bundle`"
        )
    # Extras first: a missing one is a one-line fix, better told before anything is written.
    if "wheel" in wanted or "image" in wanted:
        require("cli", "`hatch-flyte build`", BuildError)
    if "image" in wanted:
        require_image_backend(project.config.image.backend)
    analysis = analyse(project, strict=strict)
    outdir = ensure_directory(outdir)
    options = options or BundleOptions.for_project(project)
    resolved: BundleOptions | None = None
    if "bundle" in wanted or ("image" in wanted and project.config.image.source):
        resolved = project_bundle_options(project, options, analysis.discovery)
    with tempfile.TemporaryDirectory(prefix="hatch-flyte-build-") as scratch:
        wheel = None
        metadata = None
        outside: list[Environment] = []
        if "image" in wanted and "wheel" not in wanted and not project.config.image.include_project:
            from hatch_flyte.image import ProjectMetadata

            # A dependency-only image needs the dependencies, not the wheel: from pyproject.toml
            # when they are static, so that a code change costs no wheel build.
            metadata = ProjectMetadata.from_pyproject(project)
        if "wheel" in wanted or ("image" in wanted and metadata is None):
            # The image needs the wheel; when it was not asked for, it is made aside and dropped.
            wheel_dir = outdir if "wheel" in wanted else Path(scratch)
            wheel = build_wheel(project.directory, wheel_dir, isolation=isolation)
            outside = outside_wheel(analysis.discovery, wheel_top_level(wheel))
            if outside and (strict or project.config.strict):
                raise BuildError(outside_wheel_message(outside, wheel.name))
            if outside:
                log.warning("%s", outside_wheel_message(outside, wheel.name))
        bundle = None
        if "bundle" in wanted:
            if resolved is None:
                log.info(NO_BUNDLE)
            else:
                bundle = build(project.root_dir, outdir, resolved)
        artifacts = []
        if wheel is not None and "wheel" in wanted:
            artifacts.append(artifact_entry(wheel, "wheel"))
        if bundle is not None:
            artifacts.append(artifact_entry(bundle.path, "bundle"))
        version = _wheel_version(wheel) if wheel is not None else None
        listed_wheel = wheel if "wheel" in wanted else None

        def manifest(image: ImageResult | None = None) -> Path:
            doc = manifest_for(
                project, analysis, bundle=bundle, wheel=listed_wheel, artifacts=artifacts, version=version,
                image=image.to_json() if image is not None else None,
            )  # fmt: skip
            return write_manifest(outdir / MANIFEST_NAME, doc)

        # Written before the image is tried: a failed image leaves a manifest that claims no image.
        path = manifest()
        image = None
        if "image" in wanted:
            from hatch_flyte.image import build_image

            try:
                # build_image refuses a full image whose wheel lacks an environment's module (the
                # image runs the wheel's code), module by module, for every frontend.
                image = build_image(
                    project, wheel, metadata=metadata, source_files=source_files(project, resolved),
                    environments=analysis.discovery.environments, output_dir=outdir,
                )  # fmt: skip
            except HatchFlyteError as e:
                written = [p for p in (listed_wheel, bundle.path if bundle else None) if p is not None]
                raise image_failed(e, written, path) from None
            if image.archive:
                artifacts.append(artifact_entry(Path(image.archive), "image-archive"))
            path = manifest(image)
    return BuildResult(analysis=analysis, manifest=path, wheel=listed_wheel, bundle=bundle, image=image)


def image_failed(error: HatchFlyteError, written: Sequence[Path], manifest: Path | None) -> ImageError:
    """The image's error, saying exactly what the same build did write (never more)."""
    wheel = any(p.suffix == ".whl" for p in written)
    bundle = any(p.suffix != ".whl" for p in written)
    if wheel or bundle:
        what = "the wheel and the bundle" if wheel and bundle else "the wheel" if wheel else "the bundle"
        verb = "are" if wheel and bundle else "is"
        done = f"{what} of this build {verb} written all the same in {written[0].parent}"
    else:
        done = "no wheel or bundle was asked for, so none was written"
    tail = "; the manifest lists no image" if manifest is not None else ""
    return ImageError(f"{error}\n{done}{tail}")


def source_files(project: Project, options: BundleOptions | None) -> list[tuple[str, str]]:
    """The bundle's files as ``(path, arcname)``, for images that also carry the source.

    ``options`` come from :func:`project_bundle_options`; for copy-style "none" (None) the
    source is every file under the root that the ignore rules keep."""
    if not project.config.image.source:
        return []
    from hatch_flyte.bundle import select

    selection, _ = select(project.root_dir, options or BundleOptions.for_project(project))
    return [(f.path, f.arcname) for f in selection.files]


def _wheel_version(wheel: Path) -> str | None:
    """The version in a wheel's file name (a backend knows a dynamic version, pyproject may not)."""
    parts = wheel.name.split("-")
    return parts[1] if len(parts) >= 5 else None
