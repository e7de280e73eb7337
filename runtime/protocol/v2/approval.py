"""Server requests that ask the client for a decision, and their answers."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from ._base import Wire


class CommandExecutionRequestApprovalParams(Wire, frozen=True):
    thread_id: str
    turn_id: str
    item_id: str
    started_at_ms: int
    command: str
    cwd: str
    command_actions: list[Any]
    reason: str | None = None
    kind: str = "command"
    environment_id: str = "local"
    proposed_execpolicy_amendment: list[str] | None = None
    available_decisions: list[Any] | None = None


class FileChangeRequestApprovalParams(Wire, frozen=True):
    thread_id: str
    turn_id: str
    item_id: str
    started_at_ms: int
    reason: str | None = None
    grant_root: str | None = None


class ApprovalResponse(msgspec.Struct, frozen=True):
    """The client's answer to either approval request."""

    decision: str | dict[str, Any]


class ElicitationResponse(msgspec.Struct, frozen=True):
    """The client's answer to ``mcpServer/elicitation/request``."""

    action: Literal["accept", "decline", "cancel"]
    content: Any = None


class McpElicitationParams(Wire, frozen=True):
    """``mcpServer/elicitation/request`` in form mode, as the original asks
    whether an MCP tool may run (``_meta.codex_approval_kind``)."""

    thread_id: str
    turn_id: str | None
    server_name: str
    message: str
    requested_schema: dict[str, Any]
    meta: dict[str, Any] | None = msgspec.field(default=None, name="_meta")
    mode: str = "form"


class ServerRequestResolved(Wire, frozen=True):
    thread_id: str
    request_id: int


class GranularApprovalFlags(msgspec.Struct, frozen=True, kw_only=True):
    """The switches of a granular approval policy, snake_case on the wire as
    the original's ``AskForApproval::Granular`` variant writes them (all
    five, in this order); ``True`` lets a flow ask the user, ``False``
    rejects its requests automatically. Unknown switches are ignored."""

    sandbox_approval: bool
    rules: bool
    skill_approval: bool = False
    request_permissions: bool = False
    mcp_elicitations: bool


class GranularAskForApproval(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``{"granular": {...}}``: the original's externally tagged variant, a
    map with that single key."""

    granular: GranularApprovalFlags


# "on-failure" was removed from the protocol: the original refuses it.
AskForApproval = Literal["untrusted", "on-request", "never"] | GranularAskForApproval
