"""What does a tool round trip (model -> command -> model) cost per turn, next
to a plain turn, ours vs the original?

    /work/venv/bin/python bench/tool_turn.py                       # ours and the original, 1 thread x 30 turns
    /work/venv/bin/python bench/tool_turn.py --threads 4 --turns 15
    /work/venv/bin/python bench/tool_turn.py --vs none --profile cprofile   # ours only, plus where its CPU goes
    /work/venv/bin/python bench/tool_turn.py --profile pyspy --profile-turns 300
    /work/venv/bin/python bench/tool_turn.py --modes exec-ws,exec-full --micro-runs 0

Modes (each on a fresh server, CODEX_HOME and workspace; thread/start with
``approvalPolicy: never`` and the mode's ``sandbox``; cwd a fresh directory
under $BENCH_RUN_DIR/tool-ws, outside /tmp):

* ``plain``: a one-delta reply, no tool (the plain-turn figure);
* ``exec-ws``: the model calls ``exec_command {"cmd":"echo hi"}``, the
  server runs it under ``workspace-write`` (ours: /usr/bin/bwrap; the
  original: its codex-linux-sandbox helper and bundled bwrap), the next
  model request carries the output and gets a plain message back;
* ``exec-full``: the same under ``danger-full-access`` (no sandbox);
* ``shell-ws`` / ``shell-full``: the same with ``shell_command`` (ours
  only: the original 0.169.0 on Linux does not offer it).

Per mode and server: two warm-up turns on a throwaway thread (the first is
reported as "first turn": the sandbox probe, the helper's first exec), then
N threads each run T turns back to back (the threads at once). Figures:

* turn latency p50/p99: turn/start sent -> turn/completed received;
* the tool turn split (p50 of each): turn/start -> item/started
  (commandExecution), item/started -> item/completed, item/completed ->
  turn/completed (the second model request and the end of the turn);
* CPU/turn: utime+stime of the server's process tree from /proc over the
  turn phase (reaped children included: bwrap, the sandbox helper, bash),
  split into the server process itself and its children. bubblewrap with
  ``--unshare-pid`` leaves its namespace's init (which reaped the command)
  unreaped, so that CPU never reaches the server's cutime: the bench makes
  itself a child subreaper, adopts such orphans, reaps them and counts
  their CPU with the children's;
* every turn is checked: completed, the command item exited 0 with ``hi``,
  the model's reply quotes ``hi``. After the timed turns one more turn runs
  ``touch`` on a file outside the workspace: it must be denied under
  workspace-write and succeed under danger-full-access (the sandbox is on).

Then, unless ``--micro-runs 0``, launch costs alone (no server): bash -c / -lc
``echo hi``, ours' bwrap (the exact workspace-write command line our server
builds) around ``true`` and around the command, with some of its namespaces
left out, and the original's bundled bwrap with the same arguments: wall p50
and CPU (getrusage of reaped children) per launch.

``--profile cprofile|pyspy`` then runs ours' exec-ws once more under
cProfile (bench/profile_server.py, CPU clock, main thread) or py-spy, and
prints where the server process's own CPU goes per tool turn (the report of
bench/where_cpu.py, scaled to the server process's CPU, children excluded).

The scripted Responses server runs as its own process (its CPU is not
counted).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import trio

from benchlib import (
    BENCH_DIR,
    ORIG_NATIVE,
    PY,
    REPO,
    RUN_ROOT,
    RpcFailed,
    ScriptedProcess,
    app_server,
    check_turn,
    expected_reply,
    figure_row,
    fmt,
    gather_limited,
    label,
    labels,
    make_home,
    median,
    orig_available,
    parser,
    pct,
    print_table,
    proc_stat,
    progress,
    server_argv,
    server_args,
    server_env,
    servers,
    tree_cpu_split,
)

#: mode: (tool, sandbox mode, the original offers the tool)
MODES: dict[str, tuple[str | None, str, bool]] = {
    "plain": (None, "workspace-write", True),
    "exec-ws": ("exec_command", "workspace-write", True),
    "exec-full": ("exec_command", "danger-full-access", True),
    "shell-ws": ("shell_command", "workspace-write", False),
    "shell-full": ("shell_command", "danger-full-access", False),
}
COMMAND = "echo hi"
ORIG_BWRAP = ORIG_NATIVE.parent.parent / "codex-resources" / "bwrap"

_workspaces: list[Path] = []


@atexit.register
def _remove_workspaces() -> None:
    if os.environ.get("BENCH_KEEP_HOMES") != "1":
        for ws in _workspaces:
            shutil.rmtree(ws, ignore_errors=True)


def fresh_workspace(tag: str) -> Path:
    root = RUN_ROOT / "tool-ws"
    root.mkdir(parents=True, exist_ok=True)
    ws = Path(tempfile.mkdtemp(prefix=f"{tag}-", dir=root))
    _workspaces.append(ws)
    return ws


# bubblewrap with --unshare-pid (and without --as-pid-1) exits once its init
# in the namespace reports the command's status, without reaping that init:
# the init (and the CPU of everything it reaped, the command included) goes
# to the nearest subreaper, by default the host's pid 1, so the server's
# cutime never sees it. The bench makes itself a child subreaper and reaps
# such orphans itself, adding their CPU to the children's.
_PR_SET_CHILD_SUBREAPER = 36
KNOWN_CHILDREN: set[int] = set()  # ours to leave alone (trio and subprocess reap them)


def become_subreaper() -> bool:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def reap_orphans(settle: float = 0.0) -> float:
    """CPU seconds of the adopted orphans that have exited, reaped now;
    waits up to ``settle`` s for adopted ones still running to exit."""
    me = os.getpid()
    total = 0.0
    deadline = time.monotonic() + settle
    while True:
        running = 0
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or int(entry.name) in KNOWN_CHILDREN:
                continue
            fields = proc_stat(entry.name)
            if fields is None or int(fields[1]) != me:
                continue
            if fields[0] != b"Z":
                running += 1
                continue
            try:
                pid, _, ru = os.wait4(int(entry.name), os.WNOHANG)
            except ChildProcessError:
                continue
            if pid:
                total += ru.ru_utime + ru.ru_stime
        if not running or time.monotonic() >= deadline:
            return total
        time.sleep(0.002)


def prompt_for(tool: str | None, text: str, command: str = COMMAND) -> str:
    if tool is None:
        return f"[[deltas=1]] {text}"
    args = {"cmd": command} if tool == "exec_command" else {"command": command}
    return f"[[call={tool} {json.dumps(args)}]] {text}"


class Timeline:
    """commandExecution item/started and item/completed per thread, for the
    turn in flight (fed by AppClient.observer)."""

    def __init__(self) -> None:
        self.by_thread: dict[str, dict] = {}

    def reset(self, tid: str) -> dict:
        self.by_thread[tid] = rec = {}
        return rec

    def __call__(self, msg: dict, now: float) -> None:
        method = msg.get("method")
        if method not in ("item/started", "item/completed"):
            return
        p = msg.get("params") or {}
        item = p.get("item") or {}
        if item.get("type") != "commandExecution":
            return
        rec = self.by_thread.get(p.get("threadId"))
        if rec is None:
            return
        if method == "item/started":
            rec.setdefault("started", now)
        else:
            rec["completed"] = now
            rec["item"] = item


def check_tool_turn(st, rec: dict) -> str | None:
    if st.status != "completed":
        return f"status {st.status}: {st.error}"
    item = rec.get("item")
    if item is None or "started" not in rec:
        return "no commandExecution item/started + item/completed"
    if item.get("exitCode") != 0 or (item.get("aggregatedOutput") or "").strip() != "hi":
        return f"command item: exit {item.get('exitCode')} output {item.get('aggregatedOutput')!r}"
    if not (st.final_text or "").rstrip().endswith("hi"):
        return f"reply does not quote the output: {(st.final_text or '')[-80:]!r}"
    return None


async def run_mode(spec: str, mode: str, base_url: str, threads: int, turns: int,
                   profile: str | None = None, rounds: int = 1) -> dict:
    """One mode against one server: warm-up, the timed turns, the sandbox check.
    With ``rounds`` > 1 each of the ``threads`` drivers runs ``turns`` turns
    on ``rounds`` fresh threads in turn (the history stays as short as in
    the timed run)."""
    tool, sandbox, _ = MODES[mode]
    name = label(spec)
    home = make_home(base_url, f"tool-{name}-{mode}")
    ws = fresh_workspace(f"{name}-{mode}")
    argv = server_argv(spec)
    prof_out = None
    if profile:
        prof_dir = RUN_ROOT / "profiles"
        prof_dir.mkdir(parents=True, exist_ok=True)
        prof_out = prof_dir / f"tool-{mode}-{profile}.{'raw' if profile == 'pyspy' else 'prof'}"
        prof_out.unlink(missing_ok=True)
        if profile == "cprofile":
            argv = [PY, str(BENCH_DIR / "profile_server.py"), "--out", str(prof_out), "--timer", "cpu", "--",
                    "app-server", "--listen", "stdio://"]
    timeline = Timeline()
    params = {"cwd": str(ws), "approvalPolicy": "never", "sandbox": sandbox}
    records: list[tuple] = []  # (TurnState, timeline record)
    problems: list[str] = []
    out: dict = {"mode": mode, "server": name}
    spy = None

    async def one_turn(tid: str, text: str, command: str = COMMAND):
        rec = timeline.reset(tid)
        prompt = prompt_for(tool, text, command)
        st = await client.turn(tid, prompt)
        if tool is None:
            problem = check_turn(st, expected_reply(prompt, 1))
        elif command == COMMAND:
            problem = check_tool_turn(st, rec)
        else:
            problem = None
        return st, rec, problem

    try:
        async with app_server(argv, home, cwd=ws,
                              log=f"tool-{name}-{mode}{'-' + profile if profile else ''}") as client:
            client.observer = timeline
            warm = (await client.request("thread/start", params))["thread"]["id"]
            for k in range(2):
                st, _, problem = await one_turn(warm, f"warm-up {k}")
                if k == 0:
                    out["first_ms"] = (st.done_at - st.sent) * 1000
                if problem:
                    problems.append(f"warm-up: {problem}")

            async def start_thread() -> str:
                return (await client.request("thread/start", params))["thread"]["id"]

            tids = await gather_limited([start_thread] * (threads * rounds), 16)
            if profile == "pyspy":
                from where_cpu import pyspy_bin
                spy = subprocess.Popen([pyspy_bin(), "record", "--pid", str(client.pid), "--rate", "1000",
                                        "--format", "raw", "--function", "--gil", "--output", str(prof_out)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                await trio.sleep(1.0)
            elif profile == "cprofile":
                os.kill(client.pid, signal.SIGUSR1)
                await trio.sleep(0.2)

            async def drive(i: int, mine: list[str]) -> None:
                for tid in mine:
                    for t in range(turns):
                        st, rec, problem = await one_turn(tid, f"thread {i} turn {t}")
                        records.append((st, rec))
                        if problem:
                            problems.append(problem)

            KNOWN_CHILDREN.add(client.pid)
            if spy is not None:
                KNOWN_CHILDREN.add(spy.pid)
            reap_orphans(settle=0.2)  # the warm-up's
            own0, kids0 = tree_cpu_split(client.pid)
            w0 = time.monotonic()
            async with trio.open_nursery() as drivers:
                for i in range(threads):
                    drivers.start_soon(drive, i, tids[i * rounds:(i + 1) * rounds])
            wall = time.monotonic() - w0
            own1, kids1 = tree_cpu_split(client.pid)
            kids1 += await trio.to_thread.run_sync(reap_orphans, 0.2)
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                await trio.to_thread.run_sync(spy.wait)
            elif profile == "cprofile":
                os.kill(client.pid, signal.SIGUSR2)
                await trio.sleep(0.5)
            if tool is not None and not profile:
                # Is the sandbox on? Write outside the workspace (and outside /tmp).
                target = RUN_ROOT / f"tool-outside-{os.getpid()}-{mode}"
                target.unlink(missing_ok=True)
                st, rec, _ = await one_turn(warm, "sandbox check",
                                            f"touch {target} && echo WROTE || echo DENIED")
                text = st.final_text or ""
                out["outside_write"] = ("denied" if "DENIED" in text and not target.exists()
                                        else "wrote" if "WROTE" in text and target.exists() else "?")
                target.unlink(missing_ok=True)
    except* (RpcFailed, trio.TooSlowError) as failed:
        exc = failed.exceptions[0]
        out["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        if spy is not None and spy.poll() is None:
            spy.kill()
    if "error" in out:
        return out
    n = threads * turns * rounds
    lat = [(st.done_at - st.sent) * 1000 for st, _ in records]
    to_cmd = [(rec["started"] - st.sent) * 1000 for st, rec in records if "started" in rec]
    cmd = [(rec["completed"] - rec["started"]) * 1000 for st, rec in records if "completed" in rec and "started" in rec]
    after = [(st.done_at - rec["completed"]) * 1000 for st, rec in records if "completed" in rec]
    out.update(
        turns=n, wall_s=wall, turns_per_s=n / wall,
        lat_p50=pct(lat, 50), lat_p99=pct(lat, 99), lat_mean=sum(lat) / len(lat) if lat else float("nan"),
        to_cmd_p50=pct(to_cmd, 50) if to_cmd else None, cmd_p50=pct(cmd, 50) if cmd else None,
        after_p50=pct(after, 50) if after else None,
        cpu_ms=(own1 - own0 + kids1 - kids0) / n * 1000, own_ms=(own1 - own0) / n * 1000,
        kids_ms=(kids1 - kids0) / n * 1000, own_cpu_s=own1 - own0,
        bad=len(problems), problems=problems[:3], prof_out=prof_out, lat_ms=lat,
        spy_err=spy.stderr.read().decode(errors="replace")[-500:] if spy is not None and spy.stderr else "",
    )
    return out


# --- launch costs alone --------------------------------------------------------------


def _launch(argv: Sequence[str], env: dict[str, str], cwd: Path, runs: int,
            pass_fds: Sequence[int] = ()) -> tuple[float, float, str | None]:
    """(wall p50 ms, CPU ms per launch of the process and its reaped
    children, the first failure) over ``runs`` launches. ``pass_fds`` (the
    sandbox's seccomp program) are rewound before each launch: bubblewrap
    reads its program from the current offset."""
    walls = []
    reap_orphans(settle=0.2)
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    orphans = 0.0
    failure = None
    for _ in range(runs):
        for fd in pass_fds:
            os.lseek(fd, 0, os.SEEK_SET)
        t0 = time.perf_counter()
        done = subprocess.run(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=30, check=False, pass_fds=pass_fds)
        walls.append((time.perf_counter() - t0) * 1000)
        orphans += reap_orphans(settle=0.2)
        if done.returncode != 0 and failure is None:
            failure = (done.stderr or done.stdout).decode(errors="replace").strip()[-200:] or f"exit {done.returncode}"
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime + orphans) / runs * 1000
    return median(walls), cpu, failure


def _without(argv: Sequence[str], *drop: str) -> list[str]:
    out, i = [], 0
    while i < len(argv):
        if argv[i] == "--":
            out += argv[i:]
            break
        if argv[i] in drop:
            i += 2 if argv[i] == "--proc" else 1
            continue
        out.append(argv[i])
        i += 1
    return out


def micro(runs: int) -> list[list[str]]:
    from trio_codex.runtime.protocol.v2.thread import WorkspaceWrite
    from trio_codex.runtime.commands.environment import create_env
    from trio_codex.runtime.commands.sandbox import sandbox_env, sandboxed_argv

    ws = fresh_workspace("micro")
    env = sandbox_env(create_env(server_env(RUN_ROOT / "bhome")), WorkspaceWrite())
    bash_c = ["/bin/bash", "-c", COMMAND]
    bash_lc = ["/bin/bash", "-lc", COMMAND]
    rows = []

    def row(name: str, argv: Sequence[str], pass_fds: Sequence[int] = ()) -> None:
        wall, cpu, failure = _launch(argv, env, ws, runs, pass_fds)
        rows.append([name, fmt(wall, ".2f"), fmt(cpu, ".2f"), failure or ""])

    row("bash -c 'echo hi' (the original's command)", bash_c)
    row("bash -lc 'echo hi' (ours' command)", bash_lc)
    row("/bin/true", ["/bin/true"])
    with sandboxed_argv(["/bin/true"], WorkspaceWrite(), ws, env) as (wrapped_true, fds):
        row("ours bwrap (workspace-write) -- true", wrapped_true, fds)
        row("  without --unshare-net", _without(wrapped_true, "--unshare-net"), fds)
        row("  without --unshare-pid --proc", _without(wrapped_true, "--unshare-pid", "--proc"), fds)
        row("  without net, pid, proc",
            _without(wrapped_true, "--unshare-net", "--unshare-pid", "--proc"), fds)
        row("  with --as-pid-1 (no init; the original's choice)",
            [wrapped_true[0], "--as-pid-1", *wrapped_true[1:]], fds)
        if ORIG_BWRAP.exists():
            row("the original's bundled bwrap, same args -- true",
                [str(ORIG_BWRAP), *wrapped_true[1:]], fds)
    with sandboxed_argv(bash_lc, WorkspaceWrite(), ws, env) as (wrapped, fds):
        row("ours bwrap (workspace-write) -- bash -lc 'echo hi'", wrapped, fds)
    with sandboxed_argv(bash_c, WorkspaceWrite(), ws, env) as (wrapped, fds):
        row("ours bwrap (workspace-write) -- bash -c 'echo hi'", wrapped, fds)
    return rows


# --- report ----------------------------------------------------------------------------

FIGURES = [
    ("lat_p50", "turn p50 ms", ".1f"),
    ("lat_p99", "turn p99 ms", ".1f"),
    ("cpu_ms", "CPU/turn ms (process tree)", ".1f"),
    ("own_ms", "  server process", ".1f"),
    ("kids_ms", "  children (sandbox, shell)", ".1f"),
    ("to_cmd_p50", "  start -> command item p50 ms", ".1f"),
    ("cmd_p50", "  command item p50 ms", ".1f"),
    ("after_p50", "  command done -> completed p50", ".1f"),
    ("first_ms", "first turn (cold) ms", ".0f"),
    ("turns_per_s", "turns/s", ".1f"),
    ("bad", "bad turns", "d"),
]


def _table(rows: list[list[str]], header: list[str]) -> None:
    """Like print_table, with the first two columns left-aligned and the mode
    written once per block."""
    shown, last = [], None
    for r in rows:
        shown.append(["" if r[0] == last else r[0], *r[1:]])
        last = r[0]
    table = [header, *shown]
    widths = [max(len(str(r[i])) for r in table) for i in range(len(header))]
    for j, r in enumerate(table):
        print("  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w)
                        for i, (c, w) in enumerate(zip(r, widths))).rstrip())
        if j == 0:
            print("  ".join("-" * w for w in widths))


def tree_state() -> str:
    """The commit ours ran from, and whether its code differs from it."""
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "actors", "runtime",
                                "transports"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "ours from an unknown tree"
    return f"ours at {head or '?'}{' + uncommitted changes' if dirty else ''}"


def report(results: dict, modes: list[str], specs: list[str], threads: int, turns: int) -> None:
    names = labels(specs)
    two = len(specs) == 2
    rows = []
    for mode in modes:
        for key, title, spec in FIGURES:
            vals = [results.get((s, mode), {}).get(key) for s in specs]
            if all(v is None for v in vals):
                continue
            row = [mode, *figure_row(title, vals, spec)]
            if two and key == "bad":
                row[-1] = ""
            rows.append(row)
        checks = [results.get((s, mode), {}).get("outside_write") for s in specs]
        if any(checks):
            rows.append([mode, "touch outside the workspace", *[c or "-" for c in checks]] + ([""] if two else []))
    # What the tool round trip and the sandbox add, from the p50s and CPU means.
    for a, b, title in (("exec-full", "plain", "tool round trip (exec-full - plain)"),
                        ("exec-ws", "exec-full", "sandbox (exec-ws - exec-full)"),
                        ("shell-full", "plain", "tool round trip (shell-full - plain)"),
                        ("shell-ws", "shell-full", "sandbox (shell-ws - shell-full)")):
        for key, what in (("lat_p50", "p50 ms"), ("cpu_ms", "CPU ms")):
            vals = []
            for s in specs:
                ra, rb = results.get((s, a), {}), results.get((s, b), {})
                vals.append(ra[key] - rb[key] if key in ra and key in rb else None)
            if all(v is None for v in vals):
                continue
            rows.append([title, *figure_row(what, vals)])
    print(f"== tool round trip: {threads} thread(s) x {turns} turns per mode, command {COMMAND!r}"
          f"{f'; ratio = {names[0]}/{names[1]}' if two else ''}; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f} at the end (other work on the host skews the figures); "
          f"{tree_state()}")
    _table(rows, ["mode", "figure", *names] + (["ratio"] if two else []))
    print("  (the split: ours sends item/started before it builds the sandbox and spawns, so its "
          "'command item' includes both; the original sends it once the process runs)")
    for (s, mode), r in results.items():
        if "error" in r:
            print(f"  error ({label(s)} {mode}): {r['error']}")
        for problem in r.get("problems", []):
            print(f"  problem ({label(s)} {mode}): {problem}")


async def main_async(args: argparse.Namespace) -> None:
    specs = servers(args)
    modes = args.modes.split(",")
    for mode in modes:
        if mode not in MODES:
            sys.exit(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
    results: dict = {}
    if not become_subreaper():
        print("  (could not become a child subreaper: the CPU of ours' sandboxed commands is not counted)")
    with ScriptedProcess() as scripted:
        KNOWN_CHILDREN.add(scripted.proc.pid)
        for mode in modes:
            for spec in specs:
                if spec == "orig" and not MODES[mode][2]:
                    continue
                progress(f"running {label(spec)} {mode} {args.threads}x{args.turns} ...")
                results[spec, mode] = await run_mode(spec, mode, scripted.base_url, args.threads, args.turns)
        report(results, modes, specs, args.threads, args.turns)
        if args.micro_runs:
            print(f"\n== launch costs alone ({args.micro_runs} runs each, workspace-write as ours builds it; "
                  "CPU includes reaped children and adopted orphans)")
            rows = await trio.to_thread.run_sync(micro, args.micro_runs)
            print_table(rows, ["launch", "wall p50 ms", "CPU ms", "failure"])
        if args.profile:
            from where_cpu import report_cprofile, report_pyspy

            mode = "exec-ws"
            print(f"\n== where ours' server process CPU goes in a tool turn ({mode}, {args.profile}, "
                  f"{max(1, args.profile_turns // args.turns)} threads x {args.turns} turns one after another; "
                  "children's CPU is not in it)", flush=True)
            rounds = max(1, args.profile_turns // args.turns)
            r = await run_mode(args.server_cmd, mode, scripted.base_url, 1, args.turns,
                               profile=args.profile, rounds=rounds)
            if "error" in r:
                print(f"  error: {r['error']}")
                return
            print(f"  server process CPU {r['own_ms']:.2f} ms/turn, children {r['kids_ms']:.2f} ms/turn, "
                  f"turn p50 {r['lat_p50']:.1f} ms (profiled)")
            rep = {"out": r["prof_out"], "units": r["turns"], "unit": "turn", "cpu": r["own_cpu_s"],
                   "problems": r["problems"], "spy_err": r["spy_err"]}
            (report_pyspy if args.profile == "pyspy" else report_cprofile)(rep, args.top)
            print(f"  raw profile: {r['prof_out']}")


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--threads", type=int, default=1, help="threads at once, each running --turns turns")
    p.add_argument("--turns", type=int, default=40)
    p.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, from {', '.join(MODES)}")
    server_args(p)
    p.add_argument("--micro-runs", type=int, default=30, help="launches per variant in the launch-cost table (0: skip)")
    p.add_argument("--profile", choices=["cprofile", "pyspy"], default=None,
                   help="also profile ours' exec-ws turns (server process only)")
    p.add_argument("--profile-turns", type=int, default=200)
    p.add_argument("--top", type=int, default=20)
    args = p.parse_args()
    if "orig" in (args.vs, args.server_cmd) and not orig_available():
        sys.exit("the original is not installed here (use --vs none)")
    if args.profile == "pyspy":
        from where_cpu import pyspy_bin
        if pyspy_bin() is None:
            sys.exit("py-spy not found: python3 -m venv /work/benchvenv && /work/benchvenv/bin/pip install py-spy")
    trio.run(main_async, args)


if __name__ == "__main__":
    main()
