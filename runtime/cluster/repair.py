"""A gateway's in-order delivery and gap repair (functions of
:class:`~.gateway.Gateway`, bound as its methods; README "Gap repair").

Every message an owner sends on a tunnel is numbered; the gateway delivers
only the next number, asks the owner to resend from the first one missing
(again while nothing progresses), and gives up past
:data:`~.tunnel.RESEND_TIMEOUT`. When the owner cannot resend or is gone,
the client is given what it missed of each thread from the fabric's event
tail, by the thread's event numbers (:mod:`.events`), then told the
threads are closed. When the bus reconnects after losing the fabric, each
owner is asked to resend what followed the last message delivered
(:func:`_rejoined`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import trio

from .events import EVENT
from .ports import EventTail, Message
from .tunnel import RESEND_RETRY, RESEND_TIMEOUT
from .wire import CATCH_UP_TIMEOUT, CLOSE, LOST, OWNER, PART, RELEASED, RESEND, SEQ, TAIL, TUNNEL, log

if TYPE_CHECKING:
    from .gateway import Gateway


async def _from_owner(self: Gateway, msg: Message) -> None:
    headers = msg.headers or {}
    owner = headers.get(OWNER, "")
    if owner not in self.opened or headers.get(TUNNEL) != str(self.tunnels.get(owner)):
        # A node this connection no longer follows (one that froze and
        # woke up after its threads were taken over), or a tunnel to it
        # that was reopened since: its late frames must not reach the client.
        self.stale += 1
        log.info("cluster: a late frame from %s dropped (%d so far)", owner, self.stale)
        return
    if LOST in headers:
        log.warning("cluster: frames from %s of %s could not be resent", headers[LOST], owner)
        await self._give_up(owner)
        return
    done = self.seqs.get(owner, 0)
    if TAIL in headers or SEQ in headers:
        seq = int(headers.get(TAIL) or headers[SEQ])
        self.highest[owner] = max(self.highest.get(owner, 0), seq)
        if TAIL in headers or seq != done + 1:
            # A duplicate (resent), or a gap: what is missing is asked
            # for, and this frame comes again with it.
            self._check(owner)
            return
    self.seqs[owner] = done + 1
    if owner in self.missing:
        if self.highest.get(owner, 0) <= done + 1:
            del self.missing[owner]
        else:
            self.missing[owner] = trio.current_time()  # progress: the timeout starts again
    if CLOSE in headers:
        await self._owner_lost(owner)
        return
    if RELEASED in headers:
        followed = self.followed.get(owner, set())
        if headers[RELEASED] in followed:
            followed.discard(headers[RELEASED])
            await self._tell_closed([headers[RELEASED]])
        return
    frame = msg.data
    if PART in headers:
        parts = self.parts.setdefault(owner, [])
        parts.append(frame)
        index, _, total = headers[PART].partition("/")
        if index != total:
            return
        frame = b"".join(self.parts.pop(owner))
    if EVENT in headers:
        # Never back: a pending approval sent again to a new subscriber
        # carries the number it first went out with.
        thread_id, _, number = headers[EVENT].partition(" ")
        self.delivered[thread_id] = max(int(number), self.delivered.get(thread_id, 0))
    await self._deliver(owner, frame)


def _check(self: Gateway, owner: str) -> None:
    """Ask ``owner`` to resend what is missing, if anything, and keep
    asking until it arrived (:meth:`_chase`). Asked once per gap: the
    frames after a missing one arrive too, and are resent with it."""
    first = self.seqs.get(owner, 0) + 1
    if self.highest.get(owner, 0) < first or self.asked.get(owner) == first:
        return
    self._ask(owner)
    if owner not in self.missing:
        self.missing[owner] = trio.current_time()
        self.nursery.start_soon(self._chase, owner, self.tunnels[owner])


def _ask(self: Gateway, owner: str) -> None:
    first = self.asked[owner] = self.seqs.get(owner, 0) + 1
    log.info("cluster: asking %s to resend from %d", owner, first)
    _resend_from(self, owner, first)


def _resend_from(self: Gateway, owner: str, first: int) -> None:
    self.bus.publish(f"codex.node.{owner}.in", b"", {**self._headers(owner), RESEND: str(first)})


def _rejoined(self: Gateway) -> None:
    """The bus reconnected to the fabric: what the owners sent meanwhile
    may be lost, the last messages of a turn too, and their tail
    announcements may all have passed. Ask each owner whose tunnel is
    established (it sent something, or took a request) to resend from the
    first message not delivered; an owner with nothing more sends nothing.
    Not recorded as a gap's request: a gap found later is asked for and
    chased as usual."""
    for owner in self.opened:
        if owner in self.seqs or owner in self.followed:
            first = self.seqs.get(owner, 0) + 1
            log.info("cluster: reconnected: asking %s to resend from %d", owner, first)
            _resend_from(self, owner, first)


async def _chase(self: Gateway, owner: str, tunnel: int) -> None:
    """Ask again while frames are missing (the request or the resent
    frames may be lost too); past RESEND_TIMEOUT, give up."""
    while True:
        await trio.sleep(RESEND_RETRY)
        since = self.missing.get(owner)
        if since is None or self.tunnels.get(owner) != tunnel or owner not in self.opened:
            return
        if trio.current_time() - since > RESEND_TIMEOUT:
            log.warning("cluster: %s did not resend the missing frames within %.0f s", owner, RESEND_TIMEOUT)
            await self._give_up(owner)
            return
        self._ask(owner)


async def _give_up(self: Gateway, owner: str) -> None:
    """Frames of ``owner`` are lost for good: close the tunnel (a next
    request opens a new one) and tell the client the threads it followed
    there are closed, so that it resumes them rather than miss events."""
    self.bus.publish(f"codex.node.{owner}.in", b"", {**self._headers(owner), CLOSE: "1"})
    self.missing.pop(owner, None)
    await self._owner_lost(owner)


async def _catch_up(self: Gateway, owner: str, threads: Sequence[str]) -> None:
    """Before the client is told these threads are closed, give it the
    events of each that it missed (lost on the way, or never sent by an
    owner that died) and the fabric's event tail still holds, after the
    last one it got: in order, each once, as far as the tail is
    unbroken (:mod:`.events`)."""
    if not isinstance(self.bus, EventTail):
        return
    for thread_id in threads:
        after, epoch = self.delivered.get(thread_id), self.epochs.get(thread_id)
        if after is None or epoch is None:
            continue  # the client got no event of it there: nothing to catch up from
        with trio.move_on_after(CATCH_UP_TIMEOUT):
            try:
                events = await self.bus.read_events(thread_id, epoch, after)
            except Exception as exc:  # the tail is unavailable: the client resumes the thread
                log.warning("cluster: thread %s: the event tail could not be read: %s", thread_id, exc)
                continue
            caught = []
            for seq, prev, data in events:
                if prev != after:
                    break  # a hole in the tail: nothing after it may be given out of order
                caught.append(data)
                after = seq
            if caught:
                log.info("cluster: thread %s: %d missed events given from the event tail", thread_id, len(caught))
                self.delivered[thread_id] = after
                for frame in caught:
                    await self._deliver(owner, frame)
