"""Stage 0 of the cluster (README "Cluster"): two nodes in one process on
the in-process Bus and Directory, each with its own CODEX_HOME, driven by
real JSON-RPC clients over JSONL byte streams. What these tests show must
hold unchanged on NATS and PostgreSQL (tests/cluster/test_cluster_nats.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import trio
import trio.testing

from harness import TIMEOUT, RpcClient, mock_config, run_turn
from trio_codex.runtime.app import serve
from trio_codex.runtime.cluster import gateway, tunnel, wire
from trio_codex.runtime.cluster.memory import MemoryBus, MemoryDirectory, MemoryFabric, subject_matches
from trio_codex.runtime.cluster.ports import Bus, Directory, Message, NoResponders
from trio_codex.runtime.config import load_settings
from trio_codex.transports.jsonl import JsonlStream
from trio_codex.transports.listen import ListenUrl
from trio_codex.transports.scripted_responses import ScriptedResponses


class Node:
    """One in-process node: its server and a way to connect clients to it."""

    def __init__(self, accept: trio.MemorySendChannel[Any], nursery: trio.Nursery) -> None:
        self.accept = accept
        self.nursery = nursery

    async def client(self) -> RpcClient:
        ours, theirs = trio.testing.memory_stream_pair()
        await self.accept.send(JsonlStream(theirs, theirs, peer="test", max_line=1 << 24))
        client = RpcClient(SimpleNamespace(stdin=ours, stdout=ours))  # type: ignore[arg-type]
        self.nursery.start_soon(client._read)
        await client.initialize()
        return client


@asynccontextmanager
async def _ports(bus: Bus, directory: Directory) -> AsyncIterator[tuple[Bus, Directory, None]]:
    yield bus, directory, None


@asynccontextmanager
async def open_nodes(tmp_path: Path, scripted: ScriptedResponses, *names: str,
                     bus: Callable[[str, MemoryFabric], Bus] = MemoryBus,
                     live: set[str] | None = None) -> AsyncIterator[dict[str, Node]]:
    """The nodes ``names``; ``live`` (shared with the test) holds the names
    of the nodes whose lease is current."""
    fabric, claims, live = MemoryFabric(), {}, set() if live is None else live
    nodes = {}
    async with trio.open_nursery() as nursery:
        for name in names:
            home = tmp_path / name
            home.mkdir()
            (home / "config.toml").write_text(mock_config(scripted.base_url))
            send, recv = trio.open_memory_channel[Any](0)
            ports = _ports(bus(name, fabric), MemoryDirectory(name, claims=claims, nodes=live))
            await nursery.start(lambda task_status, recv=recv, ports=ports, home=home: serve(
                load_settings(codex_home=home), ListenUrl("stdio"), accept=recv, cluster=ports,
                task_status=task_status))
            nodes[name] = Node(send, nursery)
        yield nodes
        nursery.cancel_scope.cancel()


def test_subjects_match_as_nats_matches_them() -> None:
    assert subject_matches("codex.thread.*.req", "codex.thread.t1.req")
    assert not subject_matches("codex.thread.*.req", "codex.thread.t1.evt")
    assert subject_matches("codex.thread.t1.>", "codex.thread.t1.evt.d")
    assert not subject_matches("codex.thread.t1.>", "codex.thread.t1")


async def test_a_request_nobody_serves_fails_at_once_with_no_responders() -> None:
    bus = MemoryBus()
    with pytest.raises(NoResponders):
        await bus.request("codex.thread.t1.req", b"{}", timeout=5)


async def test_a_claim_is_kept_while_its_node_lives_and_taken_over_once_it_is_gone() -> None:
    claims: dict = {}
    live: set[str] = set()
    a, b = MemoryDirectory("a", claims=claims, nodes=live), MemoryDirectory("b", claims=claims, nodes=live)
    first = await a.claim("t1")
    assert (await b.claim("t1")) == first
    live.discard("a")
    second = await b.claim("t1")
    assert second.node == "b" and second.epoch > first.epoch
    assert not await a.release("t1", first.epoch)
    assert await b.release("t1", second.epoch)


async def test_a_client_on_node_b_resumes_and_drives_a_thread_started_on_node_a(
        tmp_path: Path, scripted: ScriptedResponses) -> None:
    async with open_nodes(tmp_path, scripted, "a", "b") as nodes:
        on_a = await nodes["a"].client()
        tid = await on_a.request("thread/start", {})
        tid = tid["thread"]["id"]
        await run_turn(on_a, tid, "asked on a")

        on_b = await nodes["b"].client()
        resumed = await on_b.request("thread/resume", {"threadId": tid})
        assert resumed["thread"]["id"] == tid and len(resumed["thread"]["turns"]) == 1
        seen_b = await run_turn(on_b, tid, "asked on b")
        assert seen_b[-1]["params"]["turn"]["status"] == "completed"
        # The co-subscriber on node A saw node B's turn, in order.
        seen_a = await on_a.until(lambda m: m.get("method") == "turn/completed")
        texts = [m["params"]["item"].get("text") for m in seen_a
                 if m.get("method") == "item/completed" and m["params"]["item"]["type"] == "agentMessage"]
        assert texts == ["asked on b"]
        # The thread lives on node A only: its rollout is in A's CODEX_HOME.
        assert list((tmp_path / "a" / "sessions").rglob(f"*{tid}.jsonl"))
        assert not (tmp_path / "b" / "sessions").exists()
        read = await on_b.request("thread/read", {"threadId": tid, "includeTurns": True})
        assert len(read["thread"]["turns"]) == 2


def test_the_single_process_server_never_imports_the_cluster_extra() -> None:
    import subprocess
    import sys

    code = ("import sys, trio_codex.runtime.app, trio_codex.runtime.cli; "
            "print(sorted(m for m in ('nats', 'psycopg', 'psycopg_pool') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


async def test_a_thread_id_that_is_no_subject_token_is_answered_locally_and_harms_nobody(
        tmp_path: Path, scripted: ScriptedResponses) -> None:
    async with open_nodes(tmp_path, scripted, "a", "b") as nodes:
        on_b = await nodes["b"].client()
        for bad in ("*", ">", "a.b", "codex.thread.x", "with space", ""):
            response = await on_b.call("thread/resume", {"threadId": bad})
            assert "error" in response
        on_a = await nodes["a"].client()
        tid = (await on_a.request("thread/start", {}))["thread"]["id"]
        resumed = await on_b.request("thread/resume", {"threadId": tid})
        assert resumed["thread"]["id"] == tid


class LossyBus(MemoryBus):
    """A MemoryBus that loses the owner-to-gateway messages (frames, tails,
    resends) that ``lose`` picks by their running count, as core NATS may
    lose any message."""

    lose: Callable[[int], bool] = staticmethod(lambda n: False)
    sent = 0
    lost = 0

    def publish(self, subject: str, data: bytes, headers: dict[str, str] | None = None) -> None:
        if subject.startswith("codex.gw."):
            LossyBus.sent += 1
            if LossyBus.lose(LossyBus.sent):
                LossyBus.lost += 1
                return
        super().publish(subject, data, headers)


def _thread_events(seen: list[dict[str, Any]], tid: str) -> list[dict[str, Any]]:
    return [m for m in seen if "id" not in m and (m.get("params") or {}).get("threadId") == tid]


async def test_a_gateway_that_drops_events_repairs_the_gap_and_its_client_sees_each_exactly_once_in_order(
        tmp_path: Path, scripted: ScriptedResponses, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(LossyBus, "sent", 0)
    monkeypatch.setattr(LossyBus, "lost", 0)
    monkeypatch.setattr(LossyBus, "lose", staticmethod(lambda n: n % 3 == 0))
    async with open_nodes(tmp_path, scripted, "a", "b", bus=LossyBus) as nodes:
        on_a = await nodes["a"].client()
        tid = (await on_a.request("thread/start", {}))["thread"]["id"]
        await on_a.next_of("thread/started")
        on_b = await nodes["b"].client()
        resumed = await on_b.request("thread/resume", {"threadId": tid})
        assert resumed["thread"]["id"] == tid
        for n in range(3):
            seen_b = await run_turn(on_b, tid, f"turn {n} " + "word " * 40)
            seen_a = await on_a.until(lambda m: m.get("method") == "turn/completed")
            # Everything the owner's own client saw of the turn, B's client
            # saw too: each once, in the same order (deltas included).
            assert _thread_events(seen_b, tid) == _thread_events(seen_a, tid)
            assert seen_b[-1]["params"]["turn"]["status"] == "completed"
        assert LossyBus.lost > 10
        read = await on_b.request("thread/read", {"threadId": tid, "includeTurns": True})
        assert len(read["thread"]["turns"]) == 3


async def test_a_gap_the_owner_no_longer_holds_closes_the_thread_for_the_client_which_resumes_it(
        tmp_path: Path, scripted: ScriptedResponses, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tunnel, "REPLAY_FRAMES", 1)
    monkeypatch.setattr(LossyBus, "sent", 0)
    monkeypatch.setattr(LossyBus, "lost", 0)
    monkeypatch.setattr(LossyBus, "lose", staticmethod(lambda n: False))
    async with open_nodes(tmp_path, scripted, "a", "b", bus=LossyBus) as nodes:
        on_a = await nodes["a"].client()
        tid = (await on_a.request("thread/start", {}))["thread"]["id"]
        await on_a.next_of("thread/started")
        on_b = await nodes["b"].client()
        await on_b.request("thread/resume", {"threadId": tid})
        # Lose one message of the turn; the owner keeps only the last one.
        lose_at = LossyBus.sent + 4
        monkeypatch.setattr(LossyBus, "lose", staticmethod(lambda n: n == lose_at))
        await on_b.request("turn/start", {"threadId": tid, "input": [{"type": "text", "text": "lossy"}]})
        seen = await on_b.until(lambda m: m.get("method") == "thread/closed")
        assert seen[-2] == {"method": "thread/status/changed",
                            "params": {"threadId": tid, "status": {"type": "notLoaded"}}}
        assert LossyBus.lost == 1
        await on_a.until(lambda m: m.get("method") == "turn/completed")
        # The client resumes the thread (a new tunnel) and carries on.
        resumed = await on_b.request("thread/resume", {"threadId": tid})
        assert len(resumed["thread"]["turns"]) == 1
        seen_b = await run_turn(on_b, tid, "after the gap")
        assert seen_b[-1]["params"]["turn"]["status"] == "completed"


class CutOffBus(MemoryBus):
    """A MemoryBus whose node's gateways hear nothing while the node is in
    ``away`` (cut off from the fabric)."""

    away: set[str] = set()
    buses: dict[str, MemoryBus] = {}

    def __init__(self, node: str, fabric: MemoryFabric) -> None:
        super().__init__(node, fabric)
        CutOffBus.buses[node] = self

    def publish(self, subject: str, data: bytes, headers: dict[str, str] | None = None) -> None:
        if subject.startswith("codex.gw.") and subject.split(".")[2] in CutOffBus.away:
            return
        super().publish(subject, data, headers)


async def test_a_gateway_whose_bus_reconnects_has_its_owners_resend_what_it_missed_while_cut_off(
        tmp_path: Path, scripted: ScriptedResponses, monkeypatch: pytest.MonkeyPatch) -> None:
    # No tail announcement ever: only the reconnection can tell the gateway
    # that the turn's frames (all of them, the last ones too) went missing.
    monkeypatch.setattr(tunnel.VirtualStream, "_announce", lambda self: None)
    monkeypatch.setattr(CutOffBus, "away", set())
    monkeypatch.setattr(CutOffBus, "buses", {})
    async with open_nodes(tmp_path, scripted, "a", "b", bus=CutOffBus) as nodes:
        on_a = await nodes["a"].client()
        tid = (await on_a.request("thread/start", {}))["thread"]["id"]
        await on_a.next_of("thread/started")
        on_b = await nodes["b"].client()
        await on_b.request("thread/resume", {"threadId": tid})
        CutOffBus.away.add("b")
        seen_a = await run_turn(on_a, tid, "while b was away")
        assert seen_a[-1]["params"]["turn"]["status"] == "completed"
        CutOffBus.away.clear()
        CutOffBus.buses["b"].reconnect()
        seen_b = await on_b.until(lambda m: m.get("method") == "turn/completed")
        # Each event once, in the owner's order, deltas included.
        assert _thread_events(seen_b, tid) == _thread_events(seen_a, tid)


class StalledBus(MemoryBus):
    """A MemoryBus on which the requests for ``stalled`` subjects reach their
    subscriber, which never takes them: an owner frozen or killed a moment
    ago, that NATS still routes to (no "no responders", no ack)."""

    stalled: set[str] = set()

    def _deliver(self, msg: Message) -> int:
        if msg.subject in StalledBus.stalled:
            return 1
        return super()._deliver(msg)


async def test_a_request_to_an_owner_that_stopped_acking_is_taken_over_once_its_lease_is_gone_not_after_the_ack_timeout(
        tmp_path: Path, scripted: ScriptedResponses, monkeypatch: pytest.MonkeyPatch) -> None:
    # An ack timeout far past the test's bound: only the lease can end the wait.
    monkeypatch.setattr(gateway, "HOP_TIMEOUT", 100 * TIMEOUT)
    monkeypatch.setattr(StalledBus, "stalled", set())
    live: set[str] = set()
    async with open_nodes(tmp_path, scripted, "a", "b", bus=StalledBus, live=live) as nodes:
        on_a = await nodes["a"].client()
        tid = (await on_a.request("thread/start", {}))["thread"]["id"]
        on_b = await nodes["b"].client()
        await on_b.request("thread/resume", {"threadId": tid})  # its tunnel to node a is open
        StalledBus.stalled.add(wire.thread_subject(tid))
        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(on_b.call, "thread/read", {"threadId": tid})
                await trio.sleep(3 * wire.LEASE_POLL)  # the request waits for node a's ack meanwhile
                assert not any(m.get("method") == "thread/closed" for m in on_b.log)
                live.discard("a")  # node a's lease runs out
        # The request stopped waiting, node b took the thread over, and the
        # client was told the thread it followed on node a is closed.
        closed = await on_b.until(lambda m: m.get("method") == "thread/closed")
        assert closed[-1]["params"] == {"threadId": tid}
