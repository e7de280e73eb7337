"""The seam between transports and connections.

A transport only moves frames: one frame is one JSON-RPC message (a JSONL
line without its newline, or one websocket text message). Everything about
the protocol lives in the codec and the connection actor, so stdio, unix
sockets, websockets and in-process embedding differ only in how they
implement this protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class TransportClosed(Exception):
    """The peer is gone: raised by :meth:`FrameStream.send_frames`."""


class WriteStalled(TransportClosed):
    """A write made no progress within the write timeout (the client
    stopped reading): the transport gave up on it."""


class Oversized:
    """A frame over the transport's size bound was dropped unread. ``head`` is
    its first bytes, enough to find a request id and answer it."""

    __slots__ = ("size", "head")

    def __init__(self, size: int, head: bytes = b"") -> None:
        self.size = size
        self.head = head


class FrameStream(Protocol):
    """One client connection as a transport presents it."""

    #: Who is on the other end, for logs ("stdio", "unix:/path", "ws:1.2.3.4:5").
    peer: str

    #: The size bound on one inbound frame, for error messages.
    max_frame: int

    async def receive_frame(self) -> bytes | Oversized | None:
        """The next frame, an :class:`Oversized` notice, or None once the peer
        has closed its side."""
        ...

    async def send_frames(self, frames: Sequence[bytes]) -> None:
        """Write frames in order, as few writes as the transport allows.
        Raises :class:`TransportClosed` when the peer is gone."""
        ...

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection; a websocket says ``code`` and ``reason`` in
        its close frame (1011 with the reason when the server failed it),
        other transports have no way to and ignore them: the caller logs
        the reason."""
        ...
