"""Import discovery: imports the bundle's modules in a subprocess of the project's interpreter.

The subprocess runs :mod:`hatch_flyte.discovery.probe`, which imports the modules like ``flyte
deploy --recursive`` and reports flyte's own registry of loaded environments.

A module that fails to import is reported as an :class:`~hatch_flyte.discovery.Unresolved`
entry (the exception's last line, at the module's failing line) and discovery carries on, as
``flyte deploy --recursive --ignore-load-errors`` does; when every module fails (usually the
project or its dependencies are not installed in that interpreter) it raises
:class:`~hatch_flyte.errors.DiscoveryError` instead.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from importlib import resources as importlib_resources
from pathlib import Path
from typing import Any

from hatch_flyte.discovery.model import (
    DependencyEnvironment,
    DiscoveryResult,
    Environment,
    Unresolved,
    _config_source,
    _DependencyIndex,
    _missing_module,
    _ModuleFile,
    _parse_ref,
    _result,
)
from hatch_flyte.discovery.static import _check_duplicates, _not_imported
from hatch_flyte.errors import DiscoveryError
from hatch_flyte.project import Project

# The logger of the public module: users configure ``hatch_flyte.discovery``, not its parts.
log = logging.getLogger("hatch_flyte.discovery")


# --- import discovery ----------------------------------------------------------------------------


class _ImportDiscovery:
    """Imports the modules in the project's interpreter and reads flyte's environment registry."""

    #: How errors name the job and the way out of it.
    purpose = "import discovery"
    fallback = 'set discovery = "static" under [tool.flyte]'

    def __init__(
        self,
        project: Project,
        root: Path,
        index: Mapping[str, _ModuleFile],
        dependencies: Sequence[_DependencyIndex] = (),
    ) -> None:
        self.project = project
        self.root = root
        self.index = index
        self.dependencies = dependencies
        self.found_dependencies: list[DependencyEnvironment] = []
        self.foreign_depends: dict[str, tuple[str, ...]] = {}

    def run(
        self, selected: Sequence[_ModuleFile], explicit: Sequence[str] | None, skipped: Sequence[_ModuleFile]
    ) -> DiscoveryResult:
        if explicit is not None:
            return self.run_explicit(explicit)
        answer = self.probe(self.request(selected, None))
        unresolved = [self.failure(f) for f in answer.get("failures", [])]
        if selected and len(unresolved) == len(selected):
            shown = "\n".join(f"  - {u}" for u in unresolved[:10])
            more = f"\n  ... and {len(unresolved) - 10} more" if len(unresolved) > 10 else ""
            raise DiscoveryError(
                f"import discovery could not import any of the {len(selected)} modules under {self.root}:\n"
                f"{shown}{more}\nFix the errors (is the project installed in {self.python()}?), "
                'or set discovery = "static" under [tool.flyte]'
            )
        envs, more_unresolved = self.environments(answer.get("environments", []))
        _check_duplicates(envs)
        # Modules outside ``selected`` imported along the way do not contribute (as in static).
        names, files = {m.name for m in selected}, {m.rel for m in selected}
        envs = [e for e in envs if e.module in names]
        more_unresolved = [u for u in more_unresolved if u.file in files]
        # Files that are not modules are never imported; read them as static discovery does.
        more_unresolved.extend(_not_imported(self.index, skipped))
        return _result(envs, unresolved + more_unresolved, "import", self.depended_on(envs))

    def depended_on(self, envs: Sequence[Environment]) -> list[DependencyEnvironment]:
        """Dependency environments named (transitively) by the project's environments."""
        by_name = {d.name: d for d in self.found_dependencies}
        wanted = [n for e in envs for n in e.depends_on]
        out: dict[str, DependencyEnvironment] = {}
        while wanted:
            name = wanted.pop()
            if name in by_name and name not in out:
                out[name] = by_name[name]
                wanted.extend(self.foreign_depends.get(name, ()))
        return list(out.values())

    def run_explicit(self, refs: Sequence[str]) -> DiscoveryResult:
        """Import the module of each ``tool.flyte.environments`` entry and check the entry."""
        present = [ref for ref in refs if _parse_ref(ref)[0] in self.index]
        answer = self.probe(self.request([], present)) if present else {}
        records = answer.get("environments", [])
        found: Mapping[str, Any] = answer.get("refs", {})
        chosen: list[Mapping[str, Any]] = []
        problems: list[str] = []
        for i, ref in enumerate(refs):
            if ref not in present:
                problems.append(_missing_module(self.project, self.root, i, ref))
                continue
            checked = found.get(ref, {"error": "the probe did not check it"})
            if "error" in checked:
                problems.append(
                    f"`tool.flyte.environments[{i}]` = {ref!r} in {_config_source(self.project)}: "
                    f"{checked['error']}; fix the entry or the module"
                )
            elif records[checked["env"]] not in chosen:
                chosen.append(records[checked["env"]])
        if problems:
            raise DiscoveryError("\n".join(problems))
        foreign = [r for r in records if self.foreign(r.get("module_file") or r.get("file")) is not None]
        envs, unresolved = self.environments(chosen + [r for r in foreign if r not in chosen])
        _check_duplicates(envs)
        return _result(envs, unresolved, "import", self.depended_on(envs))

    def request(self, modules: Sequence[_ModuleFile], refs: Sequence[str] | None) -> dict[str, Any]:
        foreign = [m.file for d in self.dependencies for m in d.modules.values()]
        return {
            "root": str(self.root),
            "paths": [str(d.root) for d in self.dependencies],
            "modules": [[m.name, m.file] for m in modules],
            "files": [m.file for m in self.index.values()] + foreign,
            "refs": list(refs) if refs is not None else None,
        }

    def foreign(self, path: str | None) -> _DependencyIndex | None:
        for dep in self.dependencies:
            prefix = str(dep.root).rstrip("/") + "/"
            if path is not None and path.startswith(prefix):
                return dep
        return None

    def relative(self, path: str | None) -> str | None:
        if path is None:
            return None
        prefix = str(self.root).rstrip("/") + "/"
        return Path(path[len(prefix) :]).as_posix() if path.startswith(prefix) else None

    def failure(self, failure: Mapping[str, Any]) -> Unresolved:
        rel = self.relative(failure["file"]) or failure["file"]
        reason = f"importing `{failure['module']}` failed: {failure['error']}"
        where = failure.get("where")
        if where:
            place = f"{self.relative(where[0]) or where[0]}:{where[1]}"
            if place != f"{rel}:{failure['line']}":
                reason += f" (raised at {place})"
        return Unresolved(rel, int(failure.get("line") or 0), reason, None)

    def environments(
        self, records: Sequence[Mapping[str, Any]]
    ) -> tuple[list[Environment], list[Unresolved]]:
        envs: list[Environment] = []
        unresolved: list[Unresolved] = []
        for record in records:
            name, kind = record.get("name"), record.get("kind", "Environment")
            dep = self.foreign(record.get("module_file") or record.get("file"))
            if dep is not None:
                if name and record.get("module") and record.get("attribute"):
                    self.found_dependencies.append(
                        DependencyEnvironment(
                            name, record["module"], record["attribute"], kind, dep.distribution
                        )
                    )
                    self.foreign_depends[name] = tuple(d for d in record.get("depends_on", ()) if d)
                continue
            label = f"environment {name!r} ({kind})"
            file = self.relative(record.get("file"))
            line = int(record.get("line") or 0)
            module, attribute = record.get("module"), record.get("attribute")
            if module is None or attribute is None:
                if file is None:
                    where = record.get("file") or "code outside the project"
                    unresolved.append(
                        Unresolved(
                            record.get("file") or "<unknown>",
                            line,
                            f"{label} was created outside the bundle root (by {where}) and no project "
                            "module binds it; it is not part of this project's code bundle",
                        )
                    )
                else:
                    unresolved.append(
                        Unresolved(
                            file,
                            line,
                            f"{label} is not bound to a module-level name of any project module, so it "
                            "cannot be referenced as module:attribute; assign it to a module-level variable",
                        )
                    )
                continue
            if file is None:  # created by code outside the root, bound in a project module
                file = self.relative(record.get("module_file")) or str(record.get("module_file"))
                line = 0
            envs.append(
                Environment(
                    name=name,
                    module=module,
                    attribute=attribute,
                    kind=kind,
                    file=file,
                    line=line,
                    depends_on=tuple(d for d in record.get("depends_on", ()) if d is not None),
                    include=tuple(record.get("include", ())),
                    image=record.get("image"),
                    resources=record.get("resources"),
                )
            )
        return envs, unresolved

    def python(self) -> str:
        configured = self.project.config.python
        if configured is None:
            return sys.executable
        where = f"`tool.flyte.python` = {configured!r} in {_config_source(self.project)}"
        if "/" in configured or os.sep in configured:
            path = Path(configured).expanduser()
            if not path.is_absolute():
                path = self.project.directory / path  # not resolved: a venv's python is a link
            if not (path.is_file() and os.access(path, os.X_OK)):
                raise DiscoveryError(
                    f"{where}: {path} is not an executable file; point it at the Python interpreter "
                    f"that has your project and flyte installed, or {self.fallback}"
                )
            return str(path)
        found = shutil.which(configured)
        if found is None:
            raise DiscoveryError(
                f"{where}: no `{configured}` on PATH; give the interpreter's path, or {self.fallback}"
            )
        return found

    def _project_venv(self) -> str | None:
        """The project's own virtual environment's Python (uv's and hatch's `.venv`), as written
        in pyproject.toml, when it exists."""
        for rel in (".venv/bin/python", ".venv/Scripts/python.exe"):
            if (self.project.directory / rel).is_file():
                return rel
        return None

    def probe(self, request: Mapping[str, Any]) -> dict[str, Any]:
        python = self.python()
        source = importlib_resources.files("hatch_flyte.discovery").joinpath("probe.py").read_text("utf-8")
        timeout = self.project.config.discovery_timeout
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        log.debug("import discovery: %s imports %d modules", python, len(request["modules"]))
        try:
            process = subprocess.Popen(
                [python, "-c", source],
                cwd=self.root,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                start_new_session=True,
            )
        except OSError as e:
            raise DiscoveryError(
                f"cannot run {python} for {self.purpose}: {e.strerror or e}; check `tool.flyte.python` "
                f"or {self.fallback}"
            ) from None
        try:
            out, err = process.communicate(json.dumps(request).encode("utf-8"), timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill(process)
            raise DiscoveryError(
                f"{self.purpose} did not finish within {timeout:g} s (importing the modules under "
                f"{self.root} with {python}); raise `tool.flyte.discovery-timeout` in "
                f"{_config_source(self.project)}, make module imports faster (no work at import time), "
                f"or {self.fallback}"
            ) from None
        stderr = err.decode("utf-8", errors="replace")
        if stderr.strip():
            log.debug("import discovery stderr:\n%s", stderr)
        try:
            answer: dict[str, Any] = json.loads(out.decode("utf-8"))
        except ValueError:
            tail = "\n".join(stderr.strip().splitlines()[-15:])
            raise DiscoveryError(
                f"{self.purpose} with {python} failed (exit status {process.returncode}) before "
                f"reporting; its output ends with:\n{tail}\n"
                f"Fix the error above, or {self.fallback}"
            ) from None
        if answer.get("error") == "flyte":
            venv = self._project_venv()
            suggestion = (
                f' (the project has one: `python = "{venv}"` under [tool.flyte])'
                if venv is not None and self.project.config.python is None
                else ""
            )
            raise DiscoveryError(
                f"{self.purpose} needs flyte in the interpreter that imports the project ({python}), "
                f"but `import flyte` fails there: {answer.get('message')}. Install flyte into that "
                f"environment ({python} -m pip install flyte), point `tool.flyte.python` at an interpreter "
                f"that has it{suggestion}, or {self.fallback}"
            )
        return answer


class _LoadedModules(_ImportDiscovery):
    """Imports the environments' modules as ``flyte deploy`` does, for a loaded_modules bundle."""

    purpose = 'copy-style = "loaded-modules"'
    fallback = 'set `tool.flyte.bundle.copy-style = "all"`'

    def loaded_files(self, modules: Sequence[str]) -> tuple[Path, ...]:
        """The files flyte's ``loaded_modules`` bundle holds once ``modules`` are imported."""
        paths = [[name, str(_module_path(self.root, name))] for name in modules]
        answer = self.probe(
            {"root": str(self.root), "modules": paths, "files": [], "refs": None, "loaded": True}
        )
        failures = [self.failure(f) for f in answer.get("failures", [])]
        if failures:
            shown = "\n".join(f"  - {u}" for u in failures)
            raise DiscoveryError(
                f"{self.purpose} imports the environments' modules with {self.python()} "
                f"to see what they load, and {len(failures)} of them failed:\n{shown}\n"
                "Fix the error (is the project with its dependencies installed in that interpreter? "
                f"`tool.flyte.python` chooses it), or {self.fallback}"
            )
        shadowed = answer.get("shadowed", [])
        if shadowed:
            shown = "\n".join(
                f"  - `{name}` from {found} instead of {own}" for name, found, own in shadowed[:10]
            )
            if len(shadowed) > 10:
                shown += f"\n  ... and {len(shadowed) - 10} more"
            raise DiscoveryError(
                f"an installed copy of the project shadows the bundle root {self.root} in {self.python()}:\n"
                f"{shown}\nflyte appends the root to sys.path, after site-packages, so its loaded_modules "
                "bundle would leave these modules out. Uninstall the copy, or install the project in "
                "editable mode (`pip install -e .`)"
            )
        return tuple(Path(f) for f in answer.get("loaded", []))


def _module_path(root: Path, name: str) -> Path:
    """The file of module ``name`` under ``root`` (a package's ``__init__.py`` first)."""
    base = root.joinpath(*name.split("."))
    package = base / "__init__.py"
    return package if package.is_file() else base.with_suffix(".py")


def _kill(process: subprocess.Popen[bytes]) -> None:
    """Stop the probe and anything it started (it runs in its own session)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except OSError:
        process.kill()
    process.communicate()
