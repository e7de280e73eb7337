"""The websocket listeners: ``ws://IP:PORT`` over TCP and ``unix://[PATH]``
over a unix socket (the original speaks websocket on both, one JSON-RPC
message per text message), many connections each. The thin I/O shell
around :mod:`.wsframing`, which holds every protocol decision.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import h11
import trio
from wsproto.utilities import LocalProtocolError

from ..runtime.stream import Oversized, TransportClosed
from .framing import NEED_DATA
from .listen import ListenUrl
from .wsframing import MAX_HEAD, HttpAnswer, JwtAuth, TokenAuth, WsFramer, decide, http_response

__all__ = ["HANDSHAKE_TIMEOUT", "WebSocketStream", "default_socket_path", "open_listeners", "serve_websocket"]

log = logging.getLogger("trio_codex.transports")

#: How long a new connection may take to send its request head.
HANDSHAKE_TIMEOUT = 10.0
#: How long closing may spend on the close frame.
CLOSE_TIMEOUT = 1.0
READ_SIZE = 256 * 1024
#: Longest path a unix socket can be bound at (sun_path, with room to spare).
UNIX_PATH_MAX = 100


class WebSocketStream:
    """A :class:`~trio_codex.runtime.stream.FrameStream` over an upgraded
    connection. The connection's reader and writer tasks share it: every
    write (frames, pongs, the close) goes through one lock, so bytes from
    wsproto reach the socket in the order wsproto produced them."""

    def __init__(self, stream: trio.abc.Stream, framer: WsFramer, *, peer: str) -> None:
        self.peer = peer
        self.max_frame = framer.max_frame
        self._stream = stream
        self._framer = framer
        self._send_lock = trio.StrictFIFOLock()

    async def receive_frame(self) -> bytes | Oversized | None:
        while True:
            frame = self._framer.next_frame()
            if reply := self._framer.data_to_send():
                try:
                    await self._write(reply)
                except TransportClosed:
                    return None
            if frame is not NEED_DATA:
                return frame  # type: ignore[return-value]
            try:
                data = await self._stream.receive_some(READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return None
            if not data:
                return None
            self._framer.receive_data(data)

    async def send_frames(self, frames: Sequence[bytes]) -> None:
        async with self._send_lock:
            try:
                data = self._framer.frames(frames)
            except LocalProtocolError as exc:
                raise TransportClosed(f"{self.peer}: closing ({exc})") from None
            await self._send(data)

    async def _write(self, data: bytes) -> None:
        async with self._send_lock:
            await self._send(data)

    async def _send(self, data: bytes) -> None:
        try:
            await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise TransportClosed(f"{self.peer}: {exc}") from None

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            with trio.move_on_after(CLOSE_TIMEOUT):
                try:
                    await self._write(self._framer.close())
                except TransportClosed:
                    pass
            await self._stream.aclose()


async def handshake(stream: trio.abc.Stream, auth: TokenAuth | JwtAuth | None, max_frame: int) -> WsFramer | None:
    """Read the request head of a new connection and answer it: a
    :class:`WsFramer` once upgraded, None when it got a plain HTTP answer
    (or sent nothing usable in time)."""
    head = bytearray()
    with trio.move_on_after(HANDSHAKE_TIMEOUT):
        while b"\r\n\r\n" not in head:
            if len(head) > MAX_HEAD:
                await stream.send_all(http_response(HttpAnswer(431)))
                return None
            data = await stream.receive_some(READ_SIZE)
            if not data:
                return None
            head += data
        conn = h11.Connection(h11.SERVER)
        try:
            conn.receive_data(bytes(head))
            request = conn.next_event()
            if not isinstance(request, h11.Request):
                raise h11.RemoteProtocolError("no request line")
        except h11.RemoteProtocolError as exc:
            await stream.send_all(http_response(HttpAnswer(400, str(exc).encode())))
            return None
        answer = decide(request, auth, time.time())
        if isinstance(answer, HttpAnswer):
            await stream.send_all(http_response(answer))
            return None
        framer = WsFramer(max_frame)
        try:
            framer.accept(bytes(head))
        except h11.RemoteProtocolError as exc:
            await stream.send_all(http_response(HttpAnswer(400, str(exc).encode())))
            return None
        await stream.send_all(framer.data_to_send())
        return framer
    return None


def default_socket_path(codex_home: Path) -> Path:
    """``unix://`` with no path: the original's control socket."""
    return codex_home / "app-server-control" / "app-server-control.sock"


async def open_listeners(listen: ListenUrl, codex_home: Path) -> tuple[list[trio.SocketListener], str]:
    """Bind what ``--listen`` names; returns the listeners and the URL they
    serve (with the port the system chose for ``ws://IP:0``).

    Raises:
      OSError: the address cannot be bound, or a live server holds the socket.
    """
    if listen.scheme == "ws":
        assert listen.host is not None and listen.port is not None
        listeners = await trio.open_tcp_listeners(listen.port, host=listen.host)
        host, port = listeners[0].socket.getsockname()[:2]
        return listeners, f"ws://{host if ':' not in host else f'[{host}]'}:{port}"
    path = Path(listen.path) if listen.path else default_socket_path(codex_home)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    try:
        address = await _unix_address(path)
        await sock.bind(address)
        os.chmod(address, 0o600)
        sock.listen()
    except BaseException:
        sock.close()
        raise
    return [trio.SocketListener(sock)], f"unix://{path}"


async def _unix_address(path: Path) -> str:
    """Where to bind ``path``: itself, or for a path too long for a unix
    socket, a short one in ``$TMPDIR/codex-daemon-<uid>/`` that ``path``
    links to (as the original does). A socket left by a dead server is
    removed; one a server still answers on is an error."""
    if path.exists() or path.is_symlink():
        probe = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        try:
            await probe.connect(str(path))
        except OSError:
            pass
        else:
            raise OSError(f"{path}: another app server is listening there; stop it or choose another path")
        finally:
            probe.close()
        target = path.resolve()
        path.unlink()
        if target != path:
            target.unlink(missing_ok=True)
    if len(os.fsencode(path)) <= UNIX_PATH_MAX:
        return str(path)
    short = Path(tempfile.gettempdir()) / f"codex-daemon-{os.getuid()}"
    short.mkdir(mode=0o700, exist_ok=True)
    address = short / hashlib.sha256(os.fsencode(path)).hexdigest()[:32]
    address.unlink(missing_ok=True)
    path.symlink_to(address)
    return str(address)


def _peer(stream: trio.SocketStream, url: str) -> str:
    if url.startswith("unix://"):
        return url.replace("unix://", "unix:", 1)
    try:
        host, port = stream.socket.getpeername()[:2]
    except OSError:
        return "ws:?"
    return f"ws:{host}:{port}"


async def serve_websocket(
    listeners: list[trio.SocketListener],
    url: str,
    on_connection: Callable[[WebSocketStream], Awaitable[None]],
    *,
    auth: TokenAuth | JwtAuth | None,
    max_frame: int,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept connections until cancelled; each upgraded one is handed to
    ``on_connection`` in its own task. A unix socket file is removed at
    the end."""

    async def handle(stream: trio.SocketStream) -> None:
        try:
            framer = await handshake(stream, auth, max_frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            framer = None
        if framer is None:
            await trio.aclose_forcefully(stream)
            return
        await on_connection(WebSocketStream(stream, framer, peer=_peer(stream, url)))

    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, handle, listeners)
            task_status.started()
    finally:
        if url.startswith("unix://"):
            path = Path(url[len("unix://"):])
            target = path.resolve()
            path.unlink(missing_ok=True)
            if target != path:
                target.unlink(missing_ok=True)
