"""The client side of two transports, for :class:`~trio_codex.runtime.client.Client`:
an app server run as a child process over its stdio (JSONL), and one
listening on a ``ws://`` URL (trio-websocket). Each is an ``async with``
that yields a :class:`~trio_codex.runtime.kernel.stream.FrameStream`.
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, WebSocketConnection, wrap_client_stream

from ..runtime.kernel.errors import unwrapped
from ..runtime.kernel.stream import TransportClosed
from .framing import DEFAULT_MAX_LINE
from .jsonl import JsonlStream

__all__ = ["EXIT_TIMEOUT", "ChildStream", "WebSocketFrames", "connect_websocket", "spawn_stdio"]

#: How long a child server may take to exit once its stdin is closed
#: (its own shutdown is bounded by 5 s) before it is killed.
EXIT_TIMEOUT = 10.0
#: Bound on connecting and the websocket upgrade.
CONNECT_TIMEOUT = 10.0


class ChildStream(JsonlStream):
    """JSONL over a child's stdin and stdout; ``process`` is the child (to
    signal it, or wait for it). Closing it closes the child's stdin only, as
    a client that leaves does: :func:`spawn_stdio` reads the child's output
    while it exits, so a child that writes as it shuts down is
    neither blocked on a full pipe nor broken."""

    def __init__(self, process: trio.Process, *, peer: str, max_line: int) -> None:
        assert process.stdin is not None and process.stdout is not None
        super().__init__(process.stdout, process.stdin, peer=peer, max_line=max_line)
        self.process = process

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        assert self.process.stdin is not None
        with trio.CancelScope(shield=True):
            await self.process.stdin.aclose()


@asynccontextmanager
async def spawn_stdio(argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | Path | None = None,
                      stderr: int | None = None, max_line: int = DEFAULT_MAX_LINE,
                      exit_timeout: float = EXIT_TIMEOUT) -> AsyncIterator[ChildStream]:
    """Run ``argv`` (an app server on stdio) and speak JSONL over its pipes;
    on exit its stdin is closed, as a client that leaves does, its output
    read (and dropped) while it exits, and it is killed if it has not exited within
    ``exit_timeout``. ``stderr`` is inherited unless redirected
    (``subprocess.DEVNULL``)."""
    with unwrapped():
        async with trio.open_nursery() as nursery:
            proc: trio.Process = await nursery.start(partial(
                trio.run_process, list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                env=dict(env) if env is not None else None, cwd=cwd, check=False))
            assert proc.stdout is not None
            stream = ChildStream(proc, peer=f"stdio:{Path(argv[0]).name}", max_line=max_line)
            try:
                yield stream
            finally:
                with trio.CancelScope(shield=True):
                    await stream.aclose()
                    with trio.move_on_after(exit_timeout):
                        # Drained only while it runs: a grandchild holding the pipe keeps no one waiting.
                        async with trio.open_nursery() as draining:
                            draining.start_soon(_drain, proc.stdout)
                            await proc.wait()
                            draining.cancel_scope.cancel()
                    if proc.returncode is None:
                        proc.kill()
                    await proc.stdout.aclose()


async def _drain(stream: trio.abc.ReceiveStream) -> None:
    """Read ``stream`` to its end, discarding (a closed one is at its end)."""
    try:
        while await stream.receive_some(65536):
            pass
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


class WebSocketFrames:
    """A trio-websocket connection as a FrameStream: one text message per frame."""

    def __init__(self, ws: WebSocketConnection, peer: str, max_frame: int) -> None:
        self._ws = ws
        self.peer = peer
        self.max_frame = max_frame

    async def receive_frame(self) -> bytes | None:
        try:
            message = await self._ws.get_message()
        except ConnectionClosed:
            return None
        return message.encode() if isinstance(message, str) else message

    async def send_frames(self, frames: Sequence[bytes]) -> None:
        try:
            for frame in frames:
                # JSON is UTF-8, a text message; other bytes (a test's) go as a binary one.
                try:
                    message: str | bytes = frame.decode()
                except UnicodeDecodeError:
                    message = frame
                await self._ws.send_message(message)
        except ConnectionClosed as exc:
            raise TransportClosed(f"{self.peer}: {exc.reason}") from None

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        await self._ws.aclose(code, reason or None)


@asynccontextmanager
async def connect_websocket(url: str, *, token: str | None = None,
                            max_frame: int = DEFAULT_MAX_LINE) -> AsyncIterator[WebSocketFrames]:
    """Connect to an app server's ``ws://`` listener; ``token`` goes in the
    upgrade as ``Authorization: Bearer`` (``--ws-auth``). A refused upgrade
    raises :class:`ConnectionRefusedError` with the HTTP status."""
    parts = urlsplit(url)
    if parts.scheme != "ws" or parts.hostname is None:
        raise ValueError(f"{url}: expected ws://HOST:PORT")
    port = parts.port or 80
    headers = [(b"Authorization", f"Bearer {token}".encode())] if token is not None else []
    # The TCP stream is ours to close: trio-websocket leaves it open when
    # the upgrade is refused.
    with trio.fail_after(CONNECT_TIMEOUT):
        tcp = await trio.open_tcp_stream(parts.hostname, port)
    try:
        with unwrapped():
            async with trio.open_nursery() as nursery:
                with trio.fail_after(CONNECT_TIMEOUT):
                    ws = await wrap_client_stream(nursery, tcp, parts.netloc, parts.path or "/",
                                                  extra_headers=headers, max_message_size=max_frame)
                try:
                    yield WebSocketFrames(ws, f"ws:{parts.netloc}", max_frame)
                finally:
                    with trio.CancelScope(shield=True), trio.move_on_after(CONNECT_TIMEOUT):
                        await ws.aclose()
    except ConnectionRejected as exc:
        why = (exc.body or b"").decode(errors="replace").strip()
        if exc.status_code == 401:
            why = "pass the token it expects (--ws-auth)"
        raise ConnectionRefusedError(f"{url}: the server refused the upgrade (HTTP {exc.status_code}): "
                                     f"{why or 'no reason given'}") from None
    finally:
        with trio.CancelScope(shield=True):
            await tcp.aclose()
