"""Whether a word of a module's source is code, or only inside a comment or a string literal.

Static discovery parses a module only when its source names a trigger (an environment class,
``clone_with`` ...). In a large project most such modules name one only in prose: ``# Environment
variables``, ``"Environment is missing a key"``; no name in a comment or a string literal can
create an environment, and parsing a large module costs far more than reading it. This tells the
two apart from the bytes, without parsing, and errs towards "code" whenever it cannot be sure.

The source is lexed from its start, as Python's tokenizer does, for the two things that can hide
a word: comments and string literals. Where a string literal ends does not depend on its prefix
(``r``, ``b``, ``u``), except for f-strings (and t-strings) from Python 3.12 on, which may nest
quotes in their replacement fields (PEP 701): on those Pythons the lexing stops at the first one.
The text of an f-string counts as code (its fields are). After the lexing stopped (or where a
string never ends), only a rule that holds whatever the state at the start of the line is used:
a word preceded on its line by ``#`` and by no quote or brace is in a comment or in a string
(or in an f-string's literal text or format spec), never code.

The bytes are read as an ASCII-compatible encoding: a source that declares any other encoding
(a coding cookie other than UTF-8, Latin-1 or ASCII) is taken to be code throughout.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable

#: PEP 263's coding declaration (on the first two lines).
_COOKIE = re.compile(rb"^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)", re.MULTILINE)
#: Encodings in which the bytes of ``#``, quotes, braces, backslash and line ends mean those
#: characters only (not the second byte of a multi-byte character, as in Shift_JIS or ISO-2022).
_ASCII_COMPATIBLE = frozenset({"utf-8", "utf8", "ascii", "us-ascii", "latin-1", "latin1", "iso-8859-1"})
_SPECIAL = re.compile(rb"[#'\"]")
_LINE_END = re.compile(rb"[\r\n]")
_NEWLINE = re.compile(rb"\r\n|\r|\n")
#: The rest of a string literal after its opening quote(s), closing quote(s) included. A backslash
#: escapes the next character (a quote too, even in raw strings); a one-quote string ends at a line
#: end that no backslash escapes; a triple-quoted one at the first three quotes in a row.
_REST = {
    b"'": re.compile(rb"[^'\\\r\n]*(?:\\(?:\r\n|[\s\S])[^'\\\r\n]*)*'"),
    b'"': re.compile(rb'[^"\\\r\n]*(?:\\(?:\r\n|[\s\S])[^"\\\r\n]*)*"'),
    b"'''": re.compile(rb"[^'\\]*(?:(?:\\[\s\S]|'(?!''))[^'\\]*)*'''"),
    b'"""': re.compile(rb'[^"\\]*(?:(?:\\[\s\S]|"(?!""))[^"\\]*)*"""'),
}
#: Bytes that can be part of a name (any byte of a non-ASCII character counts).
_IDENTIFIER_BYTE = [chr(b).isalnum() or b == ord("_") or b >= 0x80 for b in range(256)]
#: From Python 3.12 an f-string's end cannot be found like other strings' (PEP 701).
_NESTED_FSTRINGS = sys.version_info >= (3, 12)


def any_in_code(source: bytes, positions: Iterable[int]) -> bool:
    """Whether any of ``positions`` (ascending offsets of words in ``source``) may be code."""
    if not _ascii_compatible(source):
        return True
    lexer = _Lexer(source)
    return any(lexer.may_be_code(i) for i in positions)


def _ascii_compatible(source: bytes) -> bool:
    first = _NEWLINE.search(source)
    second = _NEWLINE.search(source, first.end()) if first else None
    head = source[: second.start()] if second else source
    if b"coding" not in head:
        return True
    match = _COOKIE.search(head)
    if match is None:
        return False  # "coding" where the cookie's pattern does not see it: do not guess
    name = match.group(1).decode("ascii", "replace").lower().replace("_", "-")
    return name in _ASCII_COMPATIBLE or name.startswith("utf-8-")


class _Lexer:
    """Comments and string literals of ``source``, lexed on demand up to the offsets asked about."""

    def __init__(self, source: bytes) -> None:
        self.source = source
        #: Everything before ``pos`` has been lexed (the lexer is in code there).
        self.pos = 0
        #: The last comment or string lexed: ``(start, end, counts as code)``.
        self.last = (0, 0, True)
        #: Set where lexing stopped (an f-string on Python 3.12+, a string that never ends).
        self.stopped = False

    def may_be_code(self, i: int) -> bool:
        start, end, code = self.last
        if start <= i < end:
            return code
        while not self.stopped:
            found = _SPECIAL.search(self.source, self.pos)
            if found is None or found.start() > i:
                return True  # no comment or string starts between the lexed part and i
            start = found.start()
            if found.group() == b"#":
                line_end = _LINE_END.search(self.source, start)
                end, code = (line_end.start() if line_end else len(self.source)), False
            else:
                quote = self.source[start : start + 3]
                if quote not in _REST:
                    quote = quote[:1]
                rest = _REST[quote].match(self.source, start + len(quote))
                fstring = _is_fstring(self.source, start)
                if rest is None or (fstring and _NESTED_FSTRINGS):
                    self.stopped = True
                    break
                end, code = rest.end(), fstring
            self.pos = end
            self.last = (start, end, code)
            if i < end:
                return code
        return not _commented_out(self.source, i)


def _is_fstring(source: bytes, quote: int) -> bool:
    """Whether the string literal opening at ``quote`` may be an f-string or a t-string: the
    letters right before the quote (its prefix, at most two) hold an ``f`` or a ``t``. A longer
    name before a quote (``return"x"``) is not a prefix; its last two letters count anyway,
    erring towards yes."""
    prefix = source[max(0, quote - 2) : quote]
    for k in range(len(prefix) - 1, -1, -1):
        if not _IDENTIFIER_BYTE[prefix[k]]:
            prefix = prefix[k + 1 :]
            break
    return any(c in b"fFtT" for c in prefix)


def _commented_out(source: bytes, i: int) -> bool:
    """Whether ``i`` follows a ``#`` on its line with no quote or brace before it on the line.

    Whatever the state at the line's start, such a word is not code: in code, no string starts
    before it and the ``#`` opens a comment; in a string, no quote closes it and no brace opens an
    f-string's replacement field; in a (multi-line) replacement field, ``#`` opens a comment."""
    line = max(source.rfind(b"\n", 0, i), source.rfind(b"\r", 0, i)) + 1
    before = source[line:i]
    return b"#" in before and not any(c in before for c in b"'\"{}")
