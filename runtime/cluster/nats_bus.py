"""The Bus on NATS: nats-py on one helper thread, owned by a trio task.

nats-py is asyncio-only and no trio-native client exists (scale-out.md §3);
trio-asyncio was measured at 4.3 k msg/s and replaces the process-wide
loop policy. So nats-py runs on a private asyncio loop in one worker thread
that :func:`open_nats_bus` starts and stops, and every hand-off between
the two threads is batched (the bridge of §9): publishes queue in an
outbox drained by one loop callback per burst; deliveries queue in a
buffer moved into the subscription's trio channel by one trio callback per
burst. Requests and JetStream calls go through :meth:`NatsBus.call`.

It also keeps the cluster's event tail (:class:`~.ports.EventTail`): the
JetStream stream :data:`TAIL_STREAM` captures ``codex.evt.<thread>.<epoch>``,
so an event is added by a plain publish (no ack awaited) and read back by
subject on a repair.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.api
import nats.js.errors
import trio

from .ports import Message, NoResponders

log = logging.getLogger("trio_codex.cluster")

T = TypeVar("T")

#: How long connecting to NATS may take at start-up.
CONNECT_TIMEOUT = 10.0
#: Bytes the outbox may hold before a publisher that can wait does.
OUTBOX_BUDGET = 8 * 1024 * 1024
#: The event tail: a JetStream stream over ``codex.evt.<thread>.<epoch>``,
#: short (a repair reaches back a minute at most), on file.
TAIL_STREAM = "CODEX_EVENTS"
TAIL_AGE = 60.0
TAIL_PER_THREAD = 1024
TAIL_BYTES = 256 << 20
#: The headers of an event's number in the tail, and of the one before it.
TAIL_SEQ, TAIL_PREV = "Codex-Seq", "Codex-Prev"


def tail_subject(thread_id: str, epoch: int) -> str:
    return f"codex.evt.{thread_id}.{epoch}"


class NatsBus:
    """The :class:`~.ports.Bus` over one NATS connection."""

    def __init__(self, node: str, loop: asyncio.AbstractEventLoop, nc: Any, token: trio.lowlevel.TrioToken) -> None:
        self.node = node
        self.loop = loop
        self.nc = nc
        self.token = token
        self._outbox: collections.deque[tuple[str, bytes, dict[str, str] | None]] = collections.deque()
        self._flush_scheduled = False
        self._publishing = asyncio.Lock()
        #: Bytes published but not yet handed to the client (counted from
        #: both threads; an approximate figure is enough for a budget).
        self._outbox_bytes = 0
        #: Set (and replaced) each time nats-py reconnects (:meth:`reconnected`).
        self._reconnect = trio.Event()

    def on_reconnect(self) -> None:
        """Trio thread, called through the token by nats-py's ``reconnected_cb``."""
        log.info("cluster: reconnected to NATS")
        self._reconnect.set()
        self._reconnect = trio.Event()

    async def reconnected(self) -> None:
        await self._reconnect.wait()

    async def call(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any, **kw: Any) -> T:
        """Run a nats-py coroutine function on the NATS thread; cancelling
        the trio caller cancels it."""
        done = trio.Event()
        fut = asyncio.run_coroutine_threadsafe(fn(*args, **kw), self.loop)
        fut.add_done_callback(lambda _: self.token.run_sync_soon(done.set))
        try:
            await done.wait()
        except trio.Cancelled:
            fut.cancel()
            raise
        return fut.result()

    async def request(self, subject: str, data: bytes, *, timeout: float,
                      headers: dict[str, str] | None = None) -> bytes:
        try:
            msg = await self.call(self.nc.request, subject, data, timeout=timeout, headers=headers)
        except nats.errors.NoRespondersError:
            raise NoResponders(subject) from None
        except nats.errors.TimeoutError:
            raise TimeoutError(f"no answer on {subject} within {timeout} s") from None
        return msg.data

    def publish(self, subject: str, data: bytes, headers: dict[str, str] | None = None) -> None:
        self._outbox_bytes += len(data)
        self._outbox.append((subject, data, headers))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon_threadsafe(self._drain_outbox)

    def reply(self, msg: Message, data: bytes) -> None:
        if msg.reply:
            self.publish(msg.reply, data)

    def append_event(self, thread_id: str, epoch: int, seq: int, prev: int, data: bytes) -> None:
        self.publish(tail_subject(thread_id, epoch), data, {TAIL_SEQ: str(seq), TAIL_PREV: str(prev)})

    async def read_events(self, thread_id: str, epoch: int, after: int) -> list[tuple[int, int, bytes]]:
        return await self.call(self._read_tail, tail_subject(thread_id, epoch), after)

    async def _read_tail(self, subject: str, after: int) -> list[tuple[int, int, bytes]]:
        """NATS thread: walk the stream's messages on ``subject`` (the
        server finds each next one), keeping those numbered after ``after``."""
        js, position = self.nc.jetstream(), 1
        events: list[tuple[int, int, bytes]] = []
        while True:
            try:
                msg = await js.get_msg(TAIL_STREAM, seq=position, subject=subject, next=True)
            except nats.js.errors.NotFoundError:
                return events
            position = msg.seq + 1
            headers = msg.headers or {}
            seq = int(headers.get(TAIL_SEQ, 0))
            if seq > after:
                events.append((seq, int(headers.get(TAIL_PREV, 0)), msg.data or b""))

    async def backpressure(self) -> None:
        if self._outbox_bytes > OUTBOX_BUDGET:
            await self.call(self._settle)

    async def _settle(self) -> None:
        """NATS thread: wait for the publishing task(s) queued before,
        then for the client to write out what they handed it."""
        async with self._publishing:
            pass
        await self.nc.flush()

    def _drain_outbox(self) -> None:
        """NATS thread: one task publishes the whole outbox, in order."""
        self._flush_scheduled = False
        self.loop.create_task(self._publish_outbox())

    async def _publish_outbox(self) -> None:
        # The lock keeps a later burst's task behind this one: order is kept.
        async with self._publishing:
            while self._outbox:
                subject, data, headers = self._outbox.popleft()
                self._outbox_bytes -= len(data)
                try:
                    await self.nc.publish(subject, data, headers=headers)
                except nats.errors.Error as exc:
                    log.warning("cluster: a publish on %s failed: %s", subject, exc)

    @asynccontextmanager
    async def subscribe(self, subject: str, capacity: int = 1024) -> AsyncIterator[AsyncIterator[Message]]:
        send, recv = trio.open_memory_channel[Message](capacity)
        buf: collections.deque[Message] = collections.deque()
        state = {"scheduled": False, "dropped": 0}

        def move() -> None:  # trio thread
            state["scheduled"] = False
            while buf:
                try:
                    send.send_nowait(buf.popleft())
                except trio.WouldBlock:
                    state["dropped"] += 1
                except trio.ClosedResourceError:
                    buf.clear()

        async def deliver(msg: Any) -> None:  # NATS thread
            buf.append(Message(msg.subject, msg.data, msg.reply or "", msg.headers))
            if not state["scheduled"]:
                state["scheduled"] = True
                self.token.run_sync_soon(move)

        sub = await self.call(self.nc.subscribe, subject, cb=deliver, pending_msgs_limit=1_000_000)
        try:
            async with recv:
                yield recv
        finally:
            send.close()
            if state["dropped"]:
                log.warning("cluster: %d deliveries on %s were dropped (subscriber too slow)", state["dropped"], subject)
            with trio.move_on_after(2, shield=True):
                try:
                    await self.call(sub.unsubscribe)
                except nats.errors.Error:
                    pass


async def _provision_tail(nc: Any) -> None:
    """Create (or bring up to date) the event tail's stream; without it a
    gap the owner cannot repair still closes the thread for the client."""
    js = nc.jetstream()
    config = nats.js.api.StreamConfig(
        name=TAIL_STREAM, subjects=["codex.evt.>"], max_age=TAIL_AGE, max_msgs_per_subject=TAIL_PER_THREAD,
        max_bytes=TAIL_BYTES, storage=nats.js.api.StorageType.FILE, discard=nats.js.api.DiscardPolicy.OLD)
    try:
        try:
            await js.add_stream(config)
        except nats.js.errors.BadRequestError:  # it exists with other limits
            await js.update_stream(config)
    except (nats.errors.Error, asyncio.TimeoutError) as exc:
        log.warning("cluster: no event tail (JetStream stream %s): %s", TAIL_STREAM, exc)


@asynccontextmanager
async def open_nats_bus(url: str, node: str) -> AsyncIterator[NatsBus]:
    """Connect to NATS at ``url`` on a helper thread; flush, close and stop it on exit."""
    token = trio.lowlevel.current_trio_token()
    loop = asyncio.new_event_loop()  # never the process-wide policy's loop
    connected: list[Any] = []
    ready = trio.Event()
    failed: list[BaseException] = []
    buses: list[NatsBus] = []

    async def reconnected() -> None:  # NATS thread
        if buses:
            try:
                token.run_sync_soon(buses[0].on_reconnect)
            except trio.RunFinishedError:
                pass  # the node has stopped

    async def aio_main() -> None:
        stop = asyncio.Event()
        try:
            nc = await nats.connect(url, name=f"trio-codex {node}", connect_timeout=CONNECT_TIMEOUT,
                                    max_reconnect_attempts=3, allow_reconnect=True, reconnected_cb=reconnected)
        except BaseException as exc:  # reported to the trio side, which raises it
            failed.append(exc)
            token.run_sync_soon(ready.set)
            return
        # Connecting gives up after a few attempts (a wrong URL fails the
        # start); once connected, reconnect for as long as NATS is away: a
        # node that gave up would stay cut off after NATS came back.
        nc.options["max_reconnect_attempts"] = -1
        connected.extend((nc, stop))
        await _provision_tail(nc)
        token.run_sync_soon(ready.set)
        await stop.wait()
        # Flush what was published, then close: a drain would wait for
        # the subscriptions' drain timeout, and nothing is subscribed now.
        try:
            await nc.flush(timeout=2)
        except (asyncio.TimeoutError, nats.errors.Error):
            pass
        await nc.close()

    def thread_main() -> None:
        try:
            loop.run_until_complete(aio_main())
        finally:
            loop.close()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: trio.to_thread.run_sync(thread_main, abandon_on_cancel=False))
        await ready.wait()
        if failed:
            raise SystemExit(f"trio-codex: cannot reach NATS at {url}: {failed[0]}")
        nc, stop = connected
        buses.append(NatsBus(node, loop, nc, token))
        try:
            yield buses[0]
        finally:
            loop.call_soon_threadsafe(stop.set)
