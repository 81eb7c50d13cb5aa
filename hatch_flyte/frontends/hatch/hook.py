"""The hatchling build hook ``flyte``: Flyte metadata inside every wheel, under any PEP 517 frontend.

PEP 517 frontends (pip, build, uv) only ever run hatchling's wheel builder, so a hook on the wheel
target is the one place to act. It adds the ``flyte.environments`` entry points and
``.dist-info/extra_metadata/flyte-manifest.json``, and with ``bundle-dir`` also writes the code
bundle there (pip keeps nothing but the wheel from its build directory).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

from hatch_flyte import ENTRY_POINT_GROUP
from hatch_flyte.errors import DiscoveryError, HatchFlyteError
from hatch_flyte.frontends.hatch.glue import app_logging, shared

if TYPE_CHECKING:
    from hatch_flyte.config import HookOptions

# The pipeline is imported in _initialize(): hatchling loads this module for every wheel build in an
# environment where hatch-flyte is installed, including the builds of projects that do not use it.

log = logging.getLogger("hatch_flyte")

#: Asked for only when the hook writes a bundle (zlib does the job without it, ~4x slower).
BUNDLE_REQUIREMENTS = ["isal>=1.6"]


class FlyteBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    """Build hook ``flyte`` (configure under ``[tool.hatch.build.targets.wheel.hooks.flyte]``)."""

    PLUGIN_NAME = "flyte"

    def _options(self) -> HookOptions:
        """This hook's table, validated like ``[tool.flyte]`` (hatchling's own keys pass)."""
        from hatch_flyte.config import parse_hook_options

        return parse_hook_options(self.config, Path(self.root, "pyproject.toml"), self._table_name())

    def _table_name(self) -> str:
        """Where the options come from: the wheel target's hooks table replaces the global one."""
        build = self.metadata.config.get("tool", {}).get("hatch", {}).get("build", {})
        targets = build.get("targets", {}) if isinstance(build, dict) else {}
        target = targets.get(self.target_name, {}) if isinstance(targets, dict) else {}
        if isinstance(target, dict) and self.PLUGIN_NAME in target.get("hooks", {}):
            return f"tool.hatch.build.targets.{self.target_name}.hooks.{self.PLUGIN_NAME}"
        return f"tool.hatch.build.hooks.{self.PLUGIN_NAME}"

    def dependencies(self) -> list[str]:
        """Extra build requirements: isal when the hook writes a bundle, else none."""
        if self.target_name != "wheel" or self._options().bundle_dir is None:
            return []
        return list(BUNDLE_REQUIREMENTS)

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return  # an sdist carries sources only; the bundle is made from them later
        # hatch-flyte's warnings on hatch's display (stderr under pip, build and uv), and its errors
        # as one message instead of a traceback.
        with app_logging(self.app):
            try:
                self._initialize(version, build_data)
            except HatchFlyteError as e:
                self.app.abort(f"flyte: error: {e}")
                raise

    def _initialize(self, version: str, build_data: dict[str, Any]) -> None:
        from hatch_flyte.frontends.hatch.glue import check_hatchling
        from hatch_flyte.manifest import MANIFEST_NAME, make_manifest, write_manifest
        from hatch_flyte.pipeline import (
            NO_BUNDLE,
            Session,
            entry_points,
            outside_wheel,
            outside_wheel_message,
        )
        from hatch_flyte.project import load_project

        check_hatchling()
        bundle_dir = self._options().bundle_dir
        outdir = Path(self.root, bundle_dir) if bundle_dir is not None else None
        # Built by the `flyte` target: its session has walked and analysed the project already.
        session = shared(Path(self.root)) or Session(load_project(Path(self.root)), outdir=outdir)
        project, analysis = session.project, session.analysis
        points = entry_points(analysis.discovery)
        if version != "editable":
            # An entry point into a module the wheel does not hold could never load.
            files = self.build_config.builder.recurse_included_files()
            tops = {Path(f.distribution_path).parts[0].removesuffix(".py") for f in files}
            outside = outside_wheel(analysis.discovery, tops)
            if outside:
                message = outside_wheel_message(outside, "of this build")
                if project.config.strict:
                    raise DiscoveryError(f"{message} (an error with `strict = true`)")
                log.warning("%s; left out of the entry points", message)
                for env in outside:
                    points.pop(env.name or "", None)
        group = self.metadata.core.entry_points.setdefault(ENTRY_POINT_GROUP, {})
        group.update(points)

        bundle = None
        if outdir is not None and version != "editable":
            bundle = session.bundle(outdir)
            if bundle is None:
                self.app.display_info(f"flyte: {NO_BUNDLE}")
            else:
                self.app.display_info(f"flyte: bundle {bundle.path} ({len(bundle.files)} files)")
        manifest = make_manifest(
            project, analysis, bundle=bundle, name=self.metadata.name, version=self.metadata.version
        )
        self._tmp = tempfile.mkdtemp(prefix="hatch-flyte-hook-")
        path = Path(self._tmp, MANIFEST_NAME)
        write_manifest(path, manifest)
        build_data["extra_metadata"][str(path)] = MANIFEST_NAME
        names = ", ".join(sorted(group)) or "none"
        package = analysis.package or "- (top-level modules)"
        self.app.display_info(f"flyte: package {package}, environments: {names}")

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        tmp = getattr(self, "_tmp", None)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
