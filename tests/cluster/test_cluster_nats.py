"""Stage 1 of the cluster on one machine (README "Cluster"): node processes
on a real nats-server with JetStream and a real PostgreSQL, started by the
fixtures in tests/cluster/conftest.py (skipped when absent)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from harness import TIMEOUT, mock_config, open_app_server, run_turn
from trio_codex.runtime.cluster.ports import Fenced
from trio_codex.transports.scripted_responses import ScriptedResponses

#: Node leases in these tests: short, so that a takeover after a kill is quick.
LEASE_TTL = 2.0


def node_env(nats_url: str, pg_dsn: str) -> dict[str, str]:
    return {"TRIO_CODEX_CLUSTER": nats_url, "TRIO_CODEX_STORE": pg_dsn, "TRIO_CODEX_LEASE_TTL": str(LEASE_TTL)}


def node_homes(tmp_path: Path, scripted: ScriptedResponses) -> dict[str, Path]:
    """A CODEX_HOME for node a and one for node b, both on the scripted model."""
    homes = {}
    for name in ("a", "b"):
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


async def test_an_owner_frozen_past_its_lease_is_fenced_when_it_wakes_and_its_late_events_are_dropped(
        tmp_path: Path, scripted: ScriptedResponses, nats_url: str, pg_dsn: str) -> None:
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
        # The zombie still thinks it owns the thread: its turn runs locally,
        # but PostgreSQL refuses its append and it stops serving the thread.
        await run_turn(on_a, tid, "asked on the zombie")
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

