"""Permissions profiles and the read-only guarantee, through the real server:
a thread that asked for read-only (``permissions: ":read-only"`` or
``sandbox: "read-only"``) runs no command or patch with more, across turns,
resumes (in a new server too) and forks, until a request names another
sandbox; ``permissionProfile/list`` and the errors are the original's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness import ORIGINAL_0171_BIN, OURS, RpcClient, RpcError, mock_config, open_app_server, run_turn
from trio_codex.runtime.commands.sandbox import probe
from trio_codex.transports.scripted_responses import ScriptedResponses

needs_bwrap = pytest.mark.skipif(not probe().available, reason=probe().message or "bubblewrap unavailable")

READ_ONLY = {"type": "readOnly", "networkAccess": False}
READ_ONLY_PROFILE = {"id": ":read-only", "extends": None}
PATCH = "*** Begin Patch\n*** Add File: patched.txt\n+hello\n*** End Patch\n"


def call(name: str, **args: Any) -> str:
    return f"[[call={name} {json.dumps(args)}]]"


def tool_outputs(scripted: ScriptedResponses) -> list[str]:
    """Each call's output once, in call order (later requests repeat the history)."""
    return list({i["call_id"]: i["output"] for r in scripted.requests for i in r.body["input"]
                 if isinstance(i, dict) and i.get("type", "").endswith("_call_output")}.values())


async def start(client: RpcClient, **params: Any) -> dict[str, Any]:
    """thread/start as the 0.171 TUI starts its helper threads (experimental
    API on), with ``params`` over that; returns the response."""
    await client.initialize(experimentalApi=True)
    result = await client.request("thread/start", {"sandbox": None, **params})
    await client.until(lambda m: m.get("method") == "thread/started")
    return result


def commands(msgs: list[dict]) -> list[dict]:
    return [m["params"]["item"] for m in msgs if m.get("method") == "item/completed"
            and m["params"]["item"]["type"] == "commandExecution"]


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


@needs_bwrap
async def test_a_read_only_helper_thread_as_the_0171_tui_starts_it_runs_nothing_with_more(
        codex_home: Path, scripted: ScriptedResponses, workspace: Path) -> None:
    async with open_app_server(codex_home) as client:
        result = await start(client, cwd=str(workspace), permissions=":read-only", ephemeral=True,
                             threadSource="thread_title", approvalPolicy="never")
        assert (result["sandbox"], result["activePermissionProfile"]) == (READ_ONLY, READ_ONLY_PROFILE)
        tid = result["thread"]["id"]
        first = await run_turn(client, tid, call("shell_command", command="touch made"))
        escalated = await run_turn(client, tid, call("exec_command", cmd="touch escaped",
                                                     sandbox_permissions="require_escalated"))
        await run_turn(client, tid, f"[[custom=apply_patch {json.dumps(PATCH)}]]")
        later = await run_turn(client, tid, call("shell_command", command="touch later"))  # no override: still read-only
    assert [c["exitCode"] != 0 for c in commands(first) + commands(later)] == [True, True]
    assert "Read-only file system" in commands(first)[0]["aggregatedOutput"]
    assert not commands(escalated)  # refused before it ran, as the original
    made, refused, patched = tool_outputs(scripted)[:3]
    assert refused == ("approval policy is Never; reject command — you cannot ask for escalated permissions if "
                       "the approval policy is Never")
    assert "patch rejected" in patched
    assert not any((workspace / name).exists() for name in ("made", "escaped", "patched.txt", "later"))


async def test_the_responses_name_the_profile_and_a_legacy_sandbox_names_none(codex_home: Path) -> None:
    async with open_app_server(codex_home) as client:
        implicit = await start(client)
        legacy = await client.request("thread/start", {"sandbox": "read-only"})
        workspace = await client.request("thread/start", {"permissions": ":workspace"})
        full = await client.request("thread/start", {"permissions": ":danger-full-access"})
    # Nothing configured: the original's implicit built-in for an untrusted project.
    assert (implicit["sandbox"], implicit["activePermissionProfile"]) == (READ_ONLY, READ_ONLY_PROFILE)
    assert (legacy["sandbox"], legacy["activePermissionProfile"]) == (READ_ONLY, None)
    assert workspace["sandbox"]["type"] == "workspaceWrite" and workspace["sandbox"]["writableRoots"] == []
    assert workspace["activePermissionProfile"] == {"id": ":workspace", "extends": None}
    assert full["sandbox"] == {"type": "dangerFullAccess"}


@needs_bwrap
async def test_a_read_only_thread_resumed_in_a_new_server_stays_read_only(
        codex_home: Path, scripted: ScriptedResponses, workspace: Path) -> None:
    async with open_app_server(codex_home) as client:
        tid = (await start(client, cwd=str(workspace), permissions=":read-only", approvalPolicy="never"))["thread"]["id"]
        await run_turn(client, tid, "hello")  # the rollout records what the turn ran under
    async with open_app_server(codex_home) as client:
        await client.initialize(experimentalApi=True)
        resumed = await client.request("thread/resume", {"threadId": tid})
        msgs = await run_turn(client, tid, call("shell_command", command="touch made"))
    assert (resumed["sandbox"], resumed["activePermissionProfile"]) == (READ_ONLY, READ_ONLY_PROFILE)
    assert commands(msgs)[0]["exitCode"] != 0 and not (workspace / "made").exists()


async def test_a_fork_keeps_read_only_unless_it_names_another_sandbox(codex_home: Path, workspace: Path) -> None:
    async with open_app_server(codex_home) as client:
        tid = (await start(client, cwd=str(workspace), sandbox="read-only"))["thread"]["id"]
        await run_turn(client, tid, "hello")
        kept = await client.request("thread/fork", {"threadId": tid})
        named = await client.request("thread/fork", {"threadId": tid, "permissions": ":workspace"})
        legacy = await client.request("thread/fork", {"threadId": tid, "sandbox": "workspace-write"})
        both = await client.call("thread/fork", {"threadId": tid, "sandbox": "read-only", "permissions": ":read-only"})
        resumed_both = await client.call("thread/resume", {"threadId": kept["thread"]["id"], "sandbox": "read-only",
                                                           "permissions": ":workspace"})
    assert (kept["sandbox"], kept["activePermissionProfile"]) == (READ_ONLY, None)
    assert named["sandbox"]["type"] == "workspaceWrite" and named["activePermissionProfile"]["id"] == ":workspace"
    assert legacy["sandbox"]["type"] == "workspaceWrite" and legacy["activePermissionProfile"] is None
    for refused in (both, resumed_both):
        assert refused["error"] == {"code": -32600, "message": "`permissions` cannot be combined with `sandbox`"}


@needs_bwrap
async def test_turn_start_changes_the_sandbox_only_when_it_names_one(
        codex_home: Path, scripted: ScriptedResponses, workspace: Path) -> None:
    async with open_app_server(codex_home) as client:
        tid = (await start(client, cwd=str(workspace), permissions=":read-only", approvalPolicy="never"))["thread"]["id"]
        widened = await run_turn(client, tid, call("shell_command", command="touch made"),
                                 sandboxPolicy={"type": "workspaceWrite"})
        kept = await run_turn(client, tid, call("shell_command", command="touch again"))
        narrowed = await run_turn(client, tid, call("shell_command", command="touch late"), permissions=":read-only")
        both = await client.call("turn/start", {"threadId": tid, "input": [], "permissions": ":workspace",
                                                "sandboxPolicy": {"type": "readOnly"}})
    updates = [m["params"]["threadSettings"] for m in widened + kept + narrowed
               if m.get("method") == "thread/settings/updated"]
    assert [(u["sandboxPolicy"]["type"], u["activePermissionProfile"]) for u in updates] == [
        ("workspaceWrite", None), ("readOnly", READ_ONLY_PROFILE)]
    assert (workspace / "made").exists() and (workspace / "again").exists()
    assert commands(narrowed)[0]["exitCode"] != 0 and not (workspace / "late").exists()
    assert both["error"] == {"code": -32600, "message": "`permissions` cannot be combined with `sandboxPolicy`"}


@needs_bwrap
async def test_an_approval_for_the_session_does_not_widen_a_read_only_thread(
        codex_home: Path, scripted: ScriptedResponses, workspace: Path) -> None:
    async with open_app_server(codex_home) as client:
        tid = (await start(client, cwd=str(workspace), permissions=":read-only",
                           approvalPolicy="on-request"))["thread"]["id"]
        # The user approves this one command outside the sandbox, for the session...
        approved = await run_turn(client, tid, call("shell_command", command="touch approved",
                                                    sandbox_permissions="require_escalated",
                                                    justification="may I?"), "acceptForSession")
        # ...which leaves the thread read-only for everything else.
        later = await run_turn(client, tid, call("shell_command", command="touch later"), "acceptForSession")
    assert any(m.get("method") == "item/commandExecution/requestApproval" for m in approved)
    assert (workspace / "approved").exists()
    assert not any(m.get("method") == "item/commandExecution/requestApproval" for m in later)
    assert commands(later)[0]["exitCode"] != 0 and not (workspace / "later").exists()


async def test_unknown_profiles_get_the_originals_errors(codex_home: Path) -> None:
    async with open_app_server(codex_home) as client:
        await client.initialize(experimentalApi=True)
        errors = []
        for params in ({"permissions": ":nope"}, {"permissions": "mine"},
                       {"permissions": ":read-only", "sandbox": "read-only"}):
            with pytest.raises(RpcError) as refused:
                await client.request("thread/start", params)
            errors.append((refused.value.code, refused.value.message))
        tid = (await client.request("thread/start", {}))["thread"]["id"]
        turn = await client.call("turn/start", {"threadId": tid, "input": [], "permissions": ":nope"})
    assert errors == [
        (-32600, "failed to load configuration: default_permissions refers to unknown built-in profile `:nope`"),
        (-32600, "failed to load configuration: default_permissions requires a `[permissions]` table"),
        (-32600, "`permissions` cannot be combined with `sandbox`"),
    ]
    assert turn["error"]["message"] == "default_permissions refers to unknown built-in profile `:nope`"


#: Granular approval policies a client may send: the original answers each
#: with all five switches (the unknown one dropped).
GRANULAR_SENT = [{"granular": {"sandbox_approval": True, "rules": False, "mcp_elicitations": True}},
                 {"granular": {"sandbox_approval": False, "rules": True, "mcp_elicitations": False, "extra": 1,
                               "skill_approval": True}}]
#: What the original refuses (-32600): a switch missing or not a boolean,
#: an unknown variant, a map without exactly one key.
GRANULAR_REFUSED = [{"granular": {"sandbox_approval": True}}, {"granular": {}},
                    {"granular": {"sandbox_approval": "yes", "rules": False, "mcp_elicitations": True}},
                    {"other": {}}, {}, {"granular": GRANULAR_SENT[0]["granular"], "x": 1}]


@pytest.mark.parametrize("program", [
    pytest.param(OURS, id="ours"),
    pytest.param((str(ORIGINAL_0171_BIN),), id="original", marks=pytest.mark.skipif(
        not ORIGINAL_0171_BIN.exists(), reason="the original codex 0.171 binary is not installed"))])
async def test_a_granular_approval_policy_is_answered_whole_and_a_malformed_one_refused(
        codex_home: Path, tmp_path: Path, program: tuple[str, ...]) -> None:
    async with open_app_server(codex_home, program=program) as client:
        await client.initialize(experimentalApi=True)
        answered = [(await client.request("thread/start", {"cwd": str(tmp_path), "approvalPolicy": policy}))
                    ["approvalPolicy"] for policy in GRANULAR_SENT]
        refused = [(await client.call("thread/start", {"cwd": str(tmp_path), "approvalPolicy": policy}))
                   .get("error", {}).get("code") for policy in GRANULAR_REFUSED]
    assert answered == [
        {"granular": {"sandbox_approval": True, "rules": False, "skill_approval": False,
                      "request_permissions": False, "mcp_elicitations": True}},
        {"granular": {"sandbox_approval": False, "rules": True, "skill_approval": True,
                      "request_permissions": False, "mcp_elicitations": False}}]
    assert refused == [-32600] * len(GRANULAR_REFUSED)


@pytest.mark.parametrize("program", [
    pytest.param(OURS, id="ours"),
    pytest.param((str(ORIGINAL_0171_BIN),), id="original", marks=pytest.mark.skipif(
        not ORIGINAL_0171_BIN.exists(), reason="the original codex 0.171 binary is not installed"))])
async def test_a_granular_approval_policy_needs_the_experimental_api(
        codex_home: Path, tmp_path: Path, program: tuple[str, ...]) -> None:
    async with open_app_server(codex_home, program=program) as client:
        await client.initialize()
        refused = await client.call("thread/start", {"cwd": str(tmp_path), "approvalPolicy": GRANULAR_SENT[0]})
        tid = (await client.request("thread/start", {"cwd": str(tmp_path), "approvalPolicy": "never"}))["thread"]["id"]
        turn = await client.call("turn/start", {"threadId": tid, "input": [{"type": "text", "text": "hi"}],
                                                "approvalPolicy": GRANULAR_SENT[0]})
    needed = {"code": -32600, "message": "askForApproval.granular requires experimentalApi capability"}
    assert (refused["error"], turn["error"]) == (needed, needed)


async def test_a_granular_approval_policy_the_rollout_recorded_is_resumed_whole(
        codex_home: Path, scripted: ScriptedResponses, workspace: Path) -> None:
    async with open_app_server(codex_home) as client:
        tid = (await start(client, cwd=str(workspace), approvalPolicy=GRANULAR_SENT[1]))["thread"]["id"]
        await run_turn(client, tid, "hello")  # the rollout records the policy the turn ran under
    async with open_app_server(codex_home) as client:
        await client.initialize(experimentalApi=True)
        resumed = await client.request("thread/resume", {"threadId": tid})
    assert resumed["approvalPolicy"] == {"granular": {
        "sandbox_approval": False, "rules": True, "skill_approval": True, "request_permissions": False,
        "mcp_elicitations": False}}


async def test_user_profiles_are_listed_after_the_built_ins_and_run_as_they_say(
        tmp_path: Path, scripted: ScriptedResponses, workspace: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    extra = tmp_path / "extra"
    (home / "config.toml").write_text(mock_config(scripted.base_url) + f"""
[permissions.docs]
description = "the workspace and the docs cache"
extends = ":workspace"
[permissions.docs.filesystem]
"{extra}" = "write"
[permissions.docs.network]
enabled = true

[permissions.narrow]
extends = ":read-only"
[permissions.narrow.filesystem]
"/etc" = "none"
""")
    async with open_app_server(home) as client:
        await client.initialize(experimentalApi=True)
        listed = await client.request("permissionProfile/list", {})
        paged = await client.request("permissionProfile/list", {"limit": 2, "cursor": "3"})
        bad_cursor = await client.call("permissionProfile/list", {"cursor": "9"})
        docs = await client.request("thread/start", {"cwd": str(workspace), "permissions": "docs"})
        narrow = await client.call("thread/start", {"permissions": "narrow"})
    assert [(p["id"], p["allowed"], p["description"]) for p in listed["data"]] == [
        (":read-only", True, None), (":workspace", True, None), (":danger-full-access", True, None),
        ("docs", True, "the workspace and the docs cache"), ("narrow", True, None)]
    assert listed["nextCursor"] is None
    assert [p["id"] for p in paged["data"]] == ["docs", "narrow"] and paged["nextCursor"] is None
    assert bad_cursor["error"]["message"] == "cursor 9 exceeds total permission profiles 5"
    assert docs["sandbox"] == {"type": "workspaceWrite", "writableRoots": [str(extra)], "networkAccess": True,
                               "excludeTmpdirEnvVar": False, "excludeSlashTmp": False}
    assert docs["activePermissionProfile"] == {"id": "docs", "extends": ":workspace"}
    # A profile narrower than what bubblewrap enforces here is refused, not run wider.
    assert narrow["error"]["code"] == -32600
    assert "trio-codex cannot enforce the filesystem entry `/etc` = 'none'" in narrow["error"]["message"]
