"""An MCP tool call asked about on a thread two clients follow (the real
server on a websocket listener): both get the elicitation with one id, the
first answer wins, both see it resolved."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from harness.ws import TIMEOUT, ws_client, ws_server

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "mcp_server.py"


async def test_the_elicitation_for_a_tool_goes_to_both_subscribers_and_the_first_answer_wins(
        codex_home: Path, tmp_path: Path) -> None:
    with (codex_home / "config.toml").open("a") as f:
        f.write(f"\n[mcp_servers.fix]\ncommand = {json.dumps(sys.executable)}\nargs = [{json.dumps(str(FIXTURE))}]\n")
    # The MCP server starts under the turn: a longer bound than the default.
    async with ws_server(codex_home) as server, ws_client(server.url, timeout=TIMEOUT * 3) as a, \
            ws_client(server.url, timeout=TIMEOUT * 3) as b:
        for client in (a, b):
            await client.request("initialize", {"clientInfo": {"name": "two", "version": "1"}})
        tid = (await a.request("thread/start", {"cwd": str(tmp_path), "approvalPolicy": "untrusted",
                                                "sandbox": "read-only"}))["thread"]["id"]
        await b.request("thread/resume", {"threadId": tid})
        call = json.dumps({"note": "both"})
        await a.request("turn/start", {"threadId": tid, "input": [
            {"type": "text", "text": f"[[call=mcp__fix__write_note {call}]]"}]})
        to_a = await a.next_of("mcpServer/elicitation/request")
        to_b = await b.next_of("mcpServer/elicitation/request")
        assert to_a["id"] == to_b["id"] and to_a["params"] == to_b["params"]
        assert to_a["params"]["_meta"]["codex_approval_kind"] == "mcp_tool_call"
        await b.send({"id": to_b["id"], "result": {"action": "accept", "content": {}}})
        # Two sockets: a's answer is late only once b's was taken.
        assert (await b.next_of("serverRequest/resolved"))["params"]["requestId"] == to_a["id"]
        await a.send({"id": to_a["id"], "result": {"action": "decline"}})  # late: ignored
        assert (await a.next_of("serverRequest/resolved"))["params"]["requestId"] == to_a["id"]
        done = await a.next_of("item/completed")
        while done["params"]["item"]["type"] != "mcpToolCall":
            done = await a.next_of("item/completed")
        assert done["params"]["item"]["status"] == "completed"
        assert done["params"]["item"]["result"]["structuredContent"] == {"result": "noted: both"}
