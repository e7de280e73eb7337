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
