"""The vocabulary of the cluster's tunnels (:mod:`.tunnel`, :mod:`.host`,
:mod:`.gateway`): the headers a tunnel's bus messages carry, the subjects,
the timeouts and bounds, and the small helpers both ends share."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from ..kernel.stream import FrameStream

log = logging.getLogger("trio_codex.cluster")

#: How long the owner may take to take a frame (it acks on receipt, before
#: handling it) before it is presumed frozen or dead.
HOP_TIMEOUT = 5.0
#: How long a request waits for a thread whose owner left the fabric to
#: become claimable (the owner's lease to run out) before it fails.
TAKEOVER_TIMEOUT = 30.0
#: How often it asks again meanwhile.
TAKEOVER_POLL = 0.25
#: While an owner's ack is late, how often its lease is checked (once it
#: is gone, the request stops waiting and the thread is taken over).
LEASE_POLL = 0.1
#: The same for the replayed handshake that opens a tunnel: the first
#: hop to an owner, so the one that finds a dead or frozen owner.
OPEN_TIMEOUT = 1.0
#: How long a gateway may take to read a thread's missed events from the
#: event tail (:meth:`.Gateway._catch_up`).
CATCH_UP_TIMEOUT = 2.0
#: How long a node shutting down may take to hand its threads off.
DRAIN_TIMEOUT = 5.0
#: Frames queued for one virtual connection before the owner pushes back.
VIRTUAL_CAPACITY = 256
#: Frames queued from owners to one client connection.
GATEWAY_CAPACITY = 65536
#: Server-request ids handed to the client for requests of remote owners.
REMOTE_IDS = 1 << 40
#: The id of the ``initialize`` a gateway replays to open a virtual connection.
INIT_ID = "codex-cluster-init"
#: Notifications that report an item or turn completed: before one leaves
#: the node, the thread's rollout is copied into the store (:meth:`.Mirror.sync`).
SETTLING = (b'"item/completed"', b'"turn/completed"')
#: How long that copy may hold the notification back (the store is down).
SETTLE_TIMEOUT = 5.0
#: Methods whose answer names a thread this node just created.
CREATING = frozenset({"thread/start", "thread/fork"})

SEQ, GATEWAY, CONN, CLOSE, OWNER, PART, RELEASED = ("Codex-Seq", "Codex-Gateway", "Codex-Conn", "Codex-Close",
                                                    "Codex-Owner", "Codex-Part", "Codex-Released")
#: Gap repair: the tunnel's generation (a gateway reopening a tunnel gets a
#: fresh virtual connection numbered from 1), the owner's last sequence
#: number (announced when the tunnel goes quiet), a gateway's "resend from",
#: and the owner's "no longer held".
TUNNEL, TAIL, RESEND, LOST = "Codex-Tunnel", "Codex-Tail", "Codex-Resend", "Codex-Lost"
#: The largest piece of a frame sent as one bus message.
PART_SIZE = 256 * 1024

#: What a thread id must look like to name a subject (ids are UUIDs): no
#: dots, wildcards or spaces a client could use to reach other subjects.
THREAD_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,128}")

ServeConnection = Callable[[FrameStream], Awaitable[None]]
#: Stops and unloads this node's actor of a thread another node took over
#: (the composition root's: the thread registry's ``EvictThread``).
Evict = Callable[[str], Awaitable[None]]
#: Makes the (server end, client end) of an in-process connection.
StreamPair = Callable[[], tuple[FrameStream, FrameStream]]


def thread_subject(thread_id: str) -> str:
    return f"codex.thread.{thread_id}.req"


def decode_frame(frame: bytes) -> dict[str, Any] | None:
    try:
        msg = msgspec.json.decode(frame)
    except msgspec.DecodeError:
        return None
    return msg if isinstance(msg, dict) else None


def msg_with_id(msg: dict[str, Any], rid: Any) -> bytes:
    return msgspec.json.encode({**msg, "id": rid})
