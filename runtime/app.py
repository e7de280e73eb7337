"""The composition root: where actors/ and transports/ are wired together
(the entry points, which may import them too, only start it).

``serve()`` opens the host nursery and, under the host supervisor, starts in
order: analytics, the hub, approvals, the store, the MCP pool and the thread
registry (which supervises the threads and, under them, turns and model
streams, through the model pool); then the listeners, which give each
connection a Connection actor. The
nursery tree is the ownership tree: cancelling the host cancels everything,
and shutdown is bounded by :data:`SHUTDOWN_TIMEOUT`. Every actor handles
each message behind a bug barrier (``actors/messages/barrier.py``); the supervisor
restarts a singleton that crashes anyway, on the same mailbox.
"""

from __future__ import annotations

import itertools
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from functools import partial
from typing import TYPE_CHECKING

import trio

from ..actors.analytics.actor import run_analytics
from ..actors.approvals import APPROVALS_CAPACITY, run_approvals
from ..actors.connection import Connection
from ..actors.messages.fanout import EventNumbers
from ..actors.hub import HUB_CAPACITY, run_hub
from ..actors.messages import EvictThread
from ..actors.mcp.pool import POOL_CAPACITY, McpPool
from ..actors.store import STORE_CAPACITY, LocalThreadStore, run_store
from ..actors.model.pool import ModelPool
from ..actors.threads import REGISTRY_CAPACITY, ThreadRegistry
from ..transports.framing import DEFAULT_MAX_LINE
from ..transports.listen import ListenUrl
from ..transports.stdio import open_stdio
from .commands import seccomp
from .config import Settings
from .handshake import Handover
from .server.limits import Limits
from .kernel.mailbox import open_mailbox
from .server.info import ServerInfo
from .server.rate_limits import RateLimits
from .kernel.stream import FrameStream
from .kernel.supervisor import RestartPolicy, open_supervisor

if TYPE_CHECKING:
    # The websocket listeners and the scripted model are imported when
    # used: a stdio server answers `initialize` without them.
    from ..transports.websocket import Listening
    from ..transports.wsframing import JwtAuth, TokenAuth
    from .cluster.ports import Bus, Directory, ThreadStore

log = logging.getLogger("trio_codex.app")

#: How long shutdown may take once it starts: in-flight writes are flushed,
#: model streams closed; whatever is still running after this is cancelled.
SHUTDOWN_TIMEOUT = 5.0

#: The host's singleton actors (hub, approvals, store, thread registry) are
#: restarted like threads: more than 3 crashes in 10 s stops the server.
SINGLETON_RESTARTS = RestartPolicy(intensity=3, period=10.0)

#: Seconds start-up's background work waits for a first `initialize`.
WARM_UP_DELAY = 1.0

def _scripted_starter(nursery: trio.Nursery) -> Callable[[], Awaitable[str]]:
    """For the model pool: start the embedded scripted Responses server in
    ``nursery`` and return its base URL (called once, on first use)."""

    async def start() -> str:
        from ..transports.scripted_responses import ScriptedResponses

        server = ScriptedResponses()
        await nursery.start(server.serve)
        return server.base_url

    return start


async def _warm_up(models: ModelPool, info: ServerInfo) -> None:
    """What start-up leaves to the background, once the first client's
    ``initialize`` is answered (or after :data:`WARM_UP_DELAY`), most urgent
    first: the model client the first turn needs, then the sandbox's
    seccomp filters (built now so that a sandboxed command does not fail
    for them later, when the process may be out of file descriptors). One
    after the other, and after the answer: worker threads share the
    interpreter, and would slow the handshake down."""
    with trio.move_on_after(WARM_UP_DELAY):
        await info.answered_initialize.wait()
    await models.warm()
    await trio.to_thread.run_sync(seccomp.preload)


async def _stop_on_signal(host: trio.CancelScope, drains: Sequence[Callable[[], Awaitable[None]]] = (), *,
                          task_status: trio.TaskStatus[None]) -> None:
    """Stop the server at SIGTERM or SIGINT, after running ``drains`` (a
    cluster node handing its threads off) unless a second signal comes."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        task_status.started()
        async for signum in signals:
            name = signal.Signals(signum).name
            if drains:
                log.info("%s received: draining (a second signal stops at once)", name)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_drain, drains, nursery.cancel_scope)
                    async for _ in signals:
                        nursery.cancel_scope.cancel()
            log.info("%s received: shutting down", name)
            host.cancel(reason=f"{name} received")
            return


async def _drain(drains: Sequence[Callable[[], Awaitable[None]]], done: trio.CancelScope) -> None:
    for drain in drains:
        await drain()
    done.cancel()


async def serve(settings: Settings, listen: ListenUrl | Sequence[ListenUrl], *, stream: FrameStream | None = None,
                max_message_bytes: int = DEFAULT_MAX_LINE, analytics_default_enabled: bool = False,
                ws_auth: TokenAuth | JwtAuth | None = None, limits: Limits = Limits(),
                accept: trio.MemoryReceiveChannel[FrameStream] | None = None,
                cluster: AbstractAsyncContextManager[tuple[Bus, Directory, ThreadStore | None]] | None = None,
                handover: Handover | None = None,
                task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Run the app server until its listener ends (stdin EOF when stdio is
    one of them) or a SIGTERM/SIGINT arrives. ``listen`` may name several
    listeners (stdio beside a ``ws://``, a ``ws://`` beside a ``unix://``);
    ``ws://`` and ``unix://`` serve websocket connections, each its own
    session, within ``limits``; ``ws_auth`` requires a bearer token in their
    upgrade. With ``accept`` (an embedding host, :mod:`.embed`), each stream
    sent on it is one more session, for as long as the channel is open, and
    the host, not a signal, stops the server. With ``cluster`` (the Bus,
    Directory and store to open, :mod:`.cluster.node`), this process is one node of a
    cluster: every client connection goes through a gateway that forwards
    requests for threads owned by other nodes (:mod:`.cluster.tunnel`).
    ``handover``: what the command line's handshake did with stdin before
    the server ran (its answered ``initialize``, the bytes it read), which
    the stdio connection takes over (not with ``cluster``).
    ``task_status`` is started once the actors run."""
    listens = [listen] if isinstance(listen, ListenUrl) else list(listen)
    rate_limits = RateLimits()
    info = ServerInfo(settings, rate_limits)
    conn_ids = itertools.count(1)
    bound: list[Listening] = []
    # Bound first: a refusal stops start-up with its message alone, before any actor runs.
    for each in listens:
        if each.scheme in ("ws", "unix"):
            from ..transports.websocket import open_listeners

            try:
                bound.append(await open_listeners(each, settings.codex_home))
            except OSError as exc:
                raise SystemExit(f"trio-codex: cannot listen on {each.scheme}://: {exc}") from None
    async with trio.open_nursery() as host, open_supervisor(
            "host", policy=SINGLETON_RESTARTS, shutdown_timeout=SHUTDOWN_TIMEOUT) as sup, AsyncExitStack() as stack:
        models = ModelPool(settings, host, rate_limits, start_scripted=_scripted_starter(host))
        host.start_soon(_warm_up, models, info)
        drains: list[Callable[[], Awaitable[None]]] = []
        if stream is None and accept is None:
            await host.start(_stop_on_signal, host.cancel_scope, drains)
        # Analytics is best effort: if it fails, the server goes on without it.
        recorder = await sup.start_child("analytics", partial(
            run_analytics, settings.analytics, default_enabled=analytics_default_enabled), restart="temporary")
        try:
            # Each singleton serves a mailbox opened here, so that a restart
            # serves the same one and its senders never notice.
            hub = await sup.start_child("hub", run_hub, open_mailbox(HUB_CAPACITY, name="hub"))
            # Per-thread numbers of the events threads fan out (a cluster taps them).
            numbers = EventNumbers()
            approvals = await sup.start_child("approvals", run_approvals, recorder,
                                              open_mailbox(APPROVALS_CAPACITY, name="approvals"), numbers)
            store = await sup.start_child("store", run_store, settings.codex_home,
                                          open_mailbox(STORE_CAPACITY, name="store"))
            # The MCP servers' connections, shared by the threads (actors/mcp/pool.py).
            mcp = await sup.start_child("mcp", McpPool(settings).run, open_mailbox(POOL_CAPACITY, name="mcp"))
            threads = await sup.start_child(
                "threads", ThreadRegistry(settings, models, hub, approvals, store, recorder, mcp, numbers).run,
                open_mailbox(REGISTRY_CAPACITY, name="threads"))
            task_status.started()

            async def connection(ws: FrameStream) -> None:
                await Connection(next(conn_ids), ws, info, hub, threads, approvals, recorder,
                                 can_disconnect=True, limits=limits).run()

            session: Callable[[FrameStream], Awaitable[None]] = connection
            closing: Callable[[], str | None] | None = None
            if cluster is not None:
                from .cluster.drain import REFUSAL
                from .cluster.host import open_tunnels

                from ..transports.memory import memory_frame_pair

                async def evict(thread_id: str) -> None:
                    await threads.send(EvictThread(thread_id))

                session, drain = await stack.enter_async_context(open_tunnels(
                    *await stack.enter_async_context(cluster), connection,
                    LocalThreadStore(store, settings.codex_home), memory_frame_pair, numbers, evict,
                    settings.cluster.drain_timeout_secs))
                draining = trio.Event()

                async def drain_node() -> None:
                    draining.set()  # from now on the listeners refuse new clients
                    await drain()

                def refusal() -> str | None:
                    return REFUSAL if draining.is_set() else None

                closing = refusal
                drains.append(drain_node)

            for listening in bound:
                from ..transports.websocket import serve_websocket

                await host.start(partial(serve_websocket, listening, session, auth=ws_auth,
                                         max_frame=max_message_bytes, limits=limits, closing=closing))
                _banner(listening.url)
            if accept is not None:
                async with accept:
                    async for accepted in accept:
                        host.start_soon(session, accepted)
            elif cluster is not None and any(each.scheme == "stdio" for each in listens):
                await session(stream or open_stdio(max_line=max_message_bytes))
            elif any(each.scheme == "stdio" for each in listens):
                handover = handover or Handover(None, b"")
                conn = Connection(next(conn_ids), stream or open_stdio(max_line=max_message_bytes,
                                                                       buffered=handover.buffered),
                                  info, hub, threads, approvals, recorder, limits=limits,
                                  handshake=handover.accepted)
                await conn.run()
            else:
                await trio.sleep_forever()
        finally:
            with trio.move_on_after(SHUTDOWN_TIMEOUT, shield=True):
                await models.aclose()
            recorder.close()
            host.cancel_scope.cancel(reason="app server shutting down: its listener ended")


def _banner(url: str) -> None:
    """What the original prints once listening (stderr: stdout is not ours
    to write on when another program launched us)."""
    lines = ["codex app-server (WebSockets)", f"  listening on: {url}"]
    if url.startswith("ws://"):
        http = "http://" + url[len("ws://"):]
        lines += [f"  readyz: {http}/readyz", f"  healthz: {http}/healthz"]
    print("\n".join(lines), file=sys.stderr, flush=True)
