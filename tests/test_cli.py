"""``hatch-flyte bundle``: output, exit codes and how a project's configuration applies.

Exit codes are checked on the real console script; the rest runs ``main()`` in-process.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from hatch_flyte import __version__
from hatch_flyte.bundle.archive import gzip_header
from hatch_flyte.frontends.cli import main

SCRIPT = Path(sys.executable).parent / "hatch-flyte"


def write(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def project(directory: Path, flyte: str = "", files: dict[str, str] | None = None) -> Path:
    """A src-layout project ``foo`` with an optional ``[tool.flyte]`` body."""
    pyproject = '[project]\nname = "foo"\nversion = "0.1"\n'
    if flyte:
        pyproject += "\n" + textwrap.dedent(flyte).lstrip()
    write(directory / "pyproject.toml", pyproject)
    for rel, text in (files or {"src/foo/__init__.py": "", "src/foo/tasks.py": "X = 1\n"}).items():
        write(directory / rel, text)
    return directory


def flyte_digest(root: Path, arcnames: list[str]) -> str:
    md5 = hashlib.md5()
    for arcname in sorted(arcnames, key=lambda a: str(root / a)):
        md5.update((root / arcname).read_bytes())
        md5.update(arcname.replace("/", "").encode())
    return md5.hexdigest()


def tar_names(path: Path) -> list[str]:
    with tarfile.open(path, "r:gz") as tar:
        return tar.getnames()


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("HATCH_FLYTE_CACHE_DIR", str(cache))
    monkeypatch.delenv("HATCH_FLYTE_NO_CACHE", raising=False)
    return cache


def run_script(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert SCRIPT.is_file(), f"the console script is not installed at {SCRIPT}"
    return subprocess.run(
        [str(SCRIPT), *args], cwd=cwd, env=dict(os.environ), capture_output=True, text=True, timeout=60
    )


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


# --- the console script: output and exit codes -------------------------------------------------


def test_json_output(tmp_path: Path) -> None:
    proj = project(
        tmp_path / "proj",
        files={
            "src/foo/__init__.py": "",
            "src/foo/tasks.py": "X = 1\n",
            "src/foo/data/table.csv": "a\n1\n",
            "src/foo/Z.py": "",
        },
    )
    proc = run_script("bundle", "proj", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    data = json.loads(proc.stdout)  # exactly one JSON object, nothing else on stdout
    root = proj / "src"
    expected_files = ["foo/Z.py", "foo/__init__.py", "foo/data/table.csv", "foo/tasks.py"]
    digest = flyte_digest(root, expected_files)
    path = proj / "dist" / f"fast{digest}.tar.gz"
    assert data == {
        "path": str(path),
        "name": path.name,
        "digest": digest,
        "files": expected_files,
        "size": path.stat().st_size,
        "tar_size": len(gzip.decompress(path.read_bytes())),
        "compression": "fast",
        "reused": False,
        "root": str(root),
        "secrets": [],
    }
    assert tar_names(path) == data["files"]  # archive order
    assert os.listdir(proj / "dist") == [path.name]


def test_exit_1_on_missing_path(tmp_path: Path) -> None:
    proc = run_script("bundle", str(tmp_path / "missing"), cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr == (
        f"error: {tmp_path / 'missing'}: no such directory; pass a project directory or a bundle root\n"
    )


def test_exit_1_on_bad_config(tmp_path: Path) -> None:
    proj = project(tmp_path / "proj", '[tool.flyte.bundle]\ncompression = "fastest"\nbundel = 1\n')
    proc = run_script("bundle", str(proj), cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr == (
        f"error: invalid configuration in {proj / 'pyproject.toml'}:\n"
        "  - `tool.flyte.bundle.compression` must be one of 'fast', 'compatible', got a string "
        "('fastest'); did you mean 'fast'?\n"
        "  - unknown key `tool.flyte.bundle.bundel`; valid keys: compression, copy-style, ignores, "
        "include, keep-default-ignores, secrets\n"
    )
    assert not (proj / "dist").exists()


def test_exit_1_when_secrets_and_strict(tmp_path: Path) -> None:
    proj = project(tmp_path / "proj", files={"src/foo/__init__.py": "", "src/foo/.env": "TOKEN=1\n"})
    proc = run_script("bundle", str(proj), "--strict", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.startswith(
        f"error: files that look like secrets would be bundled from {proj / 'src'}: foo/.env. Remove them"
    )
    assert not (proj / "dist").exists()  # a failed build creates nothing

    proc = run_script("bundle", str(proj), cwd=tmp_path)
    assert proc.returncode == 0
    assert proc.stderr.startswith(
        "warning: these files look like secrets and will be in the bundle: foo/.env"
    )
    assert len(os.listdir(proj / "dist")) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bundle", ".", "--compression", "fastest"], "argument --compression: invalid choice: 'fastest'"),
        (["bundle", ".", "--frobnicate"], "unrecognized arguments: --frobnicate"),
        ([], "the following arguments are required: COMMAND"),
    ],
    ids=["bad-compression", "unknown-option", "no-command"],
)
def test_exit_2_on_usage_error(tmp_path: Path, args: list[str], message: str) -> None:
    proj = project(tmp_path / "proj")
    proc = run_script(*args, cwd=proj)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "usage: hatch-flyte" in proc.stderr
    assert message in proc.stderr
    assert not (proj / "dist").exists()


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"hatch-flyte {__version__}\n"


# --- in-process: what is bundled, and where ----------------------------------------------------


def test_show_files_prints_a_tree(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    proj = project(
        tmp_path / "proj",
        files={"src/foo/__init__.py": "", "src/foo/tasks.py": "", "src/foo/sub/x.py": "", "src/top.py": ""},
    )
    code, out, err = run_main(capsys, "bundle", str(proj), "--show-files")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[:7] == [
        f"{proj / 'src'}/",
        "├── foo/",
        "│   ├── sub/",
        "│   │   └── x.py",
        "│   ├── __init__.py",
        "│   └── tasks.py",
        "└── top.py",
    ]
    assert len(lines) == 8
    assert re.fullmatch(
        rf"Wrote {re.escape(str(proj / 'dist'))}/fast[0-9a-f]{{32}}\.tar\.gz \(4 files, \d+ B, "
        r"10\.0 KiB uncompressed, fast\) in \d+\.\d\ds",
        lines[7],
    ), lines[7]

    code, out, _ = run_main(capsys, "bundle", str(proj))
    assert code == 0
    assert out.startswith(f"Reused {proj / 'dist'}/fast")


def test_project_config_applies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    proj = project(
        tmp_path / "proj",
        """
        [tool.flyte.bundle]
        ignores = ["foo/scratch.py", "*.csv"]
        compression = "compatible"
        """,
        files={
            "src/foo/__init__.py": "",
            "src/foo/scratch.py": "",
            "src/foo/data.csv": "",
            "src/foo/tasks.py": "",
        },
    )
    code, out, err = run_main(capsys, "bundle", str(proj), "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["files"] == ["foo/__init__.py", "foo/tasks.py"]
    assert data["compression"] == "compatible"
    path = Path(data["path"])
    assert path.read_bytes().startswith(gzip_header(path.name, 9))
    assert tar_names(path) == data["files"]

    # The command line overrides the configured compression.
    code, out, _ = run_main(capsys, "bundle", str(proj), "--json", "--compression", "fast", "--no-cache")
    assert code == 0
    assert json.loads(out)["compression"] == "fast"


def test_root_dir_option_overrides_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    proj = project(
        tmp_path / "proj",
        '[tool.flyte]\nroot-dir = "src"\n',
        files={"src/foo/__init__.py": "", "other/flows/wf.py": ""},
    )
    code, out, _ = run_main(capsys, "bundle", str(proj), "--json")
    assert code == 0
    assert json.loads(out)["root"] == str(proj / "src")

    monkeypatch.chdir(proj)  # --root-dir is relative to the current directory, like any option
    code, out, err = run_main(capsys, "bundle", ".", "--root-dir", "other", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["root"] == str(proj / "other")
    assert data["files"] == ["flows/wf.py"]
    assert Path(data["path"]).parent == proj / "dist"


def test_root_dir_option_missing_or_outside(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    proj = project(tmp_path / "proj")
    code, out, err = run_main(capsys, "bundle", str(proj), "--root-dir", str(proj / "nope"))
    assert code == 1
    assert out == ""
    assert err == (
        f"error: bundle root {proj / 'nope'} does not exist; pass an existing directory (--root-dir)\n"
    )
    # Checked as `tool.flyte.root-dir` is: a bundle root outside the project is refused, by name.
    (tmp_path / "elsewhere").mkdir()
    code, out, err = run_main(capsys, "inspect", str(proj), "--root-dir", str(tmp_path / "elsewhere"))
    assert (code, out) == (1, "")
    assert err == (
        "error: invalid configuration in the command line:\n"
        f"  - `--root-dir` = {str(tmp_path / 'elsewhere')!r} escapes the project directory {proj}; "
        "pass a directory inside it\n"
    )
    assert not (proj / "dist").exists()


def test_default_output_is_path_dist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    proj = project(tmp_path / "proj")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, out, _ = run_main(capsys, "bundle", "../proj", "--json")
    assert code == 0
    path = Path(json.loads(out)["path"])
    assert path.parent == proj / "dist"
    assert os.listdir(elsewhere) == []

    code, out, _ = run_main(capsys, "bundle", "../proj", "--json", "-o", "custom")
    assert code == 0
    # -o is taken relative to the current directory (and reported as given).
    assert Path(json.loads(out)["path"]).resolve() == elsewhere / "custom" / path.name
    assert os.listdir(elsewhere / "custom") == [path.name]


def test_plain_directory_is_its_own_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plain = tmp_path / "plain"
    write(plain / "wf.py", "x = 1\n")
    write(plain / "src" / "lib.py", "")
    code, out, _ = run_main(capsys, "bundle", str(plain), "--json")
    assert code == 0
    first = json.loads(out)
    assert first["root"] == str(plain)
    assert first["files"] == ["src/lib.py", "wf.py"]
    assert Path(first["path"]).parent == plain / "dist"
    # dist/ lies inside the root: our own output never ends up in the next bundle.
    code, out, _ = run_main(capsys, "bundle", str(plain), "--json")
    second = json.loads(out)
    assert (second["digest"], second["files"], second["reused"]) == (first["digest"], first["files"], True)


def test_output_inside_the_root_is_not_bundled(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plain = tmp_path / "plain"
    write(plain / "wf.py", "x = 1\n")
    code, out, _ = run_main(capsys, "bundle", str(plain), "--json", "-o", str(plain / "artifacts"))
    first = json.loads(out)
    code, out, _ = run_main(capsys, "bundle", str(plain), "--json", "-o", str(plain / "artifacts"))
    assert code == 0
    assert json.loads(out)["files"] == first["files"] == ["wf.py"]


def test_bundle_fault_is_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plain = tmp_path / "plain"
    write(plain / "wf.py")
    os.mkfifo(plain / "pipe")
    code, out, err = run_main(capsys, "bundle", str(plain))
    assert code == 1
    assert out == ""
    assert err.startswith(f"error: {plain / 'pipe'} is a named pipe, which a bundle cannot hold")
    assert not (plain / "dist").exists()  # a failed build creates nothing


# --- nothing dropped in silence ------------------------------------------------------------------

DYNAMIC = {
    "src/foo/__init__.py": "",
    "src/foo/jobs.py": (
        "import os\n\nimport flyte\n\n"
        'static_env = flyte.TaskEnvironment(name="static_env")\n'
        'regional = flyte.TaskEnvironment(name=os.environ.get("REGION", "eu"))\n'
    ),
}


def test_unresolved_is_a_warning_and_strict_makes_it_an_error(tmp_path: Path) -> None:
    proj = project(tmp_path / "proj", files=DYNAMIC)
    proc = run_script("inspect", str(proj), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "warning: unresolved foo/jobs.py:6: " in proc.stderr
    for args, where in (
        (["inspect", str(proj), "--strict"], "--strict"),
        (["bundle", str(proj), "--strict"], "--strict"),
    ):
        proc = run_script(*args, cwd=tmp_path)
        assert proc.returncode == 1 and proc.stdout == ""
        assert (
            f"1 item(s) that discovery could not resolve, an error with {where}:\n  - foo/jobs.py:6: "
            in proc.stderr
        )
    (proj / "pyproject.toml").write_text(
        '[project]\nname = "foo"\nversion = "0.1"\n[tool.flyte]\nstrict = true\n'
    )
    proc = run_script("inspect", str(proj), cwd=tmp_path)
    assert proc.returncode == 1
    assert f"an error with `strict = true` in {proj / 'pyproject.toml'}" in proc.stderr
    assert not (proj / "dist").exists()


def test_no_environments_warns_where_it_looked(tmp_path: Path) -> None:
    proj = project(tmp_path / "proj")
    proc = run_script("inspect", str(proj), cwd=tmp_path)
    assert proc.returncode == 0
    assert (
        "warning: no Flyte environments found: static discovery looked at the package foo under the bundle "
        f"root {proj / 'src'}"
    ) in proc.stderr


def test_hint_when_hatch_flyte_is_required_but_not_enabled(tmp_path: Path) -> None:
    proj = project(tmp_path / "proj", files=DYNAMIC)
    text = (proj / "pyproject.toml").read_text()
    system = (
        '[build-system]\nrequires = ["hatchling", "hatch-flyte>=0.1"]\nbuild-backend = "hatchling.build"\n'
    )
    (proj / "pyproject.toml").write_text(system + text)
    hint = "lists hatch-flyte in build-system.requires but enables neither its build hook nor its target"
    proc = run_script("inspect", str(proj), cwd=tmp_path)
    assert proc.stderr.count(hint) == 1
    (proj / "pyproject.toml").write_text(system + text + "\n[tool.hatch.build.targets.wheel.hooks.flyte]\n")
    assert hint not in run_script("inspect", str(proj), cwd=tmp_path).stderr


def test_inspect_into_a_closed_pipe(tmp_path: Path) -> None:
    # More output than a pipe buffers (64 KiB), so that writing really meets the closed pipe.
    files = {"src/foo/__init__.py": ""} | {f"src/foo/data/{'x' * 60}{i}.txt": "" for i in range(2000)}
    proj = project(tmp_path / "proj", files=files)
    proc = subprocess.run(
        f"{SCRIPT} inspect {proj} | head -1",
        shell=True,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.stdout.startswith("project")
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("target", ["wheels", "wheel,imag", ","])
def test_build_unknown_target_is_a_usage_error(tmp_path: Path, target: str) -> None:
    proj = project(tmp_path / "proj")
    proc = run_script("build", str(proj), "-t", target, cwd=tmp_path)
    assert proc.returncode == 2
    assert "choose from wheel, bundle, image" in proc.stderr and "Traceback" not in proc.stderr
    assert not (proj / "dist").exists()


def test_build_takes_the_bundle_options(tmp_path: Path) -> None:
    # A script project (no [build-system]): the bundle alone; --root-dir, --show-files, --no-cache.
    proj = tmp_path / "proj"
    write(proj / "pyproject.toml", '[project]\nname = "s"\nversion = "1"\n')
    write(proj / "code" / "main.py", 'import flyte\n\nenv = flyte.TaskEnvironment(name="s")\n')
    write(proj / "code" / "data.txt", "x\n")
    proc = run_script(
        "build", str(proj), "--root-dir", str(proj / "code"), "--show-files", "--no-cache", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert f"{proj / 'code'}/\n├── data.txt\n└── main.py" in proc.stdout
    assert "package - (top-level modules); environments: s" in proc.stdout
    manifest = json.loads((proj / "dist" / "flyte-manifest.json").read_text())
    assert manifest["root_dir"] == "code" and manifest["wheel"] is None and manifest["package"] is None
    assert [e["module"] for e in manifest["environments"]] == ["main"]
    # -t wheel on a project without a backend says how to get one.
    proc = run_script("build", str(proj), "-t", "wheel", cwd=tmp_path)
    assert (
        proc.returncode == 1 and "has no [build-system] table" in proc.stderr and "-t bundle" in proc.stderr
    )
    # --strict applies to the secrets guard and discovery alike.
    write(proj / "code" / "sub" / ".env", "TOKEN=1\n")
    proc = run_script("build", str(proj), "--root-dir", str(proj / "code"), "--strict", cwd=tmp_path)
    assert proc.returncode == 1 and "look like secrets" in proc.stderr


def test_root_dir_that_does_not_match_the_layout_is_an_error(tmp_path: Path) -> None:
    proj = project(tmp_path / "proj", flyte='[tool.flyte]\nroot-dir = "."\n', files=DYNAMIC)
    proc = run_script("inspect", str(proj), cwd=tmp_path)
    assert proc.returncode == 1
    assert (
        "does not match the layout" in proc.stderr
        and 'set `root-dir = "src"` under [tool.flyte]' in proc.stderr
    )
