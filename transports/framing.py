"""Sans-I/O JSONL framing, in the manner of h11: bytes go in with
:meth:`LineFramer.receive_data`, frames come out of :meth:`next_frame`.

Rule: a line longer than ``max_line`` is never buffered whole. The framer
discards it up to its newline and reports it once as :class:`Oversized`, so a
hostile or broken peer cannot make the server hold an unbounded line.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Final, Literal

from ..runtime.kernel.stream import Oversized


class NeedData(enum.Enum):
    """The type of :data:`NEED_DATA`: a one-member Enum, so that
    ``frame is not NEED_DATA`` narrows the frame's type."""

    NEED_DATA = "NEED_DATA"


#: What ``next_frame`` answers when it needs more bytes (h11's sentinel).
NEED_DATA: Final = NeedData.NEED_DATA

#: The default bound on one line (one JSON-RPC message): 64 MiB, ample for
#: images passed inline, yet bounded.
DEFAULT_MAX_LINE = 64 * 1024 * 1024

#: How much of an oversized line is kept to find its request id.
HEAD = 4096


class LineFramer:
    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        if max_line <= 0:
            raise ValueError("max_line must be a positive number of bytes")
        self.max_line = max_line
        self._buf = bytearray()
        self._start = 0  # where the unread part of _buf begins
        self._scan = 0  # how far _buf has been searched for a newline
        self._skipping = 0  # >0: inside an oversized line, bytes dropped so far
        self._head = b""

    def receive_data(self, data: bytes | bytearray) -> None:
        if self._start:
            # Compact once per chunk rather than once per line.
            del self._buf[: self._start]
            self._scan -= self._start
            self._start = 0
        self._buf += data

    def next_frame(self) -> bytes | Oversized | Literal[NeedData.NEED_DATA]:
        """The next complete line without its newline (blank lines are
        skipped), an :class:`Oversized` notice, or :data:`NEED_DATA`."""
        buf = self._buf
        while True:
            nl = buf.find(b"\n", self._scan)
            if nl < 0:
                unread = len(buf) - self._start
                if self._skipping or unread > self.max_line:
                    if not self._skipping:
                        self._head = bytes(buf[self._start : self._start + HEAD])
                    self._skipping += unread
                    buf.clear()
                    self._start = self._scan = 0
                else:
                    self._scan = len(buf)
                return NEED_DATA
            line_len = nl - self._start
            begin, self._start = self._start, nl + 1
            self._scan = self._start
            if self._skipping:
                size, self._skipping = self._skipping + line_len, 0
                return Oversized(size, self._head)
            if line_len > self.max_line:
                return Oversized(line_len, bytes(buf[begin : begin + HEAD]))
            line = bytes(buf[begin:nl]).rstrip(b"\r")
            if line.strip():
                return line

    @property
    def pending(self) -> int:
        """Bytes buffered that do not yet form a line."""
        return len(self._buf) - self._start


def frame_lines(frames: Sequence[bytes]) -> bytes:
    """Join frames into JSONL for one write."""
    return b"\n".join(frames) + b"\n" if frames else b""
