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
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import trio

from ..stream import FrameStream, Oversized, TransportClosed
from .mirror import LocalRollouts, Mirror
from .ports import Bus, Directory, Fenced, Message, NoResponders, ThreadStore

log = logging.getLogger("trio_codex.cluster")

#: How long the owner may take to take a frame (it acks on receipt, before
#: handling it) before it is presumed frozen or dead.
HOP_TIMEOUT = 5.0
#: How long a request waits for a thread whose owner left the fabric to
#: become claimable (the owner's lease to run out) before it fails.
TAKEOVER_TIMEOUT = 30.0
#: How often it asks again meanwhile.
TAKEOVER_POLL = 0.25
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
#: Methods whose answer names a thread this node just created.
CREATING = frozenset({"thread/start", "thread/fork"})

SEQ, GATEWAY, CONN, CLOSE, OWNER, PART = ("Codex-Seq", "Codex-Gateway", "Codex-Conn", "Codex-Close", "Codex-Owner",
                                          "Codex-Part")
#: The largest piece of a frame sent as one bus message.
PART_SIZE = 256 * 1024

#: What a thread id must look like to name a subject (ids are UUIDs): no
#: dots, wildcards or spaces a client could use to reach other subjects.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,128}")

ServeConnection = Callable[[FrameStream], Awaitable[None]]


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

    def __init__(self, bus: Bus, gateway: str, conn: str) -> None:
        self.peer = f"cluster:{gateway}/{conn}"
        self.bus = bus
        self.subject = f"codex.gw.{gateway}.{conn}"
        self.send, self.recv = trio.open_memory_channel[bytes | None](VIRTUAL_CAPACITY)
        self.seq = itertools.count(1)
        self.closed = False

    async def receive_frame(self) -> bytes | Oversized | None:
        try:
            return await self.recv.receive()
        except trio.EndOfChannel:
            return None

    async def send_frames(self, frames: Sequence[bytes]) -> None:
        if self.closed:
            raise TransportClosed(self.peer)
        for frame in frames:
            # NATS refuses messages over its max_payload (1 MiB by default):
            # a big frame (a long thread's history) goes in parts.
            parts = [frame[i:i + PART_SIZE] for i in range(0, len(frame), PART_SIZE)] or [frame]
            for i, part in enumerate(parts):
                headers = {SEQ: str(next(self.seq)), OWNER: self.bus.node}
                if len(parts) > 1:
                    headers[PART] = f"{i + 1}/{len(parts)}"
                self.bus.publish(self.subject, part, headers)
        await self.bus.backpressure()

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        if not self.closed:
            self.closed = True
            self.bus.publish(self.subject, b"", {CLOSE: reason or "closed", OWNER: self.bus.node})
            self.send.close()


class TunnelHost:
    """The owner's side: serves ``codex.thread.<id>.req`` for every thread
    this node has claimed, and ``codex.node.<node>.in`` for answers and
    closes of existing virtual connections."""

    def __init__(self, bus: Bus, directory: Directory, store: ThreadStore | None,
                 serve_connection: ServeConnection, nursery: trio.Nursery, local: LocalRollouts | None = None) -> None:
        self.bus = bus
        self.directory = directory
        self.store = store
        self.mirror = Mirror(local, store, nursery, self.drop) if store is not None and local is not None else None
        self.scopes: dict[str, trio.CancelScope] = {}
        self.serve_connection = serve_connection
        self.nursery = nursery
        self.virtual: dict[tuple[str, str], _VirtualStream] = {}
        self.owned: dict[str, int] = {}

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
        key = (headers.get(GATEWAY, ""), headers.get(CONN, ""))
        stream = self.virtual.get(key)
        if CLOSE in headers:
            if stream is not None:
                stream.send.close()
            return
        if stream is None:
            if not create:
                return
            stream = self.virtual[key] = _VirtualStream(self.bus, *key)
            self.nursery.start_soon(self._serve_virtual, key, stream)
        try:
            with trio.fail_after(HOP_TIMEOUT):
                await stream.send.send(msg.data)
        except (trio.ClosedResourceError, trio.BrokenResourceError, trio.TooSlowError):
            log.warning("cluster: a frame for %s was dropped: its virtual connection is closed or stuck",
                        stream.peer)

    async def _serve_virtual(self, key: tuple[str, str], stream: _VirtualStream) -> None:
        try:
            await self.serve_connection(stream)
        finally:
            self.virtual.pop(key, None)
            await stream.aclose()


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
        self.seqs: dict[str, int] = {}
        #: Owner node -> the threads this client reached through it.
        self.followed: dict[str, set[str]] = {}
        self.stale = 0
        self.parts: dict[str, list[bytes]] = {}
        self.relaying = False

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
            answered = self.server_requests.pop(msg.get("id"), None) if "id" in msg else None
            if answered is None:
                return False
            owner, remote_id = answered
            self.bus.publish(f"codex.node.{owner}.in", msg_with_id(msg, remote_id),
                             {GATEWAY: self.bus.node, CONN: self.conn})
            return True
        if method in CREATING and "id" in msg:
            self.creating.add(msg["id"])
        params = msg.get("params")
        thread_id = params.get("threadId") if isinstance(params, dict) else None
        if not isinstance(thread_id, str) or not _TOKEN.fullmatch(thread_id) or "id" not in msg \
                or thread_id in self.host.owned:
            return False  # not a thread id a subject can carry: the local actors answer it
        try:
            return await self._forward(thread_id, frame, msg["id"])
        except Exception as exc:  # the fabric failed (NATS or the store down): this request fails, not the connection
            log.error("cluster: a request for thread %s failed: %s", thread_id, exc, exc_info=True)
            await self._fail(msg["id"], f"thread {thread_id}: the cluster could not route this request ({exc}); "
                                        "retry it")
            return True

    async def _forward(self, thread_id: str, frame: bytes, rid: Any) -> bool:
        with trio.move_on_after(TAKEOVER_TIMEOUT):
            while True:
                claim = await self.directory.lookup(thread_id)
                if claim is not None and claim.node == self.bus.node:
                    await self.host.own(thread_id, claim.epoch)
                    return False
                try:
                    if claim is not None and claim.node not in self.opened:
                        self.opened.add(claim.node)
                        await self._open(thread_id)
                    await self._hop(thread_id, frame)
                    if claim is not None:
                        self.followed.setdefault(claim.node, set()).add(thread_id)
                    return True
                except (NoResponders, TimeoutError) as exc:
                    # No responders: nobody serves the thread. A timeout: its
                    # owner froze or died a moment ago (NATS still routes to it).
                    log.info("cluster: thread %s: %s", thread_id, exc or "no responders")
                    if claim is not None:
                        await self._owner_lost(claim.node)
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
        frames = []
        for thread_id in sorted(self.followed.pop(owner, ())):
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

    async def _open(self, thread_id: str) -> None:
        """Replay the client's handshake to a new owner's virtual connection.
        A repeated handshake is harmless (answered with an error the
        gateway drops), so it may time out sooner than a request."""
        for each in self.init:
            await self._hop(thread_id, each, timeout=OPEN_TIMEOUT)

    async def _hop(self, thread_id: str, frame: bytes, timeout: float = HOP_TIMEOUT) -> None:
        await self._relay()
        await self.bus.request(thread_subject(thread_id), frame, timeout=timeout,
                               headers={GATEWAY: self.bus.node, CONN: self.conn})

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
        if CLOSE in headers:
            await self._owner_lost(owner)
            return
        if owner not in self.opened:
            # A node this connection no longer follows: one that froze and
            # woke up after its threads were taken over. Its late frames
            # must not reach the client.
            self.stale += 1
            log.info("cluster: a late frame from %s dropped (%d so far)", owner, self.stale)
            return
        seq = int(headers.get(SEQ, "0"))
        if seq != self.seqs.get(owner, 0) + 1:
            log.warning("cluster: frames %d..%d from %s were lost", self.seqs.get(owner, 0) + 1, seq - 1, owner)
        self.seqs[owner] = seq
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

    async def _created(self, msg: dict[str, Any] | None) -> None:
        if msg is None or msg.get("id") not in self.creating:
            return
        self.creating.discard(msg["id"])
        thread = (msg.get("result") or {}).get("thread") or {}
        if isinstance(thread.get("id"), str):
            claim = await self.directory.claim(thread["id"])
            if claim.node == self.bus.node:
                await self.host.own(thread["id"], claim.epoch)

    def close_tunnels(self) -> None:
        for owner in self.opened:
            self.bus.publish(f"codex.node.{owner}.in", b"", {GATEWAY: self.bus.node, CONN: self.conn, CLOSE: "1"})
        self.opened.clear()


def msg_with_id(msg: dict[str, Any], rid: Any) -> bytes:
    return msgspec.json.encode({**msg, "id": rid})


@asynccontextmanager
async def open_tunnels(bus: Bus, directory: Directory, store: ThreadStore | None, serve_connection: ServeConnection,
                       local: LocalRollouts | None = None) -> AsyncIterator[Callable[[FrameStream], Awaitable[None]]]:
    """Serve this node's side of the tunnels; yield ``serve(stream)``, which
    runs a client connection through a :class:`Gateway`. With a cluster
    ``store`` and the node's ``local`` rollouts, the rollouts of the threads
    this node owns are mirrored into the store (:mod:`.mirror`)."""
    async with trio.open_nursery() as nursery:
        host = TunnelHost(bus, directory, store, serve_connection, nursery, local)
        await nursery.start(host.run)

        async def serve(stream: FrameStream) -> None:
            async with trio.open_nursery() as conn_nursery:
                gateway = Gateway(stream, bus, directory, host, conn_nursery)
                try:
                    await serve_connection(gateway)
                finally:
                    gateway.close_tunnels()
                    conn_nursery.cancel_scope.cancel()

        try:
            yield serve
        finally:
            with trio.move_on_after(DRAIN_TIMEOUT, shield=True):
                await host.hand_off()
            nursery.cancel_scope.cancel()
