"""The per-turn projection a loaded thread keeps (fed only what was
appended to its rollout) shows the same turns as a replay of the whole file,
for the original's rollouts and ours, across compaction, rollback events and
a rewritten file; and a page cut from it is the page the whole list gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from trio_codex.runtime.persistence import rollout as r
from trio_codex.runtime.persistence.history_pages import TurnProjection, history_page
from trio_codex.runtime.protocol.v2.thread import ThreadItemEntry

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "original"
ORIGINAL_ROLLOUTS = sorted(FIXTURES.rglob("rollout-*.jsonl"))
TID = "01a20d66-0000-7000-8000-00000000abcd"


def replayed(data: bytes) -> bytes:
    return msgspec.json.encode(r.replay(r.parse_rollout(data)).turns)


def assert_follows_the_file(path: Path, chunks: list[bytes]) -> None:
    """Write ``chunks`` one after another; after each, the projection
    (caught up) shows what a replay of the file so far shows."""
    path.write_bytes(chunks[0])
    projection = TurnProjection.load(path)
    written = chunks[0]
    for chunk in chunks[1:]:
        with path.open("ab") as f:
            f.write(chunk)
        written += chunk
        projection = projection.catch_up()
        assert msgspec.json.encode(projection.turns()) == replayed(written[:written.rfind(b"\n") + 1])


@pytest.mark.parametrize("source", ORIGINAL_ROLLOUTS, ids=lambda p: p.name[-20:])
def test_the_projection_of_an_original_rollout_written_line_by_line_equals_its_replay(
        source: Path, tmp_path: Path) -> None:
    lines = source.read_bytes().splitlines(keepends=True)
    # Every line on its own, and one line torn in two (the writer mid-line).
    middle = len(lines) // 2
    chunks = [*lines[:middle], lines[middle][:7], lines[middle][7:], *lines[middle + 1:]]
    assert_follows_the_file(tmp_path / source.name, chunks)


def ours(*payloads: Any) -> list[bytes]:
    return [r.encode_line(p, timestamp_ms=1_800_000_000_000 + n, ordinal=n) for n, p in enumerate(payloads)]


def turn(turn_id: str, text: str, *, end: bool = True) -> list[Any]:
    events: list[Any] = [
        r.TurnStartedEvent(turn_id=turn_id, root_turn_id=turn_id, started_at=1, model_context_window=None),
        r.ItemCompletedEvent.of(r.CoreUserMessage(id=f"{turn_id}-u", content=[{"type": "text", "text": text}]),
                                thread_id=TID, turn_id=turn_id),
        r.ItemCompletedEvent.of(r.CoreAgentMessage(id=f"{turn_id}-a", content=[{"type": "Text", "text": "ok"}]),
                                thread_id=TID, turn_id=turn_id),
    ]
    if end:
        events.append(r.TurnCompleteEvent(turn_id=turn_id, root_turn_id=turn_id, last_agent_message="ok",
                                          started_at=1, completed_at=2, duration_ms=1000))
    return events


META = r.SessionMeta(id=TID, session_id=TID, timestamp="2026-11-24T11:19:10.000Z", cwd="/w", originator="t",
                     cli_version="0.171.0", source="vscode", model_provider="openai", history_mode="paginated")


def test_the_projection_of_our_rollout_follows_compaction_rollback_and_a_rewrite(tmp_path: Path) -> None:
    compaction = [
        r.TurnStartedEvent(turn_id="c", root_turn_id="c", started_at=3, model_context_window=None),
        r.ItemCompletedEvent.of(r.CoreContextCompaction(id="c-x"), thread_id=TID, turn_id="c"),
        r.Compacted(message="summary", replacement_history=None),
        r.TurnCompleteEvent(turn_id="c", root_turn_id="c", started_at=3, completed_at=4, duration_ms=1),
    ]
    chunks = ours(META, *turn("t1", "one"), *turn("t2", "two"), *compaction, *turn("t3", "three"),
                  r.ThreadRolledBackEvent(num_turns=2), *turn("t4", "four", end=False),
                  *turn("t5", "five"))
    path = tmp_path / "ours.jsonl"
    assert_follows_the_file(path, chunks)
    # thread/revert rewrites the file shorter: the projection starts over.
    projection = TurnProjection.load(path)
    kept = r.revert_rollout(path, "t3")
    projection = projection.catch_up()
    assert msgspec.json.encode(projection.turns()) == msgspec.json.encode(kept.turns) == replayed(path.read_bytes())
    assert [t.id for t in projection.turns()] == ["t1", "t2", "c"]


def test_the_running_turn_shows_in_progress_and_the_file_left_open_shows_interrupted(tmp_path: Path) -> None:
    path = tmp_path / "open.jsonl"
    path.write_bytes(b"".join(ours(META, *turn("t1", "one", end=False))))
    projection = TurnProjection.load(path)
    assert projection.turns()[-1].status == "interrupted"
    assert projection.turns("t1")[-1].status == "inProgress"
    # Looking does not close the turn: its end still lands.
    with path.open("ab") as f:
        f.write(ours(r.TurnCompleteEvent(turn_id="t1", root_turn_id="t1", started_at=1, completed_at=2,
                                         duration_ms=1))[0])
    assert projection.catch_up().turns()[-1].status == "completed"


class Params(msgspec.Struct):
    limit: int | None = None
    cursor: str | None = None
    sort_direction: str | None = None
    items_view: str | None = None
    turn_id: str | None = None


def whole_list_page(turns: list[Any], method: str, p: Params) -> tuple[list[Any], str | None, str | None]:
    """The page as cut from every entry built, the obvious way."""
    if method == "thread/turns/list":
        view = p.items_view or "summary"
        entries = [msgspec.structs.replace(
            t, items_view=view, items=list(t.items) if view == "full" else [] if view == "notLoaded" else
            [i for i in t.items if isinstance(i, r.ReplayedAgentMessage)][-1:]) for t in turns]
        desc = (p.sort_direction or "desc") == "desc"
    else:
        entries = [ThreadItemEntry(t.id, i, i.started_at_ms, i.completed_at_ms)
                   for t in turns if p.turn_id is None or t.id == p.turn_id for i in t.items]
        desc = (p.sort_direction or "asc") == "desc"
    if desc:
        entries.reverse()
    kind, _, offset = (p.cursor or "n:0").partition(":")
    limit = p.limit or 25
    end = int(offset) + limit if kind == "n" else int(offset)
    start = int(offset) if kind == "n" else max(0, end - limit)
    end = min(end, len(entries))
    return (entries[start:end], f"n:{end}" if end < len(entries) else None, f"p:{start}" if start > 0 else None)


def test_a_page_is_the_page_of_the_whole_list_for_every_cursor_direction_and_view() -> None:
    lines = [META]
    for n in range(9):
        lines += turn(f"t{n}", f"q{n}")[:2 + n % 3]  # turns of 1, 2 and 3 items, some left open
    turns = r.replay(r.parse_rollout(b"".join(ours(*lines)))).turns
    for method in ("thread/turns/list", "thread/items/list"):
        for direction in (None, "asc", "desc"):
            for limit in (1, 2, 5, 40):
                for cursor in (None, "n:0", "n:3", "n:7", "p:4", "p:12", "n:40", "p:0"):
                    for extra in ({"items_view": "full"}, {"items_view": "notLoaded"}, {}, {"turn_id": "t4"}):
                        p = Params(limit=limit, cursor=cursor, sort_direction=direction, **extra)
                        page = history_page(turns, method, p)
                        expected = whole_list_page(turns, method, p)
                        assert msgspec.json.encode((page.data, page.next_cursor, page.backwards_cursor)) == \
                            msgspec.json.encode(expected), (method, p)
    with pytest.raises(ValueError, match="invalid cursor `x:1`"):
        history_page(turns, "thread/turns/list", Params(cursor="x:1"))
