"""The line codec and whole files: a record to one line of bytes
(:func:`encode_line`), a line back (:func:`decode_line`), a file's bytes to
its lines (:func:`parse_rollout`), and reading one (:func:`read_rollout`,
the only blocking function here).

A load never fails on content. A torn last line (a crash mid-write) and
any line that is not valid JSON are skipped with a warning. A line or event
type we do not know, or a known one whose payload has a shape we do not
expect, is kept as :class:`~.records.UnknownLine` /
:class:`~.records.UnknownEvent` (raw bytes) and ignored by the replay, as
the original ignores what it cannot parse. Only an unreadable *file* raises
(``OSError``).
"""

from __future__ import annotations

import logging
import os
from typing import Any, Final

import msgspec
from msgspec import Raw, Struct

from .paths import format_timestamp
from .records import (
    EVENT_TYPES,
    Compacted,
    KnownEvent,
    Payload,
    ResponseItem,
    RolloutLine,
    SessionMeta,
    TurnContext,
    UnknownEvent,
    UnknownLine,
    line_type,
)

log = logging.getLogger("trio_codex.rollout")


class _LineOut(Struct, kw_only=True, omit_defaults=True):
    timestamp: str
    ordinal: int | None = None
    type: str
    payload: Any


class _LineIn(Struct):
    timestamp: str = ""
    type: str = ""
    payload: Raw = Raw(b"null")
    ordinal: int | None = None


class _Tag(Struct):
    type: str = ""


_encoder = msgspec.json.Encoder()
_line_decoder = msgspec.json.Decoder(_LineIn)
_tag_decoder = msgspec.json.Decoder(_Tag)
_event_decoder = msgspec.json.Decoder(KnownEvent)
_payload_decoders: Final[dict[str, msgspec.json.Decoder[Any]]] = {
    "session_meta": msgspec.json.Decoder(SessionMeta),
    "turn_context": msgspec.json.Decoder(TurnContext),
    "compacted": msgspec.json.Decoder(Compacted),
}


def encode_line(payload: Payload, *, timestamp_ms: int, ordinal: int | None = None) -> bytes:
    """One rollout line, newline included, ready to append.

    ``ordinal`` numbers the lines of a file from 0, as 0.169 does; the
    original's paginated reads use it as a cursor, so a writer appending to a
    file continues from :attr:`Replay.next_ordinal`.
    """
    body: Any = payload.raw if isinstance(payload, ResponseItem) else (
        payload.payload if isinstance(payload, (UnknownLine, UnknownEvent)) else payload)
    return _encoder.encode(_LineOut(timestamp=format_timestamp(timestamp_ms), ordinal=ordinal,
                                    type=line_type(payload), payload=body)) + b"\n"


def decode_line(data: bytes) -> RolloutLine:
    """One line (without its newline) as a :class:`RolloutLine`.

    Raises ``msgspec.DecodeError`` if it is not a JSON object with a
    ``type``; anything else decodes, unknown content as raw bytes.
    """
    env = _line_decoder.decode(data)
    if not env.type:
        raise msgspec.DecodeError("a rollout line needs a `type`")
    return RolloutLine(env.timestamp, _decode_payload(env.type, env.payload), env.ordinal)


def _decode_payload(kind: str, raw: Raw) -> Payload:
    try:
        if kind == "response_item":
            return ResponseItem(raw)
        if kind == "event_msg":
            try:
                return _event_decoder.decode(raw)
            except msgspec.ValidationError:
                tag = _tag_decoder.decode(raw).type
                if tag in EVENT_TYPES:
                    log.warning("rollout: an `%s` event has an unexpected shape; ignored", tag)
                return UnknownEvent(tag, raw)
        decoder = _payload_decoders.get(kind)
        if decoder is not None:
            return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        log.warning("rollout: a `%s` line has an unexpected shape (%s); ignored", kind, exc)
    return UnknownLine(kind, raw)


class Rollout(Struct):
    """The decoded lines of one rollout file."""

    path: str
    lines: list[RolloutLine]
    #: Complete lines that were not valid JSON objects (each logged).
    bad_lines: int = 0
    #: The file ended in a partial line (a crash mid-write), which was skipped.
    torn_tail: bool = False
    size: int = 0
    mtime_ns: int = 0
    #: Bytes of the lines decoded: the whole file but a torn tail.
    consumed: int = 0

    @property
    def session_meta(self) -> SessionMeta | None:
        for line in self.lines:
            if isinstance(line.payload, SessionMeta):
                return line.payload
        return None


def parse_rollout(data: bytes, path: str = "<memory>") -> Rollout:
    """Decode a whole rollout's bytes. Never raises on content: bad lines and
    a torn last line are skipped and counted, with a warning naming the file
    and line."""
    chunks = data.split(b"\n")
    last = chunks.pop()  # b"" when the file ends with a newline
    lines: list[RolloutLine] = []
    bad = 0
    for number, chunk in enumerate(chunks, 1):
        if not chunk.strip():
            continue
        try:
            lines.append(decode_line(chunk))
        except msgspec.DecodeError as exc:
            bad += 1
            log.warning("%s:%d: skipped a line that is not a rollout line (%s)", path, number, exc)
    torn = False
    if last.strip():
        try:
            lines.append(decode_line(last))
        except msgspec.DecodeError:
            torn = True
            log.warning("%s:%d: skipped a torn last line (%d bytes); the writer stopped mid-line",
                        path, len(chunks) + 1, len(last))
    return Rollout(path, lines, bad, torn, len(data), consumed=len(data) - len(last) if torn else len(data))


def read_rollout(path: str | os.PathLike[str]) -> Rollout:
    """Read and decode a rollout file (blocking). Raises ``OSError`` only
    when the file cannot be read."""
    with open(path, "rb") as f:
        stat = os.fstat(f.fileno())
        data = f.read()
    rollout = parse_rollout(data, os.fspath(path))
    rollout.mtime_ns = stat.st_mtime_ns
    return rollout
