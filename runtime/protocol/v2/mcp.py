"""The MCP methods' params: ``mcpServerStatus/list``, ``mcpServer/tool/call``
and ``mcpServer/resource/read`` (``config/mcpServer/reload`` takes none)."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from ..rust import U32
from ._base import Wire


class McpServerStatusListParams(Wire, frozen=True):
    cursor: str | None = None
    limit: U32 | None = None
    detail: Literal["full", "toolsAndAuthOnly"] | None = None
    thread_id: str | None = None
    server_name: str | None = None


class McpServerToolCallParams(Wire, frozen=True):
    thread_id: str
    server: str
    tool: str
    arguments: dict[str, Any] | None = None
    meta: Any = msgspec.field(default=None, name="_meta")


class McpServerResourceReadParams(Wire, frozen=True):
    server: str
    uri: str
    thread_id: str | None = None
    meta: Any = msgspec.field(default=None, name="_meta")


class McpServerResourceReadResponse(Wire, frozen=True):
    """``mcpServer/resource/read``'s answer: the server's ``contents``."""

    contents: list[dict[str, Any]]
    origin_call_id: None = None


class McpServerStartupStatusUpdated(Wire, frozen=True):
    """``mcpServer/startupStatus/updated``: ``starting``, then ``ready`` or
    ``failed`` (with the original's text in ``error``)."""

    thread_id: str
    name: str
    status: Literal["starting", "ready", "failed"]
    error: str | None = None
    failure_reason: None = None


class McpServerStatus(Wire, frozen=True):
    """One server of ``mcpServerStatus/list``. The MCP objects (serverInfo,
    capabilities, tools, resources) are the server's JSON, cut to the keys
    the original passes on (:func:`server_info`, :func:`capabilities`,
    :func:`tool_entry`)."""

    name: str
    runtime_status: Literal["connected", "failed"] | None
    plugin_id: None
    http_origin: None
    server_info: dict[str, Any] | None
    server_capabilities: dict[str, Any] | None
    tool_list_meta: None
    tools: dict[str, dict[str, Any]]
    tools_error: str | None
    resources: list[dict[str, Any]]
    resource_templates: list[dict[str, Any]]
    auth_status: Literal["unsupported"] = "unsupported"


class McpServerStatusListResponse(Wire, frozen=True):
    data: list[McpServerStatus]
    next_cursor: str | None = None


def server_info(info: dict[str, Any] | None) -> dict[str, Any]:
    """An MCP ``serverInfo`` as the original's ``McpServerInfo``."""
    info = info or {}
    return {k: info.get(k) for k in ("name", "title", "version", "description", "icons", "websiteUrl")}


def capabilities(caps: dict[str, Any] | None) -> dict[str, Any]:
    """An MCP server's capabilities, the three the original reports."""
    caps = caps or {}
    return {k: caps.get(k) for k in ("prompts", "resources", "tools")}


def tool_entry(tool: dict[str, Any]) -> dict[str, Any]:
    """An MCP tool with the keys the original's ``Tool`` keeps."""
    keys = ("name", "title", "description", "inputSchema", "outputSchema", "annotations", "icons", "_meta")
    return {k: tool[k] for k in keys if k in tool}
