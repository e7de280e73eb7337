"""The thread actor's lifecycle states and its turn handle, and the pieces
its registry and turns share: the lost-turn notices and a user's history item."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import trio

from ...runtime.persistence.history_pages import TurnProjection
from ...runtime.kernel.mailbox import Inbox, Mailbox
from ...runtime.protocol.jsonrpc import Notification
from ...runtime.protocol.v2.item import TextInput
from ...runtime.protocol.v2.turn import (
    ErrorNotification,
    Turn,
    TurnCompleted,
    TurnError,
)
from ..messages.fanout import notification
from ..analytics import facts
from ..analytics.facts import Recorder
from ..messages import Steered, TurnInbox
from ..turn import TURN_CAPACITY


def user_history_item(inputs: list[Any]) -> msgspec.Raw:
    """The Responses input item for a user message."""
    content = [{"type": "input_text", "text": i.text} if isinstance(i, TextInput)
               else {"type": "input_image", "image_url": getattr(i, "url", None) or getattr(i, "path", "")}
               for i in inputs]
    return msgspec.Raw(msgspec.json.encode({"type": "message", "role": "user", "content": content}))


def follow_rollout(projection: TurnProjection | None, path: Path) -> TurnProjection:
    """The turn projection of the rollout at ``path``, built or brought up
    to date (blocking: the thread runs it in a worker thread)."""
    return TurnProjection.load(path) if projection is None else projection.catch_up()


def lost_turn(thread_id: str, turn_id: str, what_then: str,
              recorder: Recorder) -> tuple[Notification, Notification]:
    """What the subscribers of a thread whose actor crashed are told of the
    turn it was running: ``error``, then ``turn/completed`` failed, so no
    client waits for that turn forever. Analytics records it completed too
    (its usage is the last the turn recorded)."""
    error = TurnError(f"the thread's actor failed and {what_then}; this turn was lost", "internalServerError")
    recorder.record(facts.TurnCompleted(thread_id=thread_id, turn_id=turn_id, status="failed", duration_ms=None,
                                        error_info="internalServerError"))
    return (notification("error", ErrorNotification(error, False, thread_id, turn_id)),
            notification("turn/completed", TurnCompleted(thread_id, Turn(
                id=turn_id, items=[], status="failed", error=error, root_turn_id=turn_id))))


class TurnHandle(msgspec.Struct):
    """The thread's handle on a turn it started: the turn's mailbox (both
    ends: the thread opened it and closes it) and its cancel scope."""

    id: str
    mailbox: Mailbox[TurnInbox]
    inbox: Inbox[TurnInbox]
    scope: trio.CancelScope
    started_at: int
    started_monotonic: float
    #: ``regular`` or ``compact``.
    kind: str
    #: Approval prompts of this turn waiting on a client.
    waiting: int = 0

    def close(self) -> tuple[msgspec.Raw, ...]:
        """Close the mailbox of a turn that has ended; return the input
        steered to it that it never read, in order."""
        self.mailbox.close()
        late: list[msgspec.Raw] = []
        while batch := self.inbox.drain_nowait(TURN_CAPACITY):
            late += (item for msg in batch if isinstance(msg, Steered) for item in msg.items)
        self.inbox.close()
        return tuple(late)


class Ready(msgspec.Struct):
    """No turn runs."""


class Unloading(msgspec.Struct):
    """No turn runs and nobody followed the thread for its unload delay: the
    registry was asked to unload it."""


class Running(msgspec.Struct):
    """A turn runs and takes steered input."""

    turn: TurnHandle


class Stopping(msgspec.Struct):
    """The turn was cancelled and has not reported its end yet; ``then``
    runs once it has (deferred turn/start, compaction, revert), in order."""

    turn: TurnHandle
    then: list[Callable[[], Awaitable[None]]]


ThreadState = Ready | Unloading | Running | Stopping
