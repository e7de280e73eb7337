"""Messages about threads: connection -> registry, registry -> thread,
the approvals, and the registry's and thread's inbox unions."""

from __future__ import annotations

from typing import Generic, TypeVar

import msgspec

from ...runtime.kernel.ask import ReplySlot
from ...runtime.kernel.mailbox import Mailbox
from ...runtime.protocol.jsonrpc import ErrorObject, RequestId
from ...runtime.protocol.v2.approval import (
    CommandExecutionRequestApprovalParams,
    FileChangeRequestApprovalParams,
    McpElicitationParams,
)
from ...runtime.protocol.v2.item import ThreadItem
from ...runtime.commands.permissions import Permissions
from ...runtime.protocol.v2.thread import (
    ReviewTarget,
    ThreadForkParams,
    ThreadGoalClearParams,
    ThreadGoalSetParams,
    ThreadIdParams,
    ThreadItemsListParams,
    ThreadResumeParams,
    ThreadTurnsListParams,
)
from ...runtime.protocol.v2.turn import (
    ThreadSettingsUpdateParams,
    TokenUsageBreakdown,
    TurnError,
    TurnStartParams,
    TurnStatus,
    UserInput,
)
from ...runtime.persistence.rollout import Replay
from ...runtime.persistence.thread_index import ThreadMeta
from .common import (
    ConnectionRef,
    Msg,
    Reply,
    ThreadConfig,
)


# --- connection -> thread registry -----------------------------------------


class SearchTicket:
    """One ``thread/search`` or ``thread/search/stream`` in flight on a
    connection. Its cancel request (same connection, matching kind) sets
    ``cancelled``; the store, which answers it, checks it before and while
    querying, and sets ``done`` once answered (a later cancel changes
    nothing, as the original's)."""

    __slots__ = ("method", "cancelled", "done")

    def __init__(self, method: str) -> None:
        self.method = method
        self.cancelled = False
        self.done = False


#: The params of a REGISTRY row: its params Struct (None for a row that
#: takes none). A handler names its row's type: ``ThreadRequest[ThreadListParams]``.
P = TypeVar("P", bound=msgspec.Struct | None)


class ThreadRequest(Msg, Generic[P], tag="thread_request", frozen=True):
    """A client request of a REGISTRY row of the method table
    (runtime/protocol/methods.py): the registry answers it with the row's
    handler. ``params`` is the row's params type."""

    reply: Reply
    method: str
    params: P
    #: The client's originator, as the hub registered it (thread/start
    #: records it in the thread).
    originator: str = ""
    #: A thread search's cancel ticket.
    ticket: SearchTicket | None = None


class ToThread(Msg, tag="to_thread", frozen=True):
    """Forward ``msg`` to a loaded thread, or answer ``reply`` with the
    original's "thread not found" error."""

    thread_id: str
    msg: "ThreadInbox"
    reply: Reply | None


class Checkpoint(Msg, tag="checkpoint", frozen=True):
    """A thread tells its registry what it would need to come back after a
    crash, after every turn. The tuples are shared, not copied."""

    thread_id: str
    history: tuple[msgspec.Raw, ...]
    usage: TokenUsageBreakdown
    preview: str
    updated_at: int
    subscribers: tuple[ConnectionRef, ...]
    #: The turn running when the checkpoint was taken: a thread restarted
    #: from it reports that turn as failed, so no client waits forever.
    active_turn: str | None = None
    #: The settings as the last turn/start left them: a restart must not
    #: fall back to those the thread started with (a sandbox a turn
    #: narrowed would widen again).
    config: ThreadConfig | None = None


# --- to a thread --------------------------------------------------------------


class Resumed(msgspec.Struct, frozen=True):
    """How a thread restored from its rollout starts: the replay
    (runtime.persistence.rollout.Replay), its file (None: an ephemeral fork writes
    none), and the request to answer. A fork is announced with
    ``thread/started`` as well."""

    reply: Reply
    replay: Replay
    path: str | None
    exclude_turns: bool
    forked: bool = False
    #: The index's git info (sha, branch, origin url), which the rollout
    #: does not hold once thread/metadata/update changed it.
    git: tuple[str | None, str | None, str | None] = (None, None, None)


class Loaded(Msg, tag="loaded", frozen=True):
    """A resume or fork read its rollout off the registry's loop (a long
    rollout takes a while); the registry starts the thread from it. The
    fields are what ``ThreadRegistry._load`` takes."""

    reply: Reply
    params: ThreadResumeParams | ThreadForkParams
    meta: ThreadMeta
    replay: Replay
    path: str | None
    forked_from: str | None = None
    ephemeral: bool = False


class ThreadGaveUp(Msg, tag="thread_gave_up", frozen=True):
    """A thread's actor spent its restart budget; its supervisor dropped it
    (the other threads go on) and the registry unloads it."""

    thread_id: str
    failure: str


class EvictThread(Msg, tag="evict_thread", frozen=True):
    """Another node took the thread over (the cluster's store refused this
    node's append, :mod:`trio_codex.runtime.cluster.tunnel`): stop its actor
    at once, its running turn included, without a word more to its rollout
    (the thread is no longer this node's to write), and unload it. No
    ``thread/closed`` goes out: the cluster layer told its clients already."""

    thread_id: str


class LoadFailed(Msg, tag="load_failed", frozen=True):
    """A resume could not read its rollout (the client has its error); the
    resumes of the same thread that waited for it try again."""

    thread_id: str


class PatchGitInfo(Msg, tag="patch_git_info", frozen=True):
    """``thread/metadata/update`` of a loaded thread: the thread keeps its
    git info (and indexes it), then answers with itself."""

    reply: Reply
    patch: dict[str, str | None]


class ShellCommand(Msg, tag="shell_command", frozen=True):
    """``thread/shellCommand`` (the user's ``!cmd``): answered at once; the
    command runs as a turn of its own once no turn runs."""

    reply: Reply
    command: str
    timeout_ms: int | None


class UserShell(Msg, tag="user_shell", frozen=True):
    """To a running turn: run the user's shell command inside it (the
    original does); its record then makes the model answer, as steered
    input does."""

    command: str
    timeout_ms: int | None


class BackgroundTerminals(Msg, tag="background_terminals", frozen=True):
    """``thread/backgroundTerminals/list|clean|terminate``: the thread's
    unified exec processes. ``action`` is the method's last part."""

    reply: Reply
    action: str
    process_id: str | None = None
    limit: int | None = None
    cursor: str | None = None


class InjectItems(Msg, tag="inject_items", frozen=True):
    """``thread/inject_items``: raw Responses items appended to the history
    (and the rollout), no turn."""

    reply: Reply
    items: tuple[msgspec.Raw, ...]


class ReviewThread(Msg, tag="review_thread", frozen=True):
    """``review/start``: answered at once with the review's turn; the
    reviewer runs as a turn of its own once no turn runs."""

    reply: Reply
    target: ReviewTarget


class GoalRequest(Msg, tag="goal_request", frozen=True):
    """``thread/goal/get|set|clear``: ``params`` the request's, whose type
    names the action."""

    reply: Reply
    params: ThreadIdParams | ThreadGoalSetParams | ThreadGoalClearParams


class CompactThread(Msg, tag="compact_thread", frozen=True):
    """``thread/compact/start``: answered at once; the compaction runs as a
    turn of its own (after interrupting a running turn, as the original)."""

    reply: Reply


class RevertThread(Msg, tag="revert_thread", frozen=True):
    """``thread/revert`` (``thread/rollback`` when ``num_turns`` is set):
    cut the history before a turn; a running turn is interrupted first."""

    reply: Reply
    before_turn_id: str | None
    num_turns: int | None = None


class Renamed(Msg, tag="renamed", frozen=True):
    """The thread's new name, for how it shows itself."""

    name: str | None


class ReadThread(Msg, tag="read_thread", frozen=True):
    """``thread/read`` or ``thread/resume`` of a loaded thread; a resume
    also subscribes the caller."""

    reply: Reply
    include_turns: bool
    subscribe: bool


class HistoryPage(Msg, tag="history_page", frozen=True):
    """``thread/turns/list`` or ``thread/items/list`` of a loaded thread,
    served from the turns it keeps."""

    reply: Reply
    method: str
    params: ThreadTurnsListParams | ThreadItemsListParams


class StartTurn(Msg, tag="start_turn", frozen=True):
    reply: Reply
    params: TurnStartParams
    #: ``params.permissions`` resolved against the configuration.
    permissions: Permissions | None = None


class SteerTurn(Msg, tag="steer_turn", frozen=True):
    """``turn/steer``: more input for the active turn; ``expected_turn_id``
    None for a ``turn/start`` that found a turn running (0.169 steers)."""

    reply: Reply
    input: tuple[UserInput, ...]
    expected_turn_id: str | None


class UpdateSettings(Msg, tag="update_settings", frozen=True):
    """thread/settings/update: the thread's settings for its next turns."""

    reply: Reply
    params: ThreadSettingsUpdateParams
    permissions: Permissions | None = None


class InterruptTurn(Msg, tag="interrupt_turn", frozen=True):
    reply: Reply
    turn_id: str


class Subscribe(Msg, tag="subscribe", frozen=True):
    conn: ConnectionRef


class Unsubscribe(Msg, tag="unsubscribe", frozen=True):
    """A connection leaves the thread; ``reply`` (thread/unsubscribe) gets
    ``{"status": "unsubscribed" | "notSubscribed"}``."""

    conn_id: int
    reply: Reply | None = None


class ConnectionGone(Msg, tag="connection_gone", frozen=True):
    """A connection closed: every loaded thread drops it as a subscriber."""

    conn_id: int


class UnloadThread(Msg, tag="unload_thread", frozen=True):
    """A thread idle with no subscriber for its unload delay asks its
    registry to unload it. ``received`` is how many messages its mailbox had
    delivered then: the registry unloads it only if nothing was sent to it
    since (what was sent is the thread's to answer, so it stays)."""

    thread_id: str
    mailbox: Mailbox[ThreadInbox]
    received: int


class UnloadDue(Msg, tag="unload_due", frozen=True):
    """A thread's unload timer tells its own thread the delay has passed;
    ``generation`` names the timer, so one that was stopped meanwhile is
    ignored."""

    generation: int


class TurnEnded(Msg, tag="turn_ended", frozen=True):
    """The turn tells its thread it is over: what it added to the history
    (the whole new history if it compacted), its final items (for
    turn/completed) and its token usage."""

    turn_id: str
    status: TurnStatus
    error: TurnError | None
    history: tuple[msgspec.Raw, ...]
    items: tuple[ThreadItem, ...]
    usage: TokenUsageBreakdown | None
    replaces_history: bool = False
    #: Tokens in the model's context as the turn left it.
    context_tokens: int = 0


# --- approvals ------------------------------------------------------------------


class RequestApproval(Msg, tag="request_approval", frozen=True):
    """A tool call asks the client(s): the approvals actor numbers the server
    request, sends it to every connection in ``conns`` with the same id, and
    sets ``reply`` with the first answer (an :class:`ApprovalAnswer`)."""

    thread_id: str
    turn_id: str
    method: str
    params: ApprovalParams
    conns: tuple[ConnectionRef, ...]
    reply: ReplySlot[ApprovalAnswer]


#: What a server request asks: a command or a file change, an MCP tool's
#: approval, or an elicitation an MCP server makes mid-call, relayed as the
#: server sent it (its own JSON, plus the thread's ids).
ApprovalParams = (CommandExecutionRequestApprovalParams | FileChangeRequestApprovalParams | McpElicitationParams
                  | dict[str, object])


class ApprovalAnswer(msgspec.Struct, frozen=True):
    """What the approvals actor puts in the reply slot."""

    request_id: int
    #: The decision as the client sent it: "accept", "acceptForSession",
    #: "decline", "cancel" or a one-key object (the amendment forms).
    decision: str | dict
    answered_by: int
    #: An elicitation's ``content`` (the form the user filled in): the
    #: client's JSON, handed to the MCP server as is (its SDK checks it).
    content: object = None


class ClientAnswer(Msg, tag="client_answer", frozen=True):
    """A connection passes on a client's response to a server request."""

    conn_id: int
    request_id: RequestId
    result: msgspec.Raw | None
    error: ErrorObject | None


class ClearApprovals(Msg, tag="clear_approvals", frozen=True):
    """A turn ended (or was interrupted): its pending requests are resolved
    as cleared, and every subscriber told with ``serverRequest/resolved``."""

    thread_id: str
    turn_id: str


class ReplayApprovals(Msg, tag="replay_approvals", frozen=True):
    """A connection joined a thread: send it the thread's pending requests
    (same ids), and count it among those told when they resolve."""

    thread_id: str
    conn: ConnectionRef


ApprovalsInbox = RequestApproval | ClientAnswer | ClearApprovals | ReplayApprovals


class ApprovalGate(Msg, tag="approval_gate", frozen=True):
    """A tool call about to ask: the thread answers True when every one of
    ``cache_keys`` was accepted for the session (no prompt), else marks the
    thread ``waitingOnApproval`` and answers False."""

    turn_id: str
    cache_keys: tuple[str, ...]
    reply: ReplySlot[bool]


class ApprovalDone(Msg, tag="approval_done", frozen=True):
    """The prompt was answered: the thread drops its waiting flag and, for
    ``acceptForSession``, remembers ``cache_keys``."""

    turn_id: str
    cache_keys: tuple[str, ...]
    for_session: bool


class GoalTool(Msg, tag="goal_tool", frozen=True):
    """A model's goal tool call (``get_goal``, ``create_goal``,
    ``update_goal``): the thread, which owns the goal, answers the tool's
    output text."""

    turn_id: str
    name: str
    objective: str | None
    token_budget: int | None
    status: str | None
    #: The tokens the turn has used so far.
    turn_tokens: int
    reply: ReplySlot[str]


ThreadInbox = (StartTurn | UpdateSettings | SteerTurn | InterruptTurn | Subscribe | Unsubscribe | TurnEnded | ApprovalGate | ApprovalDone
               | GoalTool | ReadThread | HistoryPage | Renamed | PatchGitInfo | CompactThread | RevertThread | UnloadDue
               | ShellCommand | BackgroundTerminals | InjectItems | ReviewThread | GoalRequest)

RegistryInbox = (ThreadRequest | ToThread | Checkpoint | UnloadThread | ConnectionGone | Loaded
                 | LoadFailed | ThreadGaveUp | EvictThread)
