"""The thread listing index: real SQLite files, real rollout files, every
filter, both cursor directions, the byte bound, and rebuilding."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio

from trio_codex.runtime.persistence import rollout as r
from trio_codex.runtime.persistence import thread_index as ti

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "original"
T0 = 1_795_600_000_000
HOUR = 3_600_000


def meta(n: int, **fields: Any) -> r.ThreadMeta:
    """Thread n: created n hours after T0, updated and active in another
    order, so that every sort key gives a different order."""
    base = dict(
        id=f"01a20e00-0000-7000-8000-{n:012d}", rollout_path=f"/nowhere/rollout-{n}.jsonl",
        created_at=T0 + n * HOUR, updated_at=T0 + ((n * 7) % 100) * HOUR, recency_at=T0 + ((n * 13) % 100) * HOUR,
        source="vscode", model_provider="openai", cwd="/work/a", cli_version="0.169.0", preview=f"thread {n}")
    return r.ThreadMeta(**{**base, **fields})


@pytest.fixture
def index(tmp_path: Path) -> ti.ThreadIndex:
    with ti.ThreadIndex(tmp_path / ti.INDEX_FILE) as idx:
        yield idx


def ids(page: ti.Page) -> list[str]:
    return [row.id for row in page.rows]


def test_rows_round_trip_and_change(index: ti.ThreadIndex) -> None:
    row = meta(1, source={"subagent": "review"}, git_sha="abc", name="named", tokens_used=42)
    index.upsert(row)
    assert index.get(row.id) == row
    assert index.get("missing") is None

    index.upsert(meta(1, preview="changed"))
    assert index.get(row.id).preview == "changed"
    assert index.set_name(row.id, "renamed") and index.get(row.id).name == "renamed"

    assert index.mark_archived(row.id, True, rollout_path="/archive/x.jsonl", at_ms=T0)
    got = index.get(row.id)
    assert (got.archived, got.archived_at, got.rollout_path) == (True, T0, "/archive/x.jsonl")
    assert index.mark_archived(row.id, False)
    assert (index.get(row.id).archived, index.get(row.id).archived_at) == (False, None)
    assert not index.mark_archived("missing", True)

    assert index.delete(row.id) and index.get(row.id) is None
    assert not index.delete(row.id)


@pytest.mark.parametrize("sort_key", ["created_at", "updated_at", "recency_at"])
@pytest.mark.parametrize("direction", ["asc", "desc"])
def test_pages_follow_the_sort_and_cover_every_row_once_both_ways(
        index: ti.ThreadIndex, sort_key: str, direction: str) -> None:
    rows = [meta(n) for n in range(100)]
    index.upsert_many(rows)
    want = [m.id for m in sorted(rows, key=lambda m: (getattr(m, sort_key), m.id), reverse=direction == "desc")]

    pages, cursor = [], None
    while True:
        page = index.list_threads(cursor=cursor, limit=7, sort_key=sort_key, sort_direction=direction)
        pages.append(page)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert [i for p in pages for i in ids(p)] == want
    assert [len(p.rows) for p in pages] == [7] * 14 + [2]

    # Backwards from the last page, each backwards cursor gives the page before.
    for before, page in zip(reversed(pages[:-1]), reversed(pages[1:]), strict=True):
        back = index.list_threads(cursor=page.backwards_cursor, limit=7, sort_key=sort_key, sort_direction=direction)
        assert ids(back) == ids(before)
        assert back.next_cursor is not None
        assert ids(index.list_threads(cursor=back.next_cursor, limit=7, sort_key=sort_key,
                                      sort_direction=direction)) == ids(page)
    # Before the first page there is nothing (yet); the cursor stays usable.
    empty = index.list_threads(cursor=pages[0].backwards_cursor, limit=7, sort_key=sort_key, sort_direction=direction)
    assert empty == ti.Page([], None, pages[0].backwards_cursor)
    index.upsert(meta(100, created_at=T0 + 1000 * HOUR, updated_at=T0 + 1000 * HOUR, recency_at=T0 + 1000 * HOUR))
    if direction == "desc":
        assert ids(index.list_threads(cursor=empty.backwards_cursor, sort_key=sort_key,
                                      sort_direction=direction)) == [meta(100).id]


def test_cursors_survive_inserts_and_deletes_between_pages(index: ti.ThreadIndex) -> None:
    index.upsert_many(meta(n) for n in range(0, 40, 2))
    first = index.list_threads(limit=5)
    assert ids(first) == [meta(n).id for n in (38, 36, 34, 32, 30)]
    # Newer than the page, inside it, after it; a deleted row after it.
    index.upsert_many(meta(n) for n in (99, 31, 29))
    index.delete(meta(28).id)
    second = index.list_threads(cursor=first.next_cursor, limit=5)
    assert ids(second) == [meta(n).id for n in (29, 26, 24, 22, 20)]
    newer = index.list_threads(cursor=first.backwards_cursor, limit=5)
    assert ids(newer) == [meta(99).id]


def test_a_bad_or_foreign_cursor_is_refused_with_what_to_do(index: ti.ThreadIndex) -> None:
    index.upsert_many(meta(n) for n in range(3))
    cursor = index.list_threads(limit=1).next_cursor
    with pytest.raises(ValueError, match="sorted by created_at desc, not updated_at desc: keep the sort"):
        index.list_threads(cursor=cursor, sort_key="updated_at")
    with pytest.raises(ValueError, match="invalid cursor 'garbage!': pass a cursor from a previous"):
        index.list_threads(cursor="garbage!")
    with pytest.raises(ValueError, match="unknown sortKey 'size'"):
        index.list_threads(sort_key="size")
    with pytest.raises(ValueError, match="unknown sortDirection 'up'"):
        index.list_threads(sort_direction="up")


def test_every_filter(index: ti.ThreadIndex) -> None:
    index.upsert_many([
        meta(1, cwd="/work/a", model_provider="openai", source="vscode", preview="Fix the 100% bug"),
        meta(2, cwd="/work/b", model_provider="mock", source="cli", name="Release notes"),
        meta(3, cwd="/work/b", model_provider="openai", source="exec", preview="batch_job run"),
        meta(4, cwd="/work/c", model_provider="openai", source={"subagent": "review"}),
        meta(5, cwd="/work/a", model_provider="openai", source="vscode", archived=True, archived_at=T0),
        meta(6, cwd="/work/a", model_provider="openai", source="mcp"),
    ])

    def listed(**kw: Any) -> list[int]:
        return sorted(int(i[-12:]) for i in ids(index.list_threads(**kw)))

    assert listed() == [1, 2]  # interactive sources, not archived
    assert listed(archived=True) == [5]
    assert listed(cwd="/work/b") == [2]
    assert listed(cwd=["/work/a", "/work/b"]) == [1, 2]
    assert listed(cwd=[]) == []
    assert listed(model_providers=["mock"]) == [2]
    assert listed(model_providers=["openai", "mock"]) == [1, 2]
    assert listed(source_kinds=["exec"]) == [3]
    assert listed(source_kinds=["subAgent"]) == [4]
    assert listed(source_kinds=["subAgentReview", "appServer"]) == [4, 6]
    assert listed(source_kinds=["cli", "vscode", "exec"], cwd="/work/b") == [2, 3]
    assert listed(search_term="release") == [2]  # the name, case-insensitively
    assert listed(search_term="100%") == [1]  # the preview; % is literal
    assert listed(search_term="b_tch", source_kinds=["exec"]) == []  # _ is literal
    assert listed(search_term="batch_j", source_kinds=["exec"]) == [3]


def test_a_page_stops_at_the_byte_bound(index: ti.ThreadIndex) -> None:
    index.upsert_many(meta(n, preview="x" * 10_000) for n in range(10, 30))
    size = len(msgspec.json.encode(index.get(meta(10).id)))  # every row has this size
    page = index.list_threads(limit=20, max_bytes=5 * size + size // 2)
    assert ids(page) == [meta(n).id for n in (29, 28, 27, 26, 25)] and page.next_cursor is not None
    rest = index.list_threads(limit=20, max_bytes=5 * size, cursor=page.next_cursor)
    assert ids(rest) == [meta(n).id for n in (24, 23, 22, 21, 20)]
    # Always at least one row, so that a listing progresses.
    assert len(index.list_threads(limit=20, max_bytes=1).rows) == 1
    # Backwards pages keep the rows nearest the cursor.
    back = index.list_threads(limit=20, max_bytes=2 * size, cursor=rest.backwards_cursor)
    assert ids(back) == [meta(n).id for n in (26, 25)]


def test_huge_previews_are_cut_so_no_page_is_megabytes(index: ti.ThreadIndex) -> None:
    index.upsert_many(meta(n, preview="é" * 1_000_000) for n in range(20))
    page = index.list_threads(limit=20)
    assert len(msgspec.json.encode(page.rows)) <= ti.DEFAULT_MAX_BYTES
    preview = page.rows[0].preview
    assert len(preview.encode()) <= ti.PREVIEW_MAX_BYTES and set(preview) == {"é"}


async def test_many_worker_threads_read_at_once(index: ti.ThreadIndex) -> None:
    index.upsert_many(meta(n) for n in range(50))
    results: list[list[str]] = []

    async def one() -> None:
        page = await trio.to_thread.run_sync(lambda: index.list_threads(limit=10))
        results.append(ids(page))

    async with trio.open_nursery() as nursery:
        for _ in range(8):
            nursery.start_soon(one)
    assert len(results) == 8 and all(r == results[0] for r in results)


# -- rebuilding from rollouts -----------------------------------------------------------


def write_rollout(codex_home: Path, n: int, *, archived: bool = False, name: str | None = None,
                  cwd: str = "/work/a") -> Path:
    tid = f"01a20e00-0000-7000-8000-{n:012d}"
    created = T0 + n * HOUR
    turn = f"01a20e00-0000-7000-9000-{n:012d}"
    payloads: list[tuple[int, r.Payload]] = [
        (created, r.SessionMeta(id=tid, timestamp=r.format_timestamp(created), cwd=cwd, originator="trio_codex",
                                cli_version="0.169.0", source="vscode", model_provider="mock",
                                history_mode="paginated")),
        (created + 10, r.TurnStartedEvent(turn_id=turn, started_at=created // 1000)),
        (created + 11, r.TurnContext(turn_id=turn, cwd=cwd, approval_policy="never", sandbox_policy={"type": "read-only"},
                                     model="mock-model", summary="auto")),
        (created + 12, r.ItemCompletedEvent.of(r.CoreUserMessage(id="u", content=[{"type": "text", "text": f"question {n}"}]),
                                               thread_id=tid, turn_id=turn)),
        (created + 20, r.TurnCompleteEvent(turn_id=turn)),
    ]
    if name is not None:
        payloads.append((created + 30, r.ThreadNameUpdatedEvent(thread_id=tid, thread_name=name)))
    path = r.rollout_path(codex_home, tid, created)
    if archived:
        path = r.archived_rollout_path(codex_home, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(r.encode_line(p, timestamp_ms=ts, ordinal=i) for i, (ts, p) in enumerate(payloads)))
    return path


def test_a_missing_index_is_built_from_the_rollouts(tmp_path: Path) -> None:
    paths = [write_rollout(tmp_path, n) for n in range(10)]
    write_rollout(tmp_path, 10, archived=True)
    write_rollout(tmp_path, 11, name="from the event")
    (tmp_path / r.SESSION_INDEX_FILE).write_bytes(r.encode_session_index_entry(meta(3).id, "indexed", updated_at_ms=T0))
    (tmp_path / "sessions" / "notes.txt").write_text("not a rollout")
    with ti.open_index(tmp_path) as index:
        assert index.count() == 12 and index.count(archived=True) == 1
        for path in paths:
            want = r.replay(r.read_rollout(path)).meta
            want = msgspec.structs.replace(want, name="indexed" if path == paths[3] else None)
            assert index.get(want.id) == want
        assert index.get(meta(11).id).name == "from the event"
        archived = index.get(meta(10).id)
        assert archived.archived and archived.archived_at is not None
        assert [row.preview for row in index.list_threads(limit=3).rows] == [f"question {n}" for n in (11, 9, 8)]


def test_only_stale_rollouts_are_rescanned(tmp_path: Path) -> None:
    paths = [write_rollout(tmp_path, n) for n in range(5)]
    with ti.open_index(tmp_path) as index:
        stats = index.sync(tmp_path)
        assert (stats.full, stats.files, stats.scanned, stats.removed) == (False, 5, 0, 0)
        # Appended to (the original resumed it), removed, added, renamed.
        with open(paths[1], "ab") as f:
            f.write(r.encode_line(r.ThreadNameUpdatedEvent(thread_id=meta(1).id, thread_name="grown"),
                                  timestamp_ms=T0 + 99 * HOUR))
        paths[2].unlink()
        write_rollout(tmp_path, 7)
        (tmp_path / r.SESSION_INDEX_FILE).write_bytes(
            r.encode_session_index_entry(meta(4).id, "renamed", updated_at_ms=T0))
        stats = index.sync(tmp_path)
        assert (stats.full, stats.files, stats.scanned, stats.removed) == (False, 5, 2, 1)
        assert index.get(meta(1).id).name == "grown"
        assert index.get(meta(1).id).updated_at == T0 + 99 * HOUR
        assert index.get(meta(2).id) is None and index.get(meta(7).id) is not None
        assert index.get(meta(4).id).name == "renamed"
        # A row the writer upserted itself is not rescanned.
        index.upsert(r.scan_rollout(write_rollout(tmp_path, 8)))
        assert index.sync(tmp_path).scanned == 0


def test_git_info_set_in_the_index_survives_a_rescan_of_its_rollout(tmp_path: Path) -> None:
    path = write_rollout(tmp_path, 1)
    with ti.open_index(tmp_path) as index:
        assert index.update_git(meta(1).id, {"git_sha": "abc", "git_branch": "main"}).git_branch == "main"
        assert index.update_git(meta(1).id, {"git_sha": None}).git_sha is None
        assert index.update_git("no-such-thread", {"git_sha": "x"}) is None
        with open(path, "ab") as f:  # grown on disk: rescanned
            f.write(r.encode_line(r.ThreadNameUpdatedEvent(thread_id=meta(1).id, thread_name="grown"),
                                  timestamp_ms=T0 + 99 * HOUR))
        assert index.sync(tmp_path).scanned == 1
        row = index.get(meta(1).id)
        assert (row.name, row.git_sha, row.git_branch) == ("grown", None, "main")


def test_an_index_of_another_schema_or_a_damaged_file_is_rebuilt(tmp_path: Path) -> None:
    write_rollout(tmp_path, 1)
    with ti.open_index(tmp_path) as index:
        assert index.count() == 1
    db = tmp_path / ti.INDEX_FILE
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE index_meta SET value = '0' WHERE key = 'schema_version'")
        conn.execute("DELETE FROM threads")
    conn.close()
    with ti.ThreadIndex(db) as index:
        assert index.needs_full_rebuild
        assert index.sync(tmp_path).full and index.count() == 1

    db.write_bytes(b"this is not a database" * 100)
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    with ti.open_index(tmp_path) as index:
        assert index.count() == 1


def test_the_originals_fixture_is_listed_as_the_original_lists_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(FIXTURES, home)
    with ti.open_index(home) as index:
        page = index.list_threads()
    assert [(row.id, row.name, row.preview, row.created_at // 1000) for row in page.rows] == [
        ("01a20d66-ed08-7673-88b9-a1d4a7463d58", "Fixture thread", "[[reasoning=2]] First question, with some thinking",
         1795521178),
        ("01a20d47-fb27-7d40-86d8-38fda834d3cf", None, "hi", 1795519150)]
    assert all(os.path.isabs(row.rollout_path) for row in page.rows)


def test_search_through_the_title_index_finds_what_the_like_scan_found(
        index: ti.ThreadIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    """searchTerm goes through the trigram index of names and previews when
    a trigram of the term is rare, and scans when all are common; either
    way its rows are the LIKE scan's (ASCII case folded, wildcards literal),
    while rows are added, renamed, rewritten and deleted."""
    previews = ["Fix the 100% bug", "batch_job run", 'say "hi" twice', "Ünïcode ÉCOLE straße",
                "needle-7 in the haystack", "needle-70 nearby", "a\\b back slash", "tiny", "", "ab"]
    monkeypatch.setattr(ti.index, "BULK_ROWS", 10)  # a bulk write: the title index rebuilt once, after it
    index.upsert_many(meta(n, preview=previews[n % len(previews)], name="Release notes" if n % 7 == 0 else None)
                      for n in range(60))
    terms = ["100%", "00%", "batch_j", "b_tch", '"hi"', 'y "h', "école", "ÉCOLE", "Ünï", "straße", "needle-7",
             "NEEDLE-70", "le-", "\\b b", "release", "ELEASE N", "ti", "b", "%", "_", "zzz", "a\\"]

    def scanned(term: str) -> list[str]:
        pattern = ti.like_pattern(term)
        rows = index._connect().execute(
            "SELECT id FROM threads WHERE archived = 0 AND source_kind IN ('cli', 'vscode') "
            "AND (name LIKE ? ESCAPE '\\' OR preview LIKE ? ESCAPE '\\') ORDER BY created_at DESC, id DESC",
            (pattern, pattern))
        return [row[0] for row in rows]

    default = ti.RARE_TRIGRAM_ROWS

    def check() -> None:
        # Every trigram rare (the index), a few (index or scan by term), none (the scan).
        for rare in (default, 5, 0):
            monkeypatch.setattr(ti.search, "RARE_TRIGRAM_ROWS", rare)
            for term in terms:
                assert ids(index.list_threads(search_term=term, limit=ti.MAX_LIMIT)) == scanned(term), (term, rare)

    check()
    assert scanned("needle-7") and scanned("ÉCOLE") and not scanned("école")  # the cases are there
    for n in range(0, 60, 3):
        index.set_name(meta(n).id, f"renamed {n} needle-7")
    for n in range(1, 60, 5):
        index.upsert(meta(n, preview="rewritten batch_job"))
    for n in range(2, 60, 4):
        index.delete(meta(n).id)
    check()
    index.upsert_many(meta(n, preview="bulk needle-7 again") for n in range(40, 80))  # bulk over kept rows
    check()
