"""The hatchling builder ``flyte``: ``hatch build -t flyte[:wheel,bundle,image]``.

Writes the project's wheel (made by hatchling's own wheel builder, hooks and all), the code bundle
and ``flyte-manifest.json`` (every artifact with its sha256) into the build directory.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hatchling.builders.plugin.interface import BuilderInterface
from hatchling.builders.wheel import WheelBuilder
from hatchling.metadata.core import ProjectMetadata

from hatch_flyte.config import parse_builder_options
from hatch_flyte.discovery import Analysis
from hatch_flyte.errors import BuildError, HatchFlyteError
from hatch_flyte.frontends.hatch.glue import app_logging, check_hatchling, sharing
from hatch_flyte.manifest import MANIFEST_NAME, artifact_entry, make_manifest, write_manifest
from hatch_flyte.pipeline import NO_BUNDLE, Session
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
        """hatchling's wheel builder, with the ``flyte`` build hook on even where pyproject.toml does
        not enable it: the target's wheel always carries the Flyte entry points and manifest."""
        metadata = self.metadata
        if not _hook_enabled(metadata.config):
            config = copy.deepcopy(metadata.config)
            tables = ("tool", "hatch", "build", "targets", "wheel", "hooks")
            table = config
            for key in tables:
                table = table.setdefault(key, {})
            table["flyte"] = {}
            metadata = ProjectMetadata(self.root, self.plugin_manager, config)
        return WheelBuilder(self.root, plugin_manager=self.plugin_manager, metadata=metadata, app=self.app)

    def _build_wheel(self, directory: str) -> list[str]:
        """One wheel, its build hook joining this run's session."""
        with sharing(Path(self.root), self._session(directory)):
            return list(self._wheel_builder().build(directory=directory, versions=["standard"], clean=False))

    # --- shared state of one `hatch build` run ------------------------------------------------

    def _context(self, directory: str) -> tuple[Project, Analysis]:
        """The project and its analysis (see :meth:`_session`)."""
        session = self._session(directory)
        return session.project, session.analysis

    def _session(self, directory: str) -> Session:
        """This run's build session, made once per ``hatch build`` (``directory``: its output);
        every version, and the build hook of its wheel, share it."""
        state = self.__dict__.setdefault("_flyte_state", {})
        if "session" not in state:
            check_hatchling()
            options = parse_builder_options(
                self.target_config,
                Path(self.root, "pyproject.toml"),
                f"tool.hatch.build.targets.{self.PLUGIN_NAME}",
            )
            project = load_project(Path(self.root))
            if not project.config.present:
                self.app.display_info(
                    "flyte: no [tool.flyte] table in pyproject.toml; building with defaults"
                )
            session = Session(project, outdir=Path(directory))
            analysis = session.analysis  # unresolved items and "no environments" go to hatch's warnings
            names = ", ".join(
                f"{e.name} ({e.module}:{e.attribute})" for e in analysis.discovery.environments if e.name
            )
            package = analysis.package or "- (top-level modules)"
            self.app.display_info(
                f"flyte: package {package}, root {project.root_dir}, environments: {names or 'none'}"
            )
            state.update(session=session, artifacts={}, options=options)
        return state["session"]  # type: ignore[no-any-return]

    def _record(self, directory: str, kind: str, path: Path | None, **extra: Any) -> None:
        """Remember an artifact and rewrite the manifest so that it lists everything made so far."""
        project, analysis = self._context(directory)
        state = self.__dict__["_flyte_state"]
        if path is not None:
            state["artifacts"][kind] = (path, extra)
        bundle = state["artifacts"].get("bundle", (None, {}))[1].get("bundle")
        wheel = state["artifacts"].get("wheel", (None, {}))[0]
        manifest = make_manifest(
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

    @contextmanager
    def _reported(self) -> Iterator[None]:
        """hatch-flyte's logging on hatch's display, and its errors as one message, not a traceback."""
        with app_logging(self.app):
            try:
                yield
            except HatchFlyteError as e:
                self.app.abort(f"flyte: error: {e}")
                raise  # abort() exits; this is for an app whose abort returns

    def build_wheel_artifact(self, directory: str, **build_data: Any) -> str:
        with self._reported():
            self._context(directory)
            started = time.perf_counter()
            artifacts = self._build_wheel(directory)
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
        with self._reported():
            project, _ = self._context(directory)
            bundle = self._session(directory).bundle(Path(directory))
            if bundle is None:
                # Asked for (a default version, or -t flyte:bundle): say so, and make nothing.
                self.app.display_info(f"flyte: {NO_BUNDLE}")
                self._record(directory, "bundle", None)
                return str(Path(directory, MANIFEST_NAME))
            if self.__dict__["_flyte_state"]["options"].show_files:
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
        from hatch_flyte.extras import require_image_backend

        require_image_backend(self._context(directory)[0].config.image.backend)  # before the backend
        from hatch_flyte.image import ProjectMetadata, build_image
        from hatch_flyte.pipeline import image_failed

        with self._reported():
            project, analysis = self._context(directory)
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
                    wheel = Path(self._build_wheel(scratch)[0])
                try:
                    image = build_image(
                        project,
                        wheel,
                        metadata=metadata,
                        source_files=self._session(directory).source_files(),
                        environments=analysis.discovery.environments,
                        output_dir=Path(directory),
                    )
                except HatchFlyteError as e:
                    written = [
                        p for kind, (p, _) in sorted(state["artifacts"].items()) if kind != "image-archive"
                    ]
                    manifest = Path(directory, MANIFEST_NAME)
                    raise image_failed(e, written, manifest if manifest.exists() else None) from None
            seconds = time.perf_counter() - started
            pushed = f", pushed {image.digest}" if image.pushed else ""
            holds = ", dependencies only" if image.contents == "dependencies" else ""
            self.app.display_info(
                f"flyte: image {image.ref} ({image.id[:19]}{pushed}{holds}) in {seconds:.1f}s"
            )
            state["image"] = image.to_json()
            self._record(directory, "image-archive", Path(image.archive) if image.archive else None)
            return image.ref


def _hook_enabled(config: Any) -> bool:
    """Whether pyproject.toml enables the ``flyte`` build hook for wheels (globally or for the target)."""
    build = config.get("tool", {}).get("hatch", {}).get("build", {}) if isinstance(config, dict) else {}
    if not isinstance(build, dict):
        return False
    wheel = build.get("targets", {}).get("wheel", {}) if isinstance(build.get("targets"), dict) else {}
    return any(isinstance(t, dict) and "flyte" in (t.get("hooks") or {}) for t in (build, wheel))
