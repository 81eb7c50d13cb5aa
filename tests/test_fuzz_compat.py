"""Differential fuzzing: hatch-flyte's bundle against flyte 2.12.1's ``build_code_bundle`` on
generated trees.

Hypothesis generates project trees (nested packages, names with spaces, unicode and leading dots,
empty directories, ``.gitignore``/``.flyteignore`` files with negations, anchors and directory
patterns at several levels, a git repository with tracked and untracked files, symlinks to files
and directories inside the root, large and empty files). flyte builds each one in a long-lived
process (:class:`flyte_oracle.FlyteOracle`), hatch-flyte builds it in ``compatible`` mode (and
sometimes ``fast``), and the two must agree on the file list, the name, the tar bytes and the
``.tar.gz`` bytes, or both refuse the tree.

The default profile runs a fixed number of examples from a fixed seed (CI); ``HYPOTHESIS_PROFILE=long``
runs thousands with a random seed. Counterexamples become plain tests in ``test_compat.py``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from flyte_oracle import FlyteOracle
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_compat import assert_same_as_flyte, git_repo, link, write

from hatch_flyte.bundle import BundleOptions, build
from hatch_flyte.errors import BundleError

settings.register_profile(
    "ci",
    max_examples=60,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "long",
    max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "5000")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")

#: Names that hit flyte's standard list, fnmatch's special characters, spaces, unicode, dots.
NAMES = (
    "pkg", "sub", "data", "tests", "a b", "ünï", "naïve café", "日本", ".hidden", ".env", "dist",
    "build", "env", "venv", ".venv", "__pycache__", ".cache", ".idea", "x.egg-info", "node_modules",
    "Mixed Case", "-dash", "#hash", "a[1]", "!bang", "trail ", "x.log", "mod.pyc", "lib.whl", "__init__",
)  # fmt: skip
EXTS = ("", ".py", ".py", ".txt", ".csv", ".log", ".pyc", ".tmp", ".json", ".whl", ".egg", ".md")


@dataclass
class Tree:
    """A generated tree, described by what is made where (for a readable failure)."""

    dirs: list[str] = field(default_factory=list)
    files: dict[str, tuple[bytes | int, int]] = field(default_factory=dict)
    ignore_files: dict[str, list[str]] = field(default_factory=dict)
    #: Ignore files of the repository above the root (``git == "above"``).
    above: dict[str, list[str]] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    git: str | None = None
    tracked: list[str] = field(default_factory=list)
    fast: bool = False


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def _relative(target: str, source_dir: str) -> str:
    return os.path.relpath(target or ".", source_dir or ".")


names = st.one_of(
    st.sampled_from(NAMES),
    st.text(alphabet="abcxyz_-. é", min_size=1, max_size=6).filter(
        lambda s: s not in (".", "..", ".git") and "/" not in s
    ),
)


@st.composite
def patterns(draw: st.DrawFn, known: list[str]) -> str:
    """A gitignore-style line: negation, anchor, directory-only, wildcards, comments."""
    pool = [*known, *NAMES[:12]]
    body: str = draw(
        st.one_of(
            st.sampled_from(pool).map(lambda p: p.rsplit("/", 1)[-1]),
            st.sampled_from(pool),
            st.sampled_from(EXTS[1:]).map(lambda e: "*" + e),
            st.sampled_from(pool).map(lambda p: "**/" + p.rsplit("/", 1)[-1]),
            st.sampled_from(pool).map(lambda p: p + "/**"),
            st.sampled_from(pool).map(lambda p: p.rsplit("/", 1)[-1][:2] + "*"),
            st.sampled_from(["*", "?", "*/*.py", "**", "[a-p]*", "#comment", "", "\\#hash", "a b"]),
        )
    )
    bang = draw(st.booleans()) and draw(st.booleans())
    anchor = draw(st.booleans()) and draw(st.booleans())
    slash = draw(st.booleans()) and draw(st.booleans())
    return ("!" if bang else "") + ("/" if anchor else "") + body + ("/" if slash else "")


@st.composite
def trees(draw: st.DrawFn) -> Tree:
    t = Tree()
    dirs = [""]
    for _ in range(draw(st.integers(0, 6))):
        parent = draw(st.sampled_from(dirs))
        path = _join(parent, draw(names))
        if path not in dirs and path.count("/") < 4:
            dirs.append(path)
    t.dirs = dirs[1:]
    for _ in range(draw(st.integers(1, 12))):
        d = draw(st.sampled_from(dirs))
        path = _join(d, draw(names) + draw(st.sampled_from(EXTS)))
        if path in dirs or path in t.files:
            continue
        if any(x.startswith(path + "/") for x in dirs):
            continue
        content: bytes | int = draw(
            st.one_of(
                st.just(b""),
                st.binary(max_size=64),
                st.text(max_size=40).map(lambda s: s.encode()),
                st.integers(200_000, 1_500_000),  # a large file, by size (made from a seed)
            )
        )
        mode = draw(st.sampled_from([0o644, 0o644, 0o755, 0o600, 0o664]))
        t.files[path] = (content, mode)
    for _ in range(draw(st.integers(0, 4))):
        d = draw(st.sampled_from(dirs))
        kind = draw(st.sampled_from([".gitignore", ".flyteignore"]))
        lines = draw(st.lists(patterns([*t.files, *t.dirs]), min_size=1, max_size=5))
        t.ignore_files[_join(d, kind)] = lines
    for _ in range(draw(st.integers(0, 3))):
        d = draw(st.sampled_from(dirs))
        path = _join(d, draw(names) + draw(st.sampled_from(["", ".py", "_link"])))
        if path in dirs or path in t.files or path in t.ignore_files or path in t.links:
            continue
        if any(x.startswith(path + "/") for x in dirs):
            continue
        targets = [*t.files, *t.dirs]
        if not targets:
            continue
        t.links[path] = draw(st.sampled_from(targets))
    t.git = draw(st.sampled_from([None, "root", "root", "above"]))
    if t.git == "above":
        for kind in draw(st.lists(st.sampled_from([".gitignore", ".flyteignore"]), unique=True)):
            known = [*t.files, *t.dirs]
            t.above[kind] = draw(
                st.lists(patterns([*known, *("src/" + k for k in known)]), min_size=1, max_size=4)
            )
    if t.git is not None:
        candidates = sorted(
            p
            for p in [*t.files, *t.ignore_files, *t.links]
            if not any(p.startswith(k + "/") for k in t.links)
        )
        t.tracked = draw(st.lists(st.sampled_from(candidates), unique=True)) if candidates else []
    t.fast = draw(st.booleans())
    return t


def _large(size: int) -> bytes:
    # Compressible but not trivial: a repeating text line with a counter.
    line = b"x = %d  # a large generated module line\n"
    out = bytearray()
    i = 0
    while len(out) < size:
        out += line % i
        i += 1
    return bytes(out[:size])


def make_tree(base: Path, t: Tree) -> Path:
    """Create ``t`` under ``base``; return the bundle root."""
    top = base / "repo"
    root = top / "src" if t.git == "above" else top
    root.mkdir(parents=True)
    for d in t.dirs:
        (root / d).mkdir(parents=True, exist_ok=True)
    for path, (content, mode) in t.files.items():
        write(root / path, _large(content) if isinstance(content, int) else content, mode)
    for path, lines in t.ignore_files.items():
        write(root / path, "\n".join(lines) + "\n")
    for path, target in t.links.items():
        link(root / path, _relative(target, os.path.dirname(path)))
    if t.git is not None:
        prefix = "src/" if t.git == "above" else ""
        for name, lines in t.above.items():
            write(top / name, "\n".join(lines) + "\n")
        # Tracked files are added with -f: ignored but tracked is a case of its own.
        git_repo(top, [], force=[prefix + p for p in t.tracked] + list(t.above))
    return root


@pytest.fixture(scope="module")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlyteOracle]:
    o = FlyteOracle(tmp_path_factory.mktemp("fuzz-oracle"))
    try:
        yield o
    finally:
        o.close()


def _directory_graph_has_a_cycle(root: Path) -> bool:
    """Whether the directories under ``root``, with directory links followed, form a cycle (the
    condition for a walk that follows links to go round for ever)."""
    children: dict[Path, set[Path]] = {}
    todo = [root.resolve()]
    while todo:
        here = todo.pop()
        if here in children:
            continue
        children[here] = {p.resolve() for p in here.iterdir() if p.is_dir()}
        todo.extend(children[here])
    state: dict[Path, int] = {}  # 1: on the current path, 2: done

    def cyclic(node: Path) -> bool:
        state[node] = 1
        for child in children.get(node, ()):
            if state.get(child) == 1 or (child not in state and cyclic(child)):
                return True
        state[node] = 2
        return False

    return cyclic(root.resolve())


def check_tree(oracle: FlyteOracle, t: Tree) -> None:
    """Build ``t`` with flyte and with hatch-flyte; they must agree (or both refuse it)."""
    base = Path(tempfile.mkdtemp(prefix="hf-fuzz-")).resolve()
    try:
        root = make_tree(base, t)
        if PROFILE == "ci" and _directory_graph_has_a_cycle(root):
            # flyte walks a directory loop until the system refuses it (minutes on some trees): the
            # CI profile leaves those to the long profile and to test_bundle_faults' loop tests.
            event("directory loop: left to the long profile")
            return
        theirs = oracle.build(root, base / "flyte-out")
        event("flyte refused" if theirs.error else f"flyte bundled {min(len(theirs.files), 6)}+ files")
        event(f"git={t.git} links={bool(t.links)} ignore files={bool(t.ignore_files)}")
        if os.environ.get("HF_FUZZ_LOG"):  # one line per tree tried, for counting long runs
            with open(os.environ["HF_FUZZ_LOG"], "a") as f:
                f.write(f"{len(theirs.files)} {theirs.error is not None} {t!r}\n")
        for compression in ("compatible", "fast") if t.fast else ("compatible",):
            try:
                ours = build(
                    root, base / f"out-{compression}", BundleOptions(compression=compression, use_cache=False)
                )
            except BundleError as e:
                if str(e).startswith("symlink loop"):
                    # A documented difference: a directory link that leads back up its own tree
                    # makes flyte's walk go on until the system refuses the path ("Too many levels
                    # of symbolic links"), after which flyte stops silently or crashes; we refuse
                    # at once. The tree's directories must really form a cycle.
                    assert _directory_graph_has_a_cycle(root), e
                    assert theirs.error is None or any(
                        s in theirs.error for s in ("Too many levels of symbolic links", "No files found")
                    ), theirs.error
                    event(f"symlink loop refused; flyte {'crashed' if theirs.error else 'stopped silently'}")
                    continue
                assert theirs.error is not None, f"we refused a tree flyte bundled: {e}"
                # Both refuse a tree with nothing left to bundle.
                assert "no files to bundle" in str(e) and "No files found" in theirs.error, (
                    e,
                    theirs.error,
                )
                continue
            assert_same_as_flyte(ours, theirs)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(autouse=True)
def _no_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HATCH_FLYTE_NO_CACHE", "1")


def test_same_bundle_as_flyte_on_generated_trees(oracle: FlyteOracle) -> None:
    @settings(settings.get_profile(PROFILE))
    @given(trees())
    def run(t: Tree) -> None:
        check_tree(oracle, t)

    run()
