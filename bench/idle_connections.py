"""N idle websocket sessions on one app server (issue 16): what each costs in
server memory, and whether all are still held after an idle wait.

The bench opens ``--connections`` (10,000) loopback websocket connections
to ``app-server --listen ws://127.0.0.1:PORT`` (ours, then the original), in
batches of ``--batch``; each is upgraded and sends ``initialize`` once, so it
is a real session. Then it waits ``--idle`` s (10) with every connection
answering pings (trio-websocket does) and reading what comes, and prints:
connections held (open on the bench side, sockets the server holds), the
server's VmRSS and PSS (/proc/PID/smaps_rollup) before the first connection
and after the wait, and the difference per connection.

Our server pings every ``TRIO_CODEX_KEEPALIVE_INTERVAL`` s and closes a
peer silent ``TRIO_CODEX_KEEPALIVE_TIMEOUT`` s after a ping; the bench sets
them to 4 s and 5 s, so a session still held after the 10 s wait has answered
at least one ping in time (at 2 s, 5,000 pings/s on 2 cores slowed opening
10,000 sessions to ~120 s and the bench's own loop missed a few deadlines;
at 10 s, opening took 22 s instead of 33 s). It also raises the
connection and half-open caps above N. Both processes get RLIMIT_NOFILE
raised to the hard limit; when that is too low for N the bench says so and
opens what fits.

    .venv/bin/python bench/idle_connections.py [--connections 10000] [--batch 250] [--idle 10] [--vs orig]
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import time
from typing import Any

import trio
import trio_websocket

from benchlib import (
    TIMEOUT,
    figure_rows,
    labels,
    log_path,
    make_home,
    parser,
    print_figures,
    print_problems,
    progress,
    run_vs,
    server_argv,
    server_env,
    servers,
    workspace,
)
from ws_load import free_port, listening

#: Our limits for the run (runtime/server/limits.py): caps above N, pings often enough
#: to be seen in the idle wait.
OUR_LIMITS = {
    "TRIO_CODEX_MAX_CONNECTIONS": "100000",
    "TRIO_CODEX_MAX_HALF_OPEN": "100000",
    "TRIO_CODEX_KEEPALIVE_INTERVAL": "4",
    "TRIO_CODEX_KEEPALIVE_TIMEOUT": "5",
}
#: File descriptors a process needs beside its connections.
SPARE_FDS = 64


def raise_nofile() -> int:
    """RLIMIT_NOFILE soft := hard in this process; returns it. Also the
    server's ``preexec_fn``, so the child starts with the same limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def memory(pid: int) -> tuple[int, int]:
    """(VmRSS, Pss) of one process in KiB."""
    rss = pss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
    return rss, pss


def socket_fds(pid: int) -> int:
    """How many sockets the process holds open (its connections and listeners)."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            continue
    return count


async def initialize(ws: trio_websocket.WebSocketConnection, attempts: int = 5) -> dict[str, Any]:
    """``initialize``, again after a pause while it is answered -32001 (the
    original's "Server overloaded; retry later." under a burst); the last answer."""
    for attempt in range(1, attempts + 1):
        await ws.send_message(json.dumps(
            {"id": attempt, "method": "initialize", "params": {"clientInfo": {"name": "idle", "version": "1"}}}))
        while "id" not in (answer := json.loads(await ws.get_message())):
            pass
        if answer.get("error", {}).get("code") != -32001:
            break
        await trio.sleep(0.2 * attempt)
    return answer


class Sessions:
    """The bench's side: counts of sessions opened, still open, and failures."""

    def __init__(self) -> None:
        self.opened = 0
        self.refused = 0
        self.open = 0
        self.problems: list[str] = []

    async def hold(self, url: str, n: int, ready: trio.Semaphore) -> None:
        """One session: connect, upgrade, ``initialize``, then read (and so
        answer pings) until cancelled or closed by the server. Releases
        ``ready`` once, when it is initialized or has failed."""
        released = False
        try:
            async with trio_websocket.open_websocket_url(
                    url, max_message_size=64 * 2**20, connect_timeout=TIMEOUT, disconnect_timeout=2) as ws:
                with trio.fail_after(TIMEOUT):
                    answer = await initialize(ws)
                if "error" in answer:
                    self.problems.append(f"connection {n}: initialize answered {answer['error']}")
                    self.refused += 1
                    return
                self.opened += 1
                self.open += 1
                ready.release()
                released = True
                try:
                    while True:
                        await ws.get_message()
                finally:
                    self.open -= 1
        except (OSError, trio.TooSlowError, trio_websocket.HandshakeError, trio_websocket.ConnectionClosed) as exc:
            self.problems.append(f"connection {n}: {type(exc).__name__}: {exc}")
        finally:
            if not released:
                ready.release()

async def run_one(spec: str, count: int, batch: int, idle: float) -> dict[str, Any]:
    port = free_port()
    argv = [*server_argv(spec)[:-2], "--listen", f"ws://127.0.0.1:{port}"]
    env = server_env(make_home("http://127.0.0.1:9/v1", "idle"))
    if spec == "ours":
        env.update(OUR_LIMITS)
    with open(log_path(f"idle-{spec}"), "wb") as err:
        proc = subprocess.Popen(argv, env=env, cwd=str(workspace()), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err, preexec_fn=raise_nofile)
    sessions = Sessions()
    try:
        await listening(port)
        await trio.sleep(1)  # let start-up allocations settle before the baseline
        rss0, pss0 = memory(proc.pid)
        url = f"ws://127.0.0.1:{port}/"
        t0 = time.monotonic()
        async with trio.open_nursery() as nursery:
            for start in range(0, count, batch):
                ready = trio.Semaphore(0)
                size = min(batch, count - start)
                for n in range(start, start + size):
                    nursery.start_soon(sessions.hold, url, n, ready)
                with trio.fail_after(TIMEOUT):
                    for _ in range(size):
                        await ready.acquire()
                if start // batch % 8 == 0:
                    progress(f"  {sessions.open} sessions open")
            open_s = time.monotonic() - t0
            progress(f"  {sessions.open} sessions open in {open_s:.1f} s; idle {idle} s")
            await trio.sleep(idle)
            held = sessions.open
            server_sockets = socket_fds(proc.pid) - 1  # the listener
            rss1, pss1 = memory(proc.pid)
            nursery.cancel_scope.cancel()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    per = max(held, 1)
    return {"asked": count, "opened": sessions.opened, "refused": sessions.refused, "held": held, "server_sockets": server_sockets,
            "open_s": open_s, "rss0": rss0 / 1024, "rss1": rss1 / 1024, "pss0": pss0 / 1024, "pss1": pss1 / 1024,
            "rss_per": (rss1 - rss0) / per, "pss_per": (pss1 - pss0) / per, "problems": sessions.problems}


async def main(args: Any) -> None:
    hard = raise_nofile()
    count = args.connections
    if count + SPARE_FDS > hard:
        count = hard - SPARE_FDS
        progress(f"RLIMIT_NOFILE hard limit is {hard}: opening {count} connections, not {args.connections}")
    specs = servers(args)
    results = []
    for spec in specs:
        progress(f"{spec}: {count} idle websocket sessions, batches of {args.batch}")
        results.append(await run_one(spec, count, args.batch, args.idle))
    print(f"idle websocket sessions: {count} asked, {args.idle:g} s idle wait")
    print_figures(figure_rows(results, [
        ("opened", "sessions opened (initialize answered)", ".0f"),
        ("refused", "initialize refused after 5 tries", ".0f"),
        ("held", f"sessions held after {args.idle:g} s idle", ".0f"),
        ("server_sockets", "sockets the server holds then (less its listener)", ".0f"),
        ("open_s", "time to open them all (s)", ".1f"),
        ("rss0", "server RSS before (MB)", ".1f"), ("rss1", "server RSS after (MB)", ".1f"),
        ("pss0", "server PSS before (MB)", ".1f"), ("pss1", "server PSS after (MB)", ".1f"),
        ("rss_per", "RSS per session (KB)", ".1f"), ("pss_per", "PSS per session (KB)", ".1f"),
    ]), labels(specs))
    print_problems(labels(specs), [r["problems"] for r in results])


if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--connections", type=int, default=10_000)
    p.add_argument("--batch", type=int, default=250)
    p.add_argument("--idle", type=float, default=10.0)
    run_vs(p, main)
