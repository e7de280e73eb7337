"""``notify = [...]`` in config.toml: the program runs after each completed
turn with the original's payload as its last argument, beside the turns,
never in their way."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import trio

from harness import TIMEOUT, open_app_server, run_exec

NOTIFIER = Path(__file__).parent.parent / "fixtures" / "notifier.py"


def notify_config(out: Path, *extra: str) -> str:
    return "notify=" + json.dumps([sys.executable, str(NOTIFIER), str(out), *extra])


async def payloads(out: Path, count: int) -> list[dict[str, Any]]:
    """The first ``count`` payloads the notifier wrote, oldest first."""
    with trio.fail_after(TIMEOUT):
        while len(files := sorted(out.glob("payload-*.json"), key=lambda p: p.stat().st_mtime_ns)) < count:
            await trio.sleep(0.02)
    return [json.loads(f.read_text()) for f in files]


async def test_notify_runs_after_each_completed_turn_with_the_originals_payload(codex_home: Path) -> None:
    out = codex_home.parent / "notified"
    out.mkdir()
    async with open_app_server(codex_home, notify_config(out)) as client:
        thread_id = await client.start_thread()
        first, _ = await client.turn(thread_id, "[[deltas=2]] first")
        await client.turn(thread_id, '[[status=400 message="no such model"]] failing')
        third, _ = await client.turn(thread_id, "third")
        seen = await payloads(out, 2)
    by_turn = {p["turn-id"]: p for p in seen}
    assert set(by_turn) == {first["turn"]["id"], third["turn"]["id"]}
    assert list(by_turn[first["turn"]["id"]]) == ["type", "thread-id", "turn-id", "cwd", "client", "input-messages",
                                                  "last-assistant-message"]
    assert by_turn[first["turn"]["id"]] == {
        "type": "agent-turn-complete", "thread-id": thread_id, "turn-id": first["turn"]["id"],
        "cwd": os.getcwd(), "client": "trio_codex_tests", "input-messages": ["[[deltas=2]] first"],
        "last-assistant-message": "first"}
    assert by_turn[third["turn"]["id"]]["input-messages"] == [
        "[[deltas=2]] first", '[[status=400 message="no such model"]] failing', "third"]


async def test_exec_notifies_as_the_client_codex_exec(codex_home: Path) -> None:
    out = codex_home.parent / "notified"
    out.mkdir()
    done = await run_exec(codex_home, "--skip-git-repo-check", "-c", notify_config(out), "hello")
    assert done.returncode == 0
    (payload,) = await payloads(out, 1)
    assert payload["client"] == "codex_exec" and payload["input-messages"] == ["hello"]


async def test_a_hanging_notifier_does_not_hold_up_the_next_turn(codex_home: Path) -> None:
    out = codex_home.parent / "notified"
    out.mkdir()
    async with open_app_server(codex_home, notify_config(out, "hold")) as client:
        thread_id = await client.start_thread()
        await client.turn(thread_id, "first")
        await payloads(out, 1)
        # The first notifier holds until released: the next turn runs anyway.
        await client.turn(thread_id, "second")
        await payloads(out, 2)
        assert not list(out.glob("done-*"))
        (out / "release").write_text("")
        with trio.fail_after(TIMEOUT):
            while len(list(out.glob("done-*"))) < 2:
                await trio.sleep(0.02)
