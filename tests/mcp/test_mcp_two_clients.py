"""An MCP tool call asked about on a thread two clients follow (the real
server on a websocket listener): both get the elicitation with one id, the
first answer wins, both see it resolved."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path
from typing import Any

import trio
import trio_websocket

from harness.ws import TIMEOUT, ws_server

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "mcp_server.py"


class Client:
    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    async def send(self, msg: dict[str, Any]) -> None:
        await self.ws.send_message(json.dumps(msg))

    async def next(self) -> dict[str, Any]:
        with trio.fail_after(TIMEOUT * 3):
            return json.loads(await self.ws.get_message())

    async def request(self, method: str, params: dict[str, Any]) -> Any:
        rid = next(self.ids)
        await self.send({"id": rid, "method": method, "params": params})
        while (msg := await self.next()).get("id") != rid or "method" in msg:
            pass
        return msg["result"]

    async def until(self, method: str) -> dict[str, Any]:
        while (msg := await self.next()).get("method") != method:
            pass
        return msg


async def test_the_elicitation_for_a_tool_goes_to_both_subscribers_and_the_first_answer_wins(
        codex_home: Path, tmp_path: Path) -> None:
    with (codex_home / "config.toml").open("a") as f:
        f.write(f"\n[mcp_servers.fix]\ncommand = {json.dumps(sys.executable)}\nargs = [{json.dumps(str(FIXTURE))}]\n")
    async with ws_server(codex_home) as server, \
            trio_websocket.open_websocket_url(server.url + "/", message_queue_size=1024) as wa, \
            trio_websocket.open_websocket_url(server.url + "/", message_queue_size=1024) as wb:
        a, b = Client(wa), Client(wb)
        for client in (a, b):
            await client.request("initialize", {"clientInfo": {"name": "two", "version": "1"}})
        tid = (await a.request("thread/start", {"cwd": str(tmp_path), "approvalPolicy": "untrusted",
                                                "sandbox": "read-only"}))["thread"]["id"]
        await b.request("thread/resume", {"threadId": tid})
        call = json.dumps({"note": "both"})
        await a.request("turn/start", {"threadId": tid, "input": [
            {"type": "text", "text": f"[[call=mcp__fix__write_note {call}]]"}]})
        to_a = await a.until("mcpServer/elicitation/request")
        to_b = await b.until("mcpServer/elicitation/request")
        assert to_a["id"] == to_b["id"] and to_a["params"] == to_b["params"]
        assert to_a["params"]["_meta"]["codex_approval_kind"] == "mcp_tool_call"
        await b.send({"id": to_b["id"], "result": {"action": "accept", "content": {}}})
        # Two sockets: a's answer is late only once b's was taken.
        assert (await b.until("serverRequest/resolved"))["params"]["requestId"] == to_a["id"]
        await a.send({"id": to_a["id"], "result": {"action": "decline"}})  # late: ignored
        assert (await a.until("serverRequest/resolved"))["params"]["requestId"] == to_a["id"]
        done = await a.until("item/completed")
        while done["params"]["item"]["type"] != "mcpToolCall":
            done = await a.until("item/completed")
        assert done["params"]["item"]["status"] == "completed"
        assert done["params"]["item"]["result"]["structuredContent"] == {"result": "noted: both"}
