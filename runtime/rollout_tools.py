"""The tool items of a rollout: command executions, file changes, MCP tool
calls and web searches, as codex-cli 0.169.0 records them in
``item_completed`` events and as ``thread/read`` / ``thread/resume`` give
them back (``runtime/rollout.py`` holds the rest of the format).

What 0.169 writes (checked against its files, ``tests/fixtures/original/
tools/``), and how it reads them back:

``CommandExecution``
    ``{id, process_id?, command: [argv], cwd: "file:///…", parsed_cmd:
    [{"type": "read"|"list_files"|"search"|"unknown", "cmd", …}], source:
    "agent"|"user_shell"|"unified_exec_startup"|"unified_exec_interaction",
    status: "completed"|"failed"|…, aggregated_output?, exit_code?, duration?:
    {secs, nanos}}``. Read back: ``command`` shell-joined, ``cwd`` a path,
    read actions' paths made absolute against the cwd, camelCase enums,
    ``durationMs``, an empty output as ``aggregatedOutput: null``. A
    declined command is not recorded (0.169 writes no item for it).
``FileChange``
    ``{id, changes: {path: {"type": "add"|"delete", "content"} | {"type":
    "update", "unified_diff", "move_path"}}, status, stdout?, stderr?}``.
    Read back: the changes sorted by path, each ``{path, kind: {type,
    move_path?}, diff}``; a move's diff ends in ``"\\n\\nMoved to: <dest>"``.
``McpToolCall``, ``WebSearch``
    never written here (no MCP server or web search runs yet) but read back
    from the original's files; the MCP item's keys are read in either case.

Everything here is sans-I/O.
"""

from __future__ import annotations

import os
import re
import shlex
from typing import Any, TypedDict, Unpack
from urllib.parse import quote, unquote, urlsplit

import msgspec
from msgspec import Struct

from .apply_patch import moved_diff
from .command_safety import shlex_join

__all__ = [
    "CoreCommandExecution",
    "CoreFileChange",
    "Duration",
    "ReplayedCommandExecution",
    "ReplayedFileChange",
    "ReplayedMcpToolCall",
    "ReplayedWebSearch",
    "ReplayTimes",
    "core_command_execution",
    "core_file_change",
    "replay_command_execution",
    "replay_file_change",
    "replay_mcp_tool_call",
    "CoreMcpToolCall",
    "core_mcp_tool_call",
    "replay_web_search",
]


class ReplayTimes(TypedDict):
    """When a replayed item started and completed (ms), from its turn's events."""

    started_at_ms: int | None
    completed_at_ms: int | None


class Duration(Struct):
    """A Rust ``std::time::Duration`` as serde writes it."""

    secs: int = 0
    nanos: int = 0

    @classmethod
    def of_ms(cls, ms: int) -> Duration:
        return cls(ms // 1000, ms % 1000 * 1_000_000)

    def ms(self) -> int:
        return self.secs * 1000 + self.nanos // 1_000_000


class _Core(Struct, omit_defaults=True, tag_field="type"):
    """A core turn item: optional fields omitted when unset, as the
    original's ``skip_serializing_if`` omits them."""


class CoreCommandExecution(_Core, kw_only=True, tag="CommandExecution"):
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


class CoreFileChange(_Core, kw_only=True, tag="FileChange"):
    id: str
    changes: dict[str, Any]
    status: str | None = None
    auto_approved: bool | None = None
    stdout: str | None = None
    stderr: str | None = None


class CoreMcpToolCall(_Core, kw_only=True, tag="McpToolCall"):
    """As the original records an MCP tool call (read back by
    :func:`replay_mcp_tool_call`)."""

    id: str
    server: str
    tool: str
    status: str
    arguments: Any = None
    result: Any = None
    error: Any = None
    duration: Duration | None = None
    mcp_app_resource_uri: str | None = None
    plugin_id: str | None = None


def core_mcp_tool_call(item: Any) -> CoreMcpToolCall:
    """The record of a v2 ``mcpToolCall`` item."""
    result = item.result
    if isinstance(result, dict):
        result = {"content": result.get("content") or [], "structured_content": result.get("structuredContent"),
                  "_meta": result.get("_meta")}
    return CoreMcpToolCall(id=item.id, server=item.server, tool=item.tool, status=_snake(item.status),
                           arguments=item.arguments, result=result, error=item.error,
                           duration=None if item.duration_ms is None else Duration.of_ms(item.duration_ms))


class _Camel(Struct, rename="camel"):
    pass


class ReplayedCommandExecution(_Camel, kw_only=True, tag_field="type", tag="commandExecution"):
    """Keys as the live ``commandExecution`` item, plus the item's times."""

    id: str
    command: str
    cwd: str
    command_actions: list[Any] = []
    status: str = "completed"
    source: str = "agent"
    process_id: str | None = None
    aggregated_output: str | None = None
    exit_code: int | None = None
    duration_ms: int | None = None
    plugin_id: str | None = None
    script_path: str | None = None
    started_at_ms: int | None = None
    completed_at_ms: int | None = None


class ReplayedFileChange(_Camel, kw_only=True, tag_field="type", tag="fileChange"):
    id: str
    changes: list[Any] = []
    status: str = "completed"
    started_at_ms: int | None = None
    completed_at_ms: int | None = None


class ReplayedMcpToolCall(_Camel, kw_only=True, tag_field="type", tag="mcpToolCall"):
    id: str
    server: str
    tool: str
    status: str
    arguments: Any = None
    result: Any = None
    error: Any = None
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


# --------------------------------------------------------------------------
# Names: the core's snake_case <-> the v2 camelCase
# --------------------------------------------------------------------------

_UPPER = re.compile(r"(?<!^)(?=[A-Z])")


def _snake(name: str) -> str:
    return _UPPER.sub("_", name).lower()


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _path_uri(path: str) -> str:
    """A path as the original's ``PathUri`` writes it: ``file://`` and the
    path, percent-encoded."""
    return "file://" + quote(path, safe="/") if os.path.isabs(path) else path


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
    return raw[name] if name in raw else raw.get(_camel(name))


# --------------------------------------------------------------------------
# Command executions
# --------------------------------------------------------------------------

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
        source=_snake(item.source), status=_snake(item.status), aggregated_output=item.aggregated_output or "",
        exit_code=item.exit_code, duration=None if item.duration_ms is None else Duration.of_ms(item.duration_ms))


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
        status=_camel(item.status), source=_camel(item.source), process_id=item.process_id,
        aggregated_output=item.aggregated_output or None, exit_code=item.exit_code,
        duration_ms=_ms(item.duration), **times)


# --------------------------------------------------------------------------
# File changes
# --------------------------------------------------------------------------

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
    return CoreFileChange(id=item.id, changes=changes, status=_snake(item.status))


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
    return ReplayedFileChange(id=item.id, changes=changes, status=_camel(item.status or "completed"), **times)


# --------------------------------------------------------------------------
# Read only: MCP tool calls and web searches
# --------------------------------------------------------------------------


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
        id=item_id, server=server, tool=tool, status=_camel(str(raw.get("status") or "completed")),
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
        action = {**action, "type": _camel(action["type"])}
    return ReplayedWebSearch(id=item_id, query=str(raw.get("query") or ""), action=action, **times)
