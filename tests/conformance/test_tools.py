"""Tool calls end to end: the scripted model calls a tool, the real server
runs it (real subprocesses, under bubblewrap where the policy says so),
asks the client when the policy says so, and feeds the output back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import trio

from harness import open_app_server, run_turn
from trio_codex.runtime.commands.sandbox import probe
from trio_codex.transports.scripted_responses import ScriptedResponses

needs_bwrap = pytest.mark.skipif(not probe().available, reason=probe().message or "bubblewrap unavailable")


def call(name: str, **args: Any) -> str:
    return f"[[call={name} {json.dumps(args)}]]"


async def thread(client, cwd: Path, approval: str = "never", sandbox: str = "workspace-write",
                 **config: Any) -> str:
    await client.initialize()
    result = await client.request("thread/start", {"cwd": str(cwd), "approvalPolicy": approval,
                                                   "sandbox": sandbox, "config": config or None})
    await client.next_message()  # thread/started
    return result["thread"]["id"]


def items(msgs: list[dict], kind: str, event: str = "item/completed") -> list[dict]:
    return [m["params"]["item"] for m in msgs if m.get("method") == event and m["params"]["item"]["type"] == kind]


def tool_outputs(scripted: ScriptedResponses) -> list[str]:
    return [i["output"] for r in scripted.requests for i in r.body["input"]
            if isinstance(i, dict) and i.get("type", "").endswith("_call_output")]


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


@needs_bwrap
async def test_a_command_runs_in_the_sandbox_and_its_output_goes_back_to_the_model(
        codex_home: Path, scripted: ScriptedResponses, workspace: Path) -> None:
    async with open_app_server(codex_home) as client:
        tid = await thread(client, workspace)
        msgs = await run_turn(client, tid, call("shell_command", command="echo hi"))
    started = items(msgs, "commandExecution", "item/started")[0]
    assert started["command"] == "/bin/bash -lc 'echo hi'" and started["cwd"] == str(workspace)
    assert started["status"] == "inProgress" and started["commandActions"]
    done = items(msgs, "commandExecution")[0]
    assert (done["status"], done["exitCode"], done["aggregatedOutput"]) == ("completed", 0, "hi\n")
    assert isinstance(done["durationMs"], int)
    assert tool_outputs(scripted)[0].startswith("Exit code: 0\nWall time: ")
    assert tool_outputs(scripted)[0].endswith("Output:\nhi\n")
    assert msgs[-1]["params"]["turn"]["status"] == "completed"


@needs_bwrap
async def test_a_write_outside_the_workspace_is_denied(
        codex_home: Path, scripted: ScriptedResponses, workspace: Path) -> None:
    outside = workspace.parent / "outside"
    outside.mkdir()
    async with open_app_server(codex_home) as client:
        # The test's directories are under /tmp, writable by default: exclude it.
        tid = await thread(client, workspace, **{"sandbox_workspace_write.exclude_slash_tmp": True,
                                                 "sandbox_workspace_write.exclude_tmpdir_env_var": True})
        msgs = await run_turn(client, tid, call("shell_command", command=f"touch {outside}/f; touch inside"))
    done = items(msgs, "commandExecution")[0]
    assert "Read-only file system" in done["aggregatedOutput"]
    assert not (outside / "f").exists() and (workspace / "inside").exists()


@needs_bwrap
async def test_the_network_is_off_unless_the_policy_turns_it_on(
        codex_home: Path, scripted: ScriptedResponses, workspace: Path, nursery: trio.Nursery) -> None:
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    probe_cmd = f"python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {port}), 2); print(\"connected\")'"
    async with open_app_server(codex_home) as client:
        tid = await thread(client, workspace)
        msgs = await run_turn(client, tid, call("shell_command", command=probe_cmd))
    done = items(msgs, "commandExecution")[0]
    assert done["exitCode"] != 0 and "connected" not in done["aggregatedOutput"]
    await listener.aclose()


async def test_a_command_that_runs_too_long_is_stopped(
        codex_home: Path, scripted: ScriptedResponses, workspace: Path) -> None:
    async with open_app_server(codex_home) as client:
        tid = await thread(client, workspace, sandbox="danger-full-access")
        msgs = await run_turn(client, tid, call("shell_command", command="sleep 30", timeout_ms=300))
    done = items(msgs, "commandExecution")[0]
    assert done["status"] == "failed" and done["exitCode"] == 124
    assert "command timed out after" in tool_outputs(scripted)[0]


async def test_ten_megabytes_of_output_stay_bounded(
        codex_home: Path, scripted: ScriptedResponses, workspace: Path) -> None:
    async with open_app_server(codex_home) as client:
        tid = await thread(client, workspace, sandbox="danger-full-access")
        msgs = await run_turn(client, tid, call("shell_command", command="head -c 10000000 /dev/zero | tr '\\0' x"))
    done = items(msgs, "commandExecution")[0]
    assert done["exitCode"] == 0 and len(done["aggregatedOutput"]) <= 1024 * 1024 + 1024
    output = tool_outputs(scripted)[0]
    assert len(output) < 64 * 1024 and "truncated" in output


async def test_an_unknown_tool_or_bad_arguments_go_back_to_the_model(
        codex_home: Path, scripted: ScriptedResponses, workspace: Path) -> None:
    async with open_app_server(codex_home) as client:
        tid = await thread(client, workspace)
        msgs = await run_turn(client, tid, call("no_such_tool") + call("shell_command", nope=1))
    assert msgs[-1]["params"]["turn"]["status"] == "completed"
    first, second = tool_outputs(scripted)[:2]
    assert first == "unsupported call: no_such_tool"
    assert second.startswith("failed to parse function arguments: ")


@pytest.mark.parametrize("decision, status, turn_status", [
    ("accept", "completed", "completed"),
    ("decline", "declined", "completed"),
    ("cancel", "declined", "interrupted"),
])
async def test_an_approval_answer_decides_the_command(
        codex_home: Path, scripted: ScriptedResponses, workspace: Path,
        decision: str, status: str, turn_status: str) -> None:
    async with open_app_server(codex_home) as client:
        tid = await thread(client, workspace, approval="untrusted", sandbox="danger-full-access")
        msgs = await run_turn(client, tid, call("shell_command", command="touch made"), lambda p: decision)
    request = next(m for m in msgs if m.get("method") == "item/commandExecution/requestApproval")
    assert isinstance(request["id"], int)
    params = request["params"]
    assert (params["threadId"], params["command"]) == (tid, "/bin/bash -lc 'touch made'")
    assert params["availableDecisions"][0] == "accept" and params["availableDecisions"][-1] == "cancel"
    methods = [m.get("method") for m in msgs]
    waiting = {"type": "active", "activeFlags": ["waitingOnApproval"]}
    assert any(m.get("method") == "thread/status/changed" and m["params"]["status"] == waiting for m in msgs)
    assert methods.index("serverRequest/resolved") > methods.index("item/commandExecution/requestApproval")
    assert items(msgs, "commandExecution")[0]["status"] == status
    assert (workspace / "made").exists() == (decision == "accept")
    assert msgs[-1]["params"]["turn"]["status"] == turn_status
    if decision == "decline":
        assert tool_outputs(scripted)[0] == "exec command rejected by user"


async def test_accept_for_session_asks_once(
        codex_home: Path, scripted: ScriptedResponses, workspace: Path) -> None:
    async with open_app_server(codex_home) as client:
        tid = await thread(client, workspace, approval="untrusted", sandbox="danger-full-access")
        first = await run_turn(client, tid, call("shell_command", command="touch again"), lambda p: "acceptForSession")
        second = await run_turn(client, tid, call("shell_command", command="touch again"), lambda p: "decline")
    asked = [m for m in first + second if m.get("method") == "item/commandExecution/requestApproval"]
    assert len(asked) == 1
    assert items(second, "commandExecution")[0]["status"] == "completed"


async def test_interrupt_with_a_pending_approval_resolves_it_last(
        codex_home: Path, workspace: Path) -> None:
    async with open_app_server(codex_home) as client:
        tid = await thread(client, workspace, approval="untrusted", sandbox="danger-full-access")
        started = await client.request("turn/start", {"threadId": tid, "input": [
            {"type": "text", "text": call("shell_command", command="touch never")}]})
        request = (await client.until(lambda m: m.get("method") == "item/commandExecution/requestApproval"))[-1]
        response = await client.call("turn/interrupt", {"threadId": tid, "turnId": started["turn"]["id"]})
        assert response["result"] == {}
        after = await client.until(lambda m: m.get("method") == "serverRequest/resolved")
    names = [m["method"] for m in after]
    assert names[-3:] == ["thread/status/changed", "turn/completed", "serverRequest/resolved"]
    assert after[-2]["params"]["turn"]["status"] == "interrupted"
    assert after[-1]["params"] == {"threadId": tid, "requestId": request["id"]}
    assert not (workspace / "never").exists()


PATCH = """*** Begin Patch
*** Add File: new.txt
+hello
*** Update File: keep.txt
@@
-old line
+new line
*** Update File: move_me.txt
*** Move to: moved.txt
@@
-a
+b
*** Delete File: gone.txt
*** End Patch"""


async def test_a_patch_adds_updates_moves_and_deletes_files(
        codex_home: Path, scripted: ScriptedResponses, workspace: Path) -> None:
    (workspace / "keep.txt").write_text("old line\n")
    (workspace / "move_me.txt").write_text("a\n")
    (workspace / "gone.txt").write_text("bye\n")
    async with open_app_server(codex_home) as client:
        tid = await thread(client, workspace, sandbox="workspace-write")
        msgs = await run_turn(client, tid, f"[[custom=apply_patch {json.dumps(PATCH)}]]")
    assert (workspace / "new.txt").read_text() == "hello\n"
    assert (workspace / "keep.txt").read_text() == "new line\n"
    assert (workspace / "moved.txt").read_text() == "b\n" and not (workspace / "move_me.txt").exists()
    assert not (workspace / "gone.txt").exists()
    change = items(msgs, "fileChange")[0]
    assert change["status"] == "completed"
    kinds = {Path(c["path"]).name: c["kind"] for c in change["changes"]}
    assert kinds["new.txt"] == {"type": "add"} and kinds["gone.txt"] == {"type": "delete"}
    assert kinds["move_me.txt"]["type"] == "update" and kinds["move_me.txt"]["move_path"].endswith("moved.txt")
    assert any(m.get("method") == "turn/diff/updated" for m in msgs)
    assert tool_outputs(scripted)[0].startswith("Exit code: 0\nWall time: ")
    assert "Output:\nSuccess. Updated the following files:\nA new.txt\n" in tool_outputs(scripted)[0]


async def test_a_patch_whose_hunk_does_not_apply_changes_nothing(
        codex_home: Path, scripted: ScriptedResponses, workspace: Path) -> None:
    (workspace / "keep.txt").write_text("something else\n")
    (workspace / "move_me.txt").write_text("a\n")
    (workspace / "gone.txt").write_text("bye\n")
    async with open_app_server(codex_home) as client:
        tid = await thread(client, workspace, sandbox="workspace-write")
        await run_turn(client, tid, f"[[custom=apply_patch {json.dumps(PATCH)}]]")
    assert not (workspace / "new.txt").exists() and (workspace / "gone.txt").exists()
    assert (workspace / "keep.txt").read_text() == "something else\n"
    assert tool_outputs(scripted)[0].startswith("apply_patch verification failed: Failed to find expected lines")


async def test_update_plan_becomes_a_plan_item_and_a_plan_update(
        codex_home: Path, scripted: ScriptedResponses, workspace: Path) -> None:
    plan = {"explanation": "why", "plan": [{"step": "one", "status": "completed"},
                                           {"step": "two", "status": "in_progress"}]}
    async with open_app_server(codex_home) as client:
        tid = await thread(client, workspace)
        msgs = await run_turn(client, tid, call("update_plan", **plan))
    update = next(m["params"] for m in msgs if m.get("method") == "turn/plan/updated")
    assert update["plan"] == [{"step": "one", "status": "completed"}, {"step": "two", "status": "inProgress"}]
    assert update["explanation"] == "why" and items(msgs, "plan")
    assert tool_outputs(scripted)[0] == "Plan updated"


async def test_unified_exec_keeps_a_process_across_calls(
        codex_home: Path, scripted: ScriptedResponses, workspace: Path) -> None:
    async with open_app_server(codex_home) as client:
        tid = await thread(client, workspace, sandbox="danger-full-access")
        await run_turn(client, tid, call("exec_command", cmd="read line; echo got $line", yield_time_ms=300))
        session = int(tool_outputs(scripted)[0].split("session ID ")[1].split("\n")[0])
        await run_turn(client, tid, call("write_stdin", session_id=session, chars="ping\n", yield_time_ms=2000))
    assert "got ping" in tool_outputs(scripted)[-1]
    assert "Process exited with code 0" in tool_outputs(scripted)[-1]


def test_bwrap_is_installed_for_the_sandbox_tests() -> None:
    # CI installs bubblewrap (see .ci/run); without it the sandbox tests skip.
    assert shutil.which("bwrap") or not probe().available


async def test_command_exec_buffers_the_output_of_a_plain_command(codex_home: Path) -> None:
    async with open_app_server(codex_home) as client:
        await client.initialize()
        result = await client.request("command/exec", {
            "command": ["bash", "-c", "echo out; echo err >&2; exit 2"], "sandboxPolicy": {"type": "dangerFullAccess"}})
        assert result == {"exitCode": 2, "stdout": "out\n", "stderr": "err\n"}
        empty = await client.call("command/exec", {"command": []})
        assert empty["error"] == {"code": -32600, "message": "command must not be empty"}
        streaming = await client.call("command/exec", {"command": ["cat"], "streamStdin": True})
        assert streaming["error"]["message"] == "command/exec tty or streaming requires a client-supplied processId"


async def test_command_exec_streams_takes_stdin_and_terminates(codex_home: Path) -> None:
    import base64
    async with open_app_server(codex_home) as client:
        await client.initialize()
        await client.send({"id": "cat", "method": "command/exec", "params": {
            "command": ["cat"], "processId": "p1", "streamStdin": True, "streamStdoutStderr": True,
            "sandboxPolicy": {"type": "dangerFullAccess"}, "disableTimeout": True}})
        assert await client.request("command/exec/write", {
            "processId": "p1", "deltaBase64": base64.b64encode(b"hello\n").decode()}) == {}
        delta = (await client.until(lambda m: m.get("method") == "command/exec/outputDelta"))[-1]["params"]
        assert (delta["processId"], delta["stream"], base64.b64decode(delta["deltaBase64"])) == ("p1", "stdout", b"hello\n")
        assert await client.request("command/exec/terminate", {"processId": "p1"}) == {}
        with trio.fail_after(10):
            while not any(m.get("id") == "cat" for m in client.log):
                await trio.sleep(0.01)
    done = next(m for m in client.log if m.get("id") == "cat")["result"]
    assert done == {"exitCode": 137, "stdout": "", "stderr": ""}


async def test_command_exec_processes_die_with_their_connection(codex_home: Path, tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    async with open_app_server(codex_home) as client:
        await client.initialize()
        await client.send({"id": 1, "method": "command/exec", "params": {
            "command": ["bash", "-c", f"echo $$ > {pidfile}; sleep 100"], "processId": "long",
            "streamStdoutStderr": True, "sandboxPolicy": {"type": "dangerFullAccess"}, "disableTimeout": True}})
        with trio.fail_after(10):
            while not pidfile.exists() or not pidfile.read_text().strip():
                await trio.sleep(0.01)
    pid = int(pidfile.read_text())
    with trio.fail_after(10):
        while Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]:
            await trio.sleep(0.01)


@needs_bwrap
async def test_the_sandbox_subcommand_runs_a_command_under_the_policy(workspace: Path) -> None:
    import sys
    argv = [sys.executable, "-m", "trio_codex.runtime", "sandbox", "linux"]
    script = ["sh", "-c", "touch made && echo wrote"]
    with trio.fail_after(30):
        read_only = await trio.run_process([*argv, "--", *script], cwd=workspace, check=False,
                                           capture_stdout=True, capture_stderr=True)
        full_auto = await trio.run_process([*argv, "--full-auto", *script], cwd=workspace, check=False,
                                           capture_stdout=True, capture_stderr=True)
    assert read_only.returncode != 0 and b"Read-only file system" in read_only.stderr
    assert (full_auto.returncode, full_auto.stdout) == (0, b"wrote\n")
