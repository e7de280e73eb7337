"""In-process Bus and Directory: what a single process uses, and what tests
of code above the ports use (the cluster ones must not change them)."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from .ports import Claim, Message, NoResponders


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS matching: ``*`` is one token, a trailing ``>`` one or more."""
    pat, sub = pattern.split("."), subject.split(".")
    for i, token in enumerate(pat):
        if token == ">":
            return len(sub) > i
        if i >= len(sub) or (token != "*" and token != sub[i]):
            return False
    return len(pat) == len(sub)


class MemoryFabric:
    """The subjects that the MemoryBus of every simulated node shares."""

    def __init__(self) -> None:
        self.subs: dict[int, tuple[str, trio.MemorySendChannel[Message]]] = {}
        self.replies: dict[str, trio.MemorySendChannel[bytes]] = {}
        self.ids = itertools.count(1)
        #: The event tail (:class:`~.ports.EventTail`): (thread, epoch) ->
        #: its last :data:`TAIL_EVENTS` (seq, prev, data).
        self.tails: dict[tuple[str, int], deque[tuple[int, int, bytes]]] = {}


#: Events the in-process tail keeps per thread and epoch.
TAIL_EVENTS = 1024


class MemoryBus:
    """Subjects within one process. A slow subscriber loses deliveries past
    its capacity (best effort, as core NATS); requests never queue."""

    def __init__(self, node: str = "local", fabric: MemoryFabric | None = None) -> None:
        self.node = node
        self.fabric = fabric or MemoryFabric()
        self._subs = self.fabric.subs
        self._replies = self.fabric.replies
        self._ids = self.fabric.ids
        self._reconnect = trio.Event()

    def _deliver(self, msg: Message) -> int:
        count = 0
        for pattern, send in list(self._subs.values()):
            if subject_matches(pattern, msg.subject):
                count += 1
                try:
                    send.send_nowait(msg)
                except (trio.WouldBlock, trio.ClosedResourceError):
                    pass
        return count

    def publish(self, subject: str, data: bytes, headers: dict[str, str] | None = None) -> None:
        reply = self._replies.get(subject)
        if reply is not None:
            try:
                reply.send_nowait(data)
            except trio.WouldBlock:
                pass  # a second responder: the first answer wins
            return
        self._deliver(Message(subject, data, "", headers))

    def reply(self, msg: Message, data: bytes) -> None:
        if msg.reply:
            self.publish(msg.reply, data)

    async def backpressure(self) -> None:
        """Nothing queues here: deliveries are made at once."""

    async def reconnected(self) -> None:
        await self._reconnect.wait()

    def reconnect(self) -> None:
        """Simulate a reconnection to the fabric (tests): wake whoever
        waits in :meth:`reconnected`."""
        self._reconnect.set()
        self._reconnect = trio.Event()

    def append_event(self, thread_id: str, epoch: int, seq: int, prev: int, data: bytes) -> None:
        self.fabric.tails.setdefault((thread_id, epoch), deque(maxlen=TAIL_EVENTS)).append((seq, prev, data))

    async def read_events(self, thread_id: str, epoch: int, after: int) -> list[tuple[int, int, bytes]]:
        return [event for event in self.fabric.tails.get((thread_id, epoch), ()) if event[0] > after]

    async def request(self, subject: str, data: bytes, *, timeout: float,
                      headers: dict[str, str] | None = None) -> bytes:
        inbox = f"_INBOX.{self.node}.{next(self._ids)}"
        send, recv = trio.open_memory_channel[bytes](1)
        self._replies[inbox] = send
        try:
            if not self._deliver(Message(subject, data, inbox, headers)):
                raise NoResponders(subject)
            with trio.fail_after(timeout):
                return await recv.receive()
        finally:
            del self._replies[inbox]

    @asynccontextmanager
    async def subscribe(self, subject: str, capacity: int = 1024) -> AsyncIterator[AsyncIterator[Message]]:
        sid = next(self._ids)
        send, recv = trio.open_memory_channel[Message](capacity)
        self._subs[sid] = (subject, send)
        try:
            async with recv:
                yield recv
        finally:
            del self._subs[sid]
            send.close()


class MemoryDirectory:
    """Claims in a dict; ``nodes`` are the live leases (shared between the
    directories of simulated nodes in one process, for tests)."""

    def __init__(self, node: str = "local", *, claims: dict[str, Claim] | None = None,
                 nodes: set[str] | None = None) -> None:
        self.node = node
        self.claims = {} if claims is None else claims
        self.nodes = {node} if nodes is None else nodes
        self.nodes.add(node)
        self._revisions = itertools.count(1)

    async def claim(self, thread_id: str) -> Claim:
        held = self.claims.get(thread_id)
        if held is not None and held.node in self.nodes:
            return held
        epoch = max(next(self._revisions), (held.epoch + 1) if held else 0)
        claim = self.claims[thread_id] = Claim(thread_id, self.node, epoch)
        return claim

    async def lookup(self, thread_id: str) -> Claim | None:
        return self.claims.get(thread_id)

    async def release(self, thread_id: str, epoch: int) -> bool:
        held = self.claims.get(thread_id)
        if held is None or held.node != self.node or held.epoch != epoch:
            return False
        del self.claims[thread_id]
        return True

    async def alive(self, node: str) -> bool:
        return node in self.nodes
