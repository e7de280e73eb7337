"""Threads that last: rollouts on disk, the listing index, and resuming a
thread in a new server process, over real pipes."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import trio

from harness import TIMEOUT, RpcError, open_app_server
from trio_codex.transports.scripted_responses import ScriptedResponses

FIXTURES = Path(__file__).parent.parent / "fixtures" / "original"


def texts(turn: dict) -> list[str]:
    out = []
    for item in turn["items"]:
        if item["type"] == "userMessage":
            out.append(item["content"][0]["text"])
        elif item["type"] == "agentMessage":
            out.append(item["text"])
    return out


async def test_a_thread_resumes_with_its_history_in_a_new_server(
        codex_home: Path, scripted: ScriptedResponses) -> None:
    async with open_app_server(codex_home) as client:
        tid = await client.start_thread()
        await client.turn(tid, "first question")
        await client.turn(tid, "second question")
    rollouts = list((codex_home / "sessions").rglob(f"rollout-*-{tid}.jsonl"))
    assert len(rollouts) == 1

    async with open_app_server(codex_home) as client:
        await client.initialize()
        listed = await client.request("thread/list", {})
        assert [t["id"] for t in listed["data"]] == [tid]
        assert listed["data"][0]["status"] == {"type": "notLoaded"}
        assert listed["data"][0]["preview"] == "first question"
        read = await client.request("thread/read", {"threadId": tid, "includeTurns": True})
        assert [texts(t) for t in read["thread"]["turns"]] == [
            ["first question", "first question"], ["second question", "second question"]]
        resumed = await client.request("thread/resume", {"threadId": tid})
        assert resumed["thread"]["id"] == tid and len(resumed["thread"]["turns"]) == 2
        usage = await client.next_message()
        assert usage["method"] == "thread/tokenUsage/updated"
        assert usage["params"]["tokenUsage"]["total"]["totalTokens"] > 0
        assert await client.request("thread/loaded/list", {}) == {"data": [tid], "nextCursor": None}
        _, msgs = await client.turn(tid, "third question")
        assert msgs[-1]["params"]["turn"]["status"] == "completed"
    history = json.dumps(scripted.requests[-1].body["input"])
    assert all(q in history for q in ("first question", "second question", "third question"))
    # The resumed thread appended to the same file.
    assert list((codex_home / "sessions").rglob(f"rollout-*-{tid}.jsonl")) == rollouts


async def test_kill_9_mid_turn_loses_nothing_reported_completed(codex_home: Path) -> None:
    async with open_app_server(codex_home) as client:
        tid = await client.start_thread()
        await client.turn(tid, "kept answer")
        await client.request("turn/start", {"threadId": tid, "input": [
            {"type": "text", "text": "[[deltas=10000 delay_ms=2]] cut short"}]})
        await client.until(lambda m: m.get("method") == "item/agentMessage/delta")
        client.proc.send_signal(signal.SIGKILL)
        with trio.fail_after(TIMEOUT):
            await client.proc.wait()
    async with open_app_server(codex_home) as client:
        await client.initialize()
        resumed = await client.request("thread/resume", {"threadId": tid})
    first, second = resumed["thread"]["turns"]
    assert first["status"] == "completed" and texts(first) == ["kept answer", "kept answer"]
    assert second["status"] == "interrupted"
    assert texts(second) == ["[[deltas=10000 delay_ms=2]] cut short"]


async def test_a_torn_last_line_is_skipped_not_fatal(codex_home: Path) -> None:
    async with open_app_server(codex_home) as client:
        tid = await client.start_thread()
        await client.turn(tid, "before the tear")
    rollout = next((codex_home / "sessions").rglob(f"rollout-*-{tid}.jsonl"))
    with rollout.open("ab") as f:
        f.write(b'{"timestamp":"2026-11-24T12:00:00.000Z","type":"event_msg","payload":{"type":"tas')
    async with open_app_server(codex_home) as client:
        await client.initialize()
        resumed = await client.request("thread/resume", {"threadId": tid})
    assert texts(resumed["thread"]["turns"][0]) == ["before the tear", "before the tear"]


async def test_a_rollout_written_by_the_original_lists_reads_and_resumes(codex_home: Path) -> None:
    shutil.copytree(FIXTURES / "sessions", codex_home / "sessions")
    shutil.copy(FIXTURES / "session_index.jsonl", codex_home / "session_index.jsonl")
    tid = "01a20d66-ed08-7673-88b9-a1d4a7463d58"
    expected = json.loads((FIXTURES / f"{tid}.expected.json").read_text())
    async with open_app_server(codex_home) as client:
        await client.initialize()
        listed = await client.request("thread/list", {"limit": 10})
        assert tid in [t["id"] for t in listed["data"]]
        read = await client.request("thread/read", {"threadId": tid, "includeTurns": True})
        resumed = await client.request("thread/resume", {"threadId": tid})
    want = expected["turns"]
    assert [t["status"] for t in resumed["thread"]["turns"]] == [t["status"] for t in want]
    assert [texts(t) for t in read["thread"]["turns"]] == [texts(t) for t in want]


async def test_unknown_threads_get_the_originals_errors(codex_home: Path) -> None:
    async with open_app_server(codex_home) as client:
        await client.initialize()
        read = await client.call("thread/read", {"threadId": "nope"})
        resume = await client.call("thread/resume", {"threadId": "nope"})
    assert read["error"] == {"code": -32600, "message": "thread not loaded: nope"}
    assert resume["error"] == {"code": -32600, "message": "no rollout found for thread id nope"}


async def test_ephemeral_threads_write_nothing(codex_home: Path) -> None:
    async with open_app_server(codex_home) as client:
        await client.initialize()
        tid = (await client.request("thread/start", {"ephemeral": True}))["thread"]["id"]
        await client.next_message()
        await client.turn(tid, "gone tomorrow")
    assert not list(codex_home.rglob("rollout-*.jsonl"))


async def test_name_archive_and_unarchive_in_the_originals_order(codex_home: Path) -> None:
    async with open_app_server(codex_home) as client:
        tid = await client.start_thread()
        await client.turn(tid, "keep me")
        assert await client.request("thread/name/set", {"threadId": tid, "name": "Kept"}) == {}
        renamed = await client.next_message()
        assert renamed["method"] == "thread/name/updated"
        assert renamed["params"] == {"threadId": tid, "threadName": "Kept"}
        assert (await client.request("thread/read", {"threadId": tid}))["thread"]["name"] == "Kept"

        response = await client.call("thread/archive", {"threadId": tid})
        await client.until(lambda m: m.get("method") == "thread/archived")
        index = client.log.index(response)
        before, after = client.log[index - 1], client.log[index + 1]
        assert before["params"] == {"threadId": tid, "status": {"type": "notLoaded"}}  # unloaded first
        assert response["result"] == {} and after["method"] == "thread/archived"
        assert (await client.request("thread/list", {}))["data"] == []
        archived = (await client.request("thread/list", {"archived": True}))["data"]
        assert [t["id"] for t in archived] == [tid] and archived[0]["name"] == "Kept"
        assert "archived_sessions" in archived[0]["path"]

        unarchived = await client.request("thread/unarchive", {"threadId": tid})
        assert unarchived["thread"]["id"] == tid and "/sessions/" in unarchived["thread"]["path"]
        await client.until(lambda m: m.get("method") == "thread/unarchived")
        resumed = await client.request("thread/resume", {"threadId": tid})
        assert texts(resumed["thread"]["turns"][0]) == ["keep me", "keep me"]
    assert "Kept" in (codex_home / "session_index.jsonl").read_text()


async def test_fork_copies_history_through_a_turn_into_a_new_thread(
        codex_home: Path, scripted: ScriptedResponses) -> None:
    async with open_app_server(codex_home) as client:
        tid = await client.start_thread()
        first = (await client.turn(tid, "turn one"))[0]["turn"]["id"]
        await client.turn(tid, "turn two")
        fork = await client.request("thread/fork", {"threadId": tid, "lastTurnId": first})
        new = fork["thread"]
        assert new["id"] != tid and new["forkedFromId"] == tid
        assert [texts(t) for t in new["turns"]] == [["turn one", "turn one"]]
        started = await client.until(lambda m: m.get("method") == "thread/started")
        assert started[-1]["params"]["thread"]["id"] == new["id"]
        await client.turn(new["id"], "turn three")
        listed = {t["id"] for t in (await client.request("thread/list", {}))["data"]}
        assert listed == {tid, new["id"]}
        ephemeral = await client.request("thread/fork", {"threadId": tid, "ephemeral": True})
        assert ephemeral["thread"]["ephemeral"] is True and len(ephemeral["thread"]["turns"]) == 2
    history = json.dumps(scripted.requests[-1].body["input"])
    assert "turn one" in history and "turn three" in history and "turn two" not in history
    assert len(list(codex_home.rglob("rollout-*.jsonl"))) == 2  # the ephemeral fork wrote nothing


async def test_delete_removes_the_thread_and_says_so(codex_home: Path) -> None:
    async with open_app_server(codex_home) as client:
        tid = await client.start_thread()
        await client.turn(tid, "short-lived")
        assert await client.request("thread/delete", {"threadId": tid}) == {}
        await client.until(lambda m: m.get("method") == "thread/deleted" and m["params"] == {"threadId": tid})
        assert (await client.request("thread/list", {}))["data"] == []
        gone = await client.call("thread/resume", {"threadId": tid})
        assert gone["error"]["message"] == f"no rollout found for thread id {tid}"
    assert not list(codex_home.rglob("rollout-*.jsonl"))


async def test_turns_and_items_page_both_ways(codex_home: Path) -> None:
    async with open_app_server(codex_home) as client:
        tid = await client.start_thread()
        for n in range(5):
            await client.turn(tid, f"question {n}")
        newest = await client.request("thread/turns/list", {"threadId": tid, "limit": 2})
        assert [texts(t)[-1] for t in newest["data"]] == ["question 4", "question 3"]  # summary: the answer
        assert all(t["itemsView"] == "summary" for t in newest["data"])
        assert newest["backwardsCursor"] is None
        older = await client.request("thread/turns/list", {"threadId": tid, "limit": 2,
                                                           "cursor": newest["nextCursor"]})
        assert [texts(t)[-1] for t in older["data"]] == ["question 2", "question 1"]
        back = await client.request("thread/turns/list", {"threadId": tid, "limit": 2,
                                                          "cursor": older["backwardsCursor"]})
        assert back["data"] == newest["data"]
        full = await client.request("thread/turns/list", {"threadId": tid, "itemsView": "full",
                                                          "sortDirection": "asc", "limit": 1})
        assert texts(full["data"][0]) == ["question 0", "question 0"]
        items = await client.request("thread/items/list", {"threadId": tid, "limit": 3})
        assert [i["item"]["type"] for i in items["data"]] == ["userMessage", "agentMessage", "userMessage"]
        assert items["nextCursor"] is not None
        one_turn = full["data"][0]["id"]
        only = await client.request("thread/items/list", {"threadId": tid, "turnId": one_turn})
        assert {i["turnId"] for i in only["data"]} == {one_turn} and only["nextCursor"] is None
        bad = await client.call("thread/turns/list", {"threadId": tid, "cursor": "junk"})
        assert bad["error"]["code"] == -32600 and "invalid cursor" in bad["error"]["message"]


async def test_history_pages_of_a_loaded_thread_without_a_rollout_are_empty(codex_home: Path) -> None:
    async with open_app_server(codex_home) as client:
        tid = await client.start_thread()  # the TUI pages a new thread at once, before any turn
        ephemeral = (await client.request("thread/start", {"ephemeral": True}))["thread"]["id"]
        for thread in (tid, ephemeral):
            for method in ("thread/turns/list", "thread/items/list"):
                page = await client.request(method, {"threadId": thread, "limit": 1, "sortDirection": None})
                assert page == {"data": [], "nextCursor": None, "backwardsCursor": None}


async def test_a_running_turn_reads_in_progress_as_the_original(codex_home: Path) -> None:
    async with open_app_server(codex_home) as client:
        tid = await client.start_thread()
        await client.turn(tid, "first")
        slow = (await client.request("turn/start", {"threadId": tid, "input": [
            {"type": "text", "text": "[[deltas=40 delay_ms=50]] slow"}]}))["turn"]["id"]
        await client.until(lambda m: m.get("method") == "item/agentMessage/delta")
        read = (await client.request("thread/read", {"threadId": tid, "includeTurns": True}))["thread"]["turns"]
        assert [(t["status"], [i["type"] for i in t["items"]]) for t in read] == [
            ("completed", ["userMessage", "agentMessage"]), ("inProgress", ["userMessage"])]
        assert read[1]["id"] == slow and read[1]["completedAt"] is None
        listed = (await client.request("thread/turns/list", {"threadId": tid}))["data"]
        assert [t["status"] for t in listed] == ["inProgress", "completed"]
        resumed = (await client.request("thread/resume", {"threadId": tid}))["thread"]["turns"]
        assert resumed[-1]["status"] == "inProgress"
        await client.request("turn/interrupt", {"threadId": tid, "turnId": slow})
        await client.until(lambda m: m.get("method") == "turn/completed")
        read = (await client.request("thread/read", {"threadId": tid, "includeTurns": True}))["thread"]["turns"]
        assert read[-1]["status"] == "interrupted"


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
async def test_a_new_rollout_records_the_git_info_of_its_cwd_as_the_original(
        codex_home: Path, tmp_path: Path) -> None:
    repo, elsewhere = tmp_path / "repo", tmp_path / "elsewhere"
    elsewhere.mkdir()
    url = "https://github.com/example/repo.git"
    for args in (["init", "-q", "-b", "feature-x", str(repo)], ["-C", str(repo), "commit", "-q", "--allow-empty",
                                                                 "-m", "first"],
                 ["-C", str(repo), "remote", "add", "origin", url]):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], check=True)
    sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=True, capture_output=True,
                         text=True).stdout.strip()
    async with open_app_server(codex_home) as client:
        await client.initialize()
        tid = (await client.request("thread/start", {"cwd": str(repo)}))["thread"]["id"]
        other = (await client.request("thread/start", {"cwd": str(elsewhere)}))["thread"]["id"]
        # As 0.169: nothing before the first turn, which writes the rollout.
        assert (await client.request("thread/read", {"threadId": tid}))["thread"]["gitInfo"] is None
        for thread in (tid, other):
            await client.turn(thread, "hi")
        expected = {"sha": sha, "branch": "feature-x", "originUrl": url}
        assert (await client.request("thread/read", {"threadId": tid}))["thread"]["gitInfo"] == expected
        assert (await client.request("thread/read", {"threadId": other}))["thread"]["gitInfo"] is None
        listed = {t["id"]: t["gitInfo"] for t in (await client.request("thread/list", {}))["data"]}
        assert listed == {tid: expected, other: None}
    [rollout] = (codex_home / "sessions").rglob(f"*{tid}.jsonl")
    meta = json.loads(rollout.read_text().splitlines()[0])["payload"]
    assert meta["git"] == {"commit_hash": sha, "branch": "feature-x", "repository_url": url}


async def test_metadata_update_patches_git_info_loaded_or_not_and_survives_a_restart(codex_home: Path) -> None:
    async with open_app_server(codex_home) as client:
        tid = await client.start_thread()
        # A loaded thread before its first turn: kept by the thread itself.
        early = await client.request("thread/metadata/update", {"threadId": tid, "gitInfo": {"sha": "abc"}})
        assert early["thread"]["gitInfo"] == {"sha": "abc", "branch": None, "originUrl": None}
        assert early["thread"]["turns"] == []
        await client.turn(tid, "a turn to store it")
        patched = await client.request("thread/metadata/update", {"threadId": tid, "gitInfo": {
            "branch": "main", "originUrl": "https://example.com/r.git"}})
        assert patched["thread"]["gitInfo"] == {"sha": "abc", "branch": "main",
                                                 "originUrl": "https://example.com/r.git"}
        for params, message in [
                ({"threadId": tid}, "thread metadata update must include at least one field"),
                ({"threadId": tid, "gitInfo": None}, "thread metadata update must include at least one field"),
                ({"threadId": tid, "gitInfo": {}}, "gitInfo must include at least one field"),
                ({"threadId": tid, "gitInfo": {"sha": "  "}}, "gitInfo.sha must not be empty"),
                ({"threadId": "01a20d66-0000-7000-8000-000000000000", "gitInfo": {"sha": "x"}},
                 "no rollout found for thread id 01a20d66-0000-7000-8000-000000000000")]:
            with pytest.raises(RpcError) as caught:
                await client.request("thread/metadata/update", params)
            assert (caught.value.code, caught.value.message) == (-32600, message)
    async with open_app_server(codex_home) as client:
        await client.initialize()
        # Not loaded: the index row is patched; null clears a field.
        cleared = await client.request("thread/metadata/update", {"threadId": tid, "gitInfo": {"sha": None}})
        assert cleared["thread"]["status"] == {"type": "notLoaded"}
        assert cleared["thread"]["gitInfo"] == {"sha": None, "branch": "main",
                                                 "originUrl": "https://example.com/r.git"}
        listed = (await client.request("thread/list", {}))["data"][0]
        assert listed["gitInfo"]["branch"] == "main"
        resumed = await client.request("thread/resume", {"threadId": tid})
        assert resumed["thread"]["gitInfo"] == cleared["thread"]["gitInfo"]
