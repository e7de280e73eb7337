"""Goal continuation, beside the original 0.171.0 where it is installed:
while a thread's goal is ``active`` an idle thread starts turns of its own
(no user message; the model gets the objective and a request to go on),
each turn's tokens are added to the goal (``thread/goal/updated`` with the
turn's id, before ``turn/completed``), and a goal past its ``tokenBudget``
is ``budgetLimited`` and no longer pursued. Without a budget the original
goes on until the goal is paused, completed or cleared; so do we."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conformance.test_schema import violations
from conformance.test_thread_actions import methods, start
from conformance.test_thread_search_stream import SERVER_PARAMS, SERVERS
from harness import open_app_server
from trio_codex.transports.scripted_responses import ScriptedResponses


def goal_updates(msgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m["params"] for m in msgs if m.get("method") == "thread/goal/updated"]


def texts(item: dict[str, Any]) -> list[str]:
    return [part.get("text", "") for part in item.get("content") or []]


@pytest.mark.parametrize("server", SERVER_PARAMS)
async def test_an_active_goal_starts_a_turn_at_once_and_its_budget_stops_it(
        server: str, codex_home: Path, scripted: ScriptedResponses, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    async with open_app_server(codex_home, program=SERVERS[server], cwd=ws) as client:
        session, tid = await start(client, ws)
        set_ = await session.request("thread/goal/set", {"threadId": tid, "objective": "write a poem",
                                                         "tokenBudget": 500})
        assert set_["goal"]["status"] == "active"
        msgs = await client.until(lambda m: m.get("method") == "turn/completed")
        turn_id = msgs[-1]["params"]["turn"]["id"]
        assert [m for m in methods(msgs) if m not in ("item/agentMessage/delta",)] == [
            "thread/goal/updated", "thread/status/changed", "turn/started", "item/started", "item/completed",
            "thread/tokenUsage/updated", "thread/goal/updated", "thread/status/changed", "turn/completed"]
        # No user message: the turn holds only what the model answered.
        assert [i["type"] for i in msgs[-1]["params"]["turn"]["items"]] == ["agentMessage"]
        first, accounted = goal_updates(msgs)
        assert first["turnId"] is None and accounted["turnId"] == turn_id
        used = next(m for m in msgs if m.get("method") == "thread/tokenUsage/updated")["params"]["tokenUsage"]
        assert accounted["goal"]["tokensUsed"] == used["total"]["totalTokens"] > 500
        assert accounted["goal"]["status"] == "budgetLimited"
        # The model was given the objective and asked to go on.
        body = scripted.requests[-1].body["input"]
        objective = [i for i in body if i.get("type") == "function_call_output"]
        assert [(i["name"], i["namespace"], i["output"]) for i in objective] == [
            ("goal_objective", "agent", "write a poem")]
        request = texts(body[-1])[0]
        assert body[-1]["role"] == "user" and request.startswith('<codex_internal_context source="goal">\n')
        assert "Budget:\n- Tokens used: 0\n- Token budget: 500\n- Tokens remaining: 500\n" in request
        # Budget-limited: a user's turn is still counted, and no turn follows.
        await session.turn(tid, "go on")
        got = await session.request("thread/goal/get", {"threadId": tid})
        assert got["goal"]["status"] == "budgetLimited"
        assert got["goal"]["tokensUsed"] > accounted["goal"]["tokensUsed"]
        assert len(scripted.requests) == 2
        assert violations(client, session.sent) == []


@pytest.mark.parametrize("server", SERVER_PARAMS)
async def test_without_a_budget_the_goal_is_pursued_turn_after_turn_until_paused(
        server: str, codex_home: Path, scripted: ScriptedResponses, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    async with open_app_server(codex_home, program=SERVERS[server], cwd=ws) as client:
        session, tid = await start(client, ws)
        await session.request("thread/goal/set", {"threadId": tid, "objective": "count sheep"})
        for _ in range(3):
            await client.until(lambda m: m.get("method") == "turn/completed")
        await session.request("thread/goal/set", {"threadId": tid, "status": "paused"})
        # The turn running when it was paused ends; no other starts.
        if turns_running(client.log):
            await client.until(lambda m: m.get("method") == "turn/completed")
        sent = len(scripted.requests)
        got = await session.request("thread/goal/get", {"threadId": tid})
        assert got["goal"]["status"] == "paused" and got["goal"]["tokensUsed"] > 0
        assert sent >= 3 and not turns_running(client.log)
        # Each continuation asked again; the objective was given once.
        body = scripted.requests[-1].body["input"]
        assert sum(1 for i in body if i.get("type") == "function_call_output") == 1
        assert sum(1 for i in body if i.get("role") == "user" and any(
            t.startswith('<codex_internal_context source="goal">') for t in texts(i))) == sent
        assert len(scripted.requests) == sent
        assert violations(client, session.sent) == []


def turns_running(log: list[dict[str, Any]]) -> int:
    return sum(m.get("method") == "turn/started" for m in log) - sum(m.get("method") == "turn/completed" for m in log)
