"""The whole job as plain steps, shared by the hatch builder, the build hook, setuptools and the CLI.

A :class:`Session` is one build: walk the root once -> analyse (package + environments) -> bundle ->
manifest, each piece of work done once whichever steps ask for it. Nothing here knows about hatch.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hatch_flyte.bundle import Bundle, BundleOptions, build, check_root, select
from hatch_flyte.bundle.archive import digest_files
from hatch_flyte.bundle.ignore import IgnoreRules
from hatch_flyte.bundle.selection import Selection, select_files
from hatch_flyte.discovery import Analysis, DiscoveryResult, Environment, discover, loaded_module_files
from hatch_flyte.discovery.importers import importers, module_name
from hatch_flyte.errors import BundleError, DiscoveryError, HatchFlyteError, ImageError
from hatch_flyte.manifest import make_manifest
from hatch_flyte.project import Project, WorkspaceRootError, load_project

if TYPE_CHECKING:
    from hatch_flyte.image import ImageResult

log = logging.getLogger("hatch_flyte")


class Session:
    """One build of one project, shared by its steps and frontends: each piece of work done once.

    The bundle root is walked once, with the bundle's ignore rules (and ``outdir`` left out when
    it lies under the root); that one list of files feeds discovery, the bundle (plus the
    includes), the secrets guard and ``image.source``. Discovery runs once. A frontend makes one
    per build; the hatch builder hands its own to the build hook of the wheel it builds.
    """

    def __init__(
        self,
        project: Project,
        options: BundleOptions | None = None,
        outdir: Path | None = None,
    ) -> None:
        self.project = project
        #: ``[tool.flyte.bundle]`` with any command-line overrides, before environment includes.
        self.base_options = options or BundleOptions.for_project(project)
        self.outdir = Path(outdir).absolute() if outdir is not None else None

    @cached_property
    def walked(self) -> tuple[Selection, IgnoreRules]:
        """The root's files as the ignore rules select them (no includes), and those rules."""
        root = check_root(self.project.root_dir)
        options = self.base_options
        rules = IgnoreRules.for_root(root, options.ignores, options.keep_default_ignores)
        exclude = [self.outdir] if self.outdir is not None else []
        return select_files(root, rules, exclude_dirs=exclude), rules

    @cached_property
    def discovery(self) -> DiscoveryResult:
        """The environments (static discovery by default: imports nothing)."""
        try:
            files = self.walked[0]
        except HatchFlyteError as e:
            raise DiscoveryError(f"cannot list the modules under {self.project.root_dir}: {e}") from None
        return discover(self.project, files=files)

    @cached_property
    def analysis(self) -> Analysis:
        """The package and the environments, reported once (see :func:`analyse`)."""
        return analyse(self.project, self.discovery)

    @cached_property
    def options(self) -> BundleOptions | None:
        """The bundle's options as ``copy-style`` says (None for "none"), with the environments'
        ``include`` paths (see :func:`project_bundle_options`)."""
        discovery = self.discovery if self.project.has_pyproject else None  # a plain directory has none
        return project_bundle_options(self.project, self.base_options, discovery, self.walked[0])

    @cached_property
    def selected(self) -> tuple[Selection, tuple[str, ...]] | None:
        """The bundle's files and those the secrets guard flagged (it warns once, here); None when
        no bundle is made."""
        if self.options is None:
            return None
        return select(self.project.root_dir, self.options, self.outdir, walked=self.walked)

    def digest(self) -> str | None:
        """flyte's digest of the bundle, writing nothing (None when no bundle is made)."""
        return digest_files(self.selected[0].files) if self.selected is not None else None

    def bundle(self, outdir: Path | None = None) -> Bundle | None:
        """Write (or reuse) the bundle in ``outdir`` (default: the session's); None for "none"."""
        target = Path(outdir).absolute() if outdir is not None else self.outdir
        if target is None:
            raise ValueError("Session.bundle needs an output directory")
        if self.options is None:
            return None
        if target == self.outdir:
            selected = self.selected
        else:
            selected = select(self.project.root_dir, self.options, target, walked=self.walked)
        return build(self.project.root_dir, target, self.options, selected)

    def source_files(self) -> list[tuple[str, str]]:
        """The files ``image.source`` copies into the image: the bundle's, or with copy-style "none"
        every file under the root that the ignore rules keep; none without ``image.source``."""
        if not self.project.config.image.source:
            return []
        if self.selected is not None:
            selection = self.selected[0]
        else:
            selection, _ = select(self.project.root_dir, self.base_options, self.outdir, walked=self.walked)
        return [(f.path, f.arcname) for f in selection.files]


def analyse(project: Project, discovery: DiscoveryResult) -> Analysis:
    """Find the package and report what ``discovery`` found (a :class:`Session`'s: one discovery).

    What discovery could not settle, and finding no environment at all, are logged as warnings
    (every frontend shows them); with ``strict`` (``strict = true`` in ``[tool.flyte]`` or
    ``--strict``) unresolved environments are an error instead.
    """
    try:
        package = project.find_package()
    except WorkspaceRootError as e:
        raise WorkspaceRootError(project, e.members, _environment_counts(e.members), e.note) from None
    analysis = Analysis(package=package.name if package else None, discovery=discovery)
    report(project, analysis)
    return analysis


def _environment_counts(members: Iterable[Path]) -> dict[Path, int]:
    counts = {}
    for member in members:
        try:
            counts[member] = len(discover(load_project(member)).environments)
        except HatchFlyteError:
            continue  # the member's own build reports its problems
    return counts


def report(project: Project, analysis: Analysis, *, warn_empty: bool = True) -> None:
    """Warn about every unresolved item and (with ``warn_empty``) about finding no environment;
    raise when the project is ``strict``."""
    found = analysis.discovery
    if project.config.strict and found.unresolved:
        where = project.set_by.get("strict") or f"`strict = true` in {project.pyproject}"
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
    import zipfile  # only builds that make a wheel read one

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
    project: Project,
    options: BundleOptions,
    discovery: DiscoveryResult | None,
    files: Selection,
) -> BundleOptions | None:
    """What the project's bundle holds, as ``tool.flyte.bundle.copy-style`` says; None for "none".

    The environments' ``include`` paths are added (when ``discovery`` is known). For
    "loaded-modules" the environments' modules, and the root's modules that import them (where
    their tasks may be defined, see :mod:`hatch_flyte.discovery.importers`; among ``files``, the
    session's walk of the root), are imported (one subprocess, see
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
        sources = {module_name(f.arcname): f.path for f in files.files if f.arcname.endswith(".py")}
        found = importers(sources, _read, ((e.module, e.attribute) for e in discovery.environments))
        modules += tuple(module for module, _ in found if module not in modules)
        options = replace(options, modules=loaded_module_files(project, modules))
    return options


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None  # the bundle reports it, with its name


NO_BUNDLE = 'copy-style = "none": no code bundle is made (the image carries the code)'


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
    session = Session(project, options, Path(outdir))
    analysis = session.analysis  # before the wheel: a discovery error stops the build early
    outdir = ensure_directory(outdir)
    if "bundle" in wanted or ("image" in wanted and project.config.image.source):
        session.options  # noqa: B018 - before the wheel: a loaded-modules import error stops the build early
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
            if outside and project.config.strict:
                raise BuildError(outside_wheel_message(outside, wheel.name))
            if outside:
                log.warning("%s", outside_wheel_message(outside, wheel.name))
        bundle = session.bundle() if "bundle" in wanted else None
        if "bundle" in wanted and bundle is None:
            log.info(NO_BUNDLE)
        artifacts = []
        if wheel is not None and "wheel" in wanted:
            artifacts.append(artifact_entry(wheel, "wheel"))
        if bundle is not None:
            artifacts.append(artifact_entry(bundle.path, "bundle"))
        version = _wheel_version(wheel) if wheel is not None else None
        listed_wheel = wheel if "wheel" in wanted else None

        def manifest(image: ImageResult | None = None) -> Path:
            doc = make_manifest(
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
                    project, wheel, metadata=metadata, source_files=session.source_files(),
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


def _wheel_version(wheel: Path) -> str | None:
    """The version in a wheel's file name (a backend knows a dynamic version, pyproject may not)."""
    parts = wheel.name.split("-")
    return parts[1] if len(parts) >= 5 else None
