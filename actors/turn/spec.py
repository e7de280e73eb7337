"""What a turn is given and shares with its thread: the spec, the turn's
mailbox, the rollout lines of a user message, and the turn's constants."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import trio

from ...runtime.kernel.clock import now_ms
from ...runtime.conversation.history import (
    SUMMARIZATION_PROMPT,
    user_message,
)
from ...runtime.kernel.mailbox import Coalesce, Inbox, Mailbox, open_mailbox
from ...runtime.protocol import responses as rs
from ...runtime.protocol.tools import turn_tools
from ...runtime.protocol.v2.item import UserMessageItem
from ...runtime.protocol.v2.turn import TokenUsageBreakdown
from ...runtime.persistence.rollout import (
    ItemCompletedEvent,
    ResponseItem,
    core_item,
)
from ..messages import (
    ConnectionRef,
    Steered,
    SubscribersChanged,
    ThreadConfig,
    ApprovalsInbox,
    McpPoolInbox,
    ThreadInbox,
    TurnInbox,
)
from ..analytics.facts import Recorder
from ..messages.fanout import EventNumbers
from ...runtime.commands.process import ProcessTable
from .tools import ToolOutcome


#: The thread's messages waiting for the turn (it never waits for room:
#: see :func:`open_turn_mailbox`).
TURN_CAPACITY = 64


#: How long the MCP pool may take to answer (it answers at once).
MCP_TIMEOUT = 10.0


#: The tools offered to the model, encoded once.
TOOL_SPECS = turn_tools(goals=True)


DEFAULT_INSTRUCTIONS = (
    "You are Codex, a coding agent. You and the user share the same workspace "
    "and collaborate to achieve the user's goals."
)


SUMMARIZE = user_message(SUMMARIZATION_PROMPT)


ABORTED = msgspec.Raw(msgspec.json.encode({
    "type": "message", "role": "user", "content": [{"type": "input_text", "text": (
        "<turn_aborted>\nThe user interrupted the previous turn on purpose. Any running "
        "unified exec processes may still be running in the background. If any tools/commands "
        "were aborted, they may have partially executed.\n</turn_aborted>")}],
}))


class TurnSpec(msgspec.Struct, frozen=True):
    """What a thread hands the turn it starts."""

    config: ThreadConfig
    turn_id: str
    model: Any
    thread: Mailbox[ThreadInbox]
    approvals: Mailbox[ApprovalsInbox]
    processes: ProcessTable
    recorder: Recorder
    #: Appends to the thread's rollout (``wait=False``: no ack needed); a
    #: no-op for an ephemeral thread.
    persist: Callable[..., Awaitable[None]]
    history: tuple[msgspec.Raw, ...]
    #: The user's message (None for a compact turn) and its Responses item.
    user_item: UserMessageItem | None
    user_raw: msgspec.Raw | None
    usage: TokenUsageBreakdown
    subscribers: tuple[ConnectionRef, ...]
    #: ``regular``, ``compact`` (thread/compact/start), ``shell``
    #: (thread/shellCommand) or ``review`` (review/start).
    kind: str = "regular"
    #: Compact before the user's message joins the history: the thread's
    #: context was past its limit. The turn then records the message itself.
    compact_first: bool = False
    #: Tokens in the model's context as the last response left it.
    context_tokens: int = 0
    #: turn/start's ``outputSchema``: every request of this turn asks the
    #: model for JSON that fits it (``text.format``, strict).
    output_schema: Any = None
    #: A ``shell`` turn's command and timeout (thread/shellCommand).
    shell_command: tuple[str, int | None] | None = None
    #: A ``review`` turn's target (review/start), as the request gave it.
    review_target: dict[str, Any] | None = None
    #: The MCP pool: the turn asks it for the thread's servers (None: no MCP).
    mcp: Mailbox[McpPoolInbox] | None = None
    #: The server's per-thread event numbers: every event the turn sends
    #: its subscribers takes its thread's next one.
    numbers: EventNumbers = msgspec.field(default_factory=EventNumbers)


async def kept_out(*_lines: Any, **_options: Any) -> None:
    """The reviewer's persist: its own items stay out of the thread's rollout."""


def user_message_lines(item: UserMessageItem, raw: msgspec.Raw, thread_id: str, turn_id: str) -> tuple[Any, ...]:
    """The rollout lines of a user message: the history item and the
    completed turn item."""
    return (ResponseItem(raw), ItemCompletedEvent.of(core_item(item), thread_id=thread_id, turn_id=turn_id,
                                                      completed_at_ms=now_ms()))


class ToolCall:
    """One tool call of this turn, in call order."""

    def __init__(self, item: rs.FunctionCallItem | rs.CustomToolCallItem, waits_for: list[ToolCall]) -> None:
        self.item = item
        self.waits_for = waits_for
        self.done = trio.Event()
        self.started = trio.current_time()
        self.outcome: ToolOutcome | None = None


def open_turn_mailbox(turn_id: str) -> tuple[Mailbox[TurnInbox], Inbox[TurnInbox]]:
    """The mailbox of a turn, which its thread opens, sends to and closes
    (the turn only reads it). What the thread sends never waits for room:
    when the mailbox is full, subscriber changes fold into the latest set and
    steered input into one batch, behind what is queued."""
    return open_mailbox(TURN_CAPACITY, name=f"turn:{turn_id}", policies={
        SubscribersChanged: Coalesce(key=lambda _: "subscribers", merge=lambda _, new: new),
        Steered: Coalesce(key=lambda _: "steered", merge=lambda old, new: Steered(old.items + new.items)),
    })
