"""``trio-codex mcp-server`` driven by the ``mcp`` package's own client over
stdio (a real subprocess), against the scripted model: the tools and their
schemas, ``codex`` then ``codex-reply`` on the same thread, an approval
relayed as an elicitation, and the original's ``isError`` results."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from pydantic import BaseModel, ConfigDict

from harness import OURS, TIMEOUT, RpcClient, server_env
from trio_codex.transports.scripted_responses import ScriptedResponses

mcp = pytest.importorskip("mcp")
from mcp import ClientSession, StdioServerParameters  # noqa: E402
from mcp.client.extension import NotificationBinding  # noqa: E402
from mcp.client.stdio import stdio_client  # noqa: E402


class Event(BaseModel):
    model_config = ConfigDict(extra="allow")


@asynccontextmanager
async def mcp_server(codex_home: Path, answer: Any = None
                     ) -> AsyncIterator[tuple[ClientSession, list[dict[str, Any]], list[dict[str, Any]]]]:
    """A client session of ``trio-codex mcp-server``; the ``codex/event``
    params it received, and the elicitations it answered with ``answer``
    (without one, the client does not offer elicitation)."""
    events: list[dict[str, Any]] = []
    asked: list[dict[str, Any]] = []

    async def on_event(params: Event) -> None:
        events.append(params.model_dump(by_alias=True))

    async def on_elicit(context: Any, params: Any) -> Any:
        import mcp_types

        asked.append(params.model_dump(by_alias=True))
        return mcp_types.ElicitResult(action=answer)

    env = server_env(codex_home)
    params = StdioServerParameters(command=OURS[0], args=[*OURS[1:], "mcp-server"], env=env,
                                   cwd=str(codex_home.parent))
    with open(os.devnull, "w") as errlog, trio.fail_after(TIMEOUT * 2):
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(
                read, write, elicitation_callback=on_elicit if answer else None,
                notification_bindings=[NotificationBinding(method="codex/event", params_type=Event, handler=on_event)]) as session:
            await session.initialize()
            yield session, events, asked


def dump(result: Any) -> dict[str, Any]:
    return result.model_dump(by_alias=True, exclude_none=True, mode="json")


async def test_the_tools_are_listed_with_the_original_schemas(codex_home: Path) -> None:
    async with mcp_server(codex_home) as (session, _, _):
        tools = {t.name: t.model_dump(by_alias=True, exclude_none=True) for t in (await session.list_tools()).tools}
    assert list(tools) == ["codex", "codex-reply"]
    codex, reply = tools["codex"], tools["codex-reply"]
    assert codex["title"] == "Codex" and reply["title"] == "Codex Reply"
    assert codex["inputSchema"]["required"] == ["prompt"]
    assert codex["inputSchema"]["additionalProperties"] is False
    assert set(codex["inputSchema"]["properties"]) == {
        "prompt", "cwd", "model", "base-instructions", "developer-instructions", "compact-prompt", "sandbox",
        "approval-policy", "config"}
    assert codex["inputSchema"]["properties"]["approval-policy"]["enum"] == ["on-request", "never"]
    assert set(reply["inputSchema"]["properties"]) == {"prompt", "threadId", "conversationId"}
    assert reply["inputSchema"]["properties"]["conversationId"]["description"] == "DEPRECATED: use threadId instead."
    output = {"type": "object", "properties": {"threadId": {"type": "string"}, "content": {"type": "string"}},
              "required": ["threadId", "content"]}
    assert codex["outputSchema"] == output and reply["outputSchema"] == output


async def test_codex_then_codex_reply_continue_one_thread(
        codex_home: Path, scripted: ScriptedResponses, tmp_path: Path) -> None:
    async with mcp_server(codex_home) as (session, events, _):
        first = dump(await session.call_tool("codex", {"prompt": "[[text=\"first answer\"]] hi",
                                                       "cwd": str(tmp_path)}))
        thread_id = first["structuredContent"]["threadId"]
        second = dump(await session.call_tool("codex-reply", {"threadId": thread_id,
                                                              "prompt": "[[text=\"second answer\"]] again"}))
        third = dump(await session.call_tool("codex-reply", {"conversationId": thread_id, "prompt": "third"}))
    assert first["content"] == [{"type": "text", "text": "first answer"}]
    assert first["structuredContent"] == {"threadId": thread_id, "content": "first answer"}
    assert not first.get("isError")
    assert second["structuredContent"] == {"threadId": thread_id, "content": "second answer"}
    assert third["structuredContent"]["content"] == "third"
    # The reply's model request carries the earlier turns.
    texts = json.dumps(scripted.requests[-1].body["input"])
    assert "first answer" in texts and "second answer" in texts
    kinds = [e["msg"]["type"] for e in events]
    assert kinds[0] == "session_configured" and events[0]["msg"]["session_id"] == thread_id
    for kind in ("task_started", "agent_message_content_delta", "agent_message", "task_complete"):
        assert kind in kinds
    done = [e for e in events if e["msg"]["type"] == "task_complete"]
    assert [e["msg"]["last_agent_message"] for e in done] == ["first answer", "second answer", "third"]
    assert all(e["_meta"]["threadId"] == thread_id for e in events)


@pytest.mark.parametrize("answer, made", [("accept", True), ("decline", False), (None, False)])
async def test_an_approval_is_relayed_as_an_elicitation(
        codex_home: Path, tmp_path: Path, answer: str, made: bool) -> None:
    work = tmp_path / "work"
    work.mkdir()
    command = json.dumps({"command": "touch made"})
    async with mcp_server(codex_home, answer) as (session, events, asked):
        result = dump(await session.call_tool("codex", {
            "prompt": f"[[call=shell_command {command}]]", "cwd": str(work), "sandbox": "danger-full-access",
            "config": {"approval_policy": "untrusted"}}))
    assert not result.get("isError")
    assert (work / "made").exists() == made
    assert "exec_approval_request" in [e["msg"]["type"] for e in events]
    if answer is None:
        return  # a client that cannot be asked: declined
    assert len(asked) == 1
    params = asked[0]
    assert params["message"] == f"Allow Codex to run `/bin/bash -lc 'touch made'` in `{work}`?"
    # The codex_* correlation fields are on the wire (runtime/mcp/server_tools.py);
    # the mcp client's typed params keep only the spec's.


async def test_errors_come_back_as_is_error_results(codex_home: Path) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    async with mcp_server(codex_home) as (session, _, _):
        missing_prompt = dump(await session.call_tool("codex", {"cwd": "/"}))
        no_thread = dump(await session.call_tool("codex-reply", {"prompt": "x"}))
        not_found = dump(await session.call_tool("codex-reply", {"threadId": unknown, "prompt": "x"}))
        no_tool = dump(await session.call_tool("nope", {}))
        failed = dump(await session.call_tool("codex", {"prompt": "[[status=400 message=\"bad thing\"]] x"}))
        bad_config = dump(await session.call_tool("codex", {"prompt": "x", "config": {"sandbox_mode": 5}}))
        bad_variant = dump(await session.call_tool("codex", {"prompt": "x", "sandbox": "open"}))
        still = dump(await session.call_tool("codex", {"prompt": "[[text=\"still here\"]] x"}))
    assert missing_prompt["isError"] is True
    assert missing_prompt["content"][0]["text"] == \
        "Failed to parse configuration for Codex tool: missing field `prompt`"
    assert no_thread["content"][0]["text"] == \
        "Failed to parse thread_id: either threadId or conversationId must be provided"
    assert not_found["isError"] is True
    assert not_found["content"][0]["text"] == f"Session not found for thread_id: {unknown}"
    assert not_found["structuredContent"]["threadId"] == unknown
    assert no_tool["content"][0]["text"] == "Unknown tool 'nope'" and no_tool["isError"] is True
    assert failed["isError"] is True and "bad thing" in failed["content"][0]["text"]
    assert bad_config["isError"] is True
    assert bad_config["content"][0]["text"].startswith("Failed to start Codex session: ")
    assert bad_variant["isError"] is True
    assert still["structuredContent"]["content"] == "still here"


async def test_instructions_reach_the_model_and_calls_run_side_by_side(
        codex_home: Path, scripted: ScriptedResponses, tmp_path: Path) -> None:
    results: dict[str, dict[str, Any]] = {}
    async with mcp_server(codex_home) as (session, _, _):
        async def call(name: str, prompt: str) -> None:
            results[name] = dump(await session.call_tool("codex", {
                "prompt": prompt, "cwd": str(tmp_path), "base-instructions": f"be {name}",
                "developer-instructions": "dev", "compact-prompt": "summarise"}))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call, "slow", "[[deltas=4 delay_ms=200 text=\"slow one\"]] a")
            nursery.start_soon(call, "quick", "[[text=\"quick one\"]] b")
    assert results["slow"]["structuredContent"]["content"] == "slow one"
    assert results["quick"]["structuredContent"]["content"] == "quick one"
    assert results["slow"]["structuredContent"]["threadId"] != results["quick"]["structuredContent"]["threadId"]
    assert sorted(r.body["instructions"] for r in scripted.requests) == ["be quick", "be slow"]


async def test_a_cancelled_call_interrupts_its_turn_and_the_thread_goes_on(codex_home: Path, tmp_path: Path) -> None:
    async with mcp_server(codex_home) as (session, events, _):
        with trio.move_on_after(TIMEOUT / 2) as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(session.call_tool, "codex", {"prompt": "[[hang]] wait", "cwd": str(tmp_path)})
                while not any(e["msg"]["type"] == "task_started" for e in events):
                    await trio.sleep(0.05)
                nursery.cancel_scope.cancel()
        assert not scope.cancelled_caught
        thread_id = events[0]["msg"]["session_id"]
        again = dump(await session.call_tool("codex-reply", {"threadId": thread_id, "prompt": "[[text=\"fine again\"]] go"}))
    assert again["structuredContent"] == {"threadId": thread_id, "content": "fine again"}


async def test_the_originals_decision_answer_is_understood(codex_home: Path, tmp_path: Path) -> None:
    """A client of the original answers ``{decision: "approved"}`` (its
    ReviewDecision), not MCP's ``{action}``: spoken here over raw pipes."""
    work = tmp_path / "work"
    work.mkdir()
    command = json.dumps({"command": "touch made"})
    async with trio.open_nursery() as nursery:
        proc = await nursery.start(lambda task_status: trio.run_process(
            [*OURS, "mcp-server"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=server_env(codex_home), check=False, task_status=task_status))
        client = RpcClient(proc)
        nursery.start_soon(client._read)
        await client.send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {"elicitation": {}},
            "clientInfo": {"name": "raw", "version": "1"}}})
        await client.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        await client.send({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "codex", "arguments": {
            "prompt": f"[[call=shell_command {command}]]", "cwd": str(work), "sandbox": "danger-full-access",
            "config": {"approval_policy": "untrusted"}}}})
        asked = (await client.until(lambda m: m.get("method") == "elicitation/create"))[-1]
        assert asked["params"]["codex_elicitation"] == "exec-approval"
        assert asked["params"]["codex_command"] == ["/bin/bash", "-lc", "touch made"]
        assert asked["params"]["codex_mcp_tool_call_id"] == "2"
        await client.send({"jsonrpc": "2.0", "id": asked["id"], "result": {"decision": "approved"}})
        done = (await client.until(lambda m: m.get("id") == 2 and "method" not in m))[-1]
        assert proc.stdin is not None
        await proc.stdin.aclose()
        with trio.fail_after(TIMEOUT):
            assert await proc.wait() == 0
    assert "isError" not in done["result"]
    assert (work / "made").exists()
