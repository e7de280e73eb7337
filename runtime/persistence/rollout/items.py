"""The core's turn items: what an ``item_completed`` line records of each
item of a turn, and how a live v2 item becomes that record
(:func:`core_item`).

0.169 records, and so do we (checked against its files,
``tests/fixtures/original/tools/``):

``UserMessage``, ``AgentMessage``, ``Reasoning``, ``Plan``, ``ContextCompaction``
    the conversation's items.
``EnteredReviewMode``, ``ExitedReviewMode``
    a review's start (its target and hint) and end (the parsed answer).
``CommandExecution``
    ``{id, process_id?, command: [argv], cwd: "file:///…", parsed_cmd:
    [{"type": "read"|"list_files"|"search"|"unknown", "cmd", …}], source:
    "agent"|"user_shell"|"unified_exec_startup"|"unified_exec_interaction",
    status: "completed"|"failed"|…, aggregated_output?, exit_code?, duration?:
    {secs, nanos}}``. A declined command is not recorded.
``FileChange``
    ``{id, changes: {path: {"type": "add"|"delete", "content"} | {"type":
    "update", "unified_diff", "move_path"}}, status, stdout?, stderr?}``.
``McpToolCall``
    ``{id, server, tool, status, arguments, result, error, duration}``.

How :mod:`.replayed` shows them again is the other direction. Sans-I/O.
"""

from __future__ import annotations

import os
import shlex
from typing import Any, overload
from urllib.parse import quote

import msgspec
from msgspec import Struct

from ...files.apply_patch import moved_diff
from ...protocol.v2 import item as v2
from .casing import snake


class Record(Struct, omit_defaults=True):
    """A record of the file (a line's payload, or an item inside one).
    Optional fields are omitted on write when unset, as the original's
    ``skip_serializing_if`` omits them. Fields the original requires have
    no default, so that omitting defaults on write can never drop one
    (0.169 skips a line that lacks one, such as a ``turn_aborted`` without
    its ``reason``); a line that lacks one on read is kept as unknown and
    ignored, as the original ignores it."""


class Duration(Struct):
    """A Rust ``std::time::Duration`` as serde writes it."""

    secs: int = 0
    nanos: int = 0

    @classmethod
    def of_ms(cls, ms: int) -> Duration:
        return cls(ms // 1000, ms % 1000 * 1_000_000)

    def ms(self) -> int:
        return self.secs * 1000 + self.nanos // 1_000_000


class _CoreItem(Record, tag_field="type"):
    pass


class CoreUserMessage(_CoreItem, kw_only=True, tag="UserMessage"):
    id: str
    #: The core's user input: ``{"type": "text", "text", "text_elements"}``,
    #: ``{"type": "image", "image_url"}``, ``{"type": "local_image", "path"}``, …
    content: list[Any]


class CoreAgentMessage(_CoreItem, kw_only=True, tag="AgentMessage"):
    id: str
    #: ``[{"type": "Text", "text": …}]``
    content: list[Any]
    phase: str | None = None
    memory_citation: Any = None


class CoreReasoning(_CoreItem, kw_only=True, tag="Reasoning"):
    id: str
    summary_text: list[str]
    raw_content: list[str]


class CoreContextCompaction(_CoreItem, kw_only=True, tag="ContextCompaction"):
    id: str


class CorePlan(_CoreItem, kw_only=True, tag="Plan"):
    id: str
    text: str


class CoreEnteredReviewMode(_CoreItem, kw_only=True, tag="EnteredReviewMode"):
    """A review began: its target as review/start gave it, and its hint."""

    id: str
    target: Any
    user_facing_hint: str


class CoreExitedReviewMode(_CoreItem, kw_only=True, tag="ExitedReviewMode"):
    """A review ended: the reviewer's answer as parsed (``findings``,
    ``overall_correctness``, ``overall_explanation``, ``overall_confidence_score``)."""

    id: str
    review_output: Any


class CoreCommandExecution(_CoreItem, kw_only=True, tag="CommandExecution"):
    id: str
    process_id: str | None = None
    command: list[str]
    cwd: str
    parsed_cmd: list[Any]
    source: str
    interaction_input: str | None = None
    status: str
    stdout: str | None = None
    stderr: str | None = None
    aggregated_output: str | None = None
    exit_code: int | None = None
    duration: Duration | None = None
    formatted_output: str | None = None


class CoreFileChange(_CoreItem, kw_only=True, tag="FileChange"):
    id: str
    changes: dict[str, Any]
    status: str | None = None
    auto_approved: bool | None = None
    stdout: str | None = None
    stderr: str | None = None


class McpToolCallFields(Struct, kw_only=True):
    """The keys an MCP tool call's record and its replayed item share, in
    the order both write them."""

    id: str
    server: str
    tool: str
    status: str
    arguments: Any = None
    result: Any = None
    error: Any = None


class CoreMcpToolCall(_CoreItem, McpToolCallFields, kw_only=True, tag="McpToolCall"):
    """As the original records an MCP tool call (read back by
    :func:`~.replayed.replay_mcp_tool_call`)."""

    duration: Duration | None = None
    mcp_app_resource_uri: str | None = None
    plugin_id: str | None = None


CoreTurnItem = (CoreUserMessage | CoreAgentMessage | CoreReasoning | CoreContextCompaction | CorePlan
                | CoreCommandExecution | CoreFileChange | CoreEnteredReviewMode | CoreExitedReviewMode
                | CoreMcpToolCall)
"""The items of the core's ``TurnItem`` written here. The replay also
reads ``WebSearch`` items (:mod:`.replayed`); others (image generations,
…) are kept raw and not shown."""


core_item_decoder = msgspec.json.Decoder(CoreTurnItem)


@overload
def core_item(item: v2.UserMessageItem | v2.AgentMessageItem | v2.ReasoningItem | v2.PlanItem
              | v2.ContextCompactionItem) -> CoreTurnItem: ...
@overload
def core_item(item: Any) -> CoreTurnItem | None: ...
def core_item(item: Any) -> CoreTurnItem | None:
    """The core item an ``item_completed`` line records for a v2 thread item
    (user and agent messages, reasoning, plans, compactions, command
    executions, file changes); None for the others and for a declined
    command, which the original does not record."""
    match item:
        case v2.UserMessageItem(id=item_id, content=content):
            return CoreUserMessage(id=item_id, content=[
                {"type": "text", "text": part.text, "text_elements": []} if isinstance(part, v2.TextInput)
                else msgspec.to_builtins(part) for part in content])
        case v2.AgentMessageItem(id=item_id, text=text, phase=phase):
            return CoreAgentMessage(id=item_id, content=[{"type": "Text", "text": text}], phase=phase)
        case v2.ReasoningItem(id=item_id, summary=summary, content=content):
            return CoreReasoning(id=item_id, summary_text=list(summary), raw_content=list(content))
        case v2.PlanItem(id=item_id, text=text):
            return CorePlan(id=item_id, text=text)
        case v2.ContextCompactionItem(id=item_id):
            return CoreContextCompaction(id=item_id)
        case v2.CommandExecutionItem():
            return core_command_execution(item)
        case v2.FileChangeItem():
            return core_file_change(item)
        case v2.McpToolCallItem():
            return core_mcp_tool_call(item)
    return None


def core_mcp_tool_call(item: Any) -> CoreMcpToolCall:
    """The record of a v2 ``mcpToolCall`` item."""
    result = item.result
    if isinstance(result, dict):
        result = {"content": result.get("content") or [], "structured_content": result.get("structuredContent"),
                  "_meta": result.get("_meta")}
    return CoreMcpToolCall(id=item.id, server=item.server, tool=item.tool, status=snake(item.status),
                           arguments=item.arguments, result=result, error=item.error,
                           duration=None if item.duration_ms is None else Duration.of_ms(item.duration_ms))


_ACTION_KINDS = {"listFiles": "list_files"}


def core_command_execution(item: Any) -> CoreCommandExecution | None:
    """The record of a v2 ``commandExecution`` item; None for a declined
    one, which the original does not record."""
    if item.status == "declined":
        return None
    try:
        argv = shlex.split(item.command)
    except ValueError:
        argv = [item.command]
    parsed = []
    for action in msgspec.to_builtins(item.command_actions):
        kind = action.pop("type", "unknown")
        action["cmd"] = action.pop("command", "")
        parsed.append({"type": _ACTION_KINDS.get(kind, kind), **action})
    return CoreCommandExecution(
        id=item.id, process_id=item.process_id, command=argv, cwd=_path_uri(item.cwd), parsed_cmd=parsed,
        source=snake(item.source), status=snake(item.status), aggregated_output=item.aggregated_output or "",
        exit_code=item.exit_code, duration=None if item.duration_ms is None else Duration.of_ms(item.duration_ms))


def core_file_change(item: Any) -> CoreFileChange:
    """The record of a v2 ``fileChange`` item."""
    changes: dict[str, Any] = {}
    for change in item.changes:
        kind, move = change.kind.type, change.kind.move_path
        if kind == "update":
            diff = change.diff
            suffix = moved_diff("", move)
            if suffix and diff.endswith(suffix):
                diff = diff[:-len(suffix)]
            changes[change.path] = {"type": "update", "unified_diff": diff, "move_path": move}
        else:
            changes[change.path] = {"type": kind, "content": change.diff}
    return CoreFileChange(id=item.id, changes=changes, status=snake(item.status))


def _path_uri(path: str) -> str:
    """A path as the original's ``PathUri`` writes it: ``file://`` and the
    path, percent-encoded."""
    return "file://" + quote(path, safe="/") if os.path.isabs(path) else path
