"""Turns end to end: the real server over stdio, the real openai SDK inside
it, our scripted Responses server on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from harness import TIMEOUT, mock_config, open_app_server
from trio_codex.transports.scripted_responses import ScriptedResponses, split_text


def methods(msgs: list[dict]) -> list[str]:
    return [m["method"] for m in msgs]


def squash(names: list[str]) -> list[str]:
    """Collapse runs of the same delta method to one entry."""
    out: list[str] = []
    for name in names:
        if not (out and name == out[-1] and name.lower().endswith("delta")):
            out.append(name)
    return out


async def test_thread_start_answers_every_required_field(codex_home: Path) -> None:
    async with open_app_server(codex_home) as client:
        await client.initialize()
        result = await client.request("thread/start", {"cwd": str(codex_home)})
    assert {"thread", "model", "modelProvider", "cwd", "approvalPolicy", "approvalsReviewer", "sandbox"} <= set(result)
    thread = result["thread"]
    assert {"id", "sessionId", "preview", "ephemeral", "modelProvider", "createdAt", "updatedAt", "cwd",
            "cliVersion", "source", "status", "turns", "projectId"} <= set(thread)
    assert thread["status"] == {"type": "idle"} and thread["turns"] == []
    assert (result["model"], result["modelProvider"], result["cwd"]) == ("mock-model", "mock", str(codex_home))
    assert result["sandbox"]["type"] in {"readOnly", "workspaceWrite", "dangerFullAccess"}


async def test_a_plain_turn_streams_in_the_originals_order(codex_home: Path) -> None:
    async with open_app_server(codex_home) as client:
        tid = await client.start_thread()
        result, msgs = await client.turn(tid, "[[deltas=5]] hello world")
    turn = result["turn"]
    assert (turn["status"], turn["items"], turn["itemsView"]) == ("inProgress", [], "notLoaded")
    assert squash(methods(msgs)) == [
        "thread/status/changed", "turn/started", "item/started", "item/completed",
        "item/started", "item/agentMessage/delta", "item/completed",
        "thread/tokenUsage/updated", "thread/status/changed", "turn/completed",
    ]
    assert all(isinstance(m["emittedAtMs"], int) for m in msgs)
    assert msgs[0]["params"]["status"] == {"type": "active", "activeFlags": []}
    user = msgs[3]["params"]["item"]
    assert user["type"] == "userMessage"
    assert user["content"] == [{"type": "text", "text": "[[deltas=5]] hello world", "text_elements": []}]
    deltas = [m["params"]["delta"] for m in msgs if m["method"] == "item/agentMessage/delta"]
    final = [m for m in msgs if m["method"] == "item/completed"][-1]["params"]
    assert final["item"]["type"] == "agentMessage" and final["item"]["text"] == "".join(deltas) == "hello world"
    assert {"completedAtMs", "threadId", "turnId"} <= set(final)
    assert msgs[-2]["params"]["status"] == {"type": "idle"}
    done = msgs[-1]["params"]["turn"]
    assert done["status"] == "completed" and done["error"] is None
    assert done["items"] == [final["item"]] and done["itemsView"] == "summary"
    assert isinstance(done["durationMs"], int)
    usage = next(m for m in msgs if m["method"] == "thread/tokenUsage/updated")["params"]["tokenUsage"]
    assert set(usage["total"]) >= {"totalTokens", "inputTokens", "cachedInputTokens", "outputTokens",
                                   "reasoningOutputTokens"}


async def test_reasoning_streams_summary_deltas_before_the_message(codex_home: Path) -> None:
    async with open_app_server(codex_home) as client:
        tid = await client.start_thread()
        _, msgs = await client.turn(tid, "[[reasoning=3]] think")
    names = squash(methods(msgs))
    i = names.index("item/reasoning/summaryPartAdded")
    assert names[i - 1] == "item/started" and names[i + 1] == "item/reasoning/summaryTextDelta"
    reasoning = [m["params"]["item"] for m in msgs if m["method"] == "item/completed"
                 and m["params"]["item"]["type"] == "reasoning"]
    assert len(reasoning) == 1 and reasoning[0]["summary"]


async def test_a_second_turn_sends_the_first_in_its_history(
        codex_home: Path, scripted: ScriptedResponses) -> None:
    async with open_app_server(codex_home) as client:
        tid = await client.start_thread()
        await client.turn(tid, "first question")
        await client.turn(tid, "second question")
    second = scripted.requests[-1].body
    texts = json.dumps(second["input"])
    assert "first question" in texts and "second question" in texts
    assert second["prompt_cache_key"] == tid and second["stream"] is True and second["model"] == "mock-model"


@pytest.mark.parametrize("directives", ["deltas=400 delay_ms=1", "deltas=4000"])
async def test_streamed_deltas_reach_the_client_lossless_and_in_order(codex_home: Path, directives: str) -> None:
    # Paced (one delta per network read) and bursty (many per read, merged
    # by the writer when they queue up): the deltas add up to the reply.
    reply = "every piece of this reply arrives once and in order"
    async with open_app_server(codex_home) as client:
        tid = await client.start_thread()
        _, msgs = await client.turn(tid, f"[[{directives}]] {reply}")
    deltas = [m["params"] for m in msgs if m["method"] == "item/agentMessage/delta"]
    final = [m for m in msgs if m["method"] == "item/completed"][-1]["params"]["item"]
    assert {d["itemId"] for d in deltas} == {final["id"]} and all(d["delta"] for d in deltas)
    count = int(directives.split()[0].split("=")[1])
    assert "".join(d["delta"] for d in deltas) == final["text"] == "".join(split_text(reply, count))


async def test_two_threads_stream_at_once(codex_home: Path) -> None:
    async with open_app_server(codex_home) as client:
        await client.initialize()
        a = (await client.request("thread/start", {}))["thread"]["id"]
        b = (await client.request("thread/start", {}))["thread"]["id"]
        ra = await client.request("turn/start", {"threadId": a, "input": [{"type": "text", "text": "[[deltas=50 delay_ms=2]] alpha"}]})
        rb = await client.request("turn/start", {"threadId": b, "input": [{"type": "text", "text": "[[deltas=50 delay_ms=2]] beta"}]})
        pending = {ra["turn"]["id"], rb["turn"]["id"]}
        texts: dict[str, str] = {}
        while pending:
            msg = await client.next_message()
            if msg.get("method") == "item/agentMessage/delta":
                p = msg["params"]
                texts[p["threadId"]] = texts.get(p["threadId"], "") + p["delta"]
            if msg.get("method") == "turn/completed":
                pending.discard(msg["params"]["turn"]["id"])
    assert "alpha" in texts[a] and "beta" not in texts[a]
    assert "beta" in texts[b] and "alpha" not in texts[b]


async def test_a_provider_error_fails_the_turn_and_the_thread_goes_on(codex_home: Path) -> None:
    async with open_app_server(codex_home) as client:
        tid = await client.start_thread()
        _, msgs = await client.turn(tid, '[[status=400 message="bad things"]] hi')
        assert methods(msgs)[-3:] == ["thread/status/changed", "error", "turn/completed"]
        assert msgs[-3]["params"]["status"] == {"type": "systemError"}
        error = msgs[-2]["params"]
        assert error["willRetry"] is False and "bad things" in error["error"]["message"]
        turn = msgs[-1]["params"]["turn"]
        assert turn["status"] == "failed" and turn["error"] == error["error"]
        _, again = await client.turn(tid, "still there?")
        assert again[-1]["params"]["turn"]["status"] == "completed"


@pytest.mark.parametrize("directive", ["status=500", "disconnect_after=2"])
async def test_a_transient_failure_is_retried_and_announced(
        tmp_path: Path, scripted: ScriptedResponses, directive: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(mock_config(scripted.base_url).replace(
        "request_max_retries = 0\nstream_max_retries = 0", "request_max_retries = 0\nstream_max_retries = 2"))
    async with open_app_server(home) as client:
        tid = await client.start_thread()
        _, msgs = await client.turn(tid, f"[[{directive} times=1 deltas=4]] retry me")
    errors = [m["params"] for m in msgs if m["method"] == "error"]
    assert errors and all(e["willRetry"] for e in errors)
    assert msgs[-1]["params"]["turn"]["status"] == "completed"
    final = [m for m in msgs if m["method"] == "item/completed"][-1]["params"]["item"]
    assert final["text"] == "retry me"


async def test_a_stalled_stream_times_out(tmp_path: Path, scripted: ScriptedResponses) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(mock_config(scripted.base_url, stream_idle_timeout_ms=300))
    async with open_app_server(home) as client:
        tid = await client.start_thread()
        _, msgs = await client.turn(tid, "[[hang]] anyone?")
    turn = msgs[-1]["params"]["turn"]
    assert turn["status"] == "failed" and "idle timeout" in turn["error"]["message"]


async def test_interrupt_mid_stream_ends_the_turn_in_the_originals_order(codex_home: Path) -> None:
    async with open_app_server(codex_home) as client:
        tid = await client.start_thread()
        result = await client.request("turn/start", {"threadId": tid, "input": [
            {"type": "text", "text": "[[deltas=1000 delay_ms=5]] long"}]})
        turn_id = result["turn"]["id"]
        await client.until(lambda m: m.get("method") == "item/agentMessage/delta")
        response = await client.call("turn/interrupt", {"threadId": tid, "turnId": turn_id})
        assert response["result"] == {}
        after = await client.until(lambda m: m.get("method") == "turn/completed")
        tail = [m["method"] for m in after if m["method"] != "item/agentMessage/delta"]
        assert tail == ["thread/status/changed", "turn/completed"]
        assert after[-2]["params"]["status"] == {"type": "idle"}
        assert after[-1]["params"]["turn"]["status"] == "interrupted"
        index = client.log.index(response)
        assert all(m.get("method") != "turn/completed" for m in client.log[:index])
        with pytest.raises(Exception, match="no active turn to interrupt"):
            await client.request("turn/interrupt", {"threadId": tid, "turnId": turn_id})


async def test_interrupt_without_a_turn_id_stops_whichever_turn_runs_and_is_answered_when_none_does(
        codex_home: Path) -> None:
    """The TUI sends ``turnId: ""`` when it leaves a side conversation or
    logs out; the original (0.169 and 0.171) answers ``{}`` whether a turn
    runs or not, and stops the one that does."""
    async with open_app_server(codex_home) as client:
        tid = await client.start_thread()
        assert await client.request("turn/interrupt", {"threadId": tid, "turnId": ""}) == {}
        await client.request("turn/start", {"threadId": tid, "input": [
            {"type": "text", "text": "[[deltas=1000 delay_ms=5]] long"}]})
        await client.until(lambda m: m.get("method") == "item/agentMessage/delta")
        assert await client.request("turn/interrupt", {"threadId": tid, "turnId": ""}) == {}
        after = await client.until(lambda m: m.get("method") == "turn/completed")
        assert after[-1]["params"]["turn"]["status"] == "interrupted"
        with pytest.raises(Exception, match="no active turn to interrupt"):
            await client.request("turn/interrupt", {"threadId": tid, "turnId": "not-a-turn"})


async def test_closing_stdin_mid_turn_stops_the_server(codex_home: Path) -> None:
    async with open_app_server(codex_home) as client:
        tid = await client.start_thread()
        await client.request("turn/start", {"threadId": tid, "input": [
            {"type": "text", "text": "[[deltas=100000 delay_ms=1]] forever"}]})
        await client.until(lambda m: m.get("method") == "item/agentMessage/delta")
        assert client.proc.stdin is not None
        await client.proc.stdin.aclose()
        with trio.fail_after(TIMEOUT):
            await client.proc.wait()


async def test_thread_start_overrides_reach_the_model_request(
        codex_home: Path, scripted: ScriptedResponses) -> None:
    async with open_app_server(codex_home) as client:
        await client.initialize()
        result = await client.request("thread/start", {
            "model": "other-model", "config": {"model_reasoning_effort": "high"}})
        assert result["model"] == "other-model" and result["reasoningEffort"] == "high"
        await client.turn(result["thread"]["id"], "hi")
    body = scripted.requests[-1].body
    assert body["model"] == "other-model" and body["reasoning"]["effort"] == "high"


async def test_thread_start_with_a_bad_config_value_names_the_key(codex_home: Path) -> None:
    async with open_app_server(codex_home) as client:
        await client.initialize()
        response = await client.call("thread/start", {"config": {"approval_policy": "bogus"}})
    assert response["error"]["code"] == -32600
    assert "`approval_policy`" in response["error"]["message"] and "bogus" in response["error"]["message"]


async def test_interrupting_another_turn_id_names_both(codex_home: Path) -> None:
    async with open_app_server(codex_home) as client:
        tid = await client.start_thread()
        result = await client.request("turn/start", {"threadId": tid, "input": [
            {"type": "text", "text": "[[deltas=200 delay_ms=5]] long"}]})
        response = await client.call("turn/interrupt", {"threadId": tid, "turnId": "nope"})
        assert response["error"] == {"code": -32600,
                                     "message": f"expected active turn id nope but found {result['turn']['id']}"}
        await client.request("turn/interrupt", {"threadId": tid, "turnId": result["turn"]["id"]})


async def test_input_over_the_originals_limit_is_refused_with_its_details(codex_home: Path) -> None:
    async with open_app_server(codex_home) as client:
        tid = await client.start_thread()
        text = "é" * (1_048_576 + 1)  # the limit counts characters, not bytes
        response = await client.call("turn/start", {"threadId": tid, "input": [{"type": "text", "text": text}]})
    assert response["error"] == {
        "code": -32602, "message": "Input exceeds the maximum length of 1048576 characters.",
        "data": {"input_error_code": "input_too_large", "max_chars": 1048576, "actual_chars": 1048577}}


async def test_steering_adds_input_to_the_running_turn(codex_home: Path, scripted: ScriptedResponses) -> None:
    async with open_app_server(codex_home) as client:
        tid = await client.start_thread()
        started = await client.request("turn/start", {"threadId": tid, "input": [
            {"type": "text", "text": "[[deltas=200 delay_ms=5]] first part"}]})
        turn_id = started["turn"]["id"]
        await client.until(lambda m: m.get("method") == "item/agentMessage/delta")
        steered = await client.request("turn/steer", {"threadId": tid, "expectedTurnId": turn_id,
                                                      "input": [{"type": "text", "text": "and more"}]})
        assert steered == {"turnId": turn_id}
        # turn/start while a turn runs steers too, as 0.169 does.
        joined = await client.request("turn/start", {"threadId": tid, "input": [{"type": "text", "text": "last"}]})
        assert joined["turn"]["id"] == turn_id
        msgs = await client.until(lambda m: m.get("method") == "turn/completed")
    users = [m["params"]["item"]["content"][0]["text"] for m in msgs
             if m.get("method") == "item/completed" and m["params"]["item"]["type"] == "userMessage"]
    assert users == ["and more", "last"]
    assert all(m["params"]["turnId"] == turn_id for m in msgs if m.get("method") == "item/completed")
    assert msgs[-1]["params"]["turn"]["status"] == "completed"
    sent = json.dumps(scripted.requests[-1].body["input"])
    assert "and more" in sent and "last" in sent  # the model was asked again, with the steered input


async def test_steering_errors_as_the_original(codex_home: Path) -> None:
    async with open_app_server(codex_home) as client:
        tid = await client.start_thread()
        idle = await client.call("turn/steer", {"threadId": tid, "expectedTurnId": "t", "input": []})
        assert idle["error"] == {"code": -32600, "message": "no active turn to steer"}
        started = await client.request("turn/start", {"threadId": tid, "input": [
            {"type": "text", "text": "[[deltas=200 delay_ms=5]] busy"}]})
        wrong = await client.call("turn/steer", {"threadId": tid, "expectedTurnId": "other", "input": []})
        assert wrong["error"]["message"] == f"expected active turn id `other` but found `{started['turn']['id']}`"
        await client.until(lambda m: m.get("method") == "turn/completed")


async def test_turn_start_overrides_last_for_later_turns_and_are_announced_before_the_answer(
        codex_home: Path, scripted: ScriptedResponses, tmp_path: Path) -> None:
    async with open_app_server(codex_home) as client:
        tid = await client.start_thread()
        result = await client.request("turn/start", {
            "threadId": tid, "input": [{"type": "text", "text": "with overrides"}], "model": "other-model",
            "cwd": str(tmp_path), "sandboxPolicy": {"type": "dangerFullAccess"}})
        answered = next(i for i, m in enumerate(client.log) if m.get("result") == result)
        updated = [i for i, m in enumerate(client.log) if m.get("method") == "thread/settings/updated"]
        assert len(updated) == 1 and updated[0] < answered
        settings = client.log[updated[0]]["params"]["threadSettings"]
        assert (settings["model"], settings["cwd"], settings["sandboxPolicy"]) == (
            "other-model", str(tmp_path), {"type": "dangerFullAccess"})
        await client.until(lambda m: m.get("method") == "turn/completed")
        await client.turn(tid, "no overrides this time")
        assert scripted.requests[-1].body["model"] == "other-model"
        assert sum(m.get("method") == "thread/settings/updated" for m in client.log) == 1
