"""The import-discovery probe, run by :mod:`hatch_flyte.discovery` in the project's interpreter.

It is sent as ``python -c <this file's text>``, so it must use the standard library only and
work on every Python flyte supports (3.10+); it never imports hatch_flyte. It reads one JSON
request on stdin::

    {"root": "/abs/root", "modules": [["pkg.mod", "/abs/root/pkg/mod.py"], ...],
     "files": ["/abs/root/pkg/mod.py", ...], "refs": ["pkg.mod:attr", ...] or null,
     "loaded": false}

imports every module of ``modules`` (or, with ``refs``, the module of each reference) the way
``flyte deploy --recursive`` does, with the root as ``sys.path[0]``, then reads flyte's registry
of loaded environments (``flyte._environment._ENVIRONMENT_REGISTRY``) and writes one JSON
document to the original standard output. Whatever the imported code prints goes to standard
error, so it cannot corrupt the answer.

With ``"loaded": true`` it answers what flyte's ``copy_style="loaded_modules"`` bundle would hold
instead: it imports ``modules`` the way ``flyte deploy`` does (the root appended to ``sys.path``,
after site-packages) and lists the files of ``sys.modules`` that flyte keeps (see
:func:`_loaded_files`), plus the project modules that an installed copy shadowed.

While importing, the registry is wrapped so that each environment's creation site (the innermost
frame in a project file) is recorded: flyte itself only keeps the file (``_declaring_file``).
"""

from __future__ import annotations

import importlib
import json
import os
import site
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

_ENV_FIELDS_RESOURCES = ("cpu", "memory", "gpu", "disk", "shm")


def _last_line(exc: BaseException) -> str:
    lines = traceback.format_exception_only(type(exc), exc)
    return lines[-1].strip() if lines else type(exc).__name__


def _failure(name: str, path: str, exc: BaseException, mine: Callable[[str], bool]) -> dict[str, Any]:
    """Where an import failed: the line in the module itself and the deepest project frame."""
    line = 0
    where = None
    for frame in traceback.extract_tb(exc.__traceback__):
        filename = os.path.abspath(frame.filename)
        if filename == path:
            line = frame.lineno or 0
        if mine(filename):
            where = [filename, frame.lineno or 0]
    if isinstance(exc, SyntaxError) and exc.filename:
        filename = os.path.abspath(exc.filename)
        if mine(filename):
            where = [filename, exc.lineno or 0]
            if filename == path:
                line = exc.lineno or 0
    return {"module": name, "file": path, "line": line, "where": where, "error": _last_line(exc)}


def _image(image: Any) -> str | None:
    if image is None or isinstance(image, str):
        return image
    parts = []
    for key in ("name", "base_image", "dockerfile"):
        value = getattr(image, key, None)
        if value:
            parts.append(f"{key}={str(value)!r}")
    layers = getattr(image, "_layers", None)
    if layers:
        parts.append(f"layers={len(layers)}")
    return f"{type(image).__name__}({', '.join(parts)})"


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


def _resources(resources: Any) -> dict[str, Any] | None:
    if resources is None:
        return None
    out = {}
    for key in _ENV_FIELDS_RESOURCES:
        value = getattr(resources, key, None)
        if value is not None:
            out[key] = _jsonable(value)
    return out


def _site(files: set[str]) -> list[Any] | None:
    """File and line of the innermost project frame on the current stack."""
    frame = sys._getframe(2)
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename in files or os.path.abspath(filename) in files:
            return [os.path.abspath(filename), frame.f_lineno or 0]
        frame = frame.f_back  # type: ignore[assignment]
    return None


def _resolved(path: str) -> Path | None:
    try:
        return Path(path).resolve()
    except OSError:
        return None


def _under(path: str, directory: Path) -> bool:
    """flyte's test (``_file_is_in_directory``): both sides resolved, unresolvable is outside."""
    resolved = _resolved(path)
    return resolved is not None and resolved.is_relative_to(directory)


def _installed_directories() -> list[Path]:
    """flyte's directories of installed code (``_build_invalid_directories``), resolved."""
    import flyte

    found = [os.path.dirname(flyte.__file__), sys.prefix, sys.base_prefix, site.getusersitepackages()]
    found.extend(getattr(site, "getsitepackages", list)())
    out = []
    for directory in found:
        try:
            out.append(Path(directory).resolve())
        except OSError:
            continue
    return out


def _module_file(module: Any) -> Any:
    """``module.__file__`` as flyte reads it: a lazy module that was never imported has none."""
    if "LazyModule" in object.__getattribute__(module, "__class__").__name__:
        name = object.__getattribute__(module, "__name__")
        real = sys.modules.get(name)
        if real is None or type(real).__name__ == "_LazyModule":
            return None
    try:
        return module.__file__
    except Exception:
        return None


def _loaded_files(root: Path) -> list[str]:
    """The files flyte's ``loaded_modules`` bundle takes from ``sys.modules`` (flyte 2.12.1,
    ``_code_bundle/_utils.py`` ``list_imported_modules_as_files``): each module's ``__file__`` as
    it is, kept when it is a string, not under flyte's package, ``sys.prefix``,
    ``sys.base_prefix`` or a site-packages directory, under the root, and a regular file."""
    installed = _installed_directories()
    files = set()
    for module in list(sys.modules.values()):
        path = _module_file(module)
        if not isinstance(path, str):
            continue
        resolved = _resolved(path)
        if resolved is None or not resolved.is_relative_to(root):
            continue
        if any(resolved.is_relative_to(d) for d in installed):
            continue
        if os.path.isfile(path):
            files.add(path)
    return sorted(files)


def _shadowed(root: Path, targets: list[str]) -> list[list[str]]:
    """Project modules imported from outside the root although the root holds them."""
    tops = {name.partition(".")[0] for name in targets}
    out = []
    for name, module in sorted(sys.modules.items(), key=lambda item: item[0]):
        if module is None or name.partition(".")[0] not in tops:
            continue
        path = _module_file(module)
        if not isinstance(path, str) or _under(path, root):
            continue
        base = root.joinpath(*name.split("."))
        own = [c for c in (base / "__init__.py", base.with_suffix(".py")) if c.is_file()]
        if own:
            out.append([name, os.path.abspath(path), str(own[0])])
    return out


def _probe_loaded(request: dict[str, Any]) -> dict[str, Any]:
    """Import ``modules`` as ``flyte deploy`` does and list what its loaded_modules bundle holds."""
    root = Path(request["root"])
    # flyte.init() appends the root: an installed copy of a project package wins over it.
    if sys.path and sys.path[0] in ("", ".", os.getcwd()):
        del sys.path[0]
    sys.path.append(str(root))
    try:
        import flyte
    except Exception as e:
        return {"error": "flyte", "message": _last_line(e)}
    paths = {name: os.path.abspath(path) for name, path in request["modules"]}
    failures = []
    for name in paths:
        try:
            importlib.import_module(name)
        except (Exception, SystemExit) as e:
            failures.append(_failure(name, paths[name], e, lambda f: os.path.isfile(f) and _under(f, root)))
    return {
        "flyte": getattr(flyte, "__version__", None),
        "failures": failures,
        "loaded": _loaded_files(root),
        "shadowed": _shadowed(root, list(paths)),
    }


def _probe(request: dict[str, Any]) -> dict[str, Any]:
    if request.get("loaded"):
        return _probe_loaded(request)
    root = request["root"]
    files = {os.path.abspath(f) for f in request["files"]}
    if sys.path and sys.path[0] in ("", ".", os.getcwd()):
        sys.path[0] = root
    else:
        sys.path.insert(0, root)
    # Local path dependencies (workspace members) as an installed copy would provide them.
    sys.path.extend(p for p in request.get("paths", []) if p not in sys.path)
    try:
        import flyte
    except Exception as e:
        return {"error": "flyte", "message": _last_line(e)}
    base = getattr(flyte, "Environment", None)
    if base is None:
        return {"error": "flyte", "message": "flyte has no `Environment` class (unsupported flyte version)"}

    sites: dict[int, Any] = {}
    registry_module: Any = None
    try:
        import flyte._environment as registry_module

        class _Recording(list):  # type: ignore[type-arg]
            def append(self, env: Any) -> None:
                sites[id(env)] = _site(files)
                super().append(env)

        registry_module._ENVIRONMENT_REGISTRY = _Recording(registry_module._ENVIRONMENT_REGISTRY)
    except Exception:  # another flyte layout: environments are then found by scanning modules
        registry_module = None

    failures = []
    imported = []
    refs = request.get("refs")
    if refs is not None:
        targets = list(dict.fromkeys(ref.partition(":")[0] for ref in refs))
        paths = {}
    else:
        targets = [name for name, _ in request["modules"]]
        paths = {name: os.path.abspath(path) for name, path in request["modules"]}
    ref_errors: dict[str, str] = {}
    for name in targets:
        try:
            importlib.import_module(name)
            imported.append(name)
        except (Exception, SystemExit) as e:
            if refs is not None:
                ref_errors[name] = _last_line(e)
            else:
                failures.append(_failure(name, paths[name], e, files.__contains__))

    envs: list[Any] = []
    if registry_module is not None:
        envs.extend(getattr(registry_module, "_ENVIRONMENT_REGISTRY", []))
    # Bindings: every module-level name of the imported project modules bound to an environment.
    bindings: dict[int, list[tuple[str, str, str | None]]] = {}
    for name in sorted(n for n, m in list(sys.modules.items()) if m is not None):
        module = sys.modules.get(name)
        module_file = getattr(module, "__file__", None)
        if not module_file or os.path.abspath(module_file) not in files:
            continue
        for attr, value in list(vars(module).items()):
            if isinstance(value, base):
                bindings.setdefault(id(value), []).append((name, attr, os.path.abspath(module_file)))
                if all(e is not value for e in envs):
                    envs.append(value)

    described = []
    for env in envs:
        site = sites.get(id(env))
        if site is None:
            declared = getattr(env, "_declaring_file", None)
            site = [os.path.abspath(declared), 0] if declared else None
        found = bindings.get(id(env), [])
        chosen = next((b for b in found if site is not None and b[2] == site[0]), found[0] if found else None)
        described.append(
            {
                "name": getattr(env, "name", None),
                "kind": type(env).__name__,
                "module": chosen[0] if chosen else None,
                "attribute": chosen[1] if chosen else None,
                "module_file": chosen[2] if chosen else None,
                "file": site[0] if site else None,
                "line": site[1] if site else 0,
                "depends_on": [getattr(d, "name", None) for d in getattr(env, "depends_on", None) or []],
                "include": [str(i) for i in getattr(env, "include", None) or ()],
                "image": _image(getattr(env, "image", None)),
                "resources": _resources(getattr(env, "resources", None)),
            }
        )

    answer: dict[str, Any] = {
        "flyte": getattr(flyte, "__version__", None),
        "environments": described,
        "failures": failures,
        "imported": imported,
    }
    if refs is not None:
        resolved: dict[str, Any] = {}
        for ref in refs:
            module_name, _, attr = ref.partition(":")
            if module_name in ref_errors:
                resolved[ref] = {"error": f"importing `{module_name}` failed: {ref_errors[module_name]}"}
                continue
            missing = object()
            value = getattr(sys.modules[module_name], attr, missing)
            if value is missing:
                resolved[ref] = {"error": f"module `{module_name}` has no attribute `{attr}`"}
            elif not isinstance(value, base):
                cls = f"{type(value).__module__}.{type(value).__qualname__}"
                resolved[ref] = {"error": f"`{ref}` is a {cls}, not a flyte environment (flyte.Environment)"}
            else:
                resolved[ref] = {"env": next(i for i, e in enumerate(envs) if e is value)}
        answer["refs"] = resolved
    return answer


def main() -> None:
    request = json.loads(sys.stdin.read())
    # Keep the real stdout for the answer; everything else written to it goes to stderr.
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    answer = _probe(request)
    out.write(json.dumps(answer, default=str))
    out.flush()
    sys.stderr.flush()
    # Skip atexit hooks and non-daemon threads the imported code may have started.
    os._exit(0)


if __name__ == "__main__":
    main()
