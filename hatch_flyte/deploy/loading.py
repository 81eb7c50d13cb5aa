"""Load the manifest's environments from what was built, not from the working tree.

The bundle (or, without one, the wheel) is unpacked into a temporary directory, which goes first
on ``sys.path``; each environment is imported by its manifest ``module:attribute``. Modules of the
same top-level names that were already imported are set aside for the duration and put back after,
so that a deploy in a long-lived process neither sees stale code nor leaves its own behind.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from hatch_flyte.deploy.target import EnvironmentSpec, Target
from hatch_flyte.errors import DeployError


@dataclass(frozen=True)
class LoadedEnvironment:
    spec: EnvironmentSpec
    obj: Any


@contextlib.contextmanager
def code_root(target: Target) -> Iterator[Path]:
    """A temporary directory holding the build's code: the bundle's files, else the wheel's."""
    with tempfile.TemporaryDirectory(prefix="hatch-flyte-deploy-") as scratch:
        root = Path(scratch, "root")
        root.mkdir()
        if target.bundle is not None:
            try:
                with tarfile.open(target.bundle.path, "r:gz") as tf:
                    _extract_tar(tf, root)
            except (OSError, tarfile.TarError) as e:
                raise DeployError(f"cannot unpack {target.bundle.path}: {e}; rebuild it") from None
        elif target.wheel is not None:
            try:
                with zipfile.ZipFile(target.wheel.path) as zf:
                    zf.extractall(root)
            except (OSError, zipfile.BadZipFile) as e:
                raise DeployError(f"cannot unpack {target.wheel.path}: {e}; rebuild it") from None
        else:
            raise DeployError(
                f"{target.manifest_path} lists neither a bundle nor a wheel to load the environments "
                "from; build with the bundle or wheel target"
            )
        yield root


def _extract_tar(tf: tarfile.TarFile, root: Path) -> None:
    if hasattr(tarfile, "data_filter"):
        tf.extractall(root, filter="data")
        return
    # Pythons without extraction filters (3.10 before 3.10.12): a bundle holds regular files only.
    for member in tf.getmembers():
        if not member.isfile() or Path(member.name).is_absolute() or ".." in Path(member.name).parts:
            raise tarfile.TarError(f"unexpected member {member.name!r}")
    tf.extractall(root)


def _top_level_names(root: Path) -> set[str]:
    return {p.name if p.is_dir() else p.stem for p in root.iterdir() if p.is_dir() or p.suffix == ".py"}


def _under(module: ModuleType, root: Path) -> bool:
    file = getattr(module, "__file__", None)
    if not isinstance(file, str):
        paths = list(getattr(module, "__path__", []) or [])
        return bool(paths) and all(Path(p).is_relative_to(root) for p in paths)
    return Path(file).is_relative_to(root)


@contextlib.contextmanager
def environments(root: Path, specs: tuple[EnvironmentSpec, ...], manifest: Path) -> Iterator[list[Any]]:
    """Import every environment of ``specs`` from ``root``; yields the environment objects."""
    top = _top_level_names(root)
    aside = {n: m for n, m in sys.modules.items() if n.split(".", 1)[0] in top}
    for name in aside:
        del sys.modules[name]
    entry = str(root)
    sys.path.insert(0, entry)
    importlib.invalidate_caches()
    try:
        yield [_load(spec, root, manifest) for spec in specs]
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)
        for name, module in list(sys.modules.items()):
            if name.split(".", 1)[0] in top or (module is not None and _under(module, root)):
                del sys.modules[name]
        sys.modules.update(aside)
        importlib.invalidate_caches()


def _load(spec: EnvironmentSpec, root: Path, manifest: Path) -> Any:
    label = f"environment {spec.name or '?'!r} ({spec.ref}, listed in {manifest})"
    try:
        module = importlib.import_module(spec.module)
    except Exception as e:
        raise DeployError(
            f"{label} no longer loads: importing {spec.module} from the build failed with "
            f"{type(e).__name__}: {e}. Install what it imports, or rebuild if the code moved"
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
