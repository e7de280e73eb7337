"""Ours beside the original 0.169 on the same MCP server (skipped when the
original binary is absent): the tools the model is offered, the
``mcpToolCall`` items and the output the model reads back."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from harness import ORIGINAL_BIN, OURS, mock_config, open_app_server
from trio_codex.transports.scripted_responses import ScriptedResponses

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "mcp_server.py"
MCP_FUNCTIONS = {"list_mcp_resources", "list_mcp_resource_templates", "read_mcp_resource"}

pytestmark = [pytest.mark.original, pytest.mark.skipif(
    not ORIGINAL_BIN.exists(), reason="the original codex binary is not installed")]


async def session(program: tuple[str, ...], home: Path, cwd: Path) -> tuple[list[Any], list[dict], Any]:
    """The MCP tools of the turn's first request, the mcpToolCall items and
    the output the model got, for one server program."""
    async with trio.open_nursery() as nursery:
        scripted = ScriptedResponses()
        await nursery.start(scripted.serve)
        home.mkdir()
        (home / "config.toml").write_text(mock_config(scripted.base_url) + (
            f"\n[mcp_servers.fix]\ncommand = {json.dumps(sys.executable)}\nargs = [{json.dumps(str(FIXTURE))}]\n"))
        seen = []
        async with open_app_server(home, program=program) as client:
            await client.initialize()
            tid = (await client.request("thread/start", {"cwd": str(cwd), "approvalPolicy": "never"}))["thread"]["id"]
            with trio.fail_after(60):
                while (m := await client.next_message()).get("method") != "mcpServer/startupStatus/updated" \
                        or m["params"]["status"] == "starting":
                    pass
                await client.request("turn/start", {"threadId": tid, "input": [
                    {"type": "text", "text": '[[call=mcp__fix__echo {"text": "same"}]]'}]})
                while (m := await client.next_message()).get("method") != "turn/completed":
                    if m.get("method") in ("item/started", "item/completed") \
                            and m["params"]["item"]["type"] == "mcpToolCall":
                        seen.append(m)
        tools = [t for t in scripted.requests[0].body["tools"]
                 if t.get("name", "").startswith("mcp__") or t.get("name") in MCP_FUNCTIONS]
        outputs = [i["output"] for i in scripted.requests[-1].body["input"]
                   if isinstance(i, dict) and i.get("type") == "function_call_output"]
        nursery.cancel_scope.cancel()
    return tools, seen, outputs


def shape(msg: dict) -> Any:
    """A notification without its times."""
    item = {k: v for k, v in msg["params"]["item"].items() if not k.endswith("Ms")}
    return msg["method"], item, sorted(msg["params"])


async def test_the_model_is_offered_and_reads_mcp_tools_as_the_originals(tmp_path: Path) -> None:
    ours = await session(OURS, tmp_path / "ours", tmp_path)
    theirs = await session((str(ORIGINAL_BIN),), tmp_path / "original", tmp_path)
    assert sorted(ours[0], key=lambda t: t["name"]) == sorted(theirs[0], key=lambda t: t["name"])
    assert [shape(m)[:2] for m in ours[1]] == [shape(m)[:2] for m in theirs[1]]
    wall = re.compile(r"Wall time: [0-9.]+ seconds")
    assert [wall.sub("", o) for o in ours[2]] == [wall.sub("", o) for o in theirs[2]]
