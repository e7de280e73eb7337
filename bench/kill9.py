"""kill -9 at random points, many times: does anything a client saw
completed get lost?

    /work/venv/bin/python bench/kill9.py [--rounds 120] [--seed 9] [--kill-within 3]

Each round (``tests/harness/kill9.py``; ``tests/conformance/test_kill9.py``
runs four): the server runs two threads at once, one with approvals asked
for every command (answered at random: accept, accept for the session,
decline), turns drawn from streamed replies, shell and unified exec
commands, patches, plans and parallel calls; SIGKILL falls at a random
moment within ``--kill-within`` seconds. A new server on the same
CODEX_HOME then resumes both threads and the round checks that every item
seen in ``item/completed`` came back field for field, every turn seen
completed kept its status, every turn left open came back ``interrupted``,
every rollout reads, torn last lines are gone once the thread writes again,
and each thread takes a new turn whose model request answers every call.

Prints the totals, where the kills fell (the last notification each thread
saw), and every failure. Ours only: the original keeps its history in
SQLite beside the rollout, which this client-side check does not see
apart.
"""

from __future__ import annotations

import random
import shutil
import sys
import time
from collections import Counter

import trio

from benchlib import REPO, RUN_ROOT, parser, progress

sys.path.insert(0, str(REPO / "tests"))

from harness import mock_config  # noqa: E402
from harness.kill9 import RoundResult, run_round  # noqa: E402
from trio_codex.transports.scripted_responses import ScriptedResponses  # noqa: E402


async def main(rounds: int, seed: int, kill_within: float) -> int:
    rng = random.Random(seed)
    root = RUN_ROOT / "kill9"
    shutil.rmtree(root, ignore_errors=True)
    workspace = root / "ws"
    workspace.mkdir(parents=True)
    results: list[RoundResult] = []
    started = time.monotonic()
    async with trio.open_nursery() as nursery:
        scripted = ScriptedResponses()
        await nursery.start(scripted.serve)
        for n in range(rounds):
            # A fresh CODEX_HOME every 20 rounds keeps the threads short.
            home = root / f"home-{n // 20}"
            if not home.exists():
                home.mkdir()
                (home / "config.toml").write_text(mock_config(scripted.base_url))
            result = await run_round(home, workspace, rng, kill_within=kill_within, requests=scripted.requests)
            results.append(result)
            if not result.ok:
                progress(f"round {n}: FAILED {result}")
            elif n % 10 == 9:
                progress(f"{n + 1} rounds, {time.monotonic() - started:.0f} s")
        nursery.cancel_scope.cancel()
    _report(results, time.monotonic() - started)
    return 0 if all(r.ok for r in results) else 1


def _report(results: list[RoundResult], seconds: float) -> None:
    def total(name: str) -> int:
        return sum(getattr(r, name) if isinstance(getattr(r, name), int) else len(getattr(r, name))
                   for r in results)

    phases: Counter[str] = Counter()
    for r in results:
        phases.update(r.phases)
    print(f"kill -9 rounds: {len(results)} in {seconds:.0f} s (kill within {max(r.kill_after for r in results):.2f} s)")
    rows = [
        ("items seen completed before the kill", total("items_seen")),
        ("  of which declined commands (not recorded, as the original)", total("declined_unrecorded")),
        ("items lost", total("lost")),
        ("items changed", total("changed")),
        ("turns seen completed", total("turns_seen_done")),
        ("turns left open, resumed interrupted", total("turns_left_open")),
        ("turns misreported", total("misreported")),
        ("rollout reads (every file of the home, each round)", total("rollouts")),
        ("rollouts unreadable", total("unreadable")),
        ("torn last lines after the kill", total("torn_tails")),
        ("torn last lines once written again", total("torn_after_recovery")),
        ("failures after the restart", total("failed_after")),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    print("where the kills fell (last notification per thread):")
    for phase, count in phases.most_common():
        print(f"  {phase:<{width}}  {count}")
    for r in results:
        for problem in (*r.lost, *r.changed, *r.misreported, *r.unreadable, *r.failed_after):
            print(f"  FAILED: {problem}")


if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--rounds", type=int, default=120)
    p.add_argument("--seed", type=int, default=9)
    p.add_argument("--kill-within", type=float, default=3.0)
    args = p.parse_args()
    raise SystemExit(trio.run(main, args.rounds, args.seed, args.kill_within))
