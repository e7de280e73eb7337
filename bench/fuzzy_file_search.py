"""fuzzyFileSearch on a 100,000-file tree: ours beside the original.

Question: how long does one ``fuzzyFileSearch`` take over a large
repository (a Git tree with a .gitignore), cold and warm, and do both
servers return the same best matches?

    .venv/bin/python bench/fuzzy_file_search.py [--files 100000] [--runs 5]

Builds ``--files`` empty files under a scratch Git tree (1,000 directories
of 100, a tenth of them ignored), starts each server over stdio and times
request -> response for a few queries (median of ``--runs``); prints the
top-5 paths each server found for each query. Then a session:
``sessionStart`` plus the first ``sessionUpdate`` until its
``sessionUpdated`` (the walk and the first ranking), and each later
query's ``sessionUpdate`` until its ``sessionUpdated``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from harness import ORIGINAL_BIN, OURS, open_app_server  # noqa: E402

QUERIES = ["main", "src/mod", "f99", "zzzq"]


def build(root: Path, files: int) -> None:
    (root / ".git").mkdir(parents=True)
    (root / ".gitignore").write_text("ignored*/\n")
    for d in range(files // 100):
        sub = root / (f"ignored{d}" if d % 10 == 9 else f"src/mod{d}")
        sub.mkdir(parents=True)
        for f in range(100):
            (sub / (f"main{f}.rs" if f == 0 else f"f{f}.txt")).touch()


async def measure(program: tuple[str, ...], home: Path, root: Path, runs: int) -> dict[str, tuple[float, list]]:
    out = {}
    async with open_app_server(home, program=program) as client:
        await client.initialize()
        for query in QUERIES:
            times, files = [], []
            for _ in range(runs):
                start = time.perf_counter()
                msg = await client.call("fuzzyFileSearch", {"query": query, "roots": [str(root)]})
                times.append(time.perf_counter() - start)
                files = [f["path"] for f in msg["result"]["files"][:5]]
            out[query] = (statistics.median(times), files)
    return out


async def measure_session(program: tuple[str, ...], home: Path, root: Path) -> list[tuple[str, float]]:
    out = []
    async with open_app_server(home, program=program) as client:
        await client.initialize(experimentalApi=True)
        start = time.perf_counter()
        await client.request("fuzzyFileSearch/sessionStart", {"sessionId": "s", "roots": [str(root)]})
        for n, query in enumerate(QUERIES):
            if n:
                start = time.perf_counter()
            await client.request("fuzzyFileSearch/sessionUpdate", {"sessionId": "s", "query": query})
            await client.until(lambda m, q=query: m.get("method") == "fuzzyFileSearch/sessionUpdated"
                               and m["params"]["query"] == q)
            out.append((("start+" if n == 0 else "") + query, time.perf_counter() - start))
    return out


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root, home = Path(tmp) / "repo", Path(tmp) / "home"
        home.mkdir()
        build(root, args.files)
        servers = {"ours": OURS}
        if ORIGINAL_BIN.exists():
            servers["original"] = (str(ORIGINAL_BIN),)
        for name, program in servers.items():
            for query, (median, top) in (await measure(program, home, root, args.runs)).items():
                print(f"{name:9} {query!r:10} {median * 1000:8.0f} ms  {top}")
            for what, seconds in await measure_session(program, home, root):
                print(f"{name:9} session {what!r:16} {seconds * 1000:8.0f} ms")


if __name__ == "__main__":
    trio.run(main)
