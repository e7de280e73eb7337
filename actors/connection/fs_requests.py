"""``fs/*``, ``fs/watch`` and ``fuzzyFileSearch*``: the client's own file
access, owned by one connection.

Not an actor: the connection holds one :class:`FsRequests` and calls it
from its reader, as it holds :class:`~.command_exec.CommandExecs`. Nothing
here blocks the reader: each operation runs in a worker thread
(``trio.to_thread``) in its own task in the connection's nursery, at most
:data:`MAX_PENDING` per connection (the reader waits for a slot: back
pressure, bounded). The operations and their checks are
runtime/files/fs_ops.py's; the search is runtime/files/file_search.py's.

Watches (``watchfiles``' Rust notifier, non-recursive as the original's:
a directory reports its entries, a file or a missing path its own changes)
and search sessions belong to the connection and end with it (its nursery
is cancelled; each worker thread sees its stop flag within
:data:`WATCH_STEP_MS`). A session walks its roots once, from
``sessionStart``, and ranks each ``sessionUpdate`` query over that walk,
streaming the best so far while the walk goes on, as the original's; a
newer query cancels the ranking of the older one, whose results are then
no longer sent.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import trio

from ...runtime.files import file_search, fs_ops
from ...runtime.kernel.errors import MailboxClosed
from ...runtime.protocol.jsonrpc import ErrorResponse, JsonRpcError, RequestId, Response, internal_error, invalid_request
from ...runtime.protocol.v2.fs import (
    FsUnwatchParams,
    FsWatchParams,
    FuzzyFileSearchParams,
    FuzzySessionStartParams,
    FuzzySessionStopParams,
    FuzzySessionUpdateParams,
)
from ..messages.fanout import notification
from ..messages import ConnectionRef

log = logging.getLogger(__name__)

#: Operations queued, and searches running, per connection before the
#: reader waits.
MAX_PENDING = 16
#: Watches and search sessions per connection: each watch holds a thread.
MAX_WATCHES = 32
MAX_SESSIONS = 16
#: Entries a session's walk keeps (about 100 bytes each).
MAX_SESSION_ENTRIES = 2_000_000
#: While a session's walk goes on, how often a query sends the best of
#: what has been walked (the original's first ``sessionUpdated`` came
#: 10-112 ms after the query, then one every 2-40 ms until the walk ended).
SESSION_UPDATE_INTERVAL = 0.05
#: Entries ``fs/readDirectory`` answers at most (one response in memory).
MAX_DIRECTORY_ENTRIES = 100_000
#: How long changes are grouped into one ``fs/changed``, and how often a
#: watch thread looks at its stop flag.
WATCH_DEBOUNCE_MS = 200
WATCH_STEP_MS = 50
#: Watch threads in the whole process: their own limiter, so that watches
#: never take the worker threads the other operations need.
_WATCH_THREADS = trio.CapacityLimiter(256)


class FsRequests:
    """One connection's file requests, watches and search sessions."""

    def __init__(self, conn: ConnectionRef, nursery: trio.Nursery) -> None:
        self.conn = conn
        self.nursery = nursery
        #: One-shot operations, done in the order they came (a write then a
        #: read of the same file, pipelined, reads what was written).
        self.queue, queued = trio.open_memory_channel[tuple[RequestId, Callable[[], dict]]](MAX_PENDING)
        nursery.start_soon(self._work, queued)
        self.pending = trio.Semaphore(MAX_PENDING)
        self.watches: dict[str, threading.Event] = {}
        #: fuzzyFileSearch cancellation tokens: the running search's flag.
        self.tokens: dict[str, threading.Event] = {}
        self.sessions: dict[str, _Session] = {}

    # --- one-shot operations --------------------------------------------

    async def run(self, rid: RequestId, method: str, params: Any) -> None:
        """Queue ``method`` for the connection's worker (the reader waits
        only when :data:`MAX_PENDING` are queued)."""
        op = self._operation(method, params)
        await self.queue.send((rid, op))

    async def _work(self, queued: trio.MemoryReceiveChannel[tuple[RequestId, Callable[[], dict]]]) -> None:
        """Each queued operation in a worker thread, in order."""
        async for rid, op in queued:
            result = await trio.to_thread.run_sync(_guarded, op)
            await self._send(ErrorResponse(rid, result.error) if isinstance(result, ErrorResponse)
                             else Response(rid, result))

    def _operation(self, method: str, params: Any) -> Callable[[], dict]:
        """The blocking call for ``method``; the path checks that need no
        disk are made here, before anything is queued."""
        match method:
            case "fs/readFile":
                path = fs_ops.absolute(params.path)
                return lambda: fs_ops.read_file(path)
            case "fs/writeFile":
                path = fs_ops.absolute(params.path)
                data = fs_ops.decode_data(params.data_base64)
                return lambda: fs_ops.write_file(path, data)
            case "fs/getMetadata":
                path = fs_ops.absolute(params.path)
                return lambda: fs_ops.get_metadata(path)
            case "fs/readDirectory":
                path = fs_ops.absolute(params.path)
                return lambda: fs_ops.read_directory(path, MAX_DIRECTORY_ENTRIES)
            case "fs/createDirectory":
                path = fs_ops.absolute(params.path)
                recursive = params.recursive is not False
                return lambda: fs_ops.create_directory(path, recursive)
            case "fs/remove":
                path = fs_ops.absolute(params.path)
                recursive, force = params.recursive is not False, params.force is not False
                return lambda: fs_ops.remove(path, recursive, force)
            case "fs/copy":
                source = fs_ops.absolute(params.source_path)
                destination = fs_ops.absolute(params.destination_path)
                recursive = params.recursive
                return lambda: fs_ops.copy(source, destination, recursive)
        raise AssertionError(method)

    async def _send(self, msg: Any) -> None:
        try:
            await self.conn.outbox.send(msg)
        except MailboxClosed:
            pass

    # --- fs/watch ----------------------------------------------------------

    async def watch(self, rid: RequestId, params: FsWatchParams) -> None:
        """Answered once the notifier is in place, so a change made after
        the answer is reported."""
        path = fs_ops.absolute(params.path)
        if params.watch_id in self.watches:
            raise invalid_request(f"watchId already exists: {params.watch_id}")
        if len(self.watches) >= MAX_WATCHES:
            raise invalid_request(f"too many fs watches on this connection (at most {MAX_WATCHES}); "
                                  "fs/unwatch some first")
        stop = threading.Event()
        self.watches[params.watch_id] = stop
        try:
            notify = await trio.to_thread.run_sync(_notifier, path)
        except Exception as exc:  # the notifier's own errors: inotify limits, permissions
            self.watches.pop(params.watch_id, None)
            raise internal_error(f"failed to watch {path}: {exc}") from None
        self.nursery.start_soon(self._watch, params.watch_id, notify, stop)
        await self._send(Response(rid, {"path": path}))

    def unwatch(self, params: FsUnwatchParams) -> dict:
        stop = self.watches.pop(params.watch_id, None)
        if stop is not None:
            stop.set()
        return {}

    async def _watch(self, watch_id: str, notify: _Notifier, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                changes = await trio.to_thread.run_sync(
                    notify.rust.watch, WATCH_DEBOUNCE_MS, WATCH_STEP_MS, 0, stop,
                    limiter=_WATCH_THREADS, abandon_on_cancel=True)
                if not isinstance(changes, set):
                    continue
                changed = {p for _, p in changes}
                paths = sorted(changed if notify.only is None else changed & {notify.only})
                if paths and not stop.is_set():
                    await self._send(notification("fs/changed", {"watchId": watch_id, "changedPaths": paths}))
                if notify.deeper(changed):
                    # A missing directory on the way appeared: follow it down.
                    try:
                        notify = await trio.to_thread.run_sync(_notifier, notify.target)
                    except Exception as exc:  # inotify limits: the watch ends, the connection goes on
                        log.warning("fs/watch %s: cannot follow %s: %s", watch_id, notify.target, exc)
                        return
        finally:
            stop.set()  # an abandoned thread returns at its next step

    # --- fuzzyFileSearch -----------------------------------------------------

    async def search(self, rid: RequestId, params: FuzzyFileSearchParams) -> None:
        """The one-shot search; a newer one with the same
        ``cancellationToken`` cancels it (it then answers the best of what
        it had walked, as the original's)."""
        cancelled = threading.Event()
        token = params.cancellation_token
        if token is not None:
            previous = self.tokens.get(token)
            if previous is not None:
                previous.set()
            self.tokens[token] = cancelled
        await self.pending.acquire()

        async def answer() -> None:
            try:
                files = await _search(params.query, params.roots, cancelled)
                await self._send(Response(rid, {"files": files}))
            finally:
                if token is not None and self.tokens.get(token) is cancelled:
                    del self.tokens[token]
                self.pending.release()
        self.nursery.start_soon(answer)

    def session_start(self, params: FuzzySessionStartParams) -> dict:
        """The session walks its roots once, beside the reader, as the
        original's; its queries rank what that walk found."""
        if not params.roots:
            raise internal_error("failed to start fuzzy file search session: "
                                 "at least one search directory is required")
        old = self.sessions.pop(params.session_id, None)
        if old is not None:
            old.stop()
        if len(self.sessions) >= MAX_SESSIONS:
            raise invalid_request(f"too many fuzzy file search sessions on this connection (at most "
                                  f"{MAX_SESSIONS}); stop some first")
        session = self.sessions[params.session_id] = _Session(params.session_id, list(params.roots))
        self.nursery.start_soon(session.index)
        return {}

    def session_update(self, params: FuzzySessionUpdateParams) -> dict:
        session = self.sessions.get(params.session_id)
        if session is None:
            raise invalid_request(f"fuzzy file search session not found: {params.session_id}")
        session.cancel()  # the newer query wins
        session.running = threading.Event()
        self.nursery.start_soon(self._session_search, session, params.query, session.running)
        return {}

    def session_stop(self, params: FuzzySessionStopParams) -> dict:
        session = self.sessions.pop(params.session_id, None)
        if session is not None:
            session.stop()
        return {}

    async def _session_search(self, session: _Session, query: str, cancelled: threading.Event) -> None:
        """As the original's session: while the walk goes on, the query
        ranks what it has found so far and sends ``sessionUpdated`` each
        :data:`SESSION_UPDATE_INTERVAL` with the best yet; once the walk is
        done, the final ranking, then ``sessionCompleted``. A newer query or
        ``sessionStop`` ends it, and nothing more is sent for it."""
        ranker = file_search.Ranker(query)
        ranked = 0
        sid = session.session_id
        try:
            while True:
                walked = session.indexed.is_set()
                upto = len(session.entries)
                if upto > ranked or walked:
                    batch = session.entries[ranked:upto]
                    await trio.to_thread.run_sync(ranker.add, batch, cancelled.is_set, abandon_on_cancel=True)
                    ranked = upto
                    files = await trio.to_thread.run_sync(ranker.results)
                    if session.running is not cancelled or session.stopped.is_set():
                        return
                    await self._send(notification("fuzzyFileSearch/sessionUpdated",
                                                  {"sessionId": sid, "query": query, "files": files}))
                if walked:
                    break
                with trio.move_on_after(SESSION_UPDATE_INTERVAL):
                    await session.indexed.wait()
        except file_search.Cancelled:
            return
        finally:
            cancelled.set()  # an abandoned ranking stops at its next check
        await self._send(notification("fuzzyFileSearch/sessionCompleted", {"sessionId": sid}))


class _Session:
    """A search session: its walked entries, and the flag of the query
    being ranked."""

    def __init__(self, session_id: str, roots: list[str]) -> None:
        self.session_id = session_id
        self.roots = roots
        #: What the walk has found so far: it appends from its worker
        #: thread, queries read the prefix they have not ranked yet.
        self.entries: list[file_search.Entry] = []
        self.indexed = trio.Event()
        self.stopped = threading.Event()
        self.running: threading.Event | None = None

    async def index(self) -> None:
        try:
            await trio.to_thread.run_sync(file_search.index, self.roots, self.stopped.is_set, MAX_SESSION_ENTRIES,
                                          self.entries, abandon_on_cancel=True)
        except file_search.Cancelled:
            pass
        except BaseException:
            self.stopped.set()  # the connection is closing: the abandoned walk stops too
            raise
        finally:
            self.indexed.set()

    def cancel(self) -> None:
        if self.running is not None:
            self.running.set()

    def stop(self) -> None:
        self.stopped.set()
        self.cancel()


async def _search(query: str, roots: list[str], cancelled: threading.Event) -> list[dict]:
    """Search in a worker thread; cancelling the caller stops the walk."""
    try:
        return await trio.to_thread.run_sync(file_search.search, query, roots, cancelled.is_set,
                                             abandon_on_cancel=True)
    except BaseException:
        cancelled.set()
        raise


class _Notifier:
    """A watch's notifier: ``rust`` watches ``anchor`` (non-recursively),
    reporting every change there when ``only`` is None, else only
    ``only``'s."""

    def __init__(self, target: str, anchor: str, only: str | None) -> None:
        self.target, self.anchor, self.only = target, anchor, only
        from watchfiles._rust_notify import RustNotify  # loaded by the first watch, off start-up

        self.rust = RustNotify([anchor], False, False, 0, False, True)

    def deeper(self, changed: set[str]) -> bool:
        """Whether a change made the next directory towards the target."""
        if self.only is None or os.path.dirname(self.only) == self.anchor:
            return False
        return any(self.only.startswith(p + "/") and os.path.isdir(p) for p in changed)


def _notifier(path: str) -> _Notifier:
    """The notifier for ``path``: a directory reports its entries; a file,
    or a path not there yet, is watched through its nearest existing
    directory, keeping its own events only (as the original reports a path
    created after the watch, in a directory created after it too)."""
    if os.path.isdir(path):
        return _Notifier(path, path, None)
    anchor = os.path.dirname(path)
    while not os.path.isdir(anchor):
        anchor = os.path.dirname(anchor)
    return _Notifier(path, anchor, path)


def _guarded(op: Callable[[], dict]) -> dict | ErrorResponse:
    """Run ``op`` in the worker thread; its refusal is returned as an
    error to send (the request id is filled in by the caller). A bug is
    answered as the original answers a failed task, and logged."""
    try:
        return op()
    except JsonRpcError as exc:
        return ErrorResponse(None, exc.error)
    except Exception as exc:
        log.error("filesystem task failed (a bug: please report it)", exc_info=exc)
        return ErrorResponse(None, internal_error(f"filesystem task failed: {exc}").error)
