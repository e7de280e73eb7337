"""The client's side of the tunnels: :class:`Gateway` wraps a client
connection's stream, sends the requests for threads other nodes own to
them, and delivers their frames in order (:mod:`.repair`; README
"Cluster", "Gap repair")."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
import trio

from ..protocol.codec import decode_params, encode
from ..protocol.jsonrpc import ErrorResponse, JsonRpcError, Response, internal_error, invalid_request
from ..protocol.v2.thread import (
    ThreadListParams,
    ThreadListResponse,
    ThreadSearchParams,
    ThreadSearchResponse,
)
from ..persistence.thread_index import list_answer, page_filters, search_answer
from ..kernel.stream import FrameStream, Oversized, TransportClosed
from . import repair
from .ports import Bus, Directory, NoResponders
from .wire import (CLOSE, CONN, CREATING, GATEWAY, GATEWAY_CAPACITY, HOP_TIMEOUT, INIT_ID, LEASE_POLL, OPEN_TIMEOUT,
                   REMOTE_IDS, TAKEOVER_POLL, TAKEOVER_TIMEOUT, THREAD_TOKEN, TUNNEL, decode_frame, log,
                   msg_with_id, thread_subject)

if TYPE_CHECKING:
    from .host import TunnelHost

P = TypeVar("P", ThreadListParams, ThreadSearchParams)


def _params(msg: dict[str, Any], kind: type[P]) -> P | None:
    """A listing request's params, or None when the local actors should
    answer it (they refuse it with the original's error)."""
    try:
        return decode_params(msgspec.Raw(msgspec.json.encode(msg.get("params"))), kind)
    except JsonRpcError:
        return None


class Gateway:
    """The client's side: wraps the client's stream for its Connection actor."""

    _conn_ids = itertools.count(1)

    # In-order delivery and gap repair: :mod:`.repair`.
    _from_owner = repair._from_owner
    _check = repair._check
    _ask = repair._ask
    _chase = repair._chase
    _give_up = repair._give_up
    _catch_up = repair._catch_up

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
        #: Thread -> the epoch of the owner it is followed at, and the last
        #: of its events (numbered per thread) the client got from there:
        #: where a catch-up from the event tail starts (:meth:`_catch_up`).
        self.epochs: dict[str, int] = {}
        self.delivered: dict[str, int] = {}
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
            msg = decode_frame(frame)
            if msg is None or not await self._divert(frame, msg):
                return frame

    async def send_frames(self, frames: Sequence[bytes]) -> None:
        if self.creating:
            for frame in frames:
                await self._created(decode_frame(frame))
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
        if method == "thread/search" and "id" in msg and self._experimental() and self.host.listing is not None:
            return await self._search(msg)
        if method in CREATING and "id" in msg:
            self.creating.add(msg["id"])
        params = msg.get("params")
        thread_id = params.get("threadId") if isinstance(params, dict) else None
        if not isinstance(thread_id, str) or not THREAD_TOKEN.fullmatch(thread_id) or "id" not in msg:
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
        p = _params(msg, ThreadListParams)
        if p is None or p.section_id is not None or p.sort_key == "section_position" \
                or (p.included_thread_ids is not None and len(p.included_thread_ids) > 100):
            return False
        listing = self.host.listing
        assert listing is not None

        async def page() -> ThreadListResponse:
            return list_answer(await listing.list_threads(**page_filters(p)), self.host.owned)
        await self._answer_listing(msg["id"], page)
        return True

    def _experimental(self) -> bool:
        """Whether the client's ``initialize`` opted in to the experimental
        API (``thread/search`` is; without it the Connection refuses it)."""
        params = (decode_frame(self.init[0]) or {}).get("params") if self.init else None
        caps = params.get("capabilities") if isinstance(params, dict) else None
        return isinstance(caps, dict) and caps.get("experimentalApi") is True

    async def _search(self, msg: dict[str, Any]) -> bool:
        """Answer ``thread/search`` from the cluster's listing and message
        texts, as the single process answers it (the store's ``_listing``);
        False leaves params the local actors refuse to them."""
        p = _params(msg, ThreadSearchParams)
        if p is None or not p.search_term.strip():
            return False  # refused by the registry, as in one process
        listing = self.host.listing
        assert listing is not None

        async def page() -> ThreadSearchResponse:
            page = await listing.list_threads(**page_filters(p))
            snippets = await listing.snippets([m.id for m in page.rows], p.search_term)
            return search_answer(page, snippets, self.host.owned)
        await self._answer_listing(msg["id"], page)
        return True

    async def _answer_listing(self, rid: Any, page: Callable[[], Awaitable[Any]]) -> None:
        """Answer a listing request with ``page()``; a bad cursor or sort is
        the client's error, a failing store this request's alone."""
        try:
            answer: Response | ErrorResponse = Response(rid, await page())
        except ValueError as exc:
            answer = ErrorResponse(rid, invalid_request(str(exc)).error)
        except Exception as exc:  # the store failed: this request fails, not the connection
            log.error("cluster: a thread listing failed: %s", exc, exc_info=True)
            answer = ErrorResponse(rid, internal_error(
                f"the cluster's thread list is unavailable ({exc}); retry the request").error)
        async with self.lock:
            await self.inner.send_frames([encode(answer)])

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
                        if self.epochs.get(thread_id) != claim.epoch:  # another owner: its own numbers
                            self.epochs[thread_id] = claim.epoch
                            self.delivered.pop(thread_id, None)
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
        threads = sorted(self.followed.pop(owner, ()))
        await self._catch_up(owner, threads)
        await self._tell_closed(threads)

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

    async def _deliver(self, owner: str, frame: bytes) -> None:
        """Write a frame of ``owner`` to the client: a server request with
        an id of this client's."""
        decoded = decode_frame(frame)
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
                self.local_threads.add(thread["id"])

    def close_tunnels(self) -> None:
        for owner in self.opened:
            self.bus.publish(f"codex.node.{owner}.in", b"", {**self._headers(owner), CLOSE: "1"})
        self.opened.clear()
