"""The thread actions the original's clients use beyond turns, through the
real server (stdio, scripted model), each response and notification
validated against the vendored schema: the user's ``!cmd``
(``thread/shellCommand``), background terminals, ``thread/inject_items``,
thread goals and the collaboration mode presets. The shell command's
message order is compared with the original's where it is installed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio

from harness import RpcClient, RpcError, open_app_server
from conformance.test_escapes import SERVER_PARAMS, SERVERS, server_extra_env
from conformance.test_schema import Session, violations
from trio_codex.transports.scripted_responses import ScriptedResponses


async def start(client: RpcClient, ws: Path, **params: Any) -> tuple[Session, str]:
    await client.initialize(experimentalApi=True)
    session = Session(client)
    result = await session.request("thread/start", {"cwd": str(ws), **params})
    await client.until(lambda m: m.get("method") == "thread/started")
    return session, result["thread"]["id"]


def methods(msgs: list[dict[str, Any]]) -> list[str]:
    return [m["method"] for m in msgs if m.get("method") not in ("warning", "remoteControl/status/changed",
                                                                  "account/rateLimits/updated",
                                                                  "thread/readState/changed")]


def user_texts(scripted: ScriptedResponses, index: int) -> list[str]:
    return [part["text"] for item in scripted.requests[index].body["input"]
            if isinstance(item, dict) and item.get("role") == "user" for part in item["content"]]


@pytest.mark.parametrize("server", SERVER_PARAMS)
async def test_a_user_shell_command_runs_as_a_turn_of_its_own_and_the_model_sees_it_next_turn(
        server: str, codex_home: Path, scripted: ScriptedResponses, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    async with open_app_server(codex_home, program=SERVERS[server], cwd=ws,
                               env_extra=server_extra_env(server, tmp_path)) as client:
        session, tid = await start(client, ws)
        assert await session.request("thread/shellCommand", {"threadId": tid, "command": "  echo hi; exit 3 "}) == {}
        msgs = await client.until(lambda m: m.get("method") == "turn/completed")
        assert methods(msgs) == ["thread/status/changed", "turn/started", "item/started",
                                 "item/commandExecution/outputDelta", "item/completed", "thread/status/changed",
                                 "turn/completed"]
        done = next(m["params"]["item"] for m in msgs if m.get("method") == "item/completed")
        assert (done["source"], done["status"], done["exitCode"], done["aggregatedOutput"]) == (
            "userShell", "failed", 3, "hi\n")
        assert done["command"] == "/bin/bash -lc 'echo hi; exit 3'"
        assert done["commandActions"] == [{"type": "unknown", "command": "echo hi; exit 3"}]
        assert msgs[-1]["params"]["turn"]["items"] == []
        await session.turn(tid, "after shell")
        record = user_texts(scripted, 0)[0]
        assert record.startswith("<user_shell_command>\n<command>\necho hi; exit 3\n</command>\n<result>\n"
                                 "Exit code: 3\nDuration: ")
        assert record.endswith(" seconds\nOutput:\nhi\n\n</result>\n</user_shell_command>")
        empty = await client.call("thread/shellCommand", {"threadId": tid, "command": "   "})
        assert empty["error"] == {"code": -32600, "message": "command must not be empty"}
        negative = await client.call("thread/shellCommand", {"threadId": tid, "command": "echo", "timeoutMs": -1})
        assert negative["error"] == {"code": -32602,
                                     "message": "thread/shellCommand timeoutMs must be non-negative, got -1"}
        assert violations(client, session.sent) == []


async def test_a_user_shell_command_runs_unsandboxed_and_can_be_interrupted(
        codex_home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    async with open_app_server(codex_home, cwd=ws) as client:
        session, tid = await start(client, ws, sandbox="read-only")
        # A read-only thread: the user's own command still writes.
        await session.request("thread/shellCommand", {"threadId": tid, "command": "echo x > made.txt"})
        await client.until(lambda m: m.get("method") == "turn/completed")
        assert (ws / "made.txt").read_text() == "x\n"
        await session.request("thread/shellCommand", {"threadId": tid, "command": "sleep 60"})
        started = await client.until(lambda m: m.get("method") == "item/started")
        turn_id = started[-1]["params"]["turnId"]
        await session.request("turn/interrupt", {"threadId": tid, "turnId": turn_id})
        ended = await client.until(lambda m: m.get("method") == "turn/completed")
        assert ended[-1]["params"]["turn"]["status"] == "interrupted"


async def test_background_terminals_list_terminate_and_clean_the_threads_unified_exec_processes(
        codex_home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    async with open_app_server(codex_home, cwd=ws) as client:
        session, tid = await start(client, ws, sandbox="danger-full-access", approvalPolicy="never")
        calls = "".join(f'[[call=exec_command {json.dumps({"cmd": "sleep 60", "yield_time_ms": 250})}]]'
                        for _ in range(2))
        await session.turn(tid, calls)
        listed = await session.request("thread/backgroundTerminals/list", {"threadId": tid})
        assert [t["command"] for t in listed["data"]] == ["/bin/bash -lc 'sleep 60'"] * 2
        assert all(t["cwd"] == str(ws) and t["osPid"] for t in listed["data"])
        bad = await client.call("thread/backgroundTerminals/list", {"threadId": tid, "cursor": "zz"})
        assert bad["error"] == {"code": -32600, "message": "invalid cursor: invalid digit found in string"}
        first, second = (t["processId"] for t in listed["data"])
        page = await session.request("thread/backgroundTerminals/list", {"threadId": tid, "limit": 1})
        assert [t["processId"] for t in page["data"]] == [first] and page["nextCursor"]
        assert await session.request("thread/backgroundTerminals/terminate",
                                     {"threadId": tid, "processId": first}) == {"terminated": True}
        assert await session.request("thread/backgroundTerminals/terminate",
                                     {"threadId": tid, "processId": "nope"}) == {"terminated": False}
        assert await session.request("thread/backgroundTerminals/clean", {"threadId": tid}) == {}
        with trio.fail_after(10):
            while (await session.request("thread/backgroundTerminals/list", {"threadId": tid}))["data"]:
                await trio.sleep(0.05)
        assert second
        assert violations(client, session.sent) == []


async def test_injected_items_join_the_history_the_model_sees(
        codex_home: Path, scripted: ScriptedResponses, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    async with open_app_server(codex_home, cwd=ws) as client:
        session, tid = await start(client, ws)
        item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "injected"}]}
        assert await session.request("thread/inject_items", {"threadId": tid, "items": [item]}) == {}
        await session.turn(tid, "after inject")
        assert user_texts(scripted, 0) == ["injected", "after inject"]
        bad = await client.call("thread/inject_items", {"threadId": tid, "items": [3]})
        assert bad["error"] == {"code": -32600, "message": "items[0] is not a valid response item: invalid type: "
                                "integer `3`, expected internally tagged enum ResponseItem"}
        assert violations(client, session.sent) == []


async def test_a_thread_goal_is_set_read_and_cleared_and_outlives_the_server(
        codex_home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    async with open_app_server(codex_home, cwd=ws) as client:
        session, tid = await start(client, ws)
        assert await session.request("thread/goal/get", {"threadId": tid}) == {"goal": None}
        with pytest.raises(RpcError, match=f"cannot update goal for thread {tid}: no goal exists"):
            await client.request("thread/goal/set", {"threadId": tid, "status": "paused"})
        goal = (await session.request("thread/goal/set", {"threadId": tid, "objective": "ship it",
                                                          "status": "paused"}))["goal"]
        assert (goal["objective"], goal["status"], goal["tokensUsed"]) == ("ship it", "paused", 0)
        updated = await client.until(lambda m: m.get("method") == "thread/goal/updated")
        assert updated[-1]["params"] == {"threadId": tid, "turnId": None, "goal": goal}
        await session.turn(tid, "hello")  # the thread now has a rollout to resume
        created = goal["createdAt"]
        goal = (await session.request("thread/goal/set", {"threadId": tid, "objective": "ship more",
                                                          "tokenBudget": 500}))["goal"]
        # As the original: a new objective updates the goal it replaces.
        assert (goal["objective"], goal["status"], goal["tokenBudget"], goal["createdAt"]) == (
            "ship more", "paused", 500, created)
        path = (await session.request("thread/read", {"threadId": tid}))["thread"]["path"]
        noted = [json.loads(line)["payload"] for line in Path(path).read_text().splitlines()
                 if '"thread_goal_updated"' in line]
        assert noted == [{"type": "thread_goal_updated", "threadId": tid, "goal": goal}]
        assert violations(client, session.sent) == []
    async with open_app_server(codex_home, cwd=ws) as client:
        session = Session(client)
        await client.initialize()
        await session.request("thread/resume", {"threadId": tid})
        assert (await session.request("thread/goal/get", {"threadId": tid}))["goal"] == goal
        assert await session.request("thread/goal/clear", {"threadId": tid}) == {"cleared": True}
        await client.until(lambda m: m.get("method") == "thread/goal/cleared")
        assert await session.request("thread/goal/clear", {"threadId": tid}) == {"cleared": False}
        assert await session.request("thread/goal/get", {"threadId": tid}) == {"goal": None}
        assert violations(client, session.sent) == []


@pytest.mark.parametrize("server", SERVER_PARAMS)
async def test_collaboration_modes_list_the_originals_plan_and_default_presets(
        server: str, codex_home: Path, tmp_path: Path) -> None:
    async with open_app_server(codex_home, program=SERVERS[server],
                               env_extra=server_extra_env(server, tmp_path)) as client:
        await client.initialize(experimentalApi=True)
        assert await client.request("collaborationMode/list", {}) == {"data": [
            {"name": "Plan", "mode": "plan", "model": None, "reasoning_effort": "medium"},
            {"name": "Default", "mode": "default", "model": None, "reasoning_effort": None}]}


REVIEW = {"findings": [{"title": "[P1] Bug here", "body": "Explain it\nin two lines", "confidence_score": 0.9,
                        "priority": 1, "code_location": {"absolute_file_path": "/tmp/x.py",
                                                         "line_range": {"start": 3, "end": 5}}}],
          "overall_correctness": "patch is incorrect", "overall_explanation": "Because",
          "overall_confidence_score": 0.8}


def git_workspace(ws: Path) -> None:
    import subprocess
    ws.mkdir()
    subprocess.run("git init -q && git config user.email a@b && git config user.name a && echo one > a.txt && "
                   "git add . && git commit -qm init && git branch base && echo two >> a.txt", shell=True,
                   cwd=ws, check=True)


@pytest.mark.parametrize("server", SERVER_PARAMS)
async def test_a_review_of_uncommitted_changes_runs_inline_as_the_original_orders_it(
        server: str, codex_home: Path, scripted: ScriptedResponses, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    git_workspace(ws)
    async with open_app_server(codex_home, program=SERVERS[server], cwd=ws,
                               env_extra=server_extra_env(server, tmp_path)) as client:
        session, tid = await start(client, ws)
        result = await session.request("review/start", {"threadId": tid,
                                                        "target": {"type": "uncommittedChanges"}})
        turn_id = result["turn"]["id"]
        assert result["reviewThreadId"] == tid
        assert [(i["type"], i["id"], i["content"][0]["text"]) for i in result["turn"]["items"]] == [
            ("userMessage", turn_id, "current changes")]
        msgs = await client.until(lambda m: m.get("method") == "turn/completed")
        kinds = [(m["method"], m["params"]["item"]["type"]) if "item" in m.get("params", {}) else m["method"]
                 for m in msgs if m["method"] in methods(msgs) and m["method"] != "item/agentMessage/delta"]
        assert kinds == [("item/started", "enteredReviewMode"), ("item/completed", "enteredReviewMode"),
                         "thread/status/changed", "turn/started",
                         ("item/started", "userMessage"), ("item/completed", "userMessage"),
                         ("item/started", "agentMessage"),
                         ("item/started", "exitedReviewMode"), ("item/completed", "exitedReviewMode"),
                         ("item/started", "agentMessage"), ("item/completed", "agentMessage"),
                         "thread/status/changed", "turn/completed"]
        started = next(m for m in msgs if m["method"] == "turn/started")["params"]["turn"]
        assert started["id"] != turn_id and started["rootTurnId"] == turn_id
        assert msgs[-1]["params"]["turn"]["id"] == turn_id
        prompt = ("Review the current code changes (staged, unstaged, and untracked files) and provide "
                  "prioritized findings.")
        exited = next(m for m in msgs if m["method"] == "item/completed"
                      and m["params"]["item"]["type"] == "exitedReviewMode")
        assert exited["params"]["item"]["review"] == prompt  # the scripted reviewer echoes its request
        assert violations(client, session.sent) == []


async def test_a_reviewers_json_answer_is_rendered_and_kept_in_the_threads_history(
        codex_home: Path, scripted: ScriptedResponses, tmp_path: Path) -> None:
    from trio_codex.transports.scripted_responses import Message, Script
    ws = tmp_path / "ws"
    git_workspace(ws)
    async with open_app_server(codex_home, cwd=ws) as client:
        session, tid = await start(client, ws)
        scripted.enqueue(Script(output=(Message.of(json.dumps(REVIEW)),)))
        await session.request("review/start", {"threadId": tid, "target": {"type": "baseBranch", "branch": "base"}})
        msgs = await client.until(lambda m: m.get("method") == "turn/completed")
        rendered = ("Because\n\nReview comment:\n\n- [P1] Bug here \u2014 /tmp/x.py:3-5\n  Explain it\n"
                    "  in two lines")
        assert [i["text"] for i in msgs[-1]["params"]["turn"]["items"]] == [rendered]
        reviewer = scripted.requests[0].body
        assert reviewer["instructions"].startswith("# Review guidelines")
        [request] = user_texts(scripted, 0)
        assert request.startswith("Review the code changes against the base branch 'base'. The merge base commit "
                                  "for this comparison is ")
        read = await session.request("thread/read", {"threadId": tid, "includeTurns": True})
        [turn] = read["thread"]["turns"]
        assert [(i["type"], i.get("review", i.get("text"))) for i in turn["items"]] == [
            ("enteredReviewMode", "changes against 'base'"), ("exitedReviewMode", rendered),
            ("agentMessage", rendered)]
        await session.turn(tid, "after review")
        assert user_texts(scripted, 1) == [
            "<user_action>\n  <context>User initiated a review task. Here's the full review output from reviewer "
            "model. User may select one or more comments to resolve.</context>\n  <action>review</action>\n"
            f"  <results>\n  {rendered}\n  </results>\n  </user_action>\n", "after review"]
        empty = await client.call("review/start", {"threadId": tid, "target": {"type": "custom",
                                                                               "instructions": "  "}})
        assert empty["error"] == {"code": -32600, "message": "instructions must not be empty"}
        assert violations(client, session.sent) == []


@pytest.mark.parametrize("server", SERVER_PARAMS)
async def test_thread_search_finds_a_substring_of_any_message_but_not_the_name(
        server: str, codex_home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    async with open_app_server(codex_home, program=SERVERS[server], cwd=ws,
                               env_extra=server_extra_env(server, tmp_path)) as client:
        session, tid = await start(client, ws)
        await session.turn(tid, "the quick brown fox jumps")
        # The reply spells the word the prompt escapes: only the answer holds it.
        await session.turn(tid, '[[text="the gir\\u0061ffe runs far"]] second')
        await session.request("thread/name/set", {"threadId": tid, "name": "Named elephant"})

        async def found(term: str) -> list[tuple[str, str]]:
            result = await session.request("thread/search", {"searchTerm": term})
            return [(r["thread"]["id"], r["snippet"]) for r in result["data"]]

        assert await found("brown") == [(tid, "the quick brown fox jumps")]
        assert await found("bro") == [(tid, "the quick brown fox jumps")]
        assert await found("GIRAFFE") == [(tid, "the giraffe runs far")]
        assert await found("elephant") == []
        assert await found("nomatch") == []
        empty = await client.call("thread/search", {"searchTerm": ""})
        assert empty["error"] == {"code": -32600, "message": "thread/search requires a non-empty searchTerm"}
        assert violations(client, session.sent) == []


async def test_thread_search_reads_message_text_from_rollouts_when_the_index_is_rebuilt(
        codex_home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    async with open_app_server(codex_home, cwd=ws) as client:
        session, tid = await start(client, ws)
        await session.turn(tid, "a message about pelicans")
    for suffix in ("", "-wal", "-shm"):
        (codex_home / f"trio_codex_threads.sqlite{suffix}").unlink(missing_ok=True)
    async with open_app_server(codex_home, cwd=ws) as client:
        await client.initialize(experimentalApi=True)
        result = await client.request("thread/search", {"searchTerm": "pelican"})
        assert [(r["thread"]["id"], r["snippet"]) for r in result["data"]] == [(tid, "a message about pelicans")]


async def test_plan_mode_chosen_on_turn_start_tells_the_model_once_and_lasts_until_default(
        codex_home: Path, scripted: ScriptedResponses, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    async with open_app_server(codex_home, cwd=ws) as client:
        session, tid = await start(client, ws)
        plan = {"mode": "plan", "settings": {"model": "mock-model", "reasoning_effort": "medium",
                                             "developer_instructions": None}}
        turn = await session.request("turn/start", {"threadId": tid, "collaborationMode": plan,
                                                    "input": [{"type": "text", "text": "plan this"}]})
        msgs = await client.until(lambda m: m.get("method") == "turn/completed")
        settings = next(m for m in msgs if m["method"] == "thread/settings/updated")["params"]["threadSettings"]
        assert settings["collaborationMode"]["mode"] == "plan" and settings["effort"] == "medium"
        assert settings["collaborationMode"]["settings"]["developer_instructions"].startswith("# Plan Mode")
        assert turn["turn"]["id"] == msgs[-1]["params"]["turn"]["id"]
        await session.turn(tid, "next")
        await session.request("turn/start", {"threadId": tid, "collaborationMode": {"mode": "default"},
                                             "input": [{"type": "text", "text": "go"}]})
        await client.until(lambda m: m.get("method") == "turn/completed")

        def modes(index: int) -> list[str]:
            return [part["text"].split("\n")[0] for item in scripted.requests[index].body["input"]
                    if isinstance(item, dict) and item.get("role") == "developer" for part in item["content"]]

        assert modes(0) == modes(1) == ["<collaboration_mode># Plan Mode"]
        assert modes(2) == ["<collaboration_mode># Plan Mode", "<collaboration_mode># Default Mode"]
        assert scripted.requests[0].body["reasoning"]["effort"] == "medium"
        assert violations(client, session.sent) == []


@pytest.mark.parametrize("server", SERVER_PARAMS)
async def test_a_user_shell_command_during_a_turn_runs_inside_it_and_the_model_answers_it(
        server: str, codex_home: Path, scripted: ScriptedResponses, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    async with open_app_server(codex_home, program=SERVERS[server], cwd=ws,
                               env_extra=server_extra_env(server, tmp_path)) as client:
        session, tid = await start(client, ws)
        turn = await session.request("turn/start", {"threadId": tid, "input": [
            {"type": "text", "text": "[[deltas=20 delay_ms=200]] a slow reply"}]})
        await client.until(lambda m: m.get("method") == "item/agentMessage/delta")
        await session.request("thread/shellCommand", {"threadId": tid, "command": "echo busy"})
        msgs = await client.until(lambda m: m.get("method") == "turn/completed")
        shell = [m for m in msgs if m.get("method") == "item/completed"
                 and m["params"]["item"]["type"] == "commandExecution"]
        assert [(m["params"]["turnId"], m["params"]["item"]["source"]) for m in shell] == [
            (turn["turn"]["id"], "userShell")]
        assert [m["method"] for m in msgs].count("turn/started") == 0
        assert len(scripted.requests) == 2
        assert any("<user_shell_command>\n<command>\necho busy\n</command>" in text for text in user_texts(scripted, 1))
        assert violations(client, session.sent) == []


async def test_an_interrupted_review_leaves_none_of_the_reviewers_items_in_the_thread(
        codex_home: Path, scripted: ScriptedResponses, tmp_path: Path) -> None:
    from trio_codex.transports.scripted_responses import Script
    ws = tmp_path / "ws"
    git_workspace(ws)
    async with open_app_server(codex_home, cwd=ws) as client:
        session, tid = await start(client, ws)
        scripted.enqueue(Script(hang_after=0))
        review = await session.request("review/start", {"threadId": tid, "target": {"type": "uncommittedChanges"}})
        with trio.fail_after(10):
            while not scripted.requests:  # the reviewer is waiting for the model
                await trio.sleep(0.02)
        turn_id = review["turn"]["id"]
        await session.request("turn/interrupt", {"threadId": tid, "turnId": turn_id})
        ended = await client.until(lambda m: m.get("method") == "turn/completed")
        assert (ended[-1]["params"]["turn"]["id"], ended[-1]["params"]["turn"]["status"]) == (turn_id, "interrupted")
        await session.turn(tid, "after")
        texts = user_texts(scripted, 1)
        assert texts[-1] == "after" and not any(t.startswith("Review the current") for t in texts)
        assert "instructions" not in scripted.requests[1].body or not scripted.requests[1].body[
            "instructions"].startswith("# Review guidelines")
        assert violations(client, session.sent) == []


async def test_a_resumed_thread_keeps_the_collaboration_mode_its_last_turn_ran_in(
        codex_home: Path, scripted: ScriptedResponses, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    async with open_app_server(codex_home, cwd=ws) as client:
        session, tid = await start(client, ws)
        await session.request("turn/start", {"threadId": tid, "collaborationMode": {"mode": "plan"},
                                             "input": [{"type": "text", "text": "plan this"}]})
        await client.until(lambda m: m.get("method") == "turn/completed")
    async with open_app_server(codex_home, cwd=ws) as client:
        await client.initialize()
        await client.request("thread/resume", {"threadId": tid})
        await client.turn(tid, "go", collaborationMode={"mode": "default"})
    developer = [part["text"].split("\n")[0] for item in scripted.requests[-1].body["input"]
                 if isinstance(item, dict) and item.get("role") == "developer" for part in item["content"]]
    assert developer == ["<collaboration_mode># Plan Mode", "<collaboration_mode># Default Mode"]


async def test_a_failed_review_fails_its_turn_and_leaves_the_thread_as_it_was(
        codex_home: Path, scripted: ScriptedResponses, tmp_path: Path) -> None:
    from trio_codex.transports.scripted_responses import HttpError, Script
    ws = tmp_path / "ws"
    git_workspace(ws)
    async with open_app_server(codex_home, cwd=ws) as client:
        session, tid = await start(client, ws)
        scripted.enqueue(Script(http_error=HttpError(400, "bad request")))
        await session.request("review/start", {"threadId": tid, "target": {"type": "uncommittedChanges"}})
        ended = await client.until(lambda m: m.get("method") == "turn/completed")
        assert ended[-1]["params"]["turn"]["status"] == "failed"
        await session.turn(tid, "after")
        assert user_texts(scripted, 1) == ["after"]
