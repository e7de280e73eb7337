"""The index's SQLite file: its tables, indexes and triggers, how a
:class:`~..rollout.ThreadMeta` becomes a row and back, and the transaction
helpers every write uses.

The file is ``$CODEX_HOME/trio_codex_threads.sqlite``. It is ours: the
original keeps its own ``state_5.sqlite``, whose schema we neither read nor
write, and both rebuild from the same rollouts. A file of another
:data:`SCHEMA_VERSION` is dropped and rebuilt (:func:`create_tables`).
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any, Final

import msgspec

from ..rollout import ThreadMeta, source_kind

INDEX_FILE: Final = "trio_codex_threads.sqlite"
SCHEMA_VERSION: Final = 3
#: Previews longer than this (UTF-8 bytes) are cut in the index: a list row
#: shows the start of the first message; ``thread/read`` has all of it.
PREVIEW_MAX_BYTES: Final = 16 * 1024

COLUMNS: Final = (
    "id", "rollout_path", "created_at", "updated_at", "recency_at", "source", "model_provider", "cwd",
    "cli_version", "originator", "model", "reasoning_effort", "name", "preview", "forked_from_id",
    "agent_nickname", "agent_role", "git_sha", "git_branch", "git_origin_url", "history_mode",
    "tokens_used", "archived", "archived_at",
)
SELECT_COLUMNS: Final = ", ".join(COLUMNS)

SCHEMA: Final = f"""
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
                     for c in (*COLUMNS[1:], "source_kind", "file_size", "file_mtime_ns"))
    return f"""
INSERT INTO threads ({SELECT_COLUMNS}, source_kind, file_size, file_mtime_ns)
VALUES ({", ".join("?" * (len(COLUMNS) + 3))})
ON CONFLICT (id) DO UPDATE SET {sets}
"""


UPSERT: Final = _upsert()
#: A rescanned rollout keeps the git info set by thread/metadata/update,
#: which lives only here (as in the original's state database).
RESCAN_UPSERT: Final = _upsert(keep=("git_sha", "git_branch", "git_origin_url"))


def create_tables(conn: sqlite3.Connection) -> None:
    """Drop every table of the file and create this version's (inside the
    caller's transaction)."""
    for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").fetchall():
        conn.execute(f'DROP TABLE IF EXISTS "{name}"')  # a full-text table drops its shadows
    statement = ""
    for part in SCHEMA.split(";"):
        # A trigger's body holds semicolons: run whole statements only.
        statement += part + ";"
        if sqlite3.complete_statement(statement):
            if statement.strip(" \n;"):
                conn.execute(statement)
            statement = ""
    conn.execute("INSERT INTO index_meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))


_row_encoder = msgspec.json.Encoder()


def cut_preview(text: str) -> str:
    """``text`` cut to :data:`PREVIEW_MAX_BYTES` of UTF-8, on a character boundary."""
    data = text.encode()
    if len(data) <= PREVIEW_MAX_BYTES:
        return text
    return data[:PREVIEW_MAX_BYTES].decode(errors="ignore")


def row_values(meta: ThreadMeta, size: int, mtime_ns: int) -> tuple[Any, ...]:
    """The :data:`UPSERT` parameters of a thread whose rollout has this
    size and modification time (the staleness watermark)."""
    return (
        meta.id, os.path.abspath(meta.rollout_path) if meta.rollout_path else "", meta.created_at, meta.updated_at, meta.recency_at,
        _row_encoder.encode(meta.source).decode(), meta.model_provider, meta.cwd, meta.cli_version,
        meta.originator, meta.model, meta.reasoning_effort, meta.name, cut_preview(meta.preview),
        meta.forked_from_id, meta.agent_nickname, meta.agent_role, meta.git_sha, meta.git_branch,
        meta.git_origin_url, meta.history_mode, meta.tokens_used, int(meta.archived), meta.archived_at,
        source_kind(meta.source), size, mtime_ns,
    )


def meta_from_row(row: sqlite3.Row) -> ThreadMeta:
    """A thread from the :data:`SELECT_COLUMNS` of its row."""
    fields = dict(zip(COLUMNS, row, strict=True))
    fields["source"] = msgspec.json.decode(fields["source"])
    fields["archived"] = bool(fields["archived"])
    return ThreadMeta(**fields)


def file_state(path: str) -> tuple[int, int]:
    """``(size, mtime_ns)`` of a rollout, ``(-1, -1)`` when it is gone."""
    try:
        st = os.stat(path)
    except OSError:
        return -1, -1
    return st.st_size, st.st_mtime_ns


class title_index_deferred:
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


class transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on error) on an
    autocommit connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
