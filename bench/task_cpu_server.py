"""Run the server (``trio-codex`` command line) with its CPU counted per trio
task, to attribute a cost to one actor without comparing two noisy runs.

    /work/venv/bin/python bench/task_cpu_server.py --out SNAPSHOT.json -- app-server --listen stdio://

A trio Instrument reads the trio thread's CPU clock around every task step
and adds it, and the step, to the task's name. Each SIGUSR1 writes a snapshot to ``--out``
(written whole, then renamed): CPU per task name, the trio thread's and the
whole process's CPU (worker threads included) and how many analytics
facts were recorded, all in ns since start. The driver diffs two snapshots.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import sys
import time
from functools import partial

import trio


class TaskCpu(trio.abc.Instrument):
    """CPU of the trio thread (ns) and steps, per task name."""

    def __init__(self) -> None:
        self.ns: collections.Counter[str] = collections.Counter()
        self.steps: collections.Counter[str] = collections.Counter()
        self._start = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._start = time.thread_time_ns()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        self.ns[task.name] += time.thread_time_ns() - self._start
        self.steps[task.name] += 1


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("server_args", nargs=argparse.REMAINDER)
    args = p.parse_args()
    server_args = args.server_args[1:] if args.server_args[:1] == ["--"] else args.server_args

    from trio_codex.actors.analytics import facts as analytics_facts
    from trio_codex.runtime import cli

    tasks = TaskCpu()
    facts = [0]
    record = analytics_facts.Recorder.record

    def counted(self: analytics_facts.Recorder, fact: analytics_facts.Fact) -> None:
        if self.enabled:
            facts[0] += 1
        record(self, fact)

    analytics_facts.Recorder.record = counted  # type: ignore[method-assign]

    def snapshot(*_: object) -> None:
        data = {"tasks": dict(tasks.ns), "steps": dict(tasks.steps), "trio_thread_ns": time.thread_time_ns(),
                "process_ns": time.process_time_ns(), "facts": facts[0]}
        with open(args.out + ".tmp", "w") as f:
            json.dump(data, f)
        os.replace(args.out + ".tmp", args.out)

    signal.signal(signal.SIGUSR1, snapshot)
    # The CLI calls trio.run (imported lazily): hand it the instrument.
    trio.run = partial(trio.run, instruments=[tasks])
    cli.main(server_args)


if __name__ == "__main__":
    sys.exit(main())
