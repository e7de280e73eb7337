"""The base message, the model stream's events, addressing (a thread's
configuration, a connection's reference, a reply) and the hub's inbox."""

from __future__ import annotations


import msgspec

from ...runtime.kernel.ask import ReplySlot
from ...runtime.kernel.mailbox import Mailbox
from ...runtime.protocol.jsonrpc import Notification, Outbound, RequestId
from ...runtime.protocol.responses import ResponsesEvent
from ...runtime.protocol.v2.thread import ActivePermissionProfile, AskForApproval, SandboxPolicy


class Msg(msgspec.Struct, frozen=True, tag_field="kind"):
    """Base of every actor message."""


# --- model stream -> turn ---------------------------------------------------


class ModelEvents(Msg, tag="model_events", frozen=True):
    """The model stream sends the decoded Responses events of one network
    read, in wire order, as one batch (one mailbox hop for many deltas)."""

    attempt: int
    events: tuple[ResponsesEvent, ...]


class ModelRetrying(Msg, tag="model_retrying", frozen=True):
    """The model stream failed in a retryable way and will try again after
    ``delay`` seconds; the turn announces it as ``error {willRetry: true}`` and
    forgets any item it had started but not completed in this attempt."""

    attempt: int
    max_attempts: int
    message: str
    codex_error_info: str | dict | None
    delay: float
    #: The failure itself; the original shows it beside "Reconnecting...".
    additional_details: str | None = None


class ModelFailed(Msg, tag="model_failed", frozen=True):
    """The model stream gave up: the turn fails with this TurnError."""

    message: str
    codex_error_info: str | dict | None
    additional_details: str | None = None


# --- addressing -------------------------------------------------------------


class ThreadConfig(msgspec.Struct, frozen=True):
    """A thread's identity and settings, fixed at thread/start; the registry
    starts (and restarts) the thread actor from it."""

    id: str
    created_at: int
    cwd: str
    model: str
    model_provider: str
    #: In the wire's shape (a mode or ``{"granular": {...}}``), config.toml's too.
    approval_policy: AskForApproval
    approvals_reviewer: str
    sandbox: SandboxPolicy
    reasoning_effort: str | None
    reasoning_summary: str | None
    base_instructions: str | None
    developer_instructions: str | None
    ephemeral: bool
    #: The first client's name, process-wide, when the thread was started.
    originator: str
    codex_home: str
    model_context_window: int | None = None
    #: Compact the history when the context holds this many tokens.
    auto_compact_limit: int | None = None
    rollout_fsync: str = "turn"
    #: Idle seconds with no subscriber before the thread unloads.
    unload_delay_secs: float = 1800.0
    forked_from_id: str | None = None
    #: How its rollout records turn items (runtime/persistence/rollout/):
    #: ``paginated`` for a new thread, as 0.169; a resumed one keeps what its
    #: file says.
    history_mode: str = "paginated"
    #: The permissions profile that produced ``sandbox`` (None: a legacy
    #: sandbox mode or policy).
    permission_profile: ActivePermissionProfile | None = None
    #: config.toml ``notify``: run after each completed turn.
    notify: tuple[str, ...] = ()
    #: The collaboration mode (``plan`` or ``default``) turns run in, and
    #: its developer instructions (None: the mode's own).
    collaboration_mode: str = "default"
    mode_instructions: str | None = None


class ConnectionRef(msgspec.Struct, frozen=True):
    """How other actors reach a connection: its id and a clone of its outbox.
    The outbox carries wire messages (jsonrpc.Outbound), which the
    connection's writer encodes and writes in order. ``control`` takes
    :class:`CloseConnection`; None for a connection that is not closed for
    being slow (stdio: closing it would end the server)."""

    id: int
    outbox: Mailbox[Outbound]
    control: Mailbox[CloseConnection] | None = None
    #: How long a sender waits for room in the outbox before it gives up on
    #: the connection (Limits.write_timeout).
    give_up_after: float = 30.0


class CloseConnection(Msg, tag="close_connection", frozen=True):
    """Whoever gave up waiting for room in a connection's outbox tells the
    connection to close, with the reason its client is shown (a websocket
    close frame, with ``code``: 1008, a policy the client broke, unless
    said otherwise)."""

    reason: str
    code: int = 1008


class Reply(msgspec.Struct, frozen=True):
    """Where the answer to a client request goes: whoever handles the request
    writes the response into the connection's outbox itself, so it is ordered
    before the notifications that follow it."""

    conn: ConnectionRef
    request_id: RequestId


# --- connection -> hub ------------------------------------------------------


class Register(Msg, tag="register", frozen=True):
    """An initialized connection joins the broadcast set. The hub answers the
    originator: the first client's name, process-wide, as the original."""

    conn: ConnectionRef
    client_name: str
    reply: ReplySlot[str]


class Unregister(Msg, tag="unregister", frozen=True):
    conn_id: int


class Broadcast(Msg, tag="broadcast", frozen=True):
    """A notification for every initialized connection except ``exclude``
    (the subscribers, which the sender has already served in order)."""

    notification: Notification
    exclude: frozenset[int] = frozenset()


HubInbox = Register | Unregister | Broadcast
