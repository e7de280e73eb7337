"""runtime/mcp/server_tools.py, sans I/O: arguments read as the original's serde,
the elicitation params it sent, answers read as decisions, and v2
notifications as its codex/event messages."""

from __future__ import annotations

import pytest

from trio_codex.runtime.mcp.server_tools import (
    ToolArgError,
    approval_decision,
    codex_events,
    exec_elicitation,
    parse_uuid,
    patch_elicitation,
    thread_start_params,
)


def test_codex_arguments_become_thread_start_params() -> None:
    prompt, params = thread_start_params({
        "prompt": "hi", "cwd": "sub", "model": "m", "sandbox": "read-only", "approval-policy": "never",
        "base-instructions": "b", "developer-instructions": "d", "compact-prompt": "c",
        "config": {"model_reasoning_effort": "high"}}, "/srv")
    assert prompt == "hi"
    assert params == {"cwd": "/srv/sub", "model": "m", "sandbox": "read-only", "approvalPolicy": "never",
                      "baseInstructions": "b", "developerInstructions": "d",
                      "config": {"model_reasoning_effort": "high", "compact_prompt": "c"}}


@pytest.mark.parametrize("args, words", [
    ({}, "missing field `prompt`"),
    ({"prompt": 1}, "invalid type: number, expected a string"),
    ({"prompt": None}, "invalid type: null, expected a string"),
    ({"prompt": "x", "config": "s"}, 'invalid type: string "s", expected a map'),
    ({"prompt": "x", "sandbox": "open"},
     "unknown variant `open`, expected one of `read-only`, `workspace-write`, `danger-full-access`"),
    ({"prompt": "x", "approval-policy": "untrusted"}, "unknown variant `untrusted`, expected `on-request` or `never`"),
    ({"prompt": "x", "nope": 1}, "unknown field `nope`, expected one of `prompt`, "),
])
def test_bad_codex_arguments_get_serdes_words(args: dict, words: str) -> None:
    with pytest.raises(ToolArgError) as caught:
        thread_start_params(args, "/")
    assert str(caught.value).startswith(f"Failed to parse configuration for Codex tool: {words}")


def test_approvals_become_the_originals_elicitations() -> None:
    request = {"threadId": "t", "itemId": "call_1", "command": "/bin/bash -lc 'touch made'", "cwd": "/w",
               "commandActions": [{"type": "unknown", "command": "touch made"}]}
    params = exec_elicitation(request, "7", "turn-1")
    assert params == {
        "message": "Allow Codex to run `/bin/bash -lc 'touch made'` in `/w`?",
        "requestedSchema": {"type": "object", "properties": {}}, "threadId": "t",
        "codex_elicitation": "exec-approval", "codex_mcp_tool_call_id": "7", "codex_event_id": "turn-1",
        "codex_call_id": "call_1", "codex_command": ["/bin/bash", "-lc", "touch made"], "codex_cwd": "/w",
        "codex_parsed_cmd": [{"type": "unknown", "cmd": "touch made"}]}
    patch = patch_elicitation({"threadId": "t", "itemId": "p", "reason": "why", "grantRoot": None}, "7", "turn-1")
    assert patch["message"] == "why\nAllow Codex to apply proposed code changes?"
    assert patch["codex_elicitation"] == "patch-approval"


@pytest.mark.parametrize("answer, decision", [
    ({"decision": "approved"}, "accept"), ({"decision": "approved_for_session"}, "acceptForSession"),
    ({"decision": "denied"}, "decline"), ({"decision": "abort"}, "cancel"),
    ({"action": "accept"}, "accept"), ({"action": "cancel"}, "cancel"), ({"what": 1}, "decline"),
])
def test_an_answer_is_read_as_the_original_read_it(answer: dict, decision: str) -> None:
    assert approval_decision(answer) == decision


def test_notifications_become_codex_events_in_the_originals_order() -> None:
    user = {"type": "userMessage", "id": "u", "content": [{"type": "text", "text": "hi"}]}
    agent = {"type": "agentMessage", "id": "a", "text": "hello"}
    command = {"type": "commandExecution", "id": "c", "command": "/bin/bash -lc ls", "cwd": "/w",
               "commandActions": [{"type": "listFiles", "command": "ls", "path": None}], "status": "inProgress"}
    flow = [("turn/started", {"threadId": "t", "turn": {"id": "1"}}),
            ("item/started", {"threadId": "t", "turnId": "1", "item": user}),
            ("item/completed", {"threadId": "t", "turnId": "1", "item": user}),
            ("item/started", {"threadId": "t", "turnId": "1", "item": command}),
            ("item/completed", {"threadId": "t", "turnId": "1", "item": {**command, "status": "completed",
                                                                           "aggregatedOutput": "x", "exitCode": 0}}),
            ("item/agentMessage/delta", {"threadId": "t", "turnId": "1", "itemId": "a", "delta": "hel"}),
            ("item/completed", {"threadId": "t", "turnId": "1", "item": agent}),
            ("thread/status/changed", {"threadId": "t"}),
            ("turn/completed", {"threadId": "t", "turn": {"id": "1", "status": "completed"}})]
    events = [e for method, params in flow for e in codex_events(method, params)]
    assert [e["type"] for e in events] == [
        "task_started", "item_started", "item_completed", "user_message", "item_started", "exec_command_begin",
        "item_completed", "exec_command_end", "agent_message_content_delta", "item_completed", "agent_message",
        "task_complete"]
    # The items are core's TurnItems, as the original's.
    assert events[1]["item"] == {"type": "UserMessage", "id": "u", "content": user["content"]}
    assert events[9]["item"] == {"type": "AgentMessage", "id": "a", "content": [{"type": "Text", "text": "hello"}]}
    begin, end = events[5], events[7]
    assert (begin["call_id"], begin["command"]) == ("c", ["/bin/bash", "-lc", "ls"])
    assert begin["parsed_cmd"] == [{"type": "list_files", "cmd": "ls", "path": None}]
    assert (end["exit_code"], end["aggregated_output"], events[6]["item"]["status"]) == (0, "x", "completed")


@pytest.mark.parametrize("text, words", [
    ("zz", "invalid character: expected an optional prefix of `urn:uuid:` followed by [0-9a-fA-F-], found `z` at 1"),
    ("{zz}", "invalid character: expected an optional prefix of `urn:uuid:` followed by [0-9a-fA-F-], found `z` at 2"),
    ("0123", "invalid length: expected length 32 for simple format, found 4"),
    ("a-b", "invalid group count: expected 5, found 2"),
    ("urn:uuid:01A24FFE228F7910A097E3D640365A20", "invalid group count: expected 5, found 1"),
    ("aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaaa", "invalid group length in group 4: expected 12, found 13"),
])
def test_a_bad_thread_id_gets_the_uuid_crates_words(text: str, words: str) -> None:
    """Each case as 0.153.4 answered it, observed live."""
    with pytest.raises(ToolArgError) as caught:
        parse_uuid(text)
    assert str(caught.value) == f"Failed to parse thread_id: {words}"


@pytest.mark.parametrize("text", ["01A24FFE-228F-7910-A097-E3D640365A20", "{01a24ffe-228f-7910-a097-e3d640365a20}",
                                  "01a24ffe228f7910a097e3d640365a20"])
def test_a_thread_id_in_any_form_the_crate_reads_is_normalised(text: str) -> None:
    assert parse_uuid(text) == "01a24ffe-228f-7910-a097-e3d640365a20"


def test_a_failed_turn_ends_on_its_error_event() -> None:
    error = codex_events("error", {"threadId": "t", "turnId": "1", "error": {"message": "bad"}, "willRetry": False})
    assert error == [{"type": "error", "message": "bad"}]
    assert codex_events("turn/completed", {"threadId": "t", "turn": {"id": "1", "status": "failed"}}) == []
