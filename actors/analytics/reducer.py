"""The analytics reducer: facts in, events out. Pure: no I/O, no clock, no
trio; the analytics actor feeds it and tests drive it directly.

``Reducer.ingest(fact)`` returns the events the fact completes, often none.
It joins what the facts say separately:

- connections (``Initialize``): who the client is, for thread events;
- threads (``ThreadStarted``): model and provider, for turn events;
- turns: resolved config, start time, token usage and steer count, until
  ``TurnCompleted`` emits ``codex_turn_event``;
- pending server requests: from ``ServerRequest`` (merged across fan-out and
  replays) to the ``ServerResponse`` that resolved it, or to its abort,
  which emits ``codex_tool_approval``.

Client requests and error responses are facts for analytics to come; no
event needs them yet (the original's reducer also ignores most of them).

Events are frozen Structs tagged by ``event_type``; encoded with msgspec
they are flat JSON objects with snake_case fields, every field present
(``null`` when unknown). Field names follow the original's
``codex-rs/analytics`` events where it has them, flattened.

State is bounded. A turn is forgotten when it completes and a request when
it is resolved; the maps also have caps (``MAX_*``), past which the oldest
entry is evicted and counted in ``evicted``, so a host that runs for months,
or facts lost to a full queue, cannot grow it without limit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import msgspec

from ...runtime.protocol.v2.turn import TokenUsageBreakdown
from .facts import (
    ApprovalFromSessionCache,
    ClientResponse,
    Compaction,
    ConnectionClosed,
    DecodeFailure,
    Fact,
    Initialize,
    ServerRequest,
    ServerRequestAborted,
    ServerResponse,
    Steer,
    ThreadStarted,
    TurnCompleted,
    TurnResolvedConfig,
    TurnStarted,
    TurnTokenUsage,
    response_from_result,
)

__all__ = [
    "MAX_CONNECTIONS",
    "MAX_PENDING_REQUESTS",
    "MAX_THREADS",
    "MAX_TURNS",
    "CompactionEvent",
    "Event",
    "Reducer",
    "ThreadInitialized",
    "ToolApproval",
    "TurnEvent",
    "TurnSteerEvent",
]

#: Connections remembered at once (a connection is forgotten when it closes).
MAX_CONNECTIONS: Final = 4096
#: Threads remembered at once; the oldest is evicted first.
MAX_THREADS: Final = 4096
#: Turns in flight at once (a turn is forgotten when it completes).
MAX_TURNS: Final = 1024
#: Server requests awaiting an answer at once.
MAX_PENDING_REQUESTS: Final = 1024


# --- events ----------------------------------------------------------------------


class Event(msgspec.Struct, frozen=True, tag_field="event_type"):
    """Base of every exported event."""


class ThreadInitialized(Event, frozen=True, tag="codex_thread_initialized"):
    thread_id: str
    connection_id: int | None
    client_name: str | None
    client_version: str | None
    rpc_transport: str | None
    model: str
    model_provider: str
    ephemeral: bool
    initialization_mode: str
    created_at: int


class TurnEvent(Event, frozen=True, tag="codex_turn_event"):
    """A turn, once it completed. Config fields are null when no
    ``TurnResolvedConfig`` was seen; token fields when no usage was."""

    thread_id: str
    turn_id: str
    connection_id: int | None
    client_name: str | None
    status: str
    turn_error: str | None
    duration_ms: int | None
    started_at: int | None
    completed_at: int
    steer_count: int
    approval_count: int
    input_tokens: int | None
    cached_input_tokens: int | None
    output_tokens: int | None
    reasoning_output_tokens: int | None
    total_tokens: int | None
    model: str | None
    model_provider: str | None
    approval_policy: str | None
    sandbox_policy: str | None
    sandbox_network_access: bool | None
    reasoning_effort: str | None
    reasoning_summary: str | None
    num_input_images: int | None
    is_first_turn: bool | None


class TurnSteerEvent(Event, frozen=True, tag="codex_turn_steer_event"):
    thread_id: str
    expected_turn_id: str | None
    accepted_turn_id: str | None
    connection_id: int
    client_name: str | None
    num_input_images: int
    result: str
    rejection_reason: str | None
    started_at: int


class CompactionEvent(Event, frozen=True, tag="codex_compaction_event"):
    thread_id: str
    turn_id: str
    trigger: str
    reason: str
    implementation: str
    phase: str
    strategy: str
    status: str
    error: str | None
    active_context_tokens_before: int
    active_context_tokens_after: int
    started_at: int
    completed_at: int
    duration_ms: int | None


class ToolApproval(Event, frozen=True, tag="codex_tool_approval"):
    """One approval: asked and answered, answered from the session cache,
    or left unanswered.

    ``decision`` is the client's decision (``accept``, ``acceptForSession``,
    ``acceptWithExecpolicyAmendment``, ``applyNetworkPolicyAmendment``,
    ``decline``, ``cancel``); ``acceptForSession`` with
    ``from_session_cache`` when no prompt was needed. When there is no
    decision, ``failure`` says why: ``malformed`` (the answer did not fit
    the response type), ``error`` (the client answered with an error) or
    ``aborted`` (the request was cleared unanswered). ``decision_ms`` runs
    from the request going out to its answer or abort.
    """

    thread_id: str
    turn_id: str
    item_id: str
    request_id: int | None
    request_method: str
    policy: str | None
    decision: str | None
    failure: str | None
    decision_ms: int | None
    answered_by_connection: int | None
    sent_to_connections: tuple[int, ...]
    from_session_cache: bool
    replayed: bool


# --- state ---------------------------------------------------------------------


class _Connection(msgspec.Struct):
    client_name: str
    client_version: str
    transport: str


class _Thread(msgspec.Struct):
    model: str
    model_provider: str


class _Turn(msgspec.Struct):
    thread_id: str
    connection_id: int | None = None
    config: TurnResolvedConfig | None = None
    started_at: int | None = None
    usage: TokenUsageBreakdown | None = None
    steer_count: int = 0
    approval_count: int = 0
    requests: set[int] = msgspec.field(default_factory=set)


class _Pending(msgspec.Struct):
    request: ServerRequest
    sent_to: set[int]
    replayed: bool


_SANDBOX_NAMES: Final = {
    "read-only": "read_only",
    "readOnly": "read_only",
    "workspace-write": "workspace_write",
    "workspaceWrite": "workspace_write",
    "danger-full-access": "full_access",
    "dangerFullAccess": "full_access",
    "externalSandbox": "external_sandbox",
}


def _put(table: dict, key: object, value: object, cap: int) -> int:
    """Insert into a capped table; returns how many entries were evicted."""
    table[key] = value
    evicted = 0
    while len(table) > cap:
        del table[next(iter(table))]
        evicted += 1
    return evicted


class Reducer:
    """Joins facts into events; see the module docstring.

    ``evicted`` counts entries dropped by the caps, ``unmatched`` answers and
    aborts for requests it was not tracking (sent before analytics started,
    evicted, or their ``ServerRequest`` fact was dropped).
    """

    def __init__(self) -> None:
        self._connections: dict[int, _Connection] = {}
        self._threads: dict[str, _Thread] = {}
        self._turns: dict[str, _Turn] = {}
        self._pending: dict[int, _Pending] = {}
        self.evicted = 0
        self.unmatched = 0

    def sizes(self) -> dict[str, int]:
        """How many connections, threads, turns and requests are held."""
        return {"connections": len(self._connections), "threads": len(self._threads),
                "turns": len(self._turns), "pending_requests": len(self._pending)}

    def ingest(self, fact: Fact) -> list[Event]:
        """Take one fact; return the events it completes, in order."""
        # A dict lookup on the fact's type: a ``match`` over a dozen class
        # patterns costs ~1.6 us a fact, most of the reducer's time.
        handler = _HANDLERS.get(type(fact))
        return [] if handler is None else handler(self, fact)

    # --- connections ---------------------------------------------------------

    def _initialize(self, fact: Initialize) -> list[Event]:
        self.evicted += _put(self._connections, fact.connection_id,
                             _Connection(fact.client_name, fact.client_version, fact.transport), MAX_CONNECTIONS)
        return []

    def _connection_closed(self, fact: ConnectionClosed) -> list[Event]:
        self._connections.pop(fact.connection_id, None)
        return []

    # --- threads and turns ---------------------------------------------------

    def _thread_started(self, fact: ThreadStarted) -> list[Event]:
        self.evicted += _put(self._threads, fact.thread_id, _Thread(fact.model, fact.model_provider),
                             MAX_THREADS)
        conn = self._connections.get(fact.connection_id) if fact.connection_id is not None else None
        return [ThreadInitialized(
            thread_id=fact.thread_id,
            connection_id=fact.connection_id,
            client_name=conn.client_name if conn else None,
            client_version=conn.client_version if conn else None,
            rpc_transport=conn.transport if conn else None,
            model=fact.model,
            model_provider=fact.model_provider,
            ephemeral=fact.ephemeral,
            initialization_mode=fact.initialization_mode,
            created_at=fact.created_at,
        )]

    def _client_response(self, fact: ClientResponse) -> list[Event]:
        if fact.method == "turn/start" and fact.turn_id is not None and fact.thread_id is not None:
            self._turn(fact.turn_id, fact.thread_id).connection_id = fact.connection_id
        return []

    def _turn_started(self, fact: TurnStarted) -> list[Event]:
        self._turn(fact.turn_id, fact.thread_id).started_at = fact.at_ms
        return []

    def _turn_config(self, fact: TurnResolvedConfig) -> list[Event]:
        self._turn(fact.turn_id, fact.thread_id).config = fact
        return []

    def _turn_usage(self, fact: TurnTokenUsage) -> list[Event]:
        self._turn(fact.turn_id, fact.thread_id).usage = fact.usage
        return []

    def _turn(self, turn_id: str, thread_id: str) -> _Turn:
        turn = self._turns.get(turn_id)
        if turn is None:
            turn = _Turn(thread_id)
            self.evicted += _put(self._turns, turn_id, turn, MAX_TURNS)
        return turn

    def _turn_completed(self, fact: TurnCompleted) -> list[Event]:
        turn = self._turns.pop(fact.turn_id, None) or _Turn(fact.thread_id)
        # Requests the turn left unanswered: their abort facts may be lost or
        # still behind this one; report them now rather than never.
        events: list[Event] = [self._approval(p, fact.at_ms, failure="aborted")
                               for rid in sorted(turn.requests)
                               if (p := self._pending.pop(rid, None)) is not None]
        config = turn.config
        thread = self._threads.get(fact.thread_id)
        conn = self._connections.get(turn.connection_id) if turn.connection_id is not None else None
        usage = fact.usage or turn.usage
        events.append(TurnEvent(
            thread_id=fact.thread_id,
            turn_id=fact.turn_id,
            connection_id=turn.connection_id,
            client_name=conn.client_name if conn else None,
            status=fact.status,
            turn_error=fact.error_info,
            duration_ms=fact.duration_ms,
            started_at=turn.started_at,
            completed_at=fact.at_ms,
            steer_count=turn.steer_count,
            approval_count=turn.approval_count,
            input_tokens=usage.input_tokens if usage else None,
            cached_input_tokens=usage.cached_input_tokens if usage else None,
            output_tokens=usage.output_tokens if usage else None,
            reasoning_output_tokens=usage.reasoning_output_tokens if usage else None,
            total_tokens=usage.total_tokens if usage else None,
            model=config.model if config else thread.model if thread else None,
            model_provider=(config.model_provider if config else thread.model_provider if thread else None)
            or None,
            approval_policy=config.approval_policy if config else None,
            sandbox_policy=_SANDBOX_NAMES.get(config.sandbox, config.sandbox) if config else None,
            sandbox_network_access=config.sandbox_network_access if config else None,
            reasoning_effort=config.reasoning_effort if config else None,
            reasoning_summary=config.reasoning_summary if config else None,
            num_input_images=config.num_input_images if config else None,
            is_first_turn=config.is_first_turn if config else None,
        ))
        return events

    def _steer(self, fact: Steer) -> list[Event]:
        if fact.result == "accepted" and fact.accepted_turn_id is not None:
            self._turn(fact.accepted_turn_id, fact.thread_id).steer_count += 1
        conn = self._connections.get(fact.connection_id)
        return [TurnSteerEvent(
            thread_id=fact.thread_id,
            expected_turn_id=fact.expected_turn_id,
            accepted_turn_id=fact.accepted_turn_id,
            connection_id=fact.connection_id,
            client_name=conn.client_name if conn else None,
            num_input_images=fact.num_input_images,
            result=fact.result,
            rejection_reason=fact.rejection_reason,
            started_at=fact.at_ms,
        )]

    # --- server requests -------------------------------------------------------

    def _server_request(self, fact: ServerRequest) -> list[Event]:
        pending = self._pending.get(fact.request_id)
        if pending is not None:
            # Fan-out recorded per connection, or a replay: one request.
            pending.sent_to.update(fact.sent_to)
            pending.replayed = pending.replayed or fact.replayed
            return []
        self.evicted += _put(self._pending, fact.request_id, _Pending(fact, set(fact.sent_to), fact.replayed),
                             MAX_PENDING_REQUESTS)
        turn = self._turn(fact.turn_id, fact.thread_id)
        turn.requests.add(fact.request_id)
        turn.approval_count += 1
        return []

    def _server_response(self, fact: ServerResponse) -> list[Event]:
        pending = self._pending.pop(fact.request_id, None)
        if pending is None:
            self.unmatched += 1
            return []
        if fact.error is not None:
            return [self._approval(pending, fact.at_ms, answered_by=fact.answered_by, failure="error")]
        response = response_from_result(pending.request, fact.result)
        if isinstance(response, DecodeFailure):
            return [self._approval(pending, fact.at_ms, answered_by=fact.answered_by, failure="malformed")]
        return [self._approval(pending, fact.at_ms, answered_by=fact.answered_by,
                               decision=getattr(response, "decision_name", None))]

    def _aborted(self, fact: ServerRequestAborted) -> list[Event]:
        pending = self._pending.pop(fact.request_id, None)
        if pending is None:
            self.unmatched += 1
            return []
        return [self._approval(pending, fact.at_ms, failure="aborted")]

    def _policy(self, turn_id: str) -> str | None:
        turn = self._turns.get(turn_id)
        return turn.config.approval_policy if turn and turn.config else None

    def _approval(self, pending: _Pending, at_ms: int, *, answered_by: int | None = None,
                  decision: str | None = None, failure: str | None = None) -> ToolApproval:
        request = pending.request
        turn = self._turns.get(request.turn_id)
        if turn is not None:
            turn.requests.discard(request.request_id)
        return ToolApproval(
            thread_id=request.thread_id,
            turn_id=request.turn_id,
            item_id=request.item_id,
            request_id=request.request_id,
            request_method=request.method,
            policy=self._policy(request.turn_id),
            decision=decision,
            failure=failure,
            decision_ms=max(0, at_ms - request.at_ms),
            answered_by_connection=answered_by,
            sent_to_connections=tuple(sorted(pending.sent_to)),
            from_session_cache=False,
            replayed=pending.replayed,
        )

    def _cached_approval(self, fact: ApprovalFromSessionCache) -> list[Event]:
        self._turn(fact.turn_id, fact.thread_id).approval_count += 1
        return [ToolApproval(
            thread_id=fact.thread_id,
            turn_id=fact.turn_id,
            item_id=fact.item_id,
            request_id=None,
            request_method=fact.request_method,
            policy=self._policy(fact.turn_id),
            decision="acceptForSession",
            failure=None,
            decision_ms=0,
            answered_by_connection=None,
            sent_to_connections=(),
            from_session_cache=True,
            replayed=False,
        )]


    def _compaction(self, fact: Compaction) -> list[Event]:
        return [CompactionEvent(
            thread_id=fact.thread_id,
            turn_id=fact.turn_id,
            trigger=fact.trigger,
            reason=fact.reason,
            implementation=fact.implementation,
            phase=fact.phase,
            strategy=fact.strategy,
            status=fact.status,
            error=fact.error,
            active_context_tokens_before=fact.active_context_tokens_before,
            active_context_tokens_after=fact.active_context_tokens_after,
            started_at=fact.started_at,
            completed_at=fact.at_ms,
            duration_ms=fact.duration_ms,
        )]


_HANDLERS: Final[dict[type, Callable[[Reducer, Any], list[Event]]]] = {
    Initialize: Reducer._initialize,
    ConnectionClosed: Reducer._connection_closed,
    ThreadStarted: Reducer._thread_started,
    ClientResponse: Reducer._client_response,
    TurnStarted: Reducer._turn_started,
    TurnResolvedConfig: Reducer._turn_config,
    TurnTokenUsage: Reducer._turn_usage,
    TurnCompleted: Reducer._turn_completed,
    Steer: Reducer._steer,
    Compaction: Reducer._compaction,
    ServerRequest: Reducer._server_request,
    ServerResponse: Reducer._server_response,
    ServerRequestAborted: Reducer._aborted,
    ApprovalFromSessionCache: Reducer._cached_approval,
}

