"""Shared machinery for the bench/ scripts (not a test module; run the
scripts by path, e.g. ``/work/venv/bin/python bench/load.py``).

* :func:`server_argv` names a server: ``ours`` (this repo's ``trio-codex``),
  ``orig`` (the original codex-cli native binary) or any command line.
* :class:`ScriptedProcess` runs the scripted Responses server as its own
  process, so that its CPU is not counted against the app server.
* :func:`make_home` writes a fresh CODEX_HOME (outside /tmp) pointing at it.
* :class:`AppClient` drives an app server over its stdio pipes through the
  embedding API's ``Client``, routing notifications by thread id (each bench
  thread has at most one turn in flight).
* :func:`app_server` starts one, initializes it and closes it at the end;
  :func:`drive_threads` runs checked turns on several threads at once.
* :func:`tree_cpu` / :func:`tree_mem` read the server's process tree from
  /proc (utime+stime+cutime+cstime, VmRSS, VmHWM).
* :func:`server_args` / :func:`servers` are the ``--server-cmd`` / ``--vs``
  options (:func:`run_vs` parses them and runs a script's trio main); :func:`figure_rows` / :func:`print_figures` print one column per
  server and their ratio.
"""

from __future__ import annotations

import argparse
import atexit
import itertools
import math
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import trio

from trio_codex.runtime.client import Client, ClientClosed, CodexError, ServerRequest
from trio_codex.transports.connect import EXIT_TIMEOUT, spawn_stdio

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
PY = sys.executable
VENV_BIN = Path(PY).parent
RUN_ROOT = Path(os.environ.get("BENCH_RUN_DIR", "/work/benchrun"))
ORIG_NATIVE = Path("/work/orig/node_modules/@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex")
ORIG_NODE = Path("/work/orig/node_modules/.bin/codex")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

#: Bound on any single wait in the bench.
TIMEOUT = 120.0


def _ours_bin() -> str:
    cand = VENV_BIN / "trio-codex"
    return str(cand) if cand.exists() else "/work/venv/bin/trio-codex"


def _orig_bin() -> str:
    # The native binary: the npm bin is a node launcher that would add
    # node's own start-up, CPU and RSS to the original's figures.
    return str(ORIG_NATIVE if ORIG_NATIVE.exists() else ORIG_NODE)


ALIASES = {
    "ours": lambda: [_ours_bin(), "app-server", "--listen", "stdio://"],
    "orig": lambda: [_orig_bin(), "app-server", "--listen", "stdio://"],
}


def server_argv(spec: str) -> list[str]:
    """``ours``, ``orig`` or a shell-quoted command line."""
    if spec in ALIASES:
        return ALIASES[spec]()
    return shlex.split(spec)


def label(spec: str) -> str:
    """A short column name: the alias, or the command's file name."""
    if spec in ALIASES:
        return spec
    argv = shlex.split(spec)
    return Path(argv[0]).name[:16] if argv else "other"


def labels(specs: list[str]) -> list[str]:
    """Column names for several servers, numbered when they clash."""
    names = [label(s) for s in specs]
    return [f"{n}#{i + 1}" if names.count(n) > 1 else n for i, n in enumerate(names)]


def orig_available() -> bool:
    return ORIG_NATIVE.exists() or ORIG_NODE.exists()


# --- command line ---------------------------------------------------------------------


def parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser whose help is the script's docstring."""
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def server_args(p: argparse.ArgumentParser) -> None:
    """``--server-cmd`` (default ours) and ``--vs`` (default orig)."""
    p.add_argument("--server-cmd", default="ours", help="ours (default), orig, or a command line")
    p.add_argument("--vs", default="orig", help="second server (default orig; 'none' to skip)")


def without_missing_orig(args: argparse.Namespace) -> None:
    """Drop ``--vs orig`` (with a note) when the original is not installed."""
    if "orig" in (args.vs, args.server_cmd) and not orig_available():
        print("the original is not installed here; running ours only", file=sys.stderr)
        args.vs = "none"


def run_vs(p: argparse.ArgumentParser, main_async: Any) -> None:
    """Add :func:`server_args` to ``p``, parse, and run ``main_async(args)``
    under trio (without the original when it is not installed)."""
    server_args(p)
    args = p.parse_args()
    without_missing_orig(args)
    trio.run(main_async, args)


def servers(args: argparse.Namespace) -> list[str]:
    """``--server-cmd``, then ``--vs`` unless it is ``none``."""
    return [args.server_cmd] + ([args.vs] if args.vs != "none" else [])


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- the scripted model ------------------------------------------------------------


class ScriptedProcess:
    """``python -m trio_codex.transports.scripted_responses --port 0`` as a
    child process; stops when its stdin closes."""

    def __init__(self, deltas: int = 1) -> None:
        self.proc = subprocess.Popen(
            [PY, "-m", "trio_codex.transports.scripted_responses", "--port", "0", "--deltas", str(deltas)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=str(RUN_ROOT))
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode().strip()
        if not line.startswith("LISTENING "):
            self.close()
            raise RuntimeError(f"scripted server did not start: {line!r}")
        self.base_url = line.split(" ", 1)[1]

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> ScriptedProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_homes = itertools.count()
_made_homes: list[Path] = []


@atexit.register
def _remove_homes() -> None:
    """CODEX_HOMEs (sessions, sqlite, logs of the original) go at exit,
    unless BENCH_KEEP_HOMES=1."""
    if os.environ.get("BENCH_KEEP_HOMES") != "1":
        for home in _made_homes:
            shutil.rmtree(home, ignore_errors=True)


def make_home(base_url: str, tag: str) -> Path:
    """A fresh CODEX_HOME under RUN_ROOT with the mock provider config."""
    home = RUN_ROOT / "homes" / f"{tag}-{os.getpid()}-{next(_homes)}"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    _made_homes.append(home)
    (home / "config.toml").write_text(
        'model = "mock-model"\n'
        'model_provider = "mock"\n\n'
        "[model_providers.mock]\n"
        'name = "Mock"\n'
        f'base_url = "{base_url}"\n'
        'wire_api = "responses"\n'
        "request_max_retries = 0\n"
        "stream_max_retries = 0\n")
    return home


def server_env(home: Path) -> dict[str, str]:
    """A minimal environment: an empty HOME (the original runs a login shell
    per thread otherwise), the fresh CODEX_HOME, no API key."""
    bhome = RUN_ROOT / "bhome"
    bhome.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(bhome),
        "CODEX_HOME": str(home),
        "LANG": "C.UTF-8",
    }
    for keep in ("PYTHONPATH", "TRIO_CODEX_LOG", "RUST_LOG", "PYTHONPROFILEIMPORTTIME"):
        if keep in os.environ:
            env[keep] = os.environ[keep]
    return env


def workspace() -> Path:
    ws = RUN_ROOT / "ws"
    ws.mkdir(parents=True, exist_ok=True)
    return ws


def log_path(name: str) -> Path:
    """RUN_ROOT/logs/``name``.stderr, the directory made."""
    logs = RUN_ROOT / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    return logs / f"{name}.stderr"


# --- /proc --------------------------------------------------------------------------


def proc_stat(pid: int | str) -> list[bytes] | None:
    """/proc/PID/stat from field 3 (state) on; None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(b")") + 2:].split()


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = proc_stat(entry.name)
        if fields is not None:
            kids.setdefault(int(fields[1]), []).append(int(entry.name))
    return kids


def tree_pids(root: int) -> list[int]:
    kids = _children_map()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, ()))
    return out


def _tree_ticks(root: int) -> tuple[int, int]:
    """Clock ticks of ``root`` itself, and of everything below it (live
    descendants and reaped children)."""
    own = rest = 0
    for pid in tree_pids(root):
        fields = proc_stat(pid)
        if fields is None:
            continue
        # fields[0] is field 3 (state): utime=14, stime=15, cutime=16, cstime=17
        ut, st, cut, cst = (int(x) for x in fields[11:15])
        if pid == root:
            own += ut + st
            rest += cut + cst
        else:
            rest += ut + st + cut + cst
    return own, rest


def tree_cpu(root: int) -> float:
    """CPU seconds (user+system, including reaped children) of a process tree."""
    return sum(_tree_ticks(root)) / CLK_TCK


def tree_cpu_split(root: int) -> tuple[float, float]:
    """(CPU seconds of ``root`` itself, of everything below it: live
    descendants and reaped children), from /proc."""
    own, rest = _tree_ticks(root)
    return own / CLK_TCK, rest / CLK_TCK


def tree_mem(root: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB, summed over the process tree."""
    rss = hwm = 0
    for pid in tree_pids(root):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
                    elif line.startswith("VmHWM:"):
                        hwm += int(line.split()[1])
        except OSError:
            continue
    return rss, hwm


# --- the client ----------------------------------------------------------------------


@dataclass
class TurnState:
    """The turn a bench thread has in flight, and what came back."""

    sent: float = 0.0
    first_delta: float | None = None
    done_at: float | None = None
    deltas: int = 0
    parts: list[str] = field(default_factory=list)
    keep_text: bool = True
    final_text: str | None = None
    status: str | None = None
    error: Any = None
    done: trio.Event = field(default_factory=trio.Event)


class RpcFailed(Exception):
    pass


_decode = msgspec.json.decode


class AppClient:
    """One app-server process driven over stdio through the embedding API's
    :class:`~trio_codex.runtime.client.Client` (its stdio transport, request
    matching and server-request callback); the bench's bookkeeping (deltas,
    first-delta and completion times) reads every frame through the
    Client's ``tap``, timed as it arrives."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path, stderr_path: Path | None = None) -> None:
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.stderr_path = stderr_path
        self.proc: trio.Process | None = None
        self.client: Client | None = None
        self.spawned_at = 0.0
        self.turns: dict[str, TurnState] = {}
        self.unexpected: list[dict] = []
        self.lines = 0
        self.eof = trio.Event()
        #: Called as ``observer(msg, t)`` for every message but deltas
        #: (t: time.monotonic() when it was read), before routing.
        self.observer: Any = None
        self._session = trio.CancelScope()
        self._ended = trio.Event()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, nursery: trio.Nursery) -> None:
        self.spawned_at = time.monotonic()
        await nursery.start(self._run)

    async def _run(self, *, task_status: trio.TaskStatus[None]) -> None:
        err = open(self.stderr_path, "wb") if self.stderr_path else None
        try:
            # The Client's own bound is lifted: each wait here has its own (``timeout``).
            async with spawn_stdio(self.argv, env=self.env, cwd=self.cwd,
                                   stderr=err.fileno() if err else subprocess.DEVNULL) as stream:
                self.proc = stream.process
                self.client = Client(stream, typed=False, tap=self._tap, on_request=self._decline,
                                     request_timeout=math.inf)
                task_status.started()
                with self._session:
                    await self.client.run()
                self.eof.set()
                for st in self.turns.values():
                    st.done.set()
        finally:
            if err is not None:
                err.close()
            self._ended.set()

    def _tap(self, line: bytes) -> None:
        now = time.monotonic()
        self.lines += 1
        msg = _decode(line)
        method = msg.get("method")
        if method == "item/agentMessage/delta":
            p = msg["params"]
            st = self.turns.get(p["threadId"])
            if st is not None:
                if st.first_delta is None:
                    st.first_delta = now
                st.deltas += 1
                if st.keep_text:
                    st.parts.append(p["delta"])
            return
        if self.observer is not None:
            self.observer(msg, now)
        if method == "turn/completed":
            p = msg["params"]
            st = self.turns.get(p["threadId"])
            if st is not None and st.done_at is None:
                st.done_at = now
                st.status = p["turn"].get("status")
                st.error = p["turn"].get("error")
                st.done.set()
        elif method == "item/completed":
            p = msg["params"]
            item = p.get("item") or {}
            st = self.turns.get(p.get("threadId"))
            if st is not None and item.get("type") == "agentMessage":
                st.final_text = item.get("text")

    async def _decline(self, request: ServerRequest) -> None:
        """A server request (approval etc.): declined and noted."""
        self.unexpected.append({"id": request.id, "method": request.method, "params": request.params})
        await request.reject("bench declines", -32601)

    async def send(self, msg: dict) -> None:
        assert self.client is not None
        await self.client.send(msg)

    async def request(self, method: str, params: Any = None, timeout: float = TIMEOUT) -> Any:
        assert self.client is not None
        with trio.fail_after(timeout):
            try:
                return await self.client.request(method, params)
            except ClientClosed:
                raise RpcFailed(f"{method}: server closed its stdout") from None
            except CodexError as exc:
                raise RpcFailed(f"{method}: {exc}") from None

    async def initialize(self) -> Any:
        result = await self.request("initialize", {
            "clientInfo": {"name": "trio_codex_bench", "title": "bench", "version": "1.0"},
            "capabilities": {"experimentalApi": True}})
        await self.send({"method": "initialized"})
        return result

    async def thread_start(self) -> str:
        result = await self.request("thread/start", {"cwd": str(self.cwd)})
        return result["thread"]["id"]

    async def turn(self, tid: str, text: str, *, keep_text: bool = True, timeout: float = TIMEOUT) -> TurnState:
        """Run one turn on ``tid`` and wait for its turn/completed."""
        st = TurnState(keep_text=keep_text)
        self.turns[tid] = st
        st.sent = time.monotonic()
        with trio.fail_after(timeout):
            await self.request("turn/start", {"threadId": tid, "input": [{"type": "text", "text": text}]},
                               timeout=math.inf)
            await st.done.wait()
        if st.done_at is None:
            raise RpcFailed("server closed its stdout mid-turn")
        return st

    async def close(self, timeout: float = EXIT_TIMEOUT) -> None:
        """Close the server's stdin: it has ``EXIT_TIMEOUT`` to exit before
        it is killed; this waits at most ``timeout`` beyond that."""
        self._session.cancel()
        with trio.CancelScope(shield=True), trio.move_on_after(EXIT_TIMEOUT + timeout):
            await self._ended.wait()


@asynccontextmanager
async def app_server(argv: list[str], home: Path, *, cwd: Path | None = None,
                     log: str | None = None) -> AsyncIterator[AppClient]:
    """An initialized :class:`AppClient` for ``argv`` on CODEX_HOME ``home``
    (cwd: :func:`workspace` unless given; stderr to :func:`log_path` of
    ``log``, or dropped), closed at the end."""
    client = AppClient(argv, server_env(home), cwd or workspace(), stderr_path=log_path(log) if log else None)
    async with trio.open_nursery() as nursery:
        await client.start(nursery)
        try:
            with trio.fail_after(TIMEOUT):
                await client.initialize()
            yield client
        finally:
            await client.close()


async def gather_limited(fns: list, limit: int) -> list:
    """Run async callables with at most ``limit`` at once; results in order."""
    results: list = [None] * len(fns)
    sem = trio.Semaphore(limit)

    async def one(i: int, fn: Any) -> None:
        async with sem:
            results[i] = await fn()

    async with trio.open_nursery() as n:
        for i, fn in enumerate(fns):
            n.start_soon(one, i, fn)
    return results


def expected_reply(prompt: str, deltas: int) -> str:
    """The text the scripted server streams back for an echo ``prompt``."""
    from trio_codex.transports.scripted_responses import parse_directives, split_text

    plain = parse_directives(prompt)[1]
    return "".join(split_text(plain.strip() or "ok", deltas))


def check_turn(st: TurnState, expected: str) -> str | None:
    """None if the turn completed and its deltas add up to ``expected`` and
    to the item/completed text; otherwise what is wrong."""
    if st.status != "completed":
        return f"status {st.status}: {st.error}"
    streamed = "".join(st.parts)
    if streamed != expected:
        return f"streamed {len(streamed)} chars in {st.deltas} deltas, expected {len(expected)}"
    if st.final_text != expected:
        return f"item/completed text has {len(st.final_text or '')} chars, expected {len(expected)}"
    return None


def deltas_prompt(deltas: int, text: str, delay_ms: float = 0.0) -> str:
    """A prompt asking the scripted model for ``deltas`` deltas, ``delay_ms`` apart."""
    pace = f" delay_ms={delay_ms}" if delay_ms else ""
    return f"[[deltas={deltas}{pace}]] {text}"


@dataclass
class TurnsRun:
    """What :func:`drive_threads` saw: the turns in the order they completed,
    what was wrong with them, the wall time and the server's CPU seconds."""

    records: list[TurnState]
    problems: list[str]
    wall: float
    cpu: float


async def drive_threads(client: AppClient, tids: list[str], turns: int, deltas: int, text: str,
                        delay_ms: float = 0.0) -> TurnsRun:
    """Each thread of ``tids`` runs ``turns`` turns of ``deltas`` deltas back
    to back, the threads at once; ``text`` is formatted with the thread's
    index ``i`` and the turn's ``t``. Every turn is checked."""
    records: list[TurnState] = []
    problems: list[str] = []

    async def drive(i: int, tid: str) -> None:
        for t in range(turns):
            prompt = deltas_prompt(deltas, text.format(i=i, t=t), delay_ms)
            st = await client.turn(tid, prompt)
            records.append(st)
            problem = check_turn(st, expected_reply(prompt, deltas))
            if problem:
                problems.append(problem)

    cpu0 = tree_cpu(client.pid)
    w0 = time.monotonic()
    async with trio.open_nursery() as drivers:
        for i, tid in enumerate(tids):
            drivers.start_soon(drive, i, tid)
    wall = time.monotonic() - w0
    return TurnsRun(records, problems, wall, tree_cpu(client.pid) - cpu0)


# --- figures ------------------------------------------------------------------------


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of ``values``."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(p / 100 * len(s) + 0.5) - 1))
    return s[k]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratio(ours: float | None, other: float | None) -> str:
    if ours is None or other is None or ours != ours or other != other or other == 0:
        return "-"
    return f"{ours / other:.2f}"


def fmt(v: Any, spec: str = ".1f") -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    return format(v, spec)


def print_table(rows: list[list[str]], header: list[str]) -> None:
    table = [header, *rows]
    widths = [max(len(str(r[i])) for r in table) for i in range(len(header))]
    for j, r in enumerate(table):
        print("  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if j == 0:
            print("  ".join("-" * w for w in widths))


def figure_row(title: str, vals: list, spec: str = ".1f") -> list[str]:
    """``title``, each server's value, and their ratio when there are two."""
    row = [title, *[fmt(v, spec) for v in vals]]
    if len(vals) == 2:
        row.append(ratio(vals[0], vals[1]))
    return row


def figure_rows(results: list[dict], specs: list[tuple[str, str, str]]) -> list[list[str]]:
    """One :func:`figure_row` per (key, title, format) of ``specs``."""
    return [figure_row(title, [r[key] for r in results], spec) for key, title, spec in specs]


def print_figures(rows: list[list[str]], names: list[str]) -> None:
    """A figure table: one column per server, a ratio column when two."""
    print_table(rows, ["figure", *names] + (["ratio"] if len(names) == 2 else []))


def print_problems(names: list[str], problems: list[list[str]], limit: int = 3) -> None:
    """The first ``limit`` problems seen with each server."""
    for name, found in zip(names, problems):
        for problem in found[:limit]:
            print(f"  problem ({name}): {problem}")


class LoadSampler:
    """Samples a server under load every ``interval`` s for plots over time:
    rows of (seconds since :meth:`run` began, turns completed so far, RSS MB
    of its process tree, its CPU s). Counts ``turn/completed`` through the
    client's observer, calling on any observer already set."""

    def __init__(self, client: AppClient, interval: float = 0.2) -> None:
        self.client = client
        self.interval = interval
        self.completed = 0
        self.samples: list[tuple[float, int, float, float]] = []
        self.t0 = time.monotonic()
        self._next = client.observer
        client.observer = self

    def __call__(self, msg: dict, now: float) -> None:
        if msg.get("method") == "turn/completed":
            self.completed += 1
        if self._next is not None:
            self._next(msg, now)

    def sample(self) -> None:
        pid = self.client.pid
        self.samples.append((time.monotonic() - self.t0, self.completed, tree_mem(pid)[0] / 1024, tree_cpu(pid)))

    async def run(self) -> None:
        """Sample until cancelled (call :meth:`sample` once more after)."""
        self.t0 = time.monotonic()
        while True:
            self.sample()
            await trio.sleep(self.interval)
