"""The ports: typing Protocols with no implementation and no dependency.

A port method that blocks or talks to another process is async; every one
is bounded by its caller's cancel scope. Payloads are bytes (a msgspec or
JSON encoding chosen by the caller), so the ports never carry live objects
(scale-out.md §4.5: a message the router may route elsewhere holds only
plain data).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


class NoResponders(Exception):
    """Nobody serves the subject of a request: for a thread's subject, no
    node has it activated, so the caller may activate it."""


class Fenced(Exception):
    """A write carried an epoch older than the thread's current one: another
    node activated the thread since. The writer must stop its thread."""

    def __init__(self, thread_id: str, epoch: int, current: int | None) -> None:
        super().__init__(f"thread {thread_id}: append at epoch {epoch} refused, the thread is at epoch {current} "
                         "(activated on another node since); stop this thread's actor")
        self.thread_id = thread_id
        self.epoch = epoch
        self.current = current


@dataclass(frozen=True, slots=True)
class Claim:
    """A thread's owner as the directory records it; ``epoch`` is the
    claim's revision, greater for every later claim of the same thread."""

    thread_id: str
    node: str
    epoch: int


@dataclass(frozen=True, slots=True)
class Message:
    """One delivery on a subscription; ``reply`` is the subject to answer a
    request on ("" for a publish)."""

    subject: str
    data: bytes
    reply: str = ""
    headers: dict[str, str] | None = None


class Bus(Protocol):
    """Subjects are dot-separated tokens; a subscription's ``*`` matches one
    token and a trailing ``>`` the rest (the NATS rules)."""

    node: str

    async def request(self, subject: str, data: bytes, *, timeout: float,
                      headers: dict[str, str] | None = None) -> bytes:
        """Send a request and return the first reply. Raises
        :class:`NoResponders` at once when nobody subscribes, TimeoutError
        after ``timeout`` seconds otherwise."""
        ...

    def publish(self, subject: str, data: bytes, headers: dict[str, str] | None = None) -> None:
        """Send without waiting (queued in order; best effort)."""
        ...

    def reply(self, msg: Message, data: bytes) -> None:
        """Answer a request received on a subscription."""
        ...

    async def backpressure(self) -> None:
        """Return once what was published is within the bus's byte budget
        (a publisher that can wait calls this after publishing)."""
        ...

    def subscribe(self, subject: str, capacity: int = 1024) -> AbstractAsyncContextManager[AsyncIterator[Message]]:
        """Deliveries on ``subject`` until the context ends."""
        ...

    async def reconnected(self) -> None:
        """Return once the bus has reconnected to the fabric after losing
        it (whatever was sent to this node meanwhile may be lost)."""
        ...


class Directory(Protocol):
    """Thread -> owner node, claimed by compare-and-set, with node leases:
    a claim whose node holds no lease any more can be taken over."""

    node: str

    async def claim(self, thread_id: str) -> Claim:
        """Claim ``thread_id`` for this node, or return the live claim of
        another node (compare with :attr:`node`)."""
        ...

    async def lookup(self, thread_id: str) -> Claim | None:
        """The current claim, or None when there is none."""
        ...

    async def release(self, thread_id: str, epoch: int) -> bool:
        """Drop this node's claim at ``epoch``; False if it is not ours any more."""
        ...

    async def alive(self, node: str) -> bool:
        """Whether ``node`` holds a lease."""
        ...


class ThreadStore(Protocol):
    """The verbs of upstream's ThreadStore (codex.thread_store.v1) that the
    cluster needs, plus the epoch it lacks. Items are encoded rollout
    lines (the original's JSONL format, without the newline)."""

    async def activate(self, thread_id: str, epoch: int) -> int:
        """Record that the thread is active at ``epoch`` (never lowering it);
        return the thread's next item sequence number."""
        ...

    async def append_items(self, thread_id: str, epoch: int, items: Sequence[bytes]) -> int:
        """Append ``items`` if the thread is still at ``epoch``; return the
        last sequence number written. Raises :class:`Fenced` otherwise."""
        ...

    async def load_history(self, thread_id: str) -> list[bytes]:
        """Every item of the thread, in order."""
        ...

    async def read_thread(self, thread_id: str) -> Any:
        """The thread's index row (a :class:`~..rollout.ThreadMeta`) or None."""
        ...

    async def set_name(self, thread_id: str, name: str | None) -> bool: ...

    async def archive(self, thread_id: str, archived: bool) -> Any: ...

    async def update_git(self, thread_id: str, patch: dict[str, str | None]) -> Any: ...



@runtime_checkable
class ThreadListing(Protocol):
    """A cluster-wide ``thread/list``, for a ThreadStore that keeps one
    (PostgreSQL): the owner puts each thread's listing row
    (a :class:`~..rollout.ThreadMeta`) as its rollout grows."""

    async def put_listing(self, meta: Any) -> None: ...

    async def list_threads(self, **filters: Any) -> Any:
        """A :class:`~..thread_index.Page` (filters as
        :func:`~..thread_index.listing_query`, and ``full_text``: a
        ``thread/search`` term); ValueError for a bad one."""
        ...

    async def snippets(self, thread_ids: Sequence[str], term: str) -> dict[str, str]:
        """Each thread's first message text holding ``term`` (``thread/search``'s snippet)."""
        ...


@runtime_checkable
class EventTail(Protocol):
    """A short tail of each thread's lossless events (scale-out.md §4.2,
    stream ``EVENTS``), kept by the fabric rather than by the node that
    sent them, so that it outlives that node: keyed by the thread, the
    epoch of the node that owned it, and the thread's event number
    (:class:`~trio_codex.actors.messages.fanout.EventNumbers`). A Bus that keeps one
    implements this too."""

    def append_event(self, thread_id: str, epoch: int, seq: int, prev: int, data: bytes) -> None:
        """Add one encoded event, without waiting (best effort, in order);
        ``prev`` is the number of the thread's event added before it (the
        numbers of deltas, kept out, leave gaps: ``prev`` tells a gap from
        a loss)."""
        ...

    async def read_events(self, thread_id: str, epoch: int, after: int) -> list[tuple[int, int, bytes]]:
        """The events (number, previous number, data) of ``thread_id`` at
        ``epoch`` numbered after ``after`` that the tail still holds, in order."""
        ...
