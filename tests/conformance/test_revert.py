"""thread/revert (and the legacy thread/rollback) through the real server:
the history is cut before a turn, durably, and the thread carries on from
there; the order and the error words are those traced from 0.169.0."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness import RpcError, open_app_server
from trio_codex.transports.scripted_responses import ScriptedResponses


def user_texts(body: dict[str, Any]) -> list[str]:
    return [part["text"] for item in body["input"] if item.get("role") == "user"
            for part in item["content"] if "text" in part]


async def test_revert_cuts_the_history_before_a_turn_and_the_thread_goes_on_from_there(
        codex_home: Path, scripted: ScriptedResponses) -> None:
    async with open_app_server(codex_home) as client:
        tid = await client.start_thread()
        turn_ids = [(await client.turn(tid, f"question {n}"))[0]["turn"]["id"] for n in (1, 2, 3)]
        result = await client.request("thread/revert", {"threadId": tid, "beforeTurnId": turn_ids[1]})
        assert result["thread"]["id"] == tid and result["thread"]["turns"] == []
        assert result["turnsBackwardsCursor"] is not None and result["itemsBackwardsCursor"] is not None
        seen = await client.until(lambda m: m.get("method") == "thread/reverted")
        assert [m["params"]["status"]["type"] for m in seen[:-1]] == ["notLoaded", "idle"]
        assert seen[-1]["params"] == {"threadId": tid}
        # The answer came before thread/reverted.
        order = [m.get("method", "response") for m in client.log if m.get("method") != "thread/status/changed"]
        assert order[-2:] == ["response", "thread/reverted"]
        page = await client.request("thread/turns/list", {
            "threadId": tid, "cursor": result["turnsBackwardsCursor"], "sortDirection": "desc"})
        assert [t["id"] for t in page["data"]] == turn_ids[:1]
        await client.turn(tid, "question 4")
        assert user_texts(scripted.requests[-1].body) == ["question 1", "question 4"]
        for params, message in [
                ({"threadId": tid, "beforeTurnId": turn_ids[2]}, f"turn not found: {turn_ids[2]}"),
                ({"threadId": "01a20d66-0000-7000-8000-000000000000", "beforeTurnId": turn_ids[0]},
                 "thread not found: 01a20d66-0000-7000-8000-000000000000")]:
            with pytest.raises(RpcError) as caught:
                await client.request("thread/revert", params)
            assert (caught.value.code, caught.value.message) == (-32600, message)
    async with open_app_server(codex_home) as client:  # durable
        await client.initialize()
        resumed = await client.request("thread/resume", {"threadId": tid})
        assert [t["items"][0]["content"][0]["text"] for t in resumed["thread"]["turns"]] == [
            "question 1", "question 4"]
        await client.turn(tid, "question 5")
        assert user_texts(scripted.requests[-1].body) == ["question 1", "question 4", "question 5"]


async def test_revert_during_a_turn_interrupts_it_and_reverting_a_compaction_restores_the_history(
        codex_home: Path, scripted: ScriptedResponses) -> None:
    async with open_app_server(codex_home) as client:
        tid = await client.start_thread()
        await client.turn(tid, "kept question")
        await client.request("thread/compact/start", {"threadId": tid})
        compaction = await client.until(lambda m: m.get("method") == "turn/completed")
        started = await client.request("turn/start", {"threadId": tid, "input": [
            {"type": "text", "text": "[[deltas=1000 delay_ms=5]] long"}]})
        await client.until(lambda m: m.get("method") == "item/agentMessage/delta")
        compact_turn = compaction[-1]["params"]["turn"]["id"]
        revert = await client.call("thread/revert", {"threadId": tid, "beforeTurnId": compact_turn})
        assert "result" in revert
        interrupted = [m for m in client.log if m.get("method") == "turn/completed"][-1]
        assert interrupted["params"]["turn"]["id"] == started["turn"]["id"]
        assert interrupted["params"]["turn"]["status"] == "interrupted"
        await client.turn(tid, "after the revert")
        body = scripted.requests[-1].body
        # The compaction is undone: the answer to the first question is back.
        assert user_texts(body) == ["kept question", "after the revert"]
        assert any(item.get("role") == "assistant" for item in body["input"])


async def test_legacy_rollback_drops_the_last_turns_and_answers_with_the_rest(
        codex_home: Path, scripted: ScriptedResponses) -> None:
    async with open_app_server(codex_home) as client:
        tid = await client.start_thread()
        for n in (1, 2, 3):
            await client.turn(tid, f"question {n}")
        result = await client.request("thread/rollback", {"threadId": tid, "numTurns": 2})
        assert [t["items"][0]["content"][0]["text"] for t in result["thread"]["turns"]] == ["question 1"]
        with pytest.raises(RpcError) as caught:
            await client.request("thread/rollback", {"threadId": tid, "numTurns": 0})
        assert (caught.value.code, caught.value.message) == (-32600, "numTurns must be >= 1")
