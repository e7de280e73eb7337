"""The per-thread event numbers and the event tail (README "Cluster", "Gap
repair"): a gap the owner cannot resend, or an owner that died, is
repaired from the thread's tail by number, before the client is told the
thread is closed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from cluster.test_cluster_memory import Node, open_nodes
from cluster.test_cluster_nats import LEASE_TTL, node_env, node_homes, open_store
from harness import TIMEOUT, open_app_server, run_turn
from trio_codex.actors.messages.fanout import EventNumbers
from trio_codex.runtime.app import serve
from trio_codex.runtime.cluster import tunnel
from trio_codex.runtime.cluster.memory import MemoryBus
from trio_codex.runtime.cluster.ports import Bus, Directory, Message, ThreadStore
from trio_codex.runtime.cluster.wire import RESEND
from trio_codex.runtime.config import load_settings
from trio_codex.runtime.protocol.jsonrpc import Notification
from trio_codex.transports.listen import ListenUrl
from trio_codex.transports.scripted_responses import ScriptedResponses

DELTAS = ("item/agentMessage/delta", "item/reasoning/summaryTextDelta", "item/reasoning/textDelta")


class DroppingBus(MemoryBus):
    """A MemoryBus that loses the owner-to-gateway messages ``drop`` picks
    by their content."""

    drop: Callable[[bytes], bool] = staticmethod(lambda data: False)
    dropped: list[bytes] = []

    def publish(self, subject: str, data: bytes, headers: dict[str, str] | None = None) -> None:
        if subject.startswith("codex.gw.") and DroppingBus.drop(data):
            DroppingBus.dropped.append(data)
            return
        super().publish(subject, data, headers)


def lossless(seen: list[dict[str, Any]], tid: str) -> list[dict[str, Any]]:
    """The thread's events a client saw, deltas (best effort) left out."""
    return [m for m in seen if "id" not in m and m.get("method") not in DELTAS
            and (m.get("params") or {}).get("threadId") == tid]


def test_each_thread_numbers_its_events_in_order_and_a_tap_sees_each_once() -> None:
    numbers, seen = EventNumbers(), []
    numbers.tap = lambda thread_id, seq, msg: seen.append((thread_id, seq, msg.method))
    for thread_id, method in (("a", "turn/started"), ("b", "turn/started"), ("a", "item/started"),
                              ("a", "turn/completed")):
        note = Notification(method, {}, 0)
        assert numbers.stamp(thread_id, note) is note
    assert seen == [("a", 1, "turn/started"), ("b", 1, "turn/started"), ("a", 2, "item/started"),
                    ("a", 3, "turn/completed")]


async def test_a_gap_the_owner_cannot_resend_is_repaired_from_the_threads_event_tail(
        tmp_path: Path, scripted: ScriptedResponses, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tunnel, "REPLAY_FRAMES", 0)  # the owner resends nothing
    monkeypatch.setattr(DroppingBus, "dropped", [])
    async with open_nodes(tmp_path, scripted, "a", "b", bus=DroppingBus) as nodes:
        on_a = await nodes["a"].client()
        tid = (await on_a.request("thread/start", {}))["thread"]["id"]
        await on_a.next_of("thread/started")
        on_b = await nodes["b"].client()
        await on_b.request("thread/resume", {"threadId": tid})
        # The owner's report of the reply completed never reaches B.
        monkeypatch.setattr(DroppingBus, "drop", staticmethod(
            lambda data: b'"item/completed"' in data and b'"agentMessage"' in data and not DroppingBus.dropped))
        await on_b.request("turn/start", {"threadId": tid, "input": [{"type": "text", "text": "lossy"}]})
        seen_b = await on_b.until(lambda m: m.get("method") == "thread/closed")
        seen_a = await on_a.until(lambda m: m.get("method") == "turn/completed")
        assert len(DroppingBus.dropped) == 1
        # B's client got the lost event from the tail: every lossless event
        # it saw is the owner's client's, once each, in the same order.
        got = lossless(seen_b[:-2], tid)
        assert got == lossless(seen_a, tid)[:len(got)]
        assert [m["params"]["item"]["type"] for m in got if m["method"] == "item/completed"] \
            == ["userMessage", "agentMessage"]
        # Then it is told the thread is closed, resumes it and carries on.
        assert seen_b[-2]["params"]["status"] == {"type": "notLoaded"}
        resumed = await on_b.request("thread/resume", {"threadId": tid})
        assert len(resumed["thread"]["turns"]) == 1
        seen = await run_turn(on_b, tid, "after the gap")
        assert seen[-1]["params"]["turn"]["status"] == "completed"


class DroppingNatsBus:
    """Node B's NatsBus, but the owner's frames to it that ``drop`` picks
    are lost, and so is every request it makes to resend a gap: only the
    event tail can repair it."""

    def __init__(self, bus: Any, drop: Callable[[bytes], bool]) -> None:
        self.bus, self.node, self.drop = bus, bus.node, drop
        self.dropped: list[bytes] = []

    async def request(self, subject: str, data: bytes, *, timeout: float,
                      headers: dict[str, str] | None = None) -> bytes:
        return await self.bus.request(subject, data, timeout=timeout, headers=headers)

    def publish(self, subject: str, data: bytes, headers: dict[str, str] | None = None) -> None:
        if RESEND not in (headers or {}):
            self.bus.publish(subject, data, headers)

    def reply(self, msg: Message, data: bytes) -> None:
        self.bus.reply(msg, data)

    async def backpressure(self) -> None:
        await self.bus.backpressure()

    async def reconnected(self) -> None:
        await self.bus.reconnected()

    def append_event(self, thread_id: str, epoch: int, seq: int, prev: int, data: bytes) -> None:
        self.bus.append_event(thread_id, epoch, seq, prev, data)

    async def read_events(self, thread_id: str, epoch: int, after: int) -> list[tuple[int, int, bytes]]:
        return await self.bus.read_events(thread_id, epoch, after)

    @asynccontextmanager
    async def subscribe(self, subject: str, capacity: int = 1024) -> AsyncIterator[AsyncIterator[Message]]:
        async with self.bus.subscribe(subject, capacity) as messages:
            async def kept() -> AsyncIterator[Message]:
                async for msg in messages:
                    if msg.subject.startswith("codex.gw.") and self.drop(msg.data) and not self.dropped:
                        self.dropped.append(msg.data)
                        continue
                    yield msg
            yield kept()


async def test_a_client_whose_owner_was_killed_is_given_the_completed_items_it_missed_from_the_tail(
        tmp_path: Path, scripted: ScriptedResponses, nats_url: str, pg_dsn: str) -> None:
    from trio_codex.runtime.cluster.nats_bus import open_nats_bus
    from trio_codex.runtime.cluster.node import open_cluster_node
    from trio_codex.transports.scripted_responses import FunctionCall, Message as Reply, Script

    homes = node_homes(tmp_path, scripted, "ab")
    dropping: list[DroppingNatsBus] = []

    @asynccontextmanager
    async def node_b_ports() -> AsyncIterator[tuple[Bus, Directory, ThreadStore | None]]:
        async with open_cluster_node(nats_url, pg_dsn, lease_ttl=LEASE_TTL) as (bus, directory, store):
            dropping.append(DroppingNatsBus(bus, lambda data: b'"item/completed"' in data
                                            and b'"commandExecution"' in data))
            yield dropping[0], directory, store

    async with open_app_server(homes["a"], env_extra=node_env(nats_url, pg_dsn)) as on_a, \
            open_nats_bus(nats_url, "test") as reader, trio.open_nursery() as nursery:
        await on_a.initialize()
        tid = (await on_a.request("thread/start", {"approvalPolicy": "never",
                                                   "sandbox": "danger-full-access"}))["thread"]["id"]
        accept, accepted = trio.open_memory_channel[Any](0)
        await nursery.start(lambda task_status: serve(
            load_settings(codex_home=homes["b"]), ListenUrl("stdio"), accept=accepted, cluster=node_b_ports(),
            task_status=task_status))
        on_b = await Node(accept, nursery).client()
        await on_b.request("thread/resume", {"threadId": tid})
        # The model calls a tool, then streams a reply that never ends.
        scripted.enqueue(Script(output=(FunctionCall("shell_command", '{"command": "echo done"}'),)),
                         Script(output=(Reply.of("never finished", 4),), hang_after=2))
        await on_b.request("turn/start", {"threadId": tid, "input": [{"type": "text", "text": "cut short"}]})
        seen_a = await on_a.until(lambda m: m.get("method") == "item/agentMessage/delta")
        # The owner put the command's completion in the tail (B never got it), then dies.
        async with open_store(pg_dsn) as store:
            epoch = (await store.read_thread(tid))["epoch"]
        with trio.fail_after(TIMEOUT):
            while not any(b'"commandExecution"' in data and b'"item/completed"' in data
                          for _, _, data in await reader.read_events(tid, epoch, 0)):
                await trio.sleep(0.05)
        on_a.proc.kill()
        assert len(dropping[0].dropped) == 1

        # B's client asks for the thread again: its owner is gone; it is
        # given what it missed from the tail, told the thread closed, and
        # the thread is taken over (by B) with the turn interrupted.
        resumed = await on_b.request("thread/resume", {"threadId": tid})
        seen_b = await on_b.until(lambda m: m.get("method") == "thread/closed")
        got = lossless(seen_b[:-2], tid)
        assert got == lossless(seen_a, tid)[:len(got)]
        completed = [m["params"]["item"] for m in got if m["method"] == "item/completed"]
        assert [item["type"] for item in completed] == ["userMessage", "commandExecution"]
        [turn] = resumed["thread"]["turns"]
        assert turn["status"] == "interrupted"
        assert {item["id"] for item in completed} <= {item["id"] for item in turn["items"]}
        seen = await run_turn(on_b, tid, "asked after the crash")
        assert seen[-1]["params"]["turn"]["status"] == "completed"
        nursery.cancel_scope.cancel()
