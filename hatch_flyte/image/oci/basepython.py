"""The base image's Python, found in its layers without running anything.

The layers are read first to last (whiteouts remove earlier entries) and only a few paths are kept:
the interpreter candidates ``{/usr/local/bin,/usr/bin,/bin}/python3`` (and ``python3.X``,
``python``), top-level directory symlinks (``/bin -> usr/bin`` on merged-/usr systems), the standard
libraries ``{/usr/local/lib,/usr/lib}/python3.X/os.py`` and ``tar``. The first candidate that exists
(``tool.flyte.image.python`` when set, as a name or an absolute path) is followed through its
symlinks to a file; the version is that file's ``python3.X`` name, confirmed by
``<prefix>/lib/python3.X/os.py`` beside it (``<prefix>`` is the file's directory's parent). When the
file is not named with its version, the one standard library under its prefix decides.
"""

from __future__ import annotations

import posixpath
import re
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hatch_flyte.errors import ImageError

_BIN_DIRS = ("/usr/local/bin", "/usr/bin", "/bin")
_INTERESTING = re.compile(
    r"^/(?:(?:usr/local/|usr/)?s?bin/(?:python[0-9.]*|tar)"
    r"|(?:usr/local/|usr/)?lib/python3\.\d+/os\.py"
    r"|[^/]+)$"
)
_STDLIB = re.compile(r"^(.*)/lib/python(3)\.(\d+)/os\.py$")


@dataclass(frozen=True)
class BasePython:
    interpreter: str  # as the venv links to it, e.g. /usr/bin/python3
    version: tuple[int, int]
    has_tar: bool


@dataclass(frozen=True)
class _Node:
    kind: str  # "file", "symlink", "dir", "link" (hard link)
    target: str = ""


def scan_layers(layers: Sequence[Path]) -> dict[str, _Node]:
    """The interesting paths of the merged filesystem of ``layers`` (tar or gzip tar files)."""
    tree: dict[str, _Node] = {}
    for layer in layers:
        try:
            with tarfile.open(layer, "r|*") as tar:
                for member in tar:
                    _apply(tree, member)
        except (tarfile.TarError, OSError, EOFError) as e:
            raise ImageError(
                f"cannot read a layer of the base image ({layer.name}: {e}); the base image is corrupt"
            ) from None
    return tree


def _apply(tree: dict[str, _Node], member: tarfile.TarInfo) -> None:
    path = (
        posixpath.normpath("/" + member.name.lstrip("./").lstrip("/"))
        if member.name not in (".", "./")
        else "/"
    )
    directory, base = posixpath.split(path)
    if base == ".wh..wh..opq":
        for key in [k for k in tree if k.startswith(directory.rstrip("/") + "/")]:
            del tree[key]
        return
    if base.startswith(".wh."):
        gone = posixpath.join(directory, base[4:])
        for key in [k for k in tree if k == gone or k.startswith(gone + "/")]:
            del tree[key]
        return
    if not _INTERESTING.match(path):
        return
    if member.issym():
        tree[path] = _Node("symlink", member.linkname)
    elif member.islnk():
        tree[path] = _Node("link", "/" + member.linkname.lstrip("./").lstrip("/"))
    elif member.isdir():
        tree[path] = _Node("dir")
    else:
        tree[path] = _Node("file")


def _follow(tree: dict[str, _Node], path: str) -> str | None:
    """``path`` with every symlinked component resolved (``/lib`` -> ``/usr/lib`` on merged-/usr);
    None for a chain of more than 40 links (a loop)."""
    for _ in range(40):
        parts = [part for part in path.strip("/").split("/") if part]
        current = ""
        for i, part in enumerate(parts):
            current = f"{current}/{part}"
            node = tree.get(current)
            if node is not None and node.kind == "symlink":
                target = (
                    node.target
                    if node.target.startswith("/")
                    else posixpath.join(posixpath.dirname(current), node.target)
                )
                path = posixpath.normpath("/".join([target, *parts[i + 1 :]]))
                break
        else:
            return current or "/"
    return None


def _resolve(tree: dict[str, _Node], path: str) -> str | None:
    """Follow symlinks (in any component) to a file; None when it does not exist."""
    real = _follow(tree, path)
    node = tree.get(real) if real is not None else None
    if node is None or node.kind not in ("file", "link"):
        return None
    return node.target if node.kind == "link" else real


def find_python(layers: Sequence[Path], python: str | None, where: str) -> BasePython:
    tree = scan_layers(layers)
    if python and python.startswith("/"):
        candidates = [python]
    else:
        names = [python] if python else ["python3", "python"]
        candidates = [f"{d}/{n}" for n in names for d in _BIN_DIRS]
    stdlibs: dict[str, list[tuple[int, int]]] = {}
    for key in tree:
        m = _STDLIB.match(key)
        if m and _resolve(tree, key):
            stdlibs.setdefault(_resolve_dir(tree, m.group(1)), []).append((int(m.group(2)), int(m.group(3))))
    has_tar = any(_resolve(tree, f"{d}/tar") for d in _BIN_DIRS)
    for candidate in candidates:
        real = _resolve(tree, candidate)
        if real is None:
            continue
        prefix = _resolve_dir(tree, posixpath.dirname(posixpath.dirname(real)))
        found = stdlibs.get(prefix, [])
        named = re.fullmatch(r"python(\d)\.(\d+)", posixpath.basename(real))
        if named and (int(named.group(1)), int(named.group(2))) in found:
            return BasePython(candidate, (int(named.group(1)), int(named.group(2))), has_tar)
        if not named and len(found) == 1:
            return BasePython(candidate, found[0], has_tar)
    tried = ", ".join(candidates)
    raise ImageError(
        f"no Python interpreter with its standard library found in the base image {where} (looked for "
        f"{tried} and <prefix>/lib/python3.X/os.py); set `tool.flyte.image.python` to the interpreter's "
        "absolute path or choose a base image with Python"
    )


def _resolve_dir(tree: dict[str, _Node], path: str) -> str:
    """``path`` with symlinked components resolved (``/lib`` -> ``/usr/lib`` on merged-/usr)."""
    return _follow(tree, path) or path
