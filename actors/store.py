"""The store: the thread listing index (SQLite, ``runtime/persistence/thread_index/``),
kept in step with the rollout files.

Every SQLite call runs off the trio thread. The index is opened (and synced
with the rollouts, a full rebuild when it is missing or stale) after the
store has started, so a host with thousands of threads answers
``initialize`` at once; requests queue until the index is ready.

A disk or database error (a full disk, a read-only CODEX_HOME) fails the one
request that met it, with a :class:`~trio_codex.runtime.kernel.errors.StorageFailure`
saying which file and why, never the store: the index is derived from the
rollouts, so an update it missed is made good by the next sync.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import trio

from ..runtime.kernel.ask import ask
from ..runtime.cluster.ports import Fenced
from ..runtime.kernel.errors import MailboxClosed, StorageFailure
from ..runtime.kernel.mailbox import Inbox, Mailbox, open_mailbox
from ..runtime.protocol.jsonrpc import ErrorResponse, Response, internal_error, invalid_request
from ..runtime.protocol.v2.thread import (
    ThreadListParams,
    ThreadListResponse,
    ThreadSearchParams,
    ThreadSearchResponse,
)
from ..runtime.persistence.rollout import (
    SESSION_INDEX_FILE,
    ThreadMeta,
    archived_rollout_path,
    encode_session_index_entry,
    rollout_path,
    scan_rollout,
)
from ..runtime.persistence.thread_index import (INDEX_FILE, Stopped, ThreadIndex, list_answer, open_index, page_filters,
                                                 search_answer)
from .messages.barrier import contained
from .messages import (
    ArchiveThread,
    DeleteThread,
    FindThread,
    IndexThread,
    ListThreads,
    NameThread,
    SearchTicket,
    UpdateGitInfo,
    StoreInbox,
)

log = logging.getLogger("trio_codex.store")

#: Index updates and queries waiting for the store.
STORE_CAPACITY = 1024
#: How long a :class:`LocalThreadStore` call waits for the store actor.
LOCAL_STORE_TIMEOUT = 30.0
#: The error of a thread search its cancel request stopped, as the original's.
SEARCH_CANCELLED = "thread search cancelled"


def _name(codex_home: Path, index: ThreadIndex, thread_id: str, name: str | None) -> None:
    _append_whole(Path(codex_home) / SESSION_INDEX_FILE,
                  encode_session_index_entry(thread_id, name, updated_at_ms=time.time_ns() // 1_000_000))
    index.set_name(thread_id, name)


def _append_whole(path: Path, data: bytes) -> None:
    """Append a whole line or nothing: a failed append is cut back, so a
    full disk leaves no torn line for the next append to run into."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        start = os.fstat(fd).st_size
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view):]
        except OSError as exc:
            try:
                os.ftruncate(fd, start)
            except OSError:
                log.error("%s: cannot cut back a failed append", path)
            raise StorageFailure.writing(str(path), exc) from None
    finally:
        os.close(fd)


def _archive(codex_home: Path, index: ThreadIndex, thread_id: str, archived: bool) -> ThreadMeta | None:
    """Move the rollout as the original does: into the flat archive folder,
    or back to its dated folder; then the index follows."""
    meta = index.get(thread_id)
    if meta is None or not meta.rollout_path or meta.archived == archived:
        return meta
    src = Path(meta.rollout_path)
    dst = (archived_rollout_path(codex_home, src) if archived
           else rollout_path(codex_home, thread_id, meta.created_at))
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dst)
    index.mark_archived(thread_id, archived, rollout_path=str(dst))
    return index.get(thread_id)


def _delete(index: ThreadIndex, thread_id: str) -> bool:
    meta = index.get(thread_id)
    if meta is None:
        return False
    if meta.rollout_path:
        Path(meta.rollout_path).unlink(missing_ok=True)
    return index.delete(thread_id)


async def run_store(codex_home: Path, box: tuple[Mailbox, Inbox] | None = None, *,
                    task_status: trio.TaskStatus[Mailbox[StoreInbox]] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``box`` (a mailbox the parent opened, so that a restarted store
    serves the same one), or a mailbox of its own."""
    mailbox, inbox = box or open_mailbox(STORE_CAPACITY, name="store")
    task_status.started(mailbox)
    index: ThreadIndex | None = None
    try:
        async for msg in inbox:
            async with contained(msg, log, "the store"):
                try:
                    # Opened again after a failure (no file descriptor left,
                    # a disk error): the store recovers when the host does.
                    if index is None:
                        index = await trio.to_thread.run_sync(open_index, codex_home)
                    await _handle(msg, codex_home, index)
                except (OSError, sqlite3.Error, StorageFailure) as exc:
                    await _failed(msg, codex_home, exc)
    finally:
        if index is not None:
            index.close()


async def _failed(msg: object, codex_home: Path, exc: Exception) -> None:
    """Answer a request that met a disk or database error with why."""
    failure = exc if isinstance(exc, StorageFailure) else StorageFailure.writing(
        getattr(exc, "filename", None) or str(Path(codex_home) / INDEX_FILE), exc)
    log.error("%s (%s)", failure, type(msg).__name__)
    reply = getattr(msg, "reply", None)
    if isinstance(msg, ListThreads):
        try:
            await msg.reply.conn.outbox.send(ErrorResponse(msg.reply.request_id, internal_error(str(failure)).error))
        except MailboxClosed:
            pass
    elif reply is not None:
        reply.fail(failure)


async def _handle(msg: object, codex_home: Path, index: ThreadIndex) -> None:
    """One request, answered; a disk or database error is raised."""
    match msg:
        case IndexThread(meta=meta, texts=texts):
            await trio.to_thread.run_sync(index.upsert, meta, texts)
        case FindThread(thread_id=tid, reply=reply):
            reply.set(await trio.to_thread.run_sync(index.get, tid))
        case NameThread(thread_id=tid, name=name, reply=reply):
            await trio.to_thread.run_sync(_name, codex_home, index, tid, name)
            reply.set(True)
        case ArchiveThread(thread_id=tid, archived=archived, reply=reply):
            reply.set(await trio.to_thread.run_sync(_archive, codex_home, index, tid, archived))
        case UpdateGitInfo(thread_id=tid, patch=patch, reply=reply):
            reply.set(await trio.to_thread.run_sync(index.update_git, tid, patch))
        case DeleteThread(thread_id=tid, reply=reply):
            reply.set(await trio.to_thread.run_sync(_delete, index, tid))
        case ListThreads(reply=reply, params=p, loaded=loaded, ticket=ticket):
            try:
                if ticket is None:
                    result = await trio.to_thread.run_sync(_listing, index, p, loaded)
                else:
                    assert isinstance(p, ThreadSearchParams)  # the registry gives only searches a ticket
                    result = await trio.to_thread.run_sync(_search, index, p, loaded, ticket)
                answer: Response | ErrorResponse = Response(reply.request_id, result)
            except Stopped:
                answer = ErrorResponse(reply.request_id, invalid_request(SEARCH_CANCELLED).error)
            except ValueError as exc:
                answer = ErrorResponse(reply.request_id, invalid_request(str(exc)).error)
            try:
                await reply.conn.outbox.send(answer)
            except MailboxClosed:
                pass
            finally:
                if ticket is not None:
                    ticket.done = True


def _search(index: ThreadIndex, p: ThreadSearchParams, loaded: frozenset[str],
            ticket: SearchTicket) -> ThreadSearchResponse:
    """A thread search its cancel request can stop (:class:`Stopped`): not
    started if cancelled while it waited, interrupted while it queries."""
    with index.stoppable(lambda: ticket.cancelled):
        if ticket.cancelled:
            raise Stopped()
        return cast(ThreadSearchResponse, _listing(index, p, loaded))


def _listing(index: ThreadIndex, p: ThreadListParams | ThreadSearchParams,
             loaded: frozenset[str]) -> ThreadListResponse | ThreadSearchResponse:
    """A page of ``thread/list`` or, for its params, ``thread/search``
    (blocking; ValueError for a bad cursor or sort)."""
    page = index.list_threads(**page_filters(p))
    if isinstance(p, ThreadSearchParams):
        return search_answer(page, index.snippets([m.id for m in page.rows], p.search_term), loaded)
    return list_answer(page, loaded)


class LocalThreadStore:
    """The single-process :class:`~trio_codex.runtime.cluster.ports.ThreadStore`:
    today's JSONL rollouts and SQLite index, reached through this store
    actor's mailbox (names, archive, git info, index rows) and the rollout
    files (history, appends). Epochs live in memory: one process is the
    only writer, so a thread stays at the epoch it was activated at."""

    def __init__(self, store: Mailbox[StoreInbox], codex_home: Path | None = None) -> None:
        self.store = store
        self.codex_home = codex_home
        self.epochs: dict[str, int] = {}

    async def index_file(self, path: Path) -> None:
        """List a rollout written behind the store's back (one copied in
        from another node's store)."""
        meta = await trio.to_thread.run_sync(scan_rollout, path)
        if meta is not None:
            await self.store.send(IndexThread(meta))

    async def _ask(self, make: Any) -> Any:
        return await ask(self.store, make, timeout=LOCAL_STORE_TIMEOUT)

    async def read_thread(self, thread_id: str) -> ThreadMeta | None:
        return await self._ask(lambda slot: FindThread(thread_id, slot))

    async def activate(self, thread_id: str, epoch: int) -> int:
        self.epochs[thread_id] = max(epoch, self.epochs.get(thread_id, 0))
        return len(await self.load_history(thread_id))

    def _fence(self, thread_id: str, epoch: int) -> None:
        current = self.epochs.get(thread_id)
        if current != epoch:
            raise Fenced(thread_id, epoch, current)

    async def append_items(self, thread_id: str, epoch: int, items: Sequence[bytes]) -> int:
        self._fence(thread_id, epoch)
        meta = await self.read_thread(thread_id)
        if meta is None or not meta.rollout_path:
            raise StorageFailure.writing(thread_id, FileNotFoundError(f"thread {thread_id} has no rollout"))
        await trio.to_thread.run_sync(_append_whole, Path(meta.rollout_path), b"".join(i + b"\n" for i in items))
        return len(await self.load_history(thread_id))

    async def load_history(self, thread_id: str) -> list[bytes]:
        meta = await self.read_thread(thread_id)
        if meta is None or not meta.rollout_path:
            return []
        data = await trio.to_thread.run_sync(Path(meta.rollout_path).read_bytes)
        return [line for line in data.split(b"\n") if line]

    async def set_name(self, thread_id: str, name: str | None) -> bool:
        return await self._ask(lambda slot: NameThread(thread_id, name, slot))

    async def archive(self, thread_id: str, archived: bool) -> ThreadMeta | None:
        return await self._ask(lambda slot: ArchiveThread(thread_id, archived, slot))

    async def update_git(self, thread_id: str, patch: dict[str, str | None]) -> ThreadMeta | None:
        return await self._ask(lambda slot: UpdateGitInfo(thread_id, patch, slot))
