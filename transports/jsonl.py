"""JSONL over any trio byte stream: the I/O shell around :mod:`.framing`.
stdio uses it with the process's file descriptors, the embedding API
(``Server.serve_stream``) with any stream, and the client side
(:mod:`.connect`) with a child's pipes. The ``unix://`` listener speaks
websocket instead (:mod:`.websocket`)."""

from __future__ import annotations

from collections.abc import Sequence

import trio

from ..runtime.kernel.stream import Oversized, TransportClosed
from .framing import DEFAULT_MAX_LINE, NEED_DATA, LineFramer, frame_lines

READ_SIZE = 256 * 1024


class JsonlStream:
    """A :class:`~trio_codex.runtime.kernel.stream.FrameStream` of JSONL lines."""

    def __init__(
        self,
        receive: trio.abc.ReceiveStream,
        send: trio.abc.SendStream,
        *,
        peer: str,
        max_line: int = DEFAULT_MAX_LINE,
        buffered: bytes = b"",
    ) -> None:
        """``buffered``: bytes already read from ``receive`` (by the
        start-up handshake), framed before anything read later."""
        self.peer = peer
        self.max_frame = max_line
        self._receive = receive
        self._send = send
        self._framer = LineFramer(max_line)
        if buffered:
            self._framer.receive_data(buffered)

    async def receive_frame(self) -> bytes | Oversized | None:
        while True:
            frame = self._framer.next_frame()
            if frame is not NEED_DATA:
                return frame
            try:
                data = await self._receive.receive_some(READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return None
            if not data:
                return None
            self._framer.receive_data(data)

    async def send_frames(self, frames: Sequence[bytes]) -> None:
        try:
            await self._send.send_all(frame_lines(frames))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise TransportClosed(f"{self.peer}: {exc}") from None

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        with trio.CancelScope(shield=True):
            for stream in {id(self._send): self._send, id(self._receive): self._receive}.values():
                await stream.aclose()
