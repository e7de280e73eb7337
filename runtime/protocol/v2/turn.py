"""Turns: `turn/start`, `turn/interrupt`, the turn lifecycle notifications,
errors and token usage."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from ._base import Wire
from .approval import AskForApproval
from .item import ThreadItem, UserInput

TurnStatus = Literal["inProgress", "completed", "interrupted", "failed"]

# CodexErrorInfo is a bare string ("unauthorized") or a one-key object
# ({"responseStreamDisconnected": {"httpStatusCode": 502}}).
CodexErrorInfo = str | dict[str, Any]


class TurnError(Wire, frozen=True):
    message: str
    codex_error_info: CodexErrorInfo | None = None
    additional_details: str | None = None


class Turn(Wire, frozen=True):
    id: str
    items: list[ThreadItem]
    status: TurnStatus
    items_view: Literal["notLoaded", "summary", "full"] = "notLoaded"
    error: TurnError | None = None
    started_at: int | None = None
    completed_at: int | None = None
    duration_ms: int | None = None
    root_turn_id: str | None = None


class TurnStartParams(Wire, frozen=True):
    thread_id: str
    input: list[UserInput]
    cwd: str | None = None
    approval_policy: AskForApproval | None = None
    approvals_reviewer: str | None = None
    sandbox_policy: dict[str, Any] | None = None
    #: A permissions profile id for this turn and the next; not with ``sandboxPolicy``.
    permissions: str | None = None
    model: str | None = None
    effort: str | None = None
    summary: str | None = None
    service_tier: str | None = None
    output_schema: Any = None
    #: ``{mode: "plan"|"default", settings: {model, reasoning_effort,
    #: developer_instructions}}``: the collaboration mode for this turn and
    #: the next (a preset of ``collaborationMode/list``).
    collaboration_mode: CollaborationMode | None = None


class CollaborationSettings(msgspec.Struct, frozen=True):
    model: str | None = None
    reasoning_effort: str | None = None
    developer_instructions: str | None = None


class CollaborationMode(msgspec.Struct, frozen=True):
    mode: Literal["plan", "default"]
    settings: CollaborationSettings = CollaborationSettings()


class ThreadSettingsUpdateParams(Wire, frozen=True):
    """``thread/settings/update``: settings for the thread's next turns, as
    a turn/start's overrides would set them, ``collaborationMode`` (the
    TUI's mode switch) included (the fields we act on; the rest, such as
    ``personality``, are accepted and have no effect here)."""

    thread_id: str
    cwd: str | None = None
    approval_policy: AskForApproval | None = None
    approvals_reviewer: str | None = None
    sandbox_policy: dict[str, Any] | None = None
    permissions: str | None = None
    model: str | None = None
    effort: str | None = None
    summary: str | None = None
    service_tier: str | None = None
    collaboration_mode: CollaborationMode | None = None


class TurnStartResponse(Wire, frozen=True):
    turn: Turn


class TurnInterruptParams(Wire, frozen=True):
    thread_id: str
    turn_id: str


class TurnStarted(Wire, frozen=True):
    thread_id: str
    turn: Turn


class TurnCompleted(Wire, frozen=True):
    thread_id: str
    turn: Turn


class ErrorNotification(Wire, frozen=True):
    error: TurnError
    will_retry: bool
    thread_id: str
    turn_id: str


class TokenUsageBreakdown(Wire, frozen=True):
    total_tokens: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_output_tokens: int = 0
    cache_write_input_tokens: int = 0

    @classmethod
    def of(cls, counts: Any) -> TokenUsageBreakdown:
        """From any token counts with these field names (a Responses usage,
        a rollout's token count); a count it lacks is 0."""
        return cls(**{f: getattr(counts, f, 0) for f in cls.__struct_fields__})

    def plus(self, other: TokenUsageBreakdown) -> TokenUsageBreakdown:
        return TokenUsageBreakdown(*(a + b for a, b in zip(msgspec.structs.astuple(self),
                                                             msgspec.structs.astuple(other))))

    def minus(self, other: TokenUsageBreakdown) -> TokenUsageBreakdown:
        return TokenUsageBreakdown(*(a - b for a, b in zip(msgspec.structs.astuple(self),
                                                             msgspec.structs.astuple(other))))


class ThreadTokenUsage(Wire, frozen=True):
    total: TokenUsageBreakdown
    last: TokenUsageBreakdown
    model_context_window: int | None = None


class ThreadTokenUsageUpdated(Wire, frozen=True):
    thread_id: str
    turn_id: str
    token_usage: ThreadTokenUsage


class TurnDiffUpdated(Wire, frozen=True):
    thread_id: str
    turn_id: str
    diff: str


class TurnPlanStep(Wire, frozen=True):
    step: str
    status: Literal["pending", "inProgress", "completed"]


class TurnPlanUpdated(Wire, frozen=True):
    thread_id: str
    turn_id: str
    plan: list[TurnPlanStep]
    explanation: str | None = None


class TurnSteerParams(Wire, frozen=True):
    thread_id: str
    input: list[UserInput]
    expected_turn_id: str


class TurnSteerResponse(Wire, frozen=True):
    turn_id: str
