"""The ThreadStore in PostgreSQL (scale-out.md §4.6), through psycopg 3's
blocking API in trio worker threads, with a connection pool.

Tables: ``codex_threads`` (one row per thread: the epoch, the last item
sequence number, name, archive flag and git info) and
``codex_rollout_items`` (``(thread_id, seq)`` primary key, the rollout
line as text, so an export is byte for byte what was appended). An append
moves ``last_seq`` in the same transaction, guarded by ``epoch = $e``: a
node that lost the thread (its claim taken over at a later epoch) finds no
row to update and is refused, however late it wakes up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg
import psycopg.types.json
import psycopg_pool
import trio

from .ports import Fenced

T = TypeVar("T")

SCHEMA = """
create table if not exists codex_threads (
    id text primary key,
    epoch bigint not null default 0,
    last_seq bigint not null default 0,
    updated_at timestamptz not null default now(),
    name text,
    archived boolean not null default false,
    git jsonb not null default '{}'::jsonb
);
create index if not exists codex_threads_listing on codex_threads (archived, updated_at desc, id desc);
create table if not exists codex_rollout_items (
    thread_id text not null,
    seq bigint not null,
    epoch bigint not null,
    item text not null,
    primary key (thread_id, seq)
);
"""

#: Connections the pool keeps; every store call holds one for its statement.
POOL_SIZE = 4


class PgThreadStore:
    def __init__(self, pool: psycopg_pool.ConnectionPool) -> None:
        self.pool = pool

    async def _run(self, fn: Callable[[psycopg.Connection], T]) -> T:
        def work() -> T:
            with self.pool.connection() as conn:
                return fn(conn)
        return await trio.to_thread.run_sync(work)

    async def activate(self, thread_id: str, epoch: int) -> int:
        def work(conn: psycopg.Connection) -> int:
            row = conn.execute(
                "insert into codex_threads (id, epoch) values (%s, %s) on conflict (id) do update "
                "set epoch = excluded.epoch where codex_threads.epoch <= excluded.epoch returning last_seq",
                (thread_id, epoch)).fetchone()
            if row is None:
                current = conn.execute("select epoch from codex_threads where id = %s", (thread_id,)).fetchone()
                raise Fenced(thread_id, epoch, current[0] if current else None)
            return int(row[0]) + 1
        return await self._run(work)

    async def append_items(self, thread_id: str, epoch: int, items: Sequence[bytes]) -> int:
        def work(conn: psycopg.Connection) -> int:
            with conn.transaction():
                row = conn.execute(
                    "update codex_threads set last_seq = last_seq + %s, updated_at = now() "
                    "where id = %s and epoch = %s returning last_seq", (len(items), thread_id, epoch)).fetchone()
                if row is None:
                    current = conn.execute("select epoch from codex_threads where id = %s", (thread_id,)).fetchone()
                    raise Fenced(thread_id, epoch, current[0] if current else None)
                last = int(row[0])
                first = last - len(items) + 1
                with conn.cursor() as cur:
                    cur.executemany(
                        "insert into codex_rollout_items (thread_id, seq, epoch, item) values (%s, %s, %s, %s)",
                        [(thread_id, first + i, epoch, item.decode()) for i, item in enumerate(items)])
                return last
        return await self._run(work)

    async def load_history(self, thread_id: str) -> list[bytes]:
        def work(conn: psycopg.Connection) -> list[bytes]:
            rows = conn.execute("select item from codex_rollout_items where thread_id = %s order by seq",
                                (thread_id,)).fetchall()
            return [r[0].encode() for r in rows]
        return await self._run(work)

    async def read_thread(self, thread_id: str) -> dict[str, Any] | None:
        def work(conn: psycopg.Connection) -> dict[str, Any] | None:
            row = conn.execute("select id, epoch, last_seq, name, archived, git from codex_threads where id = %s",
                               (thread_id,)).fetchone()
            if row is None:
                return None
            return dict(zip(("id", "epoch", "last_seq", "name", "archived", "git"), row))
        return await self._run(work)

    async def _set(self, thread_id: str, sql: str, value: Any) -> bool:
        def work(conn: psycopg.Connection) -> bool:
            return conn.execute(sql, (value, thread_id)).rowcount == 1
        return await self._run(work)

    async def set_name(self, thread_id: str, name: str | None) -> bool:
        return await self._set(thread_id, "update codex_threads set name = %s where id = %s", name)

    async def archive(self, thread_id: str, archived: bool) -> bool:
        return await self._set(thread_id, "update codex_threads set archived = %s where id = %s", archived)

    async def update_git(self, thread_id: str, patch: dict[str, str | None]) -> bool:
        return await self._set(thread_id, "update codex_threads set git = git || %s where id = %s",
                               psycopg.types.json.Jsonb(patch))


async def open_pg_store(dsn: str) -> tuple[PgThreadStore, psycopg_pool.ConnectionPool]:
    """Open the pool and make the tables; the caller closes the pool."""
    def start() -> psycopg_pool.ConnectionPool:
        pool = psycopg_pool.ConnectionPool(dsn, min_size=1, max_size=POOL_SIZE, open=False,
                                           kwargs={"autocommit": True})
        pool.open(wait=True, timeout=10)
        with pool.connection() as conn, conn.transaction():
            # Nodes starting together must not race to create the tables.
            conn.execute("select pg_advisory_xact_lock(7391)")
            conn.execute(SCHEMA)
        return pool
    try:
        pool = await trio.to_thread.run_sync(start)
    except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
        raise SystemExit(f"trio-codex: cannot use the store at {dsn}: {exc}") from None
    return PgThreadStore(pool), pool
