"""Fuzzed frames at length, the long form of tests/conformance/test_fuzz.py:
N frames (default 100,000) for every method we serve, params generated from
the original's schema and mutated (tests/harness/fuzz.py: wrong types,
huge/negative numbers, bad cursors, NULs, deep nesting, invalid UTF-8, bad
ids, bytes that are not JSON), over stdio and websocket against the real
server, with a scratch CODEX_HOME and cwd. ``--unique`` templates are
generated (hypothesis is the slow part) and sent in turn, each time with a
fresh request id.

Prints per transport: frames/s, answers (results, errors by code), requests
left unanswered or answered twice, RSS after the warm-up and at the end, and
crashes (the server is restarted after one, and the run goes on). The
distinct -32603 messages are the bugs the barrier contained.

    /work/venv/bin/python bench/fuzz_frames.py [--frames 100000] [--unique 20000] [--transport both]
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from trio_codex.runtime.client import Client, ClientClosed
from trio_codex.runtime.kernel.stream import FrameStream
from trio_codex.transports.connect import connect_websocket
from trio_codex.transports.jsonl import JsonlStream

from benchlib import (
    PY,
    REPO,
    TIMEOUT,
    ScriptedProcess,
    log_path,
    make_home,
    parser,
    progress,
    server_env,
    workspace,
)

sys.path.insert(0, str(REPO / "tests"))
from harness.fuzz import Tally, drive, generate, rss_kb  # noqa: E402

#: Frames sent before the RSS baseline.
WARM_UP = 1000
#: Frames in flight: a window is sent, then its answers awaited.
WINDOW = 64
#: Longest wait for one window's answers before the server is checked.
WINDOW_TIMEOUT = 60.0


class Run:
    """One transport's figures."""

    def __init__(self) -> None:
        self.codes: Counter[str] = Counter()
        self.internal: Counter[str] = Counter()
        self.crashes = 0
        self.lost = 0
        self.doubles = 0
        self.sent = 0

    def received(self, tally: Tally, msg: dict[str, Any]) -> None:
        tally.received(msg)
        if "id" in msg and "method" not in msg:
            error = msg.get("error")
            self.codes["result" if error is None else str(error.get("code"))] += 1
            if error is not None and error.get("code") == -32603:
                self.internal[error.get("message", "")[:160]] += 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _follow(stream: FrameStream, run: Run, tally: Tally) -> Client:
    """The embedding API's Client over ``stream``, uninitialized: every
    frame the server sends is tallied through its tap, and the fuzzed
    frames go out through its unchecked ``send_frame``."""
    return Client(stream, tap=lambda frame: run.received(tally, json.loads(frame)))


async def stdio_session(argv: list[str], env: dict[str, str], run: Run, tally: Tally, nursery: trio.Nursery,
                        err: Any) -> tuple[trio.Process, Callable[[bytes], Awaitable[None]]]:
    proc = await trio.lowlevel.open_process(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                            env=env, cwd=str(workspace()))
    assert proc.stdout is not None and proc.stdin is not None
    client = _follow(JsonlStream(proc.stdout, proc.stdin, peer="fuzzed"), run, tally)
    nursery.start_soon(client.run)
    return proc, client.send_frame


async def ws_session(argv: list[str], env: dict[str, str], run: Run, tally: Tally, nursery: trio.Nursery,
                     err: Any) -> tuple[trio.Process, Callable[[bytes], Awaitable[None]]]:
    port = free_port()
    proc = await trio.lowlevel.open_process([*argv[:-2], "--listen", f"ws://127.0.0.1:{port}"],
                                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                            env=env, cwd=str(workspace()))

    async def follow(*, task_status: trio.TaskStatus[Callable[[bytes], Awaitable[None]]]) -> None:
        with trio.fail_after(TIMEOUT):
            while True:
                try:
                    await (await trio.open_tcp_stream("127.0.0.1", port)).aclose()
                    break
                except OSError:  # not listening yet
                    await trio.sleep(0.05)
        async with connect_websocket(f"ws://127.0.0.1:{port}/") as stream:
            client = _follow(stream, run, tally)
            task_status.started(client.send_frame)
            await client.run()

    return proc, await nursery.start(follow)


async def call(send: Callable[[bytes], Awaitable[None]], tally: Tally, rid: str, method: str, params: Any) -> Any:
    await send(json.dumps({"id": rid, "method": method, "params": params}).encode())
    with trio.fail_after(TIMEOUT):
        while rid not in tally.replies:
            await trio.sleep(0.005)
    return tally.replies[rid]


async def run_transport(transport: str, templates: list[bytes], frames: int, base_url: str) -> dict[str, Any]:
    argv = [PY, "-m", "trio_codex.runtime", "app-server", "--listen", "stdio://"]
    run, tally = Run(), Tally()
    open_session = stdio_session if transport == "stdio" else ws_session
    rss: list[int] = []
    start_wall = time.monotonic()
    sessions = 0
    with open(log_path(f"fuzz-frames-{transport}"), "wb") as err:
        while run.sent < frames:
            home = make_home(base_url, f"fuzz-{transport}")
            with open(home / "config.toml", "a") as config:
                config.write('sandbox_mode = "read-only"\n')
            async with trio.open_nursery() as nursery:
                # The frames come as fast as the server answers: the
                # per-connection rate limit (runtime/server/limits.py) is lifted so
                # that every frame reaches its handler.
                env = dict(server_env(home), TRIO_CODEX_REQUEST_RATE="1e9", TRIO_CODEX_REQUEST_BURST="1000000000")
                proc, send = await open_session(argv, env, run, tally, nursery, err)
                sessions += 1
                await call(send, tally, f"init{sessions}", "initialize",
                           {"clientInfo": {"name": "fuzz_frames", "version": "1"}})
                thread_id = (await call(send, tally, f"thread{sessions}", "thread/start", {}))["result"]["thread"]["id"]
                while run.sent < frames:
                    batch = [templates[(run.sent + i) % len(templates)]
                             for i in range(min(WINDOW, frames - run.sent))]
                    try:
                        await drive(send, tally, batch, thread_id, first_id=10_000 + run.sent, window=WINDOW,
                                    timeout=WINDOW_TIMEOUT)
                    except (trio.TooSlowError, ClientClosed):
                        pass
                    run.sent += len(batch)
                    if proc.poll() is not None or tally.owed:
                        if proc.poll() is not None:
                            run.crashes += 1
                        run.lost += len(tally.owed)
                        progress(f"  {transport}: server {'died' if proc.poll() is not None else 'stalled'} "
                                 f"after {run.sent} frames; {len(tally.owed)} requests unanswered")
                        tally.owed.clear()
                        break
                    if run.sent >= WARM_UP and not rss:
                        rss.append(rss_kb(proc.pid))
                    if run.sent % 10_000 < WINDOW:
                        progress(f"  {transport}: {run.sent} frames, {time.monotonic() - start_wall:.0f} s")
                if proc.poll() is None:
                    rss.append(rss_kb(proc.pid))
                    proc.kill()
                await proc.wait()
                nursery.cancel_scope.cancel()
    wall = time.monotonic() - start_wall
    run.doubles = len(tally.doubles())
    return {"transport": transport, "frames": run.sent, "wall": wall, "run": run,
            "rss_warm": rss[0] if rss else None, "rss_end": rss[-1] if len(rss) > 1 else None}


def report(result: dict[str, Any]) -> None:
    run: Run = result["run"]
    answers = sum(run.codes.values())
    print(f"\n{result['transport']}: {result['frames']} frames in {result['wall']:.0f} s "
          f"({result['frames'] / result['wall']:.0f} frames/s)")
    print(f"  answers: {answers} ({', '.join(f'{k}: {v}' for k, v in run.codes.most_common())})")
    print(f"  unanswered: {run.lost}, answered twice: {run.doubles}, crashes: {run.crashes}")
    print(f"  RSS after {WARM_UP} frames: {result['rss_warm']} KiB, at the end: {result['rss_end']} KiB")
    for message, n in run.internal.most_common(10):
        print(f"  -32603 x{n}: {message}")


async def main() -> None:
    p = parser(__doc__)
    p.add_argument("--frames", type=int, default=100_000)
    p.add_argument("--unique", type=int, default=20_000, help="frame templates to generate")
    p.add_argument("--transport", choices=["stdio", "ws", "both"], default="both")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    t0 = time.monotonic()
    templates = generate(min(args.unique, args.frames), seed_value=args.seed)
    progress(f"generated {len(templates)} frame templates in {time.monotonic() - t0:.0f} s")
    with ScriptedProcess() as scripted:
        for transport in (["stdio", "ws"] if args.transport == "both" else [args.transport]):
            report(await run_transport(transport, templates, args.frames, scripted.base_url))


if __name__ == "__main__":
    trio.run(main)
