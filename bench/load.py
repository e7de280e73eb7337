"""Load benchmark over stdio: N threads x T turns x D deltas, all threads at once.

Question: how many turns per second does an app server sustain, how long does
a turn take, how soon does its first delta arrive, and what does it cost in
server CPU and memory?

    /work/venv/bin/python bench/load.py --threads 10 --turns 5 --deltas 100
    /work/venv/bin/python bench/load.py --server-cmd orig          # the original only
    /work/venv/bin/python bench/load.py --vs orig                  # ours and the original, side by side
    /work/venv/bin/python bench/load.py --vs "/path/to/codex app-server --listen stdio://"
    /work/venv/bin/python bench/load.py --scenarios                # 1x20, 10x5, 50x3 for both
    /work/venv/bin/python bench/load.py --vs --threads 20 --turns 2 --deltas 200 --delay-ms 5   # paced

The scripted Responses server runs as its own process (its CPU is not
counted). One throwaway thread runs one 1-delta turn first (imports, HTTP
pool), then the N threads are started and, once all exist, each runs its T
turns back to back while the others do the same. Figures:

* turns/s: N*T / wall time of the turn phase;
* turn latency: turn/start sent -> turn/completed received (p50/p99);
* first delta: turn/start sent -> first item/agentMessage/delta (p50/p99);
* CPU/turn: utime+stime of the server's process tree (/proc) over the turn
  phase, divided by N*T;
* idle RSS: VmRSS after initialize (0.5 s settle); peak RSS: VmHWM at the end
  (both summed over the process tree).
"""

from __future__ import annotations

import argparse
import sys
import time

import trio

from benchlib import (
    LoadSampler,
    ScriptedProcess,
    app_server,
    drive_threads,
    figure_row,
    fmt,
    gather_limited,
    label,
    labels,
    make_home,
    orig_available,
    parser,
    pct,
    print_problems,
    print_table,
    progress,
    server_argv,
    tree_mem,
)

SCENARIOS = [(1, 20), (10, 5), (50, 3)]
SCENARIO_KEYS = {"turns_per_s", "lat_p50", "lat_p99", "ttfd_p50", "ttfd_p99", "cpu_turn_ms", "peak_rss_mb", "bad"}

#: (key, title, format, better) for printing; better: "high" or "low".
METRICS = [
    ("turns_per_s", "turns/s", ".1f", "high"),
    ("lat_p50", "turn latency p50 ms", ".1f", "low"),
    ("lat_p99", "turn latency p99 ms", ".1f", "low"),
    ("ttfd_p50", "first delta p50 ms", ".1f", "low"),
    ("ttfd_p99", "first delta p99 ms", ".1f", "low"),
    ("cpu_turn_ms", "server CPU/turn ms", ".2f", "low"),
    ("idle_rss_mb", "idle RSS MB", ".1f", "low"),
    ("peak_rss_mb", "peak RSS (VmHWM) MB", ".1f", "low"),
    ("delta_msgs", "delta messages/turn (merged?)", ".1f", ""),
    ("bad", "bad turns (status or text)", "d", "low"),
]


async def run_load(spec: str, base_url: str, threads: int, turns: int, deltas: int,
                   *, delay_ms: float = 0.0, warmup: bool = True, start_limit: int = 16,
                   sample_every: float | None = None) -> dict:
    """One scenario against one server; returns its figures, with the raw
    latencies (``lat_ms``, ``ttfd_ms``) and, given ``sample_every``, the
    :class:`LoadSampler` rows of the turn phase (``samples``)."""
    home = make_home(base_url, f"load-{label(spec)}")
    out: dict = {}
    async with app_server(server_argv(spec), home, log=f"load-{label(spec)}-{threads}x{turns}x{deltas}") as client:
        out["init_ms"] = (time.monotonic() - client.spawned_at) * 1000
        await trio.sleep(0.5)
        out["idle_rss_mb"] = tree_mem(client.pid)[0] / 1024
        if warmup:
            tid = await client.thread_start()
            await client.turn(tid, "[[deltas=1]] warm up")
        tids = await gather_limited([client.thread_start] * threads, start_limit)
        sampler = LoadSampler(client, sample_every) if sample_every else None
        async with trio.open_nursery() as nursery:
            if sampler is not None:
                nursery.start_soon(sampler.run)
            run = await drive_threads(client, tids, turns, deltas, "thread {i} turn {t} hello bench", delay_ms)
            nursery.cancel_scope.cancel()
        if sampler is not None:
            sampler.sample()
        rss, hwm = tree_mem(client.pid)
    n = threads * turns
    records = run.records
    lat = [(r.done_at - r.sent) * 1000 for r in records]
    ttfd = [(r.first_delta - r.sent) * 1000 for r in records if r.first_delta is not None]
    out.update(
        turns=n, wall_s=run.wall, turns_per_s=n / run.wall,
        lat_p50=pct(lat, 50), lat_p99=pct(lat, 99), ttfd_p50=pct(ttfd, 50), ttfd_p99=pct(ttfd, 99),
        cpu_s=run.cpu, cpu_turn_ms=run.cpu / n * 1000,
        end_rss_mb=rss / 1024, peak_rss_mb=hwm / 1024,
        bad=len(run.problems), problems=run.problems[:3], lat_ms=lat, ttfd_ms=ttfd,
        samples=sampler.samples if sampler is not None else None,
        delta_msgs=sum(r.deltas for r in records) / n,
        unexpected=len(client.unexpected),
    )
    return out


def show_one(name: str, r: dict, scenario: str) -> None:
    print(f"== {name}: {scenario}  ({r['turns']} turns in {r['wall_s']:.2f} s, "
          f"server CPU {r['cpu_s']:.2f} s, initialize {r['init_ms']:.0f} ms)")
    for key, title, spec, _ in METRICS:
        print(f"  {title:32s} {fmt(r[key], spec)}")
    for problem in r["problems"]:
        print(f"  problem: {problem}")


def show_vs(names: tuple[str, str], a: dict, b: dict, scenario: str) -> None:
    print(f"== {scenario}: {names[0]} vs {names[1]} (ratio = {names[0]}/{names[1]})")
    rows = []
    for key, title, spec, better in METRICS:
        rows.append([*figure_row(title, [a[key], b[key]], spec), "higher better" if better == "high" else ""])
    rows.append(["wall s / server CPU s", f"{a['wall_s']:.2f} / {a['cpu_s']:.2f}",
                 f"{b['wall_s']:.2f} / {b['cpu_s']:.2f}", "", ""])
    print_table(rows, ["figure", names[0], names[1], "ratio", ""])
    print_problems(list(names), [a["problems"], b["problems"]])


async def main_async(args: argparse.Namespace) -> None:
    with ScriptedProcess() as scripted:
        if args.scenarios:
            other = args.vs or "orig"
            servers = [args.server_cmd] + ([other] if other != "none" else [])
            results: dict = {}
            for threads, turns in SCENARIOS:
                for spec in servers:
                    progress(f"running {label(spec)} {threads}x{turns}x{args.deltas} ...")
                    results[spec, threads, turns] = await run_load(spec, scripted.base_url, threads, turns,
                                                                   args.deltas, delay_ms=args.delay_ms)
            names = labels(servers)
            header = ["threads x turns", "figure", *names] + (["ratio"] if len(servers) == 2 else [])
            rows = []
            for threads, turns in SCENARIOS:
                for key, title, spec, _ in [m for m in METRICS if m[0] in SCENARIO_KEYS]:
                    vals = [results[s, threads, turns][key] for s in servers]
                    rows.append([f"{threads}x{turns}x{args.deltas}", *figure_row(title, vals, spec)])
            print(f"== scenarios (deltas per turn {args.deltas}"
                  f"{f' {args.delay_ms} ms apart' if args.delay_ms else ''}; ratio = {names[0]}/{names[-1]})")
            print_table(rows, header)
            for (spec, threads, turns), r in results.items():
                for problem in r["problems"]:
                    print(f"  problem ({label(spec)} {threads}x{turns}): {problem}")
            return
        scenario = f"{args.threads} threads x {args.turns} turns x {args.deltas} deltas" + (
            f" {args.delay_ms} ms apart" if args.delay_ms else "")
        a = await run_load(args.server_cmd, scripted.base_url, args.threads, args.turns, args.deltas,
                           delay_ms=args.delay_ms)
        if not args.vs:
            show_one(label(args.server_cmd), a, scenario)
            return
        b = await run_load(args.vs, scripted.base_url, args.threads, args.turns, args.deltas,
                           delay_ms=args.delay_ms)
        show_vs(tuple(labels([args.server_cmd, args.vs])), a, b, scenario)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--threads", type=int, default=10)
    p.add_argument("--turns", type=int, default=5)
    p.add_argument("--deltas", type=int, default=100)
    p.add_argument("--delay-ms", type=float, default=0.0,
                   help="the model waits this long between deltas (a real model's pace; 0: as fast as it can)")
    p.add_argument("--server-cmd", default="ours", help="ours (default), orig, or a command line")
    p.add_argument("--vs", nargs="?", const="orig", default=None,
                   help="also run this server (default orig) and print both with the ratio")
    p.add_argument("--scenarios", action="store_true", help="1x20, 10x5, 50x3 for --server-cmd and --vs (orig)")
    args = p.parse_args()
    if (args.vs == "orig" or args.server_cmd == "orig") and not orig_available():
        sys.exit("the original is not installed here")
    trio.run(main_async, args)


if __name__ == "__main__":
    main()
