"""What a thread runs with: its ThreadConfig fields from the settings, the
request and what its rollout recorded (start, resume, fork), its
permissions, and the checks of thread/metadata/update and
thread/loaded/list's paging. Pure: no actor, no I/O."""

from __future__ import annotations

import bisect
from typing import Any

import msgspec

from ...runtime.commands import permissions
from ...runtime.config import ApprovalMode, GranularApproval, Settings
from ...runtime.conversation.history import auto_compact_limit
from ...runtime.protocol.jsonrpc import invalid_request
from ...runtime.protocol.paging import page_size, thread_id_cursor
from ...runtime.persistence.rollout import TurnContext
from ...runtime.protocol.v2.approval import AskForApproval, GranularAskForApproval
from ...runtime.protocol.v2.thread import (
    ActivePermissionProfile,
    SandboxPolicy,
    ThreadLoadedListParams,
    ThreadLoadedListResponse,
    ThreadMetadataUpdateParams,
)


#: The context window the original assumes for a model it has no metadata
#: for; it reports 95 % of a window as usable.
FALLBACK_CONTEXT_WINDOW = 272_000


def common_fields(s: Settings, params: Any) -> dict[str, Any]:
    """The ThreadConfig fields a new thread and a loaded one take alike from
    the settings and the request (thread/start, resume, fork)."""
    return dict(
        approvals_reviewer=params.approvals_reviewer or "user",
        reasoning_summary=s.model_reasoning_summary,
        base_instructions=params.base_instructions or s.instructions,
        developer_instructions=params.developer_instructions or s.developer_instructions,
        codex_home=str(s.codex_home),
        model_context_window=(s.model_context_window or FALLBACK_CONTEXT_WINDOW) * 95 // 100,
        auto_compact_limit=auto_compact_limit(s.model_context_window or FALLBACK_CONTEXT_WINDOW,
                                              s.model_auto_compact_token_limit),
        rollout_fsync=s.rollout_fsync, unload_delay_secs=s.thread_unload_delay_secs, notify=tuple(s.notify or ()),
    )


def git_patch(params: ThreadMetadataUpdateParams) -> dict[str, str | None]:
    """The index columns a thread/metadata/update sets, checked as the
    original checks them."""
    git = params.git_info
    if git is None:
        raise invalid_request("thread metadata update must include at least one field")
    patch = {}
    for wire, value, column in (("sha", git.sha, "git_sha"), ("branch", git.branch, "git_branch"),
                                ("originUrl", git.origin_url, "git_origin_url")):
        if value is msgspec.UNSET:
            continue
        if value is not None and not value.strip():
            raise invalid_request(f"gitInfo.{wire} must not be empty")
        patch[column] = value
    if not patch:
        raise invalid_request("gitInfo must include at least one field")
    return patch


SANDBOX_CHOICE = "`permissions` cannot be combined with `sandbox`"


def thread_permissions(s: Settings, params: Any, recorded: permissions.Permissions | None) -> permissions.Permissions:
    """What a thread runs under: the request's ``permissions`` or ``sandbox``;
    else what its rollout recorded (resume, fork); else the configuration's.
    So a read-only thread stays read-only until a request says otherwise.

    Raises:
      JsonRpcError: both are given, or the profile is unknown or unusable.
    """
    if params.permissions is not None and params.sandbox is not None:
        raise invalid_request(SANDBOX_CHOICE)
    try:
        if params.permissions is not None:
            return permissions.resolve(s, params.permissions)
        if params.sandbox is not None:
            return permissions.for_mode(s, params.sandbox)
        return recorded or permissions.configured(s)
    except permissions.PermissionsError as exc:
        raise invalid_request(f"failed to load configuration: {exc}") from None


def recorded_permissions(ctx: Any, settings: Settings) -> permissions.Permissions | None:
    """What the last turn of a rollout ran under, None without one."""
    if ctx is None:
        return None
    try:
        profile = msgspec.convert(ctx.active_permission_profile, ActivePermissionProfile | None)
    except msgspec.ValidationError:
        profile = None
    return permissions.Permissions(policy_from_rollout(ctx.sandbox_policy, settings), profile)


def policy_from_rollout(policy: Any, settings: Settings) -> Any:
    """The v2 sandbox policy a rollout's turn context recorded: ours as it
    was, the original's (kebab-cased: ``{"type": "workspace-write", ...}``)
    as its mode under these settings."""
    try:
        return msgspec.convert(policy, SandboxPolicy)
    except msgspec.ValidationError:
        pass
    kind = policy.get("type") if isinstance(policy, dict) else None
    mode = {"danger-full-access": "danger-full-access", "dangerFullAccess": "danger-full-access",
            "workspace-write": "workspace-write", "workspaceWrite": "workspace-write"}.get(kind or "", "read-only")
    return settings.sandbox_policy(mode)


def recorded_mode(ctx: Any) -> dict[str, Any]:
    """The collaboration mode the rollout's last turn ran in (its
    ``turn_context``), which a resumed or forked thread keeps."""
    mode = ctx.collaboration_mode if ctx is not None else None
    if not isinstance(mode, dict) or mode.get("mode") not in ("plan", "default"):
        return {}
    settings = mode.get("settings")
    instructions = settings.get("developer_instructions") if isinstance(settings, dict) else None
    return {"collaboration_mode": mode["mode"],
            "mode_instructions": instructions if isinstance(instructions, str) else None}


def loaded_page(ids: list[str], params: ThreadLoadedListParams) -> ThreadLoadedListResponse:
    """A page of loaded thread ids, as the original pages them: sorted, from
    just after the id the cursor names; the next cursor is the page's last id."""
    after = None if params.cursor is None else thread_id_cursor(params.cursor)
    start = 0 if after is None else bisect.bisect_right(ids, after)
    end = min(start + page_size(params.limit, len(ids)), len(ids))
    return ThreadLoadedListResponse(ids[start:end], ids[end - 1] if end < len(ids) else None)


def wire_policy(policy: ApprovalMode | GranularApproval) -> AskForApproval:
    """config.toml's approval policy in the wire's shape, the one a ThreadConfig
    holds (a granular policy as its ``{"granular": {...}}`` object)."""
    return GranularAskForApproval(policy.granular) if isinstance(policy, GranularApproval) else policy


def recorded_policy(ctx: TurnContext | None) -> AskForApproval | None:
    """The approval policy a rollout's newest turn recorded: a mode name as
    it is, a granular object typed (None: none, or one we cannot read)."""
    value = None if ctx is None else ctx.approval_policy
    if isinstance(value, dict):
        try:
            return msgspec.convert(value, GranularAskForApproval)
        except msgspec.ValidationError:
            return None
    return value
