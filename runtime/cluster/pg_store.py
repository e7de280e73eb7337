"""The ThreadStore in PostgreSQL (scale-out.md §4.6), through psycopg 3's
blocking API in trio worker threads, with a connection pool.

Tables: ``codex_threads`` (one row per thread: the epoch, the last item
sequence number, name, archive flag and git info) and
``codex_rollout_items`` (``(thread_id, seq)`` primary key, the rollout
line as text, so an export is byte for byte what was appended). An append
moves ``last_seq`` in the same transaction, guarded by ``epoch = $e``: a
node that lost the thread (its claim taken over at a later epoch) finds no
row to update and is refused, however late it wakes up.

``codex_thread_list`` is the cluster's ``thread/list``: one row per thread
with what a listing filters and sorts by, and the whole
:class:`~..rollout.ThreadMeta` as JSON, kept by the owner as its rollout
grows; pages are cut by keyset on ``(sort key, id)``, with the same query
and cursors as the single-process index (:func:`..thread_index.listing_query`).

Searching without ``pg_trgm`` (a PostgreSQL without contrib has none): a
side table of trigrams does what its index does. ``codex_title_grams``
holds each listing row's trigrams of its lowercased name and preview
(kept by a trigger, so every way a row is written keeps it, ``COPY``
included), ``codex_text_grams`` those of each thread's message texts
(``codex_thread_texts``, written with the rollout lines that carry them,
their trigrams added by the next listing put, off the append's path; a
text over :data:`MAX_GRAM_TEXT` characters is checked by every search
instead). A search term of 3 characters or more starts from the threads
holding its rarest trigram (by the table's statistics), when about
:data:`RARE_GRAM_ROWS` threads or fewer hold it (plus
the threads whose texts are not in the trigrams yet); ``ILIKE`` then
decides. When every trigram is common, many threads match, and the scan in
list order finds a page of them sooner (the single-process index's rule).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import msgspec
import psycopg
import psycopg.errors
import psycopg.types.json
import psycopg_pool
import trio

from ..conversation.history import message_texts
from ..persistence.rollout import ResponseItem, ThreadMeta, decode_line, source_kind
from ..persistence.thread_index import Page, cut_preview, like_pattern, listing_query, snippet
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
create table if not exists codex_thread_list (
    id text primary key,
    archived boolean not null default false,
    created_at bigint not null,
    updated_at bigint not null,
    recency_at bigint not null,
    model_provider text not null,
    cwd text not null,
    source_kind text not null,
    name text,
    preview text not null,
    meta jsonb not null
);
create index if not exists codex_thread_list_created on codex_thread_list (archived, created_at, id);
create index if not exists codex_thread_list_updated on codex_thread_list (archived, updated_at, id);
create index if not exists codex_thread_list_recency on codex_thread_list (archived, recency_at, id);
create table if not exists codex_thread_texts (
    thread_id text not null,
    seq bigint not null,
    text text not null,
    gram_indexed boolean not null default false,
    primary key (thread_id, seq)
);
create index if not exists codex_thread_texts_pending on codex_thread_texts (thread_id) where not gram_indexed;
create table if not exists codex_title_grams (gram text not null, thread_id text not null, primary key (gram, thread_id));
create table if not exists codex_text_grams (gram text not null, thread_id text not null, primary key (gram, thread_id));
create or replace function codex_trigrams(t text) returns setof text language sql immutable parallel safe as $$
    select distinct g from (
        select c || lead(c, 1) over w || lead(c, 2) over w as g
        from unnest(string_to_array(lower(t), null)) with ordinality as u(c, i) window w as (order by i)) s
    where g is not null
$$;
create or replace function codex_title_grams_put() returns trigger language plpgsql as $$
begin
    if tg_op = 'UPDATE' then
        if new.name is not distinct from old.name and new.preview = old.preview then
            return null;
        end if;
        delete from codex_title_grams where thread_id = old.id;
    end if;
    insert into codex_title_grams (gram, thread_id)
        select g, new.id from codex_trigrams(coalesce(new.name, '') || chr(10) || new.preview) g
        on conflict do nothing;
    return null;
end $$;
"""
#: Made once, with the trigrams of the rows listed before it existed.
TITLE_TRIGGER = """
create trigger codex_thread_list_grams after insert or update on codex_thread_list
    for each row execute function codex_title_grams_put();
insert into codex_title_grams (gram, thread_id)
    select g, id from codex_thread_list, codex_trigrams(coalesce(name, '') || chr(10) || preview) g
    on conflict do nothing;
"""
#: A search term's trigram narrows the candidates when at most this many
#: threads hold it (each is then checked with ILIKE).
RARE_GRAM_ROWS = 4096
#: A grams table's most common trigrams, most common first, with about
#: how many rows hold each (its statistics, kept by ANALYZE), re-read this
#: often (seconds): what tells a rare trigram (any other) from a common one.
GRAM_STATS_AGE = 60.0
_GRAM_STATS = """
select coalesce(most_common_vals::text::text[], '{}'), coalesce(most_common_freqs, '{}'),
       (select greatest(reltuples, 0) from pg_class where oid = %(table)s::regclass), attname is not null
from (select 1) one left join pg_stats on schemaname = current_schema() and tablename = %(table)s and attname = 'gram'
"""
#: The threads one of whose texts holds the term, among the given ones
#: (holding its rarest trigram) and those whose texts are not in the
#: trigrams yet. Each given thread's texts are read by the primary key,
#: stopping at the first that holds the term: the cost follows the given
#: threads (at most about RARE_GRAM_ROWS), not the table; with ``thread_id
#: = any(...)`` the planner scanned every text with ILIKE (1,111 holders
#: among 100,000 texts: 90 ms against 9 ms, README "Cluster").
_TEXT_MATCHES = """
select h.id from unnest(%s::text[]) h(id) cross join lateral (
    select 1 from codex_thread_texts t where t.thread_id = h.id and t.text ilike %s escape '\\' limit 1) found
union
select thread_id from codex_thread_texts where not gram_indexed and text ilike %s escape '\\'"""
#: The listing rows of a search's candidates (at most a few thousand: a rare
#: trigram's), fetched by id and then sorted: walking the sort key's index
#: and skipping every row not among them passes most of the table when the
#: matches are old ones. ``offset 0`` keeps the planner from merging the two.
_CANDIDATE_ROWS = "(select * from codex_thread_list where id = any(%s) offset 0) codex_thread_list"
#: Longer texts are not split into trigrams (16 KiB takes some 50 ms, and
#: it grows with the length): they stay with the texts every search checks.
MAX_GRAM_TEXT = 16 * 1024
#: The trigrams of a thread's texts not in codex_text_grams yet.
_INDEX_TEXTS = f"""
with fresh as (update codex_thread_texts set gram_indexed = true
               where thread_id = %s and not gram_indexed and length(text) <= {MAX_GRAM_TEXT} returning text)
insert into codex_text_grams (gram, thread_id) select distinct g, %s from fresh, codex_trigrams(fresh.text) g
on conflict do nothing
"""
_LIST_COLUMNS = ("id", "archived", "created_at", "updated_at", "recency_at", "model_provider", "cwd", "source_kind",
                 "name", "preview", "meta")
_meta_encoder = msgspec.json.Encoder()
_meta_decoder = msgspec.json.Decoder(ThreadMeta)

#: Connections the pool keeps; every store call holds one for its statement.
POOL_SIZE = 4
#: Listing queries (thread/list, the searches) running at once, so that the
#: appends, which hold completions back, always find a pool connection.
LISTING_QUERIES = POOL_SIZE // 2
#: How long cancelling a listing query on the server may take.
CANCEL_TIMEOUT = 5.0


class _Stoppable:
    """A listing query the trio side may stop (a cancelled search, a client
    gone): abandoned at once, and cancelled on the server from a worker
    thread, so that it gives its pool connection back without running to
    the end; not started if stopped while it waited for one."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.conn: psycopg.Connection | None = None
        self.stopped = False

    def begin(self, conn: psycopg.Connection) -> None:
        with self.lock:
            if self.stopped:
                raise psycopg.errors.QueryCanceled("stopped before it started")
            self.conn = conn

    def end(self) -> None:
        with self.lock:
            self.conn = None

    def stop(self) -> None:
        with self.lock:
            self.stopped = True
            if self.conn is not None:
                self.conn.cancel_safe(timeout=CANCEL_TIMEOUT)


class PgThreadStore:
    def __init__(self, pool: psycopg_pool.ConnectionPool) -> None:
        self.pool = pool
        #: Grams table -> (when read, its common trigrams -> about how many rows hold each).
        self.gram_stats: dict[str, tuple[float, dict[str, float]]] = {}
        self.listings = trio.CapacityLimiter(LISTING_QUERIES)

    async def _run(self, fn: Callable[[psycopg.Connection], T]) -> T:
        def work() -> T:
            with self.pool.connection() as conn:
                return fn(conn)
        return await trio.to_thread.run_sync(work)

    async def _query(self, fn: Callable[[psycopg.Connection], T]) -> T:
        """Run a listing query, which a trio cancellation stops (:class:`_Stoppable`)."""
        query = _Stoppable()

        def work() -> T:
            with self.pool.connection() as conn:
                query.begin(conn)
                try:
                    return fn(conn)
                finally:
                    query.end()
        try:
            return await trio.to_thread.run_sync(work, abandon_on_cancel=True, limiter=self.listings)
        except trio.Cancelled:
            trio.lowlevel.start_thread_soon(query.stop, lambda _: None)
            raise

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
                    if texts := _texts(items, first):
                        cur.executemany("insert into codex_thread_texts (thread_id, seq, text) values (%s, %s, %s)",
                                        [(thread_id, seq, text) for seq, text in texts])
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

    async def put_listing(self, meta: ThreadMeta) -> None:
        """Add or update the thread's row in the cluster's listing."""
        # The preview as the single-process index keeps it, cut (what searchTerm searches).
        row = (meta.id, meta.archived, meta.created_at, meta.updated_at, meta.recency_at, meta.model_provider,
               meta.cwd, source_kind(meta.source), meta.name, cut_preview(meta.preview),
               _meta_encoder.encode(meta).decode())
        updates = ", ".join(f"{c} = excluded.{c}" for c in _LIST_COLUMNS[1:])
        sql = (f"insert into codex_thread_list ({', '.join(_LIST_COLUMNS)}) values "
               f"({', '.join(['%s'] * (len(_LIST_COLUMNS) - 1))}, %s::jsonb) on conflict (id) do update set {updates}")

        def work(conn: psycopg.Connection) -> None:
            conn.execute(sql, row)
            conn.execute(_INDEX_TEXTS, (meta.id, meta.id))
        await self._run(work)

    async def list_threads(self, *, full_text: str | None = None, **filters: Any) -> Page:
        """One page of the cluster's ``thread/list`` (the filters of
        :func:`~..thread_index.listing_query`; ValueError for a bad one), or
        with ``full_text``, of ``thread/search`` (threads one of whose
        message texts holds it, case-insensitively)."""
        query = listing_query(**filters, placeholder="%s")
        if query is None:
            return Page([])
        title, text = filters.get("search_term"), full_text

        def work(conn: psycopg.Connection) -> list[ThreadMeta]:
            # The candidates are fetched first and given as values: a plan
            # made for a subquery may scan every row with ILIKE instead.
            candidates: set[str] | None = None
            if title and (gram := self._rarest(conn, "codex_title_grams", title)) is not None:
                candidates = {r[0] for r in conn.execute(
                    "select thread_id from codex_title_grams where gram = %s", (gram,))}
            if text:
                pattern = like_pattern(text)
                if (gram := self._rarest(conn, "codex_text_grams", text)) is not None:
                    # The threads one of whose texts holds the term, among those
                    # holding the trigram and those whose texts are not in yet.
                    holders = [r[0] for r in conn.execute(
                        "select thread_id from codex_text_grams where gram = %s", (gram,))]
                    found = {r[0] for r in conn.execute(_TEXT_MATCHES, (holders, pattern, pattern))}
                    candidates = found if candidates is None else candidates & found
                else:
                    query.where.append("exists (select 1 from codex_thread_texts x where x.thread_id = id "
                                       "and x.text ilike %s escape '\\')")
                    query.args.append(pattern)
            if candidates is None:
                sql, args = query.sql("select meta::text from codex_thread_list"), query.args
            else:  # the candidates' placeholder comes first in the text
                sql, args = query.sql(f"select meta::text from {_CANDIDATE_ROWS}"), [list(candidates), *query.args]
            return [_meta_decoder.decode(r[0]) for r in conn.execute(sql, args).fetchall()]
        return query.page(await self._query(work))

    def _rarest(self, conn: psycopg.Connection, table: str, term: str) -> str | None:
        """The term's rarest trigram in ``table``, to start a search from
        the threads holding it; None when all its trigrams are common (or
        it has none): then the scan in list order is left to find a page.
        The trigram is picked in SQL, from the term's trigrams as
        PostgreSQL lowercases them, so that a Python ``lower()`` that
        differs can only make the choice worse, never miss a match; and it
        goes into the query as a value, so that the plan is made for how
        rare it is."""
        common = self._common_grams(conn, table)
        lowered = term.lower()
        grams = {lowered[i:i + 3] for i in range(len(lowered) - 2)}
        if not grams or min(common.get(g, 0.0) for g in grams) > RARE_GRAM_ROWS:
            return None
        rarest = conn.execute("select g from codex_trigrams(%s) g order by array_position(%s::text[], g) desc "
                              "nulls first limit 1", (term, list(common))).fetchone()
        return None if rarest is None else str(rarest[0])

    def _common_grams(self, conn: psycopg.Connection, table: str) -> dict[str, float]:
        """``table``'s most common trigrams (most common first), with about
        how many rows hold each; read again after :data:`GRAM_STATS_AGE`."""
        at, common = self.gram_stats.get(table, (-GRAM_STATS_AGE, {}))
        def read() -> tuple[Any, ...]:
            row = conn.execute(_GRAM_STATS, {"table": table}).fetchone()
            assert row is not None  # always one: the statistics are joined to (select 1)
            return tuple(row)

        if time.monotonic() - at >= GRAM_STATS_AGE:
            vals, freqs, rows, analyzed = read()
            if not analyzed:
                # Never analyzed (a new store, or rows loaded in bulk that
                # autovacuum has not seen yet): without statistics every
                # trigram would look rare. ANALYZE samples, so this is quick.
                conn.execute(f"analyze {table}")
                vals, freqs, rows, analyzed = read()
            common = {val: freq * (rows or 0) for val, freq in zip(vals, freqs)}
            self.gram_stats[table] = (time.monotonic(), common)
        return common

    async def snippets(self, thread_ids: Sequence[str], term: str) -> dict[str, str]:
        """For each thread, the first of its message texts that holds
        ``term`` (a ``thread/search`` result's ``snippet``)."""
        def work(conn: psycopg.Connection) -> dict[str, str]:
            rows = conn.execute(
                "select distinct on (thread_id) thread_id, text from codex_thread_texts "
                "where thread_id = any(%s) and text ilike %s escape '\\' order by thread_id, seq",
                (list(thread_ids), like_pattern(term))).fetchall()
            return {tid: snippet(text, term) for tid, text in rows}
        return await self._query(work) if thread_ids else {}


def _texts(items: Sequence[bytes], first: int) -> list[tuple[int, str]]:
    """The message texts (what ``thread/search`` searches) among rollout
    lines numbered from ``first``."""
    texts = []
    for i, item in enumerate(items):
        if b'"message"' not in item:
            continue  # most lines: no need to decode them
        try:
            line = decode_line(item)
        except msgspec.DecodeError:
            continue
        if isinstance(line.payload, ResponseItem):
            texts += [(first + i, text) for text in message_texts([line.payload.raw])]
    return texts




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
            if conn.execute("select 1 from pg_trigger where tgname = 'codex_thread_list_grams'").fetchone() is None:
                conn.execute(TITLE_TRIGGER)
        return pool
    try:
        pool = await trio.to_thread.run_sync(start)
    except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
        raise SystemExit(f"trio-codex: cannot use the store at {dsn}: {exc}") from None
    return PgThreadStore(pool), pool
