"""The websocket listeners: ``ws://IP:PORT`` over TCP and ``unix://[PATH]``
over a unix socket (the original speaks websocket on both, one JSON-RPC
message per text message), many connections each. The thin I/O shell
around :mod:`.wsframing`, which holds every protocol decision.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import stat
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import h11
import trio
from wsproto.utilities import LocalProtocolError, RemoteProtocolError as WsProtocolError

from ..runtime.server.limits import Limits
from ..runtime.kernel.stream import Oversized, TransportClosed, WriteStalled
from .framing import NEED_DATA
from .listen import ListenUrl
from .wsframing import MAX_HEAD, HttpAnswer, JwtAuth, TokenAuth, WsFramer, decide, http_response

__all__ = ["HANDSHAKE_TIMEOUT", "ConnectionGate", "Listening", "WebSocketStream", "default_socket_path",
           "open_listeners", "serve_websocket"]

log = logging.getLogger("trio_codex.transports")

#: How long a new connection may take to send its request head.
HANDSHAKE_TIMEOUT = 10.0
#: How long closing may spend on the close frame.
CLOSE_TIMEOUT = 1.0
READ_SIZE = 256 * 1024
#: A write is watched for progress in pieces this big.
WRITE_CHUNK = 64 * 1024
#: How long a refusal (503: too many connections) may take to write.
REFUSAL_TIMEOUT = 1.0
#: Accept errors that mean "no room for one more now": out of descriptors
#: (the process's, the system's) or of kernel memory.
ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: The pause before accepting again after one of those, doubling up to the max.
ACCEPT_BACKOFF_MIN = 0.01
ACCEPT_BACKOFF_MAX = 1.0
#: The longest reason a close frame carries, in bytes.
MAX_CLOSE_REASON = 123
#: Longest path a unix socket can be bound at (sun_path, with room to spare).
UNIX_PATH_MAX = 100


class WebSocketStream:
    """A :class:`~trio_codex.runtime.kernel.stream.FrameStream` over an upgraded
    connection. The connection's reader and writer tasks share it: every
    write (frames, pongs, the close) goes through one lock, so two writes
    never interleave on the socket; a pong may overtake a text frame
    wsproto encoded before it, which the protocol allows. A write cut short
    (cancelled, or making no progress for ``write_timeout`` s) may have
    left part of a frame on the socket: no close frame follows it then, the
    socket is just closed."""

    def __init__(self, stream: trio.abc.Stream, framer: WsFramer, *, peer: str,
                 write_timeout: float = Limits().write_timeout) -> None:
        self.peer = peer
        self.max_frame = framer.max_frame
        self.write_timeout = write_timeout
        self._stream = stream
        self._framer = framer
        self._send_lock = trio.StrictFIFOLock()
        self._torn = False
        self._heard = trio.Event()

    async def receive_frame(self) -> bytes | Oversized | None:
        while True:
            frame = self._framer.next_frame()
            if reply := self._framer.data_to_send():
                try:
                    await self._write(reply)
                except TransportClosed:
                    return None
            if frame is not NEED_DATA:
                return frame
            try:
                data = await self._stream.receive_some(READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return None
            if not data:
                return None
            self._heard.set()
            self._framer.receive_data(data)

    async def keepalive(self, interval: float, timeout: float) -> str:
        """Ping the peer every ``interval`` s; return why it is considered
        gone once it sent nothing (a pong or anything else) for ``timeout``
        s after a ping. Runs until then."""
        while True:
            await trio.sleep(interval)
            self._heard = trio.Event()
            with trio.move_on_after(timeout):
                try:
                    await self._write(self._framer.ping(b"keepalive"))
                except TransportClosed:
                    return "the peer is gone"
                await self._heard.wait()
                continue
            return f"the peer did not answer a ping within {timeout:g} s"

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
        """Write ``data``; a piece that makes no progress for
        ``write_timeout`` s ends the connection (the peer stopped reading)."""
        self._torn = True
        view = memoryview(data)
        try:
            for start in range(0, len(view), WRITE_CHUNK):
                with trio.move_on_after(self.write_timeout):
                    await self._stream.send_all(view[start:start + WRITE_CHUNK])
                    continue
                raise WriteStalled(f"{self.peer}: a write made no progress for {self.write_timeout:g} s "
                                      f"(the client stopped reading)")
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise TransportClosed(f"{self.peer}: {exc}") from None
        self._torn = False

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        with trio.CancelScope(shield=True):
            with trio.move_on_after(CLOSE_TIMEOUT):
                try:
                    if not self._torn:
                        await self._write(self._framer.close(code, _close_reason(reason)))
                except TransportClosed:
                    pass
            await self._stream.aclose()


def _close_reason(reason: str) -> str:
    """``reason`` cut to what a close frame holds (123 bytes of UTF-8)."""
    data = reason.encode()
    return data[:MAX_CLOSE_REASON].decode(errors="ignore") if len(data) > MAX_CLOSE_REASON else reason


async def handshake(stream: trio.abc.Stream, auth: TokenAuth | JwtAuth | None, max_frame: int,
                    closing: Callable[[], str | None] | None = None) -> WsFramer | None:
    """Read the request head of a new connection and answer it: a
    :class:`WsFramer` once upgraded, None when it got a plain HTTP answer
    (or sent nothing usable in time). ``closing``: why no connection is
    taken any more, if so (:func:`.wsframing.decide`)."""
    buf = bytearray()
    with trio.move_on_after(HANDSHAKE_TIMEOUT):
        while (end := _head_end(buf)) < 0:
            if len(buf) > MAX_HEAD:
                await stream.send_all(http_response(HttpAnswer(431)))
                return None
            data = await stream.receive_some(READ_SIZE)
            if not data:
                return None
            buf += data
        head, rest = bytes(buf[:end]), bytes(buf[end:])
        try:
            conn = h11.Connection(h11.SERVER)
            conn.receive_data(head)
            request = conn.next_event()
            if not isinstance(request, h11.Request):
                raise h11.RemoteProtocolError("no request line")
            answer = decide(request, auth, time.time(), closing() if closing is not None else None)
            if isinstance(answer, HttpAnswer):
                await stream.send_all(http_response(answer))
                return None
            framer = WsFramer(max_frame)
            framer.accept(head)
        except (h11.RemoteProtocolError, WsProtocolError, UnicodeError) as exc:
            # A malformed head, or an upgrade wsproto refuses (a missing
            # Sec-WebSocket-Key, a Host that is no host name...).
            await stream.send_all(http_response(HttpAnswer(400, str(exc).encode(errors="replace"))))
            return None
        await stream.send_all(framer.data_to_send())
        # A client may send its first message right behind the head.
        if rest:
            framer.receive_data(rest)
        return framer
    return None


def _head_end(buf: bytearray) -> int:
    """Where the request head in ``buf`` ends (after its blank line), or -1."""
    ends = [i + len(mark) for mark in (b"\r\n\r\n", b"\n\n") if (i := buf.find(mark)) >= 0]
    return min(ends) if ends else -1


def default_socket_path(codex_home: Path) -> Path:
    """``unix://`` with no path: the original's control socket."""
    return codex_home / "app-server-control" / "app-server-control.sock"


class Listening(NamedTuple):
    """What :func:`open_listeners` bound: the listeners, the URL they serve,
    and the files it made (path, device, inode), removed at the end only
    if they are still the ones it made."""

    listeners: list[trio.SocketListener]
    url: str
    files: tuple[tuple[str, int, int], ...] = ()


async def open_listeners(listen: ListenUrl, codex_home: Path) -> Listening:
    """Bind what ``--listen`` names (with the port the system chose for
    ``ws://IP:0`` in the URL).

    Raises:
      OSError: the address cannot be bound, or a live server holds the socket.
    """
    if listen.scheme == "ws":
        assert listen.host is not None and listen.port is not None
        listeners = await trio.open_tcp_listeners(listen.port, host=listen.host)
        host, port = listeners[0].socket.getsockname()[:2]
        return Listening(listeners, f"ws://{host if ':' not in host else f'[{host}]'}:{port}")
    path = Path(listen.path) if listen.path else default_socket_path(codex_home)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _check_socket_parent(path.parent)
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    try:
        address = await _unix_address(path)
        await sock.bind(address)
        os.chmod(address, 0o600)
        sock.listen()
    except BaseException:
        sock.close()
        raise
    made = [(name, os.lstat(name)) for name in dict.fromkeys((str(path), address))]  # the socket, its link
    return Listening([trio.SocketListener(sock)], f"unix://{path}",
                     tuple((name, info.st_dev, info.st_ino) for name, info in made))


def _check_socket_parent(directory: Path) -> None:
    """As the original: the socket's directory must belong to this user (or
    root) and, if others may write to it, be sticky, so that no other user
    can swap the socket entry for their own.

    Raises:
      OSError: the directory does not qualify (the original's words).
    """
    info = os.stat(directory)
    writable_by_others = info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX
    if not stat.S_ISDIR(info.st_mode) or info.st_uid not in (0, os.geteuid()) or writable_by_others:
        raise OSError(f"{directory}: socket parent must be owned by the user or root and prevent other users "
                      f"from replacing socket entries")


async def _unix_address(path: Path) -> str:
    """Where to bind ``path``: itself, or for a path too long for a unix
    socket, a short one in ``$TMPDIR/codex-daemon-<uid>/`` that ``path``
    links to (as the original does). What is there already is replaced only
    if it is a socket (or our link to one) that no server answers on."""
    short = _short_address(path) if len(os.fsencode(path)) > UNIX_PATH_MAX else None
    for stale in (path, short):
        if stale is None or not os.path.lexists(stale):
            continue
        mode = os.lstat(stale).st_mode
        ours = stat.S_ISSOCK(mode) or (stale == path and stat.S_ISLNK(mode) and short is not None
                                       and os.readlink(path) == str(short))
        if not ours:
            raise OSError(f"{stale} exists and is not an app server's socket; remove it or choose another path")
        if stat.S_ISSOCK(mode) and await _answers(stale):
            raise OSError(f"{path}: another app server is listening there; stop it or choose another path")
        os.unlink(stale)
    if short is None:
        return str(path)
    path.symlink_to(short)
    return str(short)


def _short_address(path: Path) -> Path:
    """``$TMPDIR/codex-daemon-<uid>/<hash of path>``, in a directory that
    must be ours alone: a directory another user made (or a link) could
    hand our clients to someone else's socket."""
    directory = Path(tempfile.gettempdir()) / f"codex-daemon-{os.getuid()}"
    try:
        directory.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = os.lstat(directory)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise OSError(f"{directory} is not a private directory of this user; remove it, or listen on a "
                      f"shorter unix:// path")
    return directory / hashlib.sha256(os.fsencode(path)).hexdigest()[:32]


async def _answers(address: Path) -> bool:
    probe = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    try:
        await probe.connect(str(address))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def _peer(stream: trio.SocketStream, url: str) -> str:
    if url.startswith("unix://"):
        return url.replace("unix://", "unix:", 1)
    try:
        host, port = stream.socket.getpeername()[:2]
    except OSError:
        return "ws:?"
    return f"ws:{host}:{port}"


async def serve_websocket(
    listening: Listening,
    on_connection: Callable[[WebSocketStream], Awaitable[None]],
    *,
    auth: TokenAuth | JwtAuth | None,
    max_frame: int,
    limits: Limits = Limits(),
    closing: Callable[[], str | None] | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept connections until cancelled; each upgraded one is handed to
    ``on_connection`` in its own task. No connection can end the listener:
    past ``limits.max_connections`` a new one is answered 503 and closed;
    past ``limits.max_half_open`` connections not yet upgraded, the oldest
    of them is dropped; running out of file descriptors pauses accepting
    (logged, with backoff) until some are free. Once ``closing()`` gives a
    reason (a cluster node draining), a new connection's upgrade is
    answered 503 with it, while the upgraded ones carry on.
    The files of a unix socket are removed at the end."""
    gate = ConnectionGate(limits.max_connections, limits.max_half_open)

    async def handle(stream: trio.SocketStream) -> None:
        try:
            if gate.admit():
                try:
                    if await upgrade(stream):
                        return
                finally:
                    gate.leave()
            else:
                log.warning("%s: refused: %d connections already (TRIO_CODEX_MAX_CONNECTIONS)",
                            _peer(stream, listening.url), limits.max_connections)
                with trio.move_on_after(REFUSAL_TIMEOUT):
                    await stream.send_all(http_response(HttpAnswer(503, b"too many connections; retry later")))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        except Exception:
            log.exception("a websocket connection failed (a bug: please report it); the listener carries on")
        await trio.aclose_forcefully(stream)

    async def upgrade(stream: trio.SocketStream) -> bool:
        """Serve ``stream`` once upgraded (True: it is closed already)."""
        with gate.half_open() as scope:
            framer = await handshake(stream, auth, max_frame, closing)
        if scope.cancelled_caught:
            log.warning("%s: dropped before its upgrade: %d connections were not upgraded yet "
                        "(TRIO_CODEX_MAX_HALF_OPEN); the oldest goes first",
                        _peer(stream, listening.url), limits.max_half_open)
            return False
        if framer is None:
            return False
        await on_connection(WebSocketStream(stream, framer, peer=_peer(stream, listening.url),
                                            write_timeout=limits.write_timeout))
        return True

    try:
        async with trio.open_nursery() as nursery:
            for listener in listening.listeners:
                nursery.start_soon(_accept_loop, listener, handle, nursery, listening.url)
            task_status.started()
    finally:
        for name, device, inode in listening.files:
            with contextlib.suppress(OSError):
                info = os.lstat(name)
                if (info.st_dev, info.st_ino) == (device, inode):
                    os.unlink(name)


async def _accept_loop(listener: trio.SocketListener, handle: Callable[[trio.SocketStream], Awaitable[None]],
                       nursery: trio.Nursery, url: str) -> None:
    """Accept connections into ``nursery`` until cancelled. Out of file
    descriptors (or kernel memory), it waits and tries again, backing off
    up to :data:`ACCEPT_BACKOFF_MAX`, logging once when it stops accepting
    and once when it accepts again: the server goes on serving the
    connections it has, and new ones wait in the listen queue."""
    backoff = ACCEPT_BACKOFF_MIN
    paused_at: float | None = None
    async with listener:  # closed when the loop ends
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in ACCEPT_CAPACITY_ERRNOS:
                    raise
                if paused_at is None:
                    paused_at = trio.current_time()
                    log.warning("%s: cannot accept connections for now (%s); retrying, every %g s at most, until "
                                "some are closed (raise the limit with `ulimit -n`, or lower "
                                "TRIO_CODEX_MAX_CONNECTIONS)", url, exc.strerror, ACCEPT_BACKOFF_MAX)
                await trio.sleep(backoff)
                backoff = min(backoff * 2, ACCEPT_BACKOFF_MAX)
                continue
            if paused_at is not None:
                log.warning("%s: accepting connections again after %.1f s", url, trio.current_time() - paused_at)
                paused_at = None
            backoff = ACCEPT_BACKOFF_MIN
            nursery.start_soon(handle, stream)


class ConnectionGate:
    """The connection counts of one listener: how many are open, and the
    cancel scopes of those not upgraded yet, oldest first."""

    def __init__(self, max_connections: int, max_half_open: int) -> None:
        self.max_connections = max_connections
        self.max_half_open = max_half_open
        self.open = 0
        self._half_open: dict[int, trio.CancelScope] = {}
        self._serial = 0

    def admit(self) -> bool:
        """Count a new connection in (True), or refuse it (False)."""
        if self.open >= self.max_connections:
            return False
        self.open += 1
        return True

    def leave(self) -> None:
        self.open -= 1

    @contextlib.contextmanager
    def half_open(self) -> Iterator[trio.CancelScope]:
        """A scope for the handshake, cancelled if this connection becomes
        the oldest of too many half-open ones."""
        while len(self._half_open) >= self.max_half_open:
            self._half_open.pop(next(iter(self._half_open))).cancel()
        self._serial += 1
        key = self._serial
        scope = self._half_open[key] = trio.CancelScope()
        try:
            with scope:
                yield scope
        finally:
            self._half_open.pop(key, None)
