"""Building the project's wheel with the project's own PEP 517 backend (through pypa ``build``).

Used by ``hatch-flyte build`` for projects on any backend: hatchling, setuptools, uv_build, flit,
pdm... The wheel is built into a temporary directory inside the output directory and moved into
place only when the backend succeeded, so a failing backend leaves nothing behind.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import sys
import zipfile
from collections.abc import Mapping, Sequence
from email.message import Message
from email.parser import BytesParser
from pathlib import Path

from hatch_flyte.atomic import ensure_directory, interruptible, run_child, temp_dir
from hatch_flyte.errors import BuildError

log = logging.getLogger(__name__)


def _runner(
    cmd: Sequence[str], cwd: str | None = None, extra_environ: Mapping[str, str] | None = None
) -> None:
    """Run a backend hook with its output on our stderr: stdout stays ours (``--json``)."""
    env = {**os.environ, **(extra_environ or {})}
    try:
        out: int | None = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        out = None
    run_child(cmd, cwd=cwd, env=env, stdout=out, check=True)


def build_wheel(project_dir: Path, outdir: Path, *, isolation: bool = True) -> Path:
    """Build a wheel of ``project_dir`` into ``outdir`` and return its path.

    With ``isolation`` (the default) the backend's ``build-system.requires`` are installed into a
    fresh environment, as pip and ``python -m build`` do; without it the current environment must
    already have them.
    """
    from hatch_flyte.extras import require

    require("cli", "`hatch-flyte build`", BuildError)

    with interruptible(f"building the wheel of {project_dir} into {outdir}"):
        return _build_wheel(project_dir, outdir, isolation)


def _build_wheel(project_dir: Path, outdir: Path, isolation: bool) -> Path:
    import build as pypa_build
    from build.env import DefaultIsolatedEnv

    tmp = temp_dir(ensure_directory(outdir), "hatch-flyte-wheel")
    try:
        try:
            if isolation:
                with DefaultIsolatedEnv() as env:
                    builder = pypa_build.ProjectBuilder.from_isolated_env(env, project_dir, runner=_runner)
                    env.install(builder.build_system_requires)
                    env.install(builder.get_requires_for_build("wheel"))
                    built = Path(builder.build("wheel", tmp))
            else:
                builder = pypa_build.ProjectBuilder(project_dir, runner=_runner)
                missing = builder.check_dependencies("wheel")
                if missing:
                    names = ", ".join(sorted(" -> ".join(chain) for chain in missing))
                    raise BuildError(
                        f"--no-isolation: the build requirements of {project_dir} are not installed here: "
                        f"{names}; install them or build without --no-isolation"
                    )
                built = Path(builder.build("wheel", tmp))
        except pypa_build.BuildBackendException as e:
            raise BuildError(
                f"the build backend of {project_dir} failed to build a wheel ({e.exception!r}); "
                "its own output above says why"
            ) from None
        except pypa_build.BuildException as e:
            raise BuildError(f"cannot build a wheel of {project_dir}: {e}") from None
        target = outdir / built.name
        built.replace(target)
        return target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_metadata(wheel: Path) -> Message:
    """The wheel's ``.dist-info/METADATA``, read once per build whoever asks (image labels,
    requirements, tags): remembered while the file keeps its size and modification time."""
    st = wheel.stat()
    return _read_metadata(str(wheel), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _read_metadata(path: str, size: int, mtime_ns: int) -> Message:
    try:
        with zipfile.ZipFile(path) as zf:
            name = next((n for n in zf.namelist() if n.endswith(".dist-info/METADATA")), None)
            if name is None:
                raise BuildError(f"{path} has no .dist-info/METADATA; is it a wheel?")
            return BytesParser().parsebytes(zf.read(name))
    except (OSError, zipfile.BadZipFile) as e:
        raise BuildError(f"cannot read the wheel {path}: {e}; build it again") from None
