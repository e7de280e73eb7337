"""The index itself: :class:`ThreadIndex`, one SQLite file of thread rows
and their text, kept in step with the rollouts (:meth:`ThreadIndex.sync`),
and :func:`open_index`.

* **Blocking API, off the trio thread.** Every method blocks; call it through
  ``trio.to_thread.run_sync``. Each OS thread gets its own connection (kept
  in a ``threading.local``), so listings from several worker threads run in
  parallel under WAL while writes serialize on SQLite's lock (``busy_timeout``
  5 s). We chose per-thread connections over one dedicated thread because
  trio's worker threads are reused and reads then never queue behind a
  rebuild's write transaction. :meth:`ThreadIndex.close` closes them all.
* **Staleness.** The index is rebuilt in full when it is missing, unreadable
  or of another :data:`~.schema.SCHEMA_VERSION`. Otherwise
  :meth:`ThreadIndex.sync` rescans exactly the rollout files that are new or
  whose size or modification time differ from those recorded when the row
  was last written (a per-file watermark: it also catches files copied in
  with old times and files rewritten in place), drops rows whose file is
  gone, and re-applies names when ``session_index.jsonl`` changed. Scanning
  reads only a file's head and tail (:func:`..rollout.scan_rollout`).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import msgspec

from ..rollout import SESSION_INDEX_FILE, ThreadMeta, iter_rollout_files, read_thread_names, scan_rollout
from .listing import DEFAULT_LIMIT, DEFAULT_MAX_BYTES, Page, SortDirection, SortKey, listing_query
from .schema import (
    INDEX_FILE,
    RESCAN_UPSERT,
    SCHEMA_VERSION,
    SELECT_COLUMNS,
    UPSERT,
    create_tables,
    file_state,
    meta_from_row,
    row_values,
    title_index_deferred,
    transaction,
)
from .search import rare_trigram_rows, rollout_message_texts, snippet, text_match

log = logging.getLogger("trio_codex.thread_index")

#: SQLite virtual-machine steps between two checks of a search's stop flag.
_STOP_CHECK_STEPS: Final = 10_000


class Stopped(Exception):
    """A query inside :meth:`ThreadIndex.stoppable` was told to stop."""


class SyncStats(msgspec.Struct):
    """What :meth:`ThreadIndex.sync` did."""

    full: bool
    files: int
    scanned: int
    removed: int
    seconds: float


#: A write of more rows than this (a sync, upsert_many) rebuilds the title
#: index once instead of row by row.
BULK_ROWS: Final = 1000


class ThreadIndex:
    """The index in one SQLite file. See the module docstring for the rules."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._closed = False
        #: True when opening found no usable index: the next :meth:`sync`
        #: scans every rollout.
        self.needs_full_rebuild = self._prepare()

    # -- connections -------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        with self._lock:
            if self._closed:
                raise RuntimeError(f"the thread index {self.path} is closed")
            conn = sqlite3.connect(self.path, timeout=5.0, isolation_level=None, check_same_thread=False)
            self._connections.append(conn)
        conn.execute("PRAGMA journal_mode = WAL")
        # Derived data: losing the last transactions in a power cut costs a
        # rescan of the files they described, nothing more.
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA temp_store = MEMORY")
        self._local.conn = conn
        return conn

    def close(self) -> None:
        """Close every connection (from any thread, once no call is running)."""
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()

    @contextmanager
    def stoppable(self, stop: Callable[[], bool]) -> Iterator[None]:
        """Queries of this thread inside the block end early with
        :class:`Stopped` once ``stop()`` is true (checked every few thousand
        SQLite steps), so a cancelled search over a big index stops."""
        conn = self._connect()
        conn.set_progress_handler(lambda: 1 if stop() else 0, _STOP_CHECK_STEPS)
        try:
            yield
        except sqlite3.OperationalError as exc:
            if stop():
                raise Stopped() from exc
            raise
        finally:
            conn.set_progress_handler(None, 0)
        if stop():
            raise Stopped()

    def __enter__(self) -> ThreadIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _prepare(self) -> bool:
        """Create the schema if needed; start over on another version or a
        damaged file. Returns whether the rows must be rebuilt."""
        try:
            conn = self._connect()
            version = self._meta_value(conn, "schema_version")
        except sqlite3.DatabaseError as exc:
            log.warning("thread index %s is unreadable (%s); rebuilding it", self.path, exc)
            self.close()
            for suffix in ("", "-wal", "-shm"):
                Path(self.path + suffix).unlink(missing_ok=True)
            self._local = threading.local()
            self._closed = False
            conn = self._connect()
            version = None
        if version == str(SCHEMA_VERSION):
            return False
        if version is not None:
            log.info("thread index %s has schema %s, not %s; rebuilding it", self.path, version, SCHEMA_VERSION)
        with transaction(conn):
            create_tables(conn)
        return True

    @staticmethod
    def _meta_value(conn: sqlite3.Connection, key: str) -> str | None:
        try:
            row = conn.execute("SELECT value FROM index_meta WHERE key = ?", (key,)).fetchone()
        except sqlite3.OperationalError:  # no such table: a new file
            return None
        return None if row is None else row[0]

    # -- writes ------------------------------------------------------------

    def upsert(self, meta: ThreadMeta, texts: Sequence[str] = ()) -> None:
        """Insert or replace a thread's row, once its rollout exists (rollouts
        are created lazily, and :meth:`sync` drops rows whose file is gone),
        and index ``texts`` (:meth:`add_texts`) in the same transaction: a
        turn's end is one commit. The file's current size and modification
        time are recorded with the row, so :meth:`sync` does not rescan a
        file its writer has just described."""
        conn = self._connect()
        values = row_values(meta, *file_state(meta.rollout_path))
        if not texts:
            conn.execute(UPSERT, values)
            return
        with transaction(conn):
            conn.execute(UPSERT, values)
            conn.executemany("INSERT INTO thread_text (thread_id, text) VALUES (?, ?)",
                             ((meta.id, text) for text in texts))

    def upsert_many(self, metas: Iterable[ThreadMeta]) -> None:
        """:meth:`upsert` in one transaction (the title index rebuilt once)."""
        conn = self._connect()
        values = [row_values(m, *file_state(m.rollout_path)) for m in metas]
        with transaction(conn), title_index_deferred(conn, len(values) > BULK_ROWS):
            conn.executemany(UPSERT, values)

    def mark_archived(self, thread_id: str, archived: bool, *, rollout_path: str | None = None,
                      at_ms: int | None = None) -> bool:
        """Set a thread's archived flag (and the rollout's new place, since
        archiving moves the file). Returns False if the id is unknown."""
        conn = self._connect()
        at = (at_ms if at_ms is not None else time.time_ns() // 1_000_000) if archived else None
        cur = conn.execute(
            "UPDATE threads SET archived = ?, archived_at = ?, rollout_path = COALESCE(?, rollout_path) "
            "WHERE id = ?", (int(archived), at, rollout_path, thread_id))
        if cur.rowcount and rollout_path is not None:
            conn.execute("UPDATE threads SET file_size = ?, file_mtime_ns = ? WHERE id = ?",
                         (*file_state(rollout_path), thread_id))
        return cur.rowcount > 0

    def update_git(self, thread_id: str, patch: dict[str, str | None]) -> ThreadMeta | None:
        """Set some of a thread's git columns (``git_sha``, ``git_branch``,
        ``git_origin_url``; None clears one); the updated row, or None if
        the id is unknown."""
        columns = [c for c in ("git_sha", "git_branch", "git_origin_url") if c in patch]
        if columns:
            self._connect().execute(
                f"UPDATE threads SET {', '.join(f'{c} = ?' for c in columns)} WHERE id = ?",
                (*(patch[c] for c in columns), thread_id))
        return self.get(thread_id)

    def set_name(self, thread_id: str, name: str | None) -> bool:
        """Record a thread's new name. Returns False if the id is unknown."""
        return self._connect().execute("UPDATE threads SET name = ? WHERE id = ?", (name, thread_id)).rowcount > 0

    def delete(self, thread_id: str) -> bool:
        """Forget a thread. Returns False if the id is unknown."""
        conn = self._connect()
        with transaction(conn):
            conn.execute("DELETE FROM thread_text WHERE thread_id = ?", (thread_id,))
            return conn.execute("DELETE FROM threads WHERE id = ?", (thread_id,)).rowcount > 0

    def add_texts(self, thread_id: str, texts: Sequence[str]) -> None:
        """Index more message text of a thread (a turn's, as it ends)."""
        if texts:
            conn = self._connect()
            with transaction(conn):
                conn.executemany("INSERT INTO thread_text (thread_id, text) VALUES (?, ?)",
                                 ((thread_id, text) for text in texts))

    def snippets(self, thread_ids: Sequence[str], term: str) -> dict[str, str]:
        """For each thread, the first of its messages that holds ``term``
        (the ``snippet`` of a search result)."""
        match, arg = text_match(term)
        out: dict[str, str] = {}
        conn = self._connect()
        for tid in thread_ids:
            row = conn.execute(f"SELECT text FROM thread_text WHERE thread_id = ? AND {match} ORDER BY rowid LIMIT 1",
                               (tid, arg)).fetchone()
            if row is not None:
                out[tid] = snippet(row[0], term)
        return out

    # -- reads -------------------------------------------------------------

    def get(self, thread_id: str) -> ThreadMeta | None:
        """A thread's row, or None if the id is unknown."""
        row = self._connect().execute(f"SELECT {SELECT_COLUMNS} FROM threads WHERE id = ?", (thread_id,)).fetchone()
        return None if row is None else meta_from_row(row)

    def count(self, *, archived: bool | None = None) -> int:
        """How many threads the index holds (all, or archived or not)."""
        if archived is None:
            return self._connect().execute("SELECT count(*) FROM threads").fetchone()[0]
        return self._connect().execute("SELECT count(*) FROM threads WHERE archived = ?", (int(archived),)).fetchone()[0]

    def list_threads(
        self,
        *,
        cursor: str | None = None,
        limit: int = DEFAULT_LIMIT,
        sort_key: SortKey = "created_at",
        sort_direction: SortDirection = "desc",
        archived: bool = False,
        cwd: str | Sequence[str] | None = None,
        model_providers: Sequence[str] | None = None,
        source_kinds: Sequence[str] | None = None,
        search_term: str | None = None,
        full_text: str | None = None,
        thread_ids: Sequence[str] | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> Page:
        """One page of ``thread/list``.

        Filters combine with AND: ``cwd`` (exact path, or any of a list),
        ``model_providers`` and ``source_kinds`` (any of; None or empty means
        all providers, and the interactive sources
        :data:`~.listing.INTERACTIVE_SOURCE_KINDS`; ``"subAgent"`` means every sub-agent
        kind), ``search_term`` (case-insensitive substring of the name or the
        preview), ``full_text`` (``thread/search``: a case-insensitive
        substring of one of its messages, through the full-text index),
        ``thread_ids`` (0.171's ``includedThreadIds``: only these; empty
        matches nothing). Raises ``ValueError`` for a bad argument or a
        cursor from another sort.
        """
        query = listing_query(cursor=cursor, limit=limit, sort_key=sort_key, sort_direction=sort_direction,
                              archived=archived, cwd=cwd, model_providers=model_providers, source_kinds=source_kinds,
                              search_term=search_term, thread_ids=thread_ids,
                              candidates=rare_trigram_rows(self._connect(), search_term) if search_term else None)
        if query is None:
            return Page([])
        if full_text:
            match, arg = text_match(full_text)
            query.where.append(f"id IN (SELECT thread_id FROM thread_text WHERE {match})")
            query.args.append(arg)
        fetched = self._connect().execute(query.sql(f"SELECT {SELECT_COLUMNS} FROM threads"), query.args).fetchall()
        return query.page([meta_from_row(row) for row in fetched], max_bytes)

    # -- rebuilding from the rollouts ---------------------------------------

    def sync(self, codex_home: str | os.PathLike[str], *, full: bool = False) -> SyncStats:
        """Bring the index in step with the rollout files under
        ``codex_home``: every file when ``full`` or :attr:`needs_full_rebuild`,
        otherwise only the stale ones (module docstring, "Staleness")."""
        t0 = time.perf_counter()
        codex_home = os.path.abspath(codex_home)
        full = full or self.needs_full_rebuild
        conn = self._connect()
        recorded: dict[str, tuple[int, int]] = {}
        if not full:
            recorded = {path: (size, mtime) for path, size, mtime in
                        conn.execute("SELECT rollout_path, file_size, file_mtime_ns FROM threads")}
        names_path = Path(codex_home) / SESSION_INDEX_FILE
        names_state = "%d:%d" % file_state(str(names_path))
        names_changed = self._meta_value(conn, "session_index_state") != names_state
        names = read_thread_names(codex_home)

        seen: set[str] = set()
        stale: list[tuple[str, bool, os.stat_result]] = []
        for entry, archived in iter_rollout_files(codex_home):
            st = entry.stat()
            seen.add(entry.path)
            if recorded.get(entry.path) != (st.st_size, st.st_mtime_ns):
                stale.append((entry.path, archived, st))

        rows = []
        texts: list[tuple[str, str]] = []
        for path, archived, st in stale:
            try:
                meta = scan_rollout(path, archived=archived, stat=st)
                if meta is not None:
                    texts += ((meta.id, text) for text in rollout_message_texts(path))
            except OSError as exc:
                log.warning("thread index: cannot read %s (%s); skipped", path, exc)
                continue
            if meta is None:
                log.warning("thread index: %s has no session_meta line; skipped", path)
                continue
            if meta.id in names:
                meta.name = names[meta.id]
            rows.append(row_values(meta, st.st_size, st.st_mtime_ns))

        gone = [p for p in recorded if p not in seen]
        with transaction(conn), title_index_deferred(conn, full or len(rows) + len(gone) > BULK_ROWS):
            if full:
                conn.execute("DELETE FROM threads")
                conn.execute("DELETE FROM thread_text")
            # A rescanned thread's text is read again in full.
            conn.executemany("DELETE FROM thread_text WHERE thread_id = ?", ((r[0],) for r in rows))
            conn.executemany("DELETE FROM thread_text WHERE thread_id IN "
                             "(SELECT id FROM threads WHERE rollout_path = ?)", ((p,) for p in gone))
            conn.executemany(RESCAN_UPSERT, rows)
            conn.executemany("INSERT INTO thread_text (thread_id, text) VALUES (?, ?)", texts)
            conn.executemany("DELETE FROM threads WHERE rollout_path = ?", ((p,) for p in gone))
            if names_changed and not full:
                conn.executemany("UPDATE threads SET name = ? WHERE id = ?",
                                 ((name, tid) for tid, name in names.items()))
            conn.execute("INSERT OR REPLACE INTO index_meta VALUES ('session_index_state', ?)", (names_state,))
        self.needs_full_rebuild = False
        return SyncStats(full=full, files=len(seen), scanned=len(rows), removed=len(gone),
                         seconds=time.perf_counter() - t0)

    def rebuild_from_rollouts(self, codex_home: str | os.PathLike[str]) -> SyncStats:
        """Drop every row and rescan every rollout file."""
        return self.sync(codex_home, full=True)


def open_index(codex_home: str | os.PathLike[str]) -> ThreadIndex:
    """Open ``$CODEX_HOME/trio_codex_threads.sqlite`` and bring it in step
    with the rollouts (a full rebuild if it was missing or of another
    schema, else a sync of the stale files). Blocking."""
    index = ThreadIndex(Path(codex_home) / INDEX_FILE)
    try:
        stats = index.sync(codex_home)
    except BaseException:
        index.close()
        raise
    log.info("thread index: %d rollouts, %d scanned, %d removed in %.2f s%s", stats.files, stats.scanned,
             stats.removed, stats.seconds, " (full rebuild)" if stats.full else "")
    return index
