"""The items of a turn as ``thread/resume`` and ``thread/read`` give them
back from a rollout, and how each core record (:mod:`.items`) becomes one
(:func:`replayed_item`).

Encoded, a :class:`ReplayedTurn` is the v2 ``Turn`` object key for key, as
0.169 sends it for a thread it reads from disk: every item carries the
``startedAtMs`` / ``completedAtMs`` its ``item_completed`` line recorded
(which the live items of :mod:`...protocol.v2.item` do not send), and the
keys come in the original's order. Where that order is the live item's, the
replayed item *is* the live one plus those times (a subclass); a replayed
compaction is the live one.

How 0.169 reads the tool items back (``tests/fixtures/original/tools/``):
a command's ``command`` shell-joined, ``cwd`` a path, read actions' paths
made absolute against the cwd, camelCase enums, ``durationMs``, an empty
output as ``aggregatedOutput: null``; a file change's changes sorted by
path, each ``{path, kind: {type, move_path?}, diff}``, a move's diff ending
in ``"\\n\\nMoved to: <dest>"``; ``McpToolCall`` and ``WebSearch`` items
(which only the original writes) with their keys read in either case.
Sans-I/O.
"""

from __future__ import annotations

import os
from typing import Any, TypedDict, Unpack, cast
from urllib.parse import unquote, urlsplit

import msgspec
from msgspec import Struct

from ...files.apply_patch import moved_diff
from ...commands.safety import shlex_join
from ...conversation.review import parse_output as parse_review
from ...protocol.v2 import item as v2
from ...conversation.review import render as render_review
from .casing import camel
from .items import (
    CoreAgentMessage,
    CoreCommandExecution,
    CoreContextCompaction,
    CoreEnteredReviewMode,
    CoreExitedReviewMode,
    CoreFileChange,
    CoreMcpToolCall,
    CorePlan,
    CoreReasoning,
    CoreUserMessage,
    Duration,
    McpToolCallFields,
    core_item_decoder,
)
from .records import ItemCompletedEvent

_encoder = msgspec.json.Encoder()


class ReplayTimes(TypedDict):
    """When a replayed item started and completed (ms), from its turn's events."""

    started_at_ms: int | None
    completed_at_ms: int | None


class _Camel(Struct, rename="camel", gc=False):
    pass


class ReplayedUserMessage(_Camel, kw_only=True, tag_field="type", tag="userMessage"):
    id: str
    client_id: str | None = None
    #: v2 ``UserInput`` objects (``{"type": "text", "text", "text_elements"}``, …).
    content: list[Any] = []
    started_at_ms: int | None = None
    completed_at_ms: int | None = None


class ReplayedAgentMessage(_Camel, kw_only=True, tag_field="type", tag="agentMessage"):
    moderation: Any = None
    id: str
    text: str
    phase: str | None = None
    memory_citation: Any = None
    delivery: Any = None
    questions: Any = None
    started_at_ms: int | None = None
    completed_at_ms: int | None = None


# The live v2 items plus the times the file recorded: same keys, same
# order. The items above and below keep their own classes: their keys come
# in another order than the live item's, or they hold what the file says as
# it says it (user inputs of kinds the v2 types do not model, any status),
# which the v2 types, also used to decode, do not admit.


class ReplayedReasoning(v2.ReasoningItem, frozen=True, kw_only=True):
    started_at_ms: int | None = None
    completed_at_ms: int | None = None


class ReplayedPlan(v2.PlanItem, frozen=True, kw_only=True):
    started_at_ms: int | None = None
    completed_at_ms: int | None = None


class ReplayedEnteredReviewMode(v2.EnteredReviewModeItem, frozen=True, kw_only=True):
    started_at_ms: int | None = None
    completed_at_ms: int | None = None


class ReplayedExitedReviewMode(v2.ExitedReviewModeItem, frozen=True, kw_only=True):
    started_at_ms: int | None = None
    completed_at_ms: int | None = None


class ReplayedCommandExecution(v2.CommandExecutionItem, frozen=True, kw_only=True):
    started_at_ms: int | None = None
    completed_at_ms: int | None = None


class ReplayedFileChange(_Camel, kw_only=True, tag_field="type", tag="fileChange"):
    id: str
    changes: list[Any] = []
    status: str = "completed"
    started_at_ms: int | None = None
    completed_at_ms: int | None = None


class ReplayedMcpToolCall(_Camel, McpToolCallFields, kw_only=True, tag_field="type", tag="mcpToolCall"):
    """The keys of the record (:class:`~.items.CoreMcpToolCall`), camelCased,
    with the duration in ms, where the server ran and the item's times."""

    duration_ms: int | None = None
    mcp_app_resource_uri: str | None = None
    plugin_id: str | None = None
    #: Where the server ran (0.171; None when the rollout does not say).
    environment_id: str | None = None
    started_at_ms: int | None = None
    completed_at_ms: int | None = None


class ReplayedWebSearch(_Camel, kw_only=True, tag_field="type", tag="webSearch"):
    id: str
    query: str = ""
    action: Any = None
    started_at_ms: int | None = None
    completed_at_ms: int | None = None


ReplayedItem = (ReplayedEnteredReviewMode | ReplayedExitedReviewMode | ReplayedUserMessage | ReplayedAgentMessage
                | ReplayedReasoning
                | v2.ContextCompactionItem | ReplayedPlan | ReplayedCommandExecution | ReplayedFileChange
                | ReplayedMcpToolCall | ReplayedWebSearch)


class ReplayedTurnError(_Camel, kw_only=True):
    message: str
    codex_error_info: Any = None
    additional_details: str | None = None
    misalignment: Any = None


class ReplayedTurn(_Camel, kw_only=True):
    """A turn as ``thread/resume`` and ``thread/read`` return it: encoded,
    it is the v2 ``Turn`` object, key for key, as the original sends it."""

    id: str
    root_turn_id: str | None = None
    items: list[ReplayedItem] = []
    items_view: str = "full"
    status: str = "completed"
    error: ReplayedTurnError | None = None
    started_at: int | None = None
    completed_at: int | None = None
    duration_ms: int | None = None

# Core (rollout) user input -> v2 user input.
def v2_user_input(raw: dict[str, Any]) -> dict[str, Any]:
    kind = raw.get("type")
    if kind == "text":
        return {"type": "text", "text": raw.get("text", ""),
                "text_elements": [_v2_text_element(e) for e in raw.get("text_elements") or []]}
    if kind == "image":
        return {"type": "image", "url": raw.get("image_url", raw.get("url"))}
    if kind == "local_image":
        return {"type": "localImage", "path": raw.get("path")}
    if kind in ("skill", "mention"):
        return {"type": kind, "name": raw.get("name"), "path": raw.get("path")}
    return {camel(k): camel(v) if k == "type" and isinstance(v, str) else v for k, v in raw.items()}


def _v2_text_element(raw: dict[str, Any]) -> dict[str, Any]:
    rng = raw.get("byte_range") or raw.get("byteRange") or {}
    return {"byteRange": {"start": rng.get("start", 0), "end": rng.get("end", 0)},
            "placeholder": raw.get("placeholder")}


def _uri_path(text: str) -> str:
    """The path of a ``file://`` URI (older files wrote a plain path)."""
    return unquote(urlsplit(text).path) if text.startswith("file://") else text


def _ms(duration: Any) -> int | None:
    """Milliseconds of a serde ``Duration`` (``{secs, nanos}``)."""
    if isinstance(duration, Duration):
        return duration.ms()
    if isinstance(duration, dict):
        return int(duration.get("secs") or 0) * 1000 + int(duration.get("nanos") or 0) // 1_000_000
    return None


def _pick(raw: dict[str, Any], name: str) -> Any:
    """A field by its snake_case name, or its camelCase one."""
    return raw[name] if name in raw else raw.get(camel(name))


def _command_action(raw: dict[str, Any], cwd: str) -> dict[str, Any]:
    """A core ``ParsedCommand`` as a v2 ``CommandAction``; a read's path is
    made absolute against the command's cwd, as the app-server does."""
    kind = str(raw.get("type", "unknown"))
    cmd = raw.get("cmd", "")
    if kind == "read":
        return {"type": "read", "command": cmd, "name": raw.get("name", ""),
                "path": os.path.normpath(os.path.join(cwd, raw.get("path") or ""))}
    if kind == "list_files":
        return {"type": "listFiles", "command": cmd, "path": raw.get("path")}
    if kind == "search":
        return {"type": "search", "command": cmd, "query": raw.get("query"), "path": raw.get("path")}
    return {"type": "unknown", "command": cmd}


def replay_command_execution(item: CoreCommandExecution, **times: Unpack[ReplayTimes]) -> ReplayedCommandExecution:
    cwd = _uri_path(item.cwd)
    return ReplayedCommandExecution(
        id=item.id, command=shlex_join(item.command), cwd=cwd,
        command_actions=[_command_action(a, cwd) for a in item.parsed_cmd if isinstance(a, dict)],
        # As the file says them (the v2 Literals name what a live item sends).
        status=cast(Any, camel(item.status)), source=cast(Any, camel(item.source)), process_id=item.process_id,
        aggregated_output=item.aggregated_output or None, exit_code=item.exit_code,
        duration_ms=_ms(item.duration), **times)


def replay_file_change(item: CoreFileChange, **times: Unpack[ReplayTimes]) -> ReplayedFileChange:
    changes = []
    for path in sorted(item.changes):
        raw = item.changes[path] if isinstance(item.changes[path], dict) else {}
        kind = str(raw.get("type", "update"))
        if kind == "update":
            move = raw.get("move_path")
            changes.append({"path": path, "kind": {"type": "update", "move_path": move},
                            "diff": moved_diff(raw.get("unified_diff", ""), move)})
        else:
            changes.append({"path": path, "kind": {"type": kind}, "diff": raw.get("content", "")})
    return ReplayedFileChange(id=item.id, changes=changes, status=camel(item.status or "completed"), **times)


def replay_mcp_tool_call(raw: dict[str, Any], **times: Unpack[ReplayTimes]) -> ReplayedMcpToolCall | None:
    """An ``McpToolCall`` item (None when it lacks its required fields)."""
    item_id, server, tool = raw.get("id"), raw.get("server"), raw.get("tool")
    if not (isinstance(item_id, str) and isinstance(server, str) and isinstance(tool, str)):
        return None
    result = raw.get("result")
    if isinstance(result, dict):
        shown = {"content": result.get("content") or [],
                 "structuredContent": _pick(result, "structured_content")}
        if "_meta" in result:
            shown["_meta"] = result["_meta"]
        result = shown
    return ReplayedMcpToolCall(
        id=item_id, server=server, tool=tool, status=camel(str(raw.get("status") or "completed")),
        arguments=raw.get("arguments"), result=result, error=raw.get("error"),
        duration_ms=_ms(raw.get("duration")), mcp_app_resource_uri=_pick(raw, "mcp_app_resource_uri"),
        plugin_id=_pick(raw, "plugin_id"), environment_id=_pick(raw, "environment_id"), **times)


def replay_web_search(raw: dict[str, Any], **times: Unpack[ReplayTimes]) -> ReplayedWebSearch | None:
    """A ``WebSearch`` item: the action's ``type`` camelCased
    (``open_page`` -> ``openPage``)."""
    item_id = raw.get("id")
    if not isinstance(item_id, str):
        return None
    action = raw.get("action")
    if isinstance(action, dict) and isinstance(action.get("type"), str):
        action = {**action, "type": camel(action["type"])}
    return ReplayedWebSearch(id=item_id, query=str(raw.get("query") or ""), action=action, **times)


def replayed_item(event: ItemCompletedEvent, *, paginated: bool) -> ReplayedItem | None:
    """The item an ``item_completed`` line shows, or None when the replay
    does not show it: an item kind it does not know, and in a legacy file
    (``paginated`` False) every item but a plan, as 0.169 reads them."""
    times: ReplayTimes = {"started_at_ms": event.started_at_ms, "completed_at_ms": event.completed_at_ms}
    try:
        item = core_item_decoder.decode(event.item)
    except msgspec.ValidationError:
        if not paginated:
            return None
        # Items read leniently, whose exact keys this module does not write.
        try:
            raw = msgspec.json.decode(event.item)
        except msgspec.DecodeError:
            return None
        kind = raw.get("type") if isinstance(raw, dict) else None
        if kind == "McpToolCall":
            return replay_mcp_tool_call(raw, **times)
        if kind == "WebSearch":
            return replay_web_search(raw, **times)
        return None  # an item kind the replay does not show
    if not paginated and not isinstance(item, CorePlan):
        return None
    match item:
        case CoreUserMessage():
            return ReplayedUserMessage(id=item.id, content=[v2_user_input(c) for c in item.content], **times)
        case CoreAgentMessage():
            text = "".join(c.get("text", "") for c in item.content if c.get("type") == "Text")
            return ReplayedAgentMessage(id=item.id, text=text, phase=item.phase,
                                        memory_citation=item.memory_citation, **times)
        case CoreReasoning():
            return ReplayedReasoning(id=item.id, summary=item.summary_text, content=item.raw_content, **times)
        case CoreContextCompaction():
            return v2.ContextCompactionItem(id=item.id, **times)
        case CorePlan():
            return ReplayedPlan(id=item.id, text=item.text, **times)
        case CoreCommandExecution():
            return replay_command_execution(item, **times)
        case CoreFileChange():
            return replay_file_change(item, **times)
        case CoreEnteredReviewMode():
            return ReplayedEnteredReviewMode(id=item.id, review=item.user_facing_hint, **times)
        case CoreExitedReviewMode():
            # The rendered review, as the thread showed it (parsed again:
            # a file may hold any JSON there).
            review = render_review(parse_review(_encoder.encode(item.review_output).decode()))
            return ReplayedExitedReviewMode(id=item.id, review=review, **times)
        case CoreMcpToolCall():
            return replay_mcp_tool_call(msgspec.to_builtins(item), **times)
    return None
