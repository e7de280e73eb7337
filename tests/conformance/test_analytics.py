"""Analytics end to end: the real server over stdio exports events for a
session with approvals, to a JSONL file and to a real HTTP endpoint on
loopback; a hung endpoint does not hold up shutdown; off by default; closed
connections are freed."""

from __future__ import annotations

import gc
import json
import weakref
from pathlib import Path

import trio
import trio.testing

from harness import mock_config, open_app_server, run_turn
from harness.endpoint import Endpoint
from trio_codex.actors.analytics.actor import EXPORT_SHUTDOWN_TIMEOUT, run_analytics
from trio_codex.actors.approvals import run_approvals
from trio_codex.actors.connection import Connection
from trio_codex.actors.hub import run_hub
from trio_codex.runtime.config import load_settings
from trio_codex.runtime.server.info import ServerInfo
from trio_codex.transports.memory import memory_frame_pair
from trio_codex.transports.scripted_responses import ScriptedResponses


def call(name: str, **args: object) -> str:
    return f"[[call={name} {json.dumps(args)}]]"


async def test_a_session_with_approvals_exports_the_events(
        tmp_path: Path, scripted: ScriptedResponses) -> None:
    home = tmp_path / "home"
    home.mkdir()
    export = tmp_path / "events.jsonl"
    (home / "config.toml").write_text(mock_config(scripted.base_url) + (
        f'\n[analytics]\nenabled = true\nexport_jsonl = "{export}"\n'))
    workspace = tmp_path / "ws"
    workspace.mkdir()
    async with open_app_server(home) as client:
        await client.initialize("analytics_client")
        tid = (await client.request("thread/start", {"cwd": str(workspace), "approvalPolicy": "untrusted",
                                                     "sandbox": "danger-full-access"}))["thread"]["id"]
        await run_turn(client, tid, call("shell_command", command="touch yes"), "accept")
        await run_turn(client, tid, call("shell_command", command="touch no"), "decline")
    events = [json.loads(line) for line in export.read_text().splitlines()]
    kinds = [e["event_type"] for e in events]
    assert kinds.count("codex_thread_initialized") == 1 and kinds.count("codex_turn_event") == 2
    init = next(e for e in events if e["event_type"] == "codex_thread_initialized")
    assert (init["thread_id"], init["connection_id"], init["client_name"], init["model"]) == (
        tid, 1, "analytics_client", "mock-model")
    turns = [e for e in events if e["event_type"] == "codex_turn_event"]
    assert all(t["thread_id"] == tid and t["status"] == "completed" for t in turns)
    assert all(t["input_tokens"] > 0 and t["output_tokens"] > 0 and t["steer_count"] == 0 for t in turns)
    assert all(isinstance(t["duration_ms"], int) for t in turns)
    approvals = [e for e in events if e["event_type"] == "codex_tool_approval"]
    assert [a["decision"] for a in approvals] == ["accept", "decline"]
    for a in approvals:
        assert (a["thread_id"], a["request_method"], a["policy"]) == (
            tid, "item/commandExecution/requestApproval", "untrusted")
        assert a["answered_by_connection"] == 1 and a["sent_to_connections"] == [1]
        assert a["from_session_cache"] is False and isinstance(a["decision_ms"], int)


async def test_a_compaction_exports_its_event(tmp_path: Path, scripted: ScriptedResponses) -> None:
    home = tmp_path / "home"
    home.mkdir()
    export = tmp_path / "events.jsonl"
    (home / "config.toml").write_text(mock_config(scripted.base_url) + (
        f'\n[analytics]\nenabled = true\nexport_jsonl = "{export}"\n'))
    async with open_app_server(home) as client:
        await client.initialize()
        tid = (await client.request("thread/start", {}))["thread"]["id"]
        await client.turn(tid, "something to summarize")
        await client.request("thread/compact/start", {"threadId": tid})
        done = await client.until(lambda m: m.get("method") == "turn/completed")
    events = [json.loads(line) for line in export.read_text().splitlines()]
    compactions = [e for e in events if e["event_type"] == "codex_compaction_event"]
    assert len(compactions) == 1
    event = compactions[0]
    assert (event["thread_id"], event["turn_id"], event["trigger"], event["reason"], event["phase"],
            event["status"]) == (tid, done[-1]["params"]["turn"]["id"], "manual", "user_requested",
                                 "standalone_turn", "completed")
    assert event["active_context_tokens_before"] > 0 and event["active_context_tokens_after"] > 0


def analytics_home(tmp_path: Path, base_url: str, **analytics: object) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    table = "".join(f"{key} = {json.dumps(value)}\n" for key, value in analytics.items())
    (home / "config.toml").write_text(mock_config(base_url) + f"\n[analytics]\nenabled = true\n{table}")
    return home


async def test_events_are_posted_to_an_http_endpoint(
        tmp_path: Path, scripted: ScriptedResponses, nursery: trio.Nursery) -> None:
    endpoint = Endpoint()
    await nursery.start(endpoint.serve)
    home = analytics_home(tmp_path, scripted.base_url, export_url=endpoint.url)
    async with open_app_server(home) as client:
        await client.initialize("poster")
        tid = (await client.request("thread/start", {}))["thread"]["id"]
        turn, _ = await client.turn(tid, "hello")
    # The server has exited: whatever it had was posted before it did.
    events = [event for body in endpoint.bodies for event in body["events"]]
    assert all(set(body) == {"events"} for body in endpoint.bodies)
    assert [e["event_type"] for e in events] == ["codex_thread_initialized", "codex_turn_event"]
    init, done = events
    assert (init["thread_id"], init["connection_id"], init["client_name"]) == (tid, 1, "poster")
    assert (done["thread_id"], done["turn_id"], done["status"]) == (tid, turn["turn"]["id"], "completed")


async def test_a_hung_endpoint_does_not_hold_up_shutdown(
        tmp_path: Path, scripted: ScriptedResponses, nursery: trio.Nursery) -> None:
    endpoint = Endpoint(hang=True)
    await nursery.start(endpoint.serve)
    # Ten minutes per try: only the shutdown deadline can end the POST.
    home = analytics_home(tmp_path, scripted.base_url, export_url=endpoint.url, export_timeout_ms=600_000)
    async with open_app_server(home) as client:
        tid = await client.start_thread()
        with trio.fail_after(10):
            await endpoint.arrived.wait()  # the thread's event: the POST hangs from here on
        await client.turn(tid, "hello")  # the server carries on meanwhile
        assert client.proc.stdin is not None
        await client.proc.stdin.aclose()
        with trio.fail_after(EXPORT_SHUTDOWN_TIMEOUT + 9):
            await client.proc.wait()
    assert client.proc.returncode == 0
    assert len(endpoint.bodies) == 1


async def test_analytics_is_off_by_default(tmp_path: Path, scripted: ScriptedResponses) -> None:
    home = tmp_path / "home"
    home.mkdir()
    export = tmp_path / "events.jsonl"
    (home / "config.toml").write_text(mock_config(scripted.base_url) + f'\n[analytics]\nexport_jsonl = "{export}"\n')
    async with open_app_server(home) as client:
        await client.initialize()
        tid = (await client.request("thread/start", {}))["thread"]["id"]
        await client.next_message()
        await client.turn(tid, "hi")
    assert not export.exists() or export.read_text() == ""


async def test_a_closed_connection_is_freed_while_analytics_runs(tmp_path: Path, nursery: trio.Nursery) -> None:
    settings = load_settings(codex_home=tmp_path, overrides=["analytics.enabled=true"])
    recorder = await nursery.start(run_analytics, settings.analytics)
    assert recorder.enabled
    hub = await nursery.start(run_hub)
    approvals = await nursery.start(run_approvals, recorder)
    stalled_threads = (await nursery.start(run_hub))  # any mailbox will do; no thread request is sent
    server_end, client = memory_frame_pair()
    conn = Connection(7, server_end, ServerInfo(settings), hub, stalled_threads, approvals, recorder)
    ref = weakref.ref(conn)
    async with trio.open_nursery() as inner:
        inner.start_soon(conn.run)
        await client.send_frames([b'{"id":1,"method":"initialize","params":{"clientInfo":{"name":"w","version":"1"}}}'])
        with trio.fail_after(10):
            assert b'"id":1' in await client.receive_frame()
        await client.aclose()
    del conn, inner
    await trio.testing.wait_all_tasks_blocked()
    gc.collect()
    assert ref() is None, "something still holds the closed connection"
