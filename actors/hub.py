"""The hub: the set of initialized connections, and broadcast.

Notifications that go to every initialized connection (``thread/started``,
``thread/status/changed``, ``thread/closed``, ...) pass through here for the
connections that are not subscribed to the thread; subscribers get them from
the thread directly, in order with the thread's other notifications.

The hub also holds the originator: the first client's name, process-wide,
as the original reports it in every ``userAgent``.
"""

from __future__ import annotations

import logging

import trio

from ..runtime.kernel.mailbox import Inbox, Mailbox, open_mailbox
from .messages.barrier import contained
from .messages.fanout import post
from .messages import Broadcast, ConnectionRef, Register, Unregister, HubInbox

log = logging.getLogger("trio_codex.hub")

#: Registrations and broadcasts waiting for the hub; broadcasts are rare
#: (thread lifecycle), so this is ample.
HUB_CAPACITY = 1024


async def run_hub(box: tuple[Mailbox, Inbox] | None = None, *,
                  task_status: trio.TaskStatus[Mailbox[HubInbox]] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``box`` (a mailbox the parent opened, so that a restarted hub
    serves the same one), or a mailbox of its own."""
    mailbox, inbox = box or open_mailbox(HUB_CAPACITY, name="hub")
    conns: dict[int, ConnectionRef] = {}
    originator: str | None = None
    task_status.started(mailbox)
    async for msg in inbox:
        async with contained(msg, log, "the hub"):
            match msg:
                case Register(conn=conn, client_name=name, reply=reply):
                    conns[conn.id] = conn
                    originator = originator or name
                    reply.set(originator)
                case Unregister(conn_id=conn_id):
                    conns.pop(conn_id, None)
                case Broadcast(notification=note, exclude=exclude):
                    # Never let one stuck client hold up the others.
                    post([c for conn_id, c in conns.items() if conn_id not in exclude], note)
