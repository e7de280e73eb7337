"""apply_patch cannot write outside the sandbox (issue 11): the server's
own writes go through the command sandbox, as the original's do.

A scripted model under an attacker's control tries every way out through
apply_patch, freeform and JSON, under ``read-only`` and ``workspace-write``
with approval policy ``never``: symlinked folders and files (existing, made
by a command earlier in the same turn, or swapped in for a folder between
two patches), absolute paths, ``..``, ``.git``/``.codex``/``.agents`` inside
the workspace, ``$HOME``, ``$CODEX_HOME`` and ``/proc/self/root``. Nothing
outside changes, the model gets the original's words for each refusal or
failure, and the server keeps serving. Where the original (0.169.0) is
installed, the same turns run against it and must answer the same. All of
it lives under /var/tmp: the original (0.169.0) fails every patch write when
its workspace or CODEX_HOME is under /tmp.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from harness import ORIGINAL_BIN, RpcClient, mock_config, open_app_server
from trio_codex.runtime.commands.sandbox import probe
from trio_codex.transports.scripted_responses import (
    CustomToolCall,
    FunctionCall,
    Message,
    OutputStep,
    Script,
    ScriptedResponses,
)

needs_bwrap = pytest.mark.skipif(not probe().available, reason=probe().message or "bubblewrap unavailable")

OUTSIDE = "patch rejected: writing outside of the project; rejected by user approval settings"
READ_ONLY = "patch rejected: writing is blocked by read-only sandbox; rejected by user approval settings"
#: The test folders are under /tmp, writable by default: take it out.
NO_TMP = {"sandbox_workspace_write.exclude_slash_tmp": True, "sandbox_workspace_write.exclude_tmpdir_env_var": True}
#: A catalogued model whose apply_patch the original offers (freeform).
MODEL = "gpt-5.5"


def add(path: str | Path) -> str:
    return f"*** Begin Patch\n*** Add File: {path}\n+pwned\n*** End Patch"


def update(path: str | Path, old: str = "original") -> str:
    return f"*** Begin Patch\n*** Update File: {path}\n@@\n-{old}\n+pwned\n*** End Patch"


def patch_call(text: str, form: str, call_id: str) -> OutputStep:
    if form == "json":
        return FunctionCall("apply_patch", json.dumps({"input": text}), call_id)
    return CustomToolCall("apply_patch", text, call_id)


def command(cmd: str, call_id: str) -> OutputStep:
    return FunctionCall("exec_command", json.dumps({"cmd": cmd, "yield_time_ms": 5000}), call_id)


@pytest.fixture
def base(tmp_path: Path) -> Iterator[Path]:
    """Where everything lives (see the module docstring)."""
    folder = Path(tempfile.mkdtemp(dir="/var/tmp" if os.path.isdir("/var/tmp") else tmp_path))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def codex_home(base: Path, scripted: ScriptedResponses) -> Path:
    home = base / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text(mock_config(scripted.base_url))
    return home


class Layout(msgspec.Struct, frozen=True):
    ws: Path
    outside: Path
    home: Path
    codex_home: Path


def layout(base: Path, codex_home: Path) -> Layout:
    """A workspace whose links lead out, and the places it must not touch."""
    ws, outside = base / "ws", base / "outside"
    ws.mkdir()
    outside.mkdir()
    (outside / "victim").write_text("original\n")
    (ws / "outlink").symlink_to(outside)
    (ws / "victim-link").symlink_to(outside / "victim")
    (ws / "swapped").mkdir()
    for name in (".git", ".agents"):
        (ws / name).mkdir()
    (ws / ".git" / "config").write_text("original\n")
    home = codex_home.parent / "home"  # the server's $HOME (harness.server_env)
    home.mkdir(exist_ok=True)
    return Layout(ws, outside, home, codex_home)


def escapes(at: Layout) -> dict[str, tuple[list[tuple[str, str]], list[str]]]:
    """Each way out: its turn (``("patch" | "command", text)`` calls in
    order) and what workspace-write answers to each patch in it (``FAIL
    <path>`` for a write the sandbox stopped)."""
    ws, outside = at.ws, at.outside
    return {
        "a file added under a symlinked folder": (
            [("patch", add("outlink/x"))], [f"FAIL {ws}/outlink/x"]),
        "a symlinked file updated": (
            [("patch", update("victim-link"))], [f"FAIL {ws}/victim-link"]),
        "an absolute path": ([("patch", add(outside / "abs"))], [OUTSIDE]),
        "a path with ..": ([("patch", add("../outside/dotdot"))], [OUTSIDE]),
        ".git in the workspace": ([("patch", update(".git/config"))], [OUTSIDE]),
        ".codex in the workspace": ([("patch", add(".codex/config.toml"))], [OUTSIDE]),
        ".agents in the workspace": ([("patch", add(".agents/skill.md"))], [OUTSIDE]),
        "$HOME": ([("patch", add(at.home / ".bashrc"))], [OUTSIDE]),
        "$CODEX_HOME": ([("patch", add(at.codex_home / "config.toml"))], [OUTSIDE]),
        "/proc/self/root": ([("patch", add(f"/proc/self/root{outside}/proc"))], [OUTSIDE]),
        "a symlink a command made earlier in the turn": (
            [("command", f"ln -s {outside} made"), ("patch", add("made/x"))], [f"FAIL {ws}/made/x"]),
        "a folder swapped for a symlink between two patches": (
            [("patch", add("swapped/a")), ("command", f"mv swapped swapped.old && ln -s {outside} swapped"),
             ("patch", add("swapped/b"))],
            ["OK", f"FAIL {ws}/swapped/b"]),
    }


async def start_thread(client: RpcClient, cwd: Path, sandbox: str, approval: str = "never") -> str:
    await client.initialize()
    result = await client.request("thread/start", {"cwd": str(cwd), "approvalPolicy": approval, "sandbox": sandbox,
                                                   "model": MODEL, "config": NO_TMP})
    await client.until(lambda m: m.get("method") == "thread/started")
    return result["thread"]["id"]


async def run_escapes(client: RpcClient, scripted: ScriptedResponses, at: Layout, sandbox: str,
                      form: str) -> dict[str, list[str]]:
    """Play every escape, one turn each; what the model got for each patch."""
    tid = await start_thread(client, at.ws, sandbox)
    patch_ids: dict[str, list[str]] = {}
    for n, (name, (calls, _)) in enumerate(escapes(at).items()):
        steps = []
        for i, (kind, text) in enumerate(calls):
            call_id = f"call-{n}-{i}"
            steps.append(patch_call(text, form, call_id) if kind == "patch" else command(text, call_id))
            if kind == "patch":
                patch_ids.setdefault(name, []).append(call_id)
        scripted.enqueue(*(Script(output=(step,)) for step in steps), Script(output=(Message.of("done"),)))
        await client.turn(tid, name)
    outputs = {i["call_id"]: i["output"] for r in scripted.requests for i in r.body["input"]
               if isinstance(i, dict) and i.get("type", "").endswith("_call_output")}
    return {name: [outputs.get(call_id, "(no output)") for call_id in ids] for name, ids in patch_ids.items()}


def expected(answer: str, sandbox: str) -> str:
    if sandbox == "read-only":
        return READ_ONLY
    if answer.startswith("FAIL "):
        return f"Exit code: 1\nWall time: _ seconds\nOutput:\nFailed to write file {answer[5:]}\n"
    if answer == "OK":
        return "Exit code: 0\nWall time: _ seconds\nOutput:\nSuccess. Updated the following files:\nA swapped/a\n"
    return answer


def normalized(output: str) -> str:
    return re.sub(r"Wall time: [0-9.]+ seconds", "Wall time: _ seconds", output)


def assert_nothing_escaped(at: Layout) -> None:
    assert sorted(p.name for p in at.outside.iterdir()) == ["victim"]
    assert (at.outside / "victim").read_text() == "original\n"
    assert list(at.home.iterdir()) == []
    assert (at.ws / ".git" / "config").read_text() == "original\n"
    assert not (at.ws / ".codex").exists() and list((at.ws / ".agents").iterdir()) == []
    assert "pwned" not in (at.codex_home / "config.toml").read_text()


@needs_bwrap
@pytest.mark.parametrize("form", ["freeform", "json"])
@pytest.mark.parametrize("sandbox", ["read-only", "workspace-write"])
async def test_no_patch_writes_outside_the_sandbox_and_the_model_is_told_as_by_the_original(
        codex_home: Path, scripted: ScriptedResponses, base: Path, sandbox: str, form: str) -> None:
    at = layout(base, codex_home)
    async with open_app_server(codex_home) as client:
        got = await run_escapes(client, scripted, at, sandbox, form)
        # Still serving after all that.
        assert (await client.request("thread/list", {}))["data"]
    assert_nothing_escaped(at)
    for name, (_, answers) in escapes(at).items():
        assert [normalized(o) for o in got[name]] == [expected(a, sandbox) for a in answers], name


@needs_bwrap
@pytest.mark.skipif(not ORIGINAL_BIN.exists(), reason="the original codex binary is not installed")
@pytest.mark.parametrize("sandbox", ["read-only", "workspace-write"])
async def test_the_original_answers_every_escape_the_same(
        codex_home: Path, scripted: ScriptedResponses, base: Path, sandbox: str) -> None:
    # The original offers apply_patch freeform to its catalogued models.
    at = layout(base, codex_home)
    async with open_app_server(codex_home, program=(str(ORIGINAL_BIN),)) as client:
        got = await run_escapes(client, scripted, at, sandbox, "freeform")
    assert_nothing_escaped(at)
    for name, (_, answers) in escapes(at).items():
        assert [normalized(o) for o in got[name]] == [expected(a, sandbox) for a in answers], name


async def run_patches(codex_home: Path, scripted: ScriptedResponses, ws: Path, *texts: str,
                      sandbox: str = "workspace-write", approval: str = "never",
                      answer: Any = None) -> tuple[list[str], list[dict]]:
    """One turn of these patches; the model's outputs and the messages."""
    scripted.enqueue(*(Script(output=(patch_call(t, "freeform", f"p{i}"),)) for i, t in enumerate(texts)),
                     Script(output=(Message.of("done"),)))
    async with open_app_server(codex_home) as client:
        tid = await start_thread(client, ws, sandbox, approval)
        await client.request("turn/start", {"threadId": tid, "input": [{"type": "text", "text": "go"}]})
        msgs = []
        while not msgs or msgs[-1].get("method") != "turn/completed":
            msgs.append(await client.next_message())
            if "id" in msgs[-1] and "method" in msgs[-1]:
                await client.send({"id": msgs[-1]["id"], "result": {"decision": answer(msgs[-1]["params"])}})
    outputs = {i["call_id"]: i["output"] for r in scripted.requests for i in r.body["input"]
               if isinstance(i, dict) and i.get("type", "").endswith("_call_output")}
    return [normalized(outputs[f"p{i}"]) for i in range(len(texts))], msgs


def file_changes(msgs: list[dict]) -> list[str]:
    return [m["params"]["item"]["status"] for m in msgs if m.get("method") == "item/completed"
            and m["params"]["item"]["type"] == "fileChange"]


@needs_bwrap
async def test_patches_inside_the_workspace_still_add_update_move_delete_and_follow_inner_links(
        codex_home: Path, scripted: ScriptedResponses, base: Path) -> None:
    at = layout(base, codex_home)
    (at.ws / "keep.txt").write_text("original\n")
    (at.ws / "move_me.txt").write_text("original\n")
    (at.ws / "gone.txt").write_text("bye\n")
    (at.ws / "inner").mkdir()
    (at.ws / "inlink").symlink_to(at.ws / "inner")
    everything = ("*** Begin Patch\n*** Add File: new/dir/n.txt\n+n\n*** Update File: keep.txt\n@@\n-original\n"
                  "+kept\n*** Update File: move_me.txt\n*** Move to: moved.txt\n@@\n-original\n+moved\n"
                  "*** Delete File: gone.txt\n*** End Patch")
    outputs, msgs = await run_patches(codex_home, scripted, at.ws, everything, add("inlink/x"))
    assert outputs == [
        "Exit code: 0\nWall time: _ seconds\nOutput:\nSuccess. Updated the following files:\n"
        "A new/dir/n.txt\nM keep.txt\nM moved.txt\nD gone.txt\n",
        "Exit code: 0\nWall time: _ seconds\nOutput:\nSuccess. Updated the following files:\nA inlink/x\n"]
    assert file_changes(msgs) == ["completed", "completed"]
    assert (at.ws / "new" / "dir" / "n.txt").read_text() == "n\n" and (at.ws / "keep.txt").read_text() == "kept\n"
    assert (at.ws / "moved.txt").read_text() == "moved\n" and not (at.ws / "move_me.txt").exists()
    assert not (at.ws / "gone.txt").exists() and (at.ws / "inner" / "x").read_text() == "pwned\n"
    assert any(m.get("method") == "turn/diff/updated" for m in msgs)


@needs_bwrap
async def test_a_write_the_sandbox_stops_marks_the_change_failed_and_leaves_no_diff(
        codex_home: Path, scripted: ScriptedResponses, base: Path) -> None:
    at = layout(base, codex_home)
    outputs, msgs = await run_patches(codex_home, scripted, at.ws, add("outlink/x"))
    assert outputs == [f"Exit code: 1\nWall time: _ seconds\nOutput:\nFailed to write file {at.ws}/outlink/x\n"]
    assert file_changes(msgs) == ["failed"]
    assert not any(m.get("method") == "turn/diff/updated" for m in msgs)
    assert_nothing_escaped(at)


@needs_bwrap
@pytest.mark.parametrize("decision", ["accept", "decline"])
async def test_a_denied_patch_is_offered_again_outside_the_sandbox_where_no_symlink_is_followed(
        codex_home: Path, scripted: ScriptedResponses, base: Path, decision: str) -> None:
    at = layout(base, codex_home)
    asked: list[dict] = []
    outputs, msgs = await run_patches(codex_home, scripted, at.ws, add("outlink/x"), approval="on-request",
                                      answer=lambda params: asked.append(params) or decision)
    assert [p.get("reason") for p in asked] == ["command failed; retry without sandbox?"]
    if decision == "accept":  # the retry refuses the symlink: the original's failure again
        assert outputs == [f"Exit code: 1\nWall time: _ seconds\nOutput:\nFailed to write file {at.ws}/outlink/x\n"]
        assert file_changes(msgs) == ["failed"]
    else:
        assert outputs == ["patch rejected by user"] and file_changes(msgs) == ["declined"]
    assert_nothing_escaped(at)


@needs_bwrap
async def test_an_approved_patch_writes_the_approved_file_outside_but_not_through_a_symlink(
        codex_home: Path, scripted: ScriptedResponses, base: Path) -> None:
    # As the original: the approved path's folder joins the sandbox, and a
    # symlinked path still fails.
    at = layout(base, codex_home)
    outputs, _ = await run_patches(codex_home, scripted, at.ws, add(at.outside / "approved"), add("outlink/x"),
                                   approval="untrusted", answer=lambda params: "accept")
    assert outputs == [
        "Exit code: 0\nWall time: _ seconds\nOutput:\nSuccess. Updated the following files:\n"
        f"A {at.outside}/approved\n",
        f"Exit code: 1\nWall time: _ seconds\nOutput:\nFailed to write file {at.ws}/outlink/x\n"]
    assert sorted(p.name for p in at.outside.iterdir()) == ["approved", "victim"]


async def test_with_full_access_a_patch_follows_symlinks_as_the_original_does(
        codex_home: Path, scripted: ScriptedResponses, base: Path) -> None:
    at = layout(base, codex_home)
    outputs, _ = await run_patches(codex_home, scripted, at.ws, add("outlink/x"), sandbox="danger-full-access")
    assert outputs == [
        "Exit code: 0\nWall time: _ seconds\nOutput:\nSuccess. Updated the following files:\nA outlink/x\n"]
    assert (at.outside / "x").read_text() == "pwned\n"


@needs_bwrap
@pytest.mark.parametrize("decision", ["accept", "decline"])
async def test_under_read_only_an_approved_patch_is_written_and_a_declined_one_is_not(
        codex_home: Path, scripted: ScriptedResponses, base: Path, decision: str) -> None:
    at = layout(base, codex_home)
    (at.ws / "sub").mkdir()
    outputs, msgs = await run_patches(codex_home, scripted, at.ws, add("sub/new.txt"), sandbox="read-only",
                                      approval="on-request", answer=lambda params: decision)
    if decision == "accept":
        assert outputs == ["Exit code: 0\nWall time: _ seconds\nOutput:\nSuccess. Updated the following files:\n"
                           "A sub/new.txt\n"]
        assert (at.ws / "sub" / "new.txt").read_text() == "pwned\n"
    else:
        assert outputs == ["patch rejected by user"] and not (at.ws / "sub" / "new.txt").exists()
    assert_nothing_escaped(at)
