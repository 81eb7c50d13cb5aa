"""hatch-flyte's code bundle against the real flyte 2.12 on generated trees.

Every tree is built by flyte (``build_code_bundle(copy_style="all")``, pigz hidden from PATH, see
:mod:`flyte_oracle`) and by hatch-flyte in both compression modes. They must agree on the file
list and its order, the bundle name (the digest), the uncompressed tar bytes and, in
``compatible`` mode, the ``.tar.gz`` bytes. flyte is the only source of expected values.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from flyte_oracle import GIT_ENV, FlyteBundle, flyte_bundles, tar_member_names, tools_dir

from hatch_flyte.bundle import Bundle, BundleOptions, build, statcache
from hatch_flyte.config import Compression
from hatch_flyte.errors import BundleError

COMPRESSIONS = ("fast", "compatible")


# --- building trees --------------------------------------------------------------------------


def write(path: Path, data: str | bytes = "", mode: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)
    if mode is not None:
        path.chmod(mode)
    return path


def link(path: Path, target: str | Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)
    return path


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        [
            "git",
            "-c",
            "user.name=Compat Test",
            "-c",
            "user.email=compat@example.com",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
            *args,
        ],
        cwd=repo,
        env=GIT_ENV,
        check=True,
        capture_output=True,
    )


def git_repo(repo: Path, tracked: Sequence[str], force: Sequence[str] = ()) -> None:
    """``git init`` ``repo``, add ``tracked`` (and ``force`` with -f), commit."""
    git(repo, "init", "-q")
    for start in range(0, len(tracked), 200):
        git(repo, "add", "--", *tracked[start : start + 200])
    for start in range(0, len(force), 200):
        git(repo, "add", "-f", "--", *force[start : start + 200])
    git(repo, "commit", "-q", "--allow-empty", "-m", "tree")


def make_socket(path: Path) -> None:
    """A unix socket file (flyte and hatch-flyte both leave it out); short relative bind path."""
    cwd = os.getcwd()
    os.chdir(path.parent)
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path.name)
        s.close()
    finally:
        os.chdir(cwd)


TREES: dict[str, Callable[[Path], Path]] = {}
#: Files each tree must (and must not) contain in flyte's own list: checks the tree really sets up
#: the case it is named after, so a silently broken builder cannot make a comparison vacuous.
EXPECT: dict[str, tuple[set[str], set[str]]] = {}
#: Trees where hatch-flyte differs from flyte on purpose (see the reason).
XFAIL: dict[str, tuple[str, type[BaseException]]] = {
    "symlink_self_loop": (
        "deliberate: flyte silently skips a symlink that points to itself (os.path.exists is False); "
        "hatch-flyte reports a symlink loop as a BundleError naming the link",
        BundleError,
    ),
}


def tree(
    include: Iterable[str] = (), exclude: Iterable[str] = ()
) -> Callable[[Callable[[Path], Path]], Callable[[Path], Path]]:
    def register(fn: Callable[[Path], Path]) -> Callable[[Path], Path]:
        name = fn.__name__.removeprefix("tree_")
        TREES[name] = fn
        EXPECT[name] = (set(include), set(exclude))
        return fn

    return register


@tree(
    include={
        "pkg/local_tracked.py",
        "tracked.csv",
        "pkg/only_here.txt",
        "pkg/top_only.txt",
        "notes.md",
        "pkg/.gitignore",
        "vendor/inner/x.csv",
        "vendor/inner/lib.py",
    },
    exclude={
        "pkg/local_settings.py",
        "vendor/inner/.git/HEAD",
        "results.csv",
        "data/raw.bin",
        "data/sub/x.txt",
        "pkg/scratch/tmp.py",
        "secret.txt",
        "pkg/secret.txt",
        "top_only.txt",
        "only_here.txt",
    },
)
def tree_git_nested_gitignore(d: Path) -> Path:
    """Nested .gitignore; tracked-but-ignored files stay, untracked ignored ones go. flyte hands
    every .gitignore to ``git ls-files --exclude-from``, which anchors ``/x`` at the bundle root,
    even in a nested file."""
    write(d / ".gitignore", "*.csv\ndata/\nsecret.txt\n/top_only.txt\n")
    write(d / "pkg/.gitignore", "local_*.py\n/only_here.txt\nscratch/\n")
    write(d / "pkg/__init__.py")
    write(d / "pkg/core.py", "VALUE = 1\n")
    write(d / "pkg/local_settings.py", "DEBUG = True\n")
    write(d / "pkg/local_tracked.py", "TRACKED = True\n")
    write(d / "pkg/only_here.txt", "nested anchored\n")
    write(d / "only_here.txt", "top\n")
    write(d / "top_only.txt", "top only\n")
    write(d / "pkg/top_only.txt", "nested\n")
    write(d / "results.csv", "a,b\n")
    write(d / "tracked.csv", "c,d\n")
    write(d / "data/raw.bin", bytes(range(256)))
    write(d / "data/sub/x.txt", "x\n")
    write(d / "pkg/scratch/tmp.py", "tmp\n")
    write(d / "secret.txt", "s\n")
    write(d / "pkg/secret.txt", "s2\n")
    write(d / "notes.md", "# untracked, not ignored\n")
    # A nested repository: git does not look inside it, so its *.csv is not reported as ignored.
    write(d / "vendor/inner/lib.py", "LIB = 1\n")
    write(d / "vendor/inner/x.csv", "nested repo csv\n")
    git_repo(d / "vendor/inner", ["lib.py"])
    git_repo(
        d,
        [".gitignore", "pkg/.gitignore", "pkg/__init__.py", "pkg/core.py"],
        force=["pkg/local_tracked.py", "tracked.csv"],
    )
    return d


@tree(
    include={"pkg/mod.py", "pkg/tracked.tmp", ".gitignore"},
    exclude={
        "pkg/a.tmp",
        "pkg/notes/n.txt",
        "pkg/key.secret",
        "pkg/private/p.py",
        "pkg/gen.cache.py",
        "pkg.egg-info/PKG-INFO",
    },
)
def tree_git_root_above(d: Path) -> Path:
    """src layout inside a repository: .gitignore and .flyteignore at the git root, above the
    bundle root ``src``; .flyteignore paths are relative to the git root there."""
    write(d / ".gitignore", "*.tmp\nnotes/\n")
    write(d / ".flyteignore", "*.secret\n/src/pkg/private/\n")
    write(d / "pyproject.toml", '[project]\nname = "above"\nversion = "0"\n')
    write(d / "README.md", "readme\n")
    write(d / "tests/test_x.py", "def test(): pass\n")
    src = d / "src"
    write(src / ".gitignore", "*.cache.py\n")
    write(src / "pkg/__init__.py")
    write(src / "pkg/mod.py", "import os\n")
    write(src / "pkg/a.tmp", "untracked tmp\n")
    write(src / "pkg/tracked.tmp", "tracked tmp\n")
    write(src / "pkg/notes/n.txt", "note\n")
    write(src / "pkg/key.secret", "tracked secret\n")
    write(src / "pkg/private/p.py", "PRIVATE = 1\n")
    write(src / "pkg/gen.cache.py", "generated\n")
    write(src / "pkg.egg-info/PKG-INFO", "Name: above\n")
    git_repo(
        d,
        [
            ".gitignore",
            ".flyteignore",
            "pyproject.toml",
            "README.md",
            "tests/test_x.py",
            "src/.gitignore",
            "src/pkg/__init__.py",
            "src/pkg/mod.py",
            "src/pkg/key.secret",
            "src/pkg/private/p.py",
        ],
        force=["src/pkg/tracked.tmp"],
    )
    return src


@tree(
    include={
        "pkg/anchored.txt",
        "docs/final.md",
        "keep.json",
        "pkg/keep.json",
        "assets/logo.png",
        "readme.md",
        "pkg/sub/local.py",
        "d/keep.txt",
        "[x].txt",
    },
    exclude={
        "anchored.txt",
        "x.txt",
        "foo[",
        "dotslash.txt",
        "leading.txt",
        "builddir/out.txt",
        "pkg/builddir/out.txt",
        "secret.json",
        "pkg/secret.json",
        "docs/a/b/draft1.md",
        "docs/draft0.md",
        "x.bin",
        "pkg/deep/y.bin",
        "config.json",
        "assets/other.png",
        "dotdot.txt",
        "pkg/local.py",
        "pkg/config.json",
        "pkg/readme.md",
        "pkg/data/keep.txt",
        "pkg/sub/data",
        "d/drop.txt",
        "pkg/untracked.md",
    },
)
def tree_flyteignore_patterns(d: Path) -> Path:
    """Nested .flyteignore files with anchored, directory, bare, ``**`` and ``!`` patterns, CRLF
    line ends and comments; all files tracked (flyteignore applies to tracked files too)."""
    write(
        d / ".flyteignore",
        "# comment\r\n\r\n/anchored.txt\r\nbuilddir/\r\nsecret.json  \r\ndocs/**/draft*\r\n**/*.bin\r\n"
        "*.json\r\n!keep.json\r\nassets/\r\n!assets/logo.png\r\nsub/../dotdot.txt\r\nd/\r\n!d/keep.txt\r\n"
        "[x].txt\r\nfoo[\r\n./dotslash.txt\r\n/\r\n  leading.txt\r\n",
    )
    write(d / "pkg/.flyteignore", "/local.py\n!config.json\n*.md\ndata\n!data/keep.txt\n")
    files: dict[str, str | bytes] = {
        "anchored.txt": "a",
        "pkg/anchored.txt": "b",
        "builddir/out.txt": "c",
        "pkg/builddir/out.txt": "d",
        "secret.json": "{}",
        "pkg/secret.json": "{}",
        "docs/a/b/draft1.md": "draft",
        "docs/draft0.md": "draft",
        "docs/final.md": "final",
        "x.bin": b"\x00\x01",
        "pkg/deep/y.bin": b"\x02",
        "config.json": '{"a": 1}',
        "keep.json": '{"keep": 1}',
        "pkg/keep.json": '{"keep": 2}',
        "pkg/config.json": '{"b": 2}',
        "assets/logo.png": b"\x89PNG",
        "assets/other.png": b"\x89PNG2",
        "dotdot.txt": "dd",
        "readme.md": "top readme",
        "pkg/readme.md": "pkg readme",
        "pkg/local.py": "LOCAL = 1",
        "pkg/sub/local.py": "LOCAL = 2",
        "pkg/data/keep.txt": "keep?",
        "pkg/sub/data": "a file named data",
        "pkg/__init__.py": "",
        "d/keep.txt": "kept by negation",
        "d/drop.txt": "dropped",
        "x.txt": "matched by the class [x]",
        "[x].txt": "not matched by the class [x]",
        "foo[": "matched by an unterminated class",
        "dotslash.txt": "./ is dropped",
        "leading.txt": "leading spaces are stripped",
    }
    for rel, data in files.items():
        write(d / rel, data)
    git_repo(d, [".flyteignore", "pkg/.flyteignore"], force=list(files))
    write(d / "pkg/untracked.md", "untracked and flyteignored\n")
    return d


@tree(
    include={"env.py", "environment/x.py", "pkg/venv/v.py", "pkg/env/e.py", "pkg/dist/d.py"}
    | {"pkg/build/b.py", "pkg/build/.gitignore", "pkg/.env", "pkg/.cache/y", "pkg/docs/b.md"},
    exclude={"venv/bin/python", "env/e.py", "dist/p.whl", "dist/a.tar.gz", "build/lib/x.py", ".env"}
    | {".venv/pyvenv.cfg", ".cache/x", ".idea/ws.xml", "pkg/.idea/x", "pkg/.venv/x", "pkg/docs/a.txt"},
)
def tree_standard_dirs(d: Path) -> Path:
    """flyte's standard list: bare names (venv, env, dist, build, .env) only at the top level,
    ``**/`` ones everywhere; .gitignore files inside standard-named directories are never read."""
    for rel in [
        "venv/bin/python",
        "venv/lib/x.py",
        "env/e.py",
        "env.py",
        "environment/x.py",
        "dist/p.whl",
        "dist/a.tar.gz",
        "build/lib/x.py",
        ".env",
        ".venv/pyvenv.cfg",
        ".cache/x",
        ".idea/ws.xml",
        "pkg/__init__.py",
        "pkg/venv/v.py",
        "pkg/env/e.py",
        "pkg/dist/d.py",
        "pkg/build/b.py",
        "pkg/.env",
        "pkg/.venv/x",
        "pkg/.cache/y",
        "pkg/.idea/x",
        "pkg/docs/b.md",
        ".gitkeep",
    ]:
        write(d / rel, f"# {rel}\n")
    write(d / "pkg/build/.gitignore", "*\n")
    write(d / "pkg/docs/.gitignore", "*.txt\n")
    write(d / "pkg/docs/a.txt", "untracked, ignored by the nested .gitignore\n")
    # Untracked: pkg/docs/a.txt (its .gitignore is read) and pkg/build/b.py (its .gitignore is not).
    untracked = {"pkg/docs/a.txt", "pkg/build/b.py"}
    files = [p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file()]
    git_repo(d, [], force=[f for f in files if f not in untracked])
    return d


@tree(
    include={"pkg/m.pyc.txt", "pkg/x.pyo", "pkg/logs/readme.txt", "pkg/sub2/.git", "pkg/m.py"},
    exclude={
        "pkg/__pycache__/m.cpython-311.pyc",
        "pkg/m.pyc",
        "m.pyc",
        "pkg/sub/__pycache__/a.txt",
        "mypkg.egg-info/PKG-INFO",
        "pkg/inner.egg-info/x",
        "app.log",
        "pkg/logs/deep.log",
        "foo.whl",
        "pkg/wheels/bar.whl",
        "thing.egg",
        "pkg/thing.egg",
        ".ruff_cache/x",
        "pkg/.mypy_cache/y",
        "pkg/.pytest_cache/z",
        "pkg/vendored/.git/HEAD",
    },
)
def tree_bytecode_and_artifacts(d: Path) -> Path:
    """``*.pyc``, ``__pycache__``, ``*.egg-info``, ``*.log``, ``*.whl``, caches, nested ``.git``
    (a directory is pruned, a file named ``.git`` is not); no git repository."""
    for rel in [
        "pkg/__init__.py",
        "pkg/m.py",
        "pkg/__pycache__/m.cpython-311.pyc",
        "pkg/m.pyc",
        "m.pyc",
        "pkg/m.pyc.txt",
        "pkg/x.pyo",
        "pkg/sub/__pycache__/a.txt",
        "mypkg.egg-info/PKG-INFO",
        "pkg/inner.egg-info/x",
        "app.log",
        "pkg/logs/deep.log",
        "pkg/logs/readme.txt",
        "foo.whl",
        "pkg/wheels/bar.whl",
        "thing.egg",
        "pkg/thing.egg",
        ".ruff_cache/x",
        "pkg/.mypy_cache/y",
        "pkg/.pytest_cache/z",
        "pkg/vendored/.git/HEAD",
        "pkg/vendored/lib.py",
        "pkg/sub2/.git",
    ]:
        write(d / rel, f"{rel}\n")
    return d


@tree(
    include={
        "pkg/alias.py",
        "pkg/abs_alias.py",
        "outside_file.txt",
        "outside_dir/o1.txt",
        "outside_dir/deep/o2.txt",
    },
    exclude={"dangling.py", "pkg/dangling_dir", "venv/a.py", "ignored_link/a.py", "pkg/sock"},
)
def tree_symlinks(d: Path) -> Path:
    """File and directory links (to a sibling inside the root and to places outside it), dangling
    links, a link named like a standard dir, links matched by .gitignore, a socket."""
    outside = d.parent / f"{d.name}-outside"
    write(outside / "o.txt", "outside file\n", mode=0o640)
    write(outside / "dir/o1.txt", "outside dir\n")
    write(outside / "dir/deep/o2.txt", "deeper\n", mode=0o755)
    root = d
    write(root / "real/a.py", "A = 1\n")
    write(root / "real/sub/b.py", "B = 2\n")
    link(root / "link_to_real", "real")
    write(root / "pkg/__init__.py")
    write(root / "pkg/mod.py", "X = 1\n", mode=0o755)
    link(root / "pkg/alias.py", "mod.py")
    link(root / "pkg/abs_alias.py", root / "pkg/mod.py")
    link(root / "dangling.py", "nowhere.py")
    link(root / "pkg/dangling_dir", "../missing_dir")
    link(root / "outside_file.txt", outside / "o.txt")
    link(root / "outside_dir", outside / "dir")
    link(root / "venv", "real")
    link(root / "ignored_link", "real")
    link(root / "notdir_link", "other_real")
    write(root / "other_real/r.txt", "r\n")
    write(root / ".gitignore", "ignored_link\nnotdir_link/\n")
    make_socket(root / "pkg/sock")
    git_repo(root, [".gitignore", "real", "pkg/__init__.py", "pkg/mod.py", "other_real"])
    return root


@tree(include={"loop/pkg/a.py"})
def tree_symlink_ancestor_loop(d: Path) -> Path:
    """A directory link to an ancestor: both walks visit each directory inode once."""
    write(d / "loop/pkg/a.py", "A = 1\n")
    link(d / "loop/pkg/up", "..")
    link(d / "loop/top", "..")
    write(d / "b.py", "B = 2\n")
    return d


@tree(include={"pkg/b.py"}, exclude={"pkg/self"})
def tree_symlink_self_loop(d: Path) -> Path:
    """A link that points to itself (never resolves)."""
    write(d / "pkg/b.py", "B = 2\n")
    link(d / "pkg/self", "self")
    return d


@tree(
    include={"x755.sh", "r444.txt", "p600.key", "u700.bin", "g2755", "s1777", "umask.txt"}
    | {"hard/x_again.sh", "hard/r_again.txt"}
)
def tree_modes(d: Path) -> Path:
    """Executable, read-only and private modes, setgid and sticky bits: kept in the tar headers."""
    write(d / "x755.sh", "#!/bin/sh\necho hi\n", mode=0o755)
    write(d / "r444.txt", "read only\n", mode=0o444)
    write(d / "p600.key", "private\n", mode=0o600)
    write(d / "u700.bin", b"\x7fELF", mode=0o700)
    write(d / "g2755", "setgid\n", mode=0o2755)
    write(d / "s1777", "sticky\n", mode=0o1777)
    write(d / "g640/x.txt", "group\n", mode=0o640)
    write(d / "umask.txt", "default mode\n")
    # Hard links: flyte's tarfile dereferences, so each name is a full regular member.
    (d / "hard").mkdir()
    os.link(d / "x755.sh", d / "hard/x_again.sh")
    os.link(d / "r444.txt", d / "hard/r_again.txt")
    return d


@tree(
    include={
        "café.py",
        "cafe\u0301.py",
        "日本語/モジュール.py",
        "emoji_🚀.txt",
        "space name.txt",
        "quote'name.py",
        'dq"name.txt',
        "back\\slash.txt",
        "empty.py",
        "日本語/空.txt",
        "ünïcode.tmp",
        "new\nline.tmp",
        "tab\tname.py",
    },
    exclude={"plain.tmp"},
)
def tree_unicode_and_empty(d: Path) -> Path:
    """Non-ASCII (NFC and NFD), spaces, quotes and backslashes in names, empty files. In a git
    repository: git quotes non-ASCII names, so flyte never matches them against .gitignore."""
    write(d / ".gitignore", "*.tmp\n")
    write(d / "café.py", "NFC = 'é'\n")
    write(d / "cafe\u0301.py", "NFD = 'é'\n")
    write(d / "日本語/モジュール.py", "名前 = 1\n")
    write(d / "日本語/空.txt")
    write(d / "emoji_🚀.txt", "🚀\n")
    write(d / "space name.txt", "space\n")
    write(d / "quote'name.py", "q = 1\n")
    write(d / 'dq"name.txt', "dq\n")
    write(d / "back\\slash.txt", "bs\n")
    write(d / "empty.py")
    write(d / "pkg/__init__.py")
    write(d / "ünïcode.tmp", "untracked, ignored by git, quoted by git\n")
    write(d / "plain.tmp", "untracked, ignored\n")
    write(d / "new\nline.tmp", "untracked, ignored by git, quoted by git\n")
    write(d / "tab\tname.py", "T = 1\n")
    git_repo(d, [".gitignore", "café.py", "日本語", "empty.py", "pkg/__init__.py"])
    return d


@tree(
    include={"data.csv", "pkg/secret.txt", "pkg/nested/.git", ".gitignore"},
    exclude={"pkg/private.txt", "pkg/.git/config", "build.log"},
)
def tree_no_git(d: Path) -> Path:
    """Outside any git repository: .gitignore has no effect, .flyteignore does."""
    write(d / ".gitignore", "*.csv\nsecret.txt\n")
    write(d / ".flyteignore", "private.txt\n")
    write(d / "data.csv", "a,b\n")
    write(d / "pkg/__init__.py")
    write(d / "pkg/secret.txt", "not a secret to flyte\n")
    write(d / "pkg/private.txt", "flyteignored\n")
    write(d / "pkg/.git/config", "[core]\n")
    write(d / "pkg/nested/.git", "gitdir: ../../elsewhere\n")
    write(d / "build.log", "log\n")
    return d


@tree(
    include={"pkg/a.csv", "pkg/m.py", ".flyteignore/inner.txt", ".gitignore/inner.txt"},
)
def tree_ignore_file_is_directory(d: Path) -> Path:
    """A ``.gitignore`` and a ``.flyteignore`` that are directories: git refuses the exclude
    file, so no .gitignore rule applies; the directories' files are bundled."""
    write(d / ".gitignore/inner.txt", "z\n")
    write(d / ".flyteignore/inner.txt", "z\n")
    write(d / "pkg/.gitignore", "*.csv\n")
    write(d / "pkg/a.csv", "untracked, ignored if git could be asked\n")
    write(d / "pkg/m.py", "M = 1\n")
    git_repo(d, ["pkg/m.py"])
    return d


@tree(include={"pkg/a.csv", "pkg/m.py", ".gitignore"})
def tree_dangling_ignore_file(d: Path) -> Path:
    """A nested ``.gitignore`` that is a dangling link. flyte passes it to ``git ls-files
    --exclude-from``, git fails (exit 128) and flyte applies no .gitignore rule at all."""
    write(d / ".gitignore", "*.csv\n")
    write(d / "pkg/a.csv", "untracked, ignored by the root .gitignore\n")
    write(d / "pkg/m.py", "M = 1\n")
    link(d / "pkg/.gitignore", "../missing/gitignore")
    git_repo(d, [".gitignore", "pkg/m.py"])
    return d


@tree(
    include={"pkg/b.dat", "pkg/sub/keep.log.txt", "linked/x.tmp", "pkg/sub/skip.py"}
    | {"quirk/a.txt", "quirk/local/b.py"},
    # pkg/c.txt (untracked): quirk/.flyteignore's "*.txt" is also handed to git, for every path.
    exclude={"pkg/a.tmp", "pkg/bad.json", "linked/sub/skip.py", "pkg/sub/keepme.py", "quirk/c.md"}
    | {"pkg/c.txt"},
)
def tree_odd_ignore_files(d: Path) -> Path:
    """Ignore files that are links to files elsewhere, empty, comments only, not UTF-8 (flyte
    skips an unreadable .flyteignore, git still reads it), with CRLF line ends, or with a lone
    ``!``."""
    shared = d.parent / f"{d.name}-shared"
    write(shared / "gitignore", "*.tmp\r\n")
    write(shared / "flyteignore", "sub/skip.py\n")
    link(d / ".gitignore", shared / "gitignore")
    write(d / "pkg/.gitignore")
    write(d / "pkg/.flyteignore", "# only a comment\n\n   \n")
    write(d / "pkg/sub/.flyteignore", b"\xff\xfe*.txt\nkeep*\n")
    write(d / "pkg/sub/.gitignore", "*.json\n")
    link(d / "pkg/.flyteignore2", shared / "flyteignore")
    link(d / "linked/.flyteignore", shared / "flyteignore")
    write(d / "linked/x.tmp", "tracked tmp\n")
    write(d / "linked/sub/skip.py", "skipped through a linked .flyteignore\n")
    write(d / "pkg/a.tmp", "untracked tmp\n")
    write(d / "pkg/b.dat", "dat\n")
    write(d / "pkg/c.txt", "txt\n")
    write(d / "pkg/bad.json", "{}\n")
    write(d / "pkg/sub/keep.log.txt", "tracked: the .flyteignore that names it cannot be read\n")
    write(d / "pkg/sub/keepme.py", "untracked: git reads the same file and ignores it\n")
    write(d / "pkg/sub/skip.py", "S = 1\n")
    # A lone "!" becomes "!**/", which re-includes everything the lines before it excluded.
    write(d / "quirk/.flyteignore", "*.txt\nlocal/\n!\n*.md\n")
    write(d / "quirk/a.txt", "kept by the lone !\n")
    write(d / "quirk/local/b.py", "kept by the lone !\n")
    write(d / "quirk/c.md", "excluded after the lone !\n")
    git_repo(
        d,
        [".gitignore", "pkg/.gitignore", "pkg/.flyteignore", "quirk"],
        force=["linked/x.tmp", "pkg/sub/keep.log.txt"],
    )
    return d


@tree(
    include={"my_app/__init__.py", "my_app/tasks.py", "my_app/py.typed", "my_app/data/lookup.json"},
    exclude={"my_app/conf.local", "my_app.egg-info/PKG-INFO", "my_app/__pycache__/tasks.cpython-311.pyc"},
)
def tree_src_layout(d: Path) -> Path:
    """A project with a src layout in a repository; the bundle root is ``src``."""
    write(
        d / "pyproject.toml",
        '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n\n'
        '[project]\nname = "my-app"\nversion = "0.1.0"\ndependencies = ["flyte"]\n',
    )
    write(d / ".gitignore", "*.local\n__pycache__/\n")
    write(d / "README.md", "# my app\n")
    write(d / "tests/test_tasks.py", "def test_x(): pass\n")
    src = d / "src"
    write(src / "my_app/__init__.py", '"""My app."""\n')
    write(
        src / "my_app/tasks.py",
        'import flyte\n\nenv = flyte.TaskEnvironment(name="my_app")\n\n\n'
        "@env.task\ndef hello(n: int) -> int:\n    return n + 1\n",
    )
    write(src / "my_app/py.typed")
    write(src / "my_app/data/lookup.json", '{"a": 1}\n')
    write(src / "my_app/conf.local", "local=1\n")
    write(src / "my_app.egg-info/PKG-INFO", "Name: my-app\n")
    write(src / "my_app/__pycache__/tasks.cpython-311.pyc", b"\x00" * 16)
    git_repo(d, ["pyproject.toml", ".gitignore", "README.md", "tests", "src/my_app"])
    return src


@tree(
    include={"d.txt", "pkg/README.md", "Makefile", "datum/d.txt"},
    exclude={
        "x.csv",
        "y.CSV",
        "Data/a.txt",
        "data2/DATA/b.txt",
        "README.md",
        "secrets.yaml",
        "SECRET.txt",
        "a.txt",
        "b.TXT",
        "pkg/c.Txt",
    },
)
def tree_case_flyteignore(d: Path) -> Path:
    """Case in .flyteignore patterns: flyte's docker-style matcher lower-cases both sides."""
    write(d / ".flyteignore", "*.CSV\ndata/\n/readme.MD\nSecret*\n[A-C]*.txt\n")
    for rel in [
        "x.csv",
        "y.CSV",
        "Data/a.txt",
        "data2/DATA/b.txt",
        "datum/d.txt",
        "README.md",
        "pkg/README.md",
        "secrets.yaml",
        "SECRET.txt",
        "a.txt",
        "b.TXT",
        "pkg/c.Txt",
        "d.txt",
        "Makefile",
    ]:
        write(d / rel, rel + "\n")
    git_repo(d, [".flyteignore", "Makefile", "x.csv"])
    return d


@tree(include={"big/random.bin", "big/one_mib.bin", "sizes/s512", "sizes/s0"})
def tree_large_and_long(d: Path) -> Path:
    """Sizes around tar blocks and the 1 MiB write chunk, incompressible data, long names and
    paths (PAX path records)."""
    rng = random.Random(1234)
    write(d / "big/random.bin", rng.randbytes(3 * (1 << 20) + 17))
    write(d / "big/one_mib.bin", b"z" * (1 << 20))
    write(d / "big/near_mib.bin", rng.randbytes((1 << 20) - 1))
    for size in (0, 1, 511, 512, 513, 10240, 10241):
        write(d / f"sizes/s{size}", rng.randbytes(size))
    write(d / ("n" * 200 + ".py"), "long name\n")
    deep = Path(*(f"level{i:02d}_{'d' * 20}" for i in range(12)))
    write(d / deep / "deep.txt", "deep\n")
    write(d / "exactly_100" / ("e" * (100 - len("exactly_100/"))), "100\n")
    return d


NAME_POOL = ["pkg", "lib", "data", "venv", "env", "build", "dist", ".venv", "__pycache__", "sub"]
NAME_POOL += ["Docs", "tests", "a b", "ü", "cache", "scratch", "node_modules", ".hidden"]
EXTS = [".py", ".py", ".py", ".txt", ".pyc", ".log", ".json", ".csv", ".bin", ".whl", ".md", ".MD", ""]
GITIGNORE_POOL = ["*.csv", "data/", "/tmp*", "*.json", "!keep*.json", "sub/", "**/gen_*", "*.bin"]
GITIGNORE_POOL += ["Docs", "scratch*", "*.txt", "!important*"]
FLYTEIGNORE_POOL = ["*.bin", "/secret*", "cache/", "!important*.bin", "**/scratch*", "*.MD"]
FLYTEIGNORE_POOL += ["lib/*.txt", "a b/", "gen_*", "!keep*", "/ü/", "tests/**/*.json"]


@tree(
    include={"top.py", "b/b.py", "b/.flyteignore"},
    exclude={"a/a.py", "a/.flyteignore", "c/c.py", "c/.flyteignore", "d/d.py", "d/.flyteignore"},
)
def tree_flyteignore_matches_its_own_directory(d: Path) -> Path:
    """Found by the differential fuzzer: flyte matches a .flyteignore's patterns against its own
    directory too, as ``.`` (``relative_to`` of the directory itself), so ``?``, ``*`` or ``.*``
    there leave the whole directory out; ``*.txt`` does not."""
    write(d / "top.py", "T = 1\n")
    for name, pattern in (("a", "?"), ("b", "*.txt"), ("c", "*"), ("d", ".*\n!d.py")):
        write(d / name / ".flyteignore", pattern + "\n")
        write(d / name / f"{name}.py", f"{name.upper()} = 1\n")
    return d


@tree(include={"..hidden", ".._", "...", "pkg/..nested", "pkg/mod.py"})
def tree_dot_dot_names(d: Path) -> Path:
    """Found by the differential fuzzer: flyte drops a member whose relative path starts with
    ``..`` from the tar (taking it for a path outside the root) but keeps it in the list and the
    digest; a nested ``pkg/..x`` is archived. A symlink named that way too."""
    write(d / "..hidden", "top-level dot-dot\n")
    write(d / "...", "three dots\n")
    write(d / "pkg/..nested", "nested dot-dot\n")
    write(d / "pkg/mod.py", "X = 1\n")
    link(d / ".._", "pkg/mod.py")
    return d


@tree()
def tree_random(d: Path) -> Path:
    """A few hundred files from a seeded generator: random names from a pool full of ignore-rule
    names, random modes and sizes, random ignore files, some links, some files tracked."""
    rng = random.Random(20240521)
    dirs = [Path()]
    for _ in range(40):
        parent = rng.choice(dirs)
        if len(parent.parts) < 4:
            dirs.append(parent / rng.choice(NAME_POOL))
    files: list[Path] = []
    stems = ["mod", "gen_x", "keep", "important", "secret", "tmp", "scratch", "file", "Data", "env"]
    for i in range(320):
        rel = rng.choice(dirs) / f"{rng.choice(stems)}{i}{rng.choice(EXTS)}"
        size = rng.choice([0, 1, 17, 200, 4000, 9000]) if rng.random() < 0.97 else rng.randrange(300_000)
        data = rng.randbytes(size) if rng.random() < 0.3 else (f"# {rel}\n" * (size // 8 + 1)).encode()
        write(d / rel, data, mode=rng.choice([0o644, 0o644, 0o755, 0o600, 0o444]))
        files.append(rel)
    for directory in rng.sample(dirs, 12):
        pool, name = rng.choice([(GITIGNORE_POOL, ".gitignore"), (FLYTEIGNORE_POOL, ".flyteignore")])
        target = d / directory / name
        if not target.exists():
            write(target, "\n".join(rng.sample(pool, rng.randint(1, 4))) + "\n")
    for i in range(8):
        src = rng.choice(files)
        link_dir = rng.choice(dirs)
        link_path = d / link_dir / f"link{i}.py"
        if not link_path.exists() and not link_path.is_symlink():
            link(link_path, os.path.relpath(d / src, d / link_dir))
    tracked = [f.as_posix() for f in files if rng.random() < 0.5]
    ignore_files = [p.relative_to(d).as_posix() for p in d.rglob(".*ignore")]
    git_repo(d, [], force=tracked + ignore_files)
    return d


# --- the oracle, once per module ----------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    root: Path
    flyte: FlyteBundle


def _in_git_repo(path: Path) -> bool:
    out = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=path, capture_output=True, check=False)
    return out.returncode == 0


@pytest.fixture(scope="module")
def isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """hatch-flyte's stat cache in a temporary directory for this module."""
    cache = tmp_path_factory.mktemp("hatch-flyte-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HATCH_FLYTE_CACHE_DIR", str(cache))
        mp.delenv("HATCH_FLYTE_NO_CACHE", raising=False)
        yield cache


@pytest.fixture(scope="module")
def aged_tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """A tree made early, so it is older than the stat cache's racy window when its test runs."""
    root = tmp_path_factory.mktemp("aged") / "proj"
    write(root / "pkg/__init__.py")
    write(root / "pkg/tasks.py", "import flyte\n\nenv = flyte.TaskEnvironment(name='aged')\n")
    write(root / "pkg/util.py", "def double(x):\n    return 2 * x\n")
    write(root / "pkg/data/table.csv", "a,b\n1,2\n")
    return root.resolve(), time.time()


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory, aged_tree: tuple[Path, float]) -> dict[str, Case]:
    base = tmp_path_factory.mktemp("trees").resolve()
    if _in_git_repo(base):
        pytest.skip(f"the temporary directory {base} is inside a git repository; trees need a clean parent")
    roots = {}
    for name, builder in TREES.items():
        (base / name).mkdir()
        roots[name] = builder(base / name).resolve()
    out = tmp_path_factory.mktemp("flyte-out")
    results = flyte_bundles(
        [(root, out / name) for name, root in roots.items()], tmp_path_factory.mktemp("oracle")
    )
    return {name: Case(roots[name], result) for (name, result) in zip(roots, results, strict=True)}


def tree_and_compression_params() -> list[object]:
    """Every tree in both modes; trees with a known incompatibility are strict xfails."""
    params: list[object] = []
    for name in TREES:
        marks = []
        if name in XFAIL:
            reason, raises = XFAIL[name]
            marks = [pytest.mark.xfail(strict=True, reason=reason, raises=raises)]
        params += [pytest.param(name, c, marks=marks, id=f"{name}-{c}") for c in COMPRESSIONS]
    return params


# --- comparisons ---------------------------------------------------------------------------------


def first_difference(ours: bytes, theirs: bytes) -> str:
    """Where two tars first differ, by member, for a readable failure."""

    def members(data: bytes) -> list[tuple[str, int, int, str, str, int]]:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
            return [(m.name, m.size, m.mode, m.uname, repr(m.pax_headers), int(m.mtime)) for m in tf]

    mine, flyte = members(ours), members(theirs)
    for a, b in zip(mine, flyte, strict=False):
        if a != b:
            return f"first differing member: ours={a} flyte={b}"
    if len(mine) != len(flyte):
        return f"member count: ours={len(mine)} flyte={len(flyte)}"
    offset = next((i for i, (x, y) in enumerate(zip(ours, theirs, strict=False)) if x != y), None)
    return f"same members, bytes differ at offset {offset} (lengths {len(ours)} vs {len(theirs)})"


def assert_same_as_flyte(bundle: Bundle, flyte: FlyteBundle) -> None:
    assert flyte.error is None, f"flyte failed: {flyte.error}"
    assert list(bundle.files) == list(flyte.files)
    assert bundle.name == flyte.name
    assert bundle.digest == flyte.name.removeprefix("fast").removesuffix(".tar.gz")
    data = bundle.path.read_bytes()
    assert bundle.size == len(data)
    tar = gzip.decompress(data)
    assert bundle.tar_size == len(tar)
    theirs = flyte.tar_bytes()
    # flyte's tar holds its file list minus top-level names starting with ``..`` (see
    # tree_dot_dot_names): compare with its own tar, not its list.
    assert tar_member_names(tar) == tar_member_names(theirs)
    assert tar == theirs, first_difference(tar, theirs)
    if bundle.compression == "compatible":
        assert data == flyte.read_bytes(), "same tar, different gzip stream"
        assert hashlib.md5(data).hexdigest() == flyte.computed_version


# --- tests ------------------------------------------------------------------------------------


def test_enough_trees() -> None:
    assert len(TREES) >= 12


@pytest.mark.parametrize("name", list(TREES))
def test_tree_exercises_its_case(name: str, cases: dict[str, Case]) -> None:
    """flyte's own file list shows the quirk each tree was built for (and is not empty)."""
    case = cases[name]
    assert case.flyte.error is None, case.flyte.error
    assert case.flyte.files, "flyte bundled nothing"
    include, exclude = EXPECT[name]
    files = set(case.flyte.files)
    assert include <= files, f"missing from flyte's list: {sorted(include - files)}"
    assert not exclude & files, f"unexpectedly in flyte's list: {sorted(exclude & files)}"
    for rel in include | exclude:
        p = case.root / rel
        assert p.exists() or p.is_symlink(), f"the tree builder did not create {rel}"
    if name == "random":
        assert len(files) >= 100


@pytest.mark.parametrize(("name", "compression"), tree_and_compression_params())
def test_same_bundle_as_flyte(
    name: str, compression: Compression, cases: dict[str, Case], isolated_cache: Path, tmp_path: Path
) -> None:
    case = cases[name]
    bundle = build(case.root, tmp_path / "out", BundleOptions(compression=compression))
    assert not bundle.reused
    assert_same_as_flyte(bundle, case.flyte)


def test_same_bundle_as_flyte_without_git_on_path(
    cases: dict[str, Case], isolated_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No git executable: flyte applies no .gitignore and does not look above the root for a
    .flyteignore; neither may hatch-flyte."""
    names = ["git_nested_gitignore", "git_root_above"]
    results = flyte_bundles(
        [(cases[n].root, tmp_path / "flyte" / n) for n in names], tmp_path / "oracle", tools=("tar", "gzip")
    )
    for name, flyte in zip(names, results, strict=True):
        assert set(flyte.files) != set(cases[name].flyte.files), "git made no difference to flyte"
    monkeypatch.setenv("PATH", str(tools_dir(tmp_path / "nogit", ("tar", "gzip"))))
    assert shutil.which("git") is None
    for name, flyte in zip(names, results, strict=True):
        bundle = build(cases[name].root, tmp_path / "out" / name, BundleOptions(compression="compatible"))
        assert_same_as_flyte(bundle, flyte)


def test_tree_is_not_modified_by_our_build(
    cases: dict[str, Case], isolated_cache: Path, tmp_path: Path
) -> None:
    """Building (ours, into an outdir outside the root) leaves the root as flyte saw it."""
    case = cases["git_nested_gitignore"]
    before = sorted(p.relative_to(case.root).as_posix() for p in case.root.rglob("*"))
    build(case.root, tmp_path / "out", BundleOptions(compression="compatible"))
    assert sorted(p.relative_to(case.root).as_posix() for p in case.root.rglob("*")) == before


def test_outdir_inside_the_root_is_left_out(isolated_cache: Path, tmp_path: Path) -> None:
    """An output directory under the root never ends up in the bundle, even on a rebuild; what
    remains is what flyte bundles from the same tree without the output directory."""
    root = tmp_path / "proj"
    write(root / "pkg/__init__.py")
    write(root / "pkg/a.py", "A = 1\n")
    outdir = root / "bundles"
    first = build(root, outdir, BundleOptions(compression="compatible"))
    second = build(root, outdir, BundleOptions(compression="compatible", use_cache=False))
    assert second.path == first.path and second.reused
    shutil.move(str(outdir), str(tmp_path / "moved"))
    flyte = flyte_bundles([(root, tmp_path / "flyte-out")], tmp_path / "oracle")[0]
    assert first.files == flyte.files
    assert (tmp_path / "moved" / first.name).read_bytes() == flyte.read_bytes()


# --- the CLI ----------------------------------------------------------------------------------


def _cli(args: list[str], cache: Path) -> dict[str, object]:
    env = {**os.environ, "HATCH_FLYTE_CACHE_DIR": str(cache)}
    proc = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    data: dict[str, object] = json.loads(proc.stdout)
    return data


def _check_cli_json(data: dict[str, object], outdir: Path, flyte: FlyteBundle, compression: str) -> None:
    path = Path(str(data["path"]))
    assert path.name == flyte.name
    assert path.parent.resolve() == outdir.resolve()
    assert data["name"] == flyte.name
    assert data["digest"] == flyte.name.removeprefix("fast").removesuffix(".tar.gz")
    assert data["files"] == list(flyte.files)
    assert data["size"] == path.stat().st_size
    assert data["compression"] == compression
    assert data["reused"] is False
    tar = gzip.decompress(path.read_bytes())
    assert data["tar_size"] == len(tar)
    assert tar == flyte.tar_bytes()
    if compression == "compatible":
        assert path.read_bytes() == flyte.read_bytes()


CLI_FLAGS = ("--json", "--compression", "compatible")


def test_cli_json_src_layout_project(cases: dict[str, Case], isolated_cache: Path, tmp_path: Path) -> None:
    """``python -m hatch_flyte.frontends.cli bundle PROJECT``: a src layout project bundles ``src/``, as
    ``flyte deploy --root-dir src`` does."""
    case = cases["src_layout"]
    out = tmp_path / "out"
    data = _cli(
        [
            sys.executable,
            "-m",
            "hatch_flyte.frontends.cli",
            "bundle",
            str(case.root.parent),
            "-o",
            str(out),
            *CLI_FLAGS,
        ],
        isolated_cache,
    )
    assert Path(str(data["root"])) == case.root
    _check_cli_json(data, out, case.flyte, "compatible")


def test_cli_script_plain_directory(cases: dict[str, Case], isolated_cache: Path, tmp_path: Path) -> None:
    """The ``hatch-flyte`` console script on a directory without pyproject.toml, default options."""
    script = shutil.which("hatch-flyte", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("the hatch-flyte console script is not installed next to this Python")
    case = cases["flyteignore_patterns"]
    out = tmp_path / "out"
    data = _cli([script, "bundle", str(case.root), "-o", str(out), "--json"], isolated_cache)
    _check_cli_json(data, out, case.flyte, "fast")


# --- reuse ------------------------------------------------------------------------------------


def test_unchanged_rebuild_is_reused_and_a_change_is_seen(
    aged_tree: tuple[Path, float], isolated_cache: Path, tmp_path: Path
) -> None:
    root, made = aged_tree
    # Let the files age past the racy window so the stat cache may remember the tree.
    time.sleep(max(0.0, made + statcache.RACY_SECONDS + 0.3 - time.time()))
    out = tmp_path / "out"
    opts = BundleOptions(compression="compatible")
    first = build(root, out, opts)
    assert not first.reused
    cache_entries = list((isolated_cache / "bundles").glob("*.json"))
    assert cache_entries, "the aged tree's digest was not remembered"
    data = first.path.read_bytes()
    st = first.path.stat()

    second = build(root, out, opts)
    assert second.reused
    assert (second.path, second.digest, second.files) == (first.path, first.digest, first.files)
    assert second.size == len(data) and second.tar_size == first.tar_size
    assert second.path.read_bytes() == data
    assert (second.path.stat().st_ino, second.path.stat().st_mtime_ns) == (st.st_ino, st.st_mtime_ns)

    # A fast build into another directory is its own file with the same name.
    fast = build(root, tmp_path / "out-fast", BundleOptions(compression="fast"))
    assert fast.name == first.name and not fast.reused
    assert gzip.decompress(fast.path.read_bytes()) == gzip.decompress(data)
    assert build(root, tmp_path / "out-fast", BundleOptions(compression="fast")).reused

    # The bundle was deleted: the cache knows the digest, but the file is written again.
    first.path.unlink()
    again = build(root, out, opts)
    assert not again.reused and again.path.read_bytes() == data

    # A snapshot of the tree before the change, for flyte.
    before = tmp_path / "before" / "proj"
    shutil.copytree(root, before, symlinks=True)

    # Same size, same mtime, different content: only ctime (and the bytes) change.
    target = root / "pkg/util.py"
    st_t = target.stat()
    target.write_bytes(target.read_bytes().replace(b"2 * x", b"3 * x"))
    os.utime(target, ns=(st_t.st_atime_ns, st_t.st_mtime_ns))
    assert target.stat().st_size == st_t.st_size
    changed = build(root, out, opts)
    assert not changed.reused
    assert changed.name != first.name

    flyte_before, flyte_after = flyte_bundles(
        [(before, tmp_path / "flyte-before"), (root, tmp_path / "flyte-after")], tmp_path / "oracle"
    )
    assert flyte_before.name == first.name
    assert_same_as_flyte(changed, flyte_after)
    assert (out / first.name).read_bytes() == flyte_before.read_bytes()
