"""Threads: the Thread object, its status, `thread/start`, and the thread
lifecycle notifications."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from ..rust import I64, U32
from ._base import Wire
from .approval import AskForApproval
from .turn import Turn


class NotLoaded(Wire, frozen=True, tag_field="type", tag="notLoaded"):
    pass


class Idle(Wire, frozen=True, tag_field="type", tag="idle"):
    pass


class SystemError(Wire, frozen=True, tag_field="type", tag="systemError"):
    pass


class Active(Wire, frozen=True, tag_field="type", tag="active"):
    active_flags: list[Literal["waitingOnApproval", "waitingOnUserInput"]] = []


ThreadStatus = NotLoaded | Idle | SystemError | Active


class Thread(Wire, frozen=True):
    id: str
    session_id: str
    preview: str
    ephemeral: bool
    model_provider: str
    created_at: int
    updated_at: int
    cwd: str
    cli_version: str
    source: str | dict[str, Any]
    status: ThreadStatus
    turns: list[Turn]
    project_id: str | None = None
    name: str | None = None
    path: str | None = None
    forked_from_id: str | None = None
    git_info: dict[str, Any] | None = None
    model: str | None = None
    reasoning_effort: str | None = None
    originator: str | None = None
    recency_at: int | None = None
    history_mode: str | None = None
    parent_thread_id: str | None = None
    agent_nickname: str | None = None
    agent_role: str | None = None
    thread_source: str | None = None
    section: str | None = None
    section_entered_at: int | None = None


# SandboxPolicy, the object form used in responses and turn/start.
class DangerFullAccess(Wire, frozen=True, tag_field="type", tag="dangerFullAccess"):
    pass


class ReadOnly(Wire, frozen=True, tag_field="type", tag="readOnly"):
    network_access: bool = False


class WorkspaceWrite(Wire, frozen=True, tag_field="type", tag="workspaceWrite"):
    writable_roots: list[str] = []
    network_access: bool = False
    exclude_tmpdir_env_var: bool = False
    exclude_slash_tmp: bool = False


class ExternalSandbox(Wire, frozen=True, tag_field="type", tag="externalSandbox"):
    network_access: Literal["restricted", "enabled"] = "restricted"


SandboxPolicy = DangerFullAccess | ReadOnly | WorkspaceWrite | ExternalSandbox

SandboxMode = Literal["read-only", "workspace-write", "danger-full-access"]


class ActivePermissionProfile(Wire, frozen=True):
    """The named permissions profile a thread runs under: a built-in
    (``:read-only``, ``:workspace``, ``:danger-full-access``) or a
    ``[permissions.<id>]`` of config.toml, with what it ``extends``."""

    id: str
    extends: str | None = None



class ThreadOverrides(Wire, frozen=True):
    """The settings thread/start, thread/resume (and fork) may override."""

    model: str | None = None
    model_provider: str | None = None
    cwd: str | None = None
    approval_policy: AskForApproval | None = None
    approvals_reviewer: str | None = None
    sandbox: SandboxMode | None = None
    #: A permissions profile id; not with ``sandbox``.
    permissions: str | None = None
    config: dict[str, Any] | None = None
    base_instructions: str | None = None
    developer_instructions: str | None = None


class ThreadStartParams(ThreadOverrides, frozen=True):
    service_tier: str | None = None
    ephemeral: bool | None = None
    service_name: str | None = None
    thread_source: str | None = None


class ThreadStartResponse(Wire, frozen=True):
    thread: Thread
    model: str
    model_provider: str
    cwd: str
    approval_policy: AskForApproval
    approvals_reviewer: str
    sandbox: SandboxPolicy
    service_tier: str | None = None
    reasoning_effort: str | None = None
    #: The profile that produced ``sandbox``; null for a legacy sandbox mode.
    active_permission_profile: ActivePermissionProfile | None = None
    instruction_sources: list[str] = msgspec.field(default_factory=list)
    disabled_plugin_ids: list[str] = msgspec.field(default_factory=list)


class ThreadStarted(Wire, frozen=True):
    thread: Thread


class ThreadStatusChanged(Wire, frozen=True):
    thread_id: str
    status: ThreadStatus


class ThreadListParams(Wire, frozen=True):
    cursor: str | None = None
    limit: U32 | None = None
    sort_key: Literal["created_at", "updated_at", "recency_at", "section_position"] | None = None
    sort_direction: Literal["asc", "desc"] | None = None
    model_providers: list[str] | None = None
    source_kinds: list[str] | None = None
    archived: bool | None = None
    cwd: str | list[str] | None = None
    search_term: str | None = None
    #: Threads filed in this section (experimental): we file none in any.
    section_id: str | None = None
    #: Only these threads (0.171; at most 100, checked by the registry).
    included_thread_ids: list[str] | None = None


class ThreadListResponse(Wire, frozen=True):
    data: list[Thread]
    next_cursor: str | None = None
    backwards_cursor: str | None = None


class ThreadLoadedListParams(Wire, frozen=True):
    cursor: str | None = None
    limit: U32 | None = None


class ThreadLoadedListResponse(Wire, frozen=True):
    data: list[str]
    next_cursor: str | None = None


class ThreadReadParams(Wire, frozen=True):
    thread_id: str
    include_turns: bool = False


class ThreadReadResponse(Wire, frozen=True):
    thread: Thread


class ThreadResumeParams(ThreadOverrides, frozen=True, kw_only=True):
    thread_id: str
    exclude_turns: bool = False


class ThreadIdParams(Wire, frozen=True):
    """Params of the methods that name only a thread (archive, unarchive)."""

    thread_id: str


class ThreadNameSetParams(Wire, frozen=True):
    thread_id: str
    name: str | None


class GitInfoPatch(Wire, frozen=True):
    """``gitInfo`` of thread/metadata/update: an omitted field stays, null
    clears it, a string replaces it."""

    sha: str | None | msgspec.UnsetType = msgspec.UNSET
    branch: str | None | msgspec.UnsetType = msgspec.UNSET
    origin_url: str | None | msgspec.UnsetType = msgspec.UNSET


class ThreadMetadataUpdateParams(Wire, frozen=True):
    thread_id: str
    git_info: GitInfoPatch | None = None


def git_info(sha: str | None, branch: str | None, origin_url: str | None) -> dict[str, str | None] | None:
    """A thread's ``gitInfo``: null when nothing is known."""
    if sha is None and branch is None and origin_url is None:
        return None
    return {"sha": sha, "branch": branch, "originUrl": origin_url}


class ThreadNameUpdated(Wire, frozen=True):
    thread_id: str
    thread_name: str | None = None


class ThreadRevertParams(Wire, frozen=True):
    thread_id: str
    before_turn_id: str


class ThreadRollbackParams(Wire, frozen=True):
    """The legacy thread/rollback (before 0.169): drop the last turns."""

    thread_id: str
    num_turns: U32


class ThreadRevertResponse(Wire, frozen=True):
    """``turns`` of the thread is empty: the cursors page the history that
    is left backwards (``thread/turns/list``, ``thread/items/list`` with
    ``sortDirection: "desc"``)."""

    thread: Thread
    turns_backwards_cursor: str | None = None
    items_backwards_cursor: str | None = None


class ThreadUnsubscribeResponse(Wire, frozen=True):
    status: Literal["unsubscribed", "notSubscribed", "notLoaded"]


class ThreadForkParams(ThreadOverrides, frozen=True, kw_only=True):
    thread_id: str
    last_turn_id: str | None = None
    ephemeral: bool = False
    exclude_turns: bool = False


class ThreadTurnsListParams(Wire, frozen=True):
    thread_id: str
    cursor: str | None = None
    limit: U32 | None = None
    #: None (the TUI sends null): newest first.
    sort_direction: Literal["asc", "desc"] | None = None
    #: None: summary.
    items_view: Literal["notLoaded", "summary", "full"] | None = None


class ThreadItemsListParams(Wire, frozen=True):
    thread_id: str
    turn_id: str | None = None
    cursor: str | None = None
    limit: U32 | None = None
    #: None: oldest first.
    sort_direction: Literal["asc", "desc"] | None = None


class PageResponse(Wire, frozen=True):
    """``{data, nextCursor, backwardsCursor}`` of the paginated reads."""

    data: list[Any]
    next_cursor: str | None = None
    backwards_cursor: str | None = None


class ThreadItemEntry(Wire, frozen=True):
    turn_id: str
    item: Any
    started_at_ms: int | None = None
    completed_at_ms: int | None = None


class PermissionProfileListParams(Wire, frozen=True):
    cursor: str | None = None
    limit: int | None = None
    cwd: str | None = None


class PermissionProfileSummary(Wire, frozen=True):
    id: str
    #: Whether requirements allow selecting it; trio-codex has none.
    allowed: bool = True
    description: str | None = None


class PermissionProfileListResponse(Wire, frozen=True):
    data: list[PermissionProfileSummary]
    next_cursor: str | None = None


class ThreadShellCommandParams(Wire, frozen=True):
    """``thread/shellCommand``: the user's ``!cmd``, run by the thread's
    shell, unsandboxed, as a turn of its own."""

    thread_id: str
    command: str
    timeout_ms: I64 | None = None


class ThreadBackgroundTerminalsListParams(Wire, frozen=True):
    thread_id: str
    cursor: str | None = None
    limit: U32 | None = None


class ThreadBackgroundTerminalsTerminateParams(Wire, frozen=True):
    thread_id: str
    process_id: str


class ThreadBackgroundTerminal(Wire, frozen=True):
    """A unified exec process a thread's turns left running."""

    process_id: str
    item_id: str
    command: str
    cwd: str
    os_pid: int | None
    cpu_percent: float | None = None
    rss_kb: int | None = None


class ThreadBackgroundTerminalsListResponse(Wire, frozen=True):
    data: list[ThreadBackgroundTerminal]
    next_cursor: str | None = None


class ThreadBackgroundTerminalsTerminateResponse(Wire, frozen=True):
    terminated: bool


class ThreadInjectItemsParams(Wire, frozen=True):
    """Raw Responses items to append to the thread's model-visible history."""

    thread_id: str
    items: list[Any]


GoalStatus = Literal["active", "paused", "blocked", "usageLimited", "budgetLimited", "complete"]


class ThreadGoalSetParams(Wire, frozen=True):
    thread_id: str
    objective: str | None = None
    status: GoalStatus | None = None
    token_budget: I64 | None = None
    origin: Any = None


class ThreadGoalClearParams(Wire, frozen=True):
    thread_id: str
    origin: Any = None


class ThreadGoal(Wire, frozen=True):
    """A thread's goal, as ``thread/goal/*`` and ``thread/goal/updated``
    carry it (times in seconds)."""

    thread_id: str
    objective: str
    status: GoalStatus
    token_budget: int | None
    tokens_used: int
    time_used_seconds: int
    created_at: int
    updated_at: int


class ThreadGoalUpdated(Wire, frozen=True):
    """``thread/goal/updated``: ``turn_id`` the turn that changed or counted
    the goal (None: a client's ``thread/goal/set``)."""

    thread_id: str
    turn_id: str | None
    goal: ThreadGoal


class ModeSettings(msgspec.Struct, frozen=True):
    """A collaboration mode's settings (snake_case on the wire, as the
    original's ``Settings``)."""

    model: str
    reasoning_effort: str | None
    developer_instructions: str | None


class CollaborationMode(Wire, frozen=True):
    mode: str
    settings: ModeSettings


class ThreadSettings(Wire, frozen=True):
    """The settings a thread's next turns run with."""

    approval_policy: AskForApproval
    approvals_reviewer: str
    collaboration_mode: CollaborationMode
    cwd: str
    model: str
    model_provider: str
    sandbox_policy: SandboxPolicy
    active_permission_profile: ActivePermissionProfile | None
    effort: str | None
    summary: str | None


class ThreadSettingsUpdated(Wire, frozen=True):
    """``thread/settings/updated``."""

    thread_id: str
    thread_settings: ThreadSettings


class ReviewStartResponse(Wire, frozen=True):
    """``review/start``'s answer: the review's turn, and the thread it runs
    in (inline: the thread itself)."""

    turn: Turn
    review_thread_id: str


class ReviewStartParams(Wire, frozen=True):
    """``review/start``: ``target`` one of ``uncommittedChanges``,
    ``baseBranch {branch}``, ``commit {sha, title?}``, ``custom
    {instructions}``; 0.169 delivers reviews ``inline`` only."""

    thread_id: str
    target: ReviewTarget
    delivery: Literal["inline"] | None = None


class UncommittedChangesTarget(Wire, frozen=True, tag_field="type", tag="uncommittedChanges"):
    pass


class BaseBranchTarget(Wire, frozen=True, tag_field="type", tag="baseBranch"):
    branch: str


class CommitTarget(Wire, frozen=True, tag_field="type", tag="commit"):
    sha: str
    title: str | None = None


class CustomTarget(Wire, frozen=True, tag_field="type", tag="custom"):
    instructions: str


ReviewTarget = UncommittedChangesTarget | BaseBranchTarget | CommitTarget | CustomTarget


class ThreadSearchParams(Wire, frozen=True):
    """``thread/search`` (experimental): threads one of whose messages holds
    ``searchTerm`` (case-insensitive substring), newest first by default."""

    search_term: str
    cursor: str | None = None
    limit: U32 | None = None
    sort_key: Literal["created_at", "updated_at", "recency_at"] | None = None
    sort_direction: Literal["asc", "desc"] | None = None
    source_kinds: list[str] | None = None
    archived: bool | None = None
    current_account_only: bool = False
    include_attached_threads: bool = False


#: The longest ``thread/search/stream`` term, trimmed, as the original's.
MAX_STREAM_SEARCH_BYTES = 65_536


class ThreadSearchResult(Wire, frozen=True):
    thread: Thread
    snippet: str


class ThreadSearchResponse(Wire, frozen=True):
    data: list[ThreadSearchResult]
    next_cursor: str | None = None
    backwards_cursor: str | None = None


class ThreadSearchCancelParams(Wire, frozen=True):
    """``thread/search/cancel`` and ``thread/search/stream/cancel``
    (experimental, 0.171): the id of a search request on this connection."""

    request_id: int | str
