"""Finding the Flyte environments of a project, statically (``ast``) or by importing its modules.

:func:`discover` looks at the Python modules of the bundle root (the files the code bundle holds,
so ignored directories such as ``.venv`` are skipped) and returns every environment bound to a
module-level name, as :class:`Environment` values, plus :class:`Unresolved` entries for what it
could not settle (never silently dropped).

Static discovery (the default) parses the modules and imports nothing: no user code runs and
flyte need not be installed. It parses only the modules whose code names an environment class
(or a project alias of one), ``clone_with``, ``from_task`` or ``add_dependency`` (outside comments
and string literals, see :mod:`hatch_flyte.discovery.lexical`), and the modules those import: any
other module cannot create an environment, and parsing every module of a large tree would cost
seconds. It follows module-level assignments whose value is a call to one of
flyte's environment classes (:data:`ENVIRONMENT_CLASSES`), resolving names through each module's
imports, ``clone_with``/``from_task``/``add_dependency``, and references across the project's
modules; see :mod:`hatch_flyte.discovery.static`. Import discovery (``discovery = "import"``)
imports every module in a subprocess of the project's interpreter, like ``flyte deploy
--recursive``, and reads flyte's own registry of loaded environments; see
:mod:`hatch_flyte.discovery.importing` and :mod:`hatch_flyte.discovery.probe`.

Both give the same names, modules, attributes and dependencies on ordinary projects; static
discovery reports as unresolved what only running the code can tell (a name computed at run time,
an environment made in a function or a loop, a dependency that is not a module-level environment).
The image summary differs between the methods for ``flyte.Image`` objects (source text
statically, the image's fields when imported).

Rules shared by both methods:

* The modules are the bundle's ``.py`` files named as flyte imports them (``pkg/__init__.py`` is
  ``pkg``). Files whose path is not a dotted name (``my-script.py``) and programs (``__main__.py``,
  a top-level ``setup.py``) are not imported; environments found in them are reported unresolved.
* An environment is reported as :class:`Environment` only when a module-level name is bound to it
  (in its own module first, else in the first module by name); one that is not is unresolved.
* Two environments with the same name are a :class:`DiscoveryError` naming both places.
* ``tool.flyte.environments`` replaces the search: only the modules of its entries are read (or
  imported), each entry must name an environment, and the result holds those environments.

The result types and the index of the bundle's modules, which both methods share, live in
:mod:`hatch_flyte.discovery.model`; this package re-exports the public ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hatch_flyte.bundle.selection import Selection
from hatch_flyte.discovery.model import (
    ENVIRONMENT_CLASSES,
    Analysis,
    DependencyEnvironment,
    DiscoveryResult,
    Environment,
    Unresolved,
    _dependency_indexes,
    _module_index,
    _under,
)
from hatch_flyte.discovery.static import _static
from hatch_flyte.project import Project

__all__ = [
    "ENVIRONMENT_CLASSES",
    "Analysis",
    "DependencyEnvironment",
    "DiscoveryResult",
    "Environment",
    "Unresolved",
    "discover",
    "loaded_module_files",
]


def discover(
    project: Project, modules_root: Path | None = None, files: Selection | None = None
) -> DiscoveryResult:
    """Find the project's environments, as ``[tool.flyte]`` says (``discovery``, ``environments``).

    ``modules_root`` restricts the search to the modules under that directory (default: the whole
    bundle root); module names stay relative to the bundle root, as flyte imports them. ``files``:
    the root's files as the bundle's ignore rules select them, when the build has walked it already.
    """
    root = project.root_dir.resolve()
    index, skipped = _module_index(project, root, files)
    selected = _under(list(index.values()), root, modules_root)
    explicit = project.config.environments
    not_modules = _under(skipped, root, modules_root)
    dependencies = _dependency_indexes(project, set(index))
    if project.config.discovery == "import":
        # Imported here: a static discovery (the default) never needs the subprocess machinery.
        from hatch_flyte.discovery.importing import _ImportDiscovery

        return _ImportDiscovery(project, root, index, dependencies).run(selected, explicit, not_modules)
    return _static(project, root, index, selected, explicit, not_modules, dependencies)


def loaded_module_files(project: Project, modules: Sequence[str]) -> tuple[Path, ...]:
    """The files flyte's ``copy_style="loaded_modules"`` bundle holds for these modules.

    ``modules`` (the environments' modules) are imported together in a subprocess of the
    project's interpreter, the way ``flyte deploy`` imports them; the answer is every file in that
    process's ``sys.modules`` that flyte keeps: under the bundle root and not installed code. A
    module that fails to import, or an installed copy of the project that shadows the root, is a
    :class:`~hatch_flyte.errors.DiscoveryError`.
    """
    from hatch_flyte.discovery.importing import _LoadedModules

    return _LoadedModules(project, project.root_dir.resolve(), {}).loaded_files(modules)
