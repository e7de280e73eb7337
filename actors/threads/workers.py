"""The registry's requests that read a rollout or wait on the store, run
beside its loop (those about one thread one after another), and the replay
cache of big rollouts (functions of :class:`~.registry.ThreadRegistry`, bound as its methods)."""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec
import trio

from ...runtime.persistence.history_pages import history_page
from ...runtime.kernel.ids import uuid7
from ...runtime.kernel.ask import ask
from ...runtime.kernel.errors import StorageFailure
from ...runtime.protocol.jsonrpc import (
    ErrorResponse,
    JsonRpcError,
    internal_error,
    invalid_request,
    overloaded,
)
from ...runtime.protocol.v2.thread import (
    NotLoaded,
    ThreadForkParams,
    ThreadIdParams,
    ThreadNameUpdated,
    ThreadReadResponse,
    ThreadResumeParams,
    ThreadStatusChanged,
)
from ...runtime.persistence.rollout import (
    Replay,
    Rollout,
    ThreadMeta,
    fork_lines,
    parse_rollout,
    read_rollout,
    replay,
    rollout_path,
    running,
    scan_rollout,
    thread_from_meta,
    write_whole,
)
from ..messages.fanout import deliver
from ..messages import (
    ArchiveThread,
    DeleteThread,
    IndexThread,
    Loaded,
    LoadFailed,
    UpdateGitInfo,
    FindThread,
    NameThread,
    Reply,
    STORE_TIMEOUT,
)

if TYPE_CHECKING:
    from .registry import ThreadRegistry

log = logging.getLogger("trio_codex.threads")

#: Requests reading rollouts (resume, fork, read and the history pages of an
#: unloaded thread) or asking the store (name, archive, delete, metadata)
#: run beside the registry's loop, this many at once...
READERS = 16
#: ...and this many may wait for their turn; more are answered -32001.
WORKERS_WAITING = 1024
#: Replays of rollouts from this size up are kept, up to this much rollout
#: in all (a replay takes about as much memory as its file).
REPLAY_CACHE_MIN_BYTES = 256 * 1024
REPLAY_CACHE_BYTES = 64 * 1024 * 1024


async def _beside(self: ThreadRegistry, reply: Reply, fn: Callable[..., Awaitable[None]], *args: Any,
                  key: str | None = None) -> bool:
    """Run a request beside the loop (it reads a rollout or waits on the
    store), so it holds up only its own caller; the requests with the
    same ``key`` (a thread id) run one after another, in arrival order.
    False when too many wait already: the caller got -32001."""
    if self.workers >= WORKERS_WAITING:
        await deliver((reply.conn,), ErrorResponse(reply.request_id, overloaded().error))
        return False
    self.workers += 1
    job = (reply, fn, args)
    if key is None:
        self.readers.start_soon(self._work, None, deque([job]))
    elif (queue := self.serial.get(key)) is not None:
        queue.append(job)
    else:
        self.serial[key] = queue = deque([job])
        self.readers.start_soon(self._work, key, queue)
    return True

async def _work(self: ThreadRegistry, key: str | None, queue: deque[tuple[Reply, Callable[..., Awaitable[None]], tuple[Any, ...]]]
                ) -> None:
    """Run the requests of ``queue`` in order, each answered whatever it
    raises."""
    while queue:
        reply, fn, args = queue[0]
        async with self.readers_limit:
            try:
                await fn(*args)
            except JsonRpcError as exc:
                await deliver((reply.conn,), ErrorResponse(reply.request_id, exc.error))
            except StorageFailure as exc:  # the store met a full or read-only disk
                await deliver((reply.conn,), ErrorResponse(reply.request_id, internal_error(str(exc)).error))
            except Exception as exc:
                log.exception("a thread request failed beside the registry's loop")
                await deliver((reply.conn,), ErrorResponse(
                    reply.request_id, internal_error(f"the thread request failed: {exc!r}").error))
        queue.popleft()
        self.workers -= 1
    if key is not None:
        del self.serial[key]

async def _read_unloaded(self: ThreadRegistry, reply: Reply, params: Any) -> None:
    meta = await self._find(params.thread_id, f"thread not loaded: {params.thread_id}")
    turns = (await self._replay(meta)).turns if params.include_turns else []
    thread = msgspec.structs.replace(thread_from_meta(meta, False), turns=turns)
    await self._answer(reply, ThreadReadResponse(thread))

async def _history_page(self: ThreadRegistry, reply: Reply, method: str, params: Any) -> None:
    """A page of ``thread/turns/list`` or ``thread/items/list``."""
    meta = await self._stored(params.thread_id)
    if meta is None and params.thread_id not in self.threads:
        raise invalid_request(f"thread not loaded: {params.thread_id}")
    # A loaded thread that is ephemeral, or before its first turn, has no
    # rollout (yet), and so no stored turns.
    cp = self.checkpoints.get(params.thread_id)
    turns = running((await self._replay(meta)).turns, cp.active_turn if cp else None) if meta else []
    try:
        page = history_page(turns, method, params)
    except ValueError as exc:
        raise invalid_request(str(exc)) from None
    await self._answer(reply, page)

async def _metadata(self: ThreadRegistry, reply: Reply, thread_id: str, patch: dict[str, str | None]) -> None:
    """thread/metadata/update of a thread that is not loaded."""
    meta: ThreadMeta | None = await ask(
        self.store, lambda slot: UpdateGitInfo(thread_id, patch, slot), timeout=STORE_TIMEOUT)
    if meta is None or not meta.rollout_path:
        raise invalid_request(f"no rollout found for thread id {thread_id}")
    await self._answer(reply, ThreadReadResponse(thread_from_meta(meta, False)))

async def _name(self: ThreadRegistry, reply: Reply, thread_id: str, name: str | None, stored_only: bool) -> None:
    """thread/name/set; ``stored_only``: the thread was not loaded, so
    it must have a rollout."""
    if stored_only:
        await self._find(thread_id, f"thread not found: {thread_id}")
    await ask(self.store, lambda slot: NameThread(thread_id, name, slot), timeout=STORE_TIMEOUT)
    await self._answer(reply, {})
    await self._broadcast(reply, "thread/name/updated", ThreadNameUpdated(thread_id, name))

async def _archive(self: ThreadRegistry, reply: Reply, thread_id: str, archived: bool) -> None:
    """As the original: archiving unloads a loaded thread first
    (``thread/status/changed {notLoaded}``); then the response, then
    ``thread/archived`` (``thread/unarchived``)."""
    await self._find(thread_id, f"no rollout found for thread id {thread_id}")
    if archived and self._stop_loaded(thread_id, "archived by the client (thread/archive)"):
        await self._broadcast(reply, "thread/status/changed", ThreadStatusChanged(thread_id, NotLoaded()))
    meta: ThreadMeta | None = await ask(
        self.store, lambda slot: ArchiveThread(thread_id, archived, slot), timeout=STORE_TIMEOUT)
    if archived:
        await self._answer(reply, {})
        await self._broadcast(reply, "thread/archived", ThreadIdParams(thread_id))
    else:
        if meta is None:  # gone since the find above
            raise invalid_request(f"no rollout found for thread id {thread_id}")
        await self._answer(reply, ThreadReadResponse(thread_from_meta(meta, thread_id in self.threads)))
        await self._broadcast(reply, "thread/unarchived", ThreadIdParams(thread_id))

async def _delete(self: ThreadRegistry, reply: Reply, thread_id: str) -> None:
    await self._find(thread_id, f"no rollout found for thread id {thread_id}")
    if self._stop_loaded(thread_id, "deleted by the client (thread/delete)"):
        await self._broadcast(reply, "thread/status/changed", ThreadStatusChanged(thread_id, NotLoaded()))
    await ask(self.store, lambda slot: DeleteThread(thread_id, slot), timeout=STORE_TIMEOUT)
    await self._answer(reply, {})
    await self._broadcast(reply, "thread/deleted", ThreadIdParams(thread_id))

async def _fork(self: ThreadRegistry, reply: Reply, params: ThreadForkParams) -> None:
    """A new thread from a copy of another's rollout (through
    ``lastTurnId``), loaded and announced with ``thread/started``."""
    meta = await self._find(params.thread_id, f"no rollout found for thread id {params.thread_id}")
    new_id, now_ms = uuid7(), time.time_ns() // 1_000_000
    try:
        data = fork_lines(await self._read(meta), new_id, now_ms, params.last_turn_id)
    except ValueError as exc:
        raise invalid_request(str(exc)) from None
    path = None
    if not params.ephemeral:
        path = rollout_path(self.settings.codex_home, new_id, now_ms)
        await trio.to_thread.run_sync(write_whole, path, data)
        if (row := await trio.to_thread.run_sync(scan_rollout, path)) is not None:  # None: not a rollout
            await self.store.send(IndexThread(row))
    forked = msgspec.structs.replace(meta, id=new_id, created_at=now_ms, rollout_path=str(path or ""))
    r = replay(parse_rollout(data, str(path or "<ephemeral fork>")))
    await self.mailbox.send(Loaded(reply, params, forked, r, str(path) if path else None, forked_from=meta.id,
                                   ephemeral=bool(params.ephemeral)))

async def _read_for_resume(self: ThreadRegistry, reply: Reply, params: ThreadResumeParams) -> None:
    try:
        meta = await self._find(params.thread_id, f"no rollout found for thread id {params.thread_id}")
        loaded = Loaded(reply, params, meta, await self._replay(meta), meta.rollout_path)
    except Exception:
        await self.mailbox.send(LoadFailed(params.thread_id))
        raise
    await self.mailbox.send(loaded)

async def _stored(self: ThreadRegistry, thread_id: str) -> ThreadMeta | None:
    """The index row of a thread that has a rollout, or None."""
    meta: ThreadMeta | None = await ask(self.store, lambda slot: FindThread(thread_id, slot), timeout=STORE_TIMEOUT)
    return meta if meta is not None and meta.rollout_path else None

async def _find(self: ThreadRegistry, thread_id: str, missing: str) -> ThreadMeta:
    meta = await self._stored(thread_id)
    if meta is None:
        raise invalid_request(missing)
    return meta

async def _read(self: ThreadRegistry, meta: ThreadMeta) -> Rollout:
    try:
        return await trio.to_thread.run_sync(read_rollout, meta.rollout_path)
    except OSError as exc:
        raise invalid_request(f"cannot read rollout {meta.rollout_path}: {exc}") from None

async def _replay(self: ThreadRegistry, meta: ThreadMeta) -> Replay:
    """The thread as its rollout holds it, replayed off the trio thread.
    The replays of big rollouts are kept while their file is unchanged,
    so a client paging through a long thread does not pay a full read
    for every page."""
    path, names = meta.rollout_path, {meta.id: meta.name} if meta.name else None
    try:
        st = await trio.to_thread.run_sync(os.stat, path)
        stamp = (path, meta.name, st.st_size, st.st_mtime_ns)
        if (cached := self.replays.get(path)) is not None and cached[0] == stamp:
            self.replays.move_to_end(path)
            return cached[1]
        r = await trio.to_thread.run_sync(lambda: replay(read_rollout(path), thread_names=names))
    except (OSError, ValueError) as exc:
        raise invalid_request(f"cannot read rollout {path}: {exc}") from None
    if st.st_size >= REPLAY_CACHE_MIN_BYTES:
        self.replays[path] = (stamp, r)
        while sum(s[2] for s, _ in self.replays.values()) > REPLAY_CACHE_BYTES:
            self.replays.popitem(last=False)
    return r
