"""The analytics vocabulary: facts, the typed answers to server requests, and
the :class:`Recorder` that actors hand facts to.

A *fact* is something that happened, recorded where it happened: a client
initialized, a server request went out to some connections, a client
answered it, a turn completed. The analytics actor reduces facts into
events (``actors/analytics/reducer.py``); nothing on the hot path computes
an event.

Rules:
- A fact is a frozen ``msgspec.Struct`` of ints, strings, tuples and other
  Structs (wire params, ``msgspec.Raw``). It never holds a connection, a
  mailbox, a reply slot or an actor: analytics must not keep a closed
  connection, or the runtime, alive (the ownership lesson of the original's
  change, which had to hold its outbound sender weakly for the same reason).
- Every fact carries ``at_ms``, Unix milliseconds, stamped when it is made;
  the reducer measures durations from these, so it needs no clock of its
  own and replays the same way in tests.
- Recording never blocks and never raises: :meth:`Recorder.record` is a
  ``send_nowait`` into a small best-effort mailbox, and a fact that does not
  fit is dropped and counted (see :class:`Recorder`).

Server requests are typed both ways. :class:`ServerRequest` keeps the params
it was sent with, and :func:`response_from_result` decodes a client's raw
``result`` into the response type of that request's method, or into a
:class:`DecodeFailure` that says why it does not fit. It never raises: an
odd answer is a fact about the client, not a fault of the server.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final, Literal

import msgspec
import trio

from ...runtime.kernel.clock import now_ms
from ...runtime.kernel.errors import MailboxClosed
from ...runtime.kernel.mailbox import Mailbox
from ...runtime.protocol.jsonrpc import ErrorObject, RequestId
from ...runtime.protocol.v2.turn import TokenUsageBreakdown

__all__ = [
    "DISABLED",
    "DROP_WARNING_INTERVAL",
    "RESPONSE_TYPES",
    "AcceptWithExecpolicyAmendment",
    "AnalyticsFact",
    "ApplyNetworkPolicyAmendment",
    "ApprovalFromSessionCache",
    "ClientRequest",
    "ClientResponse",
    "CommandExecutionDecisionObject",
    "CommandExecutionRequestApprovalResponse",
    "Compaction",
    "ConnectionClosed",
    "DecodeFailure",
    "ErrorResponse",
    "Fact",
    "FileChangeRequestApprovalResponse",
    "Initialize",
    "NetworkPolicyAmendment",
    "Recorder",
    "ServerRequest",
    "ServerRequestAborted",
    "ServerResponse",
    "Steer",
    "ThreadStarted",
    "TurnCompleted",
    "TurnResolvedConfig",
    "TurnStarted",
    "TurnTokenUsage",
    "response_from_result",
]

log = logging.getLogger("trio_codex.analytics")


class Fact(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Base of every fact. ``at_ms`` is keyword-only and defaults to now.

    Facts are not tracked by the garbage collector: they hold plain data
    and cannot be part of a reference cycle, and skipping the tracking makes
    them cheaper to create on the hot path.
    """

    at_ms: int = msgspec.field(default_factory=now_ms)


# --- connections and client traffic -----------------------------------------


class Initialize(Fact, frozen=True, gc=False):
    """A connection answered ``initialize`` successfully."""

    connection_id: int
    client_name: str
    client_version: str
    #: ``stdio``, ``websocket`` or ``in_process``, as the original names it.
    transport: str = "stdio"


class ConnectionClosed(Fact, frozen=True, gc=False):
    """A connection ended; the reducer forgets it."""

    connection_id: int


class ClientRequest(Fact, frozen=True, gc=False):
    """A client request was dispatched. ``thread_id`` and ``turn_id`` are set
    when its params name them."""

    connection_id: int
    request_id: RequestId
    method: str
    thread_id: str | None = None
    turn_id: str | None = None


class ClientResponse(Fact, frozen=True, gc=False):
    """A client request was answered with a result. ``thread_id`` and
    ``turn_id`` are those the result names (``turn/start``: the new turn)."""

    connection_id: int
    request_id: RequestId
    method: str
    thread_id: str | None = None
    turn_id: str | None = None


class ErrorResponse(Fact, frozen=True, gc=False):
    """A client request was answered with a JSON-RPC error."""

    connection_id: int
    request_id: RequestId
    method: str
    code: int
    message: str


# --- server requests and their answers ---------------------------------------


class ServerRequest(Fact, frozen=True, gc=False):
    """A server request went out: once per logical request, however many
    connections it was fanned out to.

    ``params`` is the typed params Struct it was sent with (for example
    ``CommandExecutionRequestApprovalParams``), or ``msgspec.Raw``.
    ``sent_to`` lists the connection ids it went to. A request re-sent to a
    connection (pending approvals replayed to a client that resumes the
    thread) is recorded again with the same ``request_id``, ``replayed=True``
    and the new recipients in ``sent_to``.
    """

    request_id: int
    method: str
    params: Any
    thread_id: str
    turn_id: str
    item_id: str
    sent_to: tuple[int, ...]
    replayed: bool = False


class ServerResponse(Fact, frozen=True, gc=False):
    """The answer that resolved a server request (the first one: later
    answers from other connections are not facts). Exactly one of
    ``result`` and ``error`` is set."""

    request_id: int
    answered_by: int
    result: msgspec.Raw | None
    error: ErrorObject | None = None


class ServerRequestAborted(Fact, frozen=True, gc=False):
    """A pending server request was cleared without an answer (its turn
    ended or was interrupted)."""

    request_id: int


class ApprovalFromSessionCache(Fact, frozen=True, gc=False):
    """A tool call needed no prompt: everything it asks for was already
    accepted for the session (``acceptForSession``)."""

    thread_id: str
    turn_id: str
    item_id: str
    #: The server request it would have sent, e.g.
    #: ``item/commandExecution/requestApproval``.
    request_method: str


# --- selected server notifications -------------------------------------------


class ThreadStarted(Fact, frozen=True, gc=False):
    """``thread/started``: a thread was created (or resumed, or forked) at
    the request of ``connection_id`` (None: not by a client)."""

    thread_id: str
    connection_id: int | None
    model: str
    model_provider: str = ""
    ephemeral: bool = False
    #: ``new``, ``resumed`` or ``forked``.
    initialization_mode: str = "new"
    #: Unix seconds, as ``Thread.createdAt``.
    created_at: int = 0


class TurnStarted(Fact, frozen=True, gc=False):
    """``turn/started``."""

    thread_id: str
    turn_id: str


class TurnCompleted(Fact, frozen=True, gc=False):
    """``turn/completed``. ``usage`` is the turn's own token usage when the
    sender knows it (otherwise the last :class:`TurnTokenUsage` is used)."""

    thread_id: str
    turn_id: str
    #: ``completed``, ``interrupted`` or ``failed``.
    status: str
    duration_ms: int | None
    #: ``TurnError.codexErrorInfo`` of a failed turn, when it is a string.
    error_info: str | None = None
    usage: TokenUsageBreakdown | None = None


# --- custom facts: not on the wire -------------------------------------------


class TurnResolvedConfig(Fact, frozen=True, gc=False):
    """The settings a turn runs with, once they are resolved.

    ``approval_policy`` is the mode name (``untrusted``, ``on-request``,
    ``never``; ``granular`` for a granular table). ``sandbox`` is the mode
    (``read-only``, ``workspace-write``, ``danger-full-access``) or the v2
    policy type (``readOnly``, ...): the reducer reports it as the original
    does (``read_only``, ``workspace_write``, ``full_access``).
    """

    thread_id: str
    turn_id: str
    model: str
    approval_policy: str
    sandbox: str
    model_provider: str = ""
    sandbox_network_access: bool = False
    reasoning_effort: str | None = None
    reasoning_summary: str | None = None
    num_input_images: int = 0
    is_first_turn: bool = False


class TurnTokenUsage(Fact, frozen=True, gc=False):
    """The token usage of a turn so far (``thread/tokenUsage/updated``'s
    ``last``, or the turn's running total)."""

    thread_id: str
    turn_id: str
    usage: TokenUsageBreakdown


class Steer(Fact, frozen=True, gc=False):
    """``turn/steer`` was accepted into ``accepted_turn_id``, or rejected
    (``rejection_reason`` as the original: ``no_active_turn``,
    ``expected_turn_mismatch``, ``empty_input``, ``input_too_large``, ...)."""

    thread_id: str
    connection_id: int
    expected_turn_id: str | None
    accepted_turn_id: str | None
    result: Literal["accepted", "rejected"]
    rejection_reason: str | None = None
    num_input_images: int = 0


class Compaction(Fact, frozen=True, gc=False):
    """A compaction finished. The values follow the original's
    ``CodexCompactionEvent`` (snake_case names of its enums)."""

    thread_id: str
    turn_id: str
    #: ``manual`` or ``auto``.
    trigger: str
    #: ``user_requested``, ``context_limit`` or ``model_downshift``.
    reason: str
    #: ``completed``, ``failed`` or ``interrupted``.
    status: str
    active_context_tokens_before: int
    active_context_tokens_after: int
    started_at: int
    duration_ms: int | None = None
    #: ``responses`` or ``responses_compact``.
    implementation: str = "responses"
    #: ``standalone_turn``, ``pre_turn`` or ``mid_turn``.
    phase: str = "mid_turn"
    #: ``memento`` or ``prefix_compaction``.
    strategy: str = "memento"
    error: str | None = None


AnalyticsFact = (
    Initialize
    | ConnectionClosed
    | ClientRequest
    | ClientResponse
    | ErrorResponse
    | ServerRequest
    | ServerResponse
    | ServerRequestAborted
    | ApprovalFromSessionCache
    | ThreadStarted
    | TurnStarted
    | TurnCompleted
    | TurnResolvedConfig
    | TurnTokenUsage
    | Steer
    | Compaction
)


# --- typed answers to server requests ----------------------------------------


class AcceptWithExecpolicyAmendment(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``{"acceptWithExecpolicyAmendment": {"execpolicy_amendment": [...]}}``:
    accept, and allow commands starting with this prefix from now on."""

    execpolicy_amendment: tuple[str, ...]


class NetworkPolicyAmendment(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    host: str
    action: Literal["allow", "deny"]


class ApplyNetworkPolicyAmendment(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    network_policy_amendment: NetworkPolicyAmendment


class CommandExecutionDecisionObject(
    msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True, omit_defaults=True
):
    """The object forms of a command decision: exactly one key."""

    accept_with_execpolicy_amendment: AcceptWithExecpolicyAmendment | None = None
    apply_network_policy_amendment: ApplyNetworkPolicyAmendment | None = None

    def __post_init__(self) -> None:
        if (self.accept_with_execpolicy_amendment is None) == (self.apply_network_policy_amendment is None):
            raise ValueError(
                "expected exactly one of `acceptWithExecpolicyAmendment` or `applyNetworkPolicyAmendment`"
            )

    @property
    def name(self) -> str:
        if self.accept_with_execpolicy_amendment is not None:
            return "acceptWithExecpolicyAmendment"
        return "applyNetworkPolicyAmendment"


_SimpleDecision = Literal["accept", "acceptForSession", "decline", "cancel"]


class CommandExecutionRequestApprovalResponse(msgspec.Struct, frozen=True):
    """The answer to ``item/commandExecution/requestApproval``."""

    decision: _SimpleDecision | CommandExecutionDecisionObject

    @property
    def decision_name(self) -> str:
        d = self.decision
        return d if isinstance(d, str) else d.name


class FileChangeRequestApprovalResponse(msgspec.Struct, frozen=True):
    """The answer to ``item/fileChange/requestApproval``."""

    decision: _SimpleDecision

    @property
    def decision_name(self) -> str:
        return self.decision


#: The response type of each server request method we send. A new kind of
#: server request (``item/tool/call``, ``item/tool/requestUserInput``,
#: ``mcpServer/elicitation/request``, ...) adds its row here; approval-like
#: responses also define ``decision_name``.
RESPONSE_TYPES: Final[Mapping[str, type[msgspec.Struct]]] = {
    "item/commandExecution/requestApproval": CommandExecutionRequestApprovalResponse,
    "item/fileChange/requestApproval": FileChangeRequestApprovalResponse,
}

_DECODERS: Final = {method: msgspec.json.Decoder(t) for method, t in RESPONSE_TYPES.items()}


class DecodeFailure(msgspec.Struct, frozen=True):
    """A client's answer that does not fit its request's response type."""

    request_id: int
    method: str
    message: str


def response_from_result(request: ServerRequest, result: msgspec.Raw | bytes | None) -> Any:
    """Decode the raw ``result`` of a client's ``{id, result}`` into the typed
    response of ``request.method`` (see :data:`RESPONSE_TYPES`).

    Returns the response Struct, or a :class:`DecodeFailure` naming what
    does not fit; never raises.
    """
    decoder = _DECODERS.get(request.method)
    if decoder is None:
        return DecodeFailure(request.request_id, request.method,
                             f"no response type is known for `{request.method}`; add it to RESPONSE_TYPES")
    if result is None or len(result) == 0:
        return DecodeFailure(request.request_id, request.method, "the answer has no `result`")
    try:
        return decoder.decode(result)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return DecodeFailure(request.request_id, request.method, str(exc))


# --- recording ------------------------------------------------------------------


#: The least time between two "queue is full" warnings; the facts dropped in
#: between are counted and reported with the next one.
DROP_WARNING_INTERVAL: Final = 10.0


class Recorder:
    """The handle actors record facts through: ``recorder.record(fact)``.

    Share one Recorder among all actors, and record from the server's trio
    tasks (as with any mailbox send), not from worker threads.
    :meth:`record` never blocks and never raises. When analytics is off (see :data:`DISABLED`) it does
    nothing; callers on a hot path can test :attr:`enabled` to skip building
    the fact as well. When on, a fact that finds the analytics mailbox full
    is dropped and counted, and a warning says so at most once every
    :data:`DROP_WARNING_INTERVAL` seconds, with the number dropped since the
    last one (the original logs one warning per dropped fact).
    """

    __slots__ = ("_mailbox", "_next_warning", "_unreported", "enabled")

    def __init__(self, mailbox: Mailbox[Any] | None) -> None:
        self._mailbox = mailbox
        self.enabled = mailbox is not None
        self._unreported = 0
        self._next_warning = float("-inf")

    def record(self, fact: Fact) -> None:
        """Hand ``fact`` to the analytics actor, or drop it; returns at once."""
        mailbox = self._mailbox
        if mailbox is None:
            return
        try:
            if mailbox.send_nowait(fact):
                return
        except MailboxClosed:
            # Analytics has stopped (shutdown): there is nobody to tell.
            return
        self._dropped()

    def _dropped(self) -> None:
        self._unreported += 1
        now = trio.current_time()
        if now >= self._next_warning:
            assert self._mailbox is not None
            log.warning(
                "analytics queue is full (%d facts): dropped %d fact(s) since the last warning. "
                "Analytics is best effort and the server carries on; if this persists, "
                "an exporter or the reducer cannot keep up",
                self._mailbox.statistics().capacity, self._unreported,
            )
            self._unreported = 0
            self._next_warning = now + DROP_WARNING_INTERVAL

    @property
    def dropped(self) -> int:
        """Facts dropped so far because the mailbox was full."""
        return 0 if self._mailbox is None else self._mailbox.statistics().dropped

    def close(self) -> None:
        """Stop recording through this handle; later facts are ignored. The
        analytics actor finishes once every handle is closed."""
        if self._mailbox is not None:
            self._mailbox.close()
            self._mailbox = None
            self.enabled = False


#: The Recorder of a server with analytics off: every call is a no-op.
DISABLED: Final = Recorder(None)
