"""kill -9 at random points (short form; ``bench/kill9.py`` is the long
one): nothing a client saw completed is lost, tool items included, every
rollout reads, every turn left open comes back interrupted, and each thread
goes on (``tests/harness/kill9.py`` says what a round does and checks)."""

from __future__ import annotations

import random
from pathlib import Path

from harness.kill9 import run_round
from trio_codex.transports.scripted_responses import ScriptedResponses

ROUNDS = 4


async def test_kill_9_at_random_points_loses_nothing_reported_completed(
        codex_home: Path, scripted: ScriptedResponses, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    rng = random.Random(9)
    seen = 0
    for n in range(ROUNDS):
        result = await run_round(codex_home, workspace, rng, requests=scripted.requests)
        assert result.ok, (n, result)
        seen += result.items_seen
    assert seen > 0
