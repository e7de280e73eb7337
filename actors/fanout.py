"""Delivering wire messages to a set of connections: not an actor, the one
piece of sending logic that threads and turns share.

A connection that is gone (its outbox closed) or that stopped reading for
:data:`SLOW_CLIENT_TIMEOUT` is reported back so the caller drops it; one
stuck client never holds a turn up for longer than that. A connection that
stopped reading is also told to close (a websocket gets a close frame with
the reason), so its client does not wait for what it will never be sent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import trio

from ..runtime.errors import MailboxClosed
from ..runtime.protocol.jsonrpc import Notification, Outbound
from .messages import CloseConnection, ConnectionRef

log = logging.getLogger("trio_codex.fanout")

SLOW_CLIENT_TIMEOUT = 30.0


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def notification(method: str, params: object) -> Notification:
    return Notification(method, params, now_ms())


async def deliver(conns: Iterable[ConnectionRef], msg: Outbound) -> list[ConnectionRef]:
    """Queue ``msg`` for each connection, in order; returns those to drop."""
    lost: list[ConnectionRef] = []
    for conn in conns:
        try:
            if conn.outbox.send_nowait(msg):
                continue
            with trio.move_on_after(SLOW_CLIENT_TIMEOUT):
                await conn.outbox.send(msg)
                continue
            log.warning("connection %d stopped reading for %.0f s; dropping it from the thread and closing it",
                        conn.id, SLOW_CLIENT_TIMEOUT)
            _close(conn)
        except MailboxClosed:
            pass
        lost.append(conn)
    return lost


def _close(conn: ConnectionRef) -> None:
    if conn.control is None:
        return
    try:
        # Best effort: one order to close is enough.
        conn.control.send_nowait(CloseConnection(
            f"the client did not read its messages for {SLOW_CLIENT_TIMEOUT:g} s"))
    except MailboxClosed:
        pass
