"""Compaction through the real server over stdio: thread/compact/start as a
turn of its own, automatic compaction before and inside a turn, what the
model is sent, what the rollout keeps, and steering refused meanwhile.
Message order and the error words are those traced from 0.169.0."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness import RpcError, open_app_server
from trio_codex.runtime.conversation.history import SUMMARIZATION_PROMPT, SUMMARY_PREFIX
from trio_codex.transports.scripted_responses import Message, Script, ScriptedResponses


def texts(body: dict[str, Any]) -> list[str]:
    return [part["text"] for item in body["input"] if item.get("type") == "message"
            for part in item["content"] if "text" in part]


def kinds(msgs: list[dict[str, Any]]) -> list[str]:
    """The lifecycle notifications, items by type, deltas and usage left out."""
    out = []
    for m in msgs:
        method = m.get("method")
        if method in ("item/started", "item/completed"):
            out.append(f"{method}:{m['params']['item']['type']}")
        elif method == "thread/status/changed":
            out.append(f"status:{m['params']['status']['type']}")
        elif method in ("turn/started", "turn/completed"):
            out.append(method)
    return out


async def test_compact_start_runs_a_compaction_turn_and_the_summary_replaces_the_history(
        codex_home: Path, scripted: ScriptedResponses) -> None:
    async with open_app_server(codex_home) as client:
        tid = await client.start_thread()
        await client.turn(tid, "first question")
        await client.turn(tid, "second question")
        scripted.enqueue(Script(output=(Message.of("the summary", 3),)))
        assert await client.request("thread/compact/start", {"threadId": tid}) == {}
        msgs = await client.until(lambda m: m.get("method") == "turn/completed")
        assert kinds(msgs) == ["status:active", "turn/started", "item/started:contextCompaction",
                               "item/completed:contextCompaction", "status:idle", "turn/completed"]
        started = next(m for m in msgs if m.get("method") == "item/started")["params"]["item"]
        assert started["completedAtMs"] is None and started["startedAtMs"] > 0
        done = msgs[-1]["params"]["turn"]
        assert (done["status"], done["items"], done["itemsView"]) == ("completed", [], "notLoaded")
        usage = [m for m in msgs if m.get("method") == "thread/tokenUsage/updated"]
        assert usage and usage[-1]["params"]["tokenUsage"]["last"]["inputTokens"] == 0
        # The summarization request: the history, then the prompt; no tools.
        asked = scripted.requests[-1].body
        assert asked["tools"] == [] and asked["parallel_tool_calls"] is False
        assert texts(asked)[-1] == SUMMARIZATION_PROMPT
        assert "first question" in texts(asked)
        await client.turn(tid, "third question")
        summary = f"{SUMMARY_PREFIX}\nthe summary"
        # The user messages and the summary stand for the history; the
        # answers are gone.
        assert texts(scripted.requests[-1].body) == [
            "first question", "second question", summary, "third question"]
    rollout = next((codex_home / "sessions").rglob(f"rollout-*-{tid}.jsonl"))
    lines = [json.loads(line) for line in rollout.read_text().splitlines()]
    compacted = [line["payload"] for line in lines if line["type"] == "compacted"]
    assert len(compacted) == 1 and compacted[0]["message"] == summary
    # A restarted server resumes from the replacement history, and shows the
    # compaction as a turn of its own.
    async with open_app_server(codex_home) as client:
        await client.initialize()
        resumed = await client.request("thread/resume", {"threadId": tid})
        turns = resumed["thread"]["turns"]
        assert [t["items"][0]["type"] for t in turns] == [
            "userMessage", "userMessage", "contextCompaction", "userMessage"]
        await client.turn(tid, "fourth question")
        assert texts(scripted.requests[-1].body)[:3] == ["first question", "second question", summary]


async def test_steering_a_compaction_is_refused_in_the_originals_words(
        codex_home: Path, scripted: ScriptedResponses) -> None:
    async with open_app_server(codex_home) as client:
        tid = await client.start_thread()
        await client.turn(tid, "some history")
        scripted.enqueue(Script(output=(Message.of("slow summary", 2),), hang_after=1))
        await client.request("thread/compact/start", {"threadId": tid})
        started = await client.until(lambda m: m.get("method") == "turn/started")
        turn_id = started[-1]["params"]["turn"]["id"]
        await client.until(lambda m: m.get("method") == "item/started")
        with pytest.raises(RpcError) as steer:
            await client.request("turn/steer", {"threadId": tid, "expectedTurnId": turn_id,
                                                "input": [{"type": "text", "text": "more"}]})
        assert (steer.value.code, steer.value.message) == (-32600, "cannot steer a compact turn")
        assert steer.value.data["codexErrorInfo"] == {"activeTurnNotSteerable": {"turnKind": "compact"}}
        with pytest.raises(RpcError) as start:
            await client.request("turn/start", {"threadId": tid, "input": [{"type": "text", "text": "more"}]})
        assert (start.value.code, start.value.message) == (
            -32603, "failed to submit turn input: ActiveTurnNotSteerable { turn_kind: Compact }")
        await client.request("turn/interrupt", {"threadId": tid, "turnId": turn_id})
        done = await client.until(lambda m: m.get("method") == "turn/completed")
        assert done[-1]["params"]["turn"]["status"] == "interrupted"
        # Interrupted before it was done: the history is as it was.
        await client.turn(tid, "after the interrupt")
        assert texts(scripted.requests[-1].body)[0] == "some history"


async def test_compact_start_during_a_turn_interrupts_it_then_compacts(
        codex_home: Path, scripted: ScriptedResponses) -> None:
    async with open_app_server(codex_home) as client:
        tid = await client.start_thread()
        await client.request("turn/start", {"threadId": tid, "input": [
            {"type": "text", "text": "[[deltas=1000 delay_ms=5]] a long answer"}]})
        await client.until(lambda m: m.get("method") == "item/agentMessage/delta")
        await client.request("thread/compact/start", {"threadId": tid})
        first = await client.until(lambda m: m.get("method") == "turn/completed")
        assert first[-1]["params"]["turn"]["status"] == "interrupted"
        second = await client.until(lambda m: m.get("method") == "turn/completed")
        assert "item/completed:contextCompaction" in kinds(second)
        assert second[-1]["params"]["turn"]["status"] == "completed"


async def test_compaction_of_an_unknown_thread_is_refused(codex_home: Path) -> None:
    async with open_app_server(codex_home) as client:
        await client.initialize()
        with pytest.raises(RpcError) as caught:
            await client.request("thread/compact/start", {"threadId": "01a20d66-0000-7000-8000-000000000000"})
        assert (caught.value.code, caught.value.message) == (
            -32600, "thread not found: 01a20d66-0000-7000-8000-000000000000")


async def test_past_the_limit_a_turn_compacts_before_its_user_message(
        codex_home: Path, scripted: ScriptedResponses) -> None:
    async with open_app_server(codex_home, "model_auto_compact_token_limit=1000") as client:
        tid = await client.start_thread()
        await client.turn(tid, "[[input_tokens=5000]] a big first turn")
        _, msgs = await client.turn(tid, "the next question")
        assert kinds(msgs)[:6] == ["status:active", "turn/started", "item/started:contextCompaction",
                                   "item/completed:contextCompaction", "item/started:userMessage",
                                   "item/completed:userMessage"]
        assert msgs[-1]["params"]["turn"]["status"] == "completed"
        assert texts(scripted.requests[-2].body)[-1] == SUMMARIZATION_PROMPT
        final = texts(scripted.requests[-1].body)
        assert final[-1] == "the next question" and final[-2].startswith(SUMMARY_PREFIX)


async def test_past_the_limit_inside_a_turn_it_compacts_between_samplings(
        codex_home: Path, scripted: ScriptedResponses) -> None:
    async with open_app_server(codex_home, "model_auto_compact_token_limit=1000") as client:
        tid = await client.start_thread()
        call = json.dumps({"plan": [{"step": "look", "status": "in_progress"}]})
        _, msgs = await client.turn(tid, f"[[call=update_plan {call} input_tokens=5000]] plan it")
        seen = kinds(msgs)
        assert seen.index("item/completed:contextCompaction") < seen.index("item/completed:agentMessage")
        assert msgs[-1]["params"]["turn"]["status"] == "completed"
        # The follow-up after the compaction sees the summary, not the call.
        last = scripted.requests[-1].body["input"]
        assert not any(item.get("type") == "function_call" for item in last)
        assert texts(scripted.requests[-1].body)[-1].startswith(SUMMARY_PREFIX)
