"""The hatchling builder ``flyte``: ``hatch build -t flyte[:wheel,bundle,image]``.

Writes the project's wheel (made by hatchling's own wheel builder, hooks and all), the code bundle
and ``flyte-manifest.json`` (every artifact with its sha256) into the build directory.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hatchling.builders.plugin.interface import BuilderInterface
from hatchling.builders.wheel import WheelBuilder

from hatch_flyte.bundle import BundleOptions, build
from hatch_flyte.errors import BuildError
from hatch_flyte.frontends.hatch.glue import app_logging
from hatch_flyte.manifest import MANIFEST_NAME, artifact_entry, write_manifest
from hatch_flyte.pipeline import NO_BUNDLE, Analysis, analyse, manifest_for, project_bundle_options
from hatch_flyte.project import Project, load_project
from hatch_flyte.report import human_size, render_tree


class FlyteBuilder(BuilderInterface):  # type: ignore[type-arg]
    """Builder ``flyte``; target options under ``[tool.hatch.build.targets.flyte]``."""

    PLUGIN_NAME = "flyte"

    def get_version_api(self) -> dict[str, Callable[..., str]]:
        return {
            "wheel": self.build_wheel_artifact,
            "bundle": self.build_bundle_artifact,
            "image": self.build_image,
        }

    def get_default_versions(self) -> list[str]:
        return ["wheel", "bundle"]

    def clean(self, directory: str, versions: list[str]) -> None:
        out = Path(directory)
        if not out.is_dir():
            return
        patterns = [MANIFEST_NAME]
        if "bundle" in versions:
            patterns.append("fast*.tar.gz")
        if "wheel" in versions:
            patterns.append(f"{self._wheel_builder().artifact_project_id}-*.whl")
        if "image" in versions:
            patterns += ["*.oci", "*.oci.tar"]  # the oci backend's layout and docker-load archive
        for pattern in patterns:
            for path in out.glob(pattern):
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()

    def _wheel_builder(self) -> WheelBuilder:
        return WheelBuilder(
            self.root, plugin_manager=self.plugin_manager, metadata=self.metadata, app=self.app
        )

    # --- shared state of one `hatch build` run ------------------------------------------------

    def _context(self) -> tuple[Project, Analysis]:
        state = self.__dict__.setdefault("_flyte_state", {})
        if "project" not in state:
            project = load_project(Path(self.root))
            if not project.config.present:
                self.app.display_info(
                    "flyte: no [tool.flyte] table in pyproject.toml; building with defaults"
                )
            analysis = analyse(project)
            names = ", ".join(
                f"{e.name} ({e.module}:{e.attribute})" for e in analysis.discovery.environments if e.name
            )
            self.app.display_info(
                f"flyte: package {analysis.package}, root {project.root_dir}, environments: {names or 'none'}"
            )
            for item in analysis.discovery.unresolved:
                self.app.display_warning(f"flyte: unresolved {item.file}:{item.line}: {item.reason}")
            state.update(project=project, analysis=analysis, artifacts={})
        return state["project"], state["analysis"]

    def _bundle_options(self) -> BundleOptions | None:
        """The bundle's options for this run (for "loaded-modules", imported once), None for "none"."""
        state = self.__dict__["_flyte_state"]
        if "bundle_options" not in state:
            project, analysis = self._context()
            defaults = BundleOptions.for_project(project)
            state["bundle_options"] = project_bundle_options(project, defaults, analysis.discovery)
        options: BundleOptions | None = state["bundle_options"]
        return options

    def _record(self, directory: str, kind: str, path: Path | None, **extra: Any) -> None:
        """Remember an artifact and rewrite the manifest so that it lists everything made so far."""
        project, analysis = self._context()
        state = self.__dict__["_flyte_state"]
        if path is not None:
            state["artifacts"][kind] = (path, extra)
        bundle = state["artifacts"].get("bundle", (None, {}))[1].get("bundle")
        wheel = state["artifacts"].get("wheel", (None, {}))[0]
        manifest = manifest_for(
            project,
            analysis,
            bundle=bundle,
            wheel=wheel,
            artifacts=[artifact_entry(p, k) for k, (p, _) in sorted(state["artifacts"].items())],
            image=state.get("image"),
            name=self.metadata.name,
            version=self.metadata.version,
        )
        write_manifest(Path(directory, MANIFEST_NAME), manifest)

    # --- versions ----------------------------------------------------------------------------

    def build_wheel_artifact(self, directory: str, **build_data: Any) -> str:
        with app_logging(self.app):
            self._context()
            started = time.perf_counter()
            artifacts = list(
                self._wheel_builder().build(directory=directory, versions=["standard"], clean=False)
            )
            if len(artifacts) != 1:
                raise BuildError(f"hatchling's wheel builder returned {artifacts!r}, expected one wheel")
            wheel = Path(artifacts[0])
            seconds = time.perf_counter() - started
            self.app.display_info(
                f"flyte: wheel {wheel.name} ({human_size(wheel.stat().st_size)}) in {seconds:.2f}s"
            )
            self._record(directory, "wheel", wheel)
            return str(wheel)

    def build_bundle_artifact(self, directory: str, **build_data: Any) -> str:
        with app_logging(self.app):
            project, _ = self._context()
            options = self._bundle_options()
            if options is None:
                # Asked for (a default version, or -t flyte:bundle): say so, and make nothing.
                self.app.display_info(f"flyte: {NO_BUNDLE}")
                self._record(directory, "bundle", None)
                return str(Path(directory, MANIFEST_NAME))
            bundle = build(project.root_dir, Path(directory), options)
            if self.target_config.get("show-files", False):
                self.app.display(render_tree(project.root_dir, bundle.files))
            verb = "reused" if bundle.reused else "wrote"
            self.app.display_info(
                f"flyte: {verb} bundle {bundle.name} ({len(bundle.files)} files, {human_size(bundle.size)}) "
                f"in {bundle.seconds:.2f}s"
            )
            self._record(directory, "bundle", bundle.path, bundle=bundle)
            return str(bundle.path)

    def build_image(self, directory: str, **build_data: Any) -> str:
        """Build the image from this run's wheel (made aside when not asked for); a dependency-only
        image (``include-project = false``) from hatchling's metadata, with no wheel."""
        from hatch_flyte.image import ProjectMetadata, build_image
        from hatch_flyte.pipeline import source_files

        with app_logging(self.app):
            project, _ = self._context()
            state = self.__dict__["_flyte_state"]
            started = time.perf_counter()
            with tempfile.TemporaryDirectory(prefix="hatch-flyte-image-") as scratch:
                wheel = state["artifacts"].get("wheel", (None, {}))[0]
                metadata = None
                if not project.config.image.include_project:
                    core = self.metadata.core
                    metadata = ProjectMetadata(
                        name=core.name,
                        version=self.metadata.version,
                        requires_python=core.requires_python,
                        requires_dist=tuple(core.dependencies),
                    )
                elif wheel is None:
                    built = list(
                        self._wheel_builder().build(directory=scratch, versions=["standard"], clean=False)
                    )
                    wheel = Path(built[0])
                image = build_image(
                    project,
                    wheel,
                    metadata=metadata,
                    source_files=source_files(project, self._bundle_options())
                    if project.config.image.source
                    else (),
                    output_dir=Path(directory),
                )
            seconds = time.perf_counter() - started
            pushed = f", pushed {image.digest}" if image.pushed else ""
            holds = ", dependencies only" if image.contents == "dependencies" else ""
            self.app.display_info(
                f"flyte: image {image.ref} ({image.id[:19]}{pushed}{holds}) in {seconds:.1f}s"
            )
            state["image"] = image.to_json()
            self._record(directory, "image-archive", Path(image.archive) if image.archive else None)
            return image.ref
