"""Start-up time and memory: cold start, idle RSS, RSS per loaded thread.

Question: how fast is the server ready, what does it weigh idle, and what
does each loaded (started, never used) thread add?

    /work/venv/bin/python bench/startup.py                   # ours and the original
    /work/venv/bin/python bench/startup.py --runs 9 --threads 1000 --vs none

1. ``--runs`` cold starts: spawn -> initialize response (median, min, max),
   then (same process) spawn -> first turn completed (thread/start plus a
   1-delta turn: the first turn is where lazy imports show), the server's
   CPU (its process tree, all threads) at both points, the first turn's
   own latency (turn/start -> turn/completed) beside the median of the
   ``--later`` turns after it, and the idle RSS after initialize plus
   ``--settle`` seconds (median). Servers alternate run by run, so that a
   busy spell of this shared machine hits both.
2. One more process: after initialize and ``--settle``, RSS0; then
   ``--threads`` thread/start requests (16 in flight) and no turns; after
   ``--settle``, RSS1. RSS per loaded thread = (RSS1 - RSS0) / K. Also
   printed: wall and server CPU per thread/start.

3. ``--importtime``: one more cold start of the first server with
   ``PYTHONPROFILEIMPORTTIME=1`` (Python servers only): what it imported up to its
   first turn, by top-level package (self time) and the costliest imports
   (cumulative), as ``python -X importtime`` reports them.

RSS is VmRSS summed over the server's process tree (the original may spawn
helpers). The original's native binary is run directly (not its node
launcher), with an empty HOME.
"""

from __future__ import annotations

import argparse
import collections
import os
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
    log_path,
    make_home,
    parser,
    print_figures,
    progress,
    run_vs,
    server_argv,
    servers,
    tree_cpu,
    tree_mem,
)


async def cold_start(spec: str, base_url: str, settle: float, later: int) -> dict:
    out: dict = {}
    home = make_home(base_url, f"start-{label(spec)}")
    async with app_server(server_argv(spec), home, log=f"startup-{label(spec)}") as client:
        out["init_ms"] = (time.monotonic() - client.spawned_at) * 1000
        out["init_cpu"] = tree_cpu(client.pid) * 1000
        tid = await client.thread_start()
        t0 = time.monotonic()
        await client.turn(tid, "[[deltas=1]] first")
        done = time.monotonic()
        out["first_turn_ms"] = (done - client.spawned_at) * 1000
        out["first_cpu"] = tree_cpu(client.pid) * 1000
        out["turn1_ms"] = (done - t0) * 1000
        lats = []
        for i in range(later):
            t0 = time.monotonic()
            await client.turn(tid, f"[[deltas=1]] later {i}")
            lats.append((time.monotonic() - t0) * 1000)
        out["later_ms"] = statistics.median(lats) if lats else float("nan")
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
        runs: dict[str, list[dict]] = {spec: [] for spec in specs}
        progress(f"{args.runs} cold starts of each of {', '.join(labels(specs))}, alternating ...")
        for _ in range(args.runs):
            for spec in specs:
                runs[spec].append(await cold_start(spec, scripted.base_url, args.settle, args.later))
        for spec in specs:
            progress(f"running {label(spec)}: {args.threads} loaded threads ...")
            init = [r["init_ms"] for r in runs[spec]]
            r = {"init_med": statistics.median(init), "init_min": min(init), "init_max": max(init)}
            for key in ("init_cpu", "first_turn_ms", "first_cpu", "turn1_ms", "later_ms", "idle_rss"):
                r[key] = statistics.median(x[key] for x in runs[spec])
            r["first_turn_min"] = min(x["first_turn_ms"] for x in runs[spec])
            r["turn1_ratio"] = r["turn1_ms"] / r["later_ms"]
            r.update(await loaded_threads(spec, scripted.base_url, args.threads, args.settle))
            results.append(r)
        if args.importtime:
            await importtime(specs[0], scripted.base_url, args.top)
    names = labels(specs)
    rows_spec = [
        ("init_med", "spawn -> initialize response, median ms", ".0f"),
        ("init_min", "  min ms", ".0f"),
        ("init_max", "  max ms", ".0f"),
        ("init_cpu", "  server CPU by then, ms (10 ms ticks)", ".0f"),
        ("first_turn_ms", "spawn -> first turn completed, median ms", ".0f"),
        ("first_turn_min", "  min ms", ".0f"),
        ("first_cpu", "  server CPU by then, ms", ".0f"),
        ("turn1_ms", "first turn's latency (turn/start -> completed), ms", ".1f"),
        ("later_ms", f"  later turns' latency, median of {args.later}, ms", ".1f"),
        ("turn1_ratio", "  first / later", ".1f"),
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


async def importtime(spec: str, base_url: str, top: int) -> None:
    """One cold start under PYTHONPROFILEIMPORTTIME=1, up to its first turn, and
    what it imported (see the module docstring)."""
    home = make_home(base_url, f"imports-{label(spec)}")
    os.environ["PYTHONPROFILEIMPORTTIME"] = "1"
    try:
        async with app_server(server_argv(spec), home, log=f"importtime-{label(spec)}") as client:
            tid = await client.thread_start()
            await client.turn(tid, "[[deltas=1]] first")
    finally:
        del os.environ["PYTHONPROFILEIMPORTTIME"]
    rows = []
    for line in log_path(f"importtime-{label(spec)}").read_text(errors="replace").splitlines():
        if line.startswith("import time:") and "|" in line and "self [us]" not in line:
            self_us, cum_us, name = line[len("import time:"):].split("|")
            rows.append((int(self_us), int(cum_us), name.rstrip()))
    if not rows:
        print(f"== imports of {label(spec)}: none reported (not a Python server?)")
        return
    by_package: collections.Counter = collections.Counter()
    for self_us, _cum, name in rows:
        by_package[name.strip().split(".")[0]] += self_us
    total = sum(by_package.values())
    print(f"== imports of {label(spec)} up to its first turn: {len(rows)} modules, {total / 1000:.0f} ms "
          f"(all threads; -X importtime's own overhead included)")
    print("  -- self time by top-level package, ms")
    for name, us in by_package.most_common(top):
        print(f"  {us / 1000:8.1f}  {name}")
    print("  -- costliest imports, cumulative ms (indented as nested)")
    for _self, cum, name in sorted(rows, key=lambda r: -r[1])[:top]:
        print(f"  {cum / 1000:8.1f}  {name}")


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--later", type=int, default=5, help="turns after the first, for its latency's yardstick")
    p.add_argument("--importtime", action="store_true", help="also list the first server's imports")
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--threads", type=int, default=1000, help="K loaded threads")
    p.add_argument("--settle", type=float, default=1.0)
    run_vs(p, main_async)


if __name__ == "__main__":
    main()
