"""What does each way of reaching the server cost per turn? The embedding
API's one Client (runtime/client.py) drives the same turns three ways:

* ``in-process``: ``Server`` in this process, ``Client.in_process`` (the
  memory transport: no socket, no child);
* ``stdio``: ``Client.spawn`` of ``trio-codex app-server`` (JSONL over pipes);
* ``websocket``: ``Client.websocket`` to ``trio-codex app-server --listen
  ws://127.0.0.1:0`` with ``--ws-auth capability-token`` (trio-websocket).

    /work/venv/bin/python bench/embed_clients.py [--turns 200] [--deltas 1,100] [--ways in-process,stdio,websocket]

Per way and delta count: a fresh CODEX_HOME and server, one thread, three
warm-up turns, then ``--turns`` turns back to back (``client.run_turn``;
each checked: completed, the final text the scripted reply). Figures:

* latency p50/p99: turn/start sent -> TurnCompleted taken by the client;
* CPU/turn (ms), total: this process plus the server's process tree, over
  the timed turns (in-process, both are this process); and the split:
  client (this process) and server (its tree), where they are apart.

The scripted Responses server runs as its own process (its CPU is not
counted).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from benchlib import (
    PY,
    TIMEOUT,
    ScriptedProcess,
    _children_map,
    deltas_prompt,
    expected_reply,
    fmt,
    log_path,
    make_home,
    parser,
    pct,
    print_table,
    progress,
    server_env,
    tree_cpu,
    workspace,
)
from trio_codex.runtime.embed import Client, Server

WAYS = ("in-process", "stdio", "websocket")
TOKEN = "bench-token"
WARMUP = 3


def _server_argv(*listen: str) -> list[str]:
    return [PY, "-m", "trio_codex.runtime", "app-server", *listen]


@asynccontextmanager
async def _in_process(home: Path) -> AsyncIterator[tuple[Client, int | None]]:
    async with Server(codex_home=home) as server, Client.in_process(server) as client:
        yield client, None


@asynccontextmanager
async def _stdio(home: Path, scripted_pid: int) -> AsyncIterator[tuple[Client, int | None]]:
    with open(log_path("embed-stdio"), "wb") as err:
        async with Client.spawn(_server_argv("--listen", "stdio://"), env=server_env(home),
                                stderr=err.fileno()) as client:
            # The child Client.spawn started: ours, other than the scripted model.
            pid = next(p for p in _children_map().get(os.getpid(), []) if p != scripted_pid)
            yield client, pid


@asynccontextmanager
async def _websocket(home: Path) -> AsyncIterator[tuple[Client, int | None]]:
    token = home / "ws-token"
    token.write_text(TOKEN + "\n")
    argv = _server_argv("--listen", "ws://127.0.0.1:0", "--ws-auth", "capability-token",
                        "--ws-token-file", str(token))
    async with trio.open_nursery() as nursery:
        proc: trio.Process = await nursery.start(lambda task_status: trio.run_process(
            argv, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, env=server_env(home), check=False,
            task_status=task_status))
        assert proc.stderr is not None
        banner = b""
        with trio.fail_after(TIMEOUT):
            while b"\n" not in banner.partition(b"listening on: ")[2]:
                chunk = await proc.stderr.receive_some(4096)
                if not chunk:
                    raise RuntimeError(f"the ws server exited: {banner.decode(errors='replace')}")
                banner += chunk
        url = banner.partition(b"listening on: ")[2].split(b"\n", 1)[0].decode()
        nursery.start_soon(_drain, proc.stderr)
        try:
            async with Client.websocket(url, token=TOKEN) as client:
                yield client, proc.pid
        finally:
            proc.terminate()
            with trio.move_on_after(TIMEOUT):
                await proc.wait()
            nursery.cancel_scope.cancel()


async def _drain(stream: trio.abc.ReceiveStream) -> None:
    async for _ in stream:
        pass


async def measure(way: str, scripted: ScriptedProcess, deltas: int, turns: int) -> dict[str, Any]:
    home = make_home(scripted.base_url, f"embed-{way}")
    opening = (_in_process(home) if way == "in-process" else _stdio(home, scripted.proc.pid) if way == "stdio"
               else _websocket(home))
    latencies: list[float] = []
    problems: list[str] = []
    async with opening as (client, server_pid):
        tid = (await client.thread_start(cwd=str(workspace()), approval_policy="never")).thread.id
        for t in range(WARMUP + turns):
            if t == WARMUP:
                cpu0 = time.process_time(), tree_cpu(server_pid) if server_pid else 0.0
            prompt = deltas_prompt(deltas, f"turn {t} of the {way} client")
            start = time.monotonic()
            result = await client.run_turn(tid, prompt)
            if t >= WARMUP:
                latencies.append(time.monotonic() - start)
            if result.turn.status != "completed" or result.text != expected_reply(prompt, deltas):
                problems.append(f"turn {t}: {result.turn.status}, {len(result.text)} chars")
        client_cpu = time.process_time() - cpu0[0]
        server_cpu = tree_cpu(server_pid) - cpu0[1] if server_pid else None
    ms = 1000.0 / turns
    return {
        "way": way, "deltas": deltas, "p50": pct(latencies, 50) * 1000, "p99": pct(latencies, 99) * 1000,
        "cpu": (client_cpu + (server_cpu or 0.0)) * ms, "client": client_cpu * ms if server_cpu is not None else None,
        "server": server_cpu * ms if server_cpu is not None else None, "problems": problems,
    }


async def main(args: Any) -> None:
    rows = []
    for deltas in args.deltas:
        with ScriptedProcess() as scripted:
            for way in args.ways:
                progress(f"{way}: {args.turns} turns of {deltas} deltas")
                r = await measure(way, scripted, deltas, args.turns)
                rows.append([way, str(deltas), fmt(r["p50"], ".2f"), fmt(r["p99"], ".2f"), fmt(r["cpu"], ".2f"),
                             fmt(r["client"], ".2f"), fmt(r["server"], ".2f"), str(len(r["problems"]))])
                for problem in r["problems"][:3]:
                    print(f"  problem ({way}): {problem}")
    print_table(rows, ["way", "deltas", "p50 ms", "p99 ms", "CPU ms/turn", "client", "server", "problems"])


if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--turns", type=int, default=200)
    p.add_argument("--deltas", type=lambda s: [int(x) for x in s.split(",")], default=[1, 100])
    p.add_argument("--ways", type=lambda s: s.split(","), default=list(WAYS))
    trio.run(main, p.parse_args())
