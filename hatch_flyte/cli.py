"""The ``hatch-flyte`` command: inspect and build Flyte artifacts outside hatch.

Exit status: 0 on success, 1 on a user error (the message says what and how to fix it), 2 on a
usage error.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hatch_flyte import __version__
from hatch_flyte.bundle import Bundle, BundleOptions, build
from hatch_flyte.config import COMPRESSIONS, as_compression
from hatch_flyte.errors import HatchFlyteError
from hatch_flyte.project import load_project
from hatch_flyte.report import human_size, render_tree

log = logging.getLogger("hatch_flyte")


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hatch-flyte", description="Package Flyte 2 code: code bundles, wheels, images."
    )
    parser.add_argument("--version", action="version", version=f"hatch-flyte {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    b = sub.add_parser("bundle", help="write the fast-registration code bundle (fast<digest>.tar.gz)")
    b.add_argument(
        "path", nargs="?", default=".", help="project directory (its [tool.flyte] applies) or any directory"
    )
    b.add_argument(
        "--root-dir", help="bundle root (default: tool.flyte.root-dir, src/ in a src layout, else PATH)"
    )
    b.add_argument("-o", "--output", dest="outdir", help="output directory (default: PATH/dist)")
    b.add_argument(
        "--compression", choices=COMPRESSIONS, help="fast (default) or compatible (flyte's exact .tar.gz)"
    )
    b.add_argument(
        "--strict", action="store_true", help="fail when files that look like secrets would be bundled"
    )
    b.add_argument("--no-cache", action="store_true", help="read every file even if the tree looks unchanged")
    b.add_argument("--show-files", action="store_true", help="print the bundled files as a tree")
    b.add_argument("--json", action="store_true", help="print one JSON object describing the bundle")
    b.set_defaults(func=_cmd_bundle)
    return parser


def _bundle_json(bundle: Bundle, root: Path) -> dict[str, Any]:
    return {
        "path": str(bundle.path),
        "name": bundle.name,
        "digest": bundle.digest,
        "files": list(bundle.files),
        "size": bundle.size,
        "tar_size": bundle.tar_size,
        "compression": bundle.compression,
        "reused": bundle.reused,
        "root": str(root),
        "secrets": list(bundle.secrets),
    }


def _cmd_bundle(args: argparse.Namespace) -> int:
    project = load_project(Path(args.path), root_dir=args.root_dir)
    options = BundleOptions.for_project(
        project,
        compression=as_compression(args.compression) if args.compression else None,
        secrets="error" if args.strict else None,
    )
    if args.no_cache:
        options = BundleOptions(**{**options.__dict__, "use_cache": False})
    outdir = Path(args.outdir) if args.outdir else project.directory / "dist"
    bundle = build(project.root_dir, outdir, options)
    if args.json:
        _out(json.dumps(_bundle_json(bundle, project.root_dir), indent=2, sort_keys=True))
        return 0
    if args.show_files:
        _out(render_tree(project.root_dir, bundle.files))
    verb = "Reused" if bundle.reused else "Wrote"
    _out(
        f"{verb} {bundle.path} ({len(bundle.files)} files, {human_size(bundle.size)}, "
        f"{human_size(bundle.tar_size)} uncompressed, {bundle.compression}) in {bundle.seconds:.2f}s"
    )
    return 0


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hatch-flyte`` console script."""
    args = _parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    log.addHandler(handler)
    log.setLevel(logging.WARNING - 10 * min(args.verbose, 2))
    try:
        return int(args.func(args))
    except HatchFlyteError as e:
        sys.stderr.write(f"error: {e}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    finally:
        log.removeHandler(handler)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
