"""The stdio transport: exactly one connection, JSONL on stdin/stdout.

stdout carries protocol messages only; logs go to stderr. The connection ends
when stdin reaches EOF. What the start-up handshake read from stdin before
the server ran (runtime/handshake.py) comes first, as ``buffered``.
"""

from __future__ import annotations

import os

import trio

from .framing import DEFAULT_MAX_LINE
from .jsonl import JsonlStream


def open_stdio(*, max_line: int = DEFAULT_MAX_LINE, buffered: bytes = b"") -> JsonlStream:
    # Duplicates, so closing the streams never closes fds 0 and 1 under
    # anything else in the process.
    stdin = trio.lowlevel.FdStream(os.dup(0))
    stdout = trio.lowlevel.FdStream(os.dup(1))
    return JsonlStream(stdin, stdout, peer="stdio", max_line=max_line, buffered=buffered)
