"""The owner's side of the tunnels (:class:`TunnelHost`), and
:func:`open_tunnels`, which runs a node's side of them (README "Cluster")."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

import trio

from ..kernel.stream import FrameStream
from .drain import drain_deadline, drain_threads
from .events import EventNumbers, ThreadTail
from .gateway import Gateway
from .mirror import LocalRollouts, Mirror
from .ports import Bus, Directory, EventTail, Fenced, Message, ThreadListing, ThreadStore
from . import tunnel
from .tunnel import VirtualStream
from .wire import (CLOSE, CONN, DRAIN_TIMEOUT, GATEWAY, GATEWAY_CAPACITY, HOP_TIMEOUT, LOST, OWNER, RESEND,
                   SETTLE_TIMEOUT, SETTLING, TUNNEL, VIRTUAL_CAPACITY, Evict, ServeConnection, StreamPair, decode_frame,
                   log, thread_subject)


class TunnelHost:
    """The owner's side: serves ``codex.thread.<id>.req`` for every thread
    this node has claimed, and ``codex.node.<node>.in`` for answers and
    closes of existing virtual connections."""

    def __init__(self, bus: Bus, directory: Directory, store: ThreadStore | None,
                 serve_connection: ServeConnection, nursery: trio.Nursery, local: LocalRollouts | None = None,
                 pair: StreamPair | None = None, evict: Evict | None = None,
                 drain_timeout: float | None = None) -> None:
        self.bus = bus
        self.evict = evict
        #: config.toml's ``[cluster] drain_timeout_secs`` (:func:`.drain.drain_deadline`).
        self.drain_timeout = drain_timeout
        self.directory = directory
        self.store = store
        self.mirror = Mirror(local, store, nursery, self.fenced) if store is not None and local is not None else None
        self.scopes: dict[str, trio.CancelScope] = {}
        self.serve_connection = serve_connection
        self.pair = pair
        self.nursery = nursery
        self.virtual: dict[tuple[str, str, str], VirtualStream] = {}
        #: Closed virtual connections, kept for resending for REPLAY_AGE.
        self.retired: dict[tuple[str, str, str], VirtualStream] = {}
        self.owned: dict[str, int] = {}
        #: Threads the store fenced this node out of (:meth:`fenced`).
        self.silenced: set[str] = set()
        #: This node's client connections.
        self.gateways: set[Gateway] = set()
        #: Set once the node drains: it activates no thread any more.
        self.draining = False
        #: The cluster-wide ``thread/list``, when the store keeps one. (mypy
        #: sees no class that is both protocols, so calls the test always false.)
        self.listing = store if isinstance(store, ThreadListing) else None  # type: ignore[redundant-expr]
        #: The owned threads' event tail, when the bus keeps one (:meth:`tap`).
        self.tail: ThreadTail | None = None

    async def rejoin(self) -> None:
        """Each time the bus reconnects to the fabric, have every client
        connection's gateway ask its owners for what it may have missed
        (:func:`.repair._rejoined`)."""
        while True:
            await self.bus.reconnected()
            for gateway in list(self.gateways):
                gateway.rejoined()

    def tap(self, numbers: EventNumbers) -> None:
        """Keep the lossless events of the threads this node owns in the
        bus's event tail, numbered by ``numbers`` (:mod:`.events`)."""
        if isinstance(self.bus, EventTail):
            self.tail = ThreadTail(self.bus, self.owned, self.settle)
            numbers.tap = self.tail.record
            self.nursery.start_soon(self.tail.run)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with self.bus.subscribe(f"codex.node.{self.bus.node}.in", GATEWAY_CAPACITY) as inbox:
            task_status.started()
            async for msg in inbox:
                await self._feed(msg, create=False)

    async def own(self, thread_id: str, epoch: int) -> None:
        """Serve the thread's subject from now on (the claim is ours), and
        raise the thread's epoch in the store, which fences out the node
        that held it before."""
        if thread_id in self.owned:
            return
        try:
            if self.mirror is not None:
                await self.mirror.activate(thread_id, epoch)
            elif self.store is not None:
                await self.store.activate(thread_id, epoch)
        except Fenced as exc:
            log.error("cluster: not activating: %s", exc)
            return
        self.owned[thread_id] = epoch
        self.silenced.discard(thread_id)
        await self.nursery.start(self._serve_thread, thread_id)

    async def hand_off(self) -> None:
        """On shutdown: copy what is left of the rollouts into the store,
        then release every claim, so other nodes activate these threads
        at once rather than after the lease runs out."""
        log.info("cluster: node %s hands %d threads off", self.bus.node, len(self.owned))
        if self.mirror is not None:
            await self.mirror.flush()
        for thread_id, epoch in list(self.owned.items()):
            await self.directory.release(thread_id, epoch)
        self.owned.clear()

    async def outgoing(self, frames: Sequence[bytes]) -> Sequence[bytes]:
        """What of ``frames`` may leave the node to a client, once settled:
        not the notifications of threads this node was fenced out of."""
        await self.settle(frames)  # which may find the thread fenced
        if self.silenced:
            frames = [frame for frame in frames if not self._silenced(frame)]
        return frames

    def _silenced(self, frame: bytes) -> bool:
        if not any(thread_id.encode() in frame for thread_id in self.silenced):
            return False
        msg = decode_frame(frame) or {}
        params = msg.get("params")
        return "id" not in msg and isinstance(params, dict) and params.get("threadId") in self.silenced

    async def settle(self, frames: Sequence[bytes]) -> None:
        """Before frames that report items or turns completed go to a
        client, copy their threads' rollouts into the store, so that what a
        client saw completed survives this node."""
        if self.mirror is None or not self.owned:
            return
        threads = set()
        for frame in frames:
            if any(marker in frame for marker in SETTLING):
                params = (decode_frame(frame) or {}).get("params")
                thread_id = params.get("threadId") if isinstance(params, dict) else None
                if thread_id in self.owned:
                    threads.add(thread_id)
        for thread_id in threads:
            with trio.move_on_after(SETTLE_TIMEOUT) as scope:
                await self.mirror.sync(thread_id)
            if scope.cancelled_caught:
                log.warning("cluster: thread %s: the store did not take its completed items within %.0f s",
                            thread_id, SETTLE_TIMEOUT)

    async def drain(self) -> None:
        """Hand every thread off while the node still runs (SIGTERM): idle
        ones at once, busy ones after their turn or, past the deadline,
        interrupted (:mod:`.drain`); their clients are told ``thread/closed``."""
        self.draining = True
        log.info("cluster: node %s drains %d threads", self.bus.node, len(self.owned))
        if self.pair is None:
            return  # no way to watch the threads: the shutdown's hand-off releases them
        try:
            await drain_threads(list(self.owned), self.serve_connection, self.release,
                                drain_deadline(self.drain_timeout), self.pair)
        except Exception:  # the shutdown's hand-off still copies and releases what is left
            log.exception("cluster: the drain failed")

    async def release(self, thread_id: str) -> None:
        """Copy what is left of the thread's rollout into the store, give up
        the claim, and tell every client that followed it here that it is
        closed (the original's ``thread/closed``), so that they resume it
        wherever it is activated next."""
        epoch = self.owned.get(thread_id)
        if epoch is None:
            return
        if self.mirror is not None:
            await self.mirror.sync(thread_id, listing=True)
            self.mirror.stop(thread_id)
        await self.directory.release(thread_id, epoch)
        self.drop(thread_id)
        await self._tell_released(thread_id)

    async def _tell_released(self, thread_id: str) -> None:
        """Tell the clients that follow the thread here, remote or local,
        that it is closed (``thread/closed``)."""
        for stream in list(self.virtual.values()):
            stream.released(thread_id)
        for gateway in list(self.gateways):
            with trio.move_on_after(HOP_TIMEOUT):  # a client that does not read is not told
                await gateway.thread_released(thread_id)

    def fenced(self, thread_id: str) -> None:
        """The store refused this node's append: another node took the
        thread over while this one was frozen or cut off. Stop serving it:
        its requests go to the new owner, the clients that followed it here
        are told it is closed (they resume it there), its actor here is
        stopped and unloaded (``evict``: no more model calls, nothing more
        written), and whatever it sent meanwhile no longer reaches a client."""
        self.drop(thread_id)
        self.silenced.add(thread_id)
        self.nursery.start_soon(self._tell_released, thread_id)
        if self.evict is not None:
            self.nursery.start_soon(self.evict, thread_id)

    def drop(self, thread_id: str) -> None:
        """Stop serving a thread another node has taken over."""
        self.owned.pop(thread_id, None)
        scope = self.scopes.pop(thread_id, None)
        if scope is not None:
            scope.cancel()

    async def _serve_thread(self, thread_id: str, *, task_status: trio.TaskStatus[None]) -> None:
        with trio.CancelScope() as self.scopes[thread_id]:
            async with self.bus.subscribe(thread_subject(thread_id), VIRTUAL_CAPACITY) as requests:
                task_status.started()
                async for msg in requests:
                    await self._feed(msg, create=True)
                    self.bus.reply(msg, self.bus.node.encode())

    async def _feed(self, msg: Message, *, create: bool) -> None:
        headers = msg.headers or {}
        key = (headers.get(GATEWAY, ""), headers.get(CONN, ""), headers.get(TUNNEL, ""))
        stream = self.virtual.get(key)
        if RESEND in headers:
            self._resend(key, headers[RESEND])
            return
        if CLOSE in headers:
            if stream is not None:
                stream.send.close()
            return
        if stream is None:
            if not create:
                return
            stream = self.virtual[key] = VirtualStream(
                self.bus, *key, self.outgoing, self.tail.stamp if self.tail is not None else None)
            self.nursery.start_soon(self._serve_virtual, key, stream)
            self.nursery.start_soon(self._keep_tail, key, stream)
        try:
            with trio.fail_after(HOP_TIMEOUT):
                await stream.send.send(msg.data)
        except (trio.ClosedResourceError, trio.BrokenResourceError, trio.TooSlowError):
            log.warning("cluster: a frame for %s was dropped: its virtual connection is closed or stuck",
                        stream.peer)

    def _resend(self, key: tuple[str, str, str], first: str) -> None:
        stream = self.virtual.get(key) or self.retired.get(key)
        if stream is not None and first.isdigit():
            stream.resend(int(first))
        elif stream is None:  # forgotten: whatever the gateway misses is lost
            gateway, conn, tunnel = key
            self.bus.publish(f"codex.gw.{gateway}.{conn}", b"", {LOST: first, OWNER: self.bus.node, TUNNEL: tunnel})

    async def _serve_virtual(self, key: tuple[str, str, str], stream: VirtualStream) -> None:
        try:
            await self.serve_connection(stream)
        finally:
            self.virtual.pop(key, None)
            self.retired[key] = stream
            await stream.aclose()

    async def _keep_tail(self, key: tuple[str, str, str], stream: VirtualStream) -> None:
        """Announce the tunnel's tail while it lives; once it closed, keep
        it for resends a while, then forget it."""
        await stream.announce_tail()
        await trio.sleep(tunnel.REPLAY_AGE)
        self.retired.pop(key, None)


@asynccontextmanager
async def open_tunnels(bus: Bus, directory: Directory, store: ThreadStore | None, serve_connection: ServeConnection,
                       local: LocalRollouts | None = None, pair: StreamPair | None = None,
                       numbers: EventNumbers | None = None, evict: Evict | None = None,
                       drain_timeout: float | None = None) -> AsyncIterator[tuple[Callable[[FrameStream], Awaitable[None]], Callable[[], Awaitable[None]]]]:
    """Serve this node's side of the tunnels; yield ``serve(stream)``, which
    runs a client connection through a :class:`Gateway`, and ``drain()``,
    which hands the node's threads off (:meth:`TunnelHost.drain`). With a cluster
    ``store`` and the node's ``local`` rollouts, the rollouts of the threads
    this node owns are mirrored into the store (:mod:`.mirror`). ``pair``
    (an in-memory transport) lets the drain watch the node's threads.
    ``numbers`` (the server's per-thread event numbers) feed the bus's
    event tail, when it keeps one (:meth:`TunnelHost.tap`); ``evict`` stops
    the actor of a thread this node was fenced out of; ``drain_timeout`` is
    config.toml's (:func:`.drain.drain_deadline`)."""
    async with trio.open_nursery() as nursery:
        host = TunnelHost(bus, directory, store, serve_connection, nursery, local, pair, evict, drain_timeout)
        await nursery.start(host.run)
        nursery.start_soon(host.rejoin)
        if numbers is not None:
            host.tap(numbers)

        async def serve(stream: FrameStream) -> None:
            async with trio.open_nursery() as conn_nursery:
                gateway = Gateway(stream, bus, directory, host, conn_nursery)
                host.gateways.add(gateway)
                try:
                    await serve_connection(gateway)
                finally:
                    host.gateways.discard(gateway)
                    gateway.close_tunnels()
                    conn_nursery.cancel_scope.cancel()

        try:
            yield serve, host.drain
        finally:
            with trio.move_on_after(DRAIN_TIMEOUT, shield=True):
                await host.hand_off()
            nursery.cancel_scope.cancel()
