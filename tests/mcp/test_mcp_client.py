"""The MCP client end to end: the real server with real MCP servers (the
fixture built on the `mcp` package, `mcp-server-time` from PyPI), the model
scripted, the client over stdio."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from harness import RpcError, open_app_server
from trio_codex.transports.scripted_responses import ScriptedResponses

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "mcp_server.py"
WAIT = 60
#: Replaced by the CODEX_HOME of the test: it marks the servers' processes.
HOME_MARK = "@HOME@"


def server_table(name: str, *flags: str, **keys: Any) -> str:
    lines = [f"\n[mcp_servers.{name}]", f"command = {json.dumps(sys.executable)}",
             f"args = {json.dumps([str(FIXTURE), *flags])}"]
    if "env" not in keys:  # marks the processes of one test's app server
        lines.append('env = { MCP_TEST_HOME = "%s" }' % HOME_MARK)
    lines += [f"{k} = {json.dumps(v)}" for k, v in keys.items()]
    return "\n".join(lines) + "\n"


def configure(codex_home: Path, *tables: str) -> None:
    with (codex_home / "config.toml").open("a") as f:
        f.write("".join(tables).replace(HOME_MARK, str(codex_home)))


def call(name: str, **args: Any) -> str:
    return f"[[call={name} {json.dumps(args)}]]"


def tool_outputs(scripted: ScriptedResponses) -> list[Any]:
    return [i["output"] for r in scripted.requests for i in r.body["input"]
            if isinstance(i, dict) and i.get("type", "").endswith("_call_output")]


def fixture_pids() -> set[int]:
    """The live processes running the fixture server (any test's)."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if str(FIXTURE).encode() in cmd and ") Z" not in stat:
                found.add(int(entry))
    return found


async def start_thread(client: Any, cwd: Path, approval: str = "never") -> tuple[str, list[dict]]:
    """A thread, and the messages up to each server's settled startup status."""
    await client.initialize()
    result = await client.request("thread/start", {"cwd": str(cwd), "approvalPolicy": approval,
                                                   "sandbox": "workspace-write"})
    return result["thread"]["id"], []


async def until(client: Any, done: Any) -> list[dict]:
    seen = []
    with trio.fail_after(WAIT):
        while True:
            msg = await client.next_message()
            seen.append(msg)
            if done(msg):
                return seen


def statuses(msgs: list[dict]) -> list[tuple[str, str]]:
    return [(m["params"]["name"], m["params"]["status"]) for m in msgs
            if m.get("method") == "mcpServer/startupStatus/updated"]


async def run_turn(client: Any, tid: str, text: str, answer: Any = None) -> list[dict]:
    await client.request("turn/start", {"threadId": tid, "input": [{"type": "text", "text": text}]})
    seen = []
    with trio.fail_after(WAIT):
        while True:
            msg = await client.next_message()
            seen.append(msg)
            if "id" in msg and "method" in msg:
                await client.send({"id": msg["id"], "result": answer(msg)})
            if msg.get("method") == "turn/completed":
                return seen


def items(msgs: list[dict], event: str = "item/completed") -> list[dict]:
    return [m["params"]["item"] for m in msgs
            if m.get("method") == event and m["params"]["item"]["type"] == "mcpToolCall"]


async def test_the_model_calls_a_read_only_mcp_tool_and_reads_its_result(
        codex_home: Path, scripted: ScriptedResponses, tmp_path: Path) -> None:
    configure(codex_home, server_table("fix"))
    async with open_app_server(codex_home) as client:
        tid, _ = await start_thread(client, tmp_path)
        msgs = await run_turn(client, tid, call("mcp__fix__echo", text="hi"))
        read = await client.request("thread/read", {"threadId": tid, "includeTurns": True})
    started, done = items(msgs, "item/started")[0], items(msgs)[0]
    # The rollout keeps the item as it was reported (the original's McpToolCall record).
    (kept,) = [i for i in read["thread"]["turns"][0]["items"] if i["type"] == "mcpToolCall"]
    assert {k: kept[k] for k in ("id", "server", "tool", "status", "arguments", "result", "durationMs")} == {
        k: done[k] for k in ("id", "server", "tool", "status", "arguments", "result", "durationMs")}
    assert started["status"] == "inProgress" and started["readOnlyHint"] is True
    assert started["arguments"] == {"text": "hi"} and started["server"] == "fix" and started["tool"] == "echo"
    assert done["status"] == "completed" and done["error"] is None
    assert done["result"]["structuredContent"] == {"result": "hi"}
    assert done["result"]["content"] == [{"type": "text", "text": "hi"}]
    out = tool_outputs(scripted)[0]
    assert out.startswith("Wall time: ") and out.endswith(' seconds\nOutput:\n{"result":"hi"}')
    tools = scripted.requests[0].body["tools"]
    ns = [t for t in tools if t.get("type") == "namespace"]
    assert [t["name"] for t in ns] == ["mcp__fix"]
    assert [t["name"] for t in ns[0]["tools"]] == sorted(t["name"] for t in ns[0]["tools"])
    echo = next(t for t in ns[0]["tools"] if t["name"] == "echo")
    assert echo["parameters"] == {"type": "object", "properties": {"text": {"type": "string"}},
                                  "required": ["text"]}
    assert {"list_mcp_resources", "list_mcp_resource_templates", "read_mcp_resource"} <= {
        t.get("name") for t in tools}


async def test_a_tool_without_hints_fails_under_never_without_asking(
        codex_home: Path, scripted: ScriptedResponses, tmp_path: Path) -> None:
    configure(codex_home, server_table("fix"))
    async with open_app_server(codex_home) as client:
        tid, _ = await start_thread(client, tmp_path)
        msgs = await run_turn(client, tid, call("mcp__fix__write_note", note="x"))
    done = items(msgs)[0]
    assert (done["status"], done["result"]) == ("failed", None)
    assert done["error"] == {"message": "MCP tool call requires approval, but approval policy is never"}
    assert not [m for m in msgs if "id" in m and "method" in m]
    out = tool_outputs(scripted)[0]
    assert out[1] == {"type": "input_text", "text": "MCP tool call requires approval, but approval policy is never"}


async def test_a_granular_policy_from_config_toml_without_mcp_elicitations_fails_the_tool_without_asking(
        codex_home: Path, scripted: ScriptedResponses, tmp_path: Path) -> None:
    # The same policy as thread/start's approvalPolicy {"granular": {...}}: the
    # thread holds both in one shape.
    config = codex_home / "config.toml"
    config.write_text("approval_policy = { granular = { sandbox_approval = true, rules = true, "
                      "mcp_elicitations = false } }\n" + config.read_text())  # a top-level key goes first
    configure(codex_home, server_table("fix"))
    async with open_app_server(codex_home) as client:
        await client.initialize()
        started = await client.request("thread/start", {"cwd": str(tmp_path), "sandbox": "workspace-write"})
        msgs = await run_turn(client, started["thread"]["id"], call("mcp__fix__write_note", note="x"))
    assert started["approvalPolicy"] == {"granular": {
        "sandbox_approval": True, "rules": True, "skill_approval": False, "request_permissions": False,
        "mcp_elicitations": False}}
    done = items(msgs)[0]
    assert done["error"] == {"message": "MCP tool call requires approval, but approval policy is never"}
    assert not [m for m in msgs if "id" in m and "method" in m]


async def test_a_tool_without_hints_is_asked_about_and_runs_once_accepted(
        codex_home: Path, scripted: ScriptedResponses, tmp_path: Path) -> None:
    configure(codex_home, server_table("fix"))
    asked = []

    def accept(msg: dict) -> dict:
        asked.append(msg)
        return {"action": "accept", "content": {}}

    async with open_app_server(codex_home) as client:
        tid, _ = await start_thread(client, tmp_path, approval="untrusted")
        msgs = await run_turn(client, tid, call("mcp__fix__write_note", note="x"), accept)
    (req,) = asked
    assert req["method"] == "mcpServer/elicitation/request"
    p = req["params"]
    assert (p["threadId"], p["serverName"], p["mode"]) == (tid, "fix", "form")
    assert p["message"] == 'Allow the fix MCP server to run tool "write_note"?'
    assert p["_meta"]["codex_approval_kind"] == "mcp_tool_call" and p["_meta"]["tool_params"] == {"note": "x"}
    assert [m["method"] for m in msgs if m.get("method") == "serverRequest/resolved"]
    done = items(msgs)[0]
    assert done["status"] == "completed" and done["result"]["structuredContent"] == {"result": "noted: x"}


async def test_a_declined_tool_call_is_reported_failed_to_the_model(
        codex_home: Path, scripted: ScriptedResponses, tmp_path: Path) -> None:
    configure(codex_home, server_table("fix"))
    async with open_app_server(codex_home) as client:
        tid, _ = await start_thread(client, tmp_path, approval="untrusted")
        msgs = await run_turn(client, tid, call("mcp__fix__write_note", note="x"),
                              lambda msg: {"action": "decline"})
    assert items(msgs)[0]["error"] == {"message": "user rejected MCP tool call"}


async def test_progress_the_server_reports_reaches_the_client(
        codex_home: Path, scripted: ScriptedResponses, tmp_path: Path) -> None:
    configure(codex_home, server_table("fix"))
    async with open_app_server(codex_home) as client:
        tid, _ = await start_thread(client, tmp_path)
        msgs = await run_turn(client, tid, call("mcp__fix__slow", steps=3))
    progress = [m["params"] for m in msgs if m.get("method") == "item/mcpToolCall/progress"]
    assert [p["message"] for p in progress] == ["step 1", "step 2", "step 3"]
    assert {p["itemId"] for p in progress} == {items(msgs)[0]["id"]}


async def test_startup_statuses_come_per_server_and_a_missing_program_fails_with_the_originals_text(
        codex_home: Path, tmp_path: Path) -> None:
    configure(codex_home, server_table("fix"),
              '\n[mcp_servers.broken]\ncommand = "/nonexistent/mcp-server"\n')
    async with open_app_server(codex_home) as client:
        tid, _ = await start_thread(client, tmp_path)
        msgs = await _statuses(client, 2)
    got = statuses(msgs)
    assert sorted(got) == [("broken", "failed"), ("broken", "starting"), ("fix", "ready"), ("fix", "starting")]
    failed = next(m["params"] for m in msgs if m.get("method") == "mcpServer/startupStatus/updated"
                  and m["params"]["status"] == "failed")
    assert failed["error"] == ("MCP client for `broken` failed to start: MCP startup failed: "
                               "No such file or directory (os error 2)")
    assert failed["threadId"] == tid and failed["failureReason"] is None


async def _statuses(client: Any, servers: int) -> list[dict]:
    """Messages until ``servers`` servers reported ready or failed."""
    seen: list[dict] = []
    with trio.fail_after(WAIT):
        while sum(1 for _, s in statuses(seen) if s != "starting") < servers:
            seen.append(await client.next_message())
    return seen


async def test_a_required_server_that_fails_fails_thread_start_and_leaves_no_process(
        codex_home: Path, tmp_path: Path) -> None:
    configure(codex_home, server_table("fix"), server_table("quitter", "--exit", required=True))
    async with open_app_server(codex_home) as client:
        await client.initialize()
        with pytest.raises(RpcError) as failed:
            await client.request("thread/start", {"cwd": str(tmp_path)})
        assert failed.value.code == -32603
        assert failed.value.message.startswith(
            "error creating thread: Fatal error: Failed to initialize session: required MCP servers failed to "
            "initialize: quitter: handshaking with MCP server failed: ")
        loaded = await client.request("thread/loaded/list", {})
        assert loaded["data"] == []
        with trio.fail_after(WAIT):
            while fixture_pids_of(codex_home):
                await trio.sleep(0.1)


def fixture_pids_of(codex_home: Path) -> set[int]:
    """The fixture servers started by the app server using ``codex_home``."""
    found = set()
    for pid in fixture_pids():
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if f"MCP_TEST_HOME={codex_home}".encode() in env:
            found.add(pid)
    return found


async def test_a_server_that_never_answers_initialize_fails_after_its_startup_timeout(
        codex_home: Path, tmp_path: Path) -> None:
    configure(codex_home, server_table("mute", "--no-init", startup_timeout_sec=1))
    async with open_app_server(codex_home) as client:
        await start_thread(client, tmp_path)
        msgs = await _statuses(client, 1)
    failed = [m["params"] for m in msgs if m.get("method") == "mcpServer/startupStatus/updated"][-1]
    assert failed["status"] == "failed"
    assert failed["error"].startswith("MCP client for `mute` timed out after 1 seconds. Add or adjust "
                                      "`startup_timeout_sec` in your config.toml:")


async def test_a_hanging_tool_times_out_with_an_error_for_the_model(
        codex_home: Path, scripted: ScriptedResponses, tmp_path: Path) -> None:
    configure(codex_home, server_table("fix", tool_timeout_sec=1))
    async with open_app_server(codex_home) as client:
        tid, _ = await start_thread(client, tmp_path)
        msgs = await run_turn(client, tid, call("mcp__fix__hang"))
    done = items(msgs)[0]
    assert done["status"] == "failed" and "timed out" in done["error"]["message"]
    assert "timed out" in tool_outputs(scripted)[0][1]["text"]
    assert msgs[-1]["params"]["turn"]["status"] == "completed"


async def test_a_server_that_crashes_mid_call_gives_the_model_an_error_and_is_restarted(
        codex_home: Path, scripted: ScriptedResponses, tmp_path: Path) -> None:
    configure(codex_home, server_table("fix"))
    async with open_app_server(codex_home) as client:
        tid, _ = await start_thread(client, tmp_path)
        msgs = await run_turn(client, tid, call("mcp__fix__crash"))
        done = items(msgs)[0]
        assert done["status"] == "failed" and "Connection closed" in done["error"]["message"]
        with trio.fail_after(WAIT):
            while True:  # the restarted server answers
                try:
                    result = await client.request("mcpServer/tool/call", {
                        "threadId": tid, "server": "fix", "tool": "echo", "arguments": {"text": "back"}})
                    break
                except RpcError:
                    await trio.sleep(0.2)
    assert result["structuredContent"] == {"result": "back"}


async def test_interrupting_a_turn_cancels_its_mcp_call(
        codex_home: Path, scripted: ScriptedResponses, tmp_path: Path) -> None:
    configure(codex_home, server_table("fix"))
    async with open_app_server(codex_home) as client:
        tid, _ = await start_thread(client, tmp_path)
        turn = await client.request("turn/start", {"threadId": tid, "input": [
            {"type": "text", "text": call("mcp__fix__hang")}]})
        await until(client, lambda m: m.get("method") == "item/started"
                    and m["params"]["item"]["type"] == "mcpToolCall")
        await client.request("turn/interrupt", {"threadId": tid, "turnId": turn["turn"]["id"]})
        msgs = await until(client, lambda m: m.get("method") == "turn/completed")
        assert msgs[-1]["params"]["turn"]["status"] == "interrupted"
        # The connection is not wedged by the cancelled call.
        result = await client.request("mcpServer/tool/call", {
            "threadId": tid, "server": "fix", "tool": "echo", "arguments": {"text": "still here"}})
    assert result["structuredContent"] == {"result": "still here"}


async def test_the_status_list_reuses_the_live_connection_instead_of_spawning_one(
        codex_home: Path, tmp_path: Path) -> None:
    configure(codex_home, server_table("fix"), '\n[mcp_servers.broken]\ncommand = "/nonexistent/mcp-server"\n')
    async with open_app_server(codex_home) as client:
        tid, _ = await start_thread(client, tmp_path)
        await _statuses(client, 2)
        pid = await _pid(client, tid)
        listed = [await client.request("mcpServerStatus/list", {"threadId": tid}) for _ in range(3)]
        unthreaded = await client.request("mcpServerStatus/list", {})
        assert await _pid(client, tid) == pid and fixture_pids_of(codex_home) == {pid}
    first = listed[0]
    assert first["nextCursor"] is None and [e["name"] for e in first["data"]] == ["broken", "fix"]
    broken, fix = first["data"]
    assert (broken["runtimeStatus"], broken["tools"], broken["serverInfo"]) == ("failed", {}, None)
    assert broken["toolsError"] == "MCP startup failed: No such file or directory (os error 2)"
    assert fix["runtimeStatus"] == "connected" and fix["authStatus"] == "unsupported"
    assert fix["tools"]["echo"]["annotations"] == {"readOnlyHint": True}
    assert fix["resources"] == [{"name": "hello", "uri": "mem://hello", "description": "A greeting.",
                                 "mimeType": "text/plain"}]
    assert fix["serverInfo"]["name"] == "fixture" and fix["toolsError"] is None
    assert [e["runtimeStatus"] for e in unthreaded["data"]] == [None, None]


async def _pid(client: Any, tid: str) -> int:
    result = await client.request("mcpServer/tool/call", {"threadId": tid, "server": "fix", "tool": "pid"})
    return int(result["structuredContent"]["result"])


async def test_resources_are_read_through_the_thread_connection_and_errors_pass_through(
        codex_home: Path, tmp_path: Path) -> None:
    configure(codex_home, server_table("fix"))
    async with open_app_server(codex_home) as client:
        tid, _ = await start_thread(client, tmp_path)
        read = await client.request("mcpServer/resource/read", {"threadId": tid, "server": "fix",
                                                                "uri": "mem://hello"})
        with pytest.raises(RpcError) as unknown:
            await client.request("mcpServer/resource/read", {"server": "fix", "uri": "mem://nope"})
        with pytest.raises(RpcError) as no_server:
            await client.request("mcpServer/tool/call", {"threadId": tid, "server": "nope", "tool": "x"})
        with pytest.raises(RpcError) as no_thread:
            await client.request("mcpServer/tool/call", {"server": "fix", "tool": "echo"})
    assert read == {"contents": [{"uri": "mem://hello", "mimeType": "text/plain",
                                  "text": "hello from the fixture"}], "originCallId": None}
    assert (unknown.value.code, unknown.value.message) == (-32602, "Unknown resource: mem://nope")
    assert (no_server.value.code, no_server.value.message) == (-32603, "unknown MCP server 'nope'")
    assert (no_thread.value.code, no_thread.value.message) == (
        -32600, "Invalid request: missing field `threadId`")


async def test_threads_loaded_and_unloaded_leave_no_mcp_process_and_share_one_per_server(
        codex_home: Path, tmp_path: Path) -> None:
    configure(codex_home, server_table("fix"), "\n", )
    text = (codex_home / "config.toml").read_text()
    (codex_home / "config.toml").write_text("thread_unload_delay_secs = 0\n" + text)
    async with open_app_server(codex_home) as client:
        await client.initialize()
        for _ in range(50):  # 100 threads, two loaded at a time
            tids = [(await client.request("thread/start", {"cwd": str(tmp_path)}))["thread"]["id"]
                    for _ in range(2)]
            pids = {await _pid(client, tid) for tid in tids}
            assert len(pids) == 1 and fixture_pids_of(codex_home) == pids
            for tid in tids:
                await client.request("thread/unsubscribe", {"threadId": tid})
            # The last unload stops the process. Stopping it takes a while
            # (longer on a busy machine): wait for it to go before the next
            # threads start their own, so that each round proves it.
            with trio.fail_after(WAIT):
                while (await client.request("thread/loaded/list", {}))["data"] or fixture_pids_of(codex_home):
                    await trio.sleep(0.05)


async def test_mcp_server_time_from_pypi_answers_the_model(
        codex_home: Path, scripted: ScriptedResponses, tmp_path: Path) -> None:
    program = shutil.which("mcp-server-time", path=str(Path(sys.executable).parent))
    if program is None:
        pytest.skip("mcp-server-time is not installed (pip install -e '.[test]')")
    configure(codex_home, f'\n[mcp_servers.time]\ncommand = "{program}"\n')
    async with open_app_server(codex_home) as client:
        tid, _ = await start_thread(client, tmp_path)
        msgs = await run_turn(client, tid, call("mcp__time__get_current_time", timezone="UTC"))
    done = items(msgs)[0]
    assert done["status"] == "completed" and done["readOnlyHint"] is True
    assert done["result"]["structuredContent"]["timezone"] == "UTC"
    assert '"timezone":"UTC"' in tool_outputs(scripted)[0]


async def test_a_reload_adds_and_removes_servers_and_stops_the_removed_ones(
        codex_home: Path, scripted: ScriptedResponses, tmp_path: Path) -> None:
    base = (codex_home / "config.toml").read_text()
    configure(codex_home, server_table("old"))
    async with open_app_server(codex_home) as client:
        tid, _ = await start_thread(client, tmp_path)
        await _statuses(client, 1)
        assert len(fixture_pids_of(codex_home)) == 1
        (codex_home / "config.toml").write_text(base)
        configure(codex_home, server_table("new"))
        assert await client.request("config/mcpServer/reload", None) == {}
        with trio.fail_after(WAIT):
            while fixture_pids_of(codex_home):
                await trio.sleep(0.1)
        listed = await client.request("mcpServerStatus/list", {"threadId": tid})
        await run_turn(client, tid, call("mcp__new__echo", text="after"))
    assert [e["name"] for e in listed["data"]] == ["new"]
    assert [t["name"] for t in scripted.requests[-1].body["tools"] if t.get("type") == "namespace"] == ["mcp__new"]
    assert tool_outputs(scripted)[0].endswith('{"result":"after"}')


async def test_a_streamable_http_server_on_loopback_serves_the_model(
        codex_home: Path, scripted: ScriptedResponses, tmp_path: Path, nursery: trio.Nursery) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = await nursery.start(partial(trio.run_process, [sys.executable, str(FIXTURE), "--http", str(port)],
                                       check=False, stderr=subprocess.DEVNULL))
    try:
        with trio.fail_after(WAIT):
            while True:
                try:
                    await (await trio.open_tcp_stream("127.0.0.1", port)).aclose()
                    break
                except OSError:
                    await trio.sleep(0.1)
        configure(codex_home, f'\n[mcp_servers.web]\nurl = "http://127.0.0.1:{port}/mcp"\n'
                              'http_headers = { "X-Test" = "1" }\n')
        async with open_app_server(codex_home) as client:
            tid, _ = await start_thread(client, tmp_path)
            msgs = await run_turn(client, tid, call("mcp__web__echo", text="over http"))
    finally:
        proc.terminate()
    done = items(msgs)[0]
    assert done["status"] == "completed" and done["result"]["structuredContent"] == {"result": "over http"}


async def test_a_server_elicitation_mid_call_is_relayed_to_the_client_and_answered(
        codex_home: Path, scripted: ScriptedResponses, tmp_path: Path) -> None:
    configure(codex_home, server_table("fix"))
    asked = []

    def answer(msg: dict) -> dict:
        asked.append(msg)
        return {"action": "accept", "content": {"name": "Ada"}}

    async with open_app_server(codex_home) as client:
        tid, _ = await start_thread(client, tmp_path)
        msgs = await run_turn(client, tid, call("mcp__fix__greet"), answer)
    (req,) = asked
    assert req["method"] == "mcpServer/elicitation/request"
    p = req["params"]
    assert (p["threadId"], p["serverName"], p["mode"], p["message"]) == (tid, "fix", "form", "What is your name?")
    assert p["requestedSchema"]["properties"]["name"]["type"] == "string"
    assert items(msgs)[0]["result"]["structuredContent"] == {"result": "hello Ada"}
