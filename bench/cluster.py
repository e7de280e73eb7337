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
single-process server's for reference, a request's round trip
(``thread/read``) from a client on the owner and from one across the hop,
and the takeover time (kill -9 -> the client's ``thread/resume`` on B
answered). Then:

- ``--load``: throughput, turns/s and CPU per turn per process, with 1, 2
  and 3 nodes, each node's client driving ``--threads`` threads of its own
  at once, against the single process with the same per-process load;
- delta latency across a hop: a client on B following a thread of A, the
  first delta and turn/completed seen on B after they were seen on A's
  own client (both clients in this process, one clock);
- activation: node A shut down (its claims released), then B's
  ``thread/resume`` of A's thread (claim, epoch, history copied out of
  PostgreSQL);
- ``--list-threads N``: N listing rows written straight into PostgreSQL,
  then ``thread/list`` through a node (first page, a page deep in the
  list by cursor, a search), p50/p99 over 20 requests each.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

import trio

from benchlib import (AppClient, ScriptedProcess, TurnState, drive_threads, log_path, make_home, server_argv,
                      server_env, tree_cpu, workspace)


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


async def round_trips(client: AppClient, tid: str, n: int) -> list[float]:
    """Round trips (ms) of ``n`` ``thread/read`` requests for ``tid``."""
    times = []
    for _ in range(n):
        t0 = time.monotonic()
        await client.request("thread/read", {"threadId": tid})
        times.append((time.monotonic() - t0) * 1000)
    return times


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
            for who, client in (("A (local)", a), ("B (across the hop)", b)):
                rtt = await round_trips(client, tid, 100)
                print(f"  request round trip, client on {who:<18} thread/read p50 {statistics.median(rtt):5.2f} ms "
                      f"p99 {pct(rtt, 0.99):5.2f} ms")

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

            a = await node(nursery, scripted.base_url, "a2", cluster)
            await hop_latency(a, b, args.turns)
            tid = await a.thread_start()
            await a.turn(tid, "activated elsewhere next")
            await trio.sleep(0.5)
            await a.close()  # hands its threads off: claims released
            t0 = time.monotonic()
            await b.request("thread/resume", {"threadId": tid})
            print(f"  activation of a released thread        {(time.monotonic() - t0) * 1000:6.1f} ms "
                  "(claim, epoch, history from PostgreSQL, resume)")
            if args.list_threads:
                await listing(args, b)
            await b.close()
        if args.load:
            await load(args, scripted.base_url, cluster)


async def load(args: argparse.Namespace, base_url: str, cluster: dict[str, str]) -> None:
    """Turns/s with 1, 2, 3 nodes (each its own client and threads, all
    driven at once) against the single process with one node's load."""
    print(f"== load: {args.threads} threads per process x {args.turns} turns x {args.deltas} deltas")
    for n in (0, 1, 2, 3):
        async with trio.open_nursery() as nursery:
            env = cluster if n else {}
            nodes = [await node(nursery, base_url, f"load{n}-{i}", env) for i in range(max(1, n))]
            tids = [[await c.thread_start() for _ in range(args.threads)] for c in nodes]
            for c, ts in zip(nodes, tids):
                await c.turn(ts[0], "warm up")
            runs: list = [None] * len(nodes)

            async def drive(i: int) -> None:
                runs[i] = await drive_threads(nodes[i], tids[i], args.turns, args.deltas, "t{i}.{t}")

            w0 = time.monotonic()
            async with trio.open_nursery() as drivers:
                for i in range(len(nodes)):
                    drivers.start_soon(drive, i)
            wall = time.monotonic() - w0
            total = sum(len(r.records) for r in runs)
            problems = sum(len(r.problems) for r in runs)
            cpus = ", ".join(f"{r.cpu * 1000 / len(r.records):.1f}" for r in runs)
            name = f"{n} node{'s' if n > 1 else ''}" if n else "single process"
            print(f"  {name:<16} {total / wall:6.1f} turns/s  CPU/turn ms per process: {cpus}"
                  f"{f'  ({problems} bad turns)' if problems else ''}")
            for c in nodes:
                await c.close()


async def hop_latency(a: AppClient, b: AppClient, n: int) -> None:
    """A client on B follows a thread of A: how much later B sees the
    first delta and turn/completed than A's own client."""
    tid = await a.thread_start()
    await a.turn(tid, "warm up")
    await b.request("thread/resume", {"threadId": tid})
    first, done = [], []
    for i in range(n):
        follower = b.turns[tid] = TurnState(keep_text=False)
        st = await a.turn(tid, f"followed {i}", keep_text=False)
        with trio.fail_after(10):
            await follower.done.wait()
        assert st.first_delta is not None and follower.first_delta is not None and st.done_at is not None
        assert follower.done_at is not None
        first.append((follower.first_delta - st.first_delta) * 1000)
        done.append((follower.done_at - st.done_at) * 1000)
    print(f"  delta latency across the hop           first delta p50 {statistics.median(first):5.1f} ms "
          f"p99 {pct(first, 0.99):5.1f} ms; turn/completed p50 {statistics.median(done):5.1f} ms")


async def listing(args: argparse.Namespace, client: AppClient) -> None:
    """``thread/list`` through a node over ``--list-threads`` rows."""
    import psycopg

    from trio_codex.runtime.cluster.pg_store import open_pg_store

    await open_pg_store(args.store)  # the tables
    cwd = f"/bench/list-{uuid.uuid4().hex[:8]}"
    t0 = time.monotonic()

    def fill() -> None:
        start = int(time.time() * 1000) - args.list_threads * 1000
        with psycopg.connect(args.store) as conn, conn.cursor() as cur:
            with cur.copy("copy codex_thread_list (id, archived, created_at, updated_at, recency_at, model_provider, "
                          "cwd, source_kind, name, preview, meta) from stdin") as copy:
                for i in range(args.list_threads):
                    tid = str(uuid.uuid4())
                    at = start + i * 1000
                    meta = (f'{{"id":"{tid}","created_at":{at},"updated_at":{at},"recency_at":{at},'
                            f'"source":"vscode","model_provider":"mock","cwd":"{cwd}","preview":"bench thread {i}"}}')
                    copy.write_row((tid, False, at, at, at, "mock", cwd, "vscode", None, f"bench thread {i}", meta))
            # Rows loaded in bulk: statistics now, as autovacuum would make them soon (the
            # search picks its trigram by them; a node analyzes a table that has none itself).
            conn.execute("analyze codex_thread_list")
            conn.execute("analyze codex_title_grams")
    await trio.to_thread.run_sync(fill)
    print(f"== thread/list over {args.list_threads} threads in PostgreSQL (filled in {time.monotonic() - t0:.0f} s)")
    deep = None
    page = {"cwd": cwd, "limit": 25}
    cursor = None
    for _ in range(args.list_threads // 2 // 100):
        cursor = (await client.request("thread/list", {**page, "limit": 100, "cursor": cursor}))["nextCursor"]
    deep = cursor
    for name, params in (("first page (25)", page), ("page at the middle by cursor", {**page, "cursor": deep}),
                         ("search (trigram side table)", {**page, "searchTerm": "bench thread 17"}),
                         ("sorted by updated_at asc", {**page, "sortKey": "updated_at", "sortDirection": "asc"})):
        times = []
        for _ in range(20):
            t0 = time.monotonic()
            result = await client.request("thread/list", params)
            times.append((time.monotonic() - t0) * 1000)
        assert result["data"], name
        print(f"  {name:<34} p50 {statistics.median(times):6.1f} ms  p99 {pct(times, 0.99):6.1f} ms")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nats", required=True, help="nats://HOST:PORT of a nats-server with JetStream")
    p.add_argument("--store", required=True, help="postgresql://... for the ThreadStore")
    p.add_argument("--turns", type=int, default=20)
    p.add_argument("--deltas", type=int, default=100)
    p.add_argument("--lease-ttl", type=float, default=2.0)
    p.add_argument("--load", action="store_true", help="also turns/s with 1, 2, 3 nodes under concurrent load")
    p.add_argument("--threads", type=int, default=4, help="with --load: threads driven at once per process")
    p.add_argument("--list-threads", type=int, default=0, help="also thread/list over this many threads")
    trio.run(main, p.parse_args())
