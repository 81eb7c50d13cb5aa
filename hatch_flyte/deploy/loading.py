"""Load the manifest's environments from what was built, not from the working tree.

The bundle (or, without one, the wheel) is read once. Its Python sources go, one after the
other, into a single spool file and are served from there by a finder placed first on
``sys.meta_path`` (the bundle shadows installed copies, as it does at run time where flyte puts
the bundle first on ``sys.path``); everything else (data files read at import time, extension
modules) is written to a temporary directory whose layout is the bundle's. Each module's
``__file__`` is its path in that directory, so flyte derives the same module names as from an
extracted bundle. Creating thousands of source files only to import two of them would cost more
than the rest of the deploy, and keeping them in memory would double its footprint.

Each environment is imported by its manifest ``module:attribute``. Modules of the same top-level
names that were already imported are set aside for the duration and put back after, so that a
deploy in a long-lived process neither sees stale code nor leaves its own behind.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import itertools
import os
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import IO, Any

from hatch_flyte.deploy.target import EnvironmentSpec, Target
from hatch_flyte.discovery.importers import importers, module_name
from hatch_flyte.errors import DeployError

try:
    from isal import igzip as _gzip
except ImportError:  # pragma: no cover - isal is a dependency; kept working without it
    import gzip as _gzip  # type: ignore[no-redef]


@dataclass
class CodeRoot:
    """The build's code: ``.py`` sources in ``spool`` (name -> offset, size), other files under
    ``path``."""

    path: Path
    spool: IO[bytes]
    sources: dict[str, tuple[int, int]] = field(default_factory=dict)
    made: set[Path] = field(default_factory=set)

    def source(self, name: str) -> bytes | None:
        where = self.sources.get(name)
        if where is None:
            return None
        return os.pread(self.spool.fileno(), where[1], where[0])


@contextlib.contextmanager
def code_root(target: Target) -> Iterator[CodeRoot]:
    """The build's code: the bundle's files, else the wheel's.

    When the build output lies in the project it was built from, the temporary directory stands
    where the bundle root stands in the project: around it, links to the project's other files and
    to the project's neighbours. Paths an environment computes from ``__file__`` to files outside
    the bundle root (an image's ``with_uv_project(pyproject_file=...)``, ``uv.lock``,
    ``with_source_folder("../lib")``) then name the project's files, as under ``flyte deploy``,
    while everything under the root is still the build's alone.
    """
    with (
        tempfile.TemporaryDirectory(prefix="hatch-flyte-deploy-") as scratch,
        open(Path(scratch, "sources"), "w+b") as spool,
    ):
        source = target.source_root()
        path = _surroundings(Path(scratch, "tree"), *source) if source else Path(scratch, "root")
        root = CodeRoot(path, spool)
        root.path.mkdir(parents=True, exist_ok=True)
        if target.bundle is not None:
            try:
                with _gzip.open(target.bundle.path, "rb") as raw:  # type: ignore[no-untyped-call]
                    for name, content in _tar_files(raw):
                        _add(root, name, content)
            except (OSError, EOFError, ValueError, tarfile.TarError) as e:
                raise DeployError(f"cannot read {target.bundle.path}: {e}; rebuild it") from None
        elif target.wheel is not None:
            try:
                with zipfile.ZipFile(target.wheel.path) as zf:
                    for info in zf.infolist():
                        if not info.is_dir():
                            with zf.open(info) as f:
                                _add(root, info.filename, f)
            except (OSError, zipfile.BadZipFile) as e:
                raise DeployError(f"cannot read {target.wheel.path}: {e}; rebuild it") from None
        else:
            raise DeployError(
                f"{target.manifest_path} lists neither a bundle nor a wheel to load the environments "
                "from; build with the bundle or wheel target"
            )
        _namespace_directories(root)
        spool.flush()
        yield root


#: A project's parent directory with more entries than this (a home directory) is not mirrored.
_MAX_NEIGHBOURS = 1000


def _surroundings(base: Path, project: Path, root: Path) -> Path:
    """Under ``base``, the directories from ``project``'s parent down to ``root``, each holding
    links to its other entries in the real tree; returns the (empty) stand-in for ``root``."""
    top = project.parent
    chain = [top, *reversed([p for p in root.parents if top in p.parents]), root]
    for directory, below in itertools.pairwise(chain):
        mirror = base / directory.relative_to(top)
        mirror.mkdir(parents=True, exist_ok=True)
        try:
            entries = [e for e in os.scandir(directory) if e.name != below.name]
        except OSError:
            continue
        if directory == top and len(entries) > _MAX_NEIGHBOURS:
            continue
        for entry in entries:
            with contextlib.suppress(OSError):
                (mirror / entry.name).symlink_to(entry.path)
    return base / root.relative_to(top)


_BLOCK = 512


def _tar_files(f: IO[bytes]) -> Iterator[tuple[str, bytes]]:
    """``(name, content)`` of each regular file of a POSIX (pax or ustar) tar stream.

    Code bundles hold regular files only (flyte and hatch-flyte dereference links), one pax
    header each; this reads them several times faster than :mod:`tarfile`, whose per-member
    overhead dominates a bundle of thousands of small sources.
    """
    pax: dict[bytes, bytes] = {}
    while True:
        header = f.read(_BLOCK)
        if len(header) < _BLOCK or header == bytes(_BLOCK):
            return
        # The checksum counts its own eight bytes as spaces.
        if sum(header[:148]) + 256 + sum(header[156:]) != int(header[148:156].strip(b"\0 ") or b"0", 8):
            raise tarfile.TarError("bad tar header checksum")
        # Decimal in a pax record, octal in the header.
        size = int(pax[b"size"]) if b"size" in pax else int(header[124:136].strip(b"\0 ") or b"0", 8)
        data = f.read(size)
        if len(data) < size:
            raise EOFError("the tar stream ends inside a member")
        f.read(-size % _BLOCK)
        kind = header[156:157]
        if kind == b"x":
            pax = _pax_records(data)
            continue
        if kind not in (b"0", b"\0"):
            raise tarfile.TarError(f"member of type {kind!r} (only regular files belong in a bundle)")
        name = pax.get(b"path")
        if name is None:
            name = header[0:100].split(b"\0", 1)[0]
            prefix = header[345:500].split(b"\0", 1)[0]
            name = prefix + b"/" + name if prefix else name
        pax = {}
        yield name.decode("utf-8"), data


def _pax_records(data: bytes) -> dict[bytes, bytes]:
    out = {}
    pos = 0
    while pos < len(data) and data[pos : pos + 1] != b"\0":
        space = data.index(b" ", pos)
        length = int(data[pos:space])
        key, _, value = data[space + 1 : pos + length - 1].partition(b"=")
        out[key] = value
        pos += length
    return out


def _add(root: CodeRoot, name: str, data: IO[bytes] | bytes | None) -> None:
    rel = PurePosixPath(name)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise tarfile.TarError(f"unexpected member name {name!r}")
    content = data if isinstance(data, bytes) else (data.read() if data is not None else b"")
    if rel.suffix == ".py":
        root.sources[rel.as_posix()] = (root.spool.tell(), len(content))
        root.spool.write(content)
        return
    target = root.path.joinpath(*rel.parts)
    _mkdir(root, target.parent)
    target.write_bytes(content)


def _mkdir(root: CodeRoot, directory: Path) -> None:
    if directory not in root.made:
        directory.mkdir(parents=True, exist_ok=True)
        root.made.add(directory)


def _namespace_directories(root: CodeRoot) -> None:
    """Directories of modules that have no ``__init__.py``: the usual finders make namespace
    packages of them (with any other portions on ``sys.path``), as at run time."""
    packages = {PurePosixPath(n).parent for n in root.sources if n.endswith("/__init__.py")}
    for name in root.sources:
        for parent in PurePosixPath(name).parents:
            if parent.parts and parent not in packages:
                _mkdir(root, root.path.joinpath(*parent.parts))


class _SpooledLoader(importlib.abc.SourceLoader):
    def __init__(self, path: str, source: bytes) -> None:
        self.path = path
        self.source = source

    def get_filename(self, fullname: str) -> str:
        return self.path

    def get_data(self, path: str) -> bytes:
        if path == self.path:
            return self.source
        with open(path, "rb") as f:
            return f.read()


class _BundleFinder(importlib.abc.MetaPathFinder):
    """Finds the bundle's modules (plain and package ``__init__``) in the spool."""

    def __init__(self, root: CodeRoot) -> None:
        self.root = root

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        rel = fullname.replace(".", "/")
        for name, package in ((f"{rel}/__init__.py", True), (f"{rel}.py", False)):
            source = self.root.source(name)
            if source is not None:
                origin = str(self.root.path / name)
                return importlib.util.spec_from_file_location(
                    fullname,
                    origin,
                    loader=_SpooledLoader(origin, source),
                    submodule_search_locations=[str(self.root.path / rel)] if package else None,
                )
        return None


def _top_level_names(root: CodeRoot) -> set[str]:
    names = {PurePosixPath(n).parts[0] for n in root.sources}
    return {n[:-3] if n.endswith(".py") else n for n in names} | {p.name for p in root.path.iterdir()}


def _under(module: ModuleType, root: Path) -> bool:
    file = getattr(module, "__file__", None)
    if not isinstance(file, str):
        paths = list(getattr(module, "__path__", []) or [])
        return bool(paths) and all(Path(p).is_relative_to(root) for p in paths)
    return Path(file).is_relative_to(root)


@contextlib.contextmanager
def environments(root: CodeRoot, specs: tuple[EnvironmentSpec, ...], manifest: Path) -> Iterator[list[Any]]:
    """Import every environment of ``specs`` from ``root``; yields the environment objects."""
    top = _top_level_names(root)
    aside = {n: m for n, m in sys.modules.items() if n.split(".", 1)[0] in top}
    for name in aside:
        del sys.modules[name]
    finder = _BundleFinder(root)
    entry = str(root.path)
    sys.meta_path.insert(0, finder)
    sys.path.insert(0, entry)  # extension modules and namespace packages, through the usual finders
    importlib.invalidate_caches()
    try:
        loaded = [_load(spec, root.path, manifest) for spec in specs]
        sources = {module_name(n): n for n in root.sources}
        environments_at = [(spec.module, spec.attribute) for spec in specs]
        for name, importer in importers(sources, root.source, environments_at):
            _load_tasks(name, importer, manifest)
        yield loaded
    finally:
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(finder)
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)
        for name, module in list(sys.modules.items()):
            if name.split(".", 1)[0] in top or (module is not None and _under(module, root.path)):
                del sys.modules[name]
        sys.modules.update(aside)
        importlib.invalidate_caches()


def _load_tasks(module: str, imports: str, manifest: Path) -> None:
    try:
        importlib.import_module(module)
    except Exception as e:
        raise DeployError(
            f"{module} imports {imports} (an environment listed in {manifest}, its module, or a module "
            f"that imports one), so it may define tasks of that environment, and it does not load from "
            f"the build: {type(e).__name__}: {e}. "
            "Install the packages it imports here, as flyte's `deploy --recursive` needs them too"
        ) from None


def _load(spec: EnvironmentSpec, root: Path, manifest: Path) -> Any:
    label = f"environment {spec.name or '?'!r} ({spec.ref}, listed in {manifest})"
    try:
        module = importlib.import_module(spec.module)
    except Exception as e:
        raise DeployError(
            f"{label} does not load from the build: importing {spec.module} failed with "
            f"{type(e).__name__}: {e}. Only the build's own files are used (as in the pod): install "
            "the packages it imports here, and have the bundle hold the files it reads "
            "(`[tool.flyte.bundle] include`)"
        ) from None
    if not _under(module, root):
        raise DeployError(
            f"{label}: {spec.module} was imported from {getattr(module, '__file__', '?')}, not from the "
            "build; remove that copy from sys.path (or PYTHONPATH) and deploy again"
        )
    try:
        obj = getattr(module, spec.attribute)
    except AttributeError:
        raise DeployError(
            f"{label} no longer loads: {spec.module} has no attribute {spec.attribute!r}; rebuild"
        ) from None
    name = getattr(obj, "name", None)
    if spec.name is not None and name != spec.name:
        raise DeployError(
            f"{label} loads with the name {name!r} now; the build saw {spec.name!r}. "
            "Set what the name depends on (environment variables) as it was at build time, or rebuild"
        )
    return obj
