"""The thread listing index: SQLite beside the rollouts, for ``thread/list``.

The rollout files are the truth (:mod:`.rollout`); this index is derived
data that answers ``thread/list`` without opening them. The original rescans
session files when it lists (30-45 s at 49 k threads) and bounds pages by
count only (megabytes for ``limit=20``); here a page is one indexed query,
bounded by count *and* bytes.

Design and rules:

* **One file**, ``$CODEX_HOME/trio_codex_threads.sqlite`` (WAL). It is ours:
  the original keeps its own ``state_5.sqlite``, whose schema we neither read
  nor write, and both rebuild from the same rollouts.
* **Blocking API, off the trio thread.** Every method blocks; call it through
  ``trio.to_thread.run_sync``. Each OS thread gets its own connection (kept
  in a ``threading.local``), so listings from several worker threads run in
  parallel under WAL while writes serialize on SQLite's lock (``busy_timeout``
  5 s). We chose per-thread connections over one dedicated thread because
  trio's worker threads are reused and reads then never queue behind a
  rebuild's write transaction. :meth:`ThreadIndex.close` closes them all.
* **Keyset pagination.** Rows are ordered by ``(sort key, id)``; a cursor is
  the ``(value, id)`` of the row it was cut at, the sort it belongs to, and a
  side (after/before), base64url-encoded JSON. A cursor stays valid while
  rows are added and removed, and never skips or repeats a row that exists
  throughout. ``next_cursor`` continues past a page; ``backwards_cursor``
  fetches the rows just before it (for a newest-first list: newer threads,
  so a client can poll for new ones).
* **Pages bounded by bytes.** A page stops before the row that would take
  the encoded size of its rows past ``max_bytes`` (default 256 KiB), and the
  stored preview is cut to :data:`PREVIEW_MAX_BYTES`, so no page is ever
  megabytes. A page always holds at least one row when one matches, so a
  listing always progresses.
* **Staleness.** The index is rebuilt in full when it is missing, unreadable
  or of another :data:`SCHEMA_VERSION`. Otherwise :meth:`ThreadIndex.sync`
  rescans exactly the rollout files that are new or whose size or
  modification time differ from those recorded when the row was last
  written (a per-file watermark: it also catches files copied in with old
  times and files rewritten in place), drops rows whose file is gone, and
  re-applies names when ``session_index.jsonl`` changed. Scanning reads only
  a file's head and tail (:func:`.rollout.scan_rollout`).
"""

from __future__ import annotations

import base64
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, Literal

import msgspec

from .history import message_texts
from .rollout import (
    SESSION_INDEX_FILE,
    ResponseItem,
    ThreadMeta,
    iter_rollout_files,
    read_rollout,
    read_thread_names,
    scan_rollout,
    source_kind,
)

__all__ = [
    "DEFAULT_LIMIT",
    "DEFAULT_MAX_BYTES",
    "INDEX_FILE",
    "INTERACTIVE_SOURCE_KINDS",
    "MAX_LIMIT",
    "PREVIEW_MAX_BYTES",
    "SCHEMA_VERSION",
    "Page",
    "SyncStats",
    "ThreadIndex",
    "open_index",
]

log = logging.getLogger("trio_codex.thread_index")

INDEX_FILE: Final = "trio_codex_threads.sqlite"
SCHEMA_VERSION: Final = 3
DEFAULT_LIMIT: Final = 25
MAX_LIMIT: Final = 500
DEFAULT_MAX_BYTES: Final = 256 * 1024
#: Previews longer than this (UTF-8 bytes) are cut in the index: a list row
#: shows the start of the first message; ``thread/read`` has all of it.
PREVIEW_MAX_BYTES: Final = 16 * 1024
#: What an empty ``sourceKinds`` means, as in the original: interactive threads.
INTERACTIVE_SOURCE_KINDS: Final = ("cli", "vscode")
_SUB_AGENT_KINDS: Final = ("subAgentReview", "subAgentCompact", "subAgentThreadSpawn", "subAgentOther")

SortKey = Literal["created_at", "updated_at", "recency_at"]
SortDirection = Literal["asc", "desc"]

_COLUMNS: Final = (
    "id", "rollout_path", "created_at", "updated_at", "recency_at", "source", "model_provider", "cwd",
    "cli_version", "originator", "model", "reasoning_effort", "name", "preview", "forked_from_id",
    "agent_nickname", "agent_role", "git_sha", "git_branch", "git_origin_url", "history_mode",
    "tokens_used", "archived", "archived_at",
)
_SELECT: Final = ", ".join(_COLUMNS)

_SCHEMA: Final = f"""
CREATE TABLE threads (
    id TEXT PRIMARY KEY,
    rollout_path TEXT NOT NULL,
    created_at INTEGER NOT NULL,        -- ms since the epoch
    updated_at INTEGER NOT NULL,
    recency_at INTEGER NOT NULL,
    source TEXT NOT NULL,               -- the session source as JSON
    source_kind TEXT NOT NULL,          -- its thread/list sourceKinds value
    model_provider TEXT NOT NULL,
    cwd TEXT NOT NULL,
    cli_version TEXT NOT NULL,
    originator TEXT,
    model TEXT,
    reasoning_effort TEXT,
    name TEXT,
    preview TEXT NOT NULL,              -- first user message, cut to {PREVIEW_MAX_BYTES} bytes
    forked_from_id TEXT,
    agent_nickname TEXT,
    agent_role TEXT,
    git_sha TEXT,
    git_branch TEXT,
    git_origin_url TEXT,
    history_mode TEXT,
    tokens_used INTEGER NOT NULL DEFAULT 0,
    archived INTEGER NOT NULL DEFAULT 0,
    archived_at INTEGER,
    file_size INTEGER NOT NULL DEFAULT -1,     -- the rollout as last scanned or upserted,
    file_mtime_ns INTEGER NOT NULL DEFAULT -1  -- for staleness
);
CREATE INDEX threads_created ON threads (archived, created_at, id);
CREATE INDEX threads_updated ON threads (archived, updated_at, id);
CREATE INDEX threads_recency ON threads (archived, recency_at, id);
CREATE INDEX threads_cwd_created ON threads (archived, cwd, created_at, id);
CREATE INDEX threads_cwd_updated ON threads (archived, cwd, updated_at, id);
CREATE INDEX threads_cwd_recency ON threads (archived, cwd, recency_at, id);
CREATE INDEX threads_path ON threads (rollout_path);
CREATE TABLE index_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- thread/search: the text of each user and assistant message, trigram
-- tokens (case-insensitive substring matches from 3 characters on).
CREATE VIRTUAL TABLE thread_text USING fts5(thread_id UNINDEXED, text, tokenize = 'trigram');
-- thread/list searchTerm: each row's name and preview in trigram tokens
-- (external content: the index only, no second copy of the text; no
-- positions: it is asked for single trigrams). The triggers keep it in step
-- row by row, except inside a bulk write (index_meta 'title_index_deferred'),
-- which rebuilds it whole at the end: ten times cheaper for many rows.
CREATE VIRTUAL TABLE thread_title USING fts5(name, preview, content = 'threads', content_rowid = 'rowid',
                                             detail = 'none', tokenize = 'trigram');
CREATE TRIGGER threads_title_insert AFTER INSERT ON threads
WHEN NOT EXISTS (SELECT 1 FROM index_meta WHERE key = 'title_index_deferred') BEGIN
    INSERT INTO thread_title (rowid, name, preview) VALUES (new.rowid, new.name, new.preview);
END;
CREATE TRIGGER threads_title_delete AFTER DELETE ON threads
WHEN NOT EXISTS (SELECT 1 FROM index_meta WHERE key = 'title_index_deferred') BEGIN
    INSERT INTO thread_title (thread_title, rowid, name, preview) VALUES ('delete', old.rowid, old.name, old.preview);
END;
CREATE TRIGGER threads_title_update AFTER UPDATE OF name, preview ON threads
WHEN (old.name IS NOT new.name OR old.preview IS NOT new.preview)
     AND NOT EXISTS (SELECT 1 FROM index_meta WHERE key = 'title_index_deferred') BEGIN
    INSERT INTO thread_title (thread_title, rowid, name, preview) VALUES ('delete', old.rowid, old.name, old.preview);
    INSERT INTO thread_title (rowid, name, preview) VALUES (new.rowid, new.name, new.preview);
END;
"""

def _upsert(keep: tuple[str, ...] = ()) -> str:
    """Insert or update a row; the ``keep`` columns keep their value where
    the new row has none."""
    sets = ", ".join(f"{c} = COALESCE(excluded.{c}, {c})" if c in keep else f"{c} = excluded.{c}"
                     for c in (*_COLUMNS[1:], "source_kind", "file_size", "file_mtime_ns"))
    return f"""
INSERT INTO threads ({_SELECT}, source_kind, file_size, file_mtime_ns)
VALUES ({", ".join("?" * (len(_COLUMNS) + 3))})
ON CONFLICT (id) DO UPDATE SET {sets}
"""


_UPSERT: Final = _upsert()
#: A rescanned rollout keeps the git info set by thread/metadata/update,
#: which lives only here (as in the original's state database).
_RESCAN_UPSERT: Final = _upsert(keep=("git_sha", "git_branch", "git_origin_url"))


#: SQLite virtual-machine steps between two checks of a search's stop flag.
_STOP_CHECK_STEPS: Final = 10_000


class Stopped(Exception):
    """A query inside :meth:`ThreadIndex.stoppable` was told to stop."""


class Page(msgspec.Struct):
    rows: list[ThreadMeta]
    #: Continues after the last row; None when this is the last page.
    next_cursor: str | None = None
    #: Fetches the rows just before the first row (for newest-first lists,
    #: threads newer than this page).
    backwards_cursor: str | None = None


class SyncStats(msgspec.Struct):
    """What :meth:`ThreadIndex.sync` did."""

    full: bool
    files: int
    scanned: int
    removed: int
    seconds: float


class _Cursor(msgspec.Struct, array_like=True):
    sort_key: str
    direction: str
    value: int
    id: str
    before: bool


_cursor_encoder = msgspec.json.Encoder()
_cursor_decoder = msgspec.json.Decoder(_Cursor)
_row_encoder = msgspec.json.Encoder()


def _encode_cursor(c: _Cursor) -> str:
    return base64.urlsafe_b64encode(_cursor_encoder.encode(c)).rstrip(b"=").decode()


def _decode_cursor(text: str) -> _Cursor:
    try:
        return _cursor_decoder.decode(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, msgspec.DecodeError):
        raise ValueError(f"invalid cursor {text!r}: pass a cursor from a previous thread/list page, "
                         "or none to start from the first page") from None


def cut_preview(text: str) -> str:
    data = text.encode()
    if len(data) <= PREVIEW_MAX_BYTES:
        return text
    return data[:PREVIEW_MAX_BYTES].decode(errors="ignore")


#: searchTerm goes through the trigram index when one of its trigrams is
#: held by at most this many rows (each is then looked up and checked).
RARE_TRIGRAM_ROWS: Final = 4096
#: The first pass over the term's trigrams looks for one this rare.
FIRST_PROBE_ROWS: Final = 256
#: How many of a long search term's trigrams are weighed.
MAX_TRIGRAMS: Final = 32
#: A snippet shows this many characters of a long message, around the match.
SNIPPET_CHARS: Final = 200


def _text_match(term: str) -> tuple[str, str]:
    """The ``thread_text`` condition for a substring: a phrase query on the
    trigram index from 3 characters on, a LIKE scan below that."""
    if len(term) >= 3:
        return "thread_text MATCH ?", _phrase(term)
    return "text LIKE ? ESCAPE '\\'", like_pattern(term)


def _phrase(term: str) -> str:
    """An FTS5 phrase query for ``term`` as a substring (trigram tokens)."""
    return '"' + term.replace('"', '""') + '"'



def snippet(text: str, term: str) -> str:
    """The message, or for a long one the part around the first match."""
    if len(text) <= SNIPPET_CHARS:
        return text
    at = max(0, text.lower().find(term.lower()) - SNIPPET_CHARS // 4)
    return text[at:at + SNIPPET_CHARS]


def _row_values(meta: ThreadMeta, size: int, mtime_ns: int) -> tuple[Any, ...]:
    return (
        meta.id, os.path.abspath(meta.rollout_path) if meta.rollout_path else "", meta.created_at, meta.updated_at, meta.recency_at,
        _row_encoder.encode(meta.source).decode(), meta.model_provider, meta.cwd, meta.cli_version,
        meta.originator, meta.model, meta.reasoning_effort, meta.name, cut_preview(meta.preview),
        meta.forked_from_id, meta.agent_nickname, meta.agent_role, meta.git_sha, meta.git_branch,
        meta.git_origin_url, meta.history_mode, meta.tokens_used, int(meta.archived), meta.archived_at,
        source_kind(meta.source), size, mtime_ns,
    )


def rollout_message_texts(path: str) -> list[str]:
    """The user and assistant message texts of a rollout file (its whole
    history, read once when the file is indexed)."""
    lines = read_rollout(path).lines
    return message_texts(line.payload.raw for line in lines if isinstance(line.payload, ResponseItem))


def _meta_from_row(row: sqlite3.Row) -> ThreadMeta:
    fields = dict(zip(_COLUMNS, row, strict=True))
    fields["source"] = msgspec.json.decode(fields["source"])
    fields["archived"] = bool(fields["archived"])
    return ThreadMeta(**fields)


def _file_state(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return -1, -1
    return st.st_size, st.st_mtime_ns


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
        with _transaction(conn):
            for (name,) in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").fetchall():
                conn.execute(f'DROP TABLE IF EXISTS "{name}"')  # a full-text table drops its shadows
            statement = ""
            for part in _SCHEMA.split(";"):
                # A trigger's body holds semicolons: run whole statements only.
                statement += part + ";"
                if sqlite3.complete_statement(statement):
                    if statement.strip(" \n;"):
                        conn.execute(statement)
                    statement = ""
            conn.execute("INSERT INTO index_meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
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
        values = _row_values(meta, *_file_state(meta.rollout_path))
        if not texts:
            conn.execute(_UPSERT, values)
            return
        with _transaction(conn):
            conn.execute(_UPSERT, values)
            conn.executemany("INSERT INTO thread_text (thread_id, text) VALUES (?, ?)",
                             ((meta.id, text) for text in texts))

    def upsert_many(self, metas: Iterable[ThreadMeta]) -> None:
        """:meth:`upsert` in one transaction (the title index rebuilt once)."""
        conn = self._connect()
        values = [_row_values(m, *_file_state(m.rollout_path)) for m in metas]
        with _transaction(conn), _title_index_deferred(conn, len(values) > BULK_ROWS):
            conn.executemany(_UPSERT, values)

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
                         (*_file_state(rollout_path), thread_id))
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
        with _transaction(conn):
            conn.execute("DELETE FROM thread_text WHERE thread_id = ?", (thread_id,))
            return conn.execute("DELETE FROM threads WHERE id = ?", (thread_id,)).rowcount > 0

    def add_texts(self, thread_id: str, texts: Sequence[str]) -> None:
        """Index more message text of a thread (a turn's, as it ends)."""
        if texts:
            conn = self._connect()
            with _transaction(conn):
                conn.executemany("INSERT INTO thread_text (thread_id, text) VALUES (?, ?)",
                                 ((thread_id, text) for text in texts))

    def snippets(self, thread_ids: Sequence[str], term: str) -> dict[str, str]:
        """For each thread, the first of its messages that holds ``term``
        (the ``snippet`` of a search result)."""
        match, arg = _text_match(term)
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
        row = self._connect().execute(f"SELECT {_SELECT} FROM threads WHERE id = ?", (thread_id,)).fetchone()
        return None if row is None else _meta_from_row(row)

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
        :data:`INTERACTIVE_SOURCE_KINDS`; ``"subAgent"`` means every sub-agent
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
                              candidates=self._rare_trigram_rows(search_term) if search_term else None)
        if query is None:
            return Page([])
        if full_text:
            match, arg = _text_match(full_text)
            query.where.append(f"id IN (SELECT thread_id FROM thread_text WHERE {match})")
            query.args.append(arg)
        fetched = self._connect().execute(query.sql(f"SELECT {_SELECT} FROM threads"), query.args).fetchall()
        return query.page([_meta_from_row(row) for row in fetched], max_bytes)

    def _rare_trigram_rows(self, term: str) -> list[int] | None:
        """The rows (rowids) holding the first trigram of ``term`` that at
        most :data:`RARE_TRIGRAM_ROWS` rows hold; each probe reads at most
        that many entries of the index. None when every trigram is common
        (or the term is under 3 characters): then many rows hold each part
        of the term, and a scan in list order finds a page's matches sooner
        than the index would hand over all the rows of one trigram."""
        conn = self._connect()
        grams = list(dict.fromkeys(term[i:i + 3] for i in range(len(term) - 2)))[:MAX_TRIGRAMS]
        # A cheap pass for a very rare trigram first, then the full bound.
        for bound in sorted({min(FIRST_PROBE_ROWS, RARE_TRIGRAM_ROWS), RARE_TRIGRAM_ROWS}):
            for gram in grams:
                (count,) = conn.execute("SELECT count(*) FROM (SELECT 1 FROM thread_title WHERE thread_title MATCH ? "
                                        "LIMIT ?)", (_phrase(gram), bound + 1)).fetchone()
                if count <= bound:
                    return [row for (row,) in conn.execute(
                        "SELECT rowid FROM thread_title WHERE thread_title MATCH ?", (_phrase(gram),))]
        return None

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
        names_state = "%d:%d" % _file_state(str(names_path))
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
            rows.append(_row_values(meta, st.st_size, st.st_mtime_ns))

        gone = [p for p in recorded if p not in seen]
        with _transaction(conn), _title_index_deferred(conn, full or len(rows) + len(gone) > BULK_ROWS):
            if full:
                conn.execute("DELETE FROM threads")
                conn.execute("DELETE FROM thread_text")
            # A rescanned thread's text is read again in full.
            conn.executemany("DELETE FROM thread_text WHERE thread_id = ?", ((r[0],) for r in rows))
            conn.executemany("DELETE FROM thread_text WHERE thread_id IN "
                             "(SELECT id FROM threads WHERE rollout_path = ?)", ((p,) for p in gone))
            conn.executemany(_RESCAN_UPSERT, rows)
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


#: A write of more rows than this (a sync, upsert_many) rebuilds the title
#: index once instead of row by row.
BULK_ROWS: Final = 1000


class _title_index_deferred:
    """Inside a transaction: the triggers leave the title index alone, and
    it is rebuilt from the rows at the end (when ``bulk``)."""

    def __init__(self, conn: sqlite3.Connection, bulk: bool = True) -> None:
        self.conn, self.bulk = conn, bulk

    def __enter__(self) -> None:
        if self.bulk:
            self.conn.execute("INSERT OR REPLACE INTO index_meta VALUES ('title_index_deferred', '1')")

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if self.bulk and exc_type is None:
            self.conn.execute("DELETE FROM index_meta WHERE key = 'title_index_deferred'")
            self.conn.execute("INSERT INTO thread_title (thread_title) VALUES ('rebuild')")


class _transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on error) on an
    autocommit connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")


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


class ListingQuery:
    """One ``thread/list`` page as SQL: the filters, the keyset condition
    and the order, for the SQLite index and for the cluster's PostgreSQL
    listing alike (``placeholder``: ``?`` or ``%s``). Its table has the
    columns ``id, archived, cwd, model_provider, source_kind, name,
    preview`` and the sort keys."""

    def __init__(self, *, placeholder: str, limit: int, sort_key: str, sort_direction: str,
                 anchor: _Cursor | None, cursor: str | None) -> None:
        self.ph = placeholder
        self.limit = limit
        self.sort_key = sort_key
        self.sort_direction = sort_direction
        self.anchor = anchor
        self.cursor = cursor
        self.where: list[str] = []
        self.args: list[Any] = []
        self.backward = anchor is not None and anchor.before
        # Rows come out nearest the anchor first: in display order going
        # forward, in reverse display order going backward.
        self.ascending = (sort_direction == "asc") != self.backward
        #: ``+`` when the order must not drive the plan (see :func:`listing_query`).
        self.plus = ""

    def any_of(self, column: str, values: Sequence[Any]) -> None:
        self.where.append(f"{column} IN ({', '.join([self.ph] * len(values))})")
        self.args += list(values)

    def sql(self, select: str) -> str:
        """``select`` (``SELECT ... FROM table``) with the conditions, the
        order and the limit (one row more than the page, to know if more follow)."""
        order = "ASC" if self.ascending else "DESC"
        return (f"{select} WHERE {' AND '.join(self.where)} "
                f"ORDER BY {self.plus}{self.sort_key} {order}, {self.plus}id {order} LIMIT {self.limit + 1}")

    def page(self, fetched: list[ThreadMeta], max_bytes: int = DEFAULT_MAX_BYTES) -> Page:
        """The page and its cursors from the rows the query fetched."""
        rows: list[ThreadMeta] = []
        used = 0
        for meta in fetched[:self.limit]:
            size = len(_row_encoder.encode(meta))
            if rows and used + size > max_bytes:
                break
            rows.append(meta)
            used += size
        more = len(fetched) > len(rows)
        if self.backward:
            rows.reverse()

        def at(meta: ThreadMeta, before: bool) -> str:
            return _encode_cursor(_Cursor(self.sort_key, self.sort_direction, getattr(meta, self.sort_key),
                                          meta.id, before))

        if not rows:
            # Nothing there (yet): a backwards cursor stays the way to poll.
            return Page([], None, self.cursor if self.backward else None)
        first = at(rows[0], True)
        if self.backward:
            # The anchor row itself lies after this page.
            return Page(rows, at(rows[-1], False), first)
        return Page(rows, at(rows[-1], False) if more else None, first)


def listing_query(*, cursor: str | None = None, limit: int = DEFAULT_LIMIT, sort_key: str = "created_at",
                  sort_direction: str = "desc", archived: bool = False, cwd: str | Sequence[str] | None = None,
                  model_providers: Sequence[str] | None = None, source_kinds: Sequence[str] | None = None,
                  search_term: str | None = None, thread_ids: Sequence[str] | None = None,
                  placeholder: str = "?", candidates: Sequence[int] | None = None) -> ListingQuery | None:
    """The query of one ``thread/list`` page (filters as
    :meth:`ThreadIndex.list_threads`); None when nothing can match.
    ``candidates``: the SQLite rowids that hold one of the search term's
    rare trigrams (a superset of the matches; LIKE still decides).
    Raises ``ValueError`` for a bad argument or a cursor from another sort."""
    if sort_key not in ("created_at", "updated_at", "recency_at"):
        raise ValueError(f"unknown sortKey {sort_key!r}: use created_at, updated_at or recency_at")
    if sort_direction not in ("asc", "desc"):
        raise ValueError(f"unknown sortDirection {sort_direction!r}: use asc or desc")
    anchor = None
    if cursor:
        anchor = _decode_cursor(cursor)
        if (anchor.sort_key, anchor.direction) != (sort_key, sort_direction):
            raise ValueError(
                f"this cursor belongs to a listing sorted by {anchor.sort_key} {anchor.direction}, "
                f"not {sort_key} {sort_direction}: keep the sort, or start again without a cursor")
    q = ListingQuery(placeholder=placeholder, limit=max(1, min(int(limit), MAX_LIMIT)), sort_key=sort_key,
                     sort_direction=sort_direction, anchor=anchor, cursor=cursor)
    if candidates is not None:
        # A search with a rare trigram starts from the few rows that hold it
        # (a unary + keeps SQLite from walking an index of every row instead).
        q.plus = "+"
    q.where.append(f"{q.plus}archived = {q.ph}")
    q.args.append(archived if placeholder != "?" else int(archived))
    if cwd is not None:
        paths = [cwd] if isinstance(cwd, str) else list(cwd)
        if not paths:
            return None
        q.any_of("cwd", paths)
    if thread_ids is not None:
        if not thread_ids:
            return None
        q.any_of("id", thread_ids)
    if model_providers:
        q.any_of("model_provider", model_providers)
    kinds: list[str] = []
    for kind in source_kinds or INTERACTIVE_SOURCE_KINDS:
        kinds += _SUB_AGENT_KINDS if kind == "subAgent" else [kind]
    q.any_of("source_kind", kinds)
    if search_term:
        if candidates is not None:
            q.any_of("rowid", candidates)
        pattern = like_pattern(search_term)
        like = "LIKE" if placeholder == "?" else "ILIKE"  # SQLite's LIKE ignores ASCII case already
        q.where.append(f"(name {like} {q.ph} ESCAPE '\\' OR preview {like} {q.ph} ESCAPE '\\')")
        q.args += [pattern, pattern]
    if anchor is not None:
        q.where.append(f"({sort_key}, id) {'>' if q.ascending else '<'} ({q.ph}, {q.ph})")
        q.args += [anchor.value, anchor.id]
    return q


def like_pattern(term: str) -> str:
    """``term`` as a LIKE pattern that matches it anywhere, literally."""
    return "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
