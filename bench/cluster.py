"""Cluster benchmark: what a cross-node hop costs, and how long a takeover takes.

Question: a client on node B driving a thread owned by node A (through the
tunnel, runtime/cluster/tunnel.py) against the same client on node A; the
CPU each node spends per turn; and after ``kill -9`` of the owner, how long
until node B answers for the thread (lease TTL included).

    nats-server -a 127.0.0.1 -p 4222 -js -sd /tmp/nats &
    /work/venv/bin/python bench/cluster.py --nats nats://127.0.0.1:4222 \\
        --store postgresql://codex@127.0.0.1:5432/postgres [--turns 20 --deltas 100 --lease-ttl 2]

Figures: turn latency p50/p99 (turn/start sent -> turn/completed read),
server CPU per turn per node process (/proc, utime+stime of its tree), the
single-process server's for reference, and the takeover time (kill -9 ->
the client's ``thread/resume`` on B answered).
"""

from __future__ import annotations

import argparse
import statistics
import time

import trio

from benchlib import AppClient, ScriptedProcess, log_path, make_home, server_argv, server_env, tree_cpu, workspace


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def node(nursery: trio.Nursery, base_url: str, tag: str, cluster: dict[str, str]) -> AppClient:
    client = AppClient(server_argv("ours"), {**server_env(make_home(base_url, tag)), **cluster}, workspace(),
                       stderr_path=log_path(f"cluster-{tag}"))
    await client.start(nursery)
    await client.initialize()
    return client


async def turns(client: AppClient, tid: str, n: int, cpu_of: list[AppClient]) -> tuple[list[float], list[float]]:
    """Latencies (ms) of ``n`` turns, and the CPU (ms per turn) of each of ``cpu_of``."""
    assert all(c.proc is not None for c in cpu_of)
    before = [tree_cpu(c.proc.pid) for c in cpu_of]  # type: ignore[union-attr]
    lat = []
    for i in range(n):
        st = await client.turn(tid, f"turn {i}", keep_text=False)
        assert st.done_at is not None
        lat.append((st.done_at - st.sent) * 1000)
    after = [tree_cpu(c.proc.pid) for c in cpu_of]  # type: ignore[union-attr]
    return lat, [(a - b) * 1000 / n for a, b in zip(after, before)]


def row(name: str, lat: list[float], cpu: list[float], who: list[str]) -> None:
    cpus = ", ".join(f"{w} {c:.1f}" for w, c in zip(who, cpu))
    print(f"  {name:<34} p50 {statistics.median(lat):6.1f} ms  p99 {pct(lat, 0.99):6.1f} ms  CPU/turn ms: {cpus}")


async def main(args: argparse.Namespace) -> None:
    cluster = {"TRIO_CODEX_CLUSTER": args.nats, "TRIO_CODEX_STORE": args.store,
               "TRIO_CODEX_LEASE_TTL": str(args.lease_ttl)}
    with ScriptedProcess(deltas=args.deltas) as scripted:
        async with trio.open_nursery() as nursery:
            single = await node(nursery, scripted.base_url, "single", {})
            tid = await single.thread_start()
            await single.turn(tid, "warm up")
            lat, cpu = await turns(single, tid, args.turns, [single])
            print(f"== {args.turns} turns x {args.deltas} deltas, lease TTL {args.lease_ttl} s")
            row("single process (no cluster)", lat, cpu, ["server"])
            await single.close()

            a = await node(nursery, scripted.base_url, "a", cluster)
            b = await node(nursery, scripted.base_url, "b", cluster)
            tid = await a.thread_start()
            await a.turn(tid, "warm up")
            lat, cpu = await turns(a, tid, args.turns, [a, b])
            row("client on A, thread on A", lat, cpu, ["A", "B"])
            await a.request("thread/unsubscribe", {"threadId": tid})

            t0 = time.monotonic()
            await b.request("thread/resume", {"threadId": tid})
            resume_ms = (time.monotonic() - t0) * 1000
            lat, cpu = await turns(b, tid, args.turns, [a, b])
            row("client on B, thread on A (hop)", lat, cpu, ["A", "B"])
            print(f"  first resume through a new tunnel      {resume_ms:6.1f} ms")

            # Node B's own model client warmed up (the SDK import), so the
            # turns after the takeover measure the takeover, not the import.
            await b.turn(await b.thread_start(), "warm up B")
            await trio.sleep(0.5)  # the owner's mirror catches up (100 ms period)
            assert a.proc is not None
            t0 = time.monotonic()
            a.proc.kill()
            await b.request("thread/resume", {"threadId": tid})
            print(f"  takeover after kill -9 of the owner    {(time.monotonic() - t0) * 1000:6.0f} ms "
                  f"(lease TTL {args.lease_ttl} s)")
            lat, cpu = await turns(b, tid, max(1, args.turns // 2), [b])
            row("client on B, thread taken over", lat, cpu, ["B"])
            await b.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nats", required=True, help="nats://HOST:PORT of a nats-server with JetStream")
    p.add_argument("--store", required=True, help="postgresql://... for the ThreadStore")
    p.add_argument("--turns", type=int, default=20)
    p.add_argument("--deltas", type=int, default=100)
    p.add_argument("--lease-ttl", type=float, default=2.0)
    trio.run(main, p.parse_args())
