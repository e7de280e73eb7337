"""Start-up time and memory: cold start, idle RSS, RSS per loaded thread.

Question: how fast is the server ready, what does it weigh idle, and what
does each loaded (started, never used) thread add?

    /work/venv/bin/python bench/startup.py                   # ours and the original
    /work/venv/bin/python bench/startup.py --runs 9 --threads 1000 --vs none

1. ``--runs`` cold starts: spawn -> initialize response (median, min, max),
   then (same process) spawn -> first turn completed (thread/start plus a
   1-delta turn: the first turn is where lazy imports show), that first
   turn's latency against the median of the next three's, and the idle
   RSS after initialize plus ``--settle`` seconds (median).
2. One more process: after initialize and ``--settle``, RSS0; then
   ``--threads`` thread/start requests (16 in flight) and no turns; after
   ``--settle``, RSS1. RSS per loaded thread = (RSS1 - RSS0) / K. Also
   printed: wall and server CPU per thread/start.

RSS is VmRSS summed over the server's process tree (the original may spawn
helpers). The original's native binary is run directly (not its node
launcher), with an empty HOME.
"""

from __future__ import annotations

import argparse
import statistics
import time

import trio

from benchlib import (
    ScriptedProcess,
    app_server,
    figure_rows,
    gather_limited,
    label,
    labels,
    make_home,
    median,
    parser,
    print_figures,
    progress,
    run_vs,
    server_argv,
    servers,
    tree_cpu,
    tree_mem,
)


async def cold_start(spec: str, base_url: str, settle: float) -> dict:
    out: dict = {}
    home = make_home(base_url, f"start-{label(spec)}")
    async with app_server(server_argv(spec), home, log=f"startup-{label(spec)}") as client:
        out["init_ms"] = (time.monotonic() - client.spawned_at) * 1000
        tid = await client.thread_start()
        st = await client.turn(tid, "[[deltas=1]] first")
        out["first_turn_ms"] = (time.monotonic() - client.spawned_at) * 1000
        # The first turn's own latency against the next ones' on the same
        # thread: what a fresh server's lazy start-up adds to its first turn.
        out["turn1_ms"] = (st.done_at - st.sent) * 1000
        later = [await client.turn(tid, f"[[deltas=1]] later {k}") for k in range(3)]
        out["later_turn_ms"] = median([(s.done_at - s.sent) * 1000 for s in later])
    # Idle RSS from a separate process that never ran a turn.
    home = make_home(base_url, f"idle-{label(spec)}")
    async with app_server(server_argv(spec), home) as client:
        await trio.sleep(settle)
        out["idle_rss"] = tree_mem(client.pid)[0] / 1024
    return out


async def loaded_threads(spec: str, base_url: str, k: int, settle: float) -> dict:
    home = make_home(base_url, f"threads-{label(spec)}")
    async with app_server(server_argv(spec), home, log=f"threads-{label(spec)}") as client:
        await trio.sleep(settle)
        rss0 = tree_mem(client.pid)[0]
        cpu0 = tree_cpu(client.pid)
        w0 = time.monotonic()
        tids = await gather_limited([client.thread_start] * k, 16)
        wall = time.monotonic() - w0
        cpu = tree_cpu(client.pid) - cpu0
        await trio.sleep(settle)
        rss1 = tree_mem(client.pid)[0]
    return dict(rss0=rss0 / 1024, rss1=rss1 / 1024, per_thread_kb=(rss1 - rss0) / k,
                start_ms=wall / k * 1000, start_cpu_ms=cpu / k * 1000, started=len(set(tids)))


async def main_async(args: argparse.Namespace) -> None:
    specs = servers(args)
    results = []
    with ScriptedProcess() as scripted:
        for spec in specs:
            progress(f"running {label(spec)}: {args.runs} cold starts, then {args.threads} loaded threads ...")
            runs = [await cold_start(spec, scripted.base_url, args.settle) for _ in range(args.runs)]
            init = [r["init_ms"] for r in runs]
            r = {
                "init_med": statistics.median(init), "init_min": min(init), "init_max": max(init),
                "first_turn_med": statistics.median(r["first_turn_ms"] for r in runs),
                "turn1_med": statistics.median(r["turn1_ms"] for r in runs),
                "later_turn_med": statistics.median(r["later_turn_ms"] for r in runs),
                "idle_rss": statistics.median(r["idle_rss"] for r in runs),
            }
            r.update(await loaded_threads(spec, scripted.base_url, args.threads, args.settle))
            results.append(r)
    names = labels(specs)
    rows_spec = [
        ("init_med", "spawn -> initialize response, median ms", ".0f"),
        ("init_min", "  min ms", ".0f"),
        ("init_max", "  max ms", ".0f"),
        ("first_turn_med", "spawn -> first turn completed, median ms", ".0f"),
        ("turn1_med", "first turn's latency (turn/start -> completed), median ms", ".1f"),
        ("later_turn_med", "the next three turns' latency, median ms", ".1f"),
        ("idle_rss", "idle RSS after initialize, MB", ".1f"),
        ("rss0", f"RSS before {args.threads} thread/start, MB", ".1f"),
        ("rss1", f"RSS after {args.threads} loaded threads, MB", ".1f"),
        ("per_thread_kb", "RSS per loaded idle thread, KB", ".1f"),
        ("start_ms", "wall per thread/start (16 in flight), ms", ".2f"),
        ("start_cpu_ms", "server CPU per thread/start, ms", ".2f"),
        ("started", "threads started", "d"),
    ]
    print(f"== start-up ({args.runs} cold starts each; {args.threads} loaded threads)")
    print_figures(figure_rows(results, rows_spec), names)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--threads", type=int, default=1000, help="K loaded threads")
    p.add_argument("--settle", type=float, default=1.0)
    run_vs(p, main_async)


if __name__ == "__main__":
    main()
