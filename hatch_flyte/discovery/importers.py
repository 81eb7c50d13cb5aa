"""Which modules of a code root import the environments: where their tasks may be defined.

The manifest names each environment's module; its tasks often live elsewhere (``envs.py`` holds
the environment, ``tasks.py`` does ``from .envs import env`` and decorates with it), and only an
import of those modules registers them, as ``flyte deploy --recursive`` imports every module. The
search reads sources only: a substring and a word check first, then the import statements
(``ast``) of the few modules that name a related module on an import line.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import PurePosixPath

#: Module path parts that mark tests, docs and build scripts: never imported for their tasks.
_NOT_TASKS = frozenset({"tests", "test", "testing", "conftest", "docs", "doc", "benchmarks", "setup"})


def module_name(rel: str) -> str:
    """The module a POSIX path relative to the root holds (``pkg/__init__.py`` is ``pkg``)."""
    parts = PurePosixPath(rel).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_test(module: str) -> bool:
    """Whether a module is a test (or docs, or a build script), by its dotted name."""
    parts = module.split(".")
    last = parts[-1]
    return bool(_NOT_TASKS.intersection(parts)) or last.startswith("test_") or last.endswith("_test")


def importers(
    sources: Mapping[str, str],
    read: Callable[[str], bytes | None],
    environments: Iterable[tuple[str, str]],
) -> list[tuple[str, str]]:
    """The modules of ``sources`` (module -> file name, relative POSIX, given to ``read``) that import
    an environment of ``environments`` (``(module, attribute)``): its module, the environment through
    a package that re-exports it, or another such module, transitively. Returns ``(module, what it
    imports)`` sorted by module; tests are left out."""
    modules = {m: name for m, name in sources.items() if not is_test(m)}
    envs = list(environments)
    related = {module for module, _ in envs}  # modules whose importers may define tasks
    exported = {f"{module}.{attribute}" for module, attribute in envs}  # names bound to an environment
    found: dict[str, str] = {}
    while True:
        # The last part of each module path an import would spell (`from pkg.envs import env`,
        # `from . import envs`, `from pkg import env` when pkg re-exports it).
        words = {n.rpartition(".")[2] for n in related}
        words |= {n.rpartition(".")[0].rpartition(".")[2] for n in exported}
        needles = [w.encode() for w in sorted(words)]
        alternatives = b"|".join(map(re.escape, needles))
        word = re.compile(rb"\b(?:" + alternatives + rb")\b")
        line = re.compile(rb"^[ \t]*(?:from|import)[ \t][^\n]*\b(?:" + alternatives + rb")\b", re.MULTILINE)
        added = False
        for module, name in sorted(modules.items()):
            if module in related:
                continue
            source = read(name) or b""
            # Cheap first, dearer after: the words, as words, on an import line (most modules
            # name none of them); then the imports themselves.
            if not any(n in source for n in needles) or not word.search(source) or not line.search(source):
                continue
            hit = None
            for base, names in _imports(source, module, name):
                for imported, bound in names:
                    target = f"{base}.{imported}" if base else imported
                    if base in related or target in related or target in exported:
                        hit = hit or target
                        if target in exported:
                            exported.add(f"{module}.{bound}")  # a re-export: `from pkg import env`
            if hit is not None:
                related.add(module)
                found[module] = hit
                added = True
        if not added:
            return sorted(found.items())


def _imports(source: bytes, module: str, name: str) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """Each import statement of a module as ``(base, [(imported, bound name)])``: ``import a.b``
    is ``("", [("a.b", "a")])``, ``from .x import y as z`` in ``pkg.m`` is ``("pkg.x", [("y", "z")])``."""
    try:
        tree = ast.parse(source, filename=name)
    except (SyntaxError, ValueError):
        return
    package = module if name.endswith("__init__.py") else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield "", [(a.name, a.asname or a.name.partition(".")[0]) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".") if package else []
                if node.level - 1 > len(parts):
                    continue
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, *([base] if base else [])])
            yield base, [(a.name, a.asname or a.name) for a in node.names]
