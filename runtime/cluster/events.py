"""The owner's per-thread event tail (README "Cluster", "Gap repair").

The server numbers every event a thread fans out to its subscribers, per
thread (:class:`~trio_codex.actors.messages.fanout.EventNumbers`); a node taps those
numbers with :class:`ThreadTail`. For each thread this node owns, every
lossless event (all but deltas, which are best effort and coalesced per
connection) is encoded once and added to the fabric's
:class:`~.ports.EventTail` under (thread, epoch, number): once per thread,
however many clients follow it, and only after the thread's rollout
reached the store when the event reports something completed (as a
client is told nothing completed before that, :meth:`.TunnelHost.settle`).

The tunnel frames that carry such an event are stamped with the thread
and its number (:data:`EVENT`), so a gateway knows the last number its
client got of each thread: when the owner cannot resend a gap, or dies,
the gateway reads what followed from the tail (:meth:`.Gateway._catch_up`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import trio

from ..protocol.codec import encode
from ..protocol.jsonrpc import Notification, Outbound
from .ports import EventTail
from .wire import log

#: The header that stamps a tunnel frame with its event: ``<thread> <number>``.
EVENT = "Codex-Event"
#: Deltas: best effort, merged per connection, never in the tail.
DELTAS = frozenset({"item/agentMessage/delta", "item/reasoning/summaryTextDelta", "item/reasoning/textDelta",
                    "item/commandExecution/outputDelta", "item/fileChange/outputDelta", "item/plan/delta",
                    "command/exec/outputDelta"})
#: Encoded events remembered for stamping the tunnel frames that carry them:
#: at most this many, and this many bytes.
RECENT = 8192
RECENT_BYTES = 32 << 20
#: Events waiting to go into the tail (the store holding them back is down).
PENDING = 65536


class EventNumbers(Protocol):
    """What a node taps: the server's per-thread event numbers
    (:class:`trio_codex.actors.messages.fanout.EventNumbers`)."""

    tap: Callable[[str, int, Outbound], None] | None


class ThreadTail:
    """The tap of a node's :class:`~trio_codex.actors.messages.fanout.EventNumbers`:
    keeps the lossless events of the threads in ``owned`` (thread -> epoch)
    in ``tail``; :meth:`run` adds them, each after ``settle`` of its frame."""

    def __init__(self, tail: EventTail, owned: dict[str, int],
                 settle: Callable[[Sequence[bytes]], Awaitable[None]]) -> None:
        self.tail = tail
        self.owned = owned
        self.settle = settle
        self.recent: dict[bytes, str] = {}
        self.recent_bytes = 0
        self.pending: deque[tuple[str, int, int, int, bytes]] = deque(maxlen=PENDING)
        #: Thread -> the number of its last event kept (deltas leave gaps).
        self.last: dict[str, int] = {}
        self.wake = trio.Event()

    def record(self, thread_id: str, seq: int, msg: Outbound) -> None:
        """The tap: called where the event is made; never waits."""
        epoch = self.owned.get(thread_id)
        if epoch is None or (type(msg) is Notification and msg.method in DELTAS):
            return
        frame = encode(msg)
        if frame not in self.recent:
            self.recent_bytes += len(frame)
        self.recent[frame] = f"{thread_id} {seq}"
        while len(self.recent) > RECENT or self.recent_bytes > RECENT_BYTES:
            oldest = next(iter(self.recent))
            self.recent_bytes -= len(oldest)
            del self.recent[oldest]
        if len(self.pending) == PENDING:
            log.warning("cluster: the event tail lags; event %d of thread %s dropped from it", seq, thread_id)
        self.pending.append((thread_id, epoch, seq, self.last.get(thread_id, 0), frame))
        self.last[thread_id] = seq
        self.wake.set()

    def stamp(self, frame: bytes) -> str | None:
        """The event a tunnel frame carries (``<thread> <number>``), if any."""
        return self.recent.get(frame)

    async def run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake = trio.Event()
            while self.pending:
                batch = list(self.pending)
                self.pending.clear()
                await self.settle([frame for *_, frame in batch])
                for thread_id, epoch, seq, prev, frame in batch:
                    self.tail.append_event(thread_id, epoch, seq, prev, frame)
