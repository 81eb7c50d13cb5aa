"""The project model: where the project is, its bundle root and its import package.

Module names are dotted paths relative to the bundle root (how flyte's runtime imports them from
the extracted bundle), so the root must be the directory the wheel installs the code from: ``src``
in a src layout, the directory that holds the packages otherwise. The layouts handled:

* one package (``src/pkg``, ``pkg``) or several top-level packages in one root (the one named
  after the project is *the* package; environments are found in all of them);
* PEP 420 namespace packages (directories of modules without ``__init__.py``);
* script projects: top-level modules and no package at all (``package`` is then ``None``);
* workspaces: sub-directories with their own ``pyproject.toml`` (uv ``[tool.uv.workspace]``
  members, or side-by-side sub-projects) are separate projects and are built on their own; a
  member that is itself a package directory (``__init__.py`` beside its ``pyproject.toml``) is
  importable from the common parent, as ``flyte deploy --root-dir <parent>`` imports it.
"""

from __future__ import annotations

import glob
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hatch_flyte.config import FlyteConfig, Override, load_toml, parse_config, with_overrides
from hatch_flyte.errors import ConfigError, ProjectError

PYPROJECT = "pyproject.toml"
# Top-level directories of a flat layout that are never the project's import package.
_NOT_PACKAGES = frozenset(
    {"tests", "test", "docs", "doc", "examples", "example", "benchmarks", "scripts", "build", "dist"}
)
# Directories never searched for code: flyte's standard ignores and tool caches.
_SKIP_DIRS = frozenset({"__pycache__", "node_modules", "venv", "env", "site-packages"})
_IDENT = re.compile(r"^[A-Za-z_]\w*$")


@dataclass(frozen=True)
class Package:
    """The import package the Flyte code lives in."""

    name: str
    path: Path
    #: How it was found, for reports ("tool.flyte.package", "src layout", ...).
    found_by: str


@dataclass(frozen=True)
class LocalDependency:
    """A dependency of the project built from a local directory (uv workspace member or path source)."""

    #: The distribution name as the project's dependencies spell it.
    name: str
    directory: Path


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
    #: Where the root came from when it was chosen by the user ("tool.flyte.root-dir", "--root-dir").
    root_from: str | None = field(default=None, compare=False)
    #: Keys of ``config`` set for this run, and by what (``{"strict": "--strict"}``).
    set_by: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def has_pyproject(self) -> bool:
        return self.pyproject is not None

    def resolve_path(self, relative: str) -> Path:
        """A project-relative path from the configuration, made absolute."""
        return (self.directory / relative).resolve()

    def find_package(self) -> Package | None:
        """The import package, or ``None`` for a script project (top-level modules only).

        Raises :class:`ProjectError` naming what was looked at when the root holds no Python code,
        or ``root-dir`` when module names would not be importable from the wheel or the bundle.
        """
        return _find_package(self)

    def module_name(self, path: Path) -> str:
        """Dotted module name of a file under the root, as flyte's runtime imports it."""
        rel = path.resolve().relative_to(self.root_dir).with_suffix("")
        parts = list(rel.parts)
        if parts and parts[-1] == "__init__":
            parts.pop()
        return ".".join(parts)

    def local_dependencies(self) -> list[LocalDependency]:
        """Dependencies built from local directories: uv workspace members and ``path`` sources."""
        return _local_dependencies(self)


def load_project(path: Path, overrides: Sequence[Override] = ()) -> Project:
    """Load the project at ``path`` (a directory).

    With a pyproject.toml its ``[tool.flyte]`` applies; without one the directory itself is the
    bundle root and every setting has its default. ``overrides`` (command-line flags) set keys for
    this run, checked as in ``[tool.flyte]``.
    """
    path = Path(path)
    if not path.exists():
        raise ProjectError(f"{path}: no such directory; pass a project directory or a bundle root")
    if not path.is_dir():
        raise ProjectError(f"{path} is not a directory; pass a project directory or a bundle root")
    directory = path.resolve()
    pyproject = directory / PYPROJECT if (directory / PYPROJECT).is_file() else None
    data: Mapping[str, Any] = load_toml(pyproject) if pyproject is not None else {}
    config = parse_config(data, pyproject) if pyproject is not None else FlyteConfig()
    if overrides:
        config = with_overrides(config, overrides, directory)
    set_by = {o.key: o.source for o in overrides}
    root_from = set_by.get("root-dir")
    if config.root_dir is not None:
        root = (directory / config.root_dir).resolve()
        root_from = root_from or "tool.flyte.root-dir"
    elif pyproject is None:
        root = directory
    else:
        root = _default_root(directory, data)
    core = data.get("project", {}) if isinstance(data.get("project"), Mapping) else {}
    name = core.get("name") if isinstance(core.get("name"), str) else None
    version = core.get("version") if isinstance(core.get("version"), str) else None
    return Project(
        directory=directory,
        pyproject=pyproject,
        config=config,
        root_dir=_check_root(root, root_from, pyproject),
        name=name,
        version=version,
        data=data,
        root_from=root_from,
        set_by=set_by,
    )


def _default_root(directory: Path, data: Mapping[str, Any]) -> Path:
    """``src`` in a src layout; the common parent of hatch's ``packages``; else the project."""
    packages = [(directory / p).resolve() for p in _hatch_packages(data)]
    parents = {p.parent for p in packages if p.is_dir() and p != directory}
    if len(parents) == 1:
        (parent,) = parents
        if parent == directory or directory in parent.parents:
            return parent
    return directory / "src" if (directory / "src").is_dir() else directory


def _check_root(root: Path, root_from: str | None, pyproject: Path | None) -> Path:
    if root.is_dir():
        return root
    what = "does not exist" if not root.exists() else "is not a directory"
    if root_from == "tool.flyte.root-dir" and pyproject is not None:
        raise ConfigError(
            str(pyproject),
            [f"`tool.flyte.root-dir`: {root} {what}; point it at the directory holding your package"],
        )
    raise ProjectError(f"bundle root {root} {what}; pass an existing directory ({root_from or '--root-dir'})")


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
    """The wheel's packages as the build backend is told: hatch's ``packages``, or uv_build's
    ``module-root``/``module-name``; project-relative paths."""
    uv_backend = _uv_table(data).get("build-backend")
    if isinstance(uv_backend, Mapping) and uv_backend.get("module-name") is not None:
        names = uv_backend["module-name"]
        names = [names] if isinstance(names, str) else names
        module_root = uv_backend.get("module-root", "src")
        if (
            isinstance(names, list)
            and all(isinstance(n, str) for n in names)
            and isinstance(module_root, str)
        ):
            base = module_root.strip("/") or "."
            return [f"{base}/{n}" for n in names if "." not in n]
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


# --- what lies under a root ------------------------------------------------------------------------


def is_nested_project(directory: Path) -> bool:
    """A sub-project (own pyproject.toml) that is not itself a package: its code is built on its own."""
    return (directory / PYPROJECT).is_file() and not (directory / "__init__.py").is_file()


def _has_modules(directory: Path, depth: int = 0) -> bool:
    """Whether a directory holds Python modules (itself or in sub-directories), as a namespace package."""
    if depth > 8:
        return False
    try:
        entries = list(directory.iterdir())
    except OSError:
        return False
    if any(e.suffix == ".py" and e.is_file() for e in entries):
        return True
    return any(
        e.is_dir() and _IDENT.match(e.name) and not is_nested_project(e) and _has_modules(e, depth + 1)
        for e in entries
    )


def _packages_under(root: Path) -> list[Path]:
    """Top-level packages of a root: regular ones and PEP 420 namespace packages, sorted."""
    out = []
    for entry in sorted(root.iterdir()) if root.is_dir() else []:
        name = entry.name
        if not entry.is_dir() or not _IDENT.match(name) or name in _SKIP_DIRS or name.startswith("."):
            continue
        if (entry / "__init__.py").is_file():
            if name not in _NOT_PACKAGES:
                out.append(entry)
        elif (
            name not in _NOT_PACKAGES
            and name != "src"
            and not is_nested_project(entry)
            and _has_modules(entry)
        ):
            out.append(entry)
    return out


def _top_modules(root: Path) -> list[str]:
    """Top-level modules of a root (``setup.py``, ``conftest.py`` and non-identifiers excluded)."""
    if not root.is_dir():
        return []
    return sorted(
        p.stem
        for p in root.glob("*.py")
        if p.is_file() and _IDENT.match(p.stem) and p.stem not in ("setup", "conftest", "__init__")
    )


# --- the package ------------------------------------------------------------------------------------


def _root_setting(project: Project) -> str:
    flag = project.set_by.get("root-dir")
    if flag is not None:
        return f"{flag} {project.root_dir}"
    rel = _rel(project.root_dir, project.directory)
    if project.root_from == "tool.flyte.root-dir":
        return f'`tool.flyte.root-dir` = "{rel}" in {project.pyproject}'
    return f"the default bundle root {project.root_dir}"


def _rel(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix() or "."
    except ValueError:
        return str(path)


def _misrooted(project: Project, package: str, actual_root: Path) -> ProjectError:
    """Module names would carry the path from the root to the code (``src.pkg.mod``)."""
    prefix = _rel(actual_root, project.root_dir).replace("/", ".")
    if project.pyproject is not None and (
        actual_root == project.directory or project.directory in actual_root.parents
    ):
        fix = f'set `root-dir = "{_rel(actual_root, project.directory)}"` under [tool.flyte]'
        flag = project.set_by.get("root-dir")
        if flag is not None:
            fix = f"pass {flag} {actual_root}"
    else:
        fix = f"pass --root-dir {actual_root}"
    return ProjectError(
        f"{_root_setting(project)} does not match the layout: the package `{package}` is in "
        f"{actual_root}, so its modules would be named `{prefix}.{package}...`, which neither the "
        f"wheel nor flyte's runtime can import; {fix}"
    )


def _find_package(project: Project) -> Package | None:
    looked: list[str] = []
    root = project.root_dir
    config = project.config

    if config.package:
        found = _package_at(root, config.package)
        if found is not None and found.is_dir() and is_nested_project(found):
            # A workspace member's directory, not a package: its code is at my_app/src/my_app.
            raise ProjectError(
                f"`tool.flyte.package` = {config.package!r} in {project.pyproject} names the sub-project "
                f"{found} (it has its own pyproject.toml), not a package: its modules would be named "
                f"`{config.package}.src...`. Build the member from its own directory instead: "
                f"`hatch-flyte build {_rel(found, Path.cwd().resolve())}`"
            )
        if found is not None:
            return Package(config.package, found, "tool.flyte.package")
        looked.append(str(root.joinpath(*config.package.split("."))))
        for base in dict.fromkeys([project.directory / "src", project.directory]):
            if base == root:
                continue
            elsewhere = _package_at(base, config.package)
            if elsewhere is not None:
                if root in base.parents:
                    raise _misrooted(project, config.package, base)
                raise ProjectError(
                    f"package {config.package!r} at {elsewhere} is outside the bundle root {root}, "
                    "so flyte could not import it from the bundle; "
                    "set `tool.flyte.root-dir` to a directory that contains it"
                )
            looked.append(str(base.joinpath(*config.package.split("."))))
        raise ProjectError(
            f"`tool.flyte.package` = {config.package!r} in {project.pyproject} was not found; looked at: "
            + ", ".join(looked)
            + ". Fix the name or set `tool.flyte.root-dir` to the directory that holds it."
        )

    preferred = normalize_name(project.name) if project.name else None
    hatch_packages = _hatch_packages(project.data)
    if hatch_packages:
        paths = [(project.directory / p).resolve() for p in hatch_packages]
        existing = [p for p in paths if p.is_dir()]
        looked.append("tool.hatch.build.targets.wheel.packages = " + repr(hatch_packages))
        if existing:
            found_pkgs = []
            for path in existing:
                if path == root:
                    continue  # packages = ["."]: the wheel holds the root's modules at top level
                if path.parent != root:
                    member = _enclosing_sub_project(project, path)
                    if member is not None:
                        # A development root whose wheel gathers its members' packages
                        # (my_app/src/my_app, my_lib/src/my_lib): no one bundle root names them as
                        # the wheel installs them; each member is built, and deployed, on its own.
                        raise WorkspaceRootError(
                            project,
                            workspace_members(project) or [member],
                            note="the `packages` of tool.hatch.build.targets.wheel lie inside them",
                        )
                    if path == project.directory or root in path.parents:
                        raise _misrooted(project, path.name, path.parent)
                    raise ProjectError(
                        f"package {path.name!r} at {path} is outside the bundle root {root}, "
                        "so flyte could not import it from the bundle; "
                        "set `tool.flyte.root-dir` to a directory that contains it"
                    )
                found_pkgs.append(Package(path.name, path, "tool.hatch packages"))
            if not found_pkgs:
                return None  # top-level modules, as the wheel installs them
            return _prefer(found_pkgs, preferred)

    candidates = _packages_under(root)
    how = "src layout" if root.name == "src" and root.parent == project.directory else "flat layout"
    looked.append(f"{root}/*/ (packages, namespace packages)")
    if len(candidates) == 1:
        return Package(candidates[0].name, candidates[0], how)
    if candidates:
        chosen = _prefer([Package(c.name, c, f"{how} (project name)") for c in candidates], preferred)
        return chosen

    # Nothing at the root: the code may sit deeper than the root says, or outside it.
    if not _top_modules(root):
        for base in (project.directory / "src", project.directory):
            if base == root or not base.is_dir() or (base / "__init__.py").is_file():
                continue
            # Not the directories on the way down to the root (the root was searched already).
            inner = [p for p in _packages_under(base) if p != root and p not in root.parents]
            if not inner:
                continue
            if root in base.parents:
                raise _misrooted(project, inner[0].name, base)
            raise ProjectError(
                f"package {inner[0].name!r} at {inner[0]} is outside the bundle root {root}, "
                "so flyte could not import it from the bundle; "
                "set `tool.flyte.root-dir` to a directory that contains it"
            )
    if _top_modules(root):
        return None  # a script project: its modules are top-level

    members = workspace_members(project)
    if members:
        raise WorkspaceRootError(project, members)
    where = project.pyproject or project.directory
    raise ProjectError(
        f"{where}: no Python package found; looked at "
        + "; ".join([*looked, f"{root}/*.py"])
        + ". Set `package` (and `root-dir`) under [tool.flyte]."
    )


def _enclosing_sub_project(project: Project, path: Path) -> Path | None:
    """The sub-project of ``project`` (own pyproject.toml) that ``path`` lies in, if any."""
    for parent in path.parents:
        if parent == project.directory or project.directory not in parent.parents:
            return None
        if is_nested_project(parent):
            return parent
    return None


def _prefer(packages: list[Package], preferred: str | None) -> Package | None:
    """One package, or the one named after the project (as hatchling and uv_build choose); else None."""
    if len(packages) == 1:
        return packages[0]
    named = [p for p in packages if p.name == preferred]
    if named:
        return Package(
            named[0].name, named[0].path, named[0].found_by.replace(" (project name)", "") + " (project name)"
        )
    return None


# --- workspaces and local path dependencies --------------------------------------------------------


def _uv_table(data: Mapping[str, Any]) -> Mapping[str, Any]:
    tool = data.get("tool", {})
    uv = tool.get("uv", {}) if isinstance(tool, Mapping) else {}
    return uv if isinstance(uv, Mapping) else {}


def _workspace_globs(directory: Path, data: Mapping[str, Any]) -> Iterator[Path]:
    workspace = _uv_table(data).get("workspace", {})
    if not isinstance(workspace, Mapping):
        return
    members = workspace.get("members", [])
    exclude = workspace.get("exclude", [])
    excluded: set[Path] = set()
    for pattern in exclude if isinstance(exclude, list) else []:
        if isinstance(pattern, str):
            excluded.update(Path(p).resolve() for p in glob.glob(str(directory / pattern)))
    for pattern in members if isinstance(members, list) else []:
        if isinstance(pattern, str):
            for found in sorted(glob.glob(str(directory / pattern))):
                path = Path(found).resolve()
                if path not in excluded and (path / PYPROJECT).is_file():
                    yield path


def workspace_members(project: Project) -> list[Path]:
    """Sub-projects of a workspace root: uv's ``members``, else direct sub-directories with a
    ``pyproject.toml`` that are not packages themselves."""
    members = [p for p in _workspace_globs(project.directory, project.data) if p != project.directory]
    if not members and project.directory.is_dir():
        members = [p for p in sorted(project.directory.iterdir()) if p.is_dir() and is_nested_project(p)]
    return list(dict.fromkeys(members))


class WorkspaceRootError(ProjectError):
    """The root holds no code of its own, only sub-projects (``members``) built on their own."""

    def __init__(
        self,
        project: Project,
        members: list[Path],
        counts: Mapping[Path, int] | None = None,
        note: str | None = None,
    ) -> None:
        self.members = members
        self.note = note
        counts = counts or {}
        holding = [m for m in members if counts.get(m)]
        shown = holding or members
        names = ", ".join(
            f"{_rel(m, project.directory)} ({counts[m]} environment{'s' if counts[m] > 1 else ''})"
            if counts.get(m)
            else _rel(m, project.directory)
            for m in shown
        )
        first = _rel(shown[0], project.directory)
        what = "hold Flyte environments" if holding else "are its sub-projects"
        why = f" ({note})" if note else ""
        super().__init__(
            f"{project.directory} is a workspace root with no Python code of its own; its members {names} "
            f"{what}{why}. Build each member from its own directory, e.g. `hatch-flyte build {first}` "
            f"(or `cd {first} && hatch build -t flyte`); a member's bundle root is its own src/ or directory"
        )


def _find_workspace_root(directory: Path) -> tuple[Path, Mapping[str, Any]] | None:
    for parent in [directory, *directory.parents]:
        pyproject = parent / PYPROJECT
        if pyproject.is_file():
            try:
                data = load_toml(pyproject)
            except ConfigError:
                continue
            if isinstance(_uv_table(data).get("workspace"), Mapping):
                return parent, data
        if (parent / ".git").exists():
            break
    return None


def _local_dependencies(project: Project) -> list[LocalDependency]:
    sources = _uv_table(project.data).get("sources", {})
    if not isinstance(sources, Mapping) or not sources:
        return []
    core = project.data.get("project", {})
    deps = core.get("dependencies", []) if isinstance(core, Mapping) else []
    wanted = {
        normalize_name(re.split(r"[\s\[<>=!~;@(]", d.strip(), maxsplit=1)[0])
        for d in (deps if isinstance(deps, list) else [])
        if isinstance(d, str)
    }
    workspace: dict[str, Path] | None = None
    out: list[LocalDependency] = []
    for name, source in sources.items():
        if not isinstance(source, Mapping) or normalize_name(str(name)) not in wanted:
            continue
        if isinstance(source.get("path"), str):
            path = (project.directory / source["path"]).resolve()
            if (path / PYPROJECT).is_file():
                out.append(LocalDependency(str(name), path))
        elif source.get("workspace") is True:
            if workspace is None:
                workspace = {}
                found = _find_workspace_root(project.directory)
                if found is not None:
                    for member in _workspace_globs(*found):
                        try:
                            member_name = load_toml(member / PYPROJECT).get("project", {}).get("name")
                        except (ConfigError, AttributeError):
                            continue
                        if isinstance(member_name, str):
                            workspace[normalize_name(member_name)] = member
            path = workspace.get(normalize_name(str(name)))
            if path is not None and path != project.directory:
                out.append(LocalDependency(str(name), path))
    return out


def hatch_enablement_hint(project: Project) -> str | None:
    """One line for a hatchling project that requires hatch-flyte but enables neither its build hook
    nor its target (hatchling never loads a plugin that is not configured, so the build is silent)."""
    system = project.data.get("build-system")
    if not isinstance(system, Mapping) or system.get("build-backend") != "hatchling.build":
        return None
    requires = system.get("requires", [])
    names = {
        normalize_name(re.split(r"[\s\[<>=!~;@(]", r.strip(), maxsplit=1)[0])
        for r in (requires if isinstance(requires, list) else [])
        if isinstance(r, str)
    }
    if "hatch_flyte" not in names:
        return None
    tool = project.data.get("tool", {})
    build = tool.get("hatch", {}).get("build", {}) if isinstance(tool, Mapping) else {}
    if not isinstance(build, Mapping):
        return None
    targets = build.get("targets", {}) if isinstance(build.get("targets"), Mapping) else {}
    wheel = targets.get("wheel", {}) if isinstance(targets.get("wheel"), Mapping) else {}
    hooks = [t.get("hooks", {}) for t in (build, wheel) if isinstance(t.get("hooks"), Mapping)]
    if "flyte" in targets or any("flyte" in h for h in hooks):
        return None
    return (
        f"{project.pyproject} lists hatch-flyte in build-system.requires but enables neither its build hook "
        "nor its target, so wheels carry no Flyte metadata: add a "
        "`[tool.hatch.build.targets.wheel.hooks.flyte]` table (every frontend), or build with "
        "`hatch build -t flyte`"
    )
