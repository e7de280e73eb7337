"""Turns over the websocket listener: N clients, each on its own connection
and thread, T turns of D deltas each, all at once. Prints turns/s, turn
latency p50/p99, delta messages per turn, server CPU per turn and RSS, ours next
to the original (``--listen ws://127.0.0.1:PORT`` on both). Every turn is
checked: its deltas must add up to the scripted reply.

    /work/venv/bin/python bench/ws_load.py [--clients 10] [--turns 10] [--deltas 100] [--vs orig]
"""

from __future__ import annotations

import socket
import subprocess
import time
from typing import Any

import trio

from trio_codex.runtime.client import Client
from trio_codex.runtime.protocol.v2.item import AgentMessageDelta

from benchlib import (
    TIMEOUT,
    ScriptedProcess,
    deltas_prompt,
    expected_reply,
    figure_rows,
    labels,
    log_path,
    make_home,
    parser,
    pct,
    print_figures,
    print_problems,
    progress,
    run_vs,
    server_argv,
    server_env,
    servers,
    tree_cpu,
    tree_mem,
    workspace,
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def listening(port: int) -> None:
    """Wait until the listener answers ``/readyz``."""
    with trio.fail_after(TIMEOUT):
        while True:
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                await trio.sleep(0.05)
                continue
            async with stream:
                await stream.send_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
                if (await stream.receive_some(64)).startswith(b"HTTP/1.1 200"):
                    return


async def client(url: str, turns: int, deltas: int, latencies: list[float], problems: list[str],
                 ready: list[int], start: trio.Event) -> int:
    """One connection (the embedding API's ``Client.websocket``), one
    thread, ``turns`` checked turns; returns the delta messages seen (fewer
    than asked for when the server merged the deltas of a client that fell
    behind, which loses no text)."""
    seen = 0
    async with Client.websocket(url, name="ws_load", request_timeout=TIMEOUT, event_timeout=TIMEOUT) as session:
        tid = (await session.thread_start(ephemeral=True)).thread.id
        for t in range(-1, turns):  # turn -1 warms up (model client, imports) and is not counted
            if t == 0:
                ready.append(1)
                await start.wait()
            prompt = deltas_prompt(deltas, f"turn {t} of {tid}")
            t0 = time.monotonic()
            parts: list[str] = []
            async with session.turn(tid, prompt) as turn:
                async for event in turn:
                    if isinstance(event, AgentMessageDelta):
                        parts.append(event.delta)
            if t < 0:
                continue
            latencies.append(time.monotonic() - t0)
            seen += len(parts)
            if "".join(parts) != expected_reply(prompt, deltas):
                problems.append(f"turn {t}: {len(parts)} deltas did not add up to the reply")
    return seen


async def run_one(spec: str, base_url: str, clients: int, turns: int, deltas: int) -> dict[str, Any]:
    port = free_port()
    argv = [*server_argv(spec)[:-2], "--listen", f"ws://127.0.0.1:{port}"]
    home = make_home(base_url, "ws-load")
    with open(log_path(f"ws-load-{spec}"), "wb") as err:
        proc = subprocess.Popen(argv, env=server_env(home), cwd=str(workspace()), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err)
    try:
        await listening(port)
        url = f"ws://127.0.0.1:{port}/"
        latencies: list[float] = []
        problems: list[str] = []
        counts: list[int] = []
        ready: list[int] = []
        start = trio.Event()
        async with trio.open_nursery() as nursery:
            async def one() -> None:
                counts.append(await client(url, turns, deltas, latencies, problems, ready, start))

            for _ in range(clients):
                nursery.start_soon(one)
            with trio.fail_after(TIMEOUT):  # every client connected, its thread started
                while len(ready) < clients:
                    await trio.sleep(0.01)
            cpu0, w0 = tree_cpu(proc.pid), time.monotonic()
            start.set()
        wall = time.monotonic() - w0
        cpu = tree_cpu(proc.pid) - cpu0
        rss, _ = tree_mem(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    n = len(latencies)
    return {"turns_s": n / wall, "p50": pct(latencies, 50) * 1000, "p99": pct(latencies, 99) * 1000,
            "deltas_turn": sum(counts) / n, "cpu_turn": cpu / n * 1000, "rss": rss / 1024, "problems": problems,
            "lat_ms": [x * 1000 for x in latencies]}


async def main(args: Any) -> None:
    specs = servers(args)
    names = labels(specs)
    results = []
    with ScriptedProcess() as model:
        for spec in specs:
            progress(f"{spec}: {args.clients} clients x {args.turns} turns x {args.deltas} deltas over ws")
            results.append(await run_one(spec, model.base_url, args.clients, args.turns, args.deltas))
    print(f"websocket: {args.clients} clients x {args.turns} turns x {args.deltas} deltas")
    print_figures(figure_rows(results, [
        ("turns_s", "turns/s", ".1f"), ("p50", "turn latency p50 (ms)", ".1f"),
        ("p99", "turn latency p99 (ms)", ".1f"), ("deltas_turn", "delta messages per turn", ".0f"),
        ("cpu_turn", "server CPU per turn (ms)", ".2f"), ("rss", "server RSS (MB)", ".1f"),
    ]), names)
    print_problems(names, [r["problems"] for r in results])


if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--turns", type=int, default=10)
    p.add_argument("--deltas", type=int, default=100)
    run_vs(p, main)
