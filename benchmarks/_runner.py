"""One measured bundle build, run by ``bench_bundle.py`` in a fresh interpreter.

Usage: ``python _runner.py SPEC_JSON RESULT_FILE``. SPEC_JSON holds ``tool`` ("ours", "cli": the whole
``hatch-flyte bundle`` command, or "flyte"),
``root``, ``out`` and, for ours, ``compression``. The environment (PATH, HATCH_FLYTE_*) is set by
the caller. The result file receives one JSON object: import and build times measured here around
the import and the build call, the CPU time of the build call (children included), and this
process's own peak RSS after the import and at the end.
Child processes (pigz, git) are not counted: their peak cannot be told apart from the one they
inherit from this interpreter when forked.

Kept tiny on purpose: everything it imports before the measured import counts in every variant.
"""

import json
import resource
import sys
import time
from collections.abc import Callable
from typing import Any


def _peak_rss_kb() -> int:
    """This program's own peak RSS in KiB.

    Not ``getrusage(RUSAGE_SELF).ru_maxrss``: Linux carries that value across ``fork`` + ``exec``,
    so a child of a large process reports the parent's peak. ``VmHWM`` belongs to the address space
    that ``exec`` created, so it counts this program alone.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS


def _ours(spec: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    from pathlib import Path

    from hatch_flyte.bundle import BundleOptions, build

    def run() -> dict[str, Any]:
        bundle = build(Path(spec["root"]), Path(spec["out"]), BundleOptions(compression=spec["compression"]))
        return {
            "path": str(bundle.path),
            "name": bundle.name,
            "files": len(bundle.files),
            "size": bundle.size,
            "tar_size": bundle.tar_size,
            "reused": bundle.reused,
        }

    return run


def _cli(spec: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    """The ``hatch-flyte bundle`` command as a user runs it (config, discovery, bundle, output)."""
    import contextlib
    import io

    from hatch_flyte.frontends.cli import main

    def run() -> dict[str, Any]:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(["bundle", spec["root"], "-o", spec["out"], "--no-cache", "--json"])
        if code != 0:
            raise SystemExit(f"hatch-flyte bundle exited {code}")
        bundle = json.loads(out.getvalue())
        return {
            "path": bundle["path"],
            "name": bundle["name"],
            "files": len(bundle["files"]),
            "size": bundle["size"],
            "tar_size": bundle["tar_size"],
            "reused": bundle["reused"],
        }

    return run


def _flyte(spec: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    import asyncio
    import os
    from pathlib import Path

    import flyte
    import flyte.remote  # build_code_bundle imports it on its first call: count it as import
    from flyte._code_bundle.bundle import build_code_bundle

    def run() -> dict[str, Any]:
        bundle = asyncio.run(
            build_code_bundle(
                Path(spec["root"]), dryrun=True, copy_bundle_to=Path(spec["out"]), copy_style="all"
            )
        )
        path = str(bundle.tgz)
        return {
            "path": path,
            "name": os.path.basename(path),
            "files": len(bundle.files or ()),
            "size": os.path.getsize(path),
            "flyte_version": flyte.__version__,
        }

    return run


def _cpu_s() -> float:
    """CPU seconds of this process (all threads) and of the children it waited for (pigz, git)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    spec = json.loads(sys.argv[1])
    t0 = time.perf_counter()
    run = {"ours": _ours, "cli": _cli, "flyte": _flyte}[spec["tool"]](spec)
    t1 = time.perf_counter()
    rss_import = _peak_rss_kb()
    cpu0 = _cpu_s()
    info = run()
    t2 = time.perf_counter()
    cpu = _cpu_s() - cpu0
    result = {
        "import_s": t1 - t0,
        "build_s": t2 - t1,
        "build_cpu_s": cpu,
        "rss_import_kb": rss_import,
        "rss_kb": _peak_rss_kb(),
        **info,
    }
    with open(sys.argv[2], "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
