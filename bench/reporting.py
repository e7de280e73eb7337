"""The report's outputs from one run's results (see bench/suite.py): the raw
results as JSON, the markdown report with the headline table and ratios,
the PNG plots (matplotlib, imported only to draw them), the summary table
at the end of a run (rich), the README's marked table, and the comparison
of two runs' JSON.

A results document is ``{"meta": {...}, "results": {scenario: {server
label: figures}}}``; ``meta["servers"]`` lists the labels in column order
(trio-codex first).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

#: The headline figures: (scenario, key, title, format, better: "high"/"low").
FIGURES: list[tuple[str, str, str, str, str]] = [
    ("turns-1x20", "turns_per_s", "turns/s, 1x20 threads x turns (100 deltas)", ".1f", "high"),
    ("turns-10x5", "turns_per_s", "turns/s, 10x5", ".1f", "high"),
    ("turns-50x3", "turns_per_s", "turns/s, 50x3", ".1f", "high"),
    ("turns-1x20", "lat_p99", "turn latency p99, 1x20, ms", ".1f", "low"),
    ("turns-10x5", "lat_p50", "turn latency p50, 10x5, ms", ".1f", "low"),
    ("turns-10x5", "lat_p99", "turn latency p99, 10x5, ms", ".1f", "low"),
    ("turns-10x5", "ttfd_p50", "first delta p50, 10x5, ms", ".1f", "low"),
    ("turns-10x5", "cpu_turn_ms", "server CPU per turn, 10x5, ms", ".2f", "low"),
    ("turns-50x3", "cpu_turn_ms", "server CPU per turn, 50x3, ms", ".2f", "low"),
    ("deltas-200", "turns_per_s", "turns/s, 10x5 x 200 deltas", ".1f", "high"),
    ("deltas-200", "cpu_turn_ms", "server CPU per 200-delta turn, ms", ".2f", "low"),
    ("paced", "lat_p50", "turn latency p50, 20x2 x 200 deltas 5 ms apart, ms", ".0f", "low"),
    ("paced", "cpu_turn_ms", "server CPU per paced 200-delta turn, ms", ".1f", "low"),
    ("delta-cpu", "per_delta_us", "server CPU per streamed delta, bulk, µs", ".2f", "low"),
    ("delta-cpu", "paced_us", "server CPU per streamed delta, paced (0.5 ms apart), µs", ".1f", "low"),
    ("tool", "lat_p50", "tool turn (exec_command, sandboxed): latency p50, ms", ".1f", "low"),
    ("tool", "cpu_ms", "CPU per tool turn (process tree), ms", ".1f", "low"),
    ("startup", "init_p50", "spawn -> initialize answered, median ms", ".0f", "low"),
    ("startup", "first_turn_p50", "spawn -> first turn completed, median ms", ".0f", "low"),
    ("startup", "turn1_p50", "a fresh server's first turn: latency, median ms", ".1f", "low"),
    ("startup", "later_turn_p50", "its next three turns: latency, median ms", ".1f", "low"),
    ("startup", "idle_rss_mb", "idle RSS, MB", ".1f", "low"),
    ("loaded-200", "per_thread_kb", "RSS per loaded idle thread (the first ones), KB", ".1f", "low"),
    ("loaded-200", "start_cpu_ms", "server CPU per thread/start, ms", ".2f", "low"),
    ("history", "turns_page_ms", "history: thread/turns/list first page, ms", ".1f", "low"),
    ("history", "turns_page_p50", "history: thread/turns/list page p50 (10 more), ms", ".1f", "low"),
    ("history", "items_page_ms", "history: thread/items/list first page, ms", ".1f", "low"),
    ("history", "resume_ex_ms", "history: thread/resume excludeTurns, fresh server, ms", ".0f", "low"),
    ("history", "resume_again_ms", "history: thread/resume of the loaded thread (full turns), ms", ".0f", "low"),
    ("history", "read_warm_ms", "history: thread/read includeTurns (loaded), ms", ".0f", "low"),
    ("ws", "turns_s", "websocket clients: turns/s", ".1f", "high"),
    ("ws", "p99", "websocket: turn latency p99, ms", ".1f", "low"),
    ("ws", "cpu_turn", "websocket: server CPU per turn, ms", ".2f", "low"),
    ("sustained", "turns_per_s", "sustained load: turns/s", ".1f", "high"),
    ("sustained", "peak_rss_mb", "sustained load: peak RSS (VmHWM), MB", ".1f", "low"),
]

#: Issue 17's targets for trio-codex: (title, scenario, key, bound), the
#: bound a number or "other" (at most the other server's figure).
TARGETS: list[tuple[str, str, str, float | str]] = [
    ("spawn -> initialize answered <= 120 ms", "startup", "init_p50", 120.0),
    ("spawn -> first turn completed <= the other's", "startup", "first_turn_p50", "other"),
    ("a fresh server's first turn within 2x of its later turns (ratio)", "startup", "turn1_vs_later", 2.0),
    ("server CPU per paced delta <= 50 µs", "delta-cpu", "paced_us", 50.0),
    ("thread/turns/list first page <= the other's", "history", "turns_page_ms", "other"),
    ("thread/turns/list page p50 <= the other's", "history", "turns_page_p50", "other"),
    ("thread/items/list first page <= the other's", "history", "items_page_ms", "other"),
    ("RSS per loaded idle thread <= 50 KB from the first thread on", "loaded-200", "per_thread_kb", 50.0),
    ("server CPU per plain turn at 10x5 <= 2 ms", "turns-10x5", "cpu_turn_ms", 2.0),
]

README_BEGIN = "<!-- bench-report:begin (python -m trio_codex.bench rewrites this block) -->"
README_END = "<!-- bench-report:end -->"


# --- reading figures ----------------------------------------------------------------------


def load(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def labels(doc: dict) -> list[str]:
    return [s["label"] for s in doc["meta"]["servers"]]


def value(doc: dict, scenario: str, label: str, key: str) -> float | None:
    """A numeric figure, or None when the scenario did not run or failed."""
    v = doc["results"].get(scenario, {}).get(label, {}).get(key)
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v) else None


def fmt(v: float | None, spec: str) -> str:
    if v is None:
        return "–"
    if abs(v) >= 1000 and "," not in spec:
        spec = "," + spec
    return format(round(v) if spec.endswith("d") else v, spec)


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "–"
    r = a / b
    return f"{r:.3f}" if r < 0.1 else f"{r:.2f}"


def headline_rows(doc: dict) -> list[list[str]]:
    """One row per headline figure whose scenario ran: title, each server's
    value, and ours / other when there are two."""
    names = labels(doc)
    rows = []
    for scenario, key, title, spec, _ in FIGURES:
        if scenario not in doc["results"]:
            continue
        vals = [value(doc, scenario, n, key) for n in names]
        row = [title, *(fmt(v, spec) for v in vals)]
        if len(vals) == 2:
            row.append(ratio(vals[0], vals[1]))
        rows.append(row)
    return rows


def headline_header(doc: dict) -> list[str]:
    names = labels(doc)
    return ["figure", *names] + ([f"ratio {names[0]} / {names[1]}"] if len(names) == 2 else [])


def target_rows(doc: dict) -> list[list[str]]:
    """Each target whose scenario ran: the figure, the bound, met or not."""
    names = labels(doc)
    rows = []
    for title, scenario, key, bound in TARGETS:
        if scenario not in doc["results"]:
            continue
        ours = value(doc, scenario, names[0], key)
        limit = value(doc, scenario, names[1], key) if bound == "other" and len(names) > 1 else bound
        if not isinstance(limit, (int, float)):
            continue
        verdict = "–" if ours is None else "met" if ours <= limit else "**not met**"
        rows.append([title, fmt(ours, ".1f"), fmt(limit, ".1f"), verdict])
    return rows


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_line(doc: dict) -> str:
    m = doc["meta"]["machine"]
    return (f"{m['cores']}-core {m['cpu']}, {m['memory']}, Linux {m['kernel']}, Python {m['python']}; "
            f"load average {m['loadavg_start']} at the start, {m.get('loadavg_end', '?')} at the end")


# --- the markdown report -------------------------------------------------------------------


def _scalars(figures: dict) -> dict[str, Any]:
    return {k: v for k, v in figures.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "scenario_s"}


def _detail_spec(v: float | None) -> str:
    if v is None or float(v).is_integer():
        return ",d"
    return ".3g" if abs(v) < 1 else ",.1f"


def scenario_section(doc: dict, name: str, plots: list[str]) -> str:
    info = doc["meta"]["scenarios"][name]
    names = labels(doc)
    by = doc["results"].get(name, {})
    out = [f"### {info['title']} (`{name}`)", "", info["params"] + ".", ""]
    keys: list[str] = []
    for n in names:
        keys += [k for k in _scalars(by.get(n, {})) if k not in keys]
    rows = []
    for k in keys:
        vals = [value(doc, name, n, k) for n in names]
        row = [f"`{k}`", *(fmt(v, _detail_spec(v)) for v in vals)]
        if len(names) == 2:
            row.append(ratio(*vals))
        rows.append(row)
    if rows:
        out += [markdown_table(["figure", *names] + (["ratio"] if len(names) == 2 else []), rows), ""]
    for n in names:
        fig = by.get(n, {})
        if "error" in fig:
            out.append(f"- {n}: **{fig['error']}**")
        for problem in fig.get("problems") or []:
            out.append(f"- {n}: problem: {problem}")
        for note in fig.get("notes") or []:
            out.append(f"- {n}: {note}")
        if "scenario_s" in fig:
            out.append(f"- {n}: ran in {fig['scenario_s']:.0f} s")
    out.append("")
    cdf = f"cdf-{name}.png"
    if cdf in plots:
        out += [f"![latency CDF, {info['title']}]({cdf})", ""]
    return "\n".join(out)


def report_md(doc: dict, plots: list[str]) -> str:
    meta = doc["meta"]
    names = labels(doc)
    servers = "; ".join(f"{s['label']}: `{' '.join(s['argv'])}`" for s in meta["servers"])
    parts = [
        "# Benchmark report",
        "",
        f"Generated by `{meta['command'].strip()}` on {meta['date']} in {meta['wall_s'] / 60:.1f} min"
        f"{' (--quick: smaller counts, noisier figures)' if meta['quick'] else ''}.",
        "",
        f"- machine: {machine_line(doc)}",
        f"- trio-codex at commit {meta['commit']}",
        f"- servers: {servers}",
        "- the model: the scripted Responses server (transports/scripted_responses.py) in its own process, "
        "on loopback; its CPU is not counted",
        "- CPU and RSS: the server's process tree from /proc; latencies: the client's clock",
        "",
        "## Headline figures",
        "",
    ]
    if len(names) == 2:
        parts += [f"Ratio = {names[0]} / {names[1]}: below 1 is better for times, CPU and memory, above 1 "
                  "for turns/s.", ""]
    parts += [markdown_table(headline_header(doc), headline_rows(doc)), ""]
    targets = target_rows(doc)
    if targets:
        parts += ["## Targets (issue 17)", "",
                  markdown_table(["target", labels(doc)[0], "bound", ""], targets), ""]
    if "load-over-time.png" in plots:
        parts += ["## Under load over time", "",
                  "Turns completed per second and the server's RSS, sampled every 0.1 s during the "
                  "sustained scenario.", "", "![turns/s and RSS over time](load-over-time.png)", ""]
    parts += ["## Scenarios", ""]
    parts += [scenario_section(doc, name, plots) for name in meta["scenarios"]]
    parts += ["Raw results (every figure, the latencies and samples): `results.json`; compare two runs with "
              "`python -m trio_codex.bench --compare OLD.json NEW.json`.", ""]
    return "\n".join(parts)


# --- plots ------------------------------------------------------------------------------------


#: The window of the turns/s curve over time, s.
RATE_WINDOW = 1.0


def _rate(samples: list[list[float]], window: float) -> list[float]:
    """Turns completed per second at each sample after the first, over the
    last ``window`` seconds (or since the first sample)."""
    out = []
    j = 0
    for i in range(1, len(samples)):
        while samples[i][0] - samples[j][0] > window and j < i - 1:
            j += 1
        dt = samples[i][0] - samples[j][0]
        out.append((samples[i][1] - samples[j][1]) / dt if dt > 0 else 0.0)
    return out


def plot_all(doc: dict, out: Path) -> list[str]:
    """The PNGs: a latency CDF per scenario with raw latencies, and turns/s
    and RSS over time under the sustained load. Returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = labels(doc)
    made: list[str] = []
    for name, info in doc["meta"]["scenarios"].items():
        key = info.get("cdf")
        series = {n: sorted(doc["results"].get(name, {}).get(n, {}).get(key) or []) for n in names} if key else {}
        series = {n: s for n, s in series.items() if s}
        if not series:
            continue
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
        for n, s in series.items():
            ax.step([s[0], *s], [0.0, *((i + 1) / len(s) for i in range(len(s)))], where="post",
                    label=f"{n} (n={len(s)})")
        lo = min(s[0] for s in series.values())
        hi = max(s[-1] for s in series.values())
        if lo > 0 and hi / lo > 20:
            ax.set_xscale("log")
        ax.set_xlabel("spawn -> initialize answered, ms" if key == "init_ms" else "turn latency, ms")
        ax.set_ylabel("fraction of turns" if key != "init_ms" else "fraction of starts")
        ax.set_title(f"{info['title']}: {info['params']}", fontsize=8, wrap=True)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / f"cdf-{name}.png", dpi=100)
        plt.close(fig)
        made.append(f"cdf-{name}.png")
    samples = {n: doc["results"].get("sustained", {}).get(n, {}).get("samples") for n in names}
    samples = {n: s for n, s in samples.items() if s and len(s) > 1}
    if samples:
        fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(6.4, 5.6), sharex=True)
        for n, s in samples.items():
            t = [row[0] for row in s]
            ax1.plot(t[1:], _rate(s, RATE_WINDOW), marker=".", label=n)
            ax2.plot(t, [row[2] for row in s], marker=".", label=n)
        ax1.set_ylabel(f"turns completed / s\n(over {RATE_WINDOW:g} s)")
        ax2.set_ylabel("server RSS, MB")
        ax2.set_xlabel("seconds into the turn phase")
        ax1.set_title(f"Sustained load: {doc['meta']['scenarios']['sustained']['params']}", fontsize=8)
        for ax in (ax1, ax2):
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "load-over-time.png", dpi=100)
        plt.close(fig)
        made.append("load-over-time.png")
    return made


# --- writing ---------------------------------------------------------------------------------


def readme_target(arg: str, out: Path, default_out: Path, readme: Path) -> Path | None:
    """The README to rewrite: ``auto`` is ``readme`` (the checkout's) when
    the report goes to its default folder and that README exists."""
    if arg == "none":
        return None
    if arg == "auto":
        return readme if out.resolve() == default_out.resolve() and readme.exists() else None
    return Path(arg)


def readme_block(doc: dict, report_rel: str) -> str:
    meta = doc["meta"]
    return "\n".join([
        README_BEGIN,
        f"From [{report_rel}]({report_rel}) (`python -m trio_codex.bench`; each scenario's size and every "
        f"figure are there), {meta['date']}: {machine_line(doc)}.",
        "",
        markdown_table(headline_header(doc), headline_rows(doc)),
        "",
        "Targets (issue 17), from the same run:",
        "",
        markdown_table(["target", labels(doc)[0], "bound", ""], target_rows(doc)),
        README_END,
    ])


def update_readme(readme: Path, doc: dict, report: Path) -> bool:
    """Rewrite the marked block of ``readme``; False when it has no markers."""
    text = readme.read_text()
    begin, end = text.find(README_BEGIN), text.find(README_END)
    if begin < 0 or end < begin:
        return False
    rel = Path(report).resolve().relative_to(readme.resolve().parent).as_posix()
    readme.write_text(text[:begin] + readme_block(doc, rel) + text[end + len(README_END):])
    return True


def write_all(doc: dict, out: Path, *, plots: bool = True, readme: Path | None = None) -> Path:
    """results.json, the PNGs (unless ``plots`` is false), report.md, and
    the README's block; returns the path of results.json."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    path.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")
    made = plot_all(doc, out) if plots else []
    (out / "report.md").write_text(report_md(doc, made))
    if readme is not None and not update_readme(readme, doc, out / "report.md"):
        print(f"{readme} has no `{README_BEGIN}` block; not rewritten")
    return path


# --- the summary and the comparison -------------------------------------------------------


def print_summary(doc: dict) -> None:
    """The headline table on the terminal (rich when installed)."""
    header, rows = headline_header(doc), headline_rows(doc)
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(markdown_table(header, rows))
        return
    table = Table(title=f"trio-codex bench, {doc['meta']['date']}", title_justify="left")
    for i, h in enumerate(header):
        table.add_column(h, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    console = Console()
    if not console.is_terminal:  # a log file: no wrapping at 80 columns
        console = Console(width=160)
    console.print(table)


def compare(old_path: Path, new_path: Path) -> str:
    """A markdown table of the headline figures of two runs, per server
    label present in both: old, new, and new / old."""
    old, new = load(old_path), load(new_path)
    common = [n for n in labels(new) if n in labels(old)]
    header = ["figure"]
    for n in common:
        header += [f"{n} old", f"{n} new", "new / old"]
    rows = []
    for scenario, key, title, spec, _ in FIGURES:
        if scenario not in old["results"] and scenario not in new["results"]:
            continue
        row = [title]
        for n in common:
            a, b = value(old, scenario, n, key), value(new, scenario, n, key)
            row += [fmt(a, spec), fmt(b, spec), ratio(b, a)]
        rows.append(row)
    return "\n".join([f"old: {old_path} ({old['meta']['date']}, {old['meta']['commit']})",
                      f"new: {new_path} ({new['meta']['date']}, {new['meta']['commit']})", "",
                      markdown_table(header, rows)])
