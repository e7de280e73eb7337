"""Shell words as the original renders them: the Rust ``shlex`` crate (1.3).

:func:`shlex_split` and :func:`shlex_join` quote differently from
:func:`shlex.quote`: the original renders commands with the crate, and
clients see that text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

_SPLIT_BLANKS = " \t\n"


def shlex_split(text: str) -> list[str] | None:
    """Split like ``shlex::split``: POSIX words, ``#`` comments at a word's
    start, ``None`` for an unclosed quote or a trailing backslash."""
    words: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in _SPLIT_BLANKS:
            i += 1
            continue
        if c == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
            continue
        word: list[str] = []
        while i < n and text[i] not in _SPLIT_BLANKS:
            c = text[i]
            if c == "'":
                end = text.find("'", i + 1)
                if end < 0:
                    return None
                word.append(text[i + 1 : end])
                i = end + 1
            elif c == '"':
                i += 1
                while True:
                    if i >= n:
                        return None
                    c = text[i]
                    if c == '"':
                        i += 1
                        break
                    if c == "\\":
                        if i + 1 >= n:
                            return None
                        escaped = text[i + 1]
                        if escaped in '$`"\\':
                            word.append(escaped)
                        elif escaped != "\n":
                            word.append("\\" + escaped)
                        i += 2
                    else:
                        word.append(c)
                        i += 1
            elif c == "\\":
                if i + 1 >= n:
                    return None
                if text[i + 1] != "\n":
                    word.append(text[i + 1])
                i += 2
            else:
                word.append(c)
                i += 1
        words.append("".join(word))
    return words


_UNQUOTED_OK = frozenset("+-./:@]_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_UNQUOTED, _SINGLE, _DOUBLE = 1, 2, 4


def _quote(word: str) -> str:
    """``shlex::Quoter::quote``: bare when safe, else the fewest chunks in
    single or double quotes (non-ASCII is always quoted)."""
    if not word:
        return "''"
    out: list[str] = []
    rest = word
    while rest:
        ok = _SINGLE | _DOUBLE | _UNQUOTED
        i = 0
        if rest[0] == "^":
            # bash treats ^ after a quote specially; it may only open a '…' chunk
            ok, i = _SINGLE, 1
        while i < len(rest):
            c = rest[i]
            cur = ok
            if ord(c) >= 0x80:
                cur &= ~_UNQUOTED
            else:
                if c not in _UNQUOTED_OK:
                    cur &= ~_UNQUOTED
                if c in "'^\\":
                    cur &= ~_SINGLE
                if c in "`$!^":
                    cur &= ~_DOUBLE
            if not cur:
                break
            ok = cur
            i += 1
        chunk, rest = rest[:i], rest[i:]
        if ok & _UNQUOTED:
            if not out and not rest:
                return word
            out.append(chunk)
        elif ok & _SINGLE:
            out.append(f"'{chunk}'")
        else:
            out.append('"' + re.sub(r'([$`"\\])', r"\\\1", chunk) + '"')
    return "".join(out)


def _try_join(words: Iterable[str]) -> str | None:
    """``shlex::try_join``: ``None`` when a word holds a NUL."""
    words = list(words)
    if any("\0" in w for w in words):
        return None
    return " ".join(_quote(w) for w in words)


def shlex_join(words: Iterable[str]) -> str:
    """Join words for display as the original does (``shlex_join`` in
    ``parse_command.rs``)."""
    joined = _try_join(words)
    return "<command included NUL byte>" if joined is None else joined


def render_command(words: Sequence[str]) -> str:
    """``render_shlex_command``: the quoted command, or the words joined by
    spaces when one holds a NUL."""
    joined = _try_join(words)
    return " ".join(words) if joined is None else joined
