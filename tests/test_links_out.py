"""Symlinks that lead out of the bundle root: flyte follows them and bundles what they point to.

hatch-flyte's bundle holds the same bytes (flyte is the oracle), names every such link with its
target in a warning, refuses with ``secrets = "error"`` or ``--strict``, and records nothing of
the targets in the manifest. Include entries and the image's source copy get the same check.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from flyte_oracle import flyte_bundle
from test_compat import assert_same_as_flyte

from hatch_flyte.bundle import BundleOptions, build, select
from hatch_flyte.bundle.guard import links_leaving
from hatch_flyte.errors import BundleError, SecretsError
from hatch_flyte.pipeline import Session
from hatch_flyte.project import load_project

CLI = (sys.executable, "-m", "hatch_flyte.frontends.cli")


def write(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    """A root with links out (to a file, to a directory, through a relative ``..``), links that
    stay inside, and the outside they point to."""
    outside = tmp_path / "home"
    write(outside / ".aws" / "credentials", "[default]\naws_secret_access_key = x\n")
    write(outside / "mounted" / "token", "t0k3n\n")
    write(outside / "mounted" / "ca.crt", "cert\n")
    root = tmp_path / "proj"
    write(root / "pkg" / "__init__.py")
    write(root / "pkg" / "tasks.py", "X = 1\n")
    (root / "pkg" / "aws").symlink_to(outside / ".aws" / "credentials")
    (root / "secrets").symlink_to(outside / "mounted")
    (root / "pkg" / "up.txt").symlink_to(Path("..", "..", "home", "mounted", "token"))
    (root / "pkg" / "same.py").symlink_to("tasks.py")
    (root / "pkg" / "self").symlink_to(".")
    return root.resolve(), outside.resolve()


def test_links_leaving_names_each_link_once(tree: tuple[Path, Path]) -> None:
    root, outside = tree
    selection, _ = select(root, BundleOptions(secrets="off"))
    assert links_leaving(root, (f.path for f in selection.files)) == [
        ("pkg/aws", str(outside / ".aws" / "credentials")),
        ("pkg/up.txt", str(outside / "mounted" / "token")),
        ("secrets", str(outside / "mounted")),
    ]


def test_warning_and_flytes_bytes(
    tree: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HATCH_FLYTE_NO_CACHE", "1")
    root, outside = tree
    with caplog.at_level(logging.WARNING, logger="hatch_flyte"):
        bundle = build(root, tmp_path / "out", BundleOptions(compression="compatible"))
    messages = [r.getMessage() for r in caplog.records if "symlinks" in r.getMessage()]
    assert messages == [
        f"these symlinks lead outside the bundle root {root}, and the bundle holds what they point to "
        f"(as flyte's does): pkg/aws -> {outside}/.aws/credentials, pkg/up.txt -> {outside}/mounted/token, "
        f"secrets -> {outside}/mounted (leave them out in .flyteignore or `tool.flyte.bundle.ignores`; "
        '`secrets = "error"` or --strict makes this fatal)'
    ]
    # Only a warning: the bytes are flyte's, the targets' contents included.
    assert_same_as_flyte(bundle, flyte_bundle(root, tmp_path / "flyte-out", tmp_path / "oracle"))
    assert "secrets/token" in bundle.files and "pkg/aws" in bundle.files


@pytest.mark.parametrize("how", ["config", "strict"])
def test_fatal_with_secrets_error_or_strict(tree: tuple[Path, Path], tmp_path: Path, how: str) -> None:
    root, outside = tree
    (root / "pyproject.toml").write_text(
        '[project]\nname = "proj"\nversion = "1"\n[tool.flyte]\nroot-dir = "."\n'
        + ('[tool.flyte.bundle]\nsecrets = "error"\n' if how == "config" else "")
    )
    out = tmp_path / "out"
    cmd = [*CLI, "bundle", str(root), "-o", str(out), "--no-cache"]
    proc = subprocess.run(
        [*cmd, "--strict"] if how == "strict" else cmd, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"error: symlinks in {root} lead outside it, and the bundle would hold what they point to: "
        f"pkg/aws -> {outside}/.aws/credentials, pkg/up.txt -> {outside}/mounted/token, "
        f"secrets -> {outside}/mounted. Remove the links, copy what the code needs under the root, or "
        "leave them out in .flyteignore or `tool.flyte.bundle.ignores`; or, to bundle them anyway, set "
        '`tool.flyte.bundle.secrets = "warn"` ("off" with `strict`)'
    ]
    assert not out.exists() or list(out.iterdir()) == []


def test_fatal_error_passes_once_the_links_are_ignored(tree: tuple[Path, Path], tmp_path: Path) -> None:
    root, _ = tree
    bundle = build(
        root, tmp_path / "out", BundleOptions(secrets="error", ignores=("pkg/aws", "pkg/up.txt", "/secrets"))
    )
    assert "pkg/same.py" in bundle.files


def test_off_says_nothing(tree: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root, _ = tree
    with caplog.at_level(logging.WARNING, logger="hatch_flyte"):
        build(root, tmp_path / "out", BundleOptions(secrets="off"))
    assert not [r for r in caplog.records if "symlinks" in r.getMessage()]


def test_include_entry_leading_out_is_named(tree: tuple[Path, Path], tmp_path: Path) -> None:
    root, outside = tree
    with pytest.raises(BundleError) as info:
        build(root, tmp_path / "out", BundleOptions(include=(root / "pkg" / "aws",)))
    assert str(info.value) == (
        f"include path {root}/pkg/aws (a symlink to {outside}/.aws/credentials) is outside the bundle root "
        f"{root}; move it under the root or set `tool.flyte.root-dir` one level up"
    )


def _project(root: Path, secrets: str) -> Path:
    (root / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""
            [project]
            name = "proj"
            version = "1.0"
            dependencies = ["flyte"]

            [tool.flyte]
            root-dir = "."
            package = "pkg"

            [tool.flyte.bundle]
            secrets = "{secrets}"

            [tool.flyte.image]
            source = true
            """
        )
    )
    return root


def test_image_source_gets_the_same_check(
    tree: tuple[Path, Path], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, outside = tree
    project = load_project(_project(root, "warn"))
    with caplog.at_level(logging.WARNING, logger="hatch_flyte"):
        files = Session(project).source_files()
    assert (str(root / "pkg" / "aws"), "pkg/aws") in files
    assert any(f"pkg/aws -> {outside}/.aws/credentials" in r.getMessage() for r in caplog.records)
    strict = load_project(_project(root, "error"))
    with pytest.raises(SecretsError, match="pkg/aws -> "):
        Session(strict).source_files()


def test_manifest_records_nothing_of_the_targets(tree: tuple[Path, Path], tmp_path: Path) -> None:
    root, outside = tree
    _project(root, "warn")
    out = tmp_path / "out"
    proc = subprocess.run(
        [*CLI, "build", str(root), "-t", "bundle", "-o", str(out)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "HATCH_FLYTE_NO_CACHE": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert f"pkg/aws -> {outside}/.aws/credentials" in proc.stderr
    text = (out / "flyte-manifest.json").read_text()
    doc = json.loads(text)
    assert doc["bundle"]["files"] > 0
    for leak in (str(outside), "credentials", "mounted", "token"):
        assert leak not in text
