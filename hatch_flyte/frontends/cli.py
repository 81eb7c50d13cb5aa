"""The ``hatch-flyte`` command: inspect, build and deploy Flyte artifacts outside hatch.

Exit status: 0 on success, 1 on a user error (the message says what and how to fix it), 2 on a
usage error, 128+N when signal N (SIGINT, SIGTERM, SIGHUP) interrupted it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from hatch_flyte import __version__
from hatch_flyte.atomic import Interrupted, interruptible
from hatch_flyte.bundle import Bundle, BundleOptions
from hatch_flyte.bundle.archive import bundle_name
from hatch_flyte.config import Override, flag_choices, flags_for, is_path_flag
from hatch_flyte.discovery import Analysis
from hatch_flyte.errors import HatchFlyteError
from hatch_flyte.manifest import make_manifest
from hatch_flyte.pipeline import NO_BUNDLE, TARGETS, Session, build_artifacts, report
from hatch_flyte.project import Project, hatch_enablement_hint, load_project
from hatch_flyte.report import human_size, progress, render_tree

log = logging.getLogger("hatch_flyte")


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hatch-flyte", description="Package Flyte 2 code: code bundles, wheels, images."
    )
    parser.add_argument("--version", action="version", version=f"hatch-flyte {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="count", default=0, help="more output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    b = sub.add_parser(
        "bundle", parents=[common], help="write the fast-registration code bundle (fast<digest>.tar.gz)"
    )
    b.add_argument(
        "path", nargs="?", default=".", help="project directory (its [tool.flyte] applies) or any directory"
    )
    b.add_argument("-o", "--output", dest="outdir", help="output directory (default: PATH/dist)")
    _add_setting_flags(b, "bundle")
    b.add_argument("--no-cache", action="store_true", help="read every file even if the tree looks unchanged")
    b.add_argument("--show-files", action="store_true", help="print the bundled files as a tree")
    b.add_argument("--json", action="store_true", help="print one JSON object describing the bundle")
    b.set_defaults(func=_cmd_bundle)

    i = sub.add_parser(
        "inspect", parents=[common], help="show the package, environments and bundle of a project"
    )
    i.add_argument("path", nargs="?", default=".", help="project directory")
    _add_setting_flags(i, "inspect")
    i.add_argument("--json", action="store_true", help="print one JSON object")
    i.set_defaults(func=_cmd_inspect)

    bl = sub.add_parser("build", parents=[common], help="build the wheel, the code bundle and the manifest")
    bl.add_argument("path", nargs="?", default=".", help="project directory (any PEP 517 backend)")
    bl.add_argument(
        "-t",
        "--target",
        type=_targets,
        help="comma-separated: wheel, bundle, image (default: wheel,bundle; bundle without a [build-system])",
    )
    bl.add_argument("-o", "--output", dest="outdir", help="output directory (default: PATH/dist)")
    bl.add_argument("--no-isolation", action="store_true", help="build the wheel in the current environment")
    _add_setting_flags(bl, "build")
    bl.add_argument(
        "--no-cache", action="store_true", help="read every file even if the tree looks unchanged"
    )
    bl.add_argument("--show-files", action="store_true", help="print the bundled files as a tree")
    bl.add_argument("--json", action="store_true", help="print the manifest")
    bl.set_defaults(func=_cmd_build)

    d = sub.add_parser(
        "deploy", parents=[common], help="register the built bundle/image with Flyte (no rebuild)"
    )
    d.add_argument(
        "path",
        nargs="?",
        default="dist",
        help="build output directory with flyte-manifest.json, or a project",
    )
    d.add_argument("--endpoint", metavar="URL", help="Flyte endpoint (default: from the flyte config)")
    d.add_argument("--insecure", action="store_true", default=None, help="connect without TLS")
    d.add_argument("--org", help="organization (default: from the flyte config)")
    d.add_argument("--project", metavar="P", help="project (default: from the flyte config)")
    d.add_argument("--domain", metavar="D", help="domain (default: from the flyte config)")
    d.add_argument(
        "-c", "--config", metavar="FILE", help="flyte config file (default: found as flyte finds it)"
    )
    d.add_argument(
        "--mode", choices=("fast", "full"), help="fast: bundle + image (default); full: image only"
    )
    d.add_argument(
        "--version",
        dest="deploy_version",
        metavar="V",
        help="version of every task (default: a digest of the build, the images and the mode)",
    )
    d.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="[NAME=]URI",
        help="URI for flyte.Image.from_ref_name(NAME), or without NAME for 'auto' environments",
    )
    d.add_argument("--dry-run", action="store_true", help="compute what would be registered; contact nothing")
    d.add_argument("--json", action="store_true", help="print one JSON object")
    d.set_defaults(func=_cmd_deploy)
    return parser


def _targets(value: str) -> list[str]:
    """``-t wheel,bundle``: a usage error (exit 2) naming the valid targets for anything else."""
    targets = [t.strip() for t in value.split(",") if t.strip()]
    unknown = [t for t in targets if t not in TARGETS]
    if unknown or not targets:
        raise argparse.ArgumentTypeError(
            f"unknown target {', '.join(map(repr, unknown)) or repr(value)}; "
            f"choose from {', '.join(TARGETS)} (comma-separated)"
        )
    return list(dict.fromkeys(targets))


def _add_setting_flags(parser: argparse.ArgumentParser, command: str) -> None:
    """The flags that set a ``[tool.flyte]`` key for this run (the model's FLAGS: choices from the key)."""
    for flag in flags_for(command):
        if flag.const is not None:
            parser.add_argument(
                flag.flag, dest=flag.key, action="store_const", const=flag.const, help=flag.help
            )
        else:
            metavar = "DIR" if is_path_flag(flag) else None
            parser.add_argument(
                flag.flag, dest=flag.key, choices=flag_choices(flag), metavar=metavar, help=flag.help
            )


def _load(args: argparse.Namespace) -> Project:
    """The project at PATH, with the keys its flags set (validated like the configuration file)."""
    given = [(f, getattr(args, f.key)) for f in flags_for(args.command)]
    overrides = [Override.from_flag(f, value) for f, value in given if value is not None]
    return load_project(Path(args.path), overrides)


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
    project = _load(args)
    options = BundleOptions.for_project(project)
    if args.no_cache:
        options = replace(options, use_cache=False)
    outdir = Path(args.outdir) if args.outdir else project.directory / "dist"
    session = Session(project, options, outdir)
    if project.has_pyproject:
        # A project's bundle holds its environments' include= paths too, as flyte deploy's does.
        _hint(project)
        # A bundle is for any directory: only what discovery could not settle is worth a warning.
        found = session.discovery
        report(project, Analysis(None, found), warn_empty=False)
    bundle = session.bundle()
    if bundle is None:
        if args.json:
            _out("null")
        sys.stderr.write(f"{NO_BUNDLE}\n")
        return 0
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


def _hint(project: Project) -> None:
    hint = hatch_enablement_hint(project)
    if hint:
        log.warning("%s", hint)


def _cmd_inspect(args: argparse.Namespace) -> int:
    project = _load(args)
    _hint(project)
    session = Session(project)
    analysis = session.analysis
    manifest = make_manifest(project, analysis)
    selection = session.selected[0] if session.selected is not None else None
    digest = session.digest() or ""  # shown only with a selection
    data = {
        "project": {"name": project.name, "version": project.version, "directory": str(project.directory)},
        "package": analysis.package,
        "root_dir": str(project.root_dir),
        "discovery": analysis.discovery.method,
        "environments": manifest["environments"],
        "dependency_environments": manifest["dependency_environments"],
        "unresolved": manifest["unresolved"],
        "bundle": (
            {"name": bundle_name(digest), "digest": digest, "files": len(selection.files)}
            if selection is not None
            else None
        ),
    }
    if args.json:
        _out(json.dumps(data, indent=2, sort_keys=True))
        return 0
    _out(f"project      {project.name or '-'} {project.version or ''}".rstrip())
    _out(f"package      {analysis.package or '- (top-level modules)'}")
    _out(f"root-dir     {project.root_dir}")
    _out(f"discovery    {analysis.discovery.method}")
    if selection is not None:
        _out(f"bundle       {bundle_name(digest)} ({len(selection.files)} files)")
    else:
        _out('bundle       none (copy-style = "none")')
    _out()
    rows = [("ENVIRONMENT", "MODULE:ATTRIBUTE", "KIND", "DEPENDS ON", "WHERE")]
    for env in data["environments"]:
        rows.append(
            (
                env.get("name") or "?",
                f"{env['module']}:{env['attribute']}",
                env.get("kind", ""),
                ", ".join(env.get("depends_on", [])) or "-",
                f"{env['file']}:{env['line']}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        _out("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    if not data["environments"]:
        _out("(no environments found)")
    for dep in data["dependency_environments"]:
        _out(f"depends on   {dep['name']} ({dep['module']}:{dep['attribute']}) from {dep['distribution']}")
    for item in data["unresolved"]:
        _out(f"unresolved: {item['file']}:{item['line']}: {item['reason']}")
    if selection is not None:
        _out()
        _out(render_tree(project.root_dir, selection.arcnames))
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    project = _load(args)
    _hint(project)
    options = BundleOptions.for_project(project)
    if args.no_cache:
        options = replace(options, use_cache=False)
    outdir = Path(args.outdir) if args.outdir else project.directory / "dist"
    result = build_artifacts(project, outdir, args.target, isolation=not args.no_isolation, options=options)
    if args.json:
        _out(result.manifest.read_text(encoding="utf-8").rstrip())
        return 0
    if args.show_files and result.bundle is not None:
        _out(render_tree(project.root_dir, result.bundle.files))
    envs = ", ".join(e.name for e in result.analysis.discovery.environments if e.name) or "none"
    _out(f"package {result.analysis.package or '- (top-level modules)'}; environments: {envs}")
    if result.wheel is not None:
        _out(f"wheel     {result.wheel} ({human_size(result.wheel.stat().st_size)})")
    if result.bundle is not None:
        b = result.bundle
        _out(
            f"bundle    {b.path} ({len(b.files)} files, {human_size(b.size)}{', reused' if b.reused else ''})"
        )
    elif (args.target is None or "bundle" in args.target) and project.config.bundle.copy_style == "none":
        _out(f"bundle    none ({NO_BUNDLE})")
    if result.image is not None:
        pushed = f", pushed as {result.image.digest}" if result.image.pushed else ""
        holds = (
            ", dependencies only: run it with the bundle" if result.image.contents == "dependencies" else ""
        )
        _out(f"image     {result.image.ref} ({result.image.id[:19]}{pushed}{holds})")
    _out(f"manifest  {result.manifest}")
    return 0


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush cannot raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _cmd_deploy(args: argparse.Namespace) -> int:
    from hatch_flyte.deploy import deploy, parse_images

    result = deploy(
        Path(args.path),
        mode=args.mode,
        version=args.deploy_version,
        dry_run=args.dry_run,
        images=parse_images(args.image),
        endpoint=args.endpoint,
        insecure=args.insecure,
        org=args.org,
        project=args.project,
        domain=args.domain,
        config=args.config,
    )
    if args.json:
        _out(json.dumps(result.to_json(), indent=2, sort_keys=True))
        return 0
    verb = "Would register" if result.dry_run else "Registered"
    where = f"{result.project or '-'}/{result.domain or '-'}"
    count = f"{len(result.tasks)} task{'' if len(result.tasks) == 1 else 's'}"
    _out(f"{verb} {count} in {where}, version {result.version} ({result.mode} mode)")
    if result.bundle is not None:
        uri = result.bundle.uri or "not uploaded (dry run)"
        _out(f"bundle  {result.bundle.name} -> {uri}")
    _table([("ENVIRONMENT", "IMAGE", "FROM")] + [(e.name, e.image, e.source) for e in result.environments])
    _table([("TASK", "ENVIRONMENT")] + [(t.task, t.env) for t in result.tasks])
    return 0


def _table(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    _out()
    for row in rows:
        _out("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        if record.name == progress.name:
            return record.getMessage()
        return f"{record.levelname.lower()}: {record.getMessage()}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hatch-flyte`` console script."""
    args = _parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    log.addHandler(handler)
    log.setLevel(logging.WARNING - 10 * min(args.verbose, 2))
    # Slow steps (image builds) report progress without -v, as `docker build` does.
    progress.setLevel(logging.INFO)
    try:
        with interruptible(f"running `hatch-flyte {args.command}`", hand_back=False):
            return int(args.func(args))
    except BrokenPipeError:
        # The reader went away (`inspect | head`): stop quietly, like any Unix tool.
        _silence_stdout()
        return 141
    except HatchFlyteError as e:
        sys.stderr.write(f"error: {e}\n")
        return 1
    except Interrupted as e:
        sys.stderr.write(f"hatch-flyte: {e}\n")
        return e.exit_status
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    finally:
        log.removeHandler(handler)
        progress.setLevel(logging.NOTSET)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
