"""The analytics reducer and the typed answers to server requests: pure
functions, driven without trio. Event shapes are checked as the JSON an
exporter writes."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from trio_codex.actors.analytics.facts import (
    ApprovalFromSessionCache,
    ClientRequest,
    ClientResponse,
    CommandExecutionRequestApprovalResponse,
    Compaction,
    ConnectionClosed,
    DecodeFailure,
    ErrorResponse,
    FileChangeRequestApprovalResponse,
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
from trio_codex.actors.analytics.reducer import (
    MAX_PENDING_REQUESTS,
    MAX_TURNS,
    Event,
    Reducer,
)
from trio_codex.runtime.protocol.jsonrpc import ErrorObject
from trio_codex.runtime.protocol.v2.approval import (
    CommandExecutionRequestApprovalParams,
    FileChangeRequestApprovalParams,
)
from trio_codex.runtime.protocol.v2.turn import TokenUsageBreakdown

COMMAND = "item/commandExecution/requestApproval"
FILE_CHANGE = "item/fileChange/requestApproval"


def as_json(events: list[Event]) -> list[dict[str, Any]]:
    return msgspec.json.decode(msgspec.json.encode(events))


def command_request(request_id: int, item_id: str, sent_to: tuple[int, ...], *, at_ms: int,
                    turn_id: str = "u1", replayed: bool = False) -> ServerRequest:
    params = CommandExecutionRequestApprovalParams("t1", turn_id, item_id, at_ms, "rm -rf build", "/w", [])
    return ServerRequest(request_id, COMMAND, params, "t1", turn_id, item_id, sent_to, replayed, at_ms=at_ms)


def answer(request_id: int, by: int, result: bytes, *, at_ms: int) -> ServerResponse:
    return ServerResponse(request_id, by, msgspec.Raw(result), at_ms=at_ms)


def feed(reducer: Reducer, *facts: Any) -> list[dict[str, Any]]:
    return as_json([event for fact in facts for event in reducer.ingest(fact)])


def test_a_full_session_reduces_to_the_exact_events() -> None:
    r = Reducer()
    assert feed(
        r,
        Initialize(1, "codex_vscode", "1.4.0", at_ms=900),
        Initialize(2, "codex-tui", "0.169.0", at_ms=901),
    ) == []
    assert feed(r, ThreadStarted("t1", 1, "gpt-5", model_provider="openai", created_at=1_700_000_000,
                                 at_ms=950)) == [{
        "event_type": "codex_thread_initialized", "thread_id": "t1", "connection_id": 1,
        "client_name": "codex_vscode", "client_version": "1.4.0", "rpc_transport": "stdio",
        "model": "gpt-5", "model_provider": "openai", "ephemeral": False,
        "initialization_mode": "new", "created_at": 1_700_000_000,
    }]
    file_params = FileChangeRequestApprovalParams("t1", "u1", "call-2", 1400)
    events = feed(
        r,
        ClientRequest(1, 7, "turn/start", thread_id="t1", at_ms=990),
        ClientResponse(1, 7, "turn/start", thread_id="t1", turn_id="u1", at_ms=995),
        TurnResolvedConfig("t1", "u1", "gpt-5", "on-request", "workspace-write", model_provider="openai",
                           reasoning_effort="medium", is_first_turn=True, at_ms=996),
        TurnStarted("t1", "u1", at_ms=1000),
        command_request(0, "call-1", (1, 2), at_ms=1100),
        answer(0, 2, b'{"decision": "accept"}', at_ms=1350),
        ServerRequest(1, FILE_CHANGE, file_params, "t1", "u1", "call-2", (1,), at_ms=1400),
        answer(1, 1, b'{"decision": "decline"}', at_ms=1500),
        Steer("t1", 2, "u1", "u1", "accepted", at_ms=1600),
        Compaction("t1", "u1", "auto", "context_limit", "completed", 90_000, 12_000, started_at=1650,
                   duration_ms=40, at_ms=1700),
        TurnTokenUsage("t1", "u1", TokenUsageBreakdown(total_tokens=150, input_tokens=100, cached_input_tokens=20,
                                                       output_tokens=50, reasoning_output_tokens=10), at_ms=1900),
        TurnCompleted("t1", "u1", "completed", 1000, at_ms=2000),
    )
    approval = {
        "event_type": "codex_tool_approval", "thread_id": "t1", "turn_id": "u1", "policy": "on-request",
        "failure": None, "from_session_cache": False, "replayed": False,
    }
    assert events == [
        {**approval, "item_id": "call-1", "request_id": 0, "request_method": COMMAND, "decision": "accept",
         "decision_ms": 250, "answered_by_connection": 2, "sent_to_connections": [1, 2]},
        {**approval, "item_id": "call-2", "request_id": 1, "request_method": FILE_CHANGE, "decision": "decline",
         "decision_ms": 100, "answered_by_connection": 1, "sent_to_connections": [1]},
        {"event_type": "codex_turn_steer_event", "thread_id": "t1", "expected_turn_id": "u1",
         "accepted_turn_id": "u1", "connection_id": 2, "client_name": "codex-tui", "num_input_images": 0,
         "result": "accepted", "rejection_reason": None, "started_at": 1600},
        {"event_type": "codex_compaction_event", "thread_id": "t1", "turn_id": "u1", "trigger": "auto",
         "reason": "context_limit", "implementation": "responses", "phase": "mid_turn", "strategy": "memento",
         "status": "completed", "error": None, "active_context_tokens_before": 90_000,
         "active_context_tokens_after": 12_000, "started_at": 1650, "completed_at": 1700, "duration_ms": 40},
        {"event_type": "codex_turn_event", "thread_id": "t1", "turn_id": "u1", "connection_id": 1,
         "client_name": "codex_vscode", "status": "completed", "turn_error": None, "duration_ms": 1000,
         "started_at": 1000, "completed_at": 2000, "steer_count": 1, "approval_count": 2,
         "input_tokens": 100, "cached_input_tokens": 20, "output_tokens": 50, "reasoning_output_tokens": 10,
         "total_tokens": 150, "model": "gpt-5", "model_provider": "openai", "approval_policy": "on-request",
         "sandbox_policy": "workspace_write", "sandbox_network_access": False, "reasoning_effort": "medium",
         "reasoning_summary": None, "num_input_images": 0, "is_first_turn": True},
    ]
    assert r.sizes() == {"connections": 2, "threads": 1, "turns": 0, "pending_requests": 0}
    assert (r.evicted, r.unmatched) == (0, 0)


def test_usage_on_turn_completed_wins_and_missing_config_reads_null() -> None:
    r = Reducer()
    feed(r, ThreadStarted("t1", None, "gpt-5", model_provider="openai"),
         TurnTokenUsage("t1", "u1", TokenUsageBreakdown(input_tokens=1)))
    [event] = feed(r, TurnCompleted("t1", "u1", "failed", None, error_info="context_window_exceeded",
                                    usage=TokenUsageBreakdown(input_tokens=7, output_tokens=3), at_ms=5))
    assert event["input_tokens"] == 7 and event["output_tokens"] == 3
    assert event["turn_error"] == "context_window_exceeded" and event["status"] == "failed"
    assert event["model"] == "gpt-5" and event["model_provider"] == "openai"
    assert event["approval_policy"] is None and event["sandbox_policy"] is None and event["started_at"] is None
    assert event["connection_id"] is None and event["client_name"] is None


def test_one_fanned_out_request_is_one_event_attributed_to_the_connection_that_answered() -> None:
    r = Reducer()
    # Recorded once with every recipient, or (by mistake) once per recipient: one request either way.
    feed(r, command_request(4, "call-1", (1, 2), at_ms=100), command_request(4, "call-1", (3,), at_ms=101))
    [event] = feed(r, answer(4, 3, b'{"decision": "acceptForSession"}', at_ms=160),
                   answer(4, 1, b'{"decision": "decline"}', at_ms=170))
    assert event["sent_to_connections"] == [1, 2, 3]
    assert event["answered_by_connection"] == 3 and event["decision"] == "acceptForSession"
    assert event["decision_ms"] == 60
    assert r.unmatched == 1  # the late answer


def test_a_replayed_request_keeps_its_first_send_and_adds_the_new_connection() -> None:
    r = Reducer()
    feed(r, command_request(9, "call-1", (1,), at_ms=100))
    feed(r, command_request(9, "call-1", (2,), at_ms=5000, replayed=True))
    [event] = feed(r, answer(9, 2, b'{"decision": "cancel"}', at_ms=5100))
    assert event["replayed"] is True and event["sent_to_connections"] == [1, 2]
    assert event["decision_ms"] == 5000 and event["decision"] == "cancel"


def test_answers_without_a_decision_say_why() -> None:
    r = Reducer()
    feed(r, *(command_request(i, f"call-{i}", (1,), at_ms=0) for i in range(3)))
    malformed = feed(r, answer(0, 1, b'{"decision": "yes please"}', at_ms=1))
    error = feed(r, ServerResponse(1, 1, None, ErrorObject(-32603, "handler crashed"), at_ms=2))
    aborted = feed(r, ServerRequestAborted(2, at_ms=3))
    assert [(e["decision"], e["failure"], e["answered_by_connection"]) for e in malformed + error + aborted] == [
        (None, "malformed", 1), (None, "error", 1), (None, "aborted", None)]
    assert feed(r, ServerRequestAborted(2)) == [] and r.unmatched == 1


def test_a_turn_that_ends_with_requests_pending_reports_them_aborted_first() -> None:
    r = Reducer()
    feed(r, command_request(0, "call-1", (1,), at_ms=10), command_request(1, "call-2", (1,), at_ms=20),
         answer(1, 1, b'{"decision": "accept"}', at_ms=30))
    aborted, turn = feed(r, TurnCompleted("t1", "u1", "interrupted", 50, at_ms=60))
    assert (aborted["event_type"], aborted["request_id"], aborted["failure"], aborted["decision_ms"]) == (
        "codex_tool_approval", 0, "aborted", 50)
    assert turn["event_type"] == "codex_turn_event" and turn["approval_count"] == 2
    assert r.sizes()["pending_requests"] == 0


def test_an_approval_from_the_session_cache() -> None:
    r = Reducer()
    feed(r, TurnResolvedConfig("t1", "u1", "gpt-5", "untrusted", "read-only"))
    assert feed(r, ApprovalFromSessionCache("t1", "u1", "call-3", COMMAND)) == [{
        "event_type": "codex_tool_approval", "thread_id": "t1", "turn_id": "u1", "item_id": "call-3",
        "request_id": None, "request_method": COMMAND, "policy": "untrusted", "decision": "acceptForSession",
        "failure": None, "decision_ms": 0, "answered_by_connection": None, "sent_to_connections": [],
        "from_session_cache": True, "replayed": False,
    }]


def test_a_rejected_steer_is_an_event_but_not_a_steer_of_the_turn() -> None:
    r = Reducer()
    [steer] = feed(r, Steer("t1", 1, "u0", None, "rejected", "expected_turn_mismatch"))
    assert (steer["result"], steer["rejection_reason"], steer["client_name"]) == (
        "rejected", "expected_turn_mismatch", None)
    [turn] = feed(r, TurnCompleted("t1", "u1", "completed", 1))
    assert turn["steer_count"] == 0


def test_client_errors_and_closed_connections_are_absorbed() -> None:
    r = Reducer()
    assert feed(r, Initialize(1, "a", "1"), ErrorResponse(1, 3, "turn/start", -32600, "thread not found: x"),
                ConnectionClosed(1)) == []
    [init] = feed(r, ThreadStarted("t1", 1, "m"))
    assert init["client_name"] is None and r.sizes()["connections"] == 0


def test_state_is_capped_however_many_facts_go_unfinished() -> None:
    r = Reducer()
    for i in range(MAX_PENDING_REQUESTS + 10):
        r.ingest(command_request(i, f"c{i}", (1,), at_ms=0, turn_id=f"u{i}"))
    sizes = r.sizes()
    assert sizes["pending_requests"] == MAX_PENDING_REQUESTS and sizes["turns"] == MAX_TURNS
    assert r.evicted == 2 * 10 + (MAX_PENDING_REQUESTS - MAX_TURNS)
    # The oldest went first: answering it finds nothing, answering the newest still works.
    assert feed(r, answer(0, 1, b'{"decision": "accept"}', at_ms=1)) == []
    assert len(feed(r, answer(MAX_PENDING_REQUESTS + 9, 1, b'{"decision": "accept"}', at_ms=1))) == 1


# --- typed responses -------------------------------------------------------------

COMMAND_DECISIONS = [
    ("accept", "accept"),
    ("acceptForSession", "acceptForSession"),
    ({"acceptWithExecpolicyAmendment": {"execpolicy_amendment": ["git", "status"]}},
     "acceptWithExecpolicyAmendment"),
    ({"applyNetworkPolicyAmendment": {"network_policy_amendment": {"host": "pypi.org", "action": "allow"}}},
     "applyNetworkPolicyAmendment"),
    ("decline", "decline"),
    ("cancel", "cancel"),
]


@pytest.mark.parametrize(("decision", "name"), COMMAND_DECISIONS)
def test_command_approval_answers_decode_to_their_typed_response(decision: Any, name: str) -> None:
    request = command_request(0, "call-1", (1,), at_ms=0)
    response = response_from_result(request, msgspec.json.encode({"decision": decision}))
    assert isinstance(response, CommandExecutionRequestApprovalResponse)
    assert response.decision_name == name
    assert msgspec.json.decode(msgspec.json.encode(response)) == {"decision": decision}


@pytest.mark.parametrize("decision", ["accept", "acceptForSession", "decline", "cancel"])
def test_file_change_answers_decode_to_their_typed_response(decision: str) -> None:
    request = ServerRequest(0, FILE_CHANGE, FileChangeRequestApprovalParams("t", "u", "i", 0), "t", "u", "i", (1,))
    response = response_from_result(request, msgspec.Raw(msgspec.json.encode({"decision": decision})))
    assert response == FileChangeRequestApprovalResponse(decision)  # type: ignore[arg-type]


@pytest.mark.parametrize(("method", "result", "message"), [
    (COMMAND, b'{"decision": 42}', "Expected `str | object`, got `int` - at `$.decision`"),
    (COMMAND, b'{"decision": "yes"}', "Invalid enum value 'yes' - at `$.decision`"),
    (COMMAND, b"{}", "Object missing required field `decision`"),
    (COMMAND, b'{"decision": {}}', "expected exactly one of `acceptWithExecpolicyAmendment` or "
                                   "`applyNetworkPolicyAmendment` - at `$.decision`"),
    (COMMAND, b'{"decision": {"acceptWithExecpolicyAmendment": {"execpolicy_amendment": "ls"}}}',
     "Expected `array`, got `str` - at `$.decision.acceptWithExecpolicyAmendment.execpolicy_amendment`"),
    (COMMAND, b'{"decision": "acc', "Input data was truncated"),
    (COMMAND, None, "the answer has no `result`"),
    (FILE_CHANGE, b'{"decision": {"acceptWithExecpolicyAmendment": {"execpolicy_amendment": []}}}',
     "Expected `str`, got `object` - at `$.decision`"),
    ("item/tool/call", b"{}", "no response type is known for `item/tool/call`; add it to RESPONSE_TYPES"),
])
def test_an_answer_that_does_not_fit_is_a_decode_failure_not_an_exception(
        method: str, result: bytes | None, message: str) -> None:
    request = ServerRequest(3, method, msgspec.Raw(b"{}"), "t", "u", "i", (1,))
    assert response_from_result(request, result) == DecodeFailure(3, method, message)
