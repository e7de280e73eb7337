"""The analytics actor: the Recorder, overflow, the exporters (a JSONL file and
a real HTTP endpoint on loopback), bounded shutdown, and ownership."""

from __future__ import annotations

import gc
import logging
import weakref
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

from harness.endpoint import Endpoint
from trio_codex.actors.analytics.actor import (
    ANALYTICS_CAPACITY,
    EXPORT_SHUTDOWN_TIMEOUT,
    HTTP_BATCH_MAX,
    HttpExporter,
    JsonlExporter,
    run_analytics,
)
from trio_codex.actors.analytics.facts import (
    DISABLED,
    ClientRequest,
    Compaction,
    ConnectionClosed,
    Initialize,
    Recorder,
    ServerRequest,
    ServerResponse,
    ThreadStarted,
    TurnCompleted,
    TurnStarted,
)
from trio_codex.actors.analytics.reducer import CompactionEvent
from trio_codex.runtime.config import AnalyticsConfig, ConfigError
from trio_codex.runtime.protocol.v2.approval import CommandExecutionRequestApprovalParams

QUEUE_FULL = "analytics queue is full"


def compaction(n: int) -> Compaction:
    """A fact that is one event on its own."""
    return Compaction("t1", f"u{n}", "auto", "context_limit", "completed", 10, 1, started_at=n, at_ms=n)


def session() -> list[Any]:
    params = CommandExecutionRequestApprovalParams("t1", "u1", "call-1", 0, "ls", "/w", [])
    return [
        Initialize(1, "codex_vscode", "1.4.0"),
        ThreadStarted("t1", 1, "gpt-5", at_ms=100),
        TurnStarted("t1", "u1", at_ms=200),
        ServerRequest(0, "item/commandExecution/requestApproval", params, "t1", "u1", "call-1", (1,), at_ms=300),
        ServerResponse(0, 1, msgspec.Raw(b'{"decision":"accept"}'), at_ms=400),
        TurnCompleted("t1", "u1", "completed", 300, at_ms=500),
    ]


def event_types(events: list[dict[str, Any]]) -> list[str]:
    return [e["event_type"] for e in events]


def warnings_about(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and text in r.getMessage()]


# --- on and off --------------------------------------------------------------------


async def test_analytics_is_off_by_default_and_recording_then_costs_nothing() -> None:
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            recorder = await nursery.start(run_analytics, AnalyticsConfig())
    assert recorder is DISABLED and not recorder.enabled
    recorder.record(compaction(1))
    assert recorder.dropped == 0


@pytest.mark.parametrize(("enabled", "default_enabled", "on"), [
    (None, True, True), (False, True, False), (True, False, True), (None, False, False),
])
async def test_config_decides_over_the_command_line_default(
        nursery: trio.Nursery, enabled: bool | None, default_enabled: bool, on: bool) -> None:
    with trio.fail_after(5):
        recorder = await nursery.start(
            partial(run_analytics, AnalyticsConfig(enabled=enabled), default_enabled=default_enabled))
    assert recorder.enabled is on
    recorder.close()


# --- never in the way ------------------------------------------------------------


async def test_a_flood_is_dropped_and_counted_without_blocking_and_warned_once_per_interval(
        nursery: trio.Nursery, caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock) -> None:
    caplog.set_level(logging.INFO, logger="trio_codex.analytics")
    done = trio.Event()

    async def analytics(task_status: trio.TaskStatus[Recorder]) -> None:
        await run_analytics(AnalyticsConfig(enabled=True), task_status=task_status)
        done.set()

    # The actor waits in receive, so one fact goes straight to it, past the queue.
    room = ANALYTICS_CAPACITY + 1
    with trio.fail_after(30):
        recorder = await nursery.start(analytics)
        # No checkpoint in this loop: the actor cannot run, as if it were stuck.
        for n in range(10_000):
            recorder.record(compaction(n))
        assert recorder.dropped == 10_000 - room
        assert len(warnings_about(caplog, QUEUE_FULL)) == 1
        assert "dropped 1 fact(s)" in warnings_about(caplog, QUEUE_FULL)[0]

        await trio.testing.wait_all_tasks_blocked()  # the actor drains the queue
        for n in range(room + 4):
            recorder.record(compaction(n))
        assert len(warnings_about(caplog, QUEUE_FULL)) == 1  # still within the interval: counted only
        await trio.sleep(10)
        await trio.testing.wait_all_tasks_blocked()
        for n in range(room + 1):
            recorder.record(compaction(n))
        assert len(warnings_about(caplog, QUEUE_FULL)) == 2
        # Every drop since the first warning, the rest of the flood included.
        # In the later floods the actor sits in its batch window, not in
        # receive, so no fact slips past the queue: 5 and 2 more dropped.
        assert f"dropped {10_000 - room - 1 + 5 + 2} fact(s)" in warnings_about(caplog, QUEUE_FULL)[1]
        assert recorder.dropped == 10_000 - room + 7

        recorder.close()
        recorder.record(compaction(0))  # after close: ignored, never an error
        await done.wait()
    assert f"analytics stopped: {3 * room - 2} fact(s) reduced, {10_000 - room + 7} dropped" in caplog.text


async def test_a_reducer_failure_is_logged_and_the_actor_carries_on(
        nursery: trio.Nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "events.jsonl"
    done = trio.Event()

    async def analytics(task_status: trio.TaskStatus[Recorder]) -> None:
        await run_analytics(AnalyticsConfig(enabled=True, export_jsonl=str(out)), task_status=task_status)
        done.set()

    with trio.fail_after(5):
        recorder = await nursery.start(analytics)
        # Not a valid fact (usage must be a TokenUsageBreakdown): the reducer trips over it.
        recorder.record(TurnCompleted("t1", "u1", "completed", 1, usage="lots"))  # type: ignore[arg-type]
        recorder.record(compaction(1))
        recorder.close()
        await done.wait()
    assert "the reducer failed on a TurnCompleted fact" in caplog.text
    assert event_types(msgspec.json.decode(b"[" + b",".join(out.read_bytes().splitlines()) + b"]")) == [
        "codex_compaction_event"]


async def test_facts_hold_no_reference_to_the_connection_they_describe(nursery: trio.Nursery) -> None:
    class Connection:
        def __init__(self, conn_id: int) -> None:
            self.id = conn_id
            self.outbox = object()

    with trio.fail_after(5):
        recorder = await nursery.start(run_analytics, AnalyticsConfig(enabled=True))
        conn = Connection(7)
        gone = weakref.ref(conn)
        recorder.record(Initialize(conn.id, "client", "1"))
        recorder.record(ClientRequest(conn.id, 1, "thread/start"))
        recorder.record(ConnectionClosed(conn.id))
        del conn
        gc.collect()
        assert gone() is None  # while the facts are still queued, unread
        await trio.testing.wait_all_tasks_blocked()
        recorder.close()


# --- the JSONL exporter ------------------------------------------------------------


async def test_jsonl_exporter_writes_one_event_per_line_and_flushes_at_turn_end(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    done = trio.Event()

    async def analytics(task_status: trio.TaskStatus[Recorder]) -> None:
        await run_analytics(AnalyticsConfig(enabled=True, export_jsonl=str(out)), task_status=task_status)
        done.set()

    with trio.fail_after(10):
        recorder = await nursery.start(analytics)
        for fact in session():
            recorder.record(fact)
        # On disk once the turn has ended, while the actor still runs.
        while b"codex_turn_event" not in out.read_bytes():
            await trio.sleep(0.01)
        lines = out.read_bytes().splitlines()
        events = [msgspec.json.decode(line) for line in lines]
        assert event_types(events) == ["codex_thread_initialized", "codex_tool_approval", "codex_turn_event"]
        assert events[1]["decision"] == "accept" and events[1]["decision_ms"] == 100
        assert events[2]["duration_ms"] == 300 and events[2]["started_at"] == 200
        recorder.record(compaction(1))
        recorder.close()
        await done.wait()
    # Shutdown flushed the rest; the file is appended to, never truncated.
    assert out.read_bytes().splitlines()[:3] == lines
    assert len(out.read_bytes().splitlines()) == 4


async def test_an_unwritable_jsonl_path_is_a_config_error_at_start(nursery: trio.Nursery, tmp_path: Path) -> None:
    config = AnalyticsConfig(enabled=True, export_jsonl=str(tmp_path / "missing" / "e.jsonl"))
    with trio.fail_after(5), pytest.raises(ConfigError, match="export_jsonl .*cannot open it") as info:
        await nursery.start(run_analytics, config)
    assert info.value.key == "analytics.export_jsonl"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
async def test_a_failed_write_is_counted_and_warned_and_the_exporter_carries_on(
        caplog: pytest.LogCaptureFixture) -> None:
    exporter = JsonlExporter("/dev/full")
    with trio.fail_after(5):
        await exporter.open()
        async with trio.open_nursery() as inner:
            inner.start_soon(exporter.run)
            exporter.offer((CompactionEvent("t", "u", "auto", "context_limit", "responses", "mid_turn", "memento",
                                            "completed", None, 1, 1, 0, 0, None),) * 2)
            exporter.close()
    assert (exporter.exported, exporter.failed) == (0, 2)
    [warning] = warnings_about(caplog, "cannot write /dev/full")
    assert "No space left on device" in warning


def test_only_http_urls_are_accepted() -> None:
    with pytest.raises(ConfigError, match="expected an http://HOST"):
        HttpExporter("https://analytics.example.com/events")


# --- the HTTP exporter, against a real endpoint on loopback -----------------------


async def test_http_exporter_posts_the_events_in_batches(nursery: trio.Nursery) -> None:
    endpoint = Endpoint()
    await nursery.start(endpoint.serve)
    done = trio.Event()

    async def analytics(task_status: trio.TaskStatus[Recorder]) -> None:
        await run_analytics(AnalyticsConfig(enabled=True, export_url=endpoint.url), task_status=task_status)
        done.set()

    with trio.fail_after(10):
        recorder = await nursery.start(analytics)
        for fact in session():
            recorder.record(fact)
        for n in range(HTTP_BATCH_MAX + 1):
            recorder.record(compaction(n))
        recorder.close()
        await done.wait()
    events = [event for body in endpoint.bodies for event in body["events"]]
    assert all(set(body) == {"events"} and len(body["events"]) <= HTTP_BATCH_MAX for body in endpoint.bodies)
    assert event_types(events[:3]) == ["codex_thread_initialized", "codex_tool_approval", "codex_turn_event"]
    assert events[3:] == [msgspec.to_builtins(CompactionEvent("t1", f"u{n}", "auto", "context_limit", "responses",
                                                              "mid_turn", "memento", "completed", None, 10, 1, n, n,
                                                              None))
                          for n in range(HTTP_BATCH_MAX + 1)]


async def test_a_failing_endpoint_is_retried_with_backoff_then_given_up_and_counted(
        nursery: trio.Nursery, caplog: pytest.LogCaptureFixture) -> None:
    endpoint = Endpoint(503, 500, 500, 200)
    await nursery.start(endpoint.serve)
    exporter = HttpExporter(endpoint.url, timeout=5, max_attempts=3, backoff=0.01)
    with trio.fail_after(10):
        async with trio.open_nursery() as inner:
            inner.start_soon(exporter.run)
            exporter.offer((CompactionEvent("t", "u", "auto", "context_limit", "responses", "mid_turn", "memento",
                                            "completed", None, 1, 1, 0, 0, None),))
            exporter.close()
    assert len(endpoint.bodies) == 3 and endpoint.statuses == [200]
    assert (exporter.exported, exporter.failed, exporter.batches_failed) == (0, 1, 1)
    [warning] = warnings_about(caplog, "gave up posting")
    assert "after 3 tries: HTTP 500" in warning


async def test_a_client_error_is_not_retried_and_a_refused_connection_is(nursery: trio.Nursery) -> None:
    endpoint = Endpoint(400)
    await nursery.start(endpoint.serve)
    with trio.socket.socket() as unused:
        await unused.bind(("127.0.0.1", 0))
        refused_port = unused.getsockname()[1]
    rejected = HttpExporter(endpoint.url, max_attempts=3, backoff=0.01)
    refused = HttpExporter(f"http://127.0.0.1:{refused_port}/", max_attempts=2, backoff=0.01)
    event = CompactionEvent("t", "u", "auto", "context_limit", "responses", "mid_turn", "memento", "completed",
                            None, 1, 1, 0, 0, None)
    with trio.fail_after(10):
        async with trio.open_nursery() as inner:
            for exporter in (rejected, refused):
                inner.start_soon(exporter.run)
                exporter.offer((event, event))
                exporter.close()
    assert len(endpoint.bodies) == 1
    assert (rejected.failed, refused.failed, refused.batches_failed) == (2, 2, 1)


async def test_shutdown_is_bounded_while_the_endpoint_hangs(nursery: trio.Nursery) -> None:
    endpoint = Endpoint(hang=True)
    await nursery.start(endpoint.serve)
    config = AnalyticsConfig(enabled=True, export_url=endpoint.url, export_timeout_ms=600_000)
    host = trio.CancelScope()
    stopped = trio.Event()

    async def analytics(task_status: trio.TaskStatus[Recorder]) -> None:
        with host:
            await run_analytics(config, task_status=task_status)
        stopped.set()

    with trio.fail_after(5):
        recorder = await nursery.start(analytics)
        recorder.record(compaction(1))
        await endpoint.arrived.wait()
        recorder.record(compaction(2))  # queued behind the hung POST
    host.cancel(reason="app server shutting down")
    # The host's deadline: the exporters' drain window, with room to spare.
    with trio.fail_after(EXPORT_SHUTDOWN_TIMEOUT + 3):
        await stopped.wait()
    assert len(endpoint.bodies) == 1


async def test_exporter_queue_overflow_drops_and_counts(
        nursery: trio.Nursery, caplog: pytest.LogCaptureFixture) -> None:
    endpoint = Endpoint(hang=True)
    await nursery.start(endpoint.serve)
    exporter = HttpExporter(endpoint.url, timeout=600)
    event = (CompactionEvent("t", "u", "auto", "context_limit", "responses", "mid_turn", "memento", "completed",
                             None, 1, 1, 0, 0, None),)
    with trio.fail_after(5):
        async with trio.open_nursery() as inner:
            inner.start_soon(exporter.run)
            exporter.offer(event)
            await endpoint.arrived.wait()
            for _ in range(1000):
                exporter.offer(event)
            inner.cancel_scope.cancel()
    assert exporter.dropped == 1000 - 64
    assert len(warnings_about(caplog, "export_url is falling behind")) == 1
