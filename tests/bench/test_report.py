"""`python -m trio_codex.bench` end to end on a tiny scenario set: one
plain-turns scenario against our real server and the scripted model, with
a short budget. Checks what the report holds, never how fast anything was
(speed is measured in bench/, not asserted here)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
README = "# x\n\nbefore\n\n{begin}\nold table\n{end}\n\nafter\n"


def bench(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BENCH_RUN_DIR": str(cwd / "run")}
    return subprocess.run([sys.executable, "-m", "trio_codex.bench", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from trio_codex.bench.reporting import README_BEGIN, README_END

    root = tmp_path_factory.mktemp("bench")
    (root / "README.md").write_text(README.format(begin=README_BEGIN, end=README_END))
    plots = [] if HAS_MATPLOTLIB else ["--no-plots"]
    done = bench("--quick", "--only", "turns-1x20", "--other", "none", "--budget", "90", "--out", str(root / "rep"),
                 "--readme", str(root / "README.md"), *plots, cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    return root


def test_the_results_json_holds_every_turn_checked_and_its_latency(report: Path) -> None:
    doc = json.loads((report / "rep" / "results.json").read_text())
    figures = doc["results"]["turns-1x20"]["trio-codex"]
    assert "error" not in figures
    assert figures["turns"] == 20 and figures["bad"] == 0
    assert len(figures["lat_ms"]) == 20
    assert doc["meta"]["servers"][0]["label"] == "trio-codex"
    assert doc["meta"]["machine"]["cores"] == os.cpu_count()


def test_the_markdown_report_has_the_headline_table_and_the_scenario(report: Path) -> None:
    text = (report / "rep" / "report.md").read_text()
    assert "| figure | trio-codex |" in text
    assert "| turns/s, 1x20 threads x turns (100 deltas) |" in text
    assert "### Plain turns 1x20 (`turns-1x20`)" in text


def test_the_readme_block_is_rewritten_and_the_rest_kept(report: Path) -> None:
    text = (report / "README.md").read_text()
    assert "old table" not in text
    assert text.startswith("# x\n\nbefore\n\n") and text.endswith("\n\nafter\n")
    assert "[rep/report.md](rep/report.md)" in text and "| turns/s, 1x20" in text


@pytest.mark.skipif(not HAS_MATPLOTLIB, reason="matplotlib (the `bench` extra) is not installed")
def test_the_latency_cdf_is_drawn_and_shown_in_the_report(report: Path) -> None:
    assert (report / "rep" / "cdf-turns-1x20.png").read_bytes().startswith(b"\x89PNG")
    assert "![latency CDF, Plain turns 1x20](cdf-turns-1x20.png)" in (report / "rep" / "report.md").read_text()


def test_two_runs_compare_figure_by_figure(report: Path) -> None:
    results = str(report / "rep" / "results.json")
    done = bench("--compare", results, results, cwd=report)
    assert done.returncode == 0, done.stderr[-3000:]
    row = next(line for line in done.stdout.splitlines() if line.startswith("| turns/s, 1x20"))
    assert row.endswith("| 1.00 |")
