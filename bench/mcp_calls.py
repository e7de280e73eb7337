"""What an MCP tool call costs through the server, and whether MCP
processes pile up.

Question: how much does the app-server add to an MCP tool call, next to a
direct ``mcp`` client call to the same server, and how many MCP processes are
alive after many thread start/unload cycles?

    .venv/bin/python bench/mcp_calls.py [--calls 300 --concurrent 100 --cycles 1000]

1. Direct: one ``mcp`` ClientSession to the fixture server
   (tests/fixtures/mcp_server.py) over stdio: ``--calls`` sequential
   ``echo`` calls (per call p50/p99), then ``--concurrent`` at once (wall
   per call).
2. Ours: the same calls as ``mcpServer/tool/call`` on a thread, over the
   app-server's stdio, with the server configured in config.toml.
3. Cycles: one thread stays subscribed; ``--cycles`` threads are started,
   call the server once and are unsubscribed (``thread_unload_delay_secs =
   0``): the fixture processes alive at most and at the end, and after the
   last thread unloads.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import trio

from benchlib import PY, app_server, make_home, parser, pct, print_table, server_argv, ScriptedProcess

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "mcp_server.py"


def fixture_pids() -> int:
    n = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if str(FIXTURE).encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    n += ") Z" not in Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                pass
    return n


async def timed(calls: int, concurrent: int, call) -> tuple[list[float], float]:
    seq = []
    for _ in range(calls):
        t = time.perf_counter()
        await call()
        seq.append((time.perf_counter() - t) * 1e6)
    t = time.perf_counter()
    async with trio.open_nursery() as n:
        for _ in range(concurrent):
            n.start_soon(call)
    return seq, (time.perf_counter() - t) * 1e6 / concurrent


async def direct(calls: int, concurrent: int) -> tuple[list[float], float]:
    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(command=PY, args=[str(FIXTURE)])
    async with stdio_client(params) as (r, w), ClientSession(r, w) as s:
        await s.initialize()
        return await timed(calls, concurrent, lambda: s.call_tool("echo", {"text": "x"}))


async def main(args) -> None:
    rows = []
    d_seq, d_conc = await direct(args.calls, args.concurrent)
    with ScriptedProcess() as scripted:
        home = make_home(scripted.base_url, "mcp")
        text = (home / "config.toml").read_text()
        (home / "config.toml").write_text("thread_unload_delay_secs = 0\n" + text + (
            f"\n[mcp_servers.fix]\ncommand = {json.dumps(PY)}\nargs = [{json.dumps(str(FIXTURE))}]\n"))
        async with app_server(server_argv("ours"), home) as client:
            anchor = await client.thread_start()
            params = {"threadId": anchor, "server": "fix", "tool": "echo", "arguments": {"text": "x"}}
            o_seq, o_conc = await timed(args.calls, args.concurrent,
                                        lambda: client.request("mcpServer/tool/call", params))
            most = 0
            t = time.perf_counter()
            for _ in range(args.cycles):
                tid = await client.thread_start()
                await client.request("mcpServer/tool/call", {**params, "threadId": tid})
                await client.request("thread/unsubscribe", {"threadId": tid})
                most = max(most, fixture_pids())
            cycle_ms = (time.perf_counter() - t) * 1e3 / max(args.cycles, 1)
            during = fixture_pids()
            await client.request("thread/unsubscribe", {"threadId": anchor})
            with trio.move_on_after(30):
                while fixture_pids():
                    await trio.sleep(0.1)
            after = fixture_pids()
    for name, seq, conc in (("direct mcp client", d_seq, d_conc), ("ours (mcpServer/tool/call)", o_seq, o_conc)):
        rows.append([name, f"{pct(seq, 50):.0f}", f"{pct(seq, 99):.0f}", f"{conc:.0f}"])
    print_table(rows, ["path", "seq p50 µs", "seq p99 µs", f"{args.concurrent} at once, µs/call"])
    print(f"\n{args.cycles} thread start/call/unload cycles ({cycle_ms:.1f} ms each): fixture processes "
          f"alive at most {most}, at the end {during}, after the last thread unloaded {after}")


if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--calls", type=int, default=300)
    p.add_argument("--concurrent", type=int, default=100)
    p.add_argument("--cycles", type=int, default=1000)
    trio.run(main, p.parse_args())
