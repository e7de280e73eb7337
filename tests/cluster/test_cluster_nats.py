"""Stage 1 of the cluster on one machine (README "Cluster"): node processes
on a real nats-server with JetStream and a real PostgreSQL, started by the
fixtures in tests/cluster/conftest.py (skipped when absent)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from conformance.test_thread_search_stream import responses
from harness import TIMEOUT, mock_config, open_app_server, run_turn
from trio_codex.runtime.cluster.ports import Fenced
from trio_codex.transports.scripted_responses import ScriptedResponses

#: Node leases in these tests: short, so that a takeover after a kill is quick.
LEASE_TTL = 2.0


def node_env(nats_url: str, pg_dsn: str) -> dict[str, str]:
    return {"TRIO_CODEX_CLUSTER": nats_url, "TRIO_CODEX_STORE": pg_dsn, "TRIO_CODEX_LEASE_TTL": str(LEASE_TTL)}


def node_homes(tmp_path: Path, scripted: ScriptedResponses, names: str = "ab") -> dict[str, Path]:
    """A CODEX_HOME for each node (a and b by default), all on the scripted model."""
    homes = {}
    for name in names:
        homes[name] = tmp_path / name
        homes[name].mkdir()
        (homes[name] / "config.toml").write_text(mock_config(scripted.base_url))
    return homes


def agent_texts(turns: list) -> list[str]:
    return [item["text"] for turn in turns for item in turn["items"] if item["type"] == "agentMessage"]


@asynccontextmanager
async def open_store(pg_dsn: str) -> AsyncIterator:
    from trio_codex.runtime.cluster.pg_store import open_pg_store

    store, pool = await open_pg_store(pg_dsn)
    try:
        yield store
    finally:
        await trio.to_thread.run_sync(pool.close)


async def test_two_nodes_racing_to_claim_one_thread_agree_on_a_single_owner(nats_url: str) -> None:
    from trio_codex.runtime.cluster.nats_bus import open_nats_bus
    from trio_codex.runtime.cluster.nats_directory import open_nats_directory

    with trio.fail_after(TIMEOUT):
        async with open_nats_bus(nats_url, "race-a") as bus_a, open_nats_bus(nats_url, "race-b") as bus_b, \
                open_nats_directory(bus_a, lease_ttl=LEASE_TTL) as a, \
                open_nats_directory(bus_b, lease_ttl=LEASE_TTL) as b:
            claims = {}

            async def claim(directory) -> None:
                claims[directory.node] = await directory.claim("race-thread")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(claim, a)
                nursery.start_soon(claim, b)
            assert claims["race-a"] == claims["race-b"]
            winner = claims["race-a"]
            assert winner.node in ("race-a", "race-b") and winner.epoch >= 1
            assert await a.lookup("race-thread") == winner
            owner = a if winner.node == "race-a" else b
            assert await owner.release("race-thread", winner.epoch)
            assert await a.lookup("race-thread") is None


async def test_a_node_that_lost_its_thread_cannot_append_at_its_stale_epoch(pg_dsn: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_store(pg_dsn) as store:
            assert await store.activate("fenced", 1) == 1
            assert await store.append_items("fenced", 1, [b'{"n":1}', b'{"n":2}']) == 2
            # Another node claims the thread at a later epoch and goes on.
            assert await store.activate("fenced", 5) == 3
            assert await store.append_items("fenced", 5, [b'{"n":3}']) == 3
            with pytest.raises(Fenced, match="epoch 1 refused, the thread is at epoch 5"):
                await store.append_items("fenced", 1, [b'{"late":true}'])
            with pytest.raises(Fenced):
                await store.activate("fenced", 2)
            assert await store.load_history("fenced") == [b'{"n":1}', b'{"n":2}', b'{"n":3}']


async def test_a_client_on_node_b_drives_a_thread_of_node_a_a_co_subscriber_on_a_sees_it_and_big_frames_cross(
        tmp_path: Path, scripted: ScriptedResponses, nats_url: str, pg_dsn: str) -> None:
    homes = node_homes(tmp_path, scripted)
    env = node_env(nats_url, pg_dsn)
    async with open_app_server(homes["a"], env_extra=env) as on_a, open_app_server(homes["b"], env_extra=env) as on_b:
        tid = await on_a.start_thread()
        await run_turn(on_a, tid, "asked on a")

        await on_b.initialize()
        resumed = await on_b.request("thread/resume", {"threadId": tid})
        assert resumed["thread"]["id"] == tid and len(resumed["thread"]["turns"]) == 1
        seen_b = await run_turn(on_b, tid, "asked on b")
        assert seen_b[-1]["params"]["turn"]["status"] == "completed"
        seen_a = await on_a.until(lambda m: m.get("method") == "turn/completed")
        assert [m["params"]["item"]["text"] for m in seen_a if m.get("method") == "item/completed"
                and m["params"]["item"]["type"] == "agentMessage"] == ["asked on b"]
        read = await on_b.request("thread/read", {"threadId": tid, "includeTurns": True})
        assert len(read["thread"]["turns"]) == 2
        # A frame over NATS's max_payload (1 MiB by default) crosses in parts.
        big = "x" * (600 * 1024)
        await run_turn(on_a, tid, big)
        read = await on_b.request("thread/read", {"threadId": tid, "includeTurns": True})
        assert big in agent_texts(read["thread"]["turns"])
    assert list((homes["a"] / "sessions").rglob(f"*{tid}.jsonl"))
    assert not (homes["b"] / "sessions").exists()
    # Node A's activation raised the thread's epoch in PostgreSQL.
    async with open_store(pg_dsn) as store:
        row = await store.read_thread(tid)
        assert row is not None and row["epoch"] >= 1


async def test_after_kill_9_of_the_owner_another_node_takes_the_thread_over_with_its_history(
        tmp_path: Path, scripted: ScriptedResponses, nats_url: str, pg_dsn: str) -> None:
    homes = node_homes(tmp_path, scripted)
    env = node_env(nats_url, pg_dsn)
    async with open_store(pg_dsn) as store, open_app_server(homes["a"], env_extra=env) as on_a, \
            open_app_server(homes["b"], env_extra=env) as on_b:
        tid = await on_a.start_thread()
        await run_turn(on_a, tid, "asked before the crash")
        # Node A copies its rollout into PostgreSQL as it goes.
        with trio.fail_after(TIMEOUT):
            while not any(b'"task_complete"' in item for item in await store.load_history(tid)):
                await trio.sleep(0.05)
        epoch_a = (await store.read_thread(tid))["epoch"]
        on_a.proc.kill()

        await on_b.initialize()
        resumed = await on_b.request("thread/resume", {"threadId": tid})
        assert [t["status"] for t in resumed["thread"]["turns"]] == ["completed"]
        seen = await run_turn(on_b, tid, "asked after the crash")
        assert seen[-1]["params"]["turn"]["status"] == "completed"
        assert "asked before the crash" in str(scripted.requests[-1].body["input"])
        assert (await store.read_thread(tid))["epoch"] > epoch_a
        with trio.fail_after(TIMEOUT):
            while not any(b"asked after the crash" in item for item in await store.load_history(tid)):
                await trio.sleep(0.05)
    assert list((homes["b"] / "sessions").rglob(f"*{tid}.jsonl"))


async def test_store_export_and_import_move_a_rollout_between_postgresql_and_the_originals_jsonl(
        tmp_path: Path, pg_dsn: str) -> None:
    import subprocess
    import sys

    original = sorted((Path(__file__).parent.parent / "fixtures" / "original").rglob("rollout-*.jsonl"))[0]
    cli = [sys.executable, "-m", "trio_codex.runtime", "store"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *args, "--store", pg_dsn], capture_output=True, text=True, timeout=60)

    imported = await trio.to_thread.run_sync(run, "import", str(original))
    assert imported.returncode == 0, imported.stderr
    thread_id = imported.stdout.split("\t")[0]
    again = await trio.to_thread.run_sync(run, "import", str(original))
    assert again.returncode == 1 and "already in the store" in again.stderr
    out = tmp_path / "exported.jsonl"
    exported = await trio.to_thread.run_sync(run, "export", thread_id, "-o", str(out))
    assert exported.returncode == 0, exported.stderr
    assert out.read_bytes() == b"".join(line + b"\n" for line in original.read_bytes().split(b"\n") if line.strip())


async def test_a_node_that_shuts_down_hands_its_threads_off_with_nothing_lost(
        tmp_path: Path, scripted: ScriptedResponses, nats_url: str, pg_dsn: str) -> None:
    homes = node_homes(tmp_path, scripted)
    env = node_env(nats_url, pg_dsn)
    async with open_store(pg_dsn) as store, open_app_server(homes["b"], env_extra=env) as on_b:
        async with open_app_server(homes["a"], env_extra=env) as on_a:
            tid = await on_a.start_thread()
            await on_b.initialize()
            await on_b.request("thread/resume", {"threadId": tid})  # follows it on node A
            await run_turn(on_a, tid, "asked just before the shutdown")
            await on_b.until(lambda m: m.get("method") == "turn/completed")
        # Node A is gone (its stdin closed): it copied the rest of the rollout
        # into PostgreSQL and released its claim on the way out, and the
        # client that followed the thread from node B is told it is closed.
        closed = await on_b.until(lambda m: m.get("method") == "thread/closed")
        assert closed[-1]["params"] == {"threadId": tid}
        assert closed[-2] == {"method": "thread/status/changed",
                              "params": {"threadId": tid, "status": {"type": "notLoaded"}}}
        assert any(b"task_complete" in item for item in await store.load_history(tid))
        resumed = await on_b.request("thread/resume", {"threadId": tid})
        assert [t["status"] for t in resumed["thread"]["turns"]] == ["completed"]
        await run_turn(on_b, tid, "asked after the hand-off")
        assert "asked just before the shutdown" in str(scripted.requests[-1].body["input"])


async def test_an_owner_frozen_past_its_lease_is_fenced_when_it_wakes_stops_its_thread_and_its_late_events_are_dropped(
        tmp_path: Path, scripted: ScriptedResponses, nats_url: str, pg_dsn: str) -> None:
    import json
    import signal

    homes = node_homes(tmp_path, scripted)
    env = node_env(nats_url, pg_dsn)
    async with open_store(pg_dsn) as store, open_app_server(homes["a"], env_extra=env) as on_a, \
            open_app_server(homes["b"], env_extra=env) as on_b:
        tid = await on_a.start_thread()
        await run_turn(on_a, tid, "asked before the freeze")
        with trio.fail_after(TIMEOUT):
            while not any(b"task_complete" in item for item in await store.load_history(tid)):
                await trio.sleep(0.05)
        on_a.proc.send_signal(signal.SIGSTOP)
        try:
            await on_b.initialize()
            await on_b.request("thread/resume", {"threadId": tid})
            await run_turn(on_b, tid, "asked on b after the takeover")
        finally:
            on_a.proc.send_signal(signal.SIGCONT)
        # The zombie still thinks it owns the thread: its turn starts locally
        # (a tool call that waits for the file ``go``, then a second model
        # request), but PostgreSQL refuses its append and it stops serving
        # the thread: its client is told the thread is closed, and sees
        # nothing more of the zombie's turn.
        go = tmp_path / "go"
        command = json.dumps({"command": f"while [ ! -e {go} ]; do sleep 0.05; done; echo released"})
        await on_a.request("turn/start", {
            "threadId": tid, "input": [{"type": "text", "text": f"asked on the zombie [[call=shell_command {command}]]"}],
            "approvalPolicy": "never", "sandboxPolicy": {"type": "dangerFullAccess"}})
        closed = await on_a.until(lambda m: m.get("method") == "thread/closed")
        assert closed[-1]["params"] == {"threadId": tid}
        assert closed[-2] == {"method": "thread/status/changed",
                              "params": {"threadId": tid, "status": {"type": "notLoaded"}}}
        # Its thread actor is stopped and unloaded, the turn's tool with it:
        # released now, the tool would have led to a second model request.
        with trio.fail_after(TIMEOUT):
            while tid in (await on_a.request("thread/loaded/list", {}))["data"]:
                await trio.sleep(0.05)

        def zombie_requests() -> int:
            return sum(1 for r in scripted.requests if "asked on the zombie" in json.dumps(r.body))

        asked = zombie_requests()
        assert asked <= 1
        go.touch()
        await trio.sleep(1.0)  # time for a tool that still ran to end and ask the model again
        assert zombie_requests() == asked
        # Stopped, not interrupted: nothing more was written to its rollout.
        [zombie_rollout] = (homes["a"] / "sessions").rglob(f"*{tid}.jsonl")
        assert b"turn_aborted" not in zombie_rollout.read_bytes()
        with trio.fail_after(TIMEOUT):
            while True:
                read = await on_a.request("thread/read", {"threadId": tid, "includeTurns": True})
                if "asked on b after the takeover" in agent_texts(read["thread"]["turns"]):
                    break  # now answered by node B
                await trio.sleep(0.1)
        assert "asked on the zombie" not in agent_texts(read["thread"]["turns"])
        history = b"".join(await store.load_history(tid))
        assert b"asked on b after the takeover" in history and b"asked on the zombie" not in history
        # Node B's client saw nothing of the zombie's turn.
        assert not any("asked on the zombie" in str(m) for m in on_b.log)
        assert not any(m.get("method") == "item/completed" and m["params"]["item"]["type"] == "agentMessage"
                       and "asked on the zombie" in m["params"]["item"]["text"] for m in on_a.log)



async def test_a_client_on_node_a_runs_turns_on_a_thread_of_node_b_with_an_approval_answered_from_node_c(
        tmp_path: Path, scripted: ScriptedResponses, nats_url: str, pg_dsn: str) -> None:
    import json

    homes = node_homes(tmp_path, scripted, "abc")
    env = node_env(nats_url, pg_dsn)
    workspace = tmp_path / "ws"
    workspace.mkdir()
    async with open_app_server(homes["a"], env_extra=env) as on_a, open_app_server(homes["b"], env_extra=env) as on_b, \
            open_app_server(homes["c"], env_extra=env) as on_c:
        await on_b.initialize()
        tid = (await on_b.request("thread/start", {"cwd": str(workspace), "approvalPolicy": "untrusted",
                                                   "sandbox": "danger-full-access"}))["thread"]["id"]
        for client in (on_a, on_c):
            await client.initialize()
            await client.request("thread/resume", {"threadId": tid})
        await run_turn(on_a, tid, "a first turn from node a")
        command = json.dumps({"command": "touch agreed"})
        await on_a.request("turn/start", {"threadId": tid, "input": [
            {"type": "text", "text": f"[[call=shell_command {command}]]"}]})
        asked_a = await on_a.next_of("item/commandExecution/requestApproval")
        asked_c = await on_c.next_of("item/commandExecution/requestApproval")
        assert asked_a["params"]["itemId"] == asked_c["params"]["itemId"]
        await on_c.send({"id": asked_c["id"], "result": {"decision": "accept"}})
        for client in (on_a, on_c):
            seen = await client.until(lambda m: m.get("method") == "turn/completed")
            assert seen[-1]["params"]["turn"]["status"] == "completed"
            assert [m["params"]["threadId"] for m in seen if m.get("method") == "serverRequest/resolved"] == [tid]
        # Node a's copy of the request was resolved by node c's answer: a late
        # answer from a changes nothing.
        await on_a.send({"id": asked_a["id"], "result": {"decision": "decline"}})
        assert (workspace / "agreed").exists()
        await run_turn(on_a, tid, "a third turn from node a")
        read = await on_c.request("thread/read", {"threadId": tid, "includeTurns": True})
        assert [t["status"] for t in read["thread"]["turns"]] == ["completed"] * 3
    # Only node b ran the thread.
    assert list((homes["b"] / "sessions").rglob(f"*{tid}.jsonl"))
    assert not (homes["a"] / "sessions").exists() and not (homes["c"] / "sessions").exists()


async def test_kill_9_of_the_owner_mid_turn_leaves_the_turn_interrupted_elsewhere_with_every_completed_item(
        tmp_path: Path, scripted: ScriptedResponses, nats_url: str, pg_dsn: str) -> None:
    from trio_codex.transports.scripted_responses import FunctionCall, Message, Script

    homes = node_homes(tmp_path, scripted, "abc")
    env = node_env(nats_url, pg_dsn)
    async with open_app_server(homes["a"], env_extra=env) as on_a, open_app_server(homes["b"], env_extra=env) as on_b, \
            open_app_server(homes["c"], env_extra=env) as on_c:
        await on_a.initialize()
        tid = (await on_a.request("thread/start", {"approvalPolicy": "never",
                                                   "sandbox": "danger-full-access"}))["thread"]["id"]
        await on_b.initialize()
        await on_b.request("thread/resume", {"threadId": tid})
        # The model calls a tool, then streams a reply that never ends.
        scripted.enqueue(Script(output=(FunctionCall("shell_command", '{"command": "echo done"}'),)),
                         Script(output=(Message.of("never finished", 4),), hang_after=2))
        await on_b.request("turn/start", {"threadId": tid, "input": [{"type": "text", "text": "cut short"}]})
        seen = await on_b.until(lambda m: m.get("method") == "item/agentMessage/delta")
        completed = [m["params"]["item"] for m in seen if m.get("method") == "item/completed"]
        assert [item["type"] for item in completed] == ["userMessage", "commandExecution"]
        # Killed the moment its client saw those items completed: no time for
        # a periodic copy to PostgreSQL.
        on_a.proc.kill()

        await on_c.initialize()
        resumed = await on_c.request("thread/resume", {"threadId": tid})
        [turn] = resumed["thread"]["turns"]
        assert turn["status"] == "interrupted"
        kept = {item["id"]: item for item in turn["items"]}
        for item in completed:
            assert item["id"] in kept and kept[item["id"]]["type"] == item["type"]
        seen = await run_turn(on_c, tid, "asked after the crash")
        assert seen[-1]["params"]["turn"]["status"] == "completed"


async def test_sigterm_drains_a_node_idle_threads_at_once_busy_ones_after_their_turn_or_interrupted_nothing_lost(
        tmp_path: Path, scripted: ScriptedResponses, nats_url: str, pg_dsn: str) -> None:
    import signal

    homes = node_homes(tmp_path, scripted)
    env = node_env(nats_url, pg_dsn)
    with (homes["a"] / "config.toml").open("a") as config:
        config.write("\n[cluster]\ndrain_timeout_secs = 3\n")
    async with open_store(pg_dsn) as store, open_app_server(homes["b"], env_extra=env) as on_b:
        async with open_app_server(homes["a"], env_extra=env) as on_a:
            await on_a.initialize()
            await on_b.initialize()
            idle, finishing, stuck = [(await on_a.request("thread/start", {}))["thread"]["id"] for _ in range(3)]
            await on_a.until(lambda m: m.get("method") == "thread/started" and m["params"]["thread"]["id"] == stuck)
            await run_turn(on_a, idle, "an earlier turn")
            for tid in (idle, stuck):
                await on_b.request("thread/resume", {"threadId": tid})  # followed from node b
            await on_a.request("turn/start", {"threadId": finishing, "input": [
                {"type": "text", "text": "[[deltas=10 delay_ms=100]] ends within the deadline"}]})
            await on_a.request("turn/start", {"threadId": stuck, "input": [
                {"type": "text", "text": "[[hang=1]] never ends"}]})
            await on_b.until(lambda m: m.get("method") == "item/agentMessage/delta")
            on_a.proc.send_signal(signal.SIGTERM)
            # Node a's own client: every thread closed, the busy ones once their turn ended.
            seen_a = await on_a.until(lambda m: m.get("method") == "thread/closed"
                                      and m["params"]["threadId"] == stuck)
            ended = {m["params"]["threadId"]: m["params"]["turn"]["status"] for m in seen_a
                     if m.get("method") == "turn/completed"}
            assert ended == {finishing: "completed", stuck: "interrupted"}
            closed_a = [m["params"]["threadId"] for m in seen_a if m.get("method") == "thread/closed"]
            assert closed_a[0] == idle and sorted(closed_a) == sorted([idle, finishing, stuck])
            with trio.fail_after(TIMEOUT):
                assert await on_a.proc.wait() == 0
        # Node b's client was told too, released one by one (idle first).
        seen_b = await on_b.until(lambda m: m.get("method") == "thread/closed" and m["params"]["threadId"] == stuck)
        assert [m["params"]["threadId"] for m in seen_b if m.get("method") == "thread/closed"] == [idle, stuck]
        # Every thread activates on node b with all it had on node a.
        turns = {}
        for tid in (idle, finishing, stuck):
            resumed = await on_b.request("thread/resume", {"threadId": tid})
            turns[tid] = [t["status"] for t in resumed["thread"]["turns"]]
        assert turns == {idle: ["completed"], finishing: ["completed"], stuck: ["interrupted"]}
        assert any(b"ends within the deadline" in item for item in await store.load_history(finishing))
        seen = await run_turn(on_b, stuck, "asked after the drain")
        assert seen[-1]["params"]["turn"]["status"] == "completed"


async def _http_get(url: str, path: str) -> bytes:
    """The whole answer to a plain ``GET path`` (the server closes after it)."""
    from urllib.parse import urlsplit

    where = urlsplit(url)
    assert where.hostname is not None and where.port is not None
    with trio.fail_after(TIMEOUT):
        async with await trio.open_tcp_stream(where.hostname, where.port) as stream:
            await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            answer = b""
            while chunk := await stream.receive_some(65536):
                answer += chunk
    return answer


async def test_a_draining_node_refuses_new_connections_with_why_while_its_clients_finish(
        tmp_path: Path, scripted: ScriptedResponses, nats_url: str, pg_dsn: str) -> None:
    import signal

    from harness.ws import ws_client, ws_server
    from trio_codex.runtime.cluster.drain import REFUSAL

    homes = node_homes(tmp_path, scripted, "a")
    with (homes["a"] / "config.toml").open("a") as config:
        config.write("\n[cluster]\ndrain_timeout_secs = 3\n")
    async with ws_server(homes["a"], env_extra=node_env(nats_url, pg_dsn)) as server, \
            ws_client(server.url) as client:
        await client.initialize()
        tid = (await client.request("thread/start", {}))["thread"]["id"]
        await client.request("turn/start", {"threadId": tid, "input": [{"type": "text", "text": "[[hang=1]] hangs"}]})
        await client.next_of("item/agentMessage/delta")
        assert (await _http_get(server.url, "/readyz")).startswith(b"HTTP/1.1 200")
        server.proc.send_signal(signal.SIGTERM)
        with trio.fail_after(TIMEOUT):
            while (ready := await _http_get(server.url, "/readyz")).startswith(b"HTTP/1.1 200"):
                await trio.sleep(0.05)
        # Draining: not ready, still alive, and a new client is told why.
        assert ready.startswith(b"HTTP/1.1 503") and ready.endswith(REFUSAL.encode())
        assert (await _http_get(server.url, "/healthz")).startswith(b"HTTP/1.1 200")
        with pytest.raises(ConnectionRefusedError, match=r"HTTP 503\): this node is draining \(shutting down\); "
                                                         r"connect to another node of the cluster"):
            async with ws_client(server.url):
                pass
        # The client it has carries on until its thread is handed off.
        assert "data" in await client.request("thread/loaded/list", {})
        seen = await client.until(lambda m: m.get("method") == "thread/closed")
        [completed] = [m for m in seen if m.get("method") == "turn/completed"]
        assert completed["params"]["turn"]["status"] == "interrupted"
        with trio.fail_after(TIMEOUT):
            assert await server.proc.wait() == 0


async def test_thread_list_on_any_node_pages_through_every_nodes_threads_from_postgresql(
        tmp_path: Path, scripted: ScriptedResponses, nats_url: str, pg_dsn: str) -> None:
    homes = node_homes(tmp_path, scripted)
    env = node_env(nats_url, pg_dsn)
    async with open_app_server(homes["a"], env_extra=env) as on_a, open_app_server(homes["b"], env_extra=env) as on_b:
        # The store is shared by this module's tests: list this test's threads by their cwd.
        workspace = tmp_path / "ws"
        workspace.mkdir()
        mine = {"cwd": str(workspace)}
        started = []
        for client, n in ((on_a, 3), (on_b, 2)):
            await client.initialize(experimentalApi=True)  # for thread/search
            for i in range(n):
                tid = (await client.request("thread/start", mine))["thread"]["id"]
                await run_turn(client, tid, f"listed {len(started)}")
                started.append(tid)
        with trio.fail_after(TIMEOUT):
            while len((await on_b.request("thread/list", {"limit": 10, **mine}))["data"]) < len(started):
                await trio.sleep(0.1)
        for client in (on_a, on_b):
            pages, cursor = [], None
            while True:
                page = await client.request("thread/list", {"limit": 2, "cursor": cursor, **mine})
                pages.append([t["id"] for t in page["data"]])
                cursor = page["nextCursor"]
                if cursor is None:
                    break
            # Newest first, two at a time, each thread once, wherever it lives.
            assert [len(p) for p in pages] == [2, 2, 1]
            assert [tid for p in pages for tid in p] == started[::-1]
        found = await on_a.request("thread/list", {"searchTerm": "LISTED 4", **mine})
        assert [t["id"] for t in found["data"]] == [started[4]] and found["data"][0]["preview"] == "listed 4"
        # thread/search over every node's message texts, as one process answers it.
        with trio.fail_after(TIMEOUT):
            while not (searched := await on_a.request("thread/search", {"searchTerm": "Listed 4"}))["data"]:
                await trio.sleep(0.1)
        assert [(r["thread"]["id"], r["snippet"]) for r in searched["data"]] == [(started[4], "listed 4")]
        assert searched["data"][0]["thread"]["status"]["type"] == "notLoaded"  # node b's
        both = await on_b.request("thread/search", {"searchTerm": "isted", "limit": 100})
        assert set(started) <= {r["thread"]["id"] for r in both["data"]}
        empty = await on_a.call("thread/search", {"searchTerm": " "})
        assert empty["error"] == {"code": -32600, "message": "thread/search requires a non-empty searchTerm"}
        # thread/search/stream answers as thread/search; each cancel stops only a search of its own kind.
        assert await on_a.request("thread/search/stream", {"searchTerm": "Listed 4"}) == searched
        long = await on_a.call("thread/search/stream", {"searchTerm": "x" * 65_537})
        assert long["error"] == {"code": -32602, "message": "thread/search/stream searchTerm exceeds 65536 UTF-8 bytes"}
        n = len(on_a.log)
        for msg in ({"id": "s1", "method": "thread/search/stream", "params": {"searchTerm": "listed"}},
                    {"id": "c1", "method": "thread/search/stream/cancel", "params": {"requestId": "s1"}},
                    {"id": "s2", "method": "thread/search", "params": {"searchTerm": "listed"}},
                    {"id": "c2", "method": "thread/search/cancel", "params": {"requestId": "s2"}},
                    {"id": "s3", "method": "thread/search", "params": {"searchTerm": "Listed 4"}},
                    {"id": "c3", "method": "thread/search/stream/cancel", "params": {"requestId": "s3"}}):
            await on_a.send(msg)
        got = await responses(on_a, n, {"s1", "c1", "s2", "c2", "s3", "c3"})
        cancelled = {"code": -32600, "message": "thread search cancelled"}
        assert [got[c]["result"] for c in ("c1", "c2", "c3")] == [{}, {}, {}]
        assert (got["s1"]["error"], got["s2"]["error"], got["s3"]["result"]) == (cancelled, cancelled, searched)
        order = [m["id"] for m in on_a.log[n:] if m.get("id") in got]
        assert order.index("c1") < order.index("s1") and order.index("c2") < order.index("s2")
        assert await on_a.request("thread/search/cancel", {"requestId": "s3"}) == {}
        # A thread this node owns reads loaded, another node's not.
        statuses = {t["id"]: t["status"]["type"] for t in (await on_a.request("thread/list", mine))["data"]}
        assert statuses[started[0]] != "notLoaded" and statuses[started[4]] == "notLoaded"
        bad = await on_a.call("thread/list", {"cursor": "garbage"})
        assert bad["error"]["code"] == -32600 and "invalid cursor" in bad["error"]["message"]


async def test_a_listing_query_its_caller_abandons_is_cancelled_on_the_server_too(pg_dsn: str) -> None:
    async with open_store(pg_dsn) as store:
        with trio.move_on_after(0.5):
            await store._query(lambda conn: conn.execute("select pg_sleep(60)").fetchall())
        # Its pool connection is free again long before the minute is up.
        with trio.fail_after(TIMEOUT):
            while await store._run(lambda conn: conn.execute(
                    "select count(*) from pg_stat_activity where query = 'select pg_sleep(60)' "
                    "and state = 'active'").fetchone()[0]):
                await trio.sleep(0.05)


async def test_postgresql_searches_find_through_their_trigrams_exactly_what_a_substring_scan_finds(pg_dsn: str) -> None:
    import json
    import uuid

    from trio_codex.runtime.persistence.rollout import ThreadMeta

    previews = ["Fix the Login bug", "fix the logout bug", "Ünïcode ÄRGER here", "100% sure_thing", "ab", "nothing"]
    cwd = f"/search/{uuid.uuid4()}"
    metas = [ThreadMeta(id=str(uuid.uuid4()), created_at=i, updated_at=i, recency_at=i, source="vscode", cwd=cwd,
                        preview=preview, name="Renamed Thing" if preview == "nothing" else None)
             for i, preview in enumerate(previews)]
    texts = {meta.id: [meta.preview, f"answered: {meta.preview.upper()}"] for meta in metas}

    def message(role: str, text: str) -> bytes:
        kind = "input_text" if role == "user" else "output_text"
        return json.dumps({"timestamp": "2026-01-01T00:00:00.000Z", "type": "response_item", "payload": {
            "type": "message", "role": role, "content": [{"type": kind, "text": text}]}}).encode()

    async with open_store(pg_dsn) as store:
        for meta in metas:
            await store.activate(meta.id, 1)
            await store.append_items(meta.id, 1, [message("user", texts[meta.id][0]),
                                                  message("assistant", texts[meta.id][1])])
            await store.put_listing(meta)  # which adds its texts' trigrams
        # A text not in the trigrams yet (its thread's listing not put since) is found all the same.
        texts[metas[0].id].append("a late Postscript")
        await store.append_items(metas[0].id, 1, [message("assistant", "a late Postscript")])
        mine = {meta.id for meta in metas}
        newest_first = metas[::-1]
        # ASCII case folding only in the expectations: PostgreSQL's of the rest depends on its locale.
        for term in ["the lo", "LOGIN", "ÄRGER", "Ünïcode Ä", "100%", "e_t", "ab", "ANSWERED: FIX", "renamed",
                     "postscript", "zzz"]:
            folded = term.lower()
            listed = await store.list_threads(cwd=cwd, limit=50, search_term=term)
            assert [m.id for m in listed.rows] == [m.id for m in newest_first if folded in m.preview.lower()
                                                   or folded in (m.name or "").lower()], term
            searched = await store.list_threads(limit=50, full_text=term)
            assert [m.id for m in searched.rows if m.id in mine] == [
                m.id for m in newest_first if any(folded in text.lower() for text in texts[m.id])], term
        assert await store.snippets([metas[0].id, metas[1].id], "LOGIN") == {metas[0].id: "Fix the Login bug"}


async def test_a_node_joins_the_cluster_from_the_cluster_table_of_its_config_toml(
        tmp_path: Path, scripted: ScriptedResponses, nats_url: str, pg_dsn: str) -> None:
    homes = node_homes(tmp_path, scripted)
    with (homes["b"] / "config.toml").open("a") as config:
        config.write(f'\n[cluster]\nurl = "{nats_url}"\nstore = "{pg_dsn}"\nlease_ttl_secs = {LEASE_TTL}\n')
    async with open_app_server(homes["a"], env_extra=node_env(nats_url, pg_dsn)) as on_a, \
            open_app_server(homes["b"]) as on_b:
        tid = await on_a.start_thread()
        await run_turn(on_a, tid, "asked on a")
        await on_b.initialize()
        resumed = await on_b.request("thread/resume", {"threadId": tid})
        assert [t["status"] for t in resumed["thread"]["turns"]] == ["completed"]
    assert not (homes["b"] / "sessions").exists()  # served by node a


def _turn_events(log: list[dict], tid: str) -> list[dict]:
    """The thread's notifications from its last turn's ``turn/started`` on."""
    events = [m for m in log if "id" not in m and (m.get("params") or {}).get("threadId") == tid]
    start = max(i for i, m in enumerate(events) if m.get("method") == "turn/started")
    return events[start:]


async def test_frames_nats_lost_in_a_restart_while_the_gateway_was_away_reach_its_client_once_and_in_order(
        tmp_path: Path, scripted: ScriptedResponses, nats_server: Any, pg_dsn: str) -> None:
    import re
    import signal

    from trio_codex.runtime.cluster import tunnel
    from trio_codex.runtime.cluster.nats_bus import open_nats_bus

    homes = node_homes(tmp_path, scripted)
    # Leases long enough to outlast the restart: no thread changes hands.
    env = {**node_env(nats_server.url, pg_dsn), "TRIO_CODEX_LEASE_TTL": "60", "TRIO_CODEX_LOG": "trio_codex=info"}
    log_b = tmp_path / "b.log"
    with log_b.open("wb") as stderr_b:
        async with open_app_server(homes["a"], env_extra=env) as on_a, \
                open_app_server(homes["b"], env_extra=env, stderr=stderr_b.fileno()) as on_b:
            tid = await on_a.start_thread()
            await on_b.initialize()
            await on_b.request("thread/resume", {"threadId": tid})
            await on_b.request("turn/start", {"threadId": tid, "input": [
                {"type": "text", "text": "[[deltas=30 delay_ms=50]] streamed across a restart of NATS"}]})
            await on_b.next_of("item/agentMessage/delta")
            # Node B's NATS connection dies while it cannot reconnect; node A
            # reconnects and finishes the turn: its frames to B's gateway find
            # no subscriber, and NATS drops them.
            on_b.proc.send_signal(signal.SIGSTOP)
            try:
                await trio.to_thread.run_sync(nats_server.kill)
                await trio.to_thread.run_sync(nats_server.start)
                # A tap on the new server sees node A's turn/completed go out,
                # then A announce its last sequence number three times: B
                # comes back only after that, so it must learn what it
                # missed from a later announcement.
                with trio.fail_after(TIMEOUT):
                    async with open_nats_bus(nats_server.url, "tap") as tap, tap.subscribe("codex.gw.>") as frames:
                        completed, tails = False, []
                        async for msg in frames:
                            completed = completed or b'"turn/completed"' in msg.data
                            tail = (msg.headers or {}).get(tunnel.TAIL)
                            tails = tails + [tail] if completed and tail is not None else tails
                            if len(tails) >= 3 and tails[-3:] == [tails[-1]] * 3:
                                break
            finally:
                on_b.proc.send_signal(signal.SIGCONT)
            # The owner still holds the frames: repaired, not closed.
            await on_b.until(lambda m: m.get("method") == "turn/completed")
            seen_a, seen_b = _turn_events(on_a.log, tid), _turn_events(on_b.log, tid)
            assert seen_a[-1]["method"] == "turn/completed"
            assert seen_b == seen_a  # each once, in order, deltas included
    assert re.search(rb"asking \S+ to resend from \d+", log_b.read_bytes())
    # Back on NATS, B's gateway asked at once, without waiting for an announcement.
    assert re.search(rb"reconnected: asking \S+ to resend from \d+", log_b.read_bytes())


async def test_the_nats_bus_tells_its_node_when_it_has_reconnected_after_a_restart_of_nats(nats_server: Any) -> None:
    from trio_codex.runtime.cluster.nats_bus import open_nats_bus

    async with open_nats_bus(nats_server.url, "n") as bus:
        back = trio.Event()

        async def wait_for_reconnect() -> None:
            await bus.reconnected()
            back.set()
        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(wait_for_reconnect)
                await trio.to_thread.run_sync(nats_server.kill)
                await trio.to_thread.run_sync(nats_server.start)
                await back.wait()
