"""Wake-ups per paced delta: trio task steps and CPU per task, per delta.

Question: how many times does the server wake a task for one paced delta
(one delta per network read), and what does each task's step cost? A step
count does not depend on the machine's load, so it compares two builds
where CPU figures drown in noise.

    .venv/bin/python bench/delta_steps.py
    .venv/bin/python bench/delta_steps.py --build before=/tmp/old --build after=/tmp/new --rounds 2

Each build runs under ``task_cpu_server.py`` (a trio Instrument counting
steps and the trio thread's CPU per task name), one turn of ``--deltas``
deltas ``--paced-ms`` apart after a warm-up turn, snapshots taken before
and after it. ``--build NAME=DIR`` runs the server with ``DIR`` first on
``PYTHONPATH`` (a ``git archive`` of another commit unpacked as
``DIR/trio_codex``); by default this checkout. Builds alternate round by
round. Printed per build: steps per delta, the CPU of those steps, of the
trio thread (the scheduler and epoll included) and of the process, and the
tasks that stepped.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
from pathlib import Path

import trio

from benchlib import PY, RUN_ROOT, ScriptedProcess, app_server, drive_threads, make_home

TASK_CPU = Path(__file__).with_name("task_cpu_server.py")


async def snapshot(pid: int, out: Path) -> dict:
    out.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR1)
    with trio.fail_after(10):
        while not out.exists():
            await trio.sleep(0.02)
    return json.loads(out.read_text())


async def measure(name: str, pythonpath: str | None, base_url: str, deltas: int, paced_ms: float) -> None:
    out = RUN_ROOT / f"steps-{name}.json"
    env = [] if pythonpath is None else ["env", f"PYTHONPATH={pythonpath}"]
    argv = [*env, PY, str(TASK_CPU), "--out", str(out), "--", "app-server", "--listen", "stdio://"]
    async with app_server(argv, make_home(base_url, f"steps-{name}"), log=f"steps-{name}") as client:
        await client.turn(await client.thread_start(), f"[[deltas=200 delay_ms={paced_ms}]] warm up")
        tid = await client.thread_start()
        a = await snapshot(client.pid, out)
        run = await drive_threads(client, [tid], 1, deltas, "paced {t}", paced_ms)
        b = await snapshot(client.pid, out)
    if run.problems:
        raise SystemExit(f"{name}: {run.problems}")
    steps = {k: (v - a["steps"].get(k, 0)) / deltas for k, v in b["steps"].items()}
    us = {k: (v - a["tasks"].get(k, 0)) / deltas / 1000 for k, v in b["tasks"].items()}
    thread = (b["trio_thread_ns"] - a["trio_thread_ns"]) / deltas / 1000
    process = (b["process_ns"] - a["process_ns"]) / deltas / 1000
    print(f"{name}: {sum(steps.values()):.2f} steps/delta, {sum(us.values()):.0f} us in them, "
          f"trio thread {thread:.0f} us, process {process:.0f} us")
    for task in sorted(steps, key=lambda k: -steps[k]):
        if steps[task] >= 0.05:
            print(f"  {steps[task]:5.2f} steps {us.get(task, 0):6.1f} us  {task}")


async def main(args: argparse.Namespace) -> None:
    builds = [tuple(b.split("=", 1)) for b in args.build] or [("this checkout", None)]
    with ScriptedProcess() as model:
        for _ in range(args.rounds):
            for name, pythonpath in builds:
                await measure(name, pythonpath, model.base_url, args.deltas, args.paced_ms)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--deltas", type=int, default=1000)
    p.add_argument("--paced-ms", type=float, default=0.5)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--build", action="append", default=[], metavar="NAME=DIR")
    trio.run(main, p.parse_args())
