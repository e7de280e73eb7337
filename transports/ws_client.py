"""A websocket client over a unix socket: how ``exec`` reaches an app-server
daemon already listening on its control socket (``app-server --listen
unix://``), one JSON-RPC message per text message. A
:class:`~trio_codex.runtime.kernel.stream.FrameStream`, like the memory transport,
so exec drives either the same way.

Kept light on purpose: it is what a repeat caller imports instead of the
whole server (trio and wsproto, no actors, no openai).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Ping, RejectConnection, Request, TextMessage
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

__all__ = ["HANDSHAKE_TIMEOUT", "UnixWebSocket", "connect_unix"]

#: How long connecting and the upgrade may take.
HANDSHAKE_TIMEOUT = 2.0
#: How long closing may spend on the close frame.
CLOSE_TIMEOUT = 1.0
READ_SIZE = 256 * 1024


class UnixWebSocket:
    """One upgraded connection; use it from one task."""

    peer = "unix"

    def __init__(self, stream: trio.SocketStream, ws: WSConnection, max_frame: int) -> None:
        self._stream = stream
        self._ws = ws
        self.max_frame = max_frame
        self._parts: list[str] = []
        self._closed = False

    async def receive_frame(self) -> bytes | None:
        while not self._closed:
            for event in self._ws.events():
                if isinstance(event, TextMessage):
                    self._parts.append(event.data)
                    if event.message_finished:
                        frame = "".join(self._parts).encode()
                        self._parts.clear()
                        return frame
                elif isinstance(event, Ping):
                    await self._stream.send_all(self._ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    self._closed = True
                    return None
            try:
                data = await self._stream.receive_some(READ_SIZE)
            except trio.BrokenResourceError:
                data = b""
            try:
                self._ws.receive_data(data or None)
            except RemoteProtocolError:
                self._closed = True
        return None

    async def send_frames(self, frames: Sequence[bytes]) -> None:
        await self._stream.send_all(b"".join(self._ws.send(TextMessage(data=f.decode())) for f in frames))

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Say ``code`` and ``reason`` in a close frame (within CLOSE_TIMEOUT), then close."""
        with trio.move_on_after(CLOSE_TIMEOUT) as scope:
            scope.shield = True
            try:
                if not self._closed:
                    await self._stream.send_all(self._ws.send(CloseConnection(code=code, reason=reason)))
            except (LocalProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
                pass
        self._closed = True
        await self._stream.aclose()


async def connect_unix(path: str | os.PathLike[str], *, timeout: float = HANDSHAKE_TIMEOUT,
                       max_frame: int = 64 * 1024 * 1024) -> UnixWebSocket:
    """Connect to the websocket server on the unix socket at ``path`` (a
    link to the socket is followed, as the listener makes one for a path too
    long to bind).

    Raises:
      OSError: nothing listens there, or it did not accept the upgrade in time.
    """
    with trio.move_on_after(timeout):
        stream = await trio.open_unix_socket(os.path.realpath(path))
        ws = WSConnection(ConnectionType.CLIENT)
        try:
            await stream.send_all(ws.send(Request(host="localhost", target="/")))
            while True:
                data = await stream.receive_some(READ_SIZE)
                ws.receive_data(data or None)
                for event in ws.events():
                    if isinstance(event, AcceptConnection):
                        return UnixWebSocket(stream, ws, max_frame)
                    if isinstance(event, RejectConnection):
                        raise OSError(f"the server at {path} refused the upgrade ({event.status_code})")
                if not data:
                    raise OSError(f"the server at {path} closed the connection during the upgrade")
        except (trio.BrokenResourceError, RemoteProtocolError) as exc:
            await stream.aclose()
            raise OSError(f"the websocket upgrade at {path} failed: {exc}") from None
        except BaseException:
            await stream.aclose()
            raise
    raise OSError(f"no websocket upgrade from {path} within {timeout} s")
