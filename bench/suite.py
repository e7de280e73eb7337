"""The benchmark report: every scenario against trio-codex and, optionally,
another app server (by default the original codex-cli when installed), in
one run, written as a markdown report with PNG plots and the raw results as
JSON (see bench/README.md, "The report").

    python -m trio_codex.bench                      # full run, ~3 min on 2 cores -> bench/report/
    python -m trio_codex.bench --quick              # smaller counts, ~2 min
    python -m trio_codex.bench --other none         # trio-codex alone
    python -m trio_codex.bench --other "/path/to/codex app-server --listen stdio://"
    python -m trio_codex.bench --only turns-10x5,startup   # -> $BENCH_RUN_DIR/report
    python -m trio_codex.bench --compare old/results.json new/results.json
    python -m trio_codex.bench --render bench/report/results.json   # report.md, PNGs, README again

Each scenario calls the bench driver that answers its question (load.py,
startup.py, delta_cpu.py, tool_turn.py, thread_store.py, ws_load.py) on a
fresh server per server and scenario, one after another (never overlapping:
the figures are CPU and wall times). A scenario that fails or overruns
``--budget`` for one server is recorded as an error and the run goes on.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

import benchlib
import delta_cpu
import load
import startup
import thread_store
import tool_turn
import ws_load

from . import reporting

#: Where the committed report lives in a checkout; installed from a wheel,
#: the report goes to ./bench-report.
DEFAULT_OUT = (benchlib.BENCH_DIR / "report" if (benchlib.REPO / "pyproject.toml").exists()
               else Path("bench-report"))
OURS_LABEL = "trio-codex"


@dataclass
class Ctx:
    """What every scenario gets: the scripted model's URL and the run's size."""

    base_url: str
    quick: bool

    def size(self, full: Any, quick: Any) -> Any:
        return quick if self.quick else full


@dataclass
class Scenario:
    """One question, asked of each server in turn: ``run(ctx, spec)`` returns
    the figures (raw samples under ``lat_ms`` / ``samples``); ``params``
    describes the size for the report."""

    name: str
    title: str
    run: Callable[[Ctx, str], Awaitable[dict]]
    params: Callable[[Ctx], str]
    #: Key of the raw latencies (ms) for the CDF plot, if any.
    cdf: str | None = "lat_ms"


def _plain(threads: int, turns: int, deltas: int = 100, delay_ms: float = 0.0) -> tuple[
        Callable[[Ctx, str], Awaitable[dict]], Callable[[Ctx], str]]:
    async def run(ctx: Ctx, spec: str) -> dict:
        return await load.run_load(spec, ctx.base_url, threads, turns, deltas, delay_ms=delay_ms)

    pace = f", {delay_ms:g} ms apart" if delay_ms else ""
    return run, lambda ctx: f"{threads} threads x {turns} turns x {deltas} deltas{pace}, all threads at once"


async def _sustained(ctx: Ctx, spec: str) -> dict:
    threads, turns = ctx.size((20, 20), (5, 4))
    return await load.run_load(spec, ctx.base_url, threads, turns, 100, sample_every=0.1)


async def _delta_cpu(ctx: Ctx, spec: str) -> dict:
    deltas, many, one, paced = ctx.size((20000, 3, 40, 2000), (2000, 2, 10, 200))
    return await delta_cpu.measure(spec, ctx.base_url, deltas, many, one, paced, 0.5, 2)


async def _tool(ctx: Ctx, spec: str) -> dict:
    out = await tool_turn.run_mode(spec, "exec-ws", ctx.base_url, 1, ctx.size(30, 8))
    out.pop("prof_out", None)
    return out


async def _startup(ctx: Ctx, spec: str) -> dict:
    runs = [await startup.cold_start(spec, ctx.base_url, 1.0, 3) for _ in range(ctx.size(5, 2))]
    init = [r["init_ms"] for r in runs]
    first = [r["first_turn_ms"] for r in runs]
    return {"init_ms": init, "first_turn_ms": first,
            "init_p50": benchlib.median(init), "first_turn_p50": benchlib.median(first),
            "init_to_first_turn_p50": benchlib.median([f - i for f, i in zip(first, init)]),
            "turn1_p50": benchlib.median([r["turn1_ms"] for r in runs]),
            "later_turn_p50": benchlib.median([r["later_ms"] for r in runs]),
            "turn1_vs_later": benchlib.median([r["turn1_ms"] / r["later_ms"] for r in runs]),
            "idle_rss_mb": benchlib.median([r["idle_rss"] for r in runs])}


async def _loaded(ctx: Ctx, spec: str) -> dict:
    return await startup.loaded_threads(spec, ctx.base_url, ctx.size(200, 50), 1.0)


async def _ws(ctx: Ctx, spec: str) -> dict:
    clients, turns = ctx.size((10, 10), (4, 5))
    return await ws_load.run_one(spec, ctx.base_url, clients, turns, 100)


#: The long thread of the history scenario, written once per run (ours and
#: the other read the same rollout).
_history_thread: dict[int, tuple[Path, str, int, float]] = {}


async def _history(ctx: Ctx, spec: str) -> dict:
    turns = ctx.size(2500, 250)
    if turns not in _history_thread:
        home = benchlib.make_home("http://127.0.0.1:9/v1", "report-history")
        tid, items, size = thread_store.write_long_thread(home, turns, int(time.time() * 1000) - 86_400_000 * 30)
        _history_thread[turns] = (home, tid, items, size / 1e6)
    home, tid, items, _ = _history_thread[turns]
    args = argparse.Namespace(turns=turns, timeout=120.0, orig_timeout=120.0, settle=1.0)
    out = await thread_store.resume_run(spec, home, tid, args)
    out["thread_items"] = items
    return out


def _history_params(ctx: Ctx) -> str:
    turns = ctx.size(2500, 250)
    return (f"one stored thread of {turns * 4:,} items ({turns:,} turns): thread/read and thread/resume "
            "(not loaded, then loaded); in a fresh server resume with excludeTurns, then the first pages "
            "of 20 (desc)")


SCENARIOS: list[Scenario] = [
    Scenario("startup", "Start-up", _startup,
             lambda ctx: f"{ctx.size(5, 2)} cold starts: spawn -> initialize answered, -> first turn completed; "
                         "the first turn's latency against the next three's; idle RSS after 1 s", cdf="init_ms"),
    Scenario("turns-1x20", "Plain turns 1x20", *_plain(1, 20)),
    Scenario("turns-10x5", "Plain turns 10x5", *_plain(10, 5)),
    Scenario("turns-50x3", "Plain turns 50x3", *_plain(50, 3)),
    Scenario("deltas-200", "200-delta turns", *_plain(10, 5, 200)),
    Scenario("paced", "Paced deltas", *_plain(20, 2, 200, 5.0)),
    Scenario("delta-cpu", "CPU per delta", _delta_cpu,
             lambda ctx: "one thread; CPU per extra delta: bulk ({} deltas a turn vs 1) and paced "
                         "({} deltas 0.5 ms apart)".format(*ctx.size((20000, 2000), (2000, 200))), cdf=None),
    Scenario("tool", "Tool turns", _tool,
             lambda ctx: f"1 thread x {ctx.size(30, 8)} turns: the model calls exec_command `echo hi` under "
                         "workspace-write (sandboxed), then answers"),
    Scenario("loaded-200", "Loaded threads' memory", _loaded,
             lambda ctx: f"{ctx.size(200, 50)} thread/start, 16 in flight, no turns; RSS before and after",
             cdf=None),
    Scenario("history", "History pages", _history, _history_params, cdf=None),
    Scenario("ws", "Websocket clients", _ws,
             lambda ctx: "{} clients on their own connections x {} turns x 100 deltas over ws://".format(
                 *ctx.size((10, 10), (4, 5)))),
    Scenario("sustained", "Sustained load", _sustained,
             lambda ctx: "{} threads x {} turns x 100 deltas; turns completed and RSS sampled every 0.1 s".format(
                 *ctx.size((20, 20), (5, 4)))),
]
BY_NAME = {s.name: s for s in SCENARIOS}


# --- servers and machine ------------------------------------------------------------------


def server_label(spec: str) -> str:
    """``trio-codex``, ``original <version>`` or the command's file name."""
    if spec == "ours":
        return OURS_LABEL
    argv = benchlib.server_argv(spec)
    try:
        version = subprocess.run([argv[0], "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        version = ""
    words = version.split()
    if spec == "orig":
        return f"original {words[-1]}" if words else "original"
    return benchlib.label(spec)


def machine() -> dict[str, Any]:
    """What the figures depend on: CPU, cores, memory, kernel, Python, load."""
    cpu = mem = "?"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
        mem_kb = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
        mem = f"{mem_kb / 2**20:.1f} GiB"
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory": mem,
            "kernel": platform.release(), "python": platform.python_version(),
            "loadavg_start": _loadavg()}


def _loadavg() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(benchlib.REPO), "log", "-1", "--format=%h %cs"],
                             capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(benchlib.REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + (" (+ uncommitted changes)" if dirty else "") if out.returncode == 0 else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


# --- the run ------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """Figures as JSON: NaN as null, paths and other objects as text."""
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (int, str, bool)):
        return value
    return str(value)


async def run_all(labels: dict[str, str], scenarios: list[Scenario], quick: bool, budget: float,
                  on_step: Callable[[str], None], on_done: Callable[[], None]) -> dict[str, dict[str, dict]]:
    """Each scenario for each server (``labels``: spec -> column name) in
    turn: {scenario: {column name: figures}}."""
    results: dict[str, dict[str, dict]] = {}
    benchlib.RUN_ROOT.mkdir(parents=True, exist_ok=True)
    if tool_turn.become_subreaper() is False:
        benchlib.progress("could not become a child subreaper: sandboxed commands' CPU is not counted")
    with benchlib.ScriptedProcess() as scripted:
        tool_turn.KNOWN_CHILDREN.add(scripted.proc.pid)
        ctx = Ctx(scripted.base_url, quick)
        for sc in scenarios:
            for spec, name in labels.items():
                on_step(f"{sc.name}: {name}")
                t0 = time.monotonic()
                try:
                    with trio.fail_after(budget):
                        figures = await sc.run(ctx, spec)
                except trio.TooSlowError:
                    figures = {"error": f"over the budget of {budget:.0f} s"}
                except Exception as exc:  # noqa: BLE001 - one scenario's failure is a figure, not the end
                    figures = {"error": f"{type(exc).__name__}: {exc}"}
                figures["scenario_s"] = time.monotonic() - t0
                results.setdefault(sc.name, {})[name] = _jsonable(figures)
                on_done()
    return results


def _progress_ui() -> Any:
    """A rich progress bar; None (a plain line per step) when rich is
    missing or the output is no terminal (rich would show nothing until the end)."""
    try:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    except ImportError:
        return None
    if not Console().is_terminal:
        return None
    return Progress(TextColumn("{task.description:<36}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    transient=False)


def _labels(specs: list[str]) -> dict[str, str]:
    """spec -> column name, numbered when two servers would share one."""
    names = [server_label(spec) for spec in specs]
    if len(set(names)) < len(names):
        names = [f"{n} #{i + 1}" for i, n in enumerate(names)]
    return dict(zip(specs, names))


def run(args: argparse.Namespace, argv: list[str]) -> Path:
    """Run the scenarios and write the report; returns the results path."""
    specs = [args.ours] + ([args.other] if args.other != "none" else [])
    scenarios = [BY_NAME[n] for n in args.only] if args.only else SCENARIOS
    labels = _labels(specs)
    meta: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"), "machine": machine(), "commit": git_commit(),
        "quick": args.quick, "servers": [{"spec": s, "label": labels[s], "argv": benchlib.server_argv(s)}
                                         for s in specs],
        "scenarios": {sc.name: {"title": sc.title, "params": sc.params(Ctx("", args.quick)), "cdf": sc.cdf}
                      for sc in scenarios},
        "command": " ".join(["python -m trio_codex.bench", *argv]),
    }
    ui = _progress_ui()
    t0 = time.monotonic()
    if ui is None:
        results = trio.run(run_all, labels, scenarios, args.quick, args.budget,
                           lambda text: benchlib.progress(f"running {text} ..."), lambda: None)
    else:
        with ui:
            task = ui.add_task("start", total=len(scenarios) * len(specs))
            results = trio.run(run_all, labels, scenarios, args.quick, args.budget,
                               lambda text: ui.update(task, description=text), lambda: ui.advance(task))
    meta["wall_s"] = time.monotonic() - t0
    meta["machine"]["loadavg_end"] = _loadavg()
    doc = {"meta": meta, "results": results}
    return write(doc, args)


def write(doc: dict, args: argparse.Namespace) -> Path:
    """The report of ``doc`` into ``--out`` (and the README per ``--readme``)."""
    out = Path(args.out)
    readme = reporting.readme_target(args.readme, out, DEFAULT_OUT, benchlib.REPO / "README.md")
    return reporting.write_all(doc, out, plots=not args.no_plots, readme=readme)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m trio_codex.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ours", default="ours", help="the server under test: ours (default) or a command line")
    p.add_argument("--other", default="orig" if benchlib.orig_available() else "none",
                   help="the server to compare with: orig (the default when installed), none, or a command "
                        "line ending in `app-server --listen stdio://`")
    p.add_argument("--quick", action="store_true", help="smaller counts (~2 min; figures are noisier)")
    p.add_argument("--only", type=lambda s: [n for n in s.split(",") if n],
                   help=f"comma-separated scenarios from: {', '.join(BY_NAME)}")
    p.add_argument("--out", help=f"output folder (default {DEFAULT_OUT}; with --only, "
                                 f"{benchlib.RUN_ROOT / 'report'}, so that a partial run leaves the committed "
                                 "report and the README alone)")
    p.add_argument("--budget", type=float, default=300.0, help="bound on one scenario for one server, s")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots (no matplotlib needed)")
    p.add_argument("--readme", default="auto",
                   help="README whose marked benchmark table to rewrite: auto (the checkout's README when "
                        "--out is the default folder), a path, or none")
    p.add_argument("--compare", nargs=2, metavar=("OLD.json", "NEW.json"),
                   help="compare two runs' results.json instead of running (NEW/OLD per figure)")
    p.add_argument("--render", metavar="RESULTS.json",
                   help="write report.md, the plots and the README block from a run's results.json "
                        "into --out, without running anything")
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    if args.out is None:
        args.out = str(benchlib.RUN_ROOT / "report" if args.only else DEFAULT_OUT)
    if args.compare:
        print(reporting.compare(*(Path(a) for a in args.compare)))
        return
    if args.render:
        doc = reporting.load(Path(args.render))
        write(doc, args)
        reporting.print_summary(doc)
        return
    for name in args.only or ():
        if name not in BY_NAME:
            p.error(f"unknown scenario {name!r}; one of {', '.join(BY_NAME)}")
    if "orig" in (args.ours, args.other) and not benchlib.orig_available():
        p.error("the original is not installed here (--other none to run trio-codex alone)")
    path = run(args, argv)
    reporting.print_summary(reporting.load(path))
    print(f"report: {path.parent / 'report.md'}")


if __name__ == "__main__":
    main()
