"""What both discovery methods share: the result types and the index of the bundle's modules.

Static (:mod:`hatch_flyte.discovery.static`) and import (:mod:`hatch_flyte.discovery.importing`)
discovery import this module; it imports neither of them.
"""

from __future__ import annotations

import keyword
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hatch_flyte.bundle.ignore import IgnoreRules
from hatch_flyte.bundle.selection import Selection, select_files
from hatch_flyte.errors import DiscoveryError, HatchFlyteError
from hatch_flyte.project import Project, is_nested_project, load_project

# The logger of the public module: users configure ``hatch_flyte.discovery``, not its parts.
log = logging.getLogger("hatch_flyte.discovery")
#: flyte's environment classes by every dotted name user code can reach them under, mapped to
#: the class name. Taken from the installed flyte 2.12.1: ``flyte/_environment.py`` defines
#: ``Environment``; its subclasses are ``TaskEnvironment`` (``flyte/_task_environment.py``),
#: ``AppEnvironment`` (``flyte/app/_app_environment.py``), ``ConnectorEnvironment``
#: (``flyte/app/_connector_environment.py``), ``FastAPIAppEnvironment`` and
#: ``FlyteWebhookAppEnvironment`` (``flyte/app/extras/_fastapi.py``, ``_webhook_app.py``),
#: ``ClusteredTaskEnvironment`` (``flyte/clustered/_environment.py``), ``AgentChatAppEnvironment``
#: (``flyte/ai/chat/app.py``), ``MCPAppEnvironment`` and ``FlyteMCPAppEnvironment``
#: (``flyte/ai/mcp/``) and ``WebhookAppEnvironment`` (``flyte/extras/webhooks/_app.py``); each is
#: listed under its defining module and the package ``__init__`` that re-exports it.
_CLASS_PATHS: dict[str, tuple[str, ...]] = {
    "Environment": ("flyte.Environment", "flyte._environment.Environment"),
    "TaskEnvironment": ("flyte.TaskEnvironment", "flyte._task_environment.TaskEnvironment"),
    "AppEnvironment": ("flyte.app.AppEnvironment", "flyte.app._app_environment.AppEnvironment"),
    "ConnectorEnvironment": (
        "flyte.app.ConnectorEnvironment",
        "flyte.app._connector_environment.ConnectorEnvironment",
    ),
    "FastAPIAppEnvironment": (
        "flyte.app.extras.FastAPIAppEnvironment",
        "flyte.app.extras._fastapi.FastAPIAppEnvironment",
    ),
    "FlyteWebhookAppEnvironment": (
        "flyte.app.extras.FlyteWebhookAppEnvironment",
        "flyte.app.extras._webhook_app.FlyteWebhookAppEnvironment",
    ),
    "ClusteredTaskEnvironment": (
        "flyte.clustered.ClusteredTaskEnvironment",
        "flyte.clustered._environment.ClusteredTaskEnvironment",
    ),
    "AgentChatAppEnvironment": (
        "flyte.ai.chat.AgentChatAppEnvironment",
        "flyte.ai.chat.app.AgentChatAppEnvironment",
    ),
    "MCPAppEnvironment": ("flyte.ai.mcp.MCPAppEnvironment", "flyte.ai.mcp._mcp_app.MCPAppEnvironment"),
    "FlyteMCPAppEnvironment": (
        "flyte.ai.mcp.FlyteMCPAppEnvironment",
        "flyte.ai.mcp._flyte_mcp_app.FlyteMCPAppEnvironment",
    ),
    "WebhookAppEnvironment": (
        "flyte.extras.webhooks.WebhookAppEnvironment",
        "flyte.extras.webhooks._app.WebhookAppEnvironment",
    ),
}
ENVIRONMENT_CLASSES: Mapping[str, str] = {q: kind for kind, paths in _CLASS_PATHS.items() for q in paths}


# --- results -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Environment:
    """A Flyte environment bound to a module-level name: deployable as ``module:attribute``."""

    #: ``None`` when static discovery cannot tell the name (see the matching :class:`Unresolved`).
    name: str | None
    module: str
    attribute: str
    #: The class name, e.g. ``"TaskEnvironment"``.
    kind: str
    #: POSIX path of the file that creates it, relative to the bundle root.
    file: str
    #: Line of the creating call (0 when import discovery could not tell).
    line: int
    depends_on: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    #: A short summary: the image string, ``"auto"`` or e.g. ``"flyte.Image.from_debian_base(...)"``.
    image: str | None = None
    #: The literal arguments of ``flyte.Resources(...)``, e.g. ``{"cpu": 1, "memory": "1Gi"}``.
    resources: dict[str, Any] | None = field(default=None, hash=False)

    @property
    def ref(self) -> str:
        """``module:attribute``, the form of ``tool.flyte.environments`` entries."""
        return f"{self.module}:{self.attribute}"

    def to_json(self) -> dict[str, Any]:
        return {
            "attribute": self.attribute,
            "depends_on": list(self.depends_on),
            "file": self.file,
            "image": self.image,
            "include": list(self.include),
            "kind": self.kind,
            "line": self.line,
            "module": self.module,
            "name": self.name,
            "resources": _json_value(self.resources),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Environment:
        return cls(
            name=data.get("name"),
            module=data["module"],
            attribute=data["attribute"],
            kind=data["kind"],
            file=data["file"],
            line=int(data.get("line", 0)),
            depends_on=tuple(data.get("depends_on", ())),
            include=tuple(data.get("include", ())),
            image=data.get("image"),
            resources=dict(data["resources"]) if data.get("resources") is not None else None,
        )


@dataclass(frozen=True)
class Unresolved:
    """Something discovery saw but could not settle, with where it is and why."""

    #: POSIX path relative to the bundle root (absolute when the code lies outside the root).
    file: str
    line: int
    reason: str
    #: The module-level name concerned, when there is one.
    attribute: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"attribute": self.attribute, "file": self.file, "line": self.line, "reason": self.reason}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Unresolved:
        return cls(data["file"], int(data.get("line", 0)), data["reason"], data.get("attribute"))

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


@dataclass(frozen=True)
class DependencyEnvironment:
    """An environment of another distribution (a workspace member or a local path dependency) that
    an environment of the project names in ``depends_on``: flyte deploys it along with the project's."""

    name: str
    module: str
    attribute: str
    kind: str
    #: The distribution that provides it, as the project's dependencies name it.
    distribution: str

    def to_json(self) -> dict[str, Any]:
        return {
            "attribute": self.attribute,
            "distribution": self.distribution,
            "kind": self.kind,
            "module": self.module,
            "name": self.name,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DependencyEnvironment:
        return cls(data["name"], data["module"], data["attribute"], data["kind"], data["distribution"])


@dataclass(frozen=True)
class DiscoveryResult:
    """Environments sorted by module, attribute and line; unresolved entries by file and line."""

    environments: tuple[Environment, ...]
    unresolved: tuple[Unresolved, ...]
    #: ``"static"`` or ``"import"``.
    method: str
    #: Environments of local dependencies named in ``depends_on``, sorted by name.
    dependencies: tuple[DependencyEnvironment, ...] = ()

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.environments if e.name is not None]

    def to_json(self) -> dict[str, Any]:
        return {
            "dependencies": [d.to_json() for d in self.dependencies],
            "environments": [e.to_json() for e in self.environments],
            "method": self.method,
            "unresolved": [u.to_json() for u in self.unresolved],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DiscoveryResult:
        return cls(
            tuple(Environment.from_json(e) for e in data.get("environments", ())),
            tuple(Unresolved.from_json(u) for u in data.get("unresolved", ())),
            str(data.get("method", "static")),
            tuple(DependencyEnvironment.from_json(d) for d in data.get("dependencies", ())),
        )


@dataclass(frozen=True)
class Analysis:
    """What a project holds: its import package (``None``: top-level modules) and its environments."""

    package: str | None
    discovery: DiscoveryResult


def _json_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_value(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    return value


def _result(
    envs: Sequence[Environment],
    unresolved: Sequence[Unresolved],
    method: str,
    dependencies: Sequence[DependencyEnvironment] = (),
) -> DiscoveryResult:
    return DiscoveryResult(
        environments=tuple(sorted(envs, key=lambda e: (e.module, e.attribute, e.line, e.name or ""))),
        unresolved=tuple(
            sorted(set(unresolved), key=lambda u: (u.file, u.line, u.reason, u.attribute or ""))
        ),
        method=method,
        dependencies=tuple(sorted(set(dependencies), key=lambda d: (d.name, d.module, d.attribute))),
    )


# --- local path dependencies ----------------------------------------------------------------------


@dataclass(frozen=True)
class _DependencyIndex:
    """The modules of a local dependency's own bundle root, to follow ``depends_on`` into it."""

    distribution: str
    root: Path
    modules: Mapping[str, _ModuleFile]


def _dependency_indexes(project: Project, own: set[str]) -> list[_DependencyIndex]:
    """Indexes of the project's local path dependencies (workspace members, ``path`` sources).

    Their modules are read (never imported) only to name the environments the project's
    environments depend on; a module name the project itself has is the project's.
    """
    out: list[_DependencyIndex] = []
    for dep in project.local_dependencies():
        try:
            other = load_project(dep.directory)
            index, _ = _module_index(other, other.root_dir.resolve())
        except HatchFlyteError as e:
            log.warning("cannot read the local dependency %s at %s: %s", dep.name, dep.directory, e)
            continue
        modules = {name: module for name, module in index.items() if name.split(".")[0] not in own}
        out.append(_DependencyIndex(dep.name, other.root_dir.resolve(), modules))
    return out


def _config_source(project: Project) -> str:
    return str(project.pyproject) if project.pyproject is not None else "[tool.flyte]"


# --- the modules of the bundle root --------------------------------------------------------------


@dataclass(frozen=True)
class _ModuleFile:
    name: str
    #: POSIX path relative to the root.
    rel: str
    #: Absolute path under the root, as walked (not resolved); a string, as the walk gives it:
    #: a ``Path`` for each of a large tree's modules costs more than reading most of them.
    file: str
    #: Why a ``.py`` file is not imported as a module (then ``name`` is its path).
    skipped: str | None = None


def _module_index(
    project: Project, root: Path, files: Selection | None = None
) -> tuple[dict[str, _ModuleFile], list[_ModuleFile]]:
    """Importable modules among the bundle's files, by dotted name, in walk (file name) order.

    Also returns the other ``.py`` files (named by their path, with ``skipped`` saying why), which
    static discovery still reads to report any environment in them.
    """
    bundle = project.config.bundle
    try:
        if files is None:
            rules = IgnoreRules.for_root(root, bundle.ignores, bundle.keep_default_ignores)
            files = select_files(root, rules)
        selection = files
    except HatchFlyteError as e:
        raise DiscoveryError(f"cannot list the modules under {root}: {e}") from None
    index: dict[str, _ModuleFile] = {}
    skipped: list[_ModuleFile] = []
    nested: dict[str, bool] = {}
    for item in selection.files:
        if not item.arcname.endswith(".py"):
            continue
        if _in_nested_project(root, item.arcname, nested):
            continue  # a sub-project's code: built, and discovered, from its own directory
        parts = item.arcname[:-3].split("/")
        if parts[-1] == "__init__":
            parts.pop()
        if not parts:
            continue  # the root's own __init__.py is not a module flyte imports
        if not all(p.isidentifier() and not keyword.iskeyword(p) for p in parts):
            why = "is not importable: its path is not a dotted Python module name; rename it"
            skipped.append(_ModuleFile(item.arcname, item.arcname, item.path, why))
            continue
        if parts[-1] == "__main__" or parts == ["setup"]:
            # Programs, not modules: importing them runs them (a CLI, setuptools.setup()).
            why = "is a program that discovery does not import; move the environment to a module"
            skipped.append(_ModuleFile(item.arcname, item.arcname, item.path, why))
            continue
        name = ".".join(parts)
        # A package (pkg/__init__.py) shadows a module of the same name (pkg.py), as in Python.
        if name in index and not item.arcname.endswith("__init__.py"):
            continue
        index[name] = _ModuleFile(name, item.arcname, item.path)
    for module in skipped:
        log.debug("not a module to import: %s %s", module.rel, module.skipped)
    return index, skipped


def _in_nested_project(root: Path, arcname: str, cache: dict[str, bool]) -> bool:
    parts = arcname.split("/")[:-1]
    for i in range(1, len(parts) + 1):
        rel = "/".join(parts[:i])
        if rel not in cache:
            cache[rel] = is_nested_project(root / rel)
        if cache[rel]:
            return True
    return False


def _under(modules: Sequence[_ModuleFile], root: Path, modules_root: Path | None) -> list[_ModuleFile]:
    if modules_root is None:
        return list(modules)
    base = modules_root.resolve()
    if base != root and root not in base.parents:
        raise DiscoveryError(
            f"cannot discover environments under {modules_root}: it is outside the bundle root {root}; "
            "pass a directory inside the root or set `tool.flyte.root-dir`"
        )
    prefix = "" if base == root else base.relative_to(root).as_posix() + "/"
    return [m for m in modules if m.rel.startswith(prefix)]


def _parse_ref(ref: str) -> tuple[str, str]:
    module, _, attribute = ref.partition(":")
    return module, attribute


def _missing_module(project: Project, root: Path, i: int, ref: str) -> str:
    module, _ = _parse_ref(ref)
    base = root.joinpath(*module.split("."))
    candidates = [base.with_suffix(".py"), base / "__init__.py"]
    existing = [c for c in candidates if c.is_file()]
    where = f"`tool.flyte.environments[{i}]` = {ref!r} in {_config_source(project)}"
    if existing:
        return (
            f"{where}: {existing[0]} exists but is not a module discovery imports: the bundle's ignore "
            "rules (.gitignore, .flyteignore, tool.flyte.bundle.ignores) leave it out, or it is a "
            "program (__main__.py, setup.py); stop ignoring it or point the entry at another module"
        )
    looked = " and ".join(str(c) for c in candidates)
    return f"{where}: no module `{module}` under the bundle root (looked for {looked}); fix the entry"
