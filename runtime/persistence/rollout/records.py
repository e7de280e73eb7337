"""The records of a rollout: one class per line type and per persisted
event, with the original's field names and order, and :class:`RolloutLine`,
a decoded line.

==================  =========================================================
``session_meta``    the first line: :class:`SessionMeta`
``response_item``   one Responses API item, kept byte-exact (:class:`ResponseItem`)
``turn_context``    the settings a turn ran with (:class:`TurnContext`)
``event_msg``       a persisted event (:data:`EVENT_TYPES`): turn starts and
                    ends, token counts, and the items of a turn
``compacted``       a compaction checkpoint: summary and replacement history
==================  =========================================================

What this module does not know is kept, not dropped: :class:`UnknownLine`
and :class:`UnknownEvent` hold the raw bytes, so a file written by a newer
release reads (and copies) without loss.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
from msgspec import Raw, Struct

from .items import CoreTurnItem, Record

_encoder = msgspec.json.Encoder()


class GitInfo(Record, kw_only=True):
    commit_hash: str | None = None
    branch: str | None = None
    repository_url: str | None = None


class BaseInstructions(Record, kw_only=True):
    text: str


class SessionMeta(Record, kw_only=True):
    """The first line of a rollout: who the thread is and where it runs."""

    account_scoped: bool | None = None
    session_id: str | None = None
    id: str
    forked_from_id: str | None = None
    parent_thread_id: str | None = None
    timestamp: str
    cwd: str
    runtime_workspace_roots: list[str] | None = None
    originator: str
    cli_version: str
    #: ``"cli"``, ``"vscode"``, ``"exec"``, ``"mcp"``, ``"unknown"``, or an
    #: object such as ``{"subagent": "review"}`` (see :func:`source_kind`).
    source: Any = "unknown"
    thread_source: str | None = None
    agent_nickname: str | None = None
    agent_role: str | None = None
    agent_path: str | None = None
    model_provider: str | None = None
    base_instructions: BaseInstructions | None = None
    dynamic_tools: list[Any] | None = None
    memory_mode: str | None = None
    history_mode: str | None = None
    context_window: Any = None
    git: GitInfo | None = None


class ResponseItem(Struct, frozen=True):
    """One Responses API input/output item, exactly as written."""

    raw: Raw


class TurnContext(Record, kw_only=True):
    """The settings one turn ran with; the newest one seeds a resumed
    thread's model and reasoning settings."""

    turn_id: str | None = None
    root_turn_id: str | None = None
    cwd: str
    current_date: str | None = None
    timezone: str | None = None
    approval_policy: Any
    approvals_reviewer: str | None = None
    sandbox_policy: Any
    permission_profile: Any = None
    #: ``{"id": ":read-only"}``: the profile the turn ran under (resume keeps it).
    active_permission_profile: Any = None
    model: str
    effort: str | None = None
    summary: Any
    personality: str | None = None
    collaboration_mode: Any = None
    user_instructions: str | None = None
    developer_instructions: str | None = None
    final_output_json_schema: Any = None
    truncation_policy: Any = None


class Compacted(Record, kw_only=True):
    """A compaction checkpoint. With ``replacement_history`` it is the whole
    history from here on; without it (older releases) the history is the
    user messages so far plus ``message``, the summary."""

    message: str
    replacement_history: list[Raw] | None = None


class UnknownLine(Struct, frozen=True):
    """A line type this module does not read (``world_state``,
    ``token_usage_record``, …), or a known one that did not decode."""

    type: str
    payload: Raw


class TokenUsage(Struct, kw_only=True):
    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_output_tokens: int = 0
    total_tokens: int = 0


class TokenUsageInfo(Record, kw_only=True):
    total_token_usage: TokenUsage
    last_token_usage: TokenUsage
    last_usage_includes_reasoning: bool | None = None
    model_context_window: int | None = None


class TurnError(Record, kw_only=True):
    message: str
    #: As the original writes it: snake_case (``"context_window_exceeded"``,
    #: ``{"http_connection_failed": {"http_status_code": 401}}``).
    codex_error_info: Any = None
    additional_details: str | None = None


class _Event(Record, tag_field="type"):
    pass


class TurnStartedEvent(_Event, kw_only=True, tag="task_started"):
    turn_attribution: Any = None
    turn_id: str
    root_turn_id: str | None = None
    started_at: int | None = None
    model_context_window: int | None = None
    collaboration_mode_kind: str | None = None


class TurnCompleteEvent(_Event, kw_only=True, tag="task_complete"):
    root_turn_id: str | None = None
    turn_id: str
    last_agent_message: str | None = None
    error: TurnError | None = None
    started_at: int | None = None
    completed_at: int | None = None
    duration_ms: int | None = None
    time_to_first_token_ms: int | None = None


class TurnAbortedEvent(_Event, kw_only=True, tag="turn_aborted"):
    root_turn_id: str | None = None
    turn_id: str | None = None
    #: ``"interrupted"``, ``"replaced"`` or ``"review_ended"``.
    reason: str
    started_at: int | None = None
    completed_at: int | None = None
    duration_ms: int | None = None

class ItemCompletedEvent(_Event, kw_only=True, tag="item_completed"):
    """A completed turn item, as 0.169 records it in paginated files. The
    item is kept raw: it may be one of the core's items not in
    :data:`CoreTurnItem`. Build one with :meth:`of`."""

    thread_id: str
    turn_id: str
    item: Raw
    started_at_ms: int | None = None
    completed_at_ms: int | None = None

    @classmethod
    def of(cls, item: CoreTurnItem, *, thread_id: str, turn_id: str, started_at_ms: int | None = None,
           completed_at_ms: int | None = None) -> ItemCompletedEvent:
        return cls(thread_id=thread_id, turn_id=turn_id, item=Raw(_encoder.encode(item)),
                   started_at_ms=started_at_ms, completed_at_ms=completed_at_ms)


class UserMessageEvent(_Event, kw_only=True, tag="user_message"):
    message: str
    images: list[str] | None = None
    local_images: list[str] = []
    text_elements: list[Any] = []


class AgentMessageEvent(_Event, kw_only=True, tag="agent_message"):
    message: str
    phase: str | None = None
    memory_citation: Any = None


class AgentReasoningEvent(_Event, kw_only=True, tag="agent_reasoning"):
    text: str


class AgentReasoningRawContentEvent(_Event, kw_only=True, tag="agent_reasoning_raw_content"):
    text: str


class TokenCountEvent(_Event, kw_only=True, tag="token_count"):
    info: TokenUsageInfo | None = None
    rate_limits: Any = None


class ThreadNameUpdatedEvent(_Event, kw_only=True, tag="thread_name_updated"):
    thread_id: str
    thread_name: str | None = None


class ContextCompactedEvent(_Event, kw_only=True, tag="context_compacted"):
    pass


class PlanUpdateEvent(_Event, kw_only=True, tag="plan_update"):
    """An ``update_plan`` call's arguments (``{step, status}`` steps,
    snake_case statuses), which 0.169 records in both history modes."""

    explanation: str | None = None
    plan: list[Any]


class ThreadRolledBackEvent(_Event, kw_only=True, tag="thread_rolled_back"):
    num_turns: int


class UnknownEvent(Struct, frozen=True):
    """An ``event_msg`` this module does not read (``thread_settings_applied``,
    …), kept raw."""

    type: str
    payload: Raw


KnownEvent = (
    TurnStartedEvent | TurnCompleteEvent | TurnAbortedEvent | ItemCompletedEvent
    | UserMessageEvent | AgentMessageEvent | AgentReasoningEvent | AgentReasoningRawContentEvent
    | TokenCountEvent | ThreadNameUpdatedEvent | ContextCompactedEvent | ThreadRolledBackEvent | PlanUpdateEvent
)
EVENT_TYPES: Final = frozenset(cls.__struct_config__.tag for cls in KnownEvent.__args__)
"""The ``event_msg`` types read here (the original persists these and more)."""

Payload = SessionMeta | ResponseItem | TurnContext | Compacted | KnownEvent | UnknownEvent | UnknownLine


class RolloutLine(Struct, frozen=True):
    timestamp: str
    payload: Payload
    ordinal: int | None = None

    @property
    def type(self) -> str:
        """The line's ``type`` on disk."""
        return line_type(self.payload)


def line_type(payload: Payload) -> str:
    """The ``type`` of the line that holds ``payload``."""
    if isinstance(payload, (_Event, UnknownEvent)):
        return "event_msg"
    if isinstance(payload, UnknownLine):
        return payload.type
    return _LINE_TYPES[type(payload)]


_LINE_TYPES: Final[dict[type, str]] = {
    SessionMeta: "session_meta", ResponseItem: "response_item",
    TurnContext: "turn_context", Compacted: "compacted",
}
