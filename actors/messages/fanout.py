"""Delivering wire messages to a set of connections: not an actor, the one
piece of sending logic that threads and turns share.

A connection that is gone (its outbox closed) or whose outbox stayed full
for its ``give_up_after`` (Limits.write_timeout) is reported back so the
caller drops it; one stuck client never holds a turn up for longer than
that. A websocket's writer keeps its outbox empty until the client is over
its byte budget (then it is closed), so in practice only a stdio client
makes a sender wait. A connection given up on is also told to close (a
websocket gets a close frame with the reason), so its client does not wait
for what it will never be sent. Actors that must never wait (the hub,
approvals) :func:`post` instead: a full outbox closes the connection at
once rather than losing the message silently.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TypeVar

import trio

from ...runtime.kernel.clock import now_ms
from ...runtime.kernel.errors import MailboxClosed
from ...runtime.protocol.jsonrpc import Notification, Outbound
from . import CloseConnection, ConnectionRef

log = logging.getLogger("trio_codex.fanout")

M = TypeVar("M", bound=Outbound)


class EventNumbers:
    """Per-thread sequence numbers of what threads fan out to their
    subscribers (scale-out.md §5, stage 0), one table per server.

    Every event a thread sends to all its subscribers (its actor's
    notifications and broadcasts, its turns' items and deltas, its server
    requests and their ``serverRequest/resolved``) takes the next number of
    its thread where it is made, once, however many subscribers get it.
    The number stays internal (clients never see it); ``tap``, which a
    cluster node sets (:mod:`trio_codex.runtime.cluster.events`), sees
    each event with it, so that the node can keep a tail of the thread's
    events by number and catch up a client that missed some. A thread's
    numbers go on across unloads and restarts of its actor (one int per
    thread seen, kept)."""

    __slots__ = ("last", "tap")

    def __init__(self) -> None:
        self.last: dict[str, int] = {}
        self.tap: Callable[[str, int, Outbound], None] | None = None

    def stamp(self, thread_id: str, msg: M) -> M:
        """Number ``msg``, an event of thread ``thread_id`` about to go out."""
        seq = self.last[thread_id] = self.last.get(thread_id, 0) + 1
        if self.tap is not None:
            self.tap(thread_id, seq, msg)
        return msg


def notification(method: str, params: object) -> Notification:
    return Notification(method, params, now_ms())


async def deliver(conns: Iterable[ConnectionRef], msg: Outbound) -> list[ConnectionRef]:
    """Queue ``msg`` for each connection, in order; returns those to drop."""
    lost: list[ConnectionRef] = []
    for conn in conns:
        try:
            if conn.outbox.send_nowait(msg):
                continue
            with trio.move_on_after(conn.give_up_after):
                await conn.outbox.send(msg)
                continue
            log.warning("connection %d stopped reading for %g s; dropping it from the thread and closing it",
                        conn.id, conn.give_up_after)
            _close(conn, f"the client did not read its messages for {conn.give_up_after:g} s")
        except MailboxClosed:
            pass
        lost.append(conn)
    return lost


def post(conns: Iterable[ConnectionRef], msg: Outbound) -> None:
    """Queue ``msg`` for each connection without waiting. A connection
    whose outbox is full is closed (with the reason, logged), never left
    without the message; one that cannot be closed (stdio) misses it, logged."""
    for conn in conns:
        try:
            if conn.outbox.send_nowait(msg):
                continue
        except MailboxClosed:
            continue
        what = getattr(msg, "method", type(msg).__name__)
        if conn.control is None:
            log.warning("connection %d: outbox full, %s not delivered", conn.id, what)
        else:
            log.warning("connection %d: outbox full, closing it rather than dropping %s", conn.id, what)
            _close(conn, "the client did not read its messages: its outbox is full")


def _close(conn: ConnectionRef, reason: str) -> None:
    if conn.control is None:
        return
    try:
        # Best effort: one order to close is enough.
        conn.control.send_nowait(CloseConnection(reason))
    except MailboxClosed:
        pass
