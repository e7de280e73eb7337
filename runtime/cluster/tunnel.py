"""Requests for a thread owned by another node, tunnelled over the Bus.

A client connection on a *gateway* node talks to its local Connection actor
as always; :class:`Gateway` wraps its :class:`~..stream.FrameStream` and
diverts the requests that name a ``threadId`` owned by another node: the
frame goes as a request on ``codex.thread.<id>.req``, the owner's
:class:`TunnelHost` feeds it to a *virtual connection* it keeps for that
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
allocates are renumbered from :data:`REMOTE_IDS` on the way to the client,
and the client's answers are sent back with the owner's id.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import trio

from ..protocol.codec import decode_params, encode
from ..protocol.jsonrpc import ErrorResponse, JsonRpcError, Response, internal_error, invalid_request
from ..protocol.v2.thread import ThreadListParams, ThreadListResponse
from ..rollout import thread_from_meta
from ..stream import FrameStream, Oversized, TransportClosed
from .drain import drain_deadline, drain_threads
from .mirror import LocalRollouts, Mirror
from .ports import Bus, Directory, Fenced, Message, NoResponders, ThreadListing, ThreadStore

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
#: The owner keeps the last messages of each tunnel for resending: at most
#: this many, this many bytes, and none older than this (seconds). A gap
#: reaching further back cannot be repaired: the client is told the thread
#: is closed and resumes it (``thread/closed``).
REPLAY_FRAMES = 4096
REPLAY_BYTES = 8 << 20
REPLAY_AGE = 30.0
#: Once a tunnel has been quiet this long, the owner announces its last
#: sequence number (so a lost last frame is noticed), then again after
#: doubling intervals while it holds the frame (:meth:`_VirtualStream.announce_tail`).
TAIL_DELAY = 0.25
#: A gateway missing frames asks again this often, and gives up (the client
#: is told ``thread/closed``) after this long.
RESEND_RETRY = 0.5
RESEND_TIMEOUT = 5.0
#: The largest piece of a frame sent as one bus message.
PART_SIZE = 256 * 1024

#: What a thread id must look like to name a subject (ids are UUIDs): no
#: dots, wildcards or spaces a client could use to reach other subjects.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,128}")

ServeConnection = Callable[[FrameStream], Awaitable[None]]
#: Makes the (server end, client end) of an in-process connection.
StreamPair = Callable[[], tuple[FrameStream, FrameStream]]


def thread_subject(thread_id: str) -> str:
    return f"codex.thread.{thread_id}.req"


def _decode(frame: bytes) -> dict[str, Any] | None:
    try:
        msg = msgspec.json.decode(frame)
    except msgspec.DecodeError:
        return None
    return msg if isinstance(msg, dict) else None


class _VirtualStream:
    """The owner's side of a tunnel: a FrameStream whose frames arrive from
    the bus and leave on the gateway's subject, numbered."""

    max_frame = 1 << 30

    def __init__(self, bus: Bus, gateway: str, conn: str, tunnel: str,
                 outgoing: Callable[[Sequence[bytes]], Awaitable[Sequence[bytes]]]) -> None:
        self.peer = f"cluster:{gateway}/{conn}"
        self.bus = bus
        self.outgoing = outgoing
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
            for i, part in enumerate(parts):
                self._publish(part, {PART: f"{i + 1}/{len(parts)}"} if len(parts) > 1 else {})
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


class TunnelHost:
    """The owner's side: serves ``codex.thread.<id>.req`` for every thread
    this node has claimed, and ``codex.node.<node>.in`` for answers and
    closes of existing virtual connections."""

    def __init__(self, bus: Bus, directory: Directory, store: ThreadStore | None,
                 serve_connection: ServeConnection, nursery: trio.Nursery, local: LocalRollouts | None = None,
                 pair: StreamPair | None = None) -> None:
        self.bus = bus
        self.directory = directory
        self.store = store
        self.mirror = Mirror(local, store, nursery, self.fenced) if store is not None and local is not None else None
        self.scopes: dict[str, trio.CancelScope] = {}
        self.serve_connection = serve_connection
        self.pair = pair
        self.nursery = nursery
        self.virtual: dict[tuple[str, str, str], _VirtualStream] = {}
        #: Closed virtual connections, kept for resending for REPLAY_AGE.
        self.retired: dict[tuple[str, str, str], _VirtualStream] = {}
        self.owned: dict[str, int] = {}
        #: Threads the store fenced this node out of (:meth:`fenced`).
        self.silenced: set[str] = set()
        #: This node's client connections.
        self.gateways: set[Gateway] = set()
        #: Set once the node drains: it activates no thread any more.
        self.draining = False
        #: The cluster-wide ``thread/list``, when the store keeps one. (mypy
        #: sees no class that is both protocols, so calls the test always false.)
        self.listing = store if isinstance(store, ThreadListing) else None  # type: ignore[redundant-expr]

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with self.bus.subscribe(f"codex.node.{self.bus.node}.in", GATEWAY_CAPACITY) as inbox:
            task_status.started()
            async for msg in inbox:
                await self._feed(msg, create=False)

    async def own(self, thread_id: str, epoch: int) -> None:
        """Serve the thread's subject from now on (the claim is ours), and
        raise the thread's epoch in the store, which fences out the node
        that held it before."""
        if thread_id in self.owned:
            return
        try:
            if self.mirror is not None:
                await self.mirror.activate(thread_id, epoch)
            elif self.store is not None:
                await self.store.activate(thread_id, epoch)
        except Fenced as exc:
            log.error("cluster: not activating: %s", exc)
            return
        self.owned[thread_id] = epoch
        self.silenced.discard(thread_id)
        await self.nursery.start(self._serve_thread, thread_id)

    async def hand_off(self) -> None:
        """On shutdown: copy what is left of the rollouts into the store,
        then release every claim, so other nodes activate these threads
        at once rather than after the lease runs out."""
        log.info("cluster: node %s hands %d threads off", self.bus.node, len(self.owned))
        if self.mirror is not None:
            await self.mirror.flush()
        for thread_id, epoch in list(self.owned.items()):
            await self.directory.release(thread_id, epoch)
        self.owned.clear()

    async def outgoing(self, frames: Sequence[bytes]) -> Sequence[bytes]:
        """What of ``frames`` may leave the node to a client, once settled:
        not the notifications of threads this node was fenced out of."""
        await self.settle(frames)  # which may find the thread fenced
        if self.silenced:
            frames = [frame for frame in frames if not self._silenced(frame)]
        return frames

    def _silenced(self, frame: bytes) -> bool:
        if not any(thread_id.encode() in frame for thread_id in self.silenced):
            return False
        msg = _decode(frame) or {}
        params = msg.get("params")
        return "id" not in msg and isinstance(params, dict) and params.get("threadId") in self.silenced

    async def settle(self, frames: Sequence[bytes]) -> None:
        """Before frames that report items or turns completed go to a
        client, copy their threads' rollouts into the store, so that what a
        client saw completed survives this node."""
        if self.mirror is None or not self.owned:
            return
        threads = set()
        for frame in frames:
            if any(marker in frame for marker in SETTLING):
                params = (_decode(frame) or {}).get("params")
                thread_id = params.get("threadId") if isinstance(params, dict) else None
                if thread_id in self.owned:
                    threads.add(thread_id)
        for thread_id in threads:
            with trio.move_on_after(SETTLE_TIMEOUT) as scope:
                await self.mirror.sync(thread_id)
            if scope.cancelled_caught:
                log.warning("cluster: thread %s: the store did not take its completed items within %.0f s",
                            thread_id, SETTLE_TIMEOUT)

    async def drain(self) -> None:
        """Hand every thread off while the node still runs (SIGTERM): idle
        ones at once, busy ones after their turn or, past the deadline,
        interrupted (:mod:`.drain`); their clients are told ``thread/closed``."""
        self.draining = True
        log.info("cluster: node %s drains %d threads", self.bus.node, len(self.owned))
        if self.pair is None:
            return  # no way to watch the threads: the shutdown's hand-off releases them
        try:
            await drain_threads(list(self.owned), self.serve_connection, self.release, drain_deadline(), self.pair)
        except Exception:  # the shutdown's hand-off still copies and releases what is left
            log.exception("cluster: the drain failed")

    async def release(self, thread_id: str) -> None:
        """Copy what is left of the thread's rollout into the store, give up
        the claim, and tell every client that followed it here that it is
        closed (the original's ``thread/closed``), so that they resume it
        wherever it is activated next."""
        epoch = self.owned.get(thread_id)
        if epoch is None:
            return
        if self.mirror is not None:
            await self.mirror.sync(thread_id, listing=True)
            self.mirror.stop(thread_id)
        await self.directory.release(thread_id, epoch)
        self.drop(thread_id)
        await self._tell_released(thread_id)

    async def _tell_released(self, thread_id: str) -> None:
        """Tell the clients that follow the thread here, remote or local,
        that it is closed (``thread/closed``)."""
        for stream in list(self.virtual.values()):
            stream.released(thread_id)
        for gateway in list(self.gateways):
            with trio.move_on_after(HOP_TIMEOUT):  # a client that does not read is not told
                await gateway.thread_released(thread_id)

    def fenced(self, thread_id: str) -> None:
        """The store refused this node's append: another node took the
        thread over while this one was frozen or cut off. Stop serving it:
        its requests go to the new owner, the clients that followed it here
        are told it is closed (they resume it there), and whatever its
        actors here still send about it (they cannot be stopped from the
        cluster layer) no longer reaches a client."""
        self.drop(thread_id)
        self.silenced.add(thread_id)
        self.nursery.start_soon(self._tell_released, thread_id)

    def drop(self, thread_id: str) -> None:
        """Stop serving a thread another node has taken over."""
        self.owned.pop(thread_id, None)
        scope = self.scopes.pop(thread_id, None)
        if scope is not None:
            scope.cancel()

    async def _serve_thread(self, thread_id: str, *, task_status: trio.TaskStatus[None]) -> None:
        with trio.CancelScope() as self.scopes[thread_id]:
            async with self.bus.subscribe(thread_subject(thread_id), VIRTUAL_CAPACITY) as requests:
                task_status.started()
                async for msg in requests:
                    await self._feed(msg, create=True)
                    self.bus.reply(msg, self.bus.node.encode())

    async def _feed(self, msg: Message, *, create: bool) -> None:
        headers = msg.headers or {}
        key = (headers.get(GATEWAY, ""), headers.get(CONN, ""), headers.get(TUNNEL, ""))
        stream = self.virtual.get(key)
        if RESEND in headers:
            self._resend(key, headers[RESEND])
            return
        if CLOSE in headers:
            if stream is not None:
                stream.send.close()
            return
        if stream is None:
            if not create:
                return
            stream = self.virtual[key] = _VirtualStream(self.bus, *key, self.outgoing)
            self.nursery.start_soon(self._serve_virtual, key, stream)
            self.nursery.start_soon(self._keep_tail, key, stream)
        try:
            with trio.fail_after(HOP_TIMEOUT):
                await stream.send.send(msg.data)
        except (trio.ClosedResourceError, trio.BrokenResourceError, trio.TooSlowError):
            log.warning("cluster: a frame for %s was dropped: its virtual connection is closed or stuck",
                        stream.peer)

    def _resend(self, key: tuple[str, str, str], first: str) -> None:
        stream = self.virtual.get(key) or self.retired.get(key)
        if stream is not None and first.isdigit():
            stream.resend(int(first))
        elif stream is None:  # forgotten: whatever the gateway misses is lost
            gateway, conn, tunnel = key
            self.bus.publish(f"codex.gw.{gateway}.{conn}", b"", {LOST: first, OWNER: self.bus.node, TUNNEL: tunnel})

    async def _serve_virtual(self, key: tuple[str, str, str], stream: _VirtualStream) -> None:
        try:
            await self.serve_connection(stream)
        finally:
            self.virtual.pop(key, None)
            self.retired[key] = stream
            await stream.aclose()

    async def _keep_tail(self, key: tuple[str, str, str], stream: _VirtualStream) -> None:
        """Announce the tunnel's tail while it lives; once it closed, keep
        it for resends a while, then forget it."""
        await stream.announce_tail()
        await trio.sleep(REPLAY_AGE)
        self.retired.pop(key, None)


class Gateway:
    """The client's side: wraps the client's stream for its Connection actor."""

    _conn_ids = itertools.count(1)

    def __init__(self, inner: FrameStream, bus: Bus, directory: Directory, host: TunnelHost,
                 nursery: trio.Nursery) -> None:
        self.inner = inner
        self.peer = inner.peer
        self.max_frame = inner.max_frame
        self.bus = bus
        self.directory = directory
        self.host = host
        self.nursery = nursery
        self.conn = str(next(self._conn_ids))
        self.subject = f"codex.gw.{bus.node}.{self.conn}"
        self.lock = trio.StrictFIFOLock()
        self.init: list[bytes] = []
        self.opened: set[str] = set()
        self.creating: set[Any] = set()
        self.remote_ids = itertools.count(REMOTE_IDS)
        self.server_requests: dict[int, tuple[str, Any]] = {}
        #: Owner -> the generation of this connection's tunnel to it (a
        #: reopened tunnel is a new virtual connection, numbered from 1).
        self.tunnels: dict[str, int] = {}
        self.generations = itertools.count(1)
        #: Owner -> the last sequence number delivered in order, the highest
        #: one known to exist, since when frames are missing without
        #: progress, and where the last resend asked to start (gap repair).
        self.seqs: dict[str, int] = {}
        self.highest: dict[str, int] = {}
        self.missing: dict[str, float] = {}
        self.asked: dict[str, int] = {}
        #: Owner node -> the threads this client reached through it.
        self.followed: dict[str, set[str]] = {}
        self.stale = 0
        self.parts: dict[str, list[bytes]] = {}
        self.relaying = False
        #: Threads this client reached on this node's own actors.
        self.local_threads: set[str] = set()

    # FrameStream, as the local Connection actor sees it.

    async def receive_frame(self) -> bytes | Oversized | None:
        while True:
            frame = await self.inner.receive_frame()
            if frame is None:
                self.close_tunnels()
            if not isinstance(frame, bytes):
                return frame
            msg = _decode(frame)
            if msg is None or not await self._divert(frame, msg):
                return frame

    async def send_frames(self, frames: Sequence[bytes]) -> None:
        if self.creating:
            for frame in frames:
                await self._created(_decode(frame))
        frames = await self.host.outgoing(frames)
        if not frames:
            return
        async with self.lock:
            await self.inner.send_frames(frames)

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        self.close_tunnels()
        await self.inner.aclose(code, reason)

    # Routing.

    async def _divert(self, frame: bytes, msg: dict[str, Any]) -> bool:
        """Send ``frame`` to a remote owner instead of the local actor;
        False when it is the local actor's."""
        method = msg.get("method")
        if method in ("initialize", "initialized"):
            # The handshake replayed to owners: the first of each, once (a
            # client repeating it is answered by its Connection, not stored).
            if len(self.init) == (0 if method == "initialize" else 1):
                self.init.append(msg_with_id(msg, INIT_ID) if "id" in msg else frame)
            return False
        if method is None:
            answered = self.server_requests.pop(msg["id"], None) if "id" in msg else None
            if answered is None:
                return False
            owner, remote_id = answered
            self.bus.publish(f"codex.node.{owner}.in", msg_with_id(msg, remote_id), self._headers(owner))
            return True
        if method == "thread/list" and "id" in msg and self.init and self.host.listing is not None:
            return await self._list(msg)
        if method in CREATING and "id" in msg:
            self.creating.add(msg["id"])
        params = msg.get("params")
        thread_id = params.get("threadId") if isinstance(params, dict) else None
        if not isinstance(thread_id, str) or not _TOKEN.fullmatch(thread_id) or "id" not in msg:
            return False  # not a thread id a subject can carry: the local actors answer it
        if thread_id in self.host.owned:
            self.local_threads.add(thread_id)
            return False
        try:
            forwarded = await self._forward(thread_id, frame, msg["id"])
            if not forwarded:
                self.local_threads.add(thread_id)
            return forwarded
        except Exception as exc:  # the fabric failed (NATS or the store down): this request fails, not the connection
            log.error("cluster: a request for thread %s failed: %s", thread_id, exc, exc_info=True)
            await self._fail(msg["id"], f"thread {thread_id}: the cluster could not route this request ({exc}); "
                                        "retry it")
            return True

    async def _list(self, msg: dict[str, Any]) -> bool:
        """Answer ``thread/list`` from the cluster's listing (every node's
        threads, in keyset pages), once the client is initialized; False
        leaves it to the local actors (params they refuse, and the
        experimental sections)."""
        try:
            p = decode_params(msgspec.Raw(msgspec.json.encode(msg.get("params"))), ThreadListParams)
        except JsonRpcError:
            return False
        if p.section_id is not None or p.sort_key == "section_position" \
                or (p.included_thread_ids is not None and len(p.included_thread_ids) > 100):
            return False
        assert self.host.listing is not None
        try:
            page = await self.host.listing.list_threads(
                cursor=p.cursor, limit=p.limit or 25, sort_key=p.sort_key or "created_at",
                sort_direction=p.sort_direction or "desc", archived=bool(p.archived), cwd=p.cwd,
                model_providers=p.model_providers, source_kinds=p.source_kinds, search_term=p.search_term,
                thread_ids=p.included_thread_ids)
            answer: Response | ErrorResponse = Response(msg["id"], ThreadListResponse(
                [thread_from_meta(m, m.id in self.host.owned) for m in page.rows],
                page.next_cursor, page.backwards_cursor))
        except ValueError as exc:
            answer = ErrorResponse(msg["id"], invalid_request(str(exc)).error)
        except Exception as exc:  # the store failed: this request fails, not the connection
            log.error("cluster: thread/list failed: %s", exc, exc_info=True)
            answer = ErrorResponse(msg["id"], internal_error(
                f"the cluster's thread list is unavailable ({exc}); retry the request").error)
        async with self.lock:
            await self.inner.send_frames([encode(answer)])
        return True

    async def _forward(self, thread_id: str, frame: bytes, rid: Any) -> bool:
        with trio.move_on_after(TAKEOVER_TIMEOUT):
            while True:
                claim = await self.directory.lookup(thread_id)
                if self.host.draining and (claim is None or claim.node == self.bus.node):
                    await self._fail(rid, f"thread {thread_id}: this node is shutting down; "
                                          "reconnect to another node and resume the thread there")
                    return True
                if claim is not None and claim.node == self.bus.node:
                    await self.host.own(thread_id, claim.epoch)
                    return False
                try:
                    owner = claim.node if claim is not None else ""
                    if claim is not None and owner not in self.opened:
                        self.opened.add(owner)
                        self.tunnels[owner] = next(self.generations)
                        for table in (self.seqs, self.highest, self.missing, self.asked, self.parts):
                            table.pop(owner, None)
                        await self._open(thread_id, owner)
                    await self._hop(thread_id, frame, owner)
                    if claim is not None:
                        self.followed.setdefault(claim.node, set()).add(thread_id)
                    return True
                except (NoResponders, TimeoutError) as exc:
                    # No responders: nobody serves the thread. A timeout: its
                    # owner froze or died a moment ago (NATS still routes to it).
                    log.info("cluster: thread %s: %s", thread_id, str(exc) or "no responders")
                    if claim is not None:
                        await self._owner_lost(claim.node)
                    if self.host.draining:
                        # Not activated here: the next lookup fails the
                        # request unless another node has the thread by then.
                        await trio.sleep(TAKEOVER_POLL)
                        continue
                    claim = await self.directory.claim(thread_id)
                    if claim.node == self.bus.node:
                        log.info("cluster: thread %s activated here at epoch %d", thread_id, claim.epoch)
                        await self.host.own(thread_id, claim.epoch)
                        return False
                    # Its owner still holds its lease (or is activating the
                    # thread): ask again shortly.
                    await trio.sleep(TAKEOVER_POLL)
        await self._fail(rid, f"thread {thread_id}: its owner node did not answer; retry the request")
        return True

    async def _owner_lost(self, owner: str) -> None:
        """The owner closed this client's tunnel (it is shutting down) or
        stopped answering: tell the client that the threads it followed
        there are closed, as the original does when it unloads a thread
        (``thread/status/changed {notLoaded}``, ``thread/closed``), so that
        it resumes them, wherever they are activated next."""
        self.opened.discard(owner)
        await self._tell_closed(sorted(self.followed.pop(owner, ())))

    async def thread_released(self, thread_id: str) -> None:
        """This node handed off a thread: tell the client, if it was one of
        its subscribers here."""
        if thread_id in self.local_threads:
            self.local_threads.discard(thread_id)
            await self._tell_closed([thread_id])

    async def _tell_closed(self, thread_ids: Sequence[str]) -> None:
        frames = []
        for thread_id in thread_ids:
            frames += [msgspec.json.encode({"method": "thread/status/changed", "params": {
                           "threadId": thread_id, "status": {"type": "notLoaded"}}}),
                       msgspec.json.encode({"method": "thread/closed", "params": {"threadId": thread_id}})]
        if frames:
            try:
                async with self.lock:
                    await self.inner.send_frames(frames)
            except TransportClosed:
                pass

    async def _fail(self, rid: Any, message: str) -> None:
        async with self.lock:
            await self.inner.send_frames([msgspec.json.encode(
                {"id": rid, "error": {"code": -32603, "message": message}})])

    async def _open(self, thread_id: str, owner: str) -> None:
        """Replay the client's handshake to a new owner's virtual connection.
        A repeated handshake is harmless (answered with an error the
        gateway drops), so it may time out sooner than a request."""
        for each in self.init:
            await self._hop(thread_id, each, owner, timeout=OPEN_TIMEOUT)

    async def _hop(self, thread_id: str, frame: bytes, owner: str, timeout: float | None = None) -> None:
        """Send ``frame`` to the thread's owner and wait for its ack. While
        the ack is late, watch the owner's lease: once it is gone, the owner
        died or froze, so stop waiting (TimeoutError) and let the caller take
        the thread over, rather than wait out ``timeout`` (a request sent
        as the owner was killed reaches NATS before it has dropped the dead
        connection, and is lost without a "no responders")."""
        await self._relay()
        gone = False
        failure: Exception | None = None

        async def watch_lease(hop: trio.CancelScope) -> None:
            nonlocal gone
            while True:
                await trio.sleep(LEASE_POLL)
                try:
                    alive = await self.directory.alive(owner)
                except Exception as exc:  # the fabric failed: the request's own timeout decides
                    log.info("cluster: the lease of %s could not be read: %s", owner, exc)
                    continue
                if not alive:
                    gone = True
                    hop.cancel()
                    return

        async with trio.open_nursery() as nursery:
            if owner:
                nursery.start_soon(watch_lease, nursery.cancel_scope)
            try:
                await self.bus.request(thread_subject(thread_id), frame, timeout=timeout or HOP_TIMEOUT,
                                       headers=self._headers(owner))
            except Exception as exc:  # raised below, not inside an exception group
                failure = exc
            nursery.cancel_scope.cancel()
        if failure is not None:
            raise failure
        if gone:
            raise TimeoutError(f"no answer from {owner}, whose lease ran out")

    def _headers(self, owner: str) -> dict[str, str]:
        """What names this connection's tunnel to ``owner``."""
        return {GATEWAY: self.bus.node, CONN: self.conn, TUNNEL: str(self.tunnels.get(owner, 0))}

    async def _relay(self) -> None:
        if not self.relaying:
            self.relaying = True
            await self.nursery.start(self._relay_frames)

    async def _relay_frames(self, *, task_status: trio.TaskStatus[None]) -> None:
        async with self.bus.subscribe(self.subject, GATEWAY_CAPACITY) as frames:
            task_status.started()
            async for msg in frames:
                await self._from_owner(msg)

    async def _from_owner(self, msg: Message) -> None:
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
        decoded = _decode(frame)
        if decoded is not None and decoded.get("id") == INIT_ID:
            return
        if decoded is not None and "method" in decoded and "id" in decoded:
            local = next(self.remote_ids)
            self.server_requests[local] = (owner, decoded["id"])
            frame = msg_with_id(decoded, local)
        try:
            async with self.lock:
                await self.inner.send_frames([frame])
        except TransportClosed:
            pass

    def _check(self, owner: str) -> None:
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

    def _ask(self, owner: str) -> None:
        first = self.asked[owner] = self.seqs.get(owner, 0) + 1
        log.info("cluster: asking %s to resend from %d", owner, first)
        self.bus.publish(f"codex.node.{owner}.in", b"", {**self._headers(owner), RESEND: str(first)})

    async def _chase(self, owner: str, tunnel: int) -> None:
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

    async def _give_up(self, owner: str) -> None:
        """Frames of ``owner`` are lost for good: close the tunnel (a next
        request opens a new one) and tell the client the threads it followed
        there are closed, so that it resumes them rather than miss events."""
        self.bus.publish(f"codex.node.{owner}.in", b"", {**self._headers(owner), CLOSE: "1"})
        self.missing.pop(owner, None)
        await self._owner_lost(owner)

    async def _created(self, msg: dict[str, Any] | None) -> None:
        if msg is None or msg.get("id") not in self.creating:
            return
        self.creating.discard(msg["id"])
        thread = (msg.get("result") or {}).get("thread") or {}
        if isinstance(thread.get("id"), str):
            claim = await self.directory.claim(thread["id"])
            if claim.node == self.bus.node:
                await self.host.own(thread["id"], claim.epoch)
                self.local_threads.add(thread["id"])

    def close_tunnels(self) -> None:
        for owner in self.opened:
            self.bus.publish(f"codex.node.{owner}.in", b"", {**self._headers(owner), CLOSE: "1"})
        self.opened.clear()


def msg_with_id(msg: dict[str, Any], rid: Any) -> bytes:
    return msgspec.json.encode({**msg, "id": rid})


@asynccontextmanager
async def open_tunnels(bus: Bus, directory: Directory, store: ThreadStore | None, serve_connection: ServeConnection,
                       local: LocalRollouts | None = None, pair: StreamPair | None = None
                       ) -> AsyncIterator[tuple[Callable[[FrameStream], Awaitable[None]], Callable[[], Awaitable[None]]]]:
    """Serve this node's side of the tunnels; yield ``serve(stream)``, which
    runs a client connection through a :class:`Gateway`, and ``drain()``,
    which hands the node's threads off (:meth:`TunnelHost.drain`). With a cluster
    ``store`` and the node's ``local`` rollouts, the rollouts of the threads
    this node owns are mirrored into the store (:mod:`.mirror`). ``pair``
    (an in-memory transport) lets the drain watch the node's threads."""
    async with trio.open_nursery() as nursery:
        host = TunnelHost(bus, directory, store, serve_connection, nursery, local, pair)
        await nursery.start(host.run)

        async def serve(stream: FrameStream) -> None:
            async with trio.open_nursery() as conn_nursery:
                gateway = Gateway(stream, bus, directory, host, conn_nursery)
                host.gateways.add(gateway)
                try:
                    await serve_connection(gateway)
                finally:
                    host.gateways.discard(gateway)
                    gateway.close_tunnels()
                    conn_nursery.cancel_scope.cancel()

        try:
            yield serve, host.drain
        finally:
            with trio.move_on_after(DRAIN_TIMEOUT, shield=True):
                await host.hand_off()
            nursery.cancel_scope.cancel()
