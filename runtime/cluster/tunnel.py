"""Requests for a thread owned by another node, tunnelled over the Bus.

A client connection on a *gateway* node talks to its local Connection actor
as always; :class:`~.gateway.Gateway` wraps its :class:`~..stream.FrameStream` and
diverts the requests that name a ``threadId`` owned by another node: the
frame goes as a request on ``codex.thread.<id>.req``, the owner's
:class:`~.host.TunnelHost` feeds it to a *virtual connection* it keeps for that
(gateway, connection) pair, and every frame the virtual connection writes
(responses, notifications, server requests) comes back on
``codex.gw.<gateway>.<conn>``, stamped with a sequence number, and is
written to the client. So the owner's thread actor sees a remote client as
one more subscriber, co-subscription and first-answer-wins approvals work
unchanged, and no actor knows about the cluster (scale-out.md §4.4-§4.5).

"No responders" on the thread's subject means no node has it active: the
gateway claims it in the :class:`~.ports.Directory` and serves it locally.
A thread this node starts (``thread/start``, ``thread/fork``) is claimed
when the answer goes out.

Server-request ids are per connection: the ones a virtual connection
allocates are renumbered from :data:`~.wire.REMOTE_IDS` on the way to the client,
and the client's answers are sent back with the owner's id.

This module is the owner's end of one tunnel (:class:`VirtualStream`: its
numbering and replay buffer for gap repair); :mod:`.host` serves the
owner's side, :mod:`.gateway` the client's, :mod:`.wire` holds what both
speak.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Sequence

import trio

from ..kernel.stream import Oversized, TransportClosed
from .ports import Bus
from .events import EVENT
from .wire import CLOSE, LOST, OWNER, PART, PART_SIZE, RELEASED, SEQ, TAIL, TUNNEL, VIRTUAL_CAPACITY, log

#: The owner keeps the last messages of each tunnel for resending: at most
#: this many, this many bytes, and none older than this (seconds). A gap
#: reaching further back cannot be repaired: the client is told the thread
#: is closed and resumes it (``thread/closed``).
REPLAY_FRAMES = 4096
REPLAY_BYTES = 8 << 20
REPLAY_AGE = 30.0
#: Once a tunnel has been quiet this long, the owner announces its last
#: sequence number (so a lost last frame is noticed), then again after
#: doubling intervals while it holds the frame (:meth:`VirtualStream.announce_tail`).
TAIL_DELAY = 0.25
#: A gateway missing frames asks again this often, and gives up (the client
#: is told ``thread/closed``) after this long.
RESEND_RETRY = 0.5
RESEND_TIMEOUT = 5.0


class VirtualStream:
    """The owner's side of a tunnel: a FrameStream whose frames arrive from
    the bus and leave on the gateway's subject, numbered."""

    max_frame = 1 << 30

    def __init__(self, bus: Bus, gateway: str, conn: str, tunnel: str,
                 outgoing: Callable[[Sequence[bytes]], Awaitable[Sequence[bytes]]],
                 stamp: Callable[[bytes], str | None] | None = None) -> None:
        self.peer = f"cluster:{gateway}/{conn}"
        self.bus = bus
        self.outgoing = outgoing
        #: The thread event a frame carries, if any (:meth:`.ThreadTail.stamp`).
        self.stamp = stamp
        self.subject = f"codex.gw.{gateway}.{conn}"
        self.tunnel = tunnel
        self.send, self.recv = trio.open_memory_channel[bytes | None](VIRTUAL_CAPACITY)
        self.seq = 0
        self.closed = False
        #: (seq, monotonic time, data, headers) of the last messages, for resending.
        self.replay: deque[tuple[int, float, bytes, dict[str, str]]] = deque()
        self.replay_bytes = 0
        self.activity = trio.Event()

    def _publish(self, data: bytes, headers: dict[str, str]) -> None:
        """Number a message, keep it for resending, and send it."""
        self.seq += 1
        headers = {**headers, SEQ: str(self.seq), OWNER: self.bus.node, TUNNEL: self.tunnel}
        self.replay.append((self.seq, trio.current_time(), data, headers))
        self.replay_bytes += len(data)
        while len(self.replay) > REPLAY_FRAMES or self.replay_bytes > REPLAY_BYTES:
            self.replay_bytes -= len(self.replay.popleft()[2])
        self.activity.set()
        self.bus.publish(self.subject, data, headers)

    def resend(self, first: int) -> None:
        """Send again every message from sequence number ``first`` on, or,
        when they are no longer all held, tell the gateway they are lost."""
        horizon = trio.current_time() - REPLAY_AGE
        held = [entry for entry in self.replay if entry[0] >= first]
        if first <= self.seq and (not held or held[0][0] != first or held[0][1] < horizon):
            log.warning("cluster: frames from %d on for %s are no longer held", first, self.peer)
            self.bus.publish(self.subject, b"", {LOST: str(first), OWNER: self.bus.node, TUNNEL: self.tunnel})
            return
        for _, _, data, headers in held:
            self.bus.publish(self.subject, data, headers)
        self.activity.set()

    async def announce_tail(self) -> None:
        """Tell the gateway the tunnel's last sequence number, so that it
        notices lost last messages: every TAIL_DELAY while messages go out,
        then at doubling intervals for as long as they are held for
        resending (REPLAY_AGE), so that a gateway that was cut off from
        NATS meanwhile (a restart) hears of them when it is back. After the
        tunnel closed, stop once that is done."""
        announced = 0
        while True:
            await self.activity.wait()
            while self.seq != announced:
                await trio.sleep(TAIL_DELAY)
                announced = self.seq
                self._announce()
            self.activity = trio.Event()
            quiet, delay = TAIL_DELAY, 2 * TAIL_DELAY
            while quiet + delay <= REPLAY_AGE and not self.activity.is_set():
                with trio.move_on_after(delay):
                    await self.activity.wait()  # new messages: every TAIL_DELAY again
                if not self.activity.is_set():
                    quiet, delay = quiet + delay, 2 * delay
                    self._announce()
            if self.closed and not self.activity.is_set():
                return

    def _announce(self) -> None:
        self.bus.publish(self.subject, b"", {TAIL: str(self.seq), OWNER: self.bus.node, TUNNEL: self.tunnel})

    async def receive_frame(self) -> bytes | Oversized | None:
        try:
            return await self.recv.receive()
        except trio.EndOfChannel:
            return None

    async def send_frames(self, frames: Sequence[bytes]) -> None:
        if self.closed:
            raise TransportClosed(self.peer)
        for frame in await self.outgoing(frames):
            # NATS refuses messages over its max_payload (1 MiB by default):
            # a big frame (a long thread's history) goes in parts.
            parts = [frame[i:i + PART_SIZE] for i in range(0, len(frame), PART_SIZE)] or [frame]
            event = self.stamp(frame) if self.stamp is not None else None
            for i, part in enumerate(parts):
                headers = {PART: f"{i + 1}/{len(parts)}"} if len(parts) > 1 else {}
                self._publish(part, headers if event is None else {**headers, EVENT: event})
        await self.bus.backpressure()

    def released(self, thread_id: str) -> None:
        """Tell the gateway this node handed the thread off (it is draining)."""
        if not self.closed:
            self._publish(b"", {RELEASED: thread_id})

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        if not self.closed:
            self.closed = True
            self._publish(b"", {CLOSE: reason or "closed"})
            self.send.close()
