"""Pages of a thread's history (``thread/turns/list``, ``thread/items/list``)
and the per-turn projection a loaded thread keeps to serve them.

The original keeps a thread's turns in its state database and reads a page
from there; replaying the whole rollout for every page cost us 9-18 ms on a
10,000-item thread. Here a page is cut from a list of replayed turns and only
the page's own entries are built, so a page costs what its rows cost, not
what the thread holds. :class:`TurnProjection` keeps those turns current for
a loaded thread by replaying only the lines appended to its rollout since it
last looked (the turn's writes, compaction, a rollback event), and starts
over when the file was rewritten (``thread/revert``).
"""

from __future__ import annotations

import itertools
import operator
import os
from bisect import bisect_right
from typing import Any

import msgspec

from ..protocol.v2.thread import PageResponse, ThreadItemEntry
from .rollout import ReplayedAgentMessage, ReplayedTurn, TurnBuilder, parse_rollout, running


class TurnProjection:
    """The turns of one rollout file, as :func:`~.rollout.replay` shows
    them, kept current by feeding the replay only what was appended.

    ``load`` and ``catch_up`` block (file reads): call them through
    ``trio.to_thread.run_sync``. ``is_current`` is one ``stat``, cheap
    enough for an actor's loop (as the rollout writer's own writes are)."""

    __slots__ = ("path", "builder", "offset")

    def __init__(self, path: str, builder: TurnBuilder, offset: int) -> None:
        self.path = path
        self.builder = builder
        #: Bytes of the file the builder has seen (through its last whole line).
        self.offset = offset

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TurnProjection:
        """Replay the turns of the file at ``path`` (blocking). Raises
        ``OSError`` when it cannot be read, ``ValueError`` when it is not a
        thread's rollout."""
        with open(path, "rb") as f:
            data = f.read()
        rollout = parse_rollout(data, os.fspath(path))
        meta = rollout.session_meta
        if meta is None:
            raise ValueError(f"{rollout.path}: no session_meta line; this is not a thread rollout")
        builder = TurnBuilder(meta.id, paginated=meta.history_mode == "paginated")
        for line in rollout.lines:
            builder.line(line.payload)
        return cls(rollout.path, builder, rollout.consumed)

    def is_current(self) -> bool:
        """Whether the file is as the projection last saw it: one ``stat``
        (a page of a thread that did not change needs no thread hop)."""
        try:
            return os.stat(self.path).st_size == self.offset
        except OSError:
            return False

    def catch_up(self) -> TurnProjection:
        """Feed the lines appended since the last look (blocking); a file
        shorter than what was seen was rewritten: replay it afresh. Returns
        the projection that is current (``self`` or the new one)."""
        with open(self.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == self.offset:
                return self
            if size < self.offset:
                return TurnProjection.load(self.path)
            f.seek(self.offset)
            tail = f.read(size - self.offset)
        # Only whole lines: the writer may be mid-line right now.
        whole = tail[:tail.rfind(b"\n") + 1]
        for line in parse_rollout(whole, self.path).lines:
            self.builder.line(line.payload)
        self.offset += len(whole)
        return self

    def turns(self, active_turn_id: str | None = None) -> list[ReplayedTurn]:
        """The turns now (the running one ``inProgress``)."""
        return running(self.builder.snapshot(), active_turn_id)


_ITEMS = operator.attrgetter("items")


def history_page(turns: list[Any], method: str, params: Any) -> PageResponse:
    """A page of ``thread/turns/list`` or ``thread/items/list`` over
    ``turns``; only the page's rows are built. Raises ``ValueError`` for a
    cursor this module did not hand out."""
    limit = params.limit or 25
    if method == "thread/turns/list":
        desc = (params.sort_direction or "desc") == "desc"
        start, end, next_cursor, back = _bounds(len(turns), params.cursor, limit)
        rows = (turns[len(turns) - end:len(turns) - start][::-1] if desc else turns[start:end])
        return PageResponse(_turn_views(rows, params.items_view or "summary"), next_cursor, back)
    desc = (params.sort_direction or "asc") == "desc"
    if params.turn_id is not None:
        turns = [turn for turn in turns if turn.id == params.turn_id]
    # Where each turn's items start in the flat list of every item.
    starts = [0, *itertools.accumulate(map(len, map(_ITEMS, turns)))]  # at C speed: no Python per turn
    total = starts[-1]
    start, end, next_cursor, back = _bounds(total, params.cursor, limit)
    lo, hi = (total - end, total - start) if desc else (start, end)
    rows = []
    index = bisect_right(starts, lo) - 1
    position = lo
    while position < hi:
        turn = turns[index]
        for item in turn.items[position - starts[index]:hi - starts[index]]:
            rows.append(ThreadItemEntry(turn.id, item, getattr(item, "started_at_ms", None),
                                        getattr(item, "completed_at_ms", None)))
        position = starts[index + 1]
        index += 1
    if desc:
        rows.reverse()
    return PageResponse(rows, next_cursor, back)


def _turn_views(turns: list[Any], view: str) -> list[Any]:
    """Turns as ``itemsView`` asks: ``full`` items, the ``summary`` (the
    last agent message), or none (``notLoaded``)."""
    if view == "full":
        return list(turns)
    out = []
    for turn in turns:
        items = [] if view == "notLoaded" else [
            i for i in turn.items if isinstance(i, ReplayedAgentMessage)][-1:]
        out.append(msgspec.structs.replace(turn, items=items, items_view=view))
    return out


def _bounds(count: int, cursor: str | None, limit: int) -> tuple[int, int, str | None, str | None]:
    """Where a page of ``count`` entries starts and ends: ``n:OFF``
    continues at OFF, ``p:OFF`` is the page that ends before OFF; and the
    cursors naming the pages on either side."""
    kind, _, offset = (cursor or "n:0").partition(":")
    if kind not in ("n", "p") or not offset.isdigit():
        raise ValueError(f"invalid cursor `{cursor}`: pass back a nextCursor or backwardsCursor unchanged")
    end = int(offset) + limit if kind == "n" else int(offset)
    start = int(offset) if kind == "n" else max(0, end - limit)
    end = min(end, count)
    # A cursor past the end gives an empty page (its backwards cursor intact).
    return min(start, end), end, f"n:{end}" if end < count else None, f"p:{start}" if start > 0 else None
