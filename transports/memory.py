"""The in-process transport: a connection whose two ends are bounded trio
memory channels of frames. For programs that embed the server behind their
own transport, for ``trio-codex exec``, and for tests that want the whole
actor system without a subprocess.

Both ends are :class:`~trio_codex.runtime.kernel.stream.FrameStream`\\ s: the server
end goes to :func:`trio_codex.runtime.app.serve`, the client end speaks
JSON-RPC frames (one message each, no newline).
"""

from __future__ import annotations

from collections.abc import Sequence

import trio

from ..runtime.kernel.stream import Oversized, TransportClosed

#: Frames in flight each way before the sender waits.
CAPACITY = 1024


class MemoryFrameStream:
    def __init__(self, send: trio.MemorySendChannel[bytes], receive: trio.MemoryReceiveChannel[bytes],
                 peer: str, max_frame: int) -> None:
        self._send = send
        self._receive = receive
        self.peer = peer
        self.max_frame = max_frame

    async def receive_frame(self) -> bytes | Oversized | None:
        try:
            frame = await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            return None
        if len(frame) > self.max_frame:
            return Oversized(len(frame), frame[:4096])
        return frame

    async def send_frames(self, frames: Sequence[bytes]) -> None:
        try:
            for frame in frames:
                await self._send.send(frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise TransportClosed(f"{self.peer}: the other end is closed") from None

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        await self._send.aclose()
        await self._receive.aclose()


def memory_frame_pair(*, max_frame: int = 64 * 1024 * 1024) -> tuple[MemoryFrameStream, MemoryFrameStream]:
    """(server end, client end) of one in-process connection."""
    to_server, server_in = trio.open_memory_channel[bytes](CAPACITY)
    to_client, client_in = trio.open_memory_channel[bytes](CAPACITY)
    return (MemoryFrameStream(to_client, server_in, "memory", max_frame),
            MemoryFrameStream(to_server, client_in, "memory-client", max_frame))
