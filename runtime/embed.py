"""The embedding API: run the whole app server inside your own trio program,
and talk to it (or to any other) with a typed client.

::

    from trio_codex.runtime.embed import Client, Server

    async with Server(codex_home=home, overrides=["model=\\"gpt-5\\""]) as server:
        async with Client.in_process(server) as client:
            thread = (await client.thread_start(cwd=".")).thread
            print((await client.run_turn(thread.id, "hello")).text)

:class:`Server` starts the runtime (every actor, under its supervisor) in
the caller's nursery, or in one of its own, and serves as many connections
as the host gives it, each a full protocol session: any trio ``Stream``
(JSONL), any :class:`~.stream.FrameStream`, a pair of memory channels of
frames, or :meth:`Server.connect` for an in-process client. Leaving the
``async with`` stops it within :data:`~.app.SHUTDOWN_TIMEOUT`.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType

import trio

from ..transports.framing import DEFAULT_MAX_LINE
from ..transports.jsonl import JsonlStream
from ..transports.listen import ListenUrl
from ..transports.memory import MemoryFrameStream, memory_frame_pair
from .app import SHUTDOWN_TIMEOUT, serve
from .client import (
    Client,
    ClientClosed,
    CodexError,
    Notification,
    RequestTimeout,
    Response,
    ServerRequest,
    TurnFailed,
    TurnResult,
    TurnStream,
)
from .config import Settings, load_settings
from .kernel.errors import unwrapped
from .kernel.stream import FrameStream

__all__ = [
    "Client", "ClientClosed", "CodexError", "Notification", "RequestTimeout", "Response", "Server", "ServerRequest",
    "TurnFailed", "TurnResult", "TurnStream",
]

#: Connections handed over but not yet taken up by the server.
ACCEPT_BACKLOG = 64


class Server:
    """The app server as an ``async with``. Give it ``settings``, or a
    ``codex_home`` (default: ``$CODEX_HOME``, else ``~/.codex``) and
    ``overrides`` (``-c key=value`` texts) to load them from; ``nursery``
    is where it runs (default: a nursery of its own)."""

    def __init__(self, settings: Settings | None = None, *, codex_home: str | Path | None = None,
                 overrides: Sequence[str] = (), profile: str | None = None, nursery: trio.Nursery | None = None,
                 max_message_bytes: int = DEFAULT_MAX_LINE) -> None:
        self.settings = settings if settings is not None else load_settings(
            codex_home=Path(codex_home) if codex_home is not None else None, overrides=overrides, profile=profile)
        self.max_message_bytes = max_message_bytes
        self._nursery = nursery
        self._stack = AsyncExitStack()
        self._accept, self._accepted = trio.open_memory_channel[FrameStream](ACCEPT_BACKLOG)
        self._scope = trio.CancelScope()
        self._stopped = trio.Event()

    async def __aenter__(self) -> Server:
        nursery = self._nursery
        if nursery is None:
            self._stack.enter_context(unwrapped())
            nursery = await self._stack.enter_async_context(trio.open_nursery())
        try:
            await nursery.start(self._run)
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()
        await self._stack.aclose()

    async def aclose(self) -> None:
        """Stop taking connections and stop the server: its connections end,
        in-flight writes are flushed, within the shutdown deadline."""
        self._accept.close()
        with trio.CancelScope(shield=True), trio.move_on_after(SHUTDOWN_TIMEOUT + 1.0):
            await self._stopped.wait()
        self._scope.cancel()

    async def _run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            with self._scope:
                await serve(self.settings, ListenUrl("stdio"), accept=self._accepted,
                            max_message_bytes=self.max_message_bytes, task_status=task_status)
        finally:
            self._stopped.set()

    # --- connections -------------------------------------------------------------

    async def serve_frames(self, stream: FrameStream) -> None:
        """Serve one more session over ``stream``; returns once it is handed over."""
        try:
            await self._accept.send(stream)
        except trio.ClosedResourceError:
            raise RuntimeError("this Server is closed: it takes no more connections") from None

    async def serve_stream(self, stream: trio.abc.Stream, *, peer: str = "stream") -> None:
        """Serve a session of JSONL over any trio byte ``Stream``."""
        await self.serve_frames(JsonlStream(stream, stream, peer=peer, max_line=self.max_message_bytes))

    async def serve_channels(self, send: trio.MemorySendChannel[bytes], receive: trio.MemoryReceiveChannel[bytes],
                             *, peer: str = "channels") -> None:
        """Serve a session whose frames (one JSON-RPC message each, no
        newline) arrive on ``receive``; its answers go to ``send``."""
        await self.serve_frames(MemoryFrameStream(send, receive, peer, self.max_message_bytes))

    async def connect(self) -> FrameStream:
        """A new in-process session: the client's end of a memory transport
        (what :meth:`Client.in_process` uses)."""
        server_end, client_end = memory_frame_pair(max_frame=self.max_message_bytes)
        await self.serve_frames(server_end)
        return client_end
