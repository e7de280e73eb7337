"""Server CPU per streamed delta.

Question: what does one more streamed delta cost the app server in CPU?

    /work/venv/bin/python bench/delta_cpu.py                 # ours and the original
    /work/venv/bin/python bench/delta_cpu.py --server-cmd ours --vs none
    /work/venv/bin/python bench/delta_cpu.py --deltas 20000 --many-turns 10 --one-turns 200

One server, one thread, turns back to back (after a warm-up turn). Phase A
runs ``--one-turns`` turns of 1 delta, phase B ``--many-turns`` turns of
``--deltas`` deltas; each phase's server CPU (utime+stime of its process tree
from /proc) is divided by its turn count, and

    CPU per delta = (CPU/turn in B - CPU/turn in A) / (deltas - 1)

which leaves out what every turn costs whatever its length. Every turn is
checked: its deltas must add up to the expected text. Target for ours:
<= 15 us/delta. The scripted model runs as its own process.

Phase C (``--paced``) streams deltas ``--paced-ms`` apart, as a real model
does: each delta then arrives in its own network read and leaves in its own
write, so nothing can be batched; its per-delta cost is computed the same
way against phase A. ``--paced-ms 20 --paced 200`` spaces them as a real
model does (tens of ms apart). Target for ours: <= 50 us per paced delta.

Also printed: how many delta messages reached the client per turn (our
server merges runs of deltas when its outbox has a backlog, losslessly) and
the stream rate in deltas per second of wall time.
"""

from __future__ import annotations

import argparse

from benchlib import (
    AppClient,
    ScriptedProcess,
    app_server,
    drive_threads,
    figure_rows,
    label,
    labels,
    make_home,
    parser,
    print_figures,
    print_problems,
    progress,
    run_vs,
    server_argv,
    servers,
)


async def phase(client: AppClient, tid: str, turns: int, deltas: int, delay_ms: float = 0) -> dict:
    run = await drive_threads(client, [tid], turns, deltas, "turn {t} of a delta cost run", delay_ms)
    return {"cpu_s": run.cpu, "cpu_turn": run.cpu / turns, "wall_s": run.wall,
            "msgs_turn": sum(st.deltas for st in run.records) / turns,
            "problems": run.problems, "turns": turns, "deltas": deltas}


async def measure(spec: str, base_url: str, deltas: int, many_turns: int, one_turns: int,
                  paced: int, paced_ms: float, paced_turns: int) -> dict:
    home = make_home(base_url, f"delta-{label(spec)}")
    async with app_server(server_argv(spec), home, log=f"delta-{label(spec)}") as client:
        tid = await client.thread_start()
        await client.turn(tid, "[[deltas=1]] warm up")
        await client.turn(tid, f"[[deltas={min(deltas, 2000)}]] warm up the long path")
        # A fresh thread, so that both phases start from the same history.
        tid_a = await client.thread_start()
        a = await phase(client, tid_a, one_turns, 1)
        tid_b = await client.thread_start()
        b = await phase(client, tid_b, many_turns, deltas)
        c = None
        if paced:
            tid_c = await client.thread_start()
            c = await phase(client, tid_c, paced_turns, paced, paced_ms)
    per_delta_us = (b["cpu_turn"] - a["cpu_turn"]) / (deltas - 1) * 1e6
    return {
        "per_delta_us": per_delta_us,
        "turn1_ms": a["cpu_turn"] * 1000,
        "turnN_ms": b["cpu_turn"] * 1000,
        "msgs_turn": b["msgs_turn"],
        "deltas_per_s": deltas * many_turns / b["wall_s"],
        "cpu_a": a["cpu_s"], "cpu_b": b["cpu_s"],
        "problems": a["problems"] + b["problems"] + (c["problems"] if c else []),
        "paced_us": (c["cpu_turn"] - a["cpu_turn"]) / (paced - 1) * 1e6 if c else None,
        "paced_msgs": c["msgs_turn"] if c else None,
        "cpu_c": c["cpu_s"] if c else None,
    }


ROWS = [
    ("per_delta_us", "server CPU per extra delta, us", ".2f"),
    ("turn1_ms", "server CPU per 1-delta turn, ms", ".2f"),
    ("turnN_ms", "server CPU per N-delta turn, ms", ".1f"),
    ("msgs_turn", "delta messages per N-delta turn", ".0f"),
    ("deltas_per_s", "stream rate, deltas/s (wall)", ",.0f"),
    ("cpu_a", "phase A CPU s (1-delta turns)", ".2f"),
    ("cpu_b", "phase B CPU s (N-delta turns)", ".2f"),
    ("paced_us", "CPU per extra PACED delta, us", ".2f"),
    ("paced_msgs", "delta messages per paced turn", ".0f"),
    ("cpu_c", "phase C CPU s (paced turns)", ".2f"),
]


async def main_async(args: argparse.Namespace) -> None:
    specs = servers(args)
    results = []
    with ScriptedProcess() as scripted:
        for spec in specs:
            many = args.many_turns if spec != "orig" else max(2, args.many_turns // 3)
            one = args.one_turns if spec != "orig" else max(10, args.one_turns // 5)
            progress(f"running {label(spec)}: {one} x 1 delta, {many} x {args.deltas} deltas ...")
            results.append(await measure(spec, scripted.base_url, args.deltas, many, one,
                                         args.paced, args.paced_ms, args.paced_turns))
    names = labels(specs)
    print(f"== per-delta CPU (N = {args.deltas} deltas as fast as the model sends them; "
          f"paced: {args.paced} deltas {args.paced_ms} ms apart; one thread, turns back to back)")
    print_figures(figure_rows(results, ROWS), names)
    target = results[0]["per_delta_us"]
    print(f"target for ours <= 15 us/delta: {'met' if target <= 15 else 'NOT met'} ({target:.2f} us)"
          if specs[0] == "ours" else "")
    paced = results[0]["paced_us"]
    if specs[0] == "ours" and paced is not None:
        print(f"target for ours <= 50 us per paced delta: {'met' if paced <= 50 else 'NOT met'} ({paced:.1f} us; "
              f"where it goes, hop by hop: where_cpu.py --scenario paced)")
    print_problems(names, [r["problems"] for r in results])


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--deltas", type=int, default=20000)
    p.add_argument("--many-turns", type=int, default=10, help="turns of --deltas deltas (the original runs a third)")
    p.add_argument("--one-turns", type=int, default=200, help="turns of 1 delta (the original runs a fifth)")
    p.add_argument("--paced", type=int, default=2000, help="deltas per paced turn (0: skip phase C)")
    p.add_argument("--paced-ms", type=float, default=0.5, help="model delay between paced deltas")
    p.add_argument("--paced-turns", type=int, default=2)
    run_vs(p, main_async)


if __name__ == "__main__":
    main()
