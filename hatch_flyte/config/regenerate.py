"""The command behind every file generated from the settings model (the README's reference tables,
the JSON Schema): ``--write`` brings the file up to date, ``--check`` exits 1 while it is stale."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from hatch_flyte.atomic import write_bytes_atomic


def main(
    argv: Sequence[str] | None,
    *,
    description: str,
    render: Callable[[str], str],
    stale: str,
    default: Path | None = None,
) -> int:
    """Run the command: ``render`` makes the file's new text from its current one (``""`` when it
    does not exist yet, allowed only with a ``default`` path); ``stale`` ends the ``--check`` message."""
    parser = argparse.ArgumentParser(description=description)
    if default is None:
        parser.add_argument("path", type=Path)
    else:
        parser.add_argument("path", type=Path, nargs="?", default=default, help="default: the packaged file")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="rewrite the file")
    mode.add_argument("--check", action="store_true", help="exit 1 when the file differs from the model")
    args = parser.parse_args(argv)
    path: Path = args.path
    try:
        old: str | None = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if default is None:
            parser.error(f"{path}: no such file")
        old = None
    new = render(old or "")
    if args.check:
        if new != old:
            sys.stderr.write(f"{path}: {stale}; run with --write\n")
            return 1
        return 0
    if new != old:
        write_bytes_atomic(path, new.encode("utf-8"))
    return 0
