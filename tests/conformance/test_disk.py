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
from trio_codex.runtime.persistence import rollout as r

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


@needs_prlimit
async def test_name_fork_and_revert_on_a_full_disk_answer_why_and_leave_every_file_whole(codex_home: Path) -> None:
    async with open_app_server(codex_home) as client:
        tid = await client.start_thread()
        await client.turn(tid, "first")
        second, _ = await client.turn(tid, "second")
        path = next((codex_home / "sessions").rglob(f"rollout-*-{tid}.jsonl"))
        before = sorted(p.name for p in codex_home.rglob("*"))
        rollout = path.read_bytes()
        pid = client.proc.pid
        _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (1, hard))
        calls = {"thread/name/set": {"threadId": tid, "name": "full"},
                 "thread/fork": {"threadId": tid},
                 "thread/revert": {"threadId": tid, "beforeTurnId": second["turn"]["id"]}}
        for method, params in calls.items():
            error = (await client.call(method, params))["error"]
            # The line it could not append, or the index behind it (SQLite
            # words the same failure its own way).
            assert error["code"] == -32603, method
            assert ("File too large (os error 27)" in error["message"]
                    or error["message"].endswith("trio_codex_threads.sqlite: disk I/O error")), error
        made = {p.name for p in codex_home.rglob("*")} - set(before)
        assert made <= {"session_index.jsonl", "trio_codex_threads.sqlite-shm", "trio_codex_threads.sqlite-wal"}
        assert not (codex_home / "session_index.jsonl").exists() or not (codex_home / "session_index.jsonl").stat().st_size
        assert path.read_bytes() == rollout
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (hard, hard))
        assert await client.request("thread/name/set", {"threadId": tid, "name": "room again"}) == {}
        await client.request("thread/revert", {"threadId": tid, "beforeTurnId": second["turn"]["id"]})
        read = await client.request("thread/read", {"threadId": tid, "includeTurns": True})
        assert len(read["thread"]["turns"]) == 1
        _, msgs = await client.turn(tid, "and on")
        assert msgs[-1]["params"]["turn"]["status"] == "completed"
    assert (codex_home / "session_index.jsonl").read_text().count("\n") == 1
