"""When the disk fails the server: a full disk (here a file-size limit set on
the running server, which makes its writes fail with ``EFBIG`` as a full
disk makes them fail with ``ENOSPC``) fails the turn with a clear error,
leaves no torn line in the rollout, and the next turn works once there is
room again."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest

from harness import open_app_server
from trio_codex.runtime import rollout as r

needs_prlimit = pytest.mark.skipif(not hasattr(resource, "prlimit"), reason="resource.prlimit is Linux only")


@needs_prlimit
@pytest.mark.parametrize("room", [0, 40], ids=["no room", "room for part of a line"])
async def test_a_full_disk_fails_the_turn_leaves_no_torn_line_and_the_next_turn_writes_again(
        codex_home: Path, room: int) -> None:
    async with open_app_server(codex_home) as client:
        tid = await client.start_thread()
        await client.turn(tid, "before the disk fills")
        path = next((codex_home / "sessions").rglob(f"rollout-*-{tid}.jsonl"))
        size = path.stat().st_size
        pid = client.proc.pid
        _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
        # CPython ignores SIGXFSZ, so a write past the limit fails with EFBIG.
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (size + room, hard))
        _, msgs = await client.turn(tid, "[[deltas=3]] while the disk is full")
        failed = msgs[-1]["params"]["turn"]
        assert failed["status"] == "failed"
        assert failed["error"]["message"].startswith(f"cannot write the thread's rollout {path}: File too large")
        assert [m["params"]["error"]["message"] for m in msgs if m.get("method") == "error"] == [
            failed["error"]["message"]]
        assert path.read_bytes().endswith(b"\n") and path.stat().st_size == size

        resource.prlimit(pid, resource.RLIMIT_FSIZE, (hard, hard))
        _, msgs = await client.turn(tid, "after space is back")
        assert msgs[-1]["params"]["turn"]["status"] == "completed"
        assert (await client.request("thread/list", {}))["data"][0]["id"] == tid

    rollout = r.read_rollout(path)
    assert (rollout.bad_lines, rollout.torn_tail) == (0, False)
    async with open_app_server(codex_home) as client:
        await client.initialize()
        resumed = await client.request("thread/resume", {"threadId": tid})
    turns = resumed["thread"]["turns"]
    assert [t["status"] for t in turns] == ["completed", "completed"]
    assert turns[-1]["items"][0]["content"][0]["text"] == "after space is back"


@needs_prlimit
async def test_a_disk_that_fills_mid_turn_keeps_the_failed_turn_on_record(codex_home: Path) -> None:
    """The turn's start reached the disk, its reply did not: once there is
    room again, the turn's end is written before the next turn, so it
    resumes as failed, with the reason."""
    async with open_app_server(codex_home) as client:
        tid = await client.start_thread()
        await client.turn(tid, "before the disk fills")
        path = next((codex_home / "sessions").rglob(f"rollout-*-{tid}.jsonl"))
        pid = client.proc.pid
        _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
        # Room for the turn's start (some 1.5 KB), not for an 8 KB reply.
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (path.stat().st_size + 3000, hard))
        _, msgs = await client.turn(tid, "[[deltas=8000]] a long reply")
        failed = msgs[-1]["params"]["turn"]
        assert failed["status"] == "failed" and "File too large" in failed["error"]["message"]
        assert path.read_bytes().endswith(b"\n")
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (hard, hard))
        _, msgs = await client.turn(tid, "after space is back")
        assert msgs[-1]["params"]["turn"]["status"] == "completed"
        read = await client.request("thread/read", {"threadId": tid, "includeTurns": True})
    turns = read["thread"]["turns"]
    assert [t["status"] for t in turns] == ["completed", "failed", "completed"]
    assert turns[1]["error"]["message"] == failed["error"]["message"]
    assert [i["type"] for i in turns[1]["items"]] == ["userMessage"]
