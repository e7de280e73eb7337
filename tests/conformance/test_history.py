"""A thread's history as the original keeps it: every item a turn reported
(messages, command executions with their output, file changes, plans) comes
back from ``thread/read``, ``thread/turns/list`` and ``thread/resume``, the
same as it was reported live, while the thread is loaded and in a new server
process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from harness import RpcClient, open_app_server, run_turn
from trio_codex.runtime.persistence import rollout as r

PATCH = ("*** Begin Patch\n*** Add File: new.txt\n+fresh\n*** Update File: old.txt\n*** Move to: moved.txt\n"
         "@@\n one\n-two\n+TWO\n*** Delete File: gone.txt\n*** End Patch\n")
PLAN = {"explanation": "two steps", "plan": [{"step": "look", "status": "completed"},
                                             {"step": "change", "status": "in_progress"}]}
TIMES = ("startedAtMs", "completedAtMs")


def call(name: str, **args: Any) -> str:
    return f"[[call={name} {json.dumps(args)}]]"


def custom(name: str, text: str) -> str:
    return f"[[custom={name} {json.dumps(text)}]]"


def untimed(item: dict[str, Any]) -> dict[str, Any]:
    """An item without its times (live items carry none yet)."""
    return {k: v for k, v in item.items() if k not in TIMES}


def completed_items(msgs: list[dict]) -> list[dict]:
    return [untimed(m["params"]["item"]) for m in msgs if m.get("method") == "item/completed"]


async def history(client: RpcClient, tid: str) -> dict[str, list[list[dict]]]:
    """The items of each turn, as thread/read, thread/turns/list and
    thread/items/list give them."""
    read = await client.request("thread/read", {"threadId": tid, "includeTurns": True})
    listed = await client.request("thread/turns/list", {"threadId": tid, "itemsView": "full",
                                                        "sortDirection": "asc", "limit": 50})
    items = await client.request("thread/items/list", {"threadId": tid, "limit": 200})
    by_turn: dict[str, list[dict]] = {}
    for entry in items["data"]:
        by_turn.setdefault(entry["turnId"], []).append(untimed(entry["item"]))
    return {"read": [[untimed(i) for i in t["items"]] for t in read["thread"]["turns"]],
            "turns/list": [[untimed(i) for i in t["items"]] for t in listed["data"]],
            "items/list": [by_turn.get(t["id"], []) for t in read["thread"]["turns"]]}


async def test_a_session_with_tools_reads_and_resumes_every_item_live_and_in_a_new_server(
        codex_home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "old.txt").write_text("one\ntwo\n")
    (ws / "gone.txt").write_text("bye\n")
    prompts = [
        call("shell_command", command="echo out; echo err >&2") + " a command",
        call("shell_command", command="exit 3") + " a failing command",
        call("exec_command", cmd="echo unified") + " a unified exec command",
        custom("apply_patch", PATCH) + " a patch",
        call("update_plan", **PLAN) + " a plan",
    ]
    async with open_app_server(codex_home) as client:
        await client.initialize()
        tid = (await client.request("thread/start", {"cwd": str(ws), "approvalPolicy": "never",
                                                     "sandbox": "danger-full-access"}))["thread"]["id"]
        await client.next_message()  # thread/started
        live = [completed_items(await run_turn(client, tid, text, "accept")) for text in prompts]
        # Declined: the patch is kept, the command is not (the original
        # records no item for a declined command).
        declined = [completed_items(await run_turn(client, tid, text, "decline", approvalPolicy="untrusted"))
                    for text in (custom("apply_patch", "*** Begin Patch\n*** Add File: no.txt\n+no\n*** End Patch\n")
                                 + " a declined patch", call("shell_command", command="touch no") + " declined")]
        kinds = [[i["type"] for i in turn] for turn in live + declined]
        assert kinds == [["userMessage", "commandExecution", "agentMessage"]] * 3 + [
            ["userMessage", "fileChange", "agentMessage"], ["userMessage", "plan", "agentMessage"],
            ["userMessage", "fileChange", "agentMessage"], ["userMessage", "commandExecution", "agentMessage"]]
        assert [live[0][1]["aggregatedOutput"], live[1][1]["status"], live[2][1]["source"]] == [
            "out\nerr\n", "failed", "unifiedExecStartup"]
        assert declined[0][1]["status"] == declined[1][1]["status"] == "declined"
        expected = [*live, declined[0], [i for i in declined[1] if i["type"] != "commandExecution"]]
        loaded = await history(client, tid)
        assert loaded == {"read": expected, "turns/list": expected, "items/list": expected}

    async with open_app_server(codex_home) as client:
        await client.initialize()
        assert await history(client, tid) == {"read": expected, "turns/list": expected, "items/list": expected}
        resumed = await client.request("thread/resume", {"threadId": tid})
        assert [[untimed(i) for i in t["items"]] for t in resumed["thread"]["turns"]] == expected
        assert all(i.get("completedAtMs") for t in resumed["thread"]["turns"] for i in t["items"])
        # The resumed thread goes on with the whole history.
        msgs = await run_turn(client, tid, "after the restart", "accept")
        assert msgs[-1]["params"]["turn"]["status"] == "completed"

    rollout = r.read_rollout(next((codex_home / "sessions").rglob(f"rollout-*-{tid}.jsonl")))
    assert (rollout.bad_lines, rollout.torn_tail) == (0, False)
    plans = [line.payload for line in rollout.lines if isinstance(line.payload, r.PlanUpdateEvent)]
    assert [(p.explanation, p.plan) for p in plans] == [(PLAN["explanation"], PLAN["plan"])]


@pytest.mark.parametrize("fixture", ["tools"])
async def test_the_originals_tool_session_resumes_as_the_original_resumed_it(
        codex_home: Path, fixture: str) -> None:
    source = Path(__file__).parent.parent / "fixtures" / "original" / fixture
    (path,) = (source / "sessions").rglob("rollout-*.jsonl")
    tid = r.parse_rollout_filename(path.name)[1]  # type: ignore[index]
    target = codex_home / path.relative_to(source)
    target.parent.mkdir(parents=True)
    target.write_bytes(path.read_bytes())
    expected = json.loads((source / f"{tid}.expected.json").read_text())["turns"]
    async with open_app_server(codex_home) as client:
        await client.initialize()
        read = await client.request("thread/read", {"threadId": tid, "includeTurns": True})
        resumed = await client.request("thread/resume", {"threadId": tid})
    assert read["thread"]["turns"] == resumed["thread"]["turns"] == expected


async def test_a_loaded_threads_turns_equal_a_replay_of_its_rollout_across_compaction_rollback_and_revert(
        codex_home: Path) -> None:
    """The loaded thread serves thread/read and its pages from the turns it
    keeps; after each step they are what a replay of the file says."""
    async with open_app_server(codex_home) as client:
        tid = await client.start_thread()

        async def check() -> list[str]:
            read = (await client.request("thread/read", {"threadId": tid, "includeTurns": True}))["thread"]
            replayed = json.loads(msgspec.json.encode(
                r.replay(r.read_rollout(read["path"])).turns if read["path"] else []))
            assert read["turns"] == replayed
            pages, cursor = [], None
            while True:  # two turns a page, oldest first
                page = await client.request("thread/turns/list", {
                    "threadId": tid, "itemsView": "full", "sortDirection": "asc", "limit": 2,
                    **({"cursor": cursor} if cursor else {})})
                pages += page["data"]
                if not (cursor := page["nextCursor"]):
                    break
            assert pages == replayed
            items = await client.request("thread/items/list", {"threadId": tid, "limit": 500})
            assert [e["item"] for e in items["data"]] == [i for t in replayed for i in t["items"]]
            return [t["id"] for t in replayed]

        assert await check() == []
        for n in (1, 2, 3):
            await client.turn(tid, f"question {n}")
        first = await check()
        await client.request("thread/compact/start", {"threadId": tid})
        await client.until(lambda m: m.get("method") == "turn/completed")
        await client.turn(tid, "question 4")
        assert len(await check()) == 5
        await client.request("thread/rollback", {"threadId": tid, "numTurns": 2})
        assert await check() == first
        await client.request("thread/revert", {"threadId": tid, "beforeTurnId": first[1]})
        await client.turn(tid, "question 5")
        assert (await check())[0] == first[0]
