"""Static discovery's pre-filter: a word in a comment or a string literal is not code.

The oracle is Python's own tokenizer: a word it reads as a NAME must never be called "not code"
(that would hide an environment from discovery); words it reads inside comments and plain string
literals should be recognised as such.
"""

from __future__ import annotations

import io
import re
import sys
import sysconfig
import token
import tokenize
from pathlib import Path

import pytest

from hatch_flyte.discovery.lexical import _Lexer, any_in_code

WORD = re.compile(rb"\bEnvironment\b")

TRICKY = [
    b"# Environment variables\nx = 1\n",
    b"x = 1  # Environment\n",
    b'"""Environment docs"""\n',
    b'raise ValueError("Environment missing")\n',
    b'e = Environment("x")\n',
    b'"a" ; e = Environment()\n',
    b'x = """\n# blah """; env = Environment("e")\n',
    b"x = '''\n# blah ''' + Environment\n",
    b'f"""\n#{Environment("x")}\n"""\n',
    b'f"{Environment()}"\n',
    b'rf"\\{Environment}"\n',
    b'x = "abc\\"Environment"\n',
    b'x = "abc\\\\" + Environment\n',
    b'x = r"\\\\" # Environment\ny = Environment\n',
    b'x = "a\\\nEnvironment"\n',
    b"''''Environment'''\n",
    b"'''a'''' + Environment'\n",
    b"'''a''' + Environment\n",
    b'def f(): return"x" # Environment\nEnvironment\n',
    b'print("<H3>Shell Environment:</H3>") # Environment\n',
    b"x = 1\r# Environment\rEnvironment()\r",
    b"x = 1\r\n# Environment\r\ny = Environment\r\n",
    b'b"\\"" # Environment\n',
    b"# -*- coding: utf-8 -*-\n# Environment\n",
    b"x = {'Environment': Environment}\n",
    b"def f(e: 'Environment') -> Environment: ...\n",
]


def _offsets(source: bytes) -> tuple[set[int], set[int]]:
    """Byte offsets of the words that tokenize reads as NAMEs, and of ``Environment`` in comments
    and in string literals without an f (or t) prefix."""
    # The lines as tokenize reads them (split at b"\n" only: str.splitlines also splits at form
    # feeds), for its (row, column in characters) positions.
    raw = io.BytesIO(source).readlines()
    lines = [line.decode("utf-8") for line in raw]
    starts = [0]
    for line in raw:
        starts.append(starts[-1] + len(line))

    def offset(row: int, col: int) -> int:
        return starts[row - 1] + len(lines[row - 1][:col].encode("utf-8"))

    names: set[int] = set()
    prose: set[int] = set()
    for tok in tokenize.tokenize(io.BytesIO(source).readline):
        if tok.type == token.NAME:
            names.add(offset(*tok.start))
        elif tok.type == token.COMMENT or (
            tok.type == token.STRING and not re.match(r"(?i)[a-z]*[ft]", tok.string)
        ):
            begin = offset(*tok.start)
            prose.update(begin + m.start() for m in WORD.finditer(tok.string.encode("utf-8")))
    return names, prose


@pytest.mark.parametrize("source", TRICKY, ids=range(len(TRICKY)))
def test_tricky_sources_agree_with_the_tokenizer(source: bytes) -> None:
    compile(source, "<tricky>", "exec", dont_inherit=True)  # each case is valid Python
    names, prose = _offsets(source)
    for m in WORD.finditer(source):
        if m.start() in names:
            assert any_in_code(source, [m.start()]), f"the name at {m.start()} was called not code"
        elif m.start() in prose and not re.search(rb"""(?i)[ft]['"]""", source[: m.start()]):
            # Lexed exactly up to the first f-string (from Python 3.12 on, only that far).
            assert not any_in_code(source, [m.start()]), f"the word at {m.start()} counts as code"


def test_no_name_of_real_modules_is_called_prose() -> None:
    """Every name in a sample of the standard library counts as code; most words in its comments
    and strings do not."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    word = re.compile(rb"\b[A-Za-z_]\w*")
    recognised = prose = 0
    for rel in ("tarfile.py", "argparse.py", "typing.py", "email/_header_value_parser.py", "pydoc.py"):
        source = (stdlib / rel).read_bytes()
        names, _ = _offsets(source)
        lexer = _Lexer(source)  # one lexer for ascending offsets, as any_in_code uses it
        for m in word.finditer(source):
            code = lexer.may_be_code(m.start())
            if m.start() in names:
                assert code, f"{rel}: the name at {m.start()} was called not code"
            else:
                prose += 1
                recognised += not code
    assert recognised > (0.9 if sys.version_info < (3, 12) else 0.3) * prose


def test_a_foreign_encoding_is_never_lexed() -> None:
    # In Shift_JIS the second byte of a character can be a backslash, which would throw the lexer off.
    source = "# -*- coding: shift_jis -*-\n# Environment ソ\n".encode("shift_jis")
    assert any_in_code(source, [m.start() for m in WORD.finditer(source)])
