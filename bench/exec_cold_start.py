"""``exec`` cold start: what one short turn costs a caller that starts a
process per turn, as ``@openai/codex-sdk`` does.

Question: from spawn, how long until exec's first event, until the reply
(JSONL has no deltas: the ``agent_message`` item is the first the caller
sees of the model's text), and until exit, ours next to the original's?

    /work/venv/bin/python bench/exec_cold_start.py                  # ours and the original
    /work/venv/bin/python bench/exec_cold_start.py --runs 15 --vs none

Three columns: ``ours`` (the server in-process, the default), ``daemon``
(ours again, with ``trio-codex app-server --listen unix://`` already running
on that CODEX_HOME's control socket, which exec then uses) and ``orig``.
Each gets one CODEX_HOME (as a user's) and a warm-up run that is not
counted; then ``--runs`` rounds alternate them, each round running
``exec --json --skip-git-repo-check PROMPT`` (a new thread, the SDK's first
turn) and ``exec --json --skip-git-repo-check resume ID PROMPT`` (its next
turn). Figures are medians (and minimums) in ms. The model is the scripted
Responses server in its own process, one delta per reply.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from functools import partial
from pathlib import Path

import trio

from benchlib import (
    ScriptedProcess,
    _orig_bin,
    _ours_bin,
    figure_row,
    make_home,
    orig_available,
    parser,
    print_figures,
    progress,
    server_env,
    workspace,
)

TIMEOUT = 60.0
PROMPT = "[[deltas=1]] hello"


async def one_run(program: str, home: Path, *args: str) -> dict:
    """One exec run: spawn -> thread.started, -> agent_message, -> exit (ms)."""
    out: dict = {}
    argv = [program, "exec", "--json", "--skip-git-repo-check", *args]
    with trio.fail_after(TIMEOUT):
        spawned = time.monotonic()
        proc = await trio.lowlevel.open_process(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                                stderr=subprocess.DEVNULL, env=server_env(home),
                                                cwd=str(workspace()))
        assert proc.stdout is not None
        buf = b""
        async for chunk in proc.stdout:
            buf += chunk
            *lines, buf = buf.split(b"\n")
            now = (time.monotonic() - spawned) * 1000
            for line in lines:
                event = json.loads(line)
                if event["type"] == "thread.started":
                    out.setdefault("started_ms", now)
                    out["thread_id"] = event["thread_id"]
                elif event["type"] == "item.completed" and event["item"]["type"] == "agent_message":
                    out.setdefault("reply_ms", now)
        code = await proc.wait()
        out["exit_ms"] = (time.monotonic() - spawned) * 1000
    if code != 0 or "reply_ms" not in out:
        raise RuntimeError(f"{argv[0]} exec failed (exit {code})")
    return out


async def daemon(home: Path, *, task_status: trio.TaskStatus[None]) -> None:
    """``app-server --listen unix://`` on ``home``'s control socket, until cancelled."""
    socket = home / "app-server-control" / "app-server-control.sock"
    async with trio.open_nursery() as nursery:
        proc = await nursery.start(partial(trio.run_process, [_ours_bin(), "app-server", "--listen", "unix://"],
                                           env=server_env(home), stderr=subprocess.DEVNULL, check=False))
        with trio.fail_after(TIMEOUT):
            while not socket.exists():
                await trio.sleep(0.05)
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            proc.terminate()


async def main_async(args: argparse.Namespace) -> None:
    programs = {"ours": _ours_bin(), "daemon": _ours_bin()}
    if args.vs != "none":
        programs["orig"] = _orig_bin()
    results: dict[str, dict[str, list[float]]] = {name: {} for name in programs}
    with ScriptedProcess() as scripted:
        homes = {name: make_home(scripted.base_url, f"exec-{name}") for name in programs}
        async with trio.open_nursery() as nursery:
            await nursery.start(daemon, homes["daemon"])
            threads = {}
            for name, program in programs.items():
                threads[name] = (await one_run(program, homes[name], PROMPT))["thread_id"]  # warm-up
            for i in range(args.runs):
                progress(f"round {i + 1}/{args.runs}")
                for name, program in programs.items():
                    for kind, extra in (("new", ()), ("resume", ("resume", threads[name]))):
                        run = await one_run(program, homes[name], *extra, PROMPT)
                        for key in ("started_ms", "reply_ms", "exit_ms"):
                            results[name].setdefault(f"{kind}_{key}", []).append(run[key])
            nursery.cancel_scope.cancel()
    rows = []
    for kind, title in (("new", "new thread"), ("resume", "exec resume ID")):
        for key, what in (("started_ms", "spawn -> thread.started"), ("reply_ms", "spawn -> reply (agent_message)"),
                          ("exit_ms", "spawn -> exit (whole run)")):
            values = [results[name][f"{kind}_{key}"] for name in programs]
            rows.append(figure_row(f"{title}: {what}, median ms", [statistics.median(v) for v in values], ".0f"))
            rows.append(figure_row("  min ms", [min(v) for v in values], ".0f"))
    print(f"== exec cold start ({args.runs} runs each, --json, one short turn)")
    print_figures(rows, list(programs))


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--runs", type=int, default=9)
    p.add_argument("--vs", default="orig", help="orig (default) or none")
    args = p.parse_args()
    if args.vs == "orig" and not orig_available():
        print("the original is not installed here; running ours only")
        args.vs = "none"
    trio.run(main_async, args)


if __name__ == "__main__":
    main()
