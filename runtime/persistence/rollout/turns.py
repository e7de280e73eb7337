"""Turns from rollout lines: :class:`TurnBuilder`, the app-server's
``ThreadHistoryBuilder`` (codex-rs ``app-server-protocol/src/protocol/
thread_history.rs``), checked against what codex-cli 0.169.0's
``thread/resume`` returned for the same files.

A ``thread_rolled_back`` event drops the newest turns; a turn still open
at the end of the file (the process died mid-turn) comes back
``interrupted`` with no ``completedAt``. The builder is incremental: a
loaded thread's :class:`~..history_pages.TurnProjection` feeds it the lines
appended after a replay.
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from ...protocol.v2.item import ContextCompactionItem
from .casing import camelize
from .records import (
    AgentMessageEvent,
    AgentReasoningEvent,
    AgentReasoningRawContentEvent,
    Compacted,
    ContextCompactedEvent,
    ItemCompletedEvent,
    Payload,
    ThreadRolledBackEvent,
    TurnAbortedEvent,
    TurnCompleteEvent,
    TurnStartedEvent,
    UserMessageEvent,
)
from .replayed import (
    ReplayedAgentMessage,
    ReplayedItem,
    ReplayedReasoning,
    ReplayedTurn,
    ReplayedTurnError,
    ReplayedUserMessage,
    replayed_item,
    v2_user_input,
)


class _Pending:
    """A turn being rebuilt."""

    __slots__ = ("id", "root_turn_id", "explicit", "ended", "status", "error", "started_at",
                 "completed_at", "duration_ms", "items", "saw_compaction")

    def __init__(self, turn_id: str, *, explicit: bool, started_at: int | None = None,
                 root_turn_id: str | None = None) -> None:
        self.id = turn_id
        self.root_turn_id = root_turn_id
        self.explicit = explicit
        self.ended = False
        self.status = "completed"
        self.error: ReplayedTurnError | None = None
        self.started_at = started_at
        self.completed_at: int | None = None
        self.duration_ms: int | None = None
        self.items: list[ReplayedItem] = []
        self.saw_compaction = False

    def finish(self) -> ReplayedTurn:
        return ReplayedTurn(
            id=self.id, root_turn_id=self.root_turn_id, items=self.items, status=self.status,
            error=self.error, started_at=self.started_at, completed_at=self.completed_at,
            duration_ms=self.duration_ms)


class TurnBuilder:
    """Turns from rollout lines (the app-server's ThreadHistoryBuilder).

    Where a turn's items come from depends on the file's history mode, as
    in 0.169: a ``paginated`` rollout (what 0.169 writes) records them as
    ``item_completed`` events; a ``legacy`` one as ``user_message``,
    ``agent_message`` and ``agent_reasoning`` events, whose items get
    positional ids (``item-1``, …) and no timestamps. Each mode ignores the
    other's records (``Plan`` items come from ``item_completed`` in both).
    """

    def __init__(self, thread_id: str, *, paginated: bool) -> None:
        self.thread_id = thread_id
        self.paginated = paginated
        self.turns: list[ReplayedTurn] = []
        self.current: _Pending | None = None
        self.next_item = 1
        self.implicit = 0

    def _item_id(self) -> str:
        item_id = f"item-{self.next_item}"
        self.next_item += 1
        return item_id

    def _finish_current(self) -> None:
        turn, self.current = self.current, None
        if turn is None:
            return
        if turn.explicit and not turn.ended:
            turn.status = "interrupted"
        if turn.explicit or turn.items:
            self.turns.append(turn.finish())

    def _ensure(self) -> _Pending:
        if self.current is None:
            # Legacy rollouts did not record turn starts. Their turn ids are
            # derived from the thread id and position so that every read of
            # the same file gives the same ids.
            self.implicit += 1
            tid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"codex-thread:{self.thread_id}/turn/{self.implicit}"))
            self.current = _Pending(tid, explicit=False)
        return self.current

    def line(self, payload: Payload) -> None:
        legacy = not self.paginated
        match payload:
            case TurnStartedEvent():
                self._finish_current()
                self.current = _Pending(payload.turn_id, explicit=True, started_at=payload.started_at,
                                        root_turn_id=payload.root_turn_id)
            case TurnCompleteEvent() | TurnAbortedEvent():
                turn = self.current
                if turn is None or (payload.turn_id and turn.id != payload.turn_id):
                    return
                turn.ended = True
                if isinstance(payload, TurnAbortedEvent):
                    turn.status = "interrupted"
                elif payload.error is not None:
                    turn.status = "failed"
                    turn.error = ReplayedTurnError(
                        message=payload.error.message,
                        codex_error_info=camelize(payload.error.codex_error_info),
                        additional_details=payload.error.additional_details)
                turn.completed_at = payload.completed_at
                turn.duration_ms = payload.duration_ms
                self._finish_current()
            case ItemCompletedEvent():
                item = replayed_item(payload, paginated=self.paginated)
                if item is not None:
                    self._upsert(payload.turn_id, item)
            case UserMessageEvent() if legacy:
                cur = self.current
                if cur is not None and not cur.explicit and not (cur.saw_compaction and not cur.items):
                    self._finish_current()
                content: list[Any] = []
                if payload.message:
                    content.append(v2_user_input({"type": "text", "text": payload.message,
                                                   "text_elements": payload.text_elements}))
                content += [{"type": "image", "url": url} for url in payload.images or []]
                content += [{"type": "localImage", "path": p} for p in payload.local_images]
                self._ensure().items.append(ReplayedUserMessage(id=self._item_id(), content=content))
            case AgentMessageEvent() if legacy and payload.message:
                self._ensure().items.append(ReplayedAgentMessage(
                    id=self._item_id(), text=payload.message, phase=payload.phase,
                    memory_citation=payload.memory_citation))
            case AgentReasoningEvent() | AgentReasoningRawContentEvent() if legacy and payload.text:
                items = self._ensure().items
                raw = isinstance(payload, AgentReasoningRawContentEvent)
                if items and isinstance(items[-1], ReplayedReasoning):
                    (items[-1].content if raw else items[-1].summary).append(payload.text)
                else:
                    items.append(ReplayedReasoning(id=self._item_id(), summary=[] if raw else [payload.text],
                                                   content=[payload.text] if raw else []))
            case ContextCompactedEvent() if legacy:
                self._ensure().items.append(ContextCompactionItem(id=self._item_id()))
            case Compacted():
                if self.current is not None:
                    self.current.saw_compaction = True
            case ThreadRolledBackEvent():
                self._finish_current()
                if payload.num_turns > 0:
                    del self.turns[-payload.num_turns:]

    def _upsert(self, turn_id: str, item: ReplayedItem) -> None:
        """Put a completed item in the turn it names, as the original's
        ``upsert_item_in_turn_id`` does: a process that outlived its turn
        records its item later in the file, under its own turn. An item
        whose turn is unknown joins the current one; one seen before
        (same id) is replaced."""
        items = None
        if self.current is not None and self.current.id == turn_id:
            items = self.current.items
        else:
            for turn in reversed(self.turns):
                if turn.id == turn_id:
                    items = turn.items
                    break
        if items is None:
            items = self._ensure().items
        for i, seen in enumerate(items):
            if seen.id == item.id and type(seen) is type(item):
                items[i] = item
                return
        items.append(item)

    def snapshot(self) -> list[ReplayedTurn]:
        """The turns so far, the one still open included as the end of the
        file shows it (``interrupted`` when it started explicitly), without
        closing it: more lines may follow."""
        turn = self.current
        if turn is None or not (turn.explicit or turn.items):
            return list(self.turns)
        return [*self.turns, ReplayedTurn(
            id=turn.id, root_turn_id=turn.root_turn_id, items=list(turn.items),
            status="interrupted" if turn.explicit else turn.status, error=turn.error,
            started_at=turn.started_at, completed_at=turn.completed_at, duration_ms=turn.duration_ms)]

    @property
    def open_turn_id(self) -> str | None:
        """The turn the lines so far left open, if it started explicitly."""
        return self.current.id if self.current is not None and self.current.explicit else None


def running(turns: list[Any], turn_id: str | None) -> list[Any]:
    """``turns`` of a live thread whose turn ``turn_id`` is running: a replay
    cannot tell that turn from one cut off by a crash and says
    ``interrupted``; the original says ``inProgress`` while it runs."""
    if turn_id is None or not turns or turns[-1].id != turn_id:
        return turns
    last = msgspec.structs.replace(turns[-1], status="inProgress", error=None, completed_at=None, duration_ms=None)
    return [*turns[:-1], last]
