"""Where does our server's CPU go, per turn and per delta?

    /work/venv/bin/python bench/where_cpu.py                       # cProfile (CPU clock), all scenarios
    /work/venv/bin/python bench/where_cpu.py --tool pyspy --scenario paced
    /work/venv/bin/python bench/where_cpu.py --scenario turns --top 30

Scenarios (after a warm-up, so imports and first-use costs are left out):

* ``turns``: 10 threads x 30 turns x 1 delta -> costs per turn;
* ``bursty``: 1 thread x 5 turns x 20,000 deltas as fast as the model
  sends them -> costs per delta when they arrive in bulk;
* ``paced``: 1 thread x 2 turns x 2,000 deltas 0.5 ms apart (as a real
  model streams: one delta per network read) -> costs per delta.

Tools:

* ``cprofile`` (read this first): the server runs under
  bench/profile_server.py with cProfile on the thread's CPU clock, switched
  on by signal for the workload only; prints tottime, cumulative time and
  call counts per unit. Times add up to CPU (blocking in epoll or being
  preempted in a write costs nothing), but cProfile inflates small
  functions about 2x, so compare shares, and read the call counts.
* ``pyspy``: py-spy (from /work/benchvenv, or $PYSPY) attaches to the
  running server for the workload only, sampling at ``--rate`` Hz; by
  default only stacks holding the GIL (Python running: syscalls that
  release it, like os.write, are left out); idle stacks (epoll wait, idle
  worker threads) are dropped. Samples are scaled to the /proc CPU. Prints
  self time by function and by file (package), and inclusive time of the
  heaviest functions, as us per unit (turn or delta) and share. py-spy's
  idle detection does not work in this container, and without ``--gil``
  a write that wakes the client counts its preemption as busy time.

The scripted model runs as its own process. Server CPU from /proc is printed
for scale (with py-spy attached it includes the sampling pauses).
"""

from __future__ import annotations

import argparse
import collections
import os
import pstats
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import trio

from benchlib import (
    BENCH_DIR,
    PY,
    REPO,
    RUN_ROOT,
    ScriptedProcess,
    app_server,
    drive_threads,
    gather_limited,
    make_home,
    parser,
)

SCENARIOS = {
    # name: (threads, turns, deltas, delay_ms, unit)
    "turns": (10, 30, 1, 0.0, "turn"),
    "bursty": (1, 5, 20000, 0.0, "delta"),
    "paced": (1, 2, 2000, 0.5, "delta"),
}


def pyspy_bin() -> str | None:
    for cand in (os.environ.get("PYSPY"), "/work/benchvenv/bin/py-spy", shutil.which("py-spy")):
        if cand and Path(cand).exists():
            return cand
    return None


async def run(scenario: str, tool: str, base_url: str, rate: int, gil: bool, timer: str) -> dict:
    threads, turns, deltas, delay_ms, unit = SCENARIOS[scenario]
    out_dir = RUN_ROOT / "profiles"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{scenario}-{tool}.{'raw' if tool == 'pyspy' else 'prof'}"
    out.unlink(missing_ok=True)
    server = [PY, "-m", "trio_codex.runtime", "app-server", "--listen", "stdio://"]
    if tool == "cprofile":
        server = [PY, str(BENCH_DIR / "profile_server.py"), "--out", str(out), "--timer", timer, "--",
                  "app-server", "--listen", "stdio://"]
    home = make_home(base_url, f"prof-{scenario}")
    spy = None
    try:
        async with app_server(server, home, log=f"profile-{scenario}") as client:
            tid = await client.thread_start()
            await client.turn(tid, "[[deltas=1]] warm up")
            await client.turn(tid, "[[deltas=2000]] warm up")
            await client.turn(tid, "[[deltas=50 delay_ms=0.5]] warm up")
            tids = await gather_limited([client.thread_start] * threads, 16)
            if tool == "pyspy":
                spy = subprocess.Popen([pyspy_bin(), "record", "--pid", str(client.pid), "--rate", str(rate),
                                        "--format", "raw", "--function", "--output", str(out),
                                        *(["--gil"] if gil else [])],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                await trio.sleep(1.0)  # let it attach
            else:
                os.kill(client.pid, signal.SIGUSR1)
                await trio.sleep(0.2)
            turns_run = await drive_threads(client, tids, turns, deltas, "profile thread {i} turn {t}", delay_ms)
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                await trio.to_thread.run_sync(spy.wait)
            else:
                os.kill(client.pid, signal.SIGUSR2)
                await trio.sleep(0.5)
    finally:
        if spy is not None and spy.poll() is None:
            spy.kill()
    units = threads * turns * (deltas if unit == "delta" else 1)
    return {"out": out, "units": units, "unit": unit, "cpu": turns_run.cpu, "wall": turns_run.wall, "problems": turns_run.problems,
            "spy_err": spy.stderr.read().decode(errors="replace")[-500:] if spy is not None else ""}


_IDLE_LEAVES = {("WorkerThread._work", "trio/_core/_thread_cache.py"),
                ("EpollIOManager.get_events", "trio/_core/_io_epoll.py")}
_FRAME = re.compile(r"^(?P<fn>.*) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")


def _short(path: str) -> str:
    for marker in ("site-packages/", f"{REPO}/", "lib/python3.11/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def _group(file: str) -> str:
    f = _short(file)
    if f.startswith(("actors/", "runtime/", "transports/")):
        return f
    top = f.split("/", 1)[0]
    if top.endswith(".py"):
        return "stdlib " + top
    return top + "/" if "/" in f else top


def report_pyspy(r: dict, top: int) -> None:
    idle = 0
    self_t: collections.Counter = collections.Counter()
    incl: collections.Counter = collections.Counter()
    files: collections.Counter = collections.Counter()
    total = 0
    for line in Path(r["out"]).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = stack.split(";")
        names = []
        for fr in frames:
            m = _FRAME.match(fr)
            if m:
                names.append((m["fn"], _short(m["file"]), m["line"] or ""))
            else:
                names.append((fr, "", ""))
        leaf = names[-1]
        if (leaf[0], leaf[1]) in _IDLE_LEAVES:
            idle += n  # blocked in epoll or an idle worker thread, seen as busy
            continue
        self_t[leaf] += n
        files[_group(leaf[1]) if leaf[1] else leaf[0]] += n
        total += n
        for name in set(names):
            incl[name] += n
    if not total:
        print("  (no samples)", r["spy_err"])
        return
    per = r["cpu"] / total  # CPU seconds per sample, calibrated on /proc
    u = r["unit"]

    def us(n: int) -> str:
        return f"{n * per / r['units'] * 1e6:9.2f}"

    print(f"  {total} samples ({idle} idle ones left out); {r['cpu']:.2f} s server CPU over {r['units']:,} {u}s "
          f"= {r['cpu'] / r['units'] * 1e6:.1f} us/{u}")
    print(f"  -- self time by file/package (us/{u}, share)")
    for name, n in files.most_common(top // 2):
        print(f"  {us(n)}  {n / total:6.1%}  {name}")
    print(f"  -- self time by function (us/{u}, share)")
    for (fn, file, line), n in self_t.most_common(top):
        print(f"  {us(n)}  {n / total:6.1%}  {file}:{line} {fn}")
    print(f"  -- inclusive time, our code and the heaviest library entry points (us/{u}, share)")
    shown = 0
    for (fn, file, line), n in incl.most_common():
        if n / total < 0.03:
            break
        if fn in ("<module>", "run", "main", "_run_module_as_main", "_run_code") or "trio/_core/_run.py" in file \
                and fn in ("unrolled_run", "run"):
            continue
        print(f"  {us(n)}  {n / total:6.1%}  {file}:{line} {fn}")
        shown += 1
        if shown >= top:
            break


#: The delta path's hops, each the cumulative CPU of the functions that do
#: its work (file suffix, function name), first match wins per hop.
HOPS = [
    ("HTTP client read (openai SDK: httpx2, httpcore2, h11, socket)", [("httpx2/_models.py", "aiter_bytes")]),
    ("SSE parse + event decode (runtime/protocol/responses.py)", [("runtime/protocol/responses.py", "feed")]),
    ("model stream, in the turn's task (actors/model/stream.py _read, minus the above and the next)",
     [("actors/model/stream.py", "_read")]),
    ("turn: events -> notifications -> subscribers' outboxes", [("actors/turn/events.py", "_events")]),
    ("mailbox waits (receive_batch: the outbox drain's, the turn's thread messages)",
     [("runtime/kernel/mailbox.py", "receive_batch")]),
    ("connection: outbox -> backlog (_drain)", [("actors/connection/writer.py", "_drain")]),
    ("connection: backlog -> frames -> pipe (_write_backlog)", [("actors/connection/writer.py", "_write_backlog")]),
    ("  of which the pipe write (trio send_all)", [("trio/_unix_pipes.py", "send_all")]),
    ("trio scheduler (unrolled_run self time, epoll)", [("trio/_core/_run.py", "unrolled_run"),
                                                         ("trio/_core/_io_epoll.py", "get_events")]),
]


def report_hops(stats: pstats.Stats, units: int, unit: str, total: float) -> None:
    """The delta path hop by hop (cumulative CPU, us per unit), from the
    profile; nested hops are subtracted where one contains another."""
    cum: dict[tuple[str, str], float] = {}
    self_t: dict[tuple[str, str], float] = {}
    for (file, _line, fn), (_cc, _nc, tt, ct, _callers) in stats.stats.items():
        for _name, keys in HOPS:
            for suffix, name in keys:
                if fn == name and file.endswith(suffix):
                    cum[(suffix, name)] = cum.get((suffix, name), 0.0) + ct
                    self_t[(suffix, name)] = self_t.get((suffix, name), 0.0) + tt

    def get(i: int) -> float:
        keys = HOPS[i][1]
        if HOPS[i][0].startswith("trio scheduler"):
            return self_t.get(keys[0], 0.0) + cum.get(keys[1], 0.0)
        return sum(cum.get(k, 0.0) for k in keys)

    values = [get(i) for i in range(len(HOPS))]
    # _read contains the HTTP read, the parse and the turn's handling of
    # each batch (the turn runs its model stream in its own task).
    values[2] -= values[0] + values[1] + values[3]
    print(f"  -- the delta path hop by hop: cumulative us/{unit} (profiled), share of the profiled CPU")
    for (name, _keys), v in zip(HOPS, values):
        print(f"  {v / units * 1e6:9.2f} {v / total:6.1%}  {name}")


def report_cprofile(r: dict, top: int) -> None:
    stats = pstats.Stats(str(r["out"]))
    rows = []
    groups: collections.Counter = collections.Counter()
    total_tt = 0.0
    for (file, line, fn), (cc, nc, tt, ct, _callers) in stats.stats.items():
        total_tt += tt
        name = f"{_short(file)}:{line} {fn}" if file != "~" else fn
        rows.append((tt, ct, nc, name, file))
        groups[_group(file) if file != "~" else "builtins (C: syscalls, msgspec, ...)"] += tt
    u = r["unit"]
    units = r["units"]
    print(f"  cProfile CPU total {total_tt:.2f} s (server CPU {r['cpu']:.2f} s from /proc, profiled) "
          f"over {units:,} {u}s = {total_tt / units * 1e6:.1f} us/{u} profiled")
    if u == "delta":
        report_hops(stats, units, u, total_tt)
    print(f"  -- self CPU by file/package (us/{u} profiled, share)")
    for name, tt in groups.most_common(top // 2):
        print(f"  {tt / units * 1e6:9.2f}  {tt / total_tt:6.1%}  {name}")
    print(f"  -- self CPU by function: us/{u} (profiled), share, calls/{u}, cumulative us/{u}")
    for tt, ct, nc, name, _ in sorted(rows, reverse=True)[:top]:
        print(f"  {tt / units * 1e6:9.2f} {tt / total_tt:6.1%} {nc / units:8.2f} {ct / units * 1e6:10.2f}  {name}")
    print(f"  -- cumulative CPU of our code: us/{u} (profiled), share, calls/{u}")
    ours = [x for x in rows if any(m in x[4] for m in (f"{REPO}/actors/", f"{REPO}/runtime/",
                                                        f"{REPO}/transports/"))]
    for tt, ct, nc, name, _ in sorted(ours, key=lambda x: -x[1])[:top]:
        print(f"  {ct / units * 1e6:9.2f} {ct / total_tt:6.1%} {nc / units:8.2f}  {name}")
    print(f"  -- most called: calls/{u}")
    for tt, ct, nc, name, _ in sorted(rows, key=lambda x: -x[2])[:top // 2]:
        print(f"  {nc / units:8.2f}  {name}")


async def main_async(args: argparse.Namespace) -> None:
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    with ScriptedProcess() as scripted:
        for name in names:
            threads, turns, deltas, delay_ms, unit = SCENARIOS[name]
            print(f"== {name}: {threads} thread(s) x {turns} turns x {deltas} deltas"
                  f"{f' {delay_ms} ms apart' if delay_ms else ''}, {args.tool} (per {unit})", flush=True)
            r = await run(name, args.tool, scripted.base_url, args.rate, not args.pyspy_wall, args.timer)
            if args.tool == "pyspy":
                report_pyspy(r, args.top)
            else:
                report_cprofile(r, args.top)
            for problem in r["problems"][:3]:
                print(f"  problem: {problem}")
            print(f"  raw profile: {r['out']}")


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--tool", choices=["pyspy", "cprofile"], default="cprofile")
    p.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--rate", type=int, default=1000, help="py-spy samples per second")
    p.add_argument("--pyspy-wall", action="store_true",
                   help="sample every non-idle stack, not only those holding the GIL (then time "
                        "blocked or preempted in a syscall counts too)")
    p.add_argument("--timer", choices=["cpu", "wall"], default="cpu", help="cProfile clock (see profile_server.py)")
    args = p.parse_args()
    if args.tool == "pyspy" and pyspy_bin() is None:
        sys.exit("py-spy not found: python3 -m venv /work/benchvenv && /work/benchvenv/bin/pip install py-spy "
                 "(or set $PYSPY), or use --tool cprofile")
    trio.run(main_async, args)


if __name__ == "__main__":
    main()
