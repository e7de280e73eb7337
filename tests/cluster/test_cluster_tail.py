"""The per-thread event numbers and the event tail (README "Cluster", "Gap
repair"): a gap the owner cannot resend, or an owner that died, is
repaired from the thread's tail by number, before the client is told the
thread is closed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness import run_turn
from cluster.test_cluster_memory import open_nodes
from trio_codex.actors.fanout import EventNumbers
from trio_codex.runtime.cluster import tunnel
from trio_codex.runtime.cluster.memory import MemoryBus
from trio_codex.runtime.protocol.jsonrpc import Notification
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
