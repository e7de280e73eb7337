"""Run the server (``trio-codex`` command line) under cProfile.

    /work/venv/bin/python bench/profile_server.py --out PROF [--from-start] -- app-server --listen stdio://

Profiling starts at SIGUSR1 (or at once with ``--from-start``); SIGUSR2
stops it and writes the stats to ``--out``, which are also written at exit
if still pending. bench/where_cpu.py and bench/tool_turn.py drive it; read the output with pstats.
Only the main thread (the trio loop) is profiled. The default clock is the
thread's CPU time (``--timer cpu``): blocking in epoll, or being preempted
inside a write that woke the client, costs nothing, so times add up to CPU.
"""

from __future__ import annotations

import argparse
import cProfile
import signal
import sys
import time


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--from-start", action="store_true")
    p.add_argument("--timer", choices=["cpu", "wall"], default="cpu",
                   help="cpu (default): this thread's CPU time, so time a call spends blocked or "
                        "preempted does not count; wall: cProfile's default clock")
    p.add_argument("server_args", nargs=argparse.REMAINDER)
    args = p.parse_args()
    server_args = args.server_args[1:] if args.server_args[:1] == ["--"] else args.server_args
    prof = cProfile.Profile(time.thread_time) if args.timer == "cpu" else cProfile.Profile()
    state = {"on": False, "dumped": False}

    def start(*_: object) -> None:
        if not state["on"]:
            state["on"] = True
            prof.enable()

    def stop(*_: object) -> None:
        if state["on"]:
            prof.disable()
            state["on"] = False
            prof.dump_stats(args.out)
            state["dumped"] = True

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    from trio_codex.runtime.cli import main as cli_main

    if args.from_start:
        start()
    try:
        cli_main(server_args)
    finally:
        if state["on"] or not state["dumped"]:
            prof.disable()
            prof.dump_stats(args.out)


if __name__ == "__main__":
    sys.exit(main())
