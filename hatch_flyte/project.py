"""The project model: where the project is, its bundle root and its import package."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hatch_flyte.config import FlyteConfig, load_toml, parse_config
from hatch_flyte.errors import ConfigError, ProjectError

PYPROJECT = "pyproject.toml"
# Top-level directories of a flat layout that are never the project's import package.
_NOT_PACKAGES = frozenset(
    {"tests", "test", "docs", "doc", "examples", "example", "benchmarks", "scripts", "build", "dist"}
)


@dataclass(frozen=True)
class Package:
    """The import package the Flyte code lives in."""

    name: str
    path: Path
    #: How it was found, for reports ("tool.flyte.package", "src layout", ...).
    found_by: str


@dataclass(frozen=True)
class Project:
    """A directory with a pyproject.toml (or any directory, then it is only a bundle root)."""

    directory: Path
    pyproject: Path | None
    config: FlyteConfig
    root_dir: Path
    name: str | None = None
    version: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def has_pyproject(self) -> bool:
        return self.pyproject is not None

    def resolve_path(self, relative: str) -> Path:
        """A project-relative path from the configuration, made absolute."""
        return (self.directory / relative).resolve()

    def find_package(self) -> Package:
        """Find the import package; raise :class:`ProjectError` listing what was looked at."""
        return _find_package(self)

    def module_name(self, path: Path) -> str:
        """Dotted module name of a file under the root, as flyte's runtime imports it."""
        rel = path.resolve().relative_to(self.root_dir).with_suffix("")
        parts = list(rel.parts)
        if parts and parts[-1] == "__init__":
            parts.pop()
        return ".".join(parts)


def load_project(path: Path, root_dir: str | Path | None = None) -> Project:
    """Load the project at ``path`` (a directory).

    With a pyproject.toml its ``[tool.flyte]`` applies; without one the directory itself is the
    bundle root and every setting has its default. ``root_dir`` overrides ``tool.flyte.root-dir``
    and is taken relative to the current directory, like a command-line option.
    """
    path = Path(path)
    if not path.exists():
        raise ProjectError(f"{path}: no such directory; pass a project directory or a bundle root")
    if not path.is_dir():
        raise ProjectError(f"{path} is not a directory; pass a project directory or a bundle root")
    directory = path.resolve()
    pyproject = directory / PYPROJECT
    if not pyproject.is_file():
        root = Path(root_dir).resolve() if root_dir is not None else directory
        return Project(
            directory=directory, pyproject=None, config=FlyteConfig(), root_dir=_check_root(root, None)
        )
    data = load_toml(pyproject)
    config = parse_config(data, pyproject)
    core = data.get("project", {}) if isinstance(data.get("project"), Mapping) else {}
    if root_dir is not None:
        root = Path(root_dir).resolve()
    elif config.root_dir is not None:
        root = (directory / config.root_dir).resolve()
    else:
        root = directory / "src" if (directory / "src").is_dir() else directory
    name = core.get("name") if isinstance(core.get("name"), str) else None
    version = core.get("version") if isinstance(core.get("version"), str) else None
    return Project(
        directory=directory,
        pyproject=pyproject,
        config=config,
        root_dir=_check_root(root, pyproject if config.root_dir is not None and root_dir is None else None),
        name=name,
        version=version,
        data=data,
    )


def _check_root(root: Path, pyproject: Path | None) -> Path:
    if root.is_dir():
        return root
    what = "does not exist" if not root.exists() else "is not a directory"
    if pyproject is not None:
        raise ConfigError(
            str(pyproject),
            [f"`tool.flyte.root-dir`: {root} {what}; point it at the directory holding your package"],
        )
    raise ProjectError(f"bundle root {root} {what}; pass an existing directory (--root-dir)")


def normalize_name(name: str) -> str:
    """PEP 503 name normalised to an import name: ``My-Project`` -> ``my_project``."""
    return re.sub(r"[-_.]+", "_", name).lower()


def _package_at(base: Path, dotted: str) -> Path | None:
    candidate = base.joinpath(*dotted.split("."))
    if candidate.is_dir():
        return candidate
    module = candidate.with_suffix(".py")
    return module if module.is_file() else None


def _hatch_packages(data: Mapping[str, Any]) -> list[str]:
    tool = data.get("tool", {})
    hatch = tool.get("hatch", {}) if isinstance(tool, Mapping) else {}  # `tool = 3` is valid TOML
    build = hatch.get("build", {}) if isinstance(hatch, Mapping) else {}
    if not isinstance(build, Mapping):
        return []
    wheel = build.get("targets", {}).get("wheel", {}) if isinstance(build.get("targets"), Mapping) else {}
    for table in (wheel, build):
        packages = table.get("packages") if isinstance(table, Mapping) else None
        if isinstance(packages, list) and all(isinstance(p, str) for p in packages):
            return list(packages)
    return []


def _find_package(project: Project) -> Package:
    looked: list[str] = []
    root = project.root_dir
    config = project.config

    if config.package:
        for base in dict.fromkeys([root, project.directory, project.directory / "src"]):
            found = _package_at(base, config.package)
            if found is not None:
                return _inside_root(project, Package(config.package, found, "tool.flyte.package"))
            looked.append(str(base.joinpath(*config.package.split("."))))
        raise ProjectError(
            f"`tool.flyte.package` = {config.package!r} in {project.pyproject} was not found; looked at: "
            + ", ".join(looked)
            + ". Fix the name or set `tool.flyte.root-dir` to the directory that holds it."
        )

    hatch_packages = _hatch_packages(project.data)
    if hatch_packages:
        found_pkgs = [project.directory / p for p in hatch_packages]
        existing = [p for p in found_pkgs if p.is_dir()]
        looked.append("tool.hatch.build.targets.wheel.packages = " + repr(hatch_packages))
        if len(existing) == 1:
            return _inside_root(
                project, Package(existing[0].name, existing[0].resolve(), "tool.hatch packages")
            )

    candidates: list[Path] = []
    src = project.directory / "src"
    looked.append(f"{src}/*/__init__.py")
    if src.is_dir():
        candidates = sorted(p.parent for p in src.glob("*/__init__.py") if p.parent.name.isidentifier())
    if len(candidates) == 1:
        return _inside_root(project, Package(candidates[0].name, candidates[0].resolve(), "src layout"))

    if not candidates and project.name:
        flat = project.directory / normalize_name(project.name)
        looked.append(f"{flat}/__init__.py")
        if (flat / "__init__.py").is_file():
            return _inside_root(project, Package(flat.name, flat.resolve(), "flat layout (project name)"))

    if not candidates:
        looked.append(f"{project.directory}/*/__init__.py")
        candidates = sorted(
            p.parent
            for p in project.directory.glob("*/__init__.py")
            if p.parent.name.isidentifier() and p.parent.name not in _NOT_PACKAGES
        )
        if len(candidates) == 1:
            return _inside_root(project, Package(candidates[0].name, candidates[0].resolve(), "flat layout"))

    where = project.pyproject or project.directory
    if candidates:
        names = ", ".join(str(c.relative_to(project.directory)) for c in candidates)
        raise ProjectError(
            f"{where}: several packages could be the Flyte package ({names}); "
            'set `package = "<name>"` under [tool.flyte] to choose one'
        )
    raise ProjectError(
        f"{where}: no Python package found; looked at "
        + "; ".join(looked)
        + ". Set `package` (and `root-dir`) under [tool.flyte]."
    )


def _inside_root(project: Project, package: Package) -> Package:
    root = project.root_dir
    if package.path != root and root not in package.path.parents:
        raise ProjectError(
            f"package {package.name!r} at {package.path} is outside the bundle root {root}, "
            "so flyte could not import it from the bundle; "
            "set `tool.flyte.root-dir` to a directory that contains it"
        )
    return package
