"""What does analytics cost? Three answers, from the narrowest to the widest:

* ``fact``: recording one fact on the calling task, analytics off and on
  (build + ``Recorder.record``), and the analytics actor's side of one
  turn (reduce its facts, encode its event), in-process;
* ``attribute``: a live server with analytics on (JSONL export) runs turns
  under bench/task_cpu_server.py, which counts the trio thread's CPU per
  task; analytics' share of a turn's CPU is its own tasks (the reducer, the
  exporters and their writes) plus the facts recorded times their cost
  (from ``fact``). No two runs compared, so the machine's noise does not enter;
* ``throughput``: turns/s and server CPU per turn, analytics on vs off,
  paired: each round starts fresh servers (on, off and a second off, the
  control) and alternates blocks of turns among them; the figure is the
  median of the per-round ratios, and the off/off control says how large a
  difference the machine's noise alone makes. Where the server is the
  bottleneck its turns/s is the inverse of its CPU per turn; wall-clock
  turns/s also moves with the driver and the scripted model sharing the
  machine, and is the noisier of the two.

    /work/venv/bin/python bench/analytics_overhead.py [--parts fact,attribute,throughput]
        [--turns 480] [--threads 4] [--deltas 100] [--rounds 12] [--blocks 8]
"""

from __future__ import annotations

import json
import os
import random
import signal
import statistics
import time
from contextlib import AsyncExitStack
from pathlib import Path

import msgspec
import trio

from benchlib import (
    BENCH_DIR,
    PY,
    RUN_ROOT,
    ScriptedProcess,
    app_server,
    drive_threads,
    make_home,
    parser,
)

from trio_codex.actors.analytics import facts
from trio_codex.actors.analytics.actor import ANALYTICS_CAPACITY
from trio_codex.actors.analytics.reducer import Reducer
from trio_codex.runtime.kernel.mailbox import DROP, open_mailbox

SERVER = ["-m", "trio_codex.runtime"]
LISTEN = ["app-server", "--listen", "stdio://"]


def analytics_args(events: Path | None) -> list[str]:
    """CLI overrides: analytics on, exporting to ``events``; off if None."""
    if events is None:
        return ["-c", "analytics.enabled=false"]
    return ["-c", "analytics.enabled=true", "-c", f'analytics.export_jsonl="{events}"']


# --- fact ---------------------------------------------------------------------------


def turn_facts(i: int) -> list[facts.Fact]:
    """What one ordinary turn records, as the server records it."""
    thread, turn = "thr-1", f"turn-{i}"
    usage = facts.TokenUsageBreakdown(total_tokens=30, input_tokens=20, cached_input_tokens=0,
                                      output_tokens=10, reasoning_output_tokens=0)
    return [
        facts.ClientRequest(connection_id=1, request_id=i, method="turn/start", thread_id=thread),
        facts.TurnStarted(thread_id=thread, turn_id=turn),
        facts.TurnResolvedConfig(thread_id=thread, turn_id=turn, model="m", approval_policy="on-request",
                                 sandbox="workspace-write"),
        facts.ClientResponse(connection_id=1, request_id=i, method="turn/start", thread_id=thread, turn_id=turn),
        facts.TurnTokenUsage(thread_id=thread, turn_id=turn, usage=usage),
        facts.TurnCompleted(thread_id=thread, turn_id=turn, status="completed", duration_ms=5, usage=usage),
    ]


def per_call_ns(fn, n: int = 200_000) -> float:
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter_ns() - t0) / n)
    return best


async def fact_costs() -> dict[str, float]:
    """ns per call, best of five runs."""
    mailbox, inbox = open_mailbox(ANALYTICS_CAPACITY, name="bench", default=DROP)
    on = facts.Recorder(mailbox)
    off = facts.DISABLED
    fact = turn_facts(1)[0]

    def build() -> None:
        facts.ClientRequest(connection_id=1, request_id=7, method="turn/start", thread_id="thr-1")

    def record_on() -> None:
        # A batch of 200 into an empty mailbox (the actor drains it between
        # batches, as it does between turns); the drain is not timed.
        for _ in range(200):
            on.record(fact)

    def timed_on() -> float:
        total = 0
        for _ in range(500):
            t0 = time.perf_counter_ns()
            record_on()
            total += time.perf_counter_ns() - t0
            inbox.drain_nowait(ANALYTICS_CAPACITY)
        return total / (500 * 200)

    reducer = Reducer()
    encoder = msgspec.json.Encoder()
    turns = [turn_facts(i) for i in range(2000)]

    def reduce_turns() -> float:
        buf = bytearray()
        t0 = time.perf_counter_ns()
        for turn in turns:
            for event in (e for f in turn for e in reducer.ingest(f)):
                encoder.encode_into(event, buf, -1)
                buf += b"\n"
        return (time.perf_counter_ns() - t0) / len(turns)

    return {
        "off: record": per_call_ns(lambda: off.record(fact)),
        "off: test .enabled": per_call_ns(lambda: off.enabled),
        "build a fact": per_call_ns(build),
        "on: record": min(timed_on() for _ in range(3)),
        "actor: reduce + encode one turn": min(reduce_turns() for _ in range(3)),
    }


# --- attribute ----------------------------------------------------------------------


async def snapshot(pid: int, out: Path) -> dict:
    out.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR1)
    with trio.fail_after(10):
        while not out.exists():
            await trio.sleep(0.01)
    return json.loads(out.read_text())


async def attribute(base_url: str, turns: int, threads: int, deltas: int, record_ns: float) -> dict:
    work = RUN_ROOT / "analytics-attribute"
    work.mkdir(parents=True, exist_ok=True)
    out = work / "snapshot.json"
    argv = [PY, str(BENCH_DIR / "task_cpu_server.py"), "--out", str(out), "--",
            *analytics_args(work / "events.jsonl"), *LISTEN]
    async with app_server(argv, make_home(base_url, "attribute")) as client:
        tids = [await client.thread_start() for _ in range(threads)]
        await drive_threads(client, tids, 3, deltas, "warm up {i} {t}")
        before = await snapshot(client.pid, out)
        run = await drive_threads(client, tids, turns // threads, deltas, "thread {i} turn {t}")
        await trio.sleep(0.2)  # the analytics actor's last batch window
        after = await snapshot(client.pid, out)
    n = len(run.records)
    tasks = {name: (ns - before["tasks"].get(name, 0)) / n / 1000 for name, ns in after["tasks"].items()}
    steps = {name: (k - before["steps"].get(name, 0)) / n for name, k in after["steps"].items()}
    trio_us = (after["trio_thread_ns"] - before["trio_thread_ns"]) / n / 1000
    process_us = (after["process_ns"] - before["process_ns"]) / n / 1000
    facts_per_turn = (after["facts"] - before["facts"]) / n
    actor_us = sum(us for name, us in tasks.items() if "analytics" in name.lower())
    return {
        "turns": n, "problems": run.problems, "process_us": process_us, "trio_us": trio_us,
        "workers_us": process_us - trio_us, "actor_us": actor_us, "facts": facts_per_turn,
        "record_us": facts_per_turn * record_ns / 1000,
        "analytics_tasks": {k: (v, steps[k]) for k, v in tasks.items() if "analytics" in k.lower()},
        "top_tasks": sorted(tasks.items(), key=lambda kv: -kv[1])[:6],
    }


# --- throughput ---------------------------------------------------------------------


async def throughput(base_url: str, rounds: int, blocks: int, turns: int, threads: int,
                     deltas: int) -> dict[str, dict[str, list[float]]]:
    """Per arm and round: turns/s and server CPU ms per turn."""
    arms = ("off", "on", "off2")
    out = {arm: {"tps": [], "cpu": []} for arm in arms}
    work = RUN_ROOT / "analytics-throughput"
    work.mkdir(parents=True, exist_ok=True)
    for r in range(rounds):
        async with AsyncExitStack() as stack:
            clients = {}
            for arm in random.sample(arms, len(arms)):  # start order is no bias either
                events = work / f"events-{r}.jsonl" if arm == "on" else None
                argv = [PY, *SERVER, *analytics_args(events), *LISTEN]
                client = await stack.enter_async_context(app_server(argv, make_home(base_url, f"tp-{arm}")))
                tids = [await client.thread_start() for _ in range(threads)]
                await drive_threads(client, tids, 2, deltas, "warm up {i} {t}")
                clients[arm] = (client, tids)
            wall = dict.fromkeys(arms, 0.0)
            cpu = dict.fromkeys(arms, 0.0)
            done = dict.fromkeys(arms, 0)
            order = list(arms)
            for _ in range(blocks):
                random.shuffle(order)
                for arm in order:
                    client, tids = clients[arm]
                    run = await drive_threads(client, tids, turns // threads // blocks, deltas, "t {i} {t}")
                    if run.problems:
                        raise RuntimeError(f"{arm}: {run.problems[:3]}")
                    wall[arm] += run.wall
                    cpu[arm] += run.cpu
                    done[arm] += len(run.records)
        for arm in arms:
            out[arm]["tps"].append(done[arm] / wall[arm])
            out[arm]["cpu"].append(cpu[arm] / done[arm] * 1000)
    return out


def ratios(a: list[float], b: list[float]) -> str:
    """The median of the per-round ratios, with a bootstrap 90 % interval."""
    rs = [x / y for x, y in zip(a, b)]
    medians = sorted(statistics.median(random.choices(rs, k=len(rs))) for _ in range(2000))
    return (f"median {statistics.median(rs):.3f} (90 % interval {medians[100]:.3f}-{medians[1899]:.3f};"
            f" rounds {min(rs):.3f}-{max(rs):.3f})")


async def main(args) -> None:
    parts = args.parts.split(",")
    costs = await fact_costs()
    if "fact" in parts:
        print("analytics per fact (ns, in-process, best of 5):")
        for name, ns in costs.items():
            print(f"  {name:34s} {ns:8.0f}")
    with ScriptedProcess() as model:
        if "attribute" in parts:
            fact_ns = costs["build a fact"] + costs["on: record"]
            a = await attribute(model.base_url, args.turns, args.threads, args.deltas, fact_ns)
            share = a["actor_us"] + a["record_us"]
            print(f"\nattributed per turn ({a['turns']} turns, {args.threads} threads, {args.deltas} deltas,"
                  f" analytics on; problems: {len(a['problems'])}):")
            print(f"  server CPU (process)          {a['process_us']:8.1f} us")
            print(f"    trio thread                 {a['trio_us']:8.1f} us")
            print(f"    worker threads              {a['workers_us']:8.1f} us")
            print(f"  analytics actor tasks         {a['actor_us']:8.1f} us")
            for name, (us, steps) in a["analytics_tasks"].items():
                print(f"    {'.'.join(name.rsplit('.', 2)[-2:]):26s}  {us:8.1f} us in {steps:.2f} steps")
            print(f"  facts built and recorded      {a['facts']:8.1f} x {fact_ns:.0f} ns = {a['record_us']:.1f} us")
            print(f"  analytics, all told           {share:8.1f} us = {share / a['process_us'] * 100:.2f} %"
                  " of the server's CPU per turn")
            print("  heaviest tasks (us/turn):", ", ".join(f"{k.rsplit('.', 2)[-2:]} {v:.0f}"
                                                        for k, v in a["top_tasks"]))
        if "throughput" in parts:
            t = await throughput(model.base_url, args.rounds, args.blocks, args.turns, args.threads, args.deltas)
            print(f"\nthroughput, {args.rounds} rounds of fresh servers x {args.blocks} blocks,"
                  f" {args.turns} turns per arm per round, {args.threads} threads, {args.deltas} deltas:")
            for arm in t:
                print(f"  {arm:5s} turns/s median {statistics.median(t[arm]['tps']):7.1f}   "
                      f"CPU/turn median {statistics.median(t[arm]['cpu']):.3f} ms")
            print(f"  on/off   turns/s {ratios(t['on']['tps'], t['off']['tps'])}; "
                  f"CPU/turn {ratios(t['on']['cpu'], t['off']['cpu'])}")
            print(f"  off2/off turns/s {ratios(t['off2']['tps'], t['off']['tps'])}; "
                  f"CPU/turn {ratios(t['off2']['cpu'], t['off']['cpu'])}  (control: noise alone)")


if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--parts", default="fact,attribute,throughput")
    p.add_argument("--turns", type=int, default=480)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--deltas", type=int, default=100)
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--blocks", type=int, default=8)
    trio.run(main, p.parse_args())
