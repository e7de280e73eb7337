"""``trio-codex exec`` as the original's ``codex exec``: a real subprocess
each time, the in-process app server behind it, the model the scripted
Responses server (the ``codex_home`` fixture points at it, so the requests it
got can be read). Where the original's binary is installed, the same runs
are compared with it (JSONL event for event)."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from harness import ORIGINAL_BIN, OURS, TIMEOUT, run_exec, server_env
from trio_codex.transports.scripted_responses import ScriptedResponses

REPO = Path(__file__).resolve().parents[2]
needs_original = pytest.mark.skipif(not ORIGINAL_BIN.exists(), reason="the original codex binary is not installed")

#: Commands run unsandboxed here, so these tests do not need bubblewrap.
UNSANDBOXED = ("-s", "danger-full-access")
SHELL_ECHO = '[[call=shell_command {"command":"echo hi"}]]'
ADD_FILE = '[[custom=apply_patch "*** Begin Patch\\n*** Add File: made.txt\\n+hello\\n*** End Patch"]]'
FAILING = '[[status=400 message="no such model"]] hi'


def events(done: subprocess.CompletedProcess[bytes]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in done.stdout.decode().splitlines()]


def kinds(evs: list[dict[str, Any]]) -> list[str]:
    return [f"{e['type']}:{e['item']['type']}" if "item" in e else e["type"] for e in evs]


def last_user_text(scripted: ScriptedResponses) -> str:
    body = [r.body for r in scripted.requests if r.body][-1]
    message = [i for i in body["input"] if i.get("role") == "user"][-1]
    return "".join(part["text"] for part in message["content"])


# --- output ----------------------------------------------------------------------


async def test_exec_prints_the_answer_on_stdout_and_the_transcript_on_stderr(codex_home: Path) -> None:
    done = await run_exec(codex_home, "--skip-git-repo-check", "[[deltas=3]] hello from exec")
    assert (done.returncode, done.stdout) == (0, b"hello from exec\n")
    err = done.stderr.decode()
    assert err.startswith("Reading additional input from stdin...\nOpenAI Codex v0.171.0\n--------\n")
    for line in (f"workdir: {codex_home.parent}", "model: mock-model", "provider: mock", "approval: never",
                 "sandbox: read-only", "reasoning effort: none"):
        assert f"\n{line}\n" in err
    assert "\nuser\n[[deltas=3]] hello from exec\ncodex\nhello from exec\ntokens used\n" in err


async def test_exec_json_prints_the_thread_events_of_a_plain_turn(codex_home: Path) -> None:
    done = await run_exec(codex_home, "--json", "--skip-git-repo-check", "[[reasoning=1]] plain")
    evs = events(done)
    assert done.returncode == 0
    assert kinds(evs) == ["thread.started", "turn.started", "item.completed:reasoning",
                          "item.completed:agent_message", "turn.completed"]
    assert evs[2]["item"] == {"id": "item_0", "type": "reasoning", "text": "Thinking it through."}
    assert evs[3]["item"] == {"id": "item_1", "type": "agent_message", "text": "plain"}
    assert set(evs[4]["usage"]) == {"input_tokens", "cached_input_tokens", "cache_write_input_tokens",
                                    "output_tokens", "reasoning_output_tokens"}


async def test_exec_json_shows_a_command_from_start_to_end_under_one_id(codex_home: Path) -> None:
    done = await run_exec(codex_home, "--json", "--skip-git-repo-check", *UNSANDBOXED, SHELL_ECHO)
    evs = events(done)
    assert kinds(evs) == ["thread.started", "turn.started", "item.started:command_execution",
                          "item.completed:command_execution", "item.completed:agent_message", "turn.completed"]
    started, completed = evs[2]["item"], evs[3]["item"]
    assert started == {"id": "item_0", "type": "command_execution", "command": started["command"],
                       "aggregated_output": "", "exit_code": None, "status": "in_progress"}
    assert "echo hi" in started["command"]
    assert completed == {**started, "aggregated_output": "hi\n", "exit_code": 0, "status": "completed"}


async def test_exec_prints_a_command_and_its_output(codex_home: Path) -> None:
    done = await run_exec(codex_home, "--skip-git-repo-check", *UNSANDBOXED, SHELL_ECHO)
    err = done.stderr.decode()
    assert done.returncode == 0
    assert "\nexec\n" in err and f"echo hi' in {codex_home.parent}\n succeeded in " in err
    assert "ms:\nhi\n\ncodex\ntool output: " in err


async def test_exec_shows_a_file_change(codex_home: Path) -> None:
    made = codex_home.parent / "made.txt"
    done = await run_exec(codex_home, "--json", "--skip-git-repo-check", *UNSANDBOXED, ADD_FILE)
    assert made.read_text() == "hello\n"
    changes = [e["item"] for e in events(done) if e.get("item", {}).get("type") == "file_change"]
    assert changes[0]["status"] == "in_progress" and changes[-1]["status"] == "completed"
    assert {c["id"] for c in changes} == {"item_0"}
    assert changes[-1]["changes"] == [{"path": str(made), "kind": "add"}]
    made.unlink()
    done = await run_exec(codex_home, "--skip-git-repo-check", *UNSANDBOXED, ADD_FILE)
    assert f"\napply patch\npatch: completed\n{made}\ndiff --git a/made.txt b/made.txt\n" in done.stderr.decode()


async def test_a_failed_turn_exits_1_with_its_error(codex_home: Path) -> None:
    done = await run_exec(codex_home, "--json", "--skip-git-repo-check", FAILING)
    evs = events(done)
    assert done.returncode == 1
    assert kinds(evs) == ["thread.started", "turn.started", "error", "turn.failed"]
    assert "no such model" in evs[-1]["error"]["message"] and evs[-2]["message"] == evs[-1]["error"]["message"]
    done = await run_exec(codex_home, "--skip-git-repo-check", FAILING)
    assert (done.returncode, done.stdout) == (1, b"")
    assert "\nERROR: " in done.stderr.decode() and "no such model" in done.stderr.decode()


# --- the prompt ------------------------------------------------------------------------


async def test_the_prompt_comes_from_stdin_with_a_dash(codex_home: Path, scripted: ScriptedResponses) -> None:
    done = await run_exec(codex_home, "--skip-git-repo-check", "-", stdin=b"from stdin\n")
    assert (done.returncode, done.stdout) == (0, b"from stdin\n")
    assert last_user_text(scripted) == "from stdin\n"
    assert b"Reading" not in done.stderr


async def test_the_prompt_comes_from_stdin_without_an_argument(codex_home: Path,
                                                               scripted: ScriptedResponses) -> None:
    done = await run_exec(codex_home, "--skip-git-repo-check", stdin=b"no argument")
    assert done.returncode == 0 and last_user_text(scripted) == "no argument"
    assert done.stderr.startswith(b"Reading prompt from stdin...\n")
    done = await run_exec(codex_home, "--skip-git-repo-check", stdin=b" \n")
    assert (done.returncode, done.stderr) == (1, b"Reading prompt from stdin...\nNo prompt provided via stdin.\n")


async def test_piped_stdin_is_appended_to_the_prompt_as_a_block(codex_home: Path,
                                                                scripted: ScriptedResponses) -> None:
    await run_exec(codex_home, "--skip-git-repo-check", "summarize", stdin=b"line one\nline two")
    assert last_user_text(scripted) == "summarize\n\n<stdin>\nline one\nline two\n</stdin>"
    await run_exec(codex_home, "--skip-git-repo-check", "summarize", stdin=b"ends with a newline\n")
    assert last_user_text(scripted) == "summarize\n\n<stdin>\nends with a newline\n</stdin>"


async def test_no_prompt_on_a_terminal_is_an_error(codex_home: Path) -> None:
    leader, follower = pty.openpty()
    try:
        done = await run_exec(codex_home, "--skip-git-repo-check", stdin=follower)
    finally:
        os.close(leader)
        os.close(follower)
    assert done.returncode == 1
    assert done.stderr == b"No prompt provided. Either specify one as an argument or pipe the prompt into stdin.\n"


# --- flags ----------------------------------------------------------------------------


async def test_output_last_message_writes_the_answer_to_a_file(codex_home: Path) -> None:
    out = codex_home.parent / "last.txt"
    done = await run_exec(codex_home, "--json", "--skip-git-repo-check", "-o", str(out), "[[deltas=2]] kept")
    assert done.returncode == 0 and out.read_text() == "kept"


async def test_the_output_schema_reaches_the_request_as_a_strict_text_format(
        codex_home: Path, scripted: ScriptedResponses) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"],
              "additionalProperties": False}
    path = codex_home.parent / "schema.json"
    path.write_text(json.dumps(schema))
    done = await run_exec(codex_home, "--skip-git-repo-check", "--output-schema", str(path),
                          '[[text="{\\"answer\\":\\"42\\"}"]] q')
    assert (done.returncode, done.stdout) == (0, b'{"answer":"42"}\n')
    body = [r.body for r in scripted.requests if r.body][-1]
    assert body["text"] == {"format": {"type": "json_schema", "strict": True, "schema": schema,
                                       "name": "codex_output_schema"}}
    path.write_text("{not json")
    done = await run_exec(codex_home, "--skip-git-repo-check", "--output-schema", str(path), "q")
    assert done.returncode == 1 and f"Output schema file {path} is not valid JSON".encode() in done.stderr


async def test_ephemeral_writes_no_session(codex_home: Path) -> None:
    before = set(codex_home.rglob("*"))
    done = await run_exec(codex_home, "--json", "--skip-git-repo-check", "--ephemeral", "not kept")
    assert done.returncode == 0
    written = {p.relative_to(codex_home).as_posix() for p in set(codex_home.rglob("*")) - before}
    assert not any(name.startswith(("sessions", "archived_sessions", "session_index")) for name in written)
    again = await run_exec(codex_home, "--json", "--skip-git-repo-check", "resume", "--last", "and now?")
    assert events(again)[0]["thread_id"] != events(done)[0]["thread_id"]


async def test_exec_resume_last_goes_on_with_the_newest_thread(codex_home: Path,
                                                               scripted: ScriptedResponses) -> None:
    first = await run_exec(codex_home, "--json", "--skip-git-repo-check", "remember the word tangerine")
    again = await run_exec(codex_home, "--json", "--skip-git-repo-check", "resume", "--last", "which word?")
    assert again.returncode == 0
    assert events(again)[0]["thread_id"] == events(first)[0]["thread_id"]
    body = [r.body for r in scripted.requests if r.body][-1]
    texts = [part["text"] for item in body["input"] if item.get("role") == "user" for part in item["content"]]
    assert texts[-2:] == ["remember the word tangerine", "which word?"]
    by_id = await run_exec(codex_home, "--json", "--skip-git-repo-check", "resume",
                           events(first)[0]["thread_id"], "by id")
    assert events(by_id)[0]["thread_id"] == events(first)[0]["thread_id"]


async def test_outside_a_git_repository_exec_refuses_without_skip_git_repo_check(codex_home: Path) -> None:
    done = await run_exec(codex_home, "hi")
    assert (done.returncode, done.stderr) == (
        1, b"Reading additional input from stdin...\n"
           b"Not inside a trusted directory and --skip-git-repo-check was not specified.\n")
    subprocess.run(["git", "init", "-q", str(codex_home.parent)], check=True)
    assert (await run_exec(codex_home, "hi")).returncode == 0


async def test_top_level_flags_apply_to_exec_and_its_own_win(codex_home: Path, scripted: ScriptedResponses) -> None:
    work = codex_home.parent / "elsewhere"
    work.mkdir()
    done = await run_exec(codex_home, "--skip-git-repo-check", "-m", "inner", "hi",
                          program=(*OURS, "-m", "outer", "-C", str(work), "-s", "workspace-write", "-a", "on-request"))
    err = done.stderr.decode()
    assert f"\nworkdir: {work}\n" in err and "\nmodel: inner\n" in err and "\napproval: never\n" in err
    assert "\nsandbox: workspace-write [workdir, /tmp, $TMPDIR]\n" in err
    assert [r.body for r in scripted.requests if r.body][-1]["model"] == "inner"


# --- the same runs as the original's -----------------------------------------------------


def comparable(evs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events without what differs by design: ids, token counts, the
    original's model-metadata warning, and the tool outputs the model echoes."""
    out: list[dict[str, Any]] = []
    ids: dict[str, str] = {}
    for e in evs:
        item = e.get("item", {})
        if item.get("type") == "error" and "Model metadata" in item.get("message", ""):
            continue
        e = {**e, "thread_id": "T"} if "thread_id" in e else dict(e)
        if "usage" in e:
            e["usage"] = sorted(e["usage"])
        if item:
            e["item"] = {**item, "id": ids.setdefault(item["id"], f"item_{len(ids)}")}
        if item.get("type") == "agent_message" and item["text"].startswith("tool output:"):
            e["item"]["text"] = "tool output"
        out.append(e)
    return out


@needs_original
@pytest.mark.parametrize("prompt", ["[[reasoning=1 deltas=3]] hello", FAILING,
                                    '[[call=exec_command {"cmd":"echo hi; exit 3"}]]'])
async def test_exec_json_matches_the_original_event_for_event(tmp_path: Path, codex_home: Path, prompt: str) -> None:
    arg0 = tmp_path / "arg0"
    arg0.mkdir()
    (arg0 / "codex-linux-sandbox").symlink_to(ORIGINAL_BIN)
    env = server_env(codex_home, PATH=f"{arg0}:{os.environ['PATH']}")
    args = ("--json", "--skip-git-repo-check", *UNSANDBOXED, prompt)
    ours = await run_exec(codex_home, *args)
    original = await run_exec(codex_home, *args, program=(str(ORIGINAL_BIN),), env=env)
    assert ours.returncode == original.returncode
    assert comparable(events(ours)) == comparable(events(original))


# --- the TypeScript SDK ------------------------------------------------------------------------

SDK = Path(os.environ.get("CODEX_SDK_TS", REPO / ".ci/cache/npm/node_modules/@openai/codex-sdk/dist/index.js"))
NODE = os.environ.get("NODE", "node")


@pytest.mark.skipif(not SDK.exists(), reason="@openai/codex-sdk is not installed (.ci/run installs it)")
@pytest.mark.skipif(subprocess.run(["sh", "-c", f"command -v {NODE}"], capture_output=True).returncode != 0,
                    reason="node is not installed")
async def test_the_typescript_sdk_runs_threads_on_trio_codex_unchanged(codex_home: Path,
                                                                      scripted: ScriptedResponses) -> None:
    binary = Path(sys.executable).parent / "trio-codex"
    script = Path(__file__).parent / "sdk_ts" / "drive.mjs"
    with trio.fail_after(TIMEOUT * 3):
        done = await trio.run_process([NODE, str(script), str(SDK), str(binary), str(codex_home.parent)],
                                      env=server_env(codex_home), capture_stdout=True, capture_stderr=True,
                                      check=False)
    assert done.returncode == 0, done.stderr.decode()
    seen = json.loads(done.stdout)
    thread_id = seen["first"]["id"]
    assert seen["first"]["finalResponse"] == "first turn" and seen["first"]["items"] == ["agent_message"]
    assert seen["first"]["usage"]["input_tokens"] > 0
    assert seen["second"] == {"id": thread_id, "finalResponse": "second turn"}
    assert seen["resumed"] == {"id": thread_id, "finalResponse": "third turn, resumed"}
    assert seen["streamed"] == ["thread.started", "turn.started", "item.started:command_execution",
                                "item.completed:command_execution", "item.completed:agent_message",
                                "turn.completed"]
    assert (seen["command"]["aggregated_output"], seen["command"]["status"]) == ("streamed\n", "completed")
    assert seen["structured"] == {"answer": "42"}
    assert "no such model" in seen["failure"]
    schemas = [r.body["text"]["format"]["name"] for r in scripted.requests if r.body and "text" in r.body]
    assert schemas == ["codex_output_schema"]


# --- a daemon on the control socket ------------------------------------------------------------


async def test_exec_uses_an_app_server_daemon_on_the_control_socket(codex_home: Path, scripted: ScriptedResponses,
                                                                   nursery: trio.Nursery) -> None:
    socket = codex_home / "app-server-control" / "app-server-control.sock"
    # The daemon alone runs with -c model=daemon-model: the model tells who served the turn.
    daemon = await nursery.start(lambda task_status: trio.run_process(
        [*OURS, "-c", "model=daemon-model", "app-server", "--listen", "unix://"], env=server_env(codex_home),
        stderr=subprocess.DEVNULL, check=False, task_status=task_status))
    with trio.fail_after(TIMEOUT):
        while not socket.exists():
            await trio.sleep(0.02)
    try:
        done = await run_exec(codex_home, "--json", "--skip-git-repo-check", "-c", "model_reasoning_effort=low",
                              "[[deltas=2]] through the daemon")
        assert done.returncode == 0 and events(done)[-2]["item"]["text"] == "through the daemon"
        body = [r.body for r in scripted.requests if r.body][-1]
        assert (body["model"], body["reasoning"]["effort"]) == ("daemon-model", "low")
        again = await run_exec(codex_home, "--json", "--skip-git-repo-check", "resume", "--last", "next")
        assert events(again)[0]["thread_id"] == events(done)[0]["thread_id"]
        await run_exec(codex_home, "--json", "--skip-git-repo-check", "--no-daemon", "in-process")
        assert [r.body for r in scripted.requests if r.body][-1]["model"] == "mock-model"
    finally:
        daemon.terminate()
