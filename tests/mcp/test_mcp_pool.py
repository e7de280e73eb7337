"""The MCP pool in-process: a server that keeps dying is restarted within
its budget, then reported failed; stopping the pool leaves no process."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import trio

from trio_codex.actors.mcp.pool import CONNECTION_RESTARTS, McpPool
from trio_codex.actors.messages import McpAcquire, McpCallTool, McpInventory
from trio_codex.runtime.kernel.ask import ask
from trio_codex.runtime.config import load_settings
from trio_codex.runtime.kernel.errors import McpCallFailed

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "mcp_server.py"


async def test_a_server_that_keeps_crashing_is_restarted_within_its_budget_then_failed(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        f"[mcp_servers.fix]\ncommand = {json.dumps(sys.executable)}\nargs = [{json.dumps(str(FIXTURE))}]\n")
    pool = McpPool(load_settings(codex_home=tmp_path))
    async with trio.open_nursery() as nursery:
        mailbox = await nursery.start(pool.run)
        refs = await ask(mailbox, lambda slot: McpAcquire("t1", (), False, slot), timeout=10)
        ref = refs["fix"]
        crashes = 0
        with trio.fail_after(120):
            while True:
                inv = await ask(ref.mailbox, McpInventory, timeout=60)
                if inv.status == "failed":
                    break
                try:  # a server that answers (not the one dying)
                    await ask(ref.mailbox, lambda slot: McpCallTool("p", "pid", {}, 30, None, slot), timeout=60)
                except McpCallFailed:
                    await trio.sleep(0.05)
                    continue
                try:
                    await ask(ref.mailbox, lambda slot: McpCallTool(f"c{crashes}", "crash", {}, 30, None, slot),
                              timeout=60)
                except McpCallFailed:
                    crashes += 1
        assert crashes == CONNECTION_RESTARTS.intensity + 1
        assert inv.error.startswith("MCP client for `fix` failed to start: the server exited 4 times within 60 s")
        nursery.cancel_scope.cancel()
