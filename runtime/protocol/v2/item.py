"""Thread items, user input, and the item lifecycle and delta notifications."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from ..rust import USIZE
from ._base import Leaf, Wire


class ByteRange(Wire, frozen=True):
    start: USIZE
    end: USIZE


class TextElement(Wire, frozen=True):
    byte_range: ByteRange
    placeholder: str | None = None


class TextInput(Wire, frozen=True, tag_field="type", tag="text"):
    text: str
    # snake_case on the wire, unlike its neighbours (the original's schema).
    text_elements: list[TextElement] = msgspec.field(default_factory=list, name="text_elements")


class ImageInput(Wire, frozen=True, tag_field="type", tag="image"):
    url: str | None = None
    file_id: str | None = None
    detail: str | None = None


class LocalImageInput(Wire, frozen=True, tag_field="type", tag="localImage"):
    path: str
    detail: str | None = None


class SkillInput(Wire, frozen=True, tag_field="type", tag="skill"):
    name: str
    path: str


class MentionInput(Wire, frozen=True, tag_field="type", tag="mention"):
    name: str
    path: str


UserInput = TextInput | ImageInput | LocalImageInput | SkillInput | MentionInput


class UserMessageItem(Wire, frozen=True, tag_field="type", tag="userMessage"):
    id: str
    content: list[UserInput]
    client_id: str | None = None


class AgentMessageItem(Wire, frozen=True, tag_field="type", tag="agentMessage"):
    id: str
    text: str
    phase: str | None = None
    moderation: Any = None
    memory_citation: Any = None
    delivery: str | None = None
    questions: Any = None


class ReasoningItem(Wire, frozen=True, tag_field="type", tag="reasoning"):
    id: str
    summary: list[str] = []
    content: list[str] = []


class CommandExecutionItem(Wire, frozen=True, tag_field="type", tag="commandExecution"):
    id: str
    command: str
    cwd: str
    command_actions: list[Any]
    status: Literal["inProgress", "completed", "failed", "declined"]
    source: Literal["agent", "userShell", "unifiedExecStartup", "unifiedExecInteraction"] = "agent"
    process_id: str | None = None
    aggregated_output: str | None = None
    exit_code: int | None = None
    duration_ms: int | None = None
    plugin_id: str | None = None
    script_path: str | None = None


class PatchChangeKind(msgspec.Struct, frozen=True):
    """``{"type": "add"}``, ``{"type": "delete"}`` or ``{"type": "update",
    "move_path": str | null}``, as the original writes them (snake_case
    ``move_path``, present, maybe null, on updates only)."""

    type: Literal["add", "delete", "update"]
    move_path: str | None | msgspec.UnsetType = msgspec.UNSET

    def __post_init__(self) -> None:
        if self.type == "update" and self.move_path is msgspec.UNSET:
            msgspec.structs.force_setattr(self, "move_path", None)
        elif self.type != "update" and self.move_path is None:
            msgspec.structs.force_setattr(self, "move_path", msgspec.UNSET)


class FileUpdateChange(Wire, frozen=True):
    path: str
    kind: PatchChangeKind
    diff: str


class FileChangeItem(Wire, frozen=True, tag_field="type", tag="fileChange"):
    id: str
    changes: list[FileUpdateChange]
    status: Literal["inProgress", "completed", "failed", "declined"]


class PlanItem(Wire, frozen=True, tag_field="type", tag="plan"):
    id: str
    text: str


class ContextCompactionItem(Wire, frozen=True, tag_field="type", tag="contextCompaction"):
    """The history was compacted: the model summarized it, and the summary
    with the newest user messages replaced it."""

    id: str
    started_at_ms: int | None = None
    completed_at_ms: int | None = None


class EnteredReviewModeItem(Wire, frozen=True, tag_field="type", tag="enteredReviewMode"):
    """A review began (``review/start``); ``review`` is its hint."""

    id: str
    review: str


class ExitedReviewModeItem(Wire, frozen=True, tag_field="type", tag="exitedReviewMode"):
    """A review ended; ``review`` is the reviewer's rendered answer."""

    id: str
    review: str


class McpToolCallItem(Wire, frozen=True, tag_field="type", tag="mcpToolCall", omit_defaults=False):
    """A call of an MCP server's tool, as the original's app-server sends it."""

    id: str
    server: str
    tool: str
    status: Literal["inProgress", "completed", "failed"]
    arguments: Any
    started_at_ms: int
    app_context: Any = None
    mcp_app_ui: Any = None
    plugin_id: str | None = None
    read_only_hint: bool | None = None
    result: Any = None
    error: Any = None
    duration_ms: int | None = None
    completed_at_ms: int | None = None


class McpToolCallProgress(Wire, frozen=True):
    """``item/mcpToolCall/progress``: the server's progress message."""

    thread_id: str
    turn_id: str
    item_id: str
    message: str


ThreadItem = (UserMessageItem | AgentMessageItem | ReasoningItem | CommandExecutionItem
              | FileChangeItem | PlanItem | ContextCompactionItem | EnteredReviewModeItem | ExitedReviewModeItem
              | McpToolCallItem)


class ItemStarted(Wire, frozen=True):
    item: ThreadItem
    thread_id: str
    turn_id: str
    started_at_ms: int


class ItemCompleted(Wire, frozen=True):
    item: ThreadItem
    thread_id: str
    turn_id: str
    completed_at_ms: int
    content_token_count: int | None = None


class ItemDelta(Leaf, frozen=True):
    """A piece of an item's content as it streams."""

    thread_id: str
    turn_id: str
    item_id: str
    delta: str


class AgentMessageDelta(ItemDelta, frozen=True):
    pass


class ReasoningSummaryTextDelta(ItemDelta, frozen=True):
    summary_index: int


class ReasoningSummaryPartAdded(Leaf, frozen=True):
    thread_id: str
    turn_id: str
    item_id: str
    summary_index: int


class ReasoningTextDelta(ItemDelta, frozen=True):
    content_index: int


class CommandExecutionOutputDelta(ItemDelta, frozen=True):
    pass


class FileChangePatchUpdated(Wire, frozen=True):
    thread_id: str
    turn_id: str
    item_id: str
    changes: list[FileUpdateChange]
