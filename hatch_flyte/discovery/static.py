"""Static discovery: evaluates the module-level code of the bundle's modules with ``ast``.

Nothing is imported, so no user code runs and flyte need not be installed; what only running the
code can tell is reported as :class:`~hatch_flyte.discovery.Unresolved`.

Module-level ``if``/``try``/``with`` blocks are followed: a condition known before running
(``TYPE_CHECKING``, ``__name__ == "__main__"``, literals) picks its branch; for any other
condition both branches count and, when both bind the same name, the first one's environment is
kept and the other is reported. Import discovery reports the branch taken in its interpreter.
"""

from __future__ import annotations

import ast
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

from hatch_flyte.discovery.lexical import any_in_code
from hatch_flyte.discovery.model import (
    ENVIRONMENT_CLASSES,
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
from hatch_flyte.errors import DiscoveryError
from hatch_flyte.project import Project

# The logger of the public module: users configure ``hatch_flyte.discovery``, not its parts.
log = logging.getLogger("hatch_flyte.discovery")

#: ``flyte.Resources`` (``flyte/_resources.py``) and its fields in positional order.
_RESOURCES = frozenset({"flyte.Resources", "flyte._resources.Resources"})
_RESOURCE_FIELDS = ("cpu", "memory", "gpu", "disk", "shm")
_TYPE_CHECKING = frozenset({"typing.TYPE_CHECKING", "typing_extensions.TYPE_CHECKING"})
#: flyte's rule for environment names (``flyte._environment.is_snake_or_kebab_with_numbers``).
_VALID_NAME = re.compile(r"^[a-z0-9]+([_-][a-z0-9]+)*$")
_IMPORT_HINT = 'or set discovery = "import" under [tool.flyte]'
_DECORATOR = "in the decorator of"
#: The bytes of a word as a bytes regular expression sees it (``\w``, ``\b``): ASCII only.
_WORD_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


# --- static discovery: values --------------------------------------------------------------------


@dataclass(frozen=True)
class _Problem:
    line: int
    reason: str


@dataclass(eq=False)
class _Draft:
    """An environment as static discovery sees it while walking the modules."""

    kind: str
    module: str
    file: str
    line: int
    name: str | None = None
    name_problem: str | None = None
    depends_on: list[_Draft | _Problem] = field(default_factory=list)
    include: tuple[str, ...] = ()
    image: str | None = "auto"
    resources: dict[str, Any] | None = None
    problems: list[_Problem] = field(default_factory=list)
    #: Set when created in a branch only chosen at run time ("under the condition at line 4").
    context: str | None = None
    module_bound: str | None = None
    attribute: str | None = None

    @property
    def label(self) -> str:
        return f"environment {self.name!r} ({self.kind})" if self.name else f"a {self.kind}"


@dataclass(frozen=True)
class _ModuleV:
    name: str


@dataclass(frozen=True)
class _ExternalV:
    """Something imported from outside the bundle root, by dotted name."""

    qualname: str


@dataclass(frozen=True)
class _ClassV:
    """One of flyte's environment classes, or a project class deriving from one."""

    kind: str


@dataclass(frozen=True)
class _ConstV:
    value: str


@dataclass(frozen=True, eq=False)
class _EnvV:
    draft: _Draft


@dataclass(frozen=True)
class _OpaqueV:
    what: str


_Value: TypeAlias = _ModuleV | _ExternalV | _ClassV | _ConstV | _EnvV | _OpaqueV


def _external(qualname: str) -> _Value:
    kind = ENVIRONMENT_CLASSES.get(qualname)
    return _ClassV(kind) if kind is not None else _ExternalV(qualname)


def _short(node: ast.AST, limit: int = 60) -> str:
    text = ast.unparse(node)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(node: ast.expr) -> str:
    """``flyte.Image.from_debian_base(python="3.12").with_pip_packages("x")`` ->
    ``flyte.Image.from_debian_base(...).with_pip_packages(...)``."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_describe(node.value)}.{node.attr}"
    if isinstance(node, ast.Call):
        return f"{_describe(node.func)}(...)"
    return _short(node)


def _what(value: _Value) -> str:
    if isinstance(value, _ModuleV):
        return f"the module `{value.name}`"
    if isinstance(value, _ExternalV):
        return f"`{value.qualname}`, from outside the bundle root"
    if isinstance(value, _ClassV):
        return f"the class {value.kind}"
    if isinstance(value, _ConstV):
        return f"the string {value.value!r}"
    if isinstance(value, _EnvV):
        return value.draft.label
    return value.what


@dataclass(eq=False)
class _ModuleState:
    name: str
    file: _ModuleFile | None
    bindings: dict[str, _Value] = field(default_factory=dict)
    #: Line of the statement that last bound each name.
    lines: dict[str, int] = field(default_factory=dict)
    drafts: list[_Draft] = field(default_factory=list)
    problems: list[_Problem] = field(default_factory=list)
    #: Modules outside the root star-imported (``from flyte import *``).
    stars: list[str] = field(default_factory=list)
    #: The module's source, for :meth:`_Static.may_create`.
    source: bytes = b""
    #: ``(trigger generation, answer)`` of the last :meth:`_Static.may_create` for this module.
    may_create: tuple[int, bool] = (-1, True)
    #: Offset of each line in ``source`` (made when first needed).
    line_starts: list[int] = field(default_factory=list)

    @property
    def is_package(self) -> bool:
        return self.file is None or self.file.rel.endswith("__init__.py")


# --- static discovery: the analyser --------------------------------------------------------------


class _Static:
    """Evaluates the module-level code of the project's modules, one module at a time."""

    def __init__(
        self, index: Mapping[str, _ModuleFile], dependencies: Sequence[_DependencyIndex] = ()
    ) -> None:
        self.index = index
        #: Modules of local dependencies, read only to follow ``depends_on`` into them.
        self.foreign: dict[str, tuple[_ModuleFile, str]] = {}
        for dep in dependencies:
            for name, module in dep.modules.items():
                self.foreign.setdefault(name, (module, dep.distribution))
        names = [*index, *self.foreign]
        self.packages = {n.rsplit(".", i)[0] for n in names for i in range(n.count(".") + 1)}
        self.states: dict[str, _ModuleState] = {}
        self.order: list[str] = []
        # A call can only create an environment, clone one or add a dependency when the last name of
        # its callee is one of these: an environment class's own name, a name some module bound to
        # an environment class, or one of the methods. Scanning every call of a module whose source
        # holds none of them finds nothing, and in a large project that scan is most of the time.
        self.triggers: set[bytes] = {b"clone_with", b"from_task", b"add_dependency"}
        self.triggers.update(q.rsplit(".", 1)[-1].encode() for q in ENVIRONMENT_CLASSES)
        self.generation = 0
        self._needles: tuple[int, list[bytes]] = (-1, [])
        #: The source :meth:`analyze_all` read for the module it is about to analyse.
        self.sources: dict[str, bytes] = {}

    def is_module(self, name: str) -> bool:
        return name in self.packages

    def add_trigger(self, name: str) -> None:
        key = name.encode()
        if key not in self.triggers:
            self.triggers.add(key)
            self.generation += 1

    def _trigger_words(self, source: bytes) -> Iterator[int]:
        """Where ``source`` names a trigger as a whole word (its offsets, in no particular order).

        Substring search first (most modules hold none), for the triggers that contain no other
        (`Environment` stands for `TaskEnvironment` too); each hit counts when the whole word
        around it (ASCII letters, digits and ``_``, as ``\\b`` in a bytes pattern sees it) is a
        trigger: no regular expression runs over the source (``EnvironmentError`` is common).
        """
        generation, needles = self._needles
        if generation != self.generation:
            needles = [t for t in self.triggers if not any(o != t and o in t for o in self.triggers)]
            self._needles = (self.generation, needles)
        for needle in needles:
            at = source.find(needle)
            while at >= 0:
                start, end = at, at + len(needle)
                while start and source[start - 1] in _WORD_BYTES:
                    start -= 1
                while end < len(source) and source[end] in _WORD_BYTES:
                    end += 1
                if source[start:end] in self.triggers:
                    yield start
                at = source.find(needle, at + 1)

    def names_trigger(self, source: bytes) -> bool:
        """Whether ``source`` names a trigger as a whole word."""
        return next(self._trigger_words(source), None) is not None

    def code_names_trigger(self, source: bytes) -> bool:
        """Whether ``source`` names a trigger outside comments and string literals (only a name in
        code can make an environment): the whole words found, then the lexer for them."""
        found = sorted(set(self._trigger_words(source)))
        return bool(found) and any_in_code(source, found)

    def statement_may_create(self, state: _ModuleState, node: ast.AST) -> bool:
        """Whether the source lines of ``node`` name a trigger (the module as a whole does)."""
        start, end = getattr(node, "lineno", None), getattr(node, "end_lineno", None)
        if start is None or end is None:
            return True
        # A definition's line is its `def`/`class` line: its decorators come before it.
        start = min([start, *(d.lineno for d in getattr(node, "decorator_list", ()))])
        if not state.line_starts:
            state.line_starts = [0, *(m.end() for m in re.finditer(b"\n", state.source))]
        starts = state.line_starts
        stop = starts[end] if end < len(starts) else len(state.source)
        return self.names_trigger(state.source[starts[start - 1] : stop])

    def may_create(self, state: _ModuleState) -> bool:
        """Whether a call in ``state``'s module could create or change an environment."""
        generation, answer = state.may_create
        if generation != self.generation:
            answer = self.names_trigger(state.source)
            state.may_create = (self.generation, answer)
        return answer

    def analyze_all(self, modules: Sequence[_ModuleFile]) -> None:
        """Analyse the modules that may create environments, and what they import.

        A module whose code names no trigger (outside its comments and string literals) creates
        nothing: it is parsed only when a module that is analysed imports it. Each round's new
        environment classes can make more modules count, so the rest are read and looked at again
        until none is added (rarely: a project's own alias of a class); their sources are not kept
        meanwhile, which would hold the whole tree in memory.
        """
        pending = list(modules)
        while pending:
            generation = self.generation
            later = []
            for module in pending:
                if module.name in self.states:
                    continue
                source = _read(module)
                if self.code_names_trigger(source):
                    self.sources[module.name] = source
                    self.analyze(module.name)
                    self.sources.pop(module.name, None)  # its package imported it first
                else:
                    later.append(module)
            if self.generation == generation:
                return
            pending = later

    def analyze(self, name: str) -> _ModuleState:
        """The state of a project module, analysing it (and its parent packages) first if needed.

        A module being analysed (an import cycle) is returned as it is so far, like Python's
        partially initialised modules.
        """
        state = self.states.get(name)
        if state is not None:
            return state
        if "." in name:
            self.analyze(name.rsplit(".", 1)[0])
            if name in self.states:  # the parent imported it
                return self.states[name]
        foreign = self.foreign.get(name)
        state = _ModuleState(name, self.index.get(name) or (foreign[0] if foreign else None))
        self.states[name] = state
        self.order.append(name)
        if state.file is not None:
            state.source, tree = _parse(state.file, self.sources.pop(name, None))
            _ModuleRun(self, state).run(tree.body)
        return state

    def module_ref(self, name: str) -> _Value:
        return _ModuleV(name) if self.is_module(name) else _external(name)

    def module_value(self, name: str) -> _Value:
        if self.is_module(name):
            self.analyze(name)
            return _ModuleV(name)
        return _external(name)

    def attribute(self, value: _Value, attr: str) -> _Value:
        if isinstance(value, _ModuleV):
            found = self.analyze(value.name).bindings.get(attr)
            if found is not None:
                return found
            sub = f"{value.name}.{attr}"
            if self.is_module(sub):
                return _ModuleV(sub)
            return _OpaqueV(f"`{sub}`, which static discovery does not find")
        if isinstance(value, _ExternalV):
            return _external(f"{value.qualname}.{attr}")
        return _OpaqueV(f"an attribute of {_what(value)}")


def _read(module: _ModuleFile) -> bytes:
    try:
        # Unbuffered: one read of the whole file, not a copy through a buffer (this reads every module).
        with open(module.file, "rb", buffering=0) as f:
            return f.readall()
    except OSError as e:
        raise DiscoveryError(
            f"{module.rel}: cannot read module `{module.name}`: {e}; make it a readable UTF-8 Python "
            "file or leave it out with `tool.flyte.bundle.ignores`"
        ) from None


def _parse(module: _ModuleFile, source: bytes | None = None) -> tuple[bytes, ast.Module]:
    if source is None:
        source = _read(module)
    try:
        return source, ast.parse(source, filename=module.rel)
    except SyntaxError as e:
        col = f":{e.offset}" if e.offset else ""
        raise DiscoveryError(
            f"{module.rel}:{e.lineno or 0}{col}: {e.msg} (module `{module.name}`); static discovery parses "
            "every module that may define environments and the modules they import: fix the syntax, or "
            "leave the file out of the bundle with `tool.flyte.bundle.ignores`"
        ) from None
    except (OSError, ValueError, RecursionError) as e:
        raise DiscoveryError(
            f"{module.rel}: cannot read module `{module.name}`: {e}; make it a readable UTF-8 Python "
            "file or leave it out with `tool.flyte.bundle.ignores`"
        ) from None


class _ModuleRun:
    """Executes one module's top-level statements abstractly."""

    def __init__(self, static: _Static, state: _ModuleState) -> None:
        self.static = static
        self.state = state
        self.context: str | None = None
        self.seen_calls: set[int] = set()

    # statements

    def run(self, body: Sequence[ast.stmt]) -> None:
        for node in body:
            try:
                self.stmt(node)
            except RecursionError:
                self.state.problems.append(
                    _Problem(
                        node.lineno,
                        "this statement is nested too deeply for static discovery, which skips it; "
                        + _IMPORT_HINT.removeprefix("or "),
                    )
                )

    def stmt(self, node: ast.stmt) -> None:
        if isinstance(node, ast.Import):
            self.import_(node)
        elif isinstance(node, ast.ImportFrom):
            self.import_from(node)
        elif isinstance(node, ast.Assign):
            self.assign(node.targets, node.value, node.lineno)
            self.scan(node)
        elif isinstance(node, ast.AnnAssign):
            if node.value is not None:
                self.assign([node.target], node.value, node.lineno)
            self.scan(node)
        elif isinstance(node, ast.AugAssign):
            self.value(node.value)
            if isinstance(node.target, ast.Name):
                self.bind(node.target.id, _OpaqueV(f"`{node.target.id}`"), node.lineno)
            self.scan(node)
        elif isinstance(node, ast.Expr):
            self.value(node.value)
            self.scan(node)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            self.bind(node.name, _OpaqueV(f"the function `{node.name}`"), node.lineno)
            self.scan(node)
        elif isinstance(node, ast.ClassDef):
            self.class_def(node)
        elif isinstance(node, ast.If):
            self.if_(node)
        elif isinstance(node, ast.Try) or type(node).__name__ == "TryStar":
            self.try_(node)
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                self.value(item.context_expr)
                self.opaque_targets(item.optional_vars, node.lineno)
            self.scan_exprs([i.context_expr for i in node.items])
            self.run(node.body)
        elif isinstance(node, (ast.For, ast.AsyncFor, ast.While)):
            self.opaque_assigned(node)
            self.scan(node, f"in the loop at line {node.lineno}")
        elif isinstance(node, ast.Delete):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    self.state.bindings.pop(target.id, None)
        else:  # match, raise, assert, type aliases ...
            self.opaque_assigned(node)
            what = "in the `match` statement" if type(node).__name__ == "Match" else None
            self.scan(node, f"{what} at line {node.lineno}" if what else None)

    def bind(self, name: str, value: _Value, line: int) -> None:
        self.state.bindings[name] = value
        self.state.lines[name] = line
        if isinstance(value, _ClassV):
            self.static.add_trigger(name)

    def opaque_targets(self, target: ast.expr | None, line: int) -> None:
        if target is None:
            return
        for node in ast.walk(target):
            if isinstance(node, ast.Name):
                self.bind(node.id, _OpaqueV(f"`{node.id}`, set at run time"), line)

    def opaque_assigned(self, node: ast.stmt) -> None:
        """Names a loop (or another statement static discovery does not follow) may rebind."""
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                self.bind(sub.id, _OpaqueV(f"`{sub.id}`, set at run time"), node.lineno)
            elif isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.bind(sub.name, _OpaqueV(f"`{sub.name}`, defined at run time"), node.lineno)

    def import_(self, node: ast.Import) -> None:
        for alias in node.names:
            # Bound without analysing: a module is read when one of its names is looked up (or,
            # when it may create environments, by _Static.analyze_all), not for being imported.
            name = alias.name if alias.asname else alias.name.split(".")[0]
            self.bind(alias.asname or name, self.static.module_ref(name), node.lineno)

    def import_from(self, node: ast.ImportFrom) -> None:
        base = self.absolute(node)
        if base is None:
            for alias in node.names:
                if alias.name != "*":
                    name = alias.asname or alias.name
                    self.bind(
                        name, _OpaqueV(f"`{name}`, from a relative import beyond the root"), node.lineno
                    )
            return
        module = self.static.module_value(base)
        for alias in node.names:
            if alias.name == "*":
                if isinstance(module, _ModuleV):
                    for key, value in list(self.static.states[base].bindings.items()):
                        if not key.startswith("_"):
                            self.bind(key, value, node.lineno)
                else:
                    self.state.stars.append(base)
                continue
            self.bind(alias.asname or alias.name, self.static.attribute(module, alias.name), node.lineno)

    def absolute(self, node: ast.ImportFrom) -> str | None:
        if not node.level:
            return node.module or ""
        package = self.state.name if self.state.is_package else self.state.name.rpartition(".")[0]
        parts = package.split(".") if package else []
        if node.level - 1 >= len(parts):
            return None  # beyond the top-level package
        parts = parts[: len(parts) - (node.level - 1)]
        if node.module:
            parts.append(node.module)
        return ".".join(parts) or None

    def assign(self, targets: Sequence[ast.expr], value: ast.expr, line: int) -> None:
        if (
            len(targets) == 1
            and isinstance(targets[0], (ast.Tuple, ast.List))
            and isinstance(value, (ast.Tuple, ast.List))
            and len(targets[0].elts) == len(value.elts)
            and not any(isinstance(e, ast.Starred) for e in (*targets[0].elts, *value.elts))
        ):
            for target, item in zip(targets[0].elts, value.elts, strict=True):
                self.assign([target], item, line)
            return
        result = self.value(value)
        for target in targets:
            if isinstance(target, ast.Name):
                self.bind(target.id, result, line)
            else:
                self.opaque_targets(target if isinstance(target, (ast.Tuple, ast.List)) else None, line)

    def class_def(self, node: ast.ClassDef) -> None:
        bases = [self.peek(b) for b in node.bases]
        if any(isinstance(b, _ClassV) for b in bases):
            value: _Value = _ClassV(node.name)
        else:
            value = _OpaqueV(f"the class `{node.name}`")
        self.scan(node)
        self.bind(node.name, value, node.lineno)

    def if_(self, node: ast.If) -> None:
        truth = self.truth(node.test)
        self.scan_exprs([node.test])
        if truth is True:
            self.run(node.body)
            return
        if truth is False:
            self.run(node.orelse)
            return
        before = dict(self.state.bindings)
        with self.under(f"under the run-time condition at line {node.lineno}"):
            self.run(node.body)
            after_body = self.state.bindings
            self.state.bindings = dict(before)
            self.run(node.orelse)
        after_else = self.state.bindings
        # Mutually exclusive branches: a name keeps the first branch's value when both bind it.
        for key, value in after_else.items():
            if key not in after_body or after_body[key] is before.get(key):
                after_body[key] = value
        self.state.bindings = after_body

    def try_(self, node: ast.stmt) -> None:
        self.run(getattr(node, "body", []))
        for handler in getattr(node, "handlers", []):
            saved = self.state.bindings
            self.state.bindings = dict(saved)
            if handler.name:
                self.bind(handler.name, _OpaqueV("an exception"), handler.lineno)
            with self.under(f"in the `except` block at line {handler.lineno}"):
                self.run(handler.body)
            handled = self.state.bindings
            self.state.bindings = saved
            for key, value in handled.items():
                saved.setdefault(key, value)
        self.run(getattr(node, "orelse", []))
        self.run(getattr(node, "finalbody", []))

    @contextmanager
    def under(self, context: str) -> Iterator[None]:
        outer = self.context
        self.context = context
        try:
            yield
        finally:
            self.context = outer

    def truth(self, test: ast.expr) -> bool | None:
        """The value of a module-level ``if`` test when it is known before running anything."""
        if isinstance(test, ast.Constant):
            return bool(test.value)
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            inner = self.truth(test.operand)
            return None if inner is None else not inner
        if isinstance(test, (ast.Name, ast.Attribute)):
            value = self.peek(test)
            if isinstance(value, _ExternalV) and value.qualname in _TYPE_CHECKING:
                return False
            return None
        if (
            isinstance(test, ast.Compare)
            and len(test.ops) == 1
            and isinstance(test.ops[0], (ast.Eq, ast.NotEq))
            and {_dunder_name(test.left), _dunder_name(test.comparators[0])} == {"__name__", "__main__"}
        ):
            # The module is imported, never run as __main__.
            return isinstance(test.ops[0], ast.NotEq)
        return None

    # expressions

    def lookup(self, name: str) -> _Value:
        found = self.state.bindings.get(name)
        if found is not None:
            return found
        for star in reversed(self.state.stars):
            qualname = f"{star}.{name}"
            if qualname in ENVIRONMENT_CLASSES or qualname in _RESOURCES:
                return _external(qualname)
        return _OpaqueV(f"`{name}`, which is not defined at module level")

    def peek(self, node: ast.expr) -> _Value:
        """A name or dotted name's value, without evaluating any call."""
        if isinstance(node, ast.Name):
            return self.lookup(node.id)
        if isinstance(node, ast.Attribute):
            return self.static.attribute(self.peek(node.value), node.attr)
        return _OpaqueV(_short(node))

    def value(self, node: ast.expr) -> _Value:
        if isinstance(node, (ast.Name, ast.Attribute)):
            if isinstance(node, ast.Attribute):
                return self.static.attribute(self.value(node.value), node.attr)
            return self.lookup(node.id)
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.NamedExpr):
            result = self.value(node.value)
            self.bind(node.target.id, result, node.lineno)
            return result
        text = self.const(node)
        if text is not None:
            return _ConstV(text)
        return _OpaqueV(f"`{_short(node)}`")

    def const(self, node: ast.expr) -> str | None:
        """A string known before running anything: literals, string constants, f-strings of them."""
        if isinstance(node, ast.Constant):
            return node.value if isinstance(node.value, str) else None
        if isinstance(node, (ast.Name, ast.Attribute)):
            value = self.peek(node)
            return value.value if isinstance(value, _ConstV) else None
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            left, right = self.const(node.left), self.const(node.right)
            return left + right if left is not None and right is not None else None
        if isinstance(node, ast.JoinedStr):
            parts: list[str] = []
            for part in node.values:
                if isinstance(part, ast.FormattedValue):
                    if part.format_spec is not None or part.conversion not in (-1, ord("s")):
                        return None
                    text = self.const(part.value)
                else:
                    text = self.const(part)
                if text is None:
                    return None
                parts.append(text)
            return "".join(parts)
        return None

    def call(self, node: ast.Call) -> _Value:
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in ("clone_with", "from_task", "add_dependency"):
            base = self.value(func.value)
            if func.attr == "clone_with" and isinstance(base, _EnvV):
                return _EnvV(self.clone(node, base.draft))
            if func.attr == "from_task" and isinstance(base, _ClassV):
                return _EnvV(self.construct(node, base, from_task=True))
            if func.attr == "add_dependency" and isinstance(base, _EnvV):
                self.seen_calls.add(id(node))
                base.draft.depends_on.extend(self.dependency(arg) for arg in node.args)
                return _OpaqueV("None")
            return _OpaqueV(f"the result of `{_describe(node)}`")
        target = self.value(func)
        if isinstance(target, _ClassV):
            return _EnvV(self.construct(node, target))
        return _OpaqueV(f"the result of `{_describe(node)}`")

    def new_draft(self, node: ast.Call, kind: str) -> _Draft:
        assert self.state.file is not None
        draft = _Draft(kind, self.state.name, self.state.file.rel, node.lineno, context=self.context)
        self.state.drafts.append(draft)
        self.seen_calls.add(id(node))
        return draft

    def construct(self, node: ast.Call, cls: _ClassV, from_task: bool = False) -> _Draft:
        draft = self.new_draft(node, cls.kind)
        kwargs = {kw.arg: kw.value for kw in node.keywords if kw.arg is not None}
        self.set_name(draft, node, kwargs)
        if "depends_on" in kwargs:
            draft.depends_on = self.dependencies(kwargs["depends_on"])
        if "include" in kwargs:
            draft.include = self.include(kwargs["include"], draft)
        if from_task:
            draft.image = None  # the tasks' image, known at run time
        elif "image" in kwargs:
            draft.image = self.image(kwargs["image"])
        if "resources" in kwargs:
            draft.resources = self.resources(kwargs["resources"])
        return draft

    def clone(self, node: ast.Call, parent: _Draft) -> _Draft:
        draft = self.new_draft(node, parent.kind)
        draft.depends_on = list(parent.depends_on)
        draft.include, draft.image, draft.resources = parent.include, parent.image, parent.resources
        kwargs = {
            kw.arg: kw.value
            for kw in node.keywords
            if kw.arg is not None and not (isinstance(kw.value, ast.Constant) and kw.value.value is None)
        }
        self.set_name(draft, node, kwargs)
        if "depends_on" in kwargs:
            draft.depends_on = self.dependencies(kwargs["depends_on"])
        if "include" in kwargs:
            draft.include = self.include(kwargs["include"], draft)
        if "image" in kwargs:
            draft.image = self.image(kwargs["image"])
        if "resources" in kwargs:
            draft.resources = self.resources(kwargs["resources"])
        return draft

    def set_name(self, draft: _Draft, node: ast.Call, kwargs: Mapping[str, ast.expr]) -> None:
        expr = kwargs.get("name")
        if expr is None and node.args and not isinstance(node.args[0], ast.Starred):
            expr = node.args[0]
        if expr is None:
            draft.name_problem = (
                f'the {draft.kind} has no `name=` static discovery can read; pass name="..." '
                f"as a string literal, {_IMPORT_HINT}"
            )
            return
        name = self.const(expr)
        if name is None:
            draft.name_problem = (
                f"the name of this {draft.kind}, `{_short(expr)}`, is only known at run time; use a string "
                f"literal or a module-level string constant, {_IMPORT_HINT}"
            )
        draft.name = name

    def dependency(self, node: ast.expr) -> _Draft | _Problem:
        if isinstance(node, ast.Starred):
            return _Problem(node.lineno, f"`{_short(node)}` in depends_on is unpacked at run time")
        value = self.value(node)
        if isinstance(value, _EnvV):
            return value.draft
        return _Problem(
            node.lineno,
            f"depends_on entry `{_short(node)}` is {_what(value)}, not an environment static discovery "
            f"can follow; refer to an environment assigned at module level in the project, {_IMPORT_HINT}",
        )

    def dependencies(self, node: ast.expr) -> list[_Draft | _Problem]:
        if isinstance(node, ast.Constant) and node.value is None:
            return []
        if isinstance(node, (ast.List, ast.Tuple)):
            return [self.dependency(e) for e in node.elts]
        return [
            _Problem(
                node.lineno,
                f"depends_on=`{_short(node)}` is not a list literal; write depends_on=[env_a, env_b], "
                + _IMPORT_HINT,
            )
        ]

    def include(self, node: ast.expr, draft: _Draft) -> tuple[str, ...]:
        items = node.elts if isinstance(node, (ast.List, ast.Tuple)) else None
        texts = [self.const(e) for e in items] if items is not None else []
        if items is None or any(t is None for t in texts):
            draft.problems.append(
                _Problem(
                    node.lineno,
                    f"include=`{_short(node)}` is not a list of string literals, so the files it adds "
                    f"are unknown; list the paths as strings, {_IMPORT_HINT}",
                )
            )
        return tuple(t for t in texts if t is not None)

    def image(self, node: ast.expr) -> str | None:
        if isinstance(node, ast.Constant) and node.value is None:
            return None
        text = self.const(node)
        return text if text is not None else _describe(node)

    def resources(self, node: ast.expr) -> dict[str, Any] | None:
        if not isinstance(node, ast.Call):
            return None
        func = self.peek(node.func)
        if not (isinstance(func, _ExternalV) and func.qualname in _RESOURCES):
            return None
        pairs = list(zip(_RESOURCE_FIELDS, node.args, strict=False)) + [
            (k.arg, k.value) for k in node.keywords
        ]
        out: dict[str, Any] = {}
        for key, expr in pairs:
            if key is None or isinstance(expr, ast.Starred):
                return None
            try:
                out[key] = ast.literal_eval(expr)
            except ValueError:
                return None
        return out

    # environments static discovery does not follow

    def scan(self, node: ast.AST, where: str | None = None) -> None:
        if not self.static.may_create(self.state) or not self.static.statement_may_create(self.state, node):
            return
        for call, context in _calls(node, where):
            self.report_call(call, context)

    def scan_exprs(self, nodes: Sequence[ast.expr]) -> None:
        for node in nodes:
            self.scan(node)

    def report_call(self, call: ast.Call, where: str | None) -> None:
        if id(call) in self.seen_calls:
            return
        func = call.func
        if isinstance(func, ast.Attribute) and func.attr == "add_dependency":
            base = self.peek(func.value)
            if isinstance(base, _EnvV):
                self.state.problems.append(
                    _Problem(
                        call.lineno,
                        f"`{_short(call)}` adds dependencies to {base.draft.label} "
                        f"{where or 'in an expression static discovery does not follow'}, so its "
                        "depends_on may be incomplete; call add_dependency at module level or pass "
                        f"depends_on=[...], {_IMPORT_HINT}",
                    )
                )
            return
        kind = self.env_call_kind(call)
        if kind is None:
            return
        name_expr = next((k.value for k in call.keywords if k.arg == "name"), None)
        if name_expr is None and call.args and not isinstance(call.args[0], ast.Starred):
            name_expr = call.args[0]
        name = self.const(name_expr) if name_expr is not None else None
        label = f"environment {name!r} ({kind})" if name else f"a {kind}"
        if where and where.startswith(_DECORATOR):
            # It exists once the module is imported, under no name: import discovery cannot name it either.
            reason = (
                f"{label} is created {where} and bound to no module-level name, so it cannot be "
                "referenced as module:attribute (flyte deploys it from its registry); assign it to a "
                "module-level variable and decorate with that"
            )
        elif where:
            reason = (
                f"{label} is created {where}; static discovery only follows environments assigned "
                f"to module-level names: assign it to a module-level variable, {_IMPORT_HINT}"
            )
        else:
            reason = (
                f"{label} is created in an expression static discovery does not follow, so it has no "
                f"module-level name; assign it to a module-level variable, {_IMPORT_HINT}"
            )
        self.state.problems.append(_Problem(call.lineno, reason))

    def env_call_kind(self, call: ast.Call) -> str | None:
        func = call.func
        if isinstance(func, ast.Attribute) and func.attr in ("clone_with", "from_task"):
            base = self.peek(func.value)
            if func.attr == "clone_with" and isinstance(base, _EnvV):
                return base.draft.kind
            if func.attr == "from_task" and isinstance(base, _ClassV):
                return base.kind
            return None
        target = self.peek(func)
        return target.kind if isinstance(target, _ClassV) else None


def _dunder_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _calls(top: ast.AST, where: str | None) -> Iterator[tuple[ast.Call, str | None]]:
    """Every call under ``top`` with the innermost function, class or comprehension around it."""
    stack: list[tuple[ast.AST, str | None]] = [(top, where)]
    while stack:  # iterative: generated modules can nest deeper than the recursion limit
        node, context = stack.pop()
        if isinstance(node, ast.Call):
            yield node, context
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            # Decorators run where the definition is, when it is made: at module level for a
            # module-level function, so an environment made there exists but is bound to no name.
            if isinstance(node, ast.ClassDef):
                outer, inner = f"the class `{node.name}`", f"in the body of the class `{node.name}`"
            else:
                outer, inner = f"`{node.name}()`", f"inside the function `{node.name}()`"
            decorators = {id(d) for d in node.decorator_list}
            body = [c for c in ast.iter_child_nodes(node) if id(c) not in decorators]
            stack.extend((child, inner) for child in reversed(body))
            made_in = context or f"{_DECORATOR} {outer}"
            stack.extend((d, made_in) for d in reversed(node.decorator_list))
            continue
        if isinstance(node, ast.Lambda):
            context = "inside a lambda"
        elif isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            context = "in a comprehension"
        stack.extend((child, context) for child in reversed(list(ast.iter_child_nodes(node))))


# --- static discovery: results -------------------------------------------------------------------


def _static(
    project: Project,
    root: Path,
    index: Mapping[str, _ModuleFile],
    selected: Sequence[_ModuleFile],
    explicit: Sequence[str] | None,
    skipped: Sequence[_ModuleFile] = (),
    dependencies: Sequence[_DependencyIndex] = (),
) -> DiscoveryResult:
    static = _Static(index, dependencies)
    if explicit is not None:
        drafts = _explicit_drafts(project, root, static, explicit)
        _bind_drafts(static)
        envs, unresolved = _finish(drafts, [])
        _check_duplicates(envs, drafts)
        return _result(envs, unresolved, "static", _foreign_dependencies(static, drafts))
    static.analyze_all(selected)
    _bind_drafts(static)
    names = {m.name for m in selected}
    states = [static.states[n] for n in static.order if n in names]
    drafts = [d for s in states for d in s.drafts]
    problems = [Unresolved(s.file.rel, p.line, p.reason) for s in states if s.file for p in s.problems]
    problems.extend(_not_imported(index, skipped))
    envs, unresolved = _finish(drafts, problems)
    _check_duplicates(envs, drafts)
    return _result(envs, unresolved, "static", _foreign_dependencies(static, drafts))


def _foreign_dependencies(static: _Static, drafts: Sequence[_Draft]) -> list[DependencyEnvironment]:
    """The environments of local dependencies that the project's environments depend on (transitively)."""
    out: list[DependencyEnvironment] = []
    seen: set[int] = set()
    stack = [d for draft in drafts for d in draft.depends_on if isinstance(d, _Draft)]
    while stack:
        dep = stack.pop()
        if id(dep) in seen:
            continue
        seen.add(id(dep))
        foreign = static.foreign.get(dep.module)
        if foreign is None:
            continue
        stack.extend(d for d in dep.depends_on if isinstance(d, _Draft))
        if dep.name is not None and dep.attribute is not None and dep.module_bound is not None:
            out.append(DependencyEnvironment(dep.name, dep.module_bound, dep.attribute, dep.kind, foreign[1]))
    return out


def _not_imported(index: Mapping[str, _ModuleFile], skipped: Sequence[_ModuleFile]) -> list[Unresolved]:
    """Environments in ``.py`` files that are not imported as modules: they are never deployed.

    A separate analysis, so that what these files do (``env.add_dependency(...)``) cannot change
    the environments of the modules that are deployed.
    """
    if not skipped:
        return []
    static = _Static(index)
    found: list[Unresolved] = []
    for module in skipped:
        state = _ModuleState(module.name, module)
        try:
            source = _read(module)
            if not static.code_names_trigger(source):
                continue
            state.source, tree = _parse(module, source)
            _ModuleRun(static, state).run(tree.body)
        except DiscoveryError as e:  # not a module: its problems are not the project's
            log.debug("not reading %s: %s", module.rel, e)
            continue
        for draft in state.drafts:
            found.append(
                Unresolved(module.rel, draft.line, f"{draft.label} is in a file that {module.skipped}")
            )
    return found


def _bind_drafts(static: _Static) -> None:
    """Give each environment the module-level name bound to it: in its own module first."""
    owners: dict[int, tuple[str, str]] = {}
    for name in sorted(static.order):  # the order import discovery looks in
        for attr, value in static.states[name].bindings.items():
            if isinstance(value, _EnvV):
                draft = value.draft
                if id(draft) not in owners or (name == draft.module and owners[id(draft)][0] != name):
                    owners[id(draft)] = (name, attr)
    for state in static.states.values():
        for draft in state.drafts:
            owner = owners.get(id(draft))
            if owner is not None:
                draft.module_bound, draft.attribute = owner


def _finish(
    drafts: Sequence[_Draft], problems: Sequence[Unresolved]
) -> tuple[list[Environment], list[Unresolved]]:
    envs: list[Environment] = []
    unresolved = list(problems)
    for draft in drafts:
        attribute = draft.attribute
        if draft.name is not None and not _VALID_NAME.match(draft.name):
            unresolved.append(
                Unresolved(
                    draft.file,
                    draft.line,
                    f"environment name {draft.name!r} is not snake_case or kebab-case, so flyte rejects it "
                    "when the module is imported; rename it (e.g. 'my_env' or 'my-env')",
                    attribute,
                )
            )
            continue
        if attribute is None or draft.module_bound is None:
            if draft.context:
                reason = (
                    f"{draft.label} is created {draft.context} and another branch binds the same name; "
                    f"static discovery reports the first branch's environment, {_IMPORT_HINT} to "
                    "get the one chosen at run time"
                )
            else:
                reason = (
                    f"{draft.label} is not bound to a module-level name (it is rebound or only used in an "
                    "expression), so it cannot be referenced as module:attribute; assign it to a "
                    "module-level variable"
                )
            unresolved.append(Unresolved(draft.file, draft.line, reason, None))
            continue
        if draft.name_problem:
            unresolved.append(Unresolved(draft.file, draft.line, draft.name_problem, attribute))
        for problem in draft.problems:
            unresolved.append(Unresolved(draft.file, problem.line, problem.reason, attribute))
        depends: list[str] = []
        for dep in draft.depends_on:
            if isinstance(dep, _Problem):
                unresolved.append(Unresolved(draft.file, dep.line, dep.reason, attribute))
            elif dep.name is None:
                where = f"{dep.module_bound}:{dep.attribute}" if dep.attribute else f"{dep.file}:{dep.line}"
                unresolved.append(
                    Unresolved(
                        draft.file,
                        draft.line,
                        f"depends_on refers to the {dep.kind} at {where}, whose name is only known at run "
                        f"time; name it with a string literal, {_IMPORT_HINT}",
                        attribute,
                    )
                )
            else:
                depends.append(dep.name)
        envs.append(
            Environment(
                name=draft.name,
                module=draft.module_bound,
                attribute=attribute,
                kind=draft.kind,
                file=draft.file,
                line=draft.line,
                depends_on=tuple(depends),
                include=draft.include,
                image=draft.image,
                resources=draft.resources,
            )
        )
    return envs, unresolved


def _check_duplicates(envs: Sequence[Environment], drafts: Sequence[_Draft] = ()) -> None:
    """Two environments with one name would overwrite each other when deployed."""
    places: dict[str, list[str]] = {}
    for env in envs:
        if env.name is not None:
            places.setdefault(env.name, []).append(f"{env.file}:{env.line} ({env.ref})")
    # Named environments without a module-level name exist at run time too (not alternatives).
    for draft in drafts:
        if draft.attribute is None and draft.context is None and draft.name and _VALID_NAME.match(draft.name):
            places.setdefault(draft.name, []).append(f"{draft.file}:{draft.line}")
    problems = [
        f"  - {name!r} at " + " and at ".join(where)
        for name, where in sorted(places.items())
        if len(where) > 1
    ]
    if problems:
        raise DiscoveryError(
            "several environments have the same name, so deploying one would replace the other:\n"
            + "\n".join(problems)
            + "\nGive each environment a unique name."
        )


def _explicit_drafts(project: Project, root: Path, static: _Static, refs: Sequence[str]) -> list[_Draft]:
    drafts: list[_Draft] = []
    problems: list[str] = []
    source = _config_source(project)
    for i, ref in enumerate(refs):
        module, attribute = _parse_ref(ref)
        if module not in static.index:
            problems.append(_missing_module(project, root, i, ref))
            continue
        state = static.analyze(module)
        file = static.index[module].rel
        value = state.bindings.get(attribute)
        where = f"`tool.flyte.environments[{i}]` = {ref!r} in {source}"
        if value is None:
            known = sorted(k for k, v in state.bindings.items() if isinstance(v, _EnvV))
            listed = f"environments bound there: {', '.join(known)}" if known else "it binds no environment"
            problems.append(
                f"{where}: {file} defines no module-level name `{attribute}` ({listed}); fix the entry"
            )
        elif not isinstance(value, _EnvV):
            line = state.lines.get(attribute, 0)
            problems.append(
                f"{where}: `{attribute}` at {file}:{line} is {_what(value)}, not a call to a flyte "
                "environment class static discovery can follow; point the entry at an environment, "
                + _IMPORT_HINT
            )
        elif all(value.draft is not d for d in drafts):
            drafts.append(value.draft)
    if problems:
        raise DiscoveryError("\n".join(problems))
    return drafts
