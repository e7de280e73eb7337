"""serde_json's reading of a JSON text into a Rust type, to report the first
error as the original does (the model's tool-call arguments: :mod:`.tools`).

msgspec tells that arguments do not fit, not how serde_json words it nor
where; :class:`SerdeReader` reads the text again, as serde_json would, and
stops at the first error, worded by :mod:`.serde_wording`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, NoReturn

import msgspec.inspect as mi

from .rust import RUST_INTS as _RUST_INTS
from .serde_wording import expected_fields, invalid_integer, invalid_type, unknown_variant

__all__ = ["SerdeReader"]

#: serde_json's: the 128th nested container the type looks inside fails.
_RECURSION_LIMIT = 128


class _SerdeError(Exception):
    pass


_NUMBER = re.compile(rb"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_PLAIN = re.compile(rb'[^"\\\x00-\x1f]*')
_ESCAPES = {ord(c): c for c in '"\\/bfnrtu'}


class SerdeReader:
    """Reads JSON the way serde_json deserializes it into a Rust type, to
    report the first error as serde_json does: its message, then ``at line
    L column C`` (C counts the bytes of the line read so far).

    Types come from ``msgspec.inspect``; Rust integer names from the
    ``extra={"rust": ...}`` of their ``Meta``. Values the type looks inside
    nest at most serde_json's recursion limit deep; values of unknown fields
    are skipped at any depth, without recursion, and :attr:`ignored` keeps
    where they are.
    """

    def __init__(self, data: bytes) -> None:
        self.s = data
        self.i = 0
        self.depth = _RECURSION_LIMIT
        self.ignored: list[tuple[int, int]] = []

    def without_ignored(self) -> bytes:
        """The JSON read, with ``null`` for each value :meth:`explain` skipped."""
        parts: list[bytes] = []
        last = 0
        for start, end in self.ignored:
            parts += (self.s[last:start], b"null")
            last = end
        parts.append(self.s[last:])
        return b"".join(parts)

    def explain(self, type_: type) -> str | None:
        """serde_json's message for ``type_`` from these bytes, or None if
        serde_json would accept them."""
        try:
            self.value(mi.type_info(type_))
            if self.ws() is not None:
                self.peek_fail("trailing characters")
        except _SerdeError as exc:
            return str(exc)
        return None

    # positions
    def fail(self, message: str, at: int | None = None) -> NoReturn:
        i = self.i if at is None else at
        line_start = self.s.rfind(b"\n", 0, i) + 1
        line = self.s.count(b"\n", 0, line_start) + 1
        raise _SerdeError(f"{message} at line {line} column {i - line_start}")

    def peek_fail(self, message: str) -> NoReturn:
        self.fail(message, min(len(self.s), self.i + 1))

    def enter(self) -> None:
        """Open a container the type looks inside, as serde_json counts them."""
        self.depth -= 1
        if self.depth == 0:
            self.peek_fail("recursion limit exceeded")

    def ws(self) -> int | None:
        while self.i < len(self.s) and self.s[self.i] in b" \t\n\r":
            self.i += 1
        return self.s[self.i] if self.i < len(self.s) else None

    # scalars
    def ident(self, word: bytes) -> None:
        for expected in word:
            self.i += 1
            if self.i > len(self.s) or self.s[self.i - 1] != expected:
                self.fail("EOF while parsing a value" if self.i > len(self.s) else "expected ident")

    def string(self) -> str:
        self.i += 1  # the opening quote
        out = bytearray()
        while True:
            plain = _PLAIN.match(self.s, self.i)
            assert plain is not None  # `*`: it matches the empty string too
            out += plain.group()
            self.i = plain.end()
            if self.i >= len(self.s):
                self.fail("EOF while parsing a string")
            ch = self.s[self.i]
            self.i += 1
            if ch == ord('"'):
                return out.decode("utf-8", "replace")
            if ch != ord("\\"):
                self.fail("control character (\\u0000-\\u001F) found while parsing a string")
            if self.i >= len(self.s):
                self.fail("EOF while parsing a string")
            esc = self.s[self.i]
            self.i += 1
            if esc not in _ESCAPES:
                self.fail("invalid escape")
            if esc == ord("u"):
                digits = self.s[self.i:self.i + 4]
                if len(digits) < 4 or not re.fullmatch(rb"[0-9a-fA-F]{4}", digits):
                    self.fail("EOF while parsing a string" if len(digits) < 4 else "invalid escape")
                out += chr(int(digits, 16)).encode("utf-8", "surrogatepass")
                self.i += 4
            else:
                out += {"b": b"\b", "f": b"\f", "n": b"\n", "r": b"\r", "t": b"\t"}.get(chr(esc), bytes([esc]))

    def number(self) -> int | float:
        match = _NUMBER.match(self.s, self.i)
        if match is None:
            self.i += 1
            self.fail("EOF while parsing a value" if self.i >= len(self.s) else "invalid number")
        self.i = match.end()
        text = match.group()
        if match.group(1) is None and match.group(2) is None:
            value = int(text)
            if -(2**63) <= value < 2**64:
                return value
        return float(text)

    def unexpected(self, expected: str) -> None:
        """serde's ``invalid type`` error for whatever value comes next."""
        b = self.ws()
        if b == ord("n"):
            self.ident(b"null")
            got = "null"
        elif b in (ord("t"), ord("f")):
            self.ident(b"true" if b == ord("t") else b"false")
            got = f"boolean `{'true' if b == ord('t') else 'false'}`"
        elif b is not None and (b == ord("-") or ord("0") <= b <= ord("9")):
            got = _unexpected_number(self.number())
        elif b == ord('"'):
            got = f"string {_rust_debug(self.string())}"
        elif b == ord("["):
            got = "sequence"
        elif b == ord("{"):
            got = "map"
        else:
            self.peek_fail("EOF while parsing a value" if b is None else "expected value")
        self.fail(invalid_type(got, expected))

    # typed values
    def value(self, t: Any) -> None:
        extra = {}
        if isinstance(t, mi.Metadata):
            extra, t = t.extra or {}, t.type
        if isinstance(t, mi.UnionType):  # Option<T>
            if self.ws() == ord("n"):
                self.ident(b"null")
                return
            t = next(member for member in t.types if not isinstance(member, mi.NoneType))
            if isinstance(t, mi.Metadata):
                extra, t = t.extra or {}, t.type
        if isinstance(t, mi.StructType):
            self.struct(t)
        elif isinstance(t, mi.ListType):
            self.sequence(t.item_type)
        elif isinstance(t, mi.StrType):
            if self.ws() != ord('"'):
                self.unexpected("a string")
            self.string()
        elif isinstance(t, mi.BoolType):
            b = self.ws()
            if b not in (ord("t"), ord("f")):
                self.unexpected("a boolean")
            self.ident(b"true" if b == ord("t") else b"false")
        elif isinstance(t, mi.IntType):
            self.integer(extra.get("rust", "i64"))
        elif isinstance(t, mi.EnumType):
            self.variant([member.value for member in t.cls])
        else:
            self.skip()

    def integer(self, rust: str) -> None:
        b = self.ws()
        if b is None or not (b == ord("-") or ord("0") <= b <= ord("9")):
            self.unexpected(rust)
        value = self.number()
        if isinstance(value, float):
            self.fail(invalid_type(_unexpected_number(value), rust))
        low, high = _RUST_INTS.get(rust, (-(2**63), 2**63 - 1))
        if not low <= value <= high:
            self.fail(invalid_integer(value, rust))

    def variant(self, names: list[str]) -> None:
        b = self.ws()
        if b != ord('"'):
            self.peek_fail("EOF while parsing a value" if b is None else "expected value")
        name = self.string()
        if name not in names:
            self.fail(unknown_variant(name, names))

    def sequence(self, item: Any) -> None:
        if self.ws() != ord("["):
            self.unexpected("a sequence")
        for _ in self.entries(ord("]"), "a list", "EOF while parsing a list"):
            self.value(item)

    def struct(self, t: Any) -> None:
        name = f"struct {getattr(t.cls, 'rust_name', t.cls.__name__)}"
        b = self.ws()
        if b != ord("{"):
            self.unexpected(name)
        fields = {f.encode_name: f for f in t.fields}
        aliases: dict[str, str] = getattr(t.cls, "aliases", {})
        seen: set[str] = set()
        for key in self.members("EOF while parsing an object"):
            key = aliases.get(key, key)
            if key not in fields and t.forbid_unknown_fields:
                self.fail(f"unknown field `{key}`, {expected_fields(list(fields))}")
            if key in seen:
                self.fail(f"duplicate field `{key}`")
            seen.add(key)
            self.colon()
            if key in fields:
                self.value(fields[key].type)
            else:
                start = self.i
                self.ignore()
                self.ignored.append((start, self.i))
        # serde reports a missing field after the closing brace
        for field in t.fields:
            if field.required and field.encode_name not in seen and not _optional(field.type):
                self.fail(f"missing field `{field.encode_name}`")

    def entries(self, close: int, what: str, eof_at_first: str) -> Iterator[None]:
        """Step through the container whose opening bracket is at the cursor,
        as serde_json's sequence and map access do: once per entry, with the
        cursor at it (the caller reads it before the next step), checking the
        commas between entries, a trailing comma and the ``close`` bracket.
        ``what`` is the container in errors (``a list``, ``an object``);
        ``eof_at_first`` is the error for a text that ends right after the
        opening bracket."""
        self.enter()
        self.i += 1
        first = True
        while True:
            b = self.ws()
            if b == close:
                self.i += 1
                self.depth += 1
                return
            if not first:
                if b != ord(","):
                    self.peek_fail(f"EOF while parsing {what}" if b is None else f"expected `,` or `{chr(close)}`")
                self.i += 1
                if self.ws() == close:
                    self.peek_fail("trailing comma")
            elif b is None:
                self.peek_fail(eof_at_first)
            first = False
            yield

    def members(self, eof_at_first: str) -> Iterator[str]:
        """The keys of the object whose ``{`` is at the cursor (see
        :meth:`entries`). After each key the caller checks it, then reads the
        ``:`` (:meth:`colon`) and the value before the next. ``eof_at_first``
        differs as serde_json words it: a struct that ends right after its
        ``{`` is ``EOF while parsing an object``, a skipped value ``EOF while
        parsing a value``."""
        for _ in self.entries(ord("}"), "an object", eof_at_first):
            b = self.ws()
            if b != ord('"'):
                self.peek_fail("EOF while parsing a value" if b is None else "key must be a string")
            yield self.string()

    def colon(self) -> None:
        """The ``:`` after an object's key."""
        b = self.ws()
        if b != ord(":"):
            self.peek_fail("EOF while parsing an object" if b is None else "expected `:`")
        self.i += 1

    def skip(self) -> None:
        """Any value, checked for syntax only."""
        b = self.ws()
        if b == ord("{"):
            for _ in self.members("EOF while parsing a value"):
                self.colon()
                self.skip()
        elif b == ord("["):
            self.sequence(mi.AnyType())
        else:
            self.scalar(b)

    def scalar(self, b: int | None) -> None:
        """A string, number, boolean or null starting with byte ``b``."""
        if b == ord('"'):
            self.string()
        elif b == ord("n"):
            self.ident(b"null")
        elif b in (ord("t"), ord("f")):
            self.ident(b"true" if b == ord("t") else b"false")
        elif b is not None and (b == ord("-") or ord("0") <= b <= ord("9")):
            self.number()
        else:
            self.peek_fail("EOF while parsing a value" if b is None else "expected value")

    def ignore(self) -> None:
        """An unknown field's value, checked for syntax only at any depth
        with a stack of open containers, as serde_json's ``ignore_value``."""
        stack: list[int] = []
        while True:
            b = self.ws()
            if b is not None and b in b"[{":
                self.i += 1
                frame, accept_comma = b, False
            else:
                self.scalar(b)
                if not stack:
                    return
                frame, accept_comma = stack.pop(), True
            list_frame = frame == ord("[")
            while True:
                b = self.ws()
                if b == ord(",") and accept_comma:
                    self.i += 1
                    break
                if b == (ord("]") if list_frame else ord("}")):
                    self.i += 1
                    if not stack:
                        return
                    frame, accept_comma = stack.pop(), True
                    list_frame = frame == ord("[")
                    continue
                if b is None:
                    self.peek_fail("EOF while parsing a list" if list_frame else "EOF while parsing an object")
                if accept_comma:
                    self.peek_fail("expected `,` or `]`" if list_frame else "expected `,` or `}`")
                break
            if not list_frame:
                b = self.ws()
                if b != ord('"'):
                    self.peek_fail("EOF while parsing an object" if b is None else "key must be a string")
                self.string()
                self.colon()
            stack.append(frame)


def _optional(t: Any) -> bool:
    """serde fills a missing ``Option`` field with None."""
    if isinstance(t, mi.Metadata):
        t = t.type
    return isinstance(t, mi.UnionType) and any(isinstance(m, mi.NoneType) for m in t.types)


def _unexpected_number(value: int | float) -> str:
    if isinstance(value, int):
        return f"integer `{value}`"
    text = format(Decimal(repr(value)), "f")
    return f"floating point `{text if '.' in text else text + '.0'}`"


def _rust_debug(s: str) -> str:
    """A string as Rust's ``{:?}`` prints it."""
    out = ['"']
    for ch in s:
        if ch in "\"\\":
            out.append("\\" + ch)
        elif ch in "\n\r\t":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch])
        elif ch == "\0":
            out.append("\\0")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{{{ord(ch):x}}}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)
