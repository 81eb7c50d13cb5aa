"""The sdist carries what the tests need: build it, unpack it, run tests from it."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _tracked(under: str) -> set[str]:
    out = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", under], capture_output=True, text=True, check=True
    ).stdout
    return {p for p in out.split("\0") if p}


def test_sdist_runs_its_own_tests(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(tmp_path), str(REPO)],
        check=True,
        capture_output=True,
    )
    (sdist,) = tmp_path.glob("hatch_flyte-*.tar.gz")
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path, filter="data")
    (tree,) = (p for p in tmp_path.iterdir() if p.is_dir())
    shipped = {p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file()}
    for name in ("LICENSE", "CHANGELOG.md", "README.md", "tox.ini", "pyproject.toml", ".ci/run"):
        assert name in shipped, name
    if (REPO / ".git").exists():  # from a checkout: every tracked file the tests may read is shipped
        for folder in ("hatch_flyte", "tests", "example_projects", "benchmarks"):
            missing = _tracked(folder) - shipped
            assert not missing, f"not in the sdist: {sorted(missing)}"

    # Tests that read the example projects, run from the unpacked tree against its own code.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_project.py",
         "tests/test_examples.py::test_runtime_name_is_unresolved_statically_and_found_by_import"],
        cwd=tree,
        env={**env, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    code = "import hatch_flyte; print(hatch_flyte.__file__)"
    where = subprocess.run([sys.executable, "-c", code], cwd=tree, capture_output=True, text=True, check=True)
    assert Path(where.stdout.strip()).is_relative_to(tree)  # its own code, not this checkout's
