"""Human-readable reports shared by the CLI and the hatch plugin: sizes and file trees."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Iterator
from pathlib import Path


def human_size(n: int) -> str:
    """``1536`` -> ``1.5 KiB``."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def render_tree(root: Path | str, arcnames: Iterable[str]) -> str:
    """The files as an indented tree under ``root``, directories before their contents."""
    tree: dict[str, dict] = {}  # type: ignore[type-arg]
    for name in arcnames:
        node = tree
        for part in name.split("/"):
            node = node.setdefault(part, {})
    lines = [f"{root}/"]

    def walk(node: dict, prefix: str) -> None:  # type: ignore[type-arg]
        items = sorted(node.items(), key=lambda kv: (not kv[1], kv[0]))
        for i, (name, child) in enumerate(items):
            last = i == len(items) - 1
            lines.append(f"{prefix}{'└── ' if last else '├── '}{name}{'/' if child else ''}")
            if child:
                walk(child, prefix + ("    " if last else "│   "))

    walk(tree, "")
    return "\n".join(lines)


#: Progress of slow steps (image builds): shown at the default verbosity by the CLI and hatch,
#: one line per finished step with its time, the way ``docker build`` reports steps.
progress = logging.getLogger("hatch_flyte.progress")


@contextlib.contextmanager
def step(what: str) -> Iterator[None]:
    """Log ``what (1.2s)`` on :data:`progress` when the step finishes (nothing when it fails: the
    error says what happened)."""
    started = time.perf_counter()
    yield
    progress.info("%s (%.1fs)", what, time.perf_counter() - started)
