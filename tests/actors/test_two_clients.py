"""Two clients on one thread, through the real actors and two in-process
connections: the second joins with thread/resume; a pending approval goes to
both with the same id, the first answer wins, both see it resolved, and
analytics records it once, attributed to the connection that answered."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
import trio_websocket

from trio_codex.actors.connection import session as connection
from trio_codex.actors.analytics.actor import run_analytics
from trio_codex.actors.analytics.facts import DISABLED
from trio_codex.actors.approvals import run_approvals
from trio_codex.actors.connection import Connection
from trio_codex.actors.hub import run_hub
from trio_codex.actors.model.pool import ModelPool
from trio_codex.actors.store import run_store
from trio_codex.actors.threads import ThreadRegistry
from trio_codex.runtime.config import load_settings
from trio_codex.runtime.server.limits import Limits
from trio_codex.runtime.server.info import ServerInfo
from trio_codex.runtime.kernel.stream import FrameStream
from trio_codex.transports.listen import ListenUrl
from trio_codex.transports.memory import MemoryFrameStream, memory_frame_pair
from trio_codex.transports.websocket import open_listeners, serve_websocket
from trio_codex.transports.scripted_responses import ScriptedResponses


class Client:
    def __init__(self, stream: MemoryFrameStream) -> None:
        self.stream = stream
        self.ids = iter(range(1, 1000))

    async def send(self, msg: dict[str, Any]) -> None:
        await self.stream.send_frames([json.dumps(msg).encode()])

    async def next(self) -> dict[str, Any]:
        with trio.fail_after(10):
            frame = await self.stream.receive_frame()
        assert isinstance(frame, bytes)
        return json.loads(frame)

    async def request(self, method: str, params: dict[str, Any]) -> Any:
        rid = next(self.ids)
        await self.send({"id": rid, "method": method, "params": params})
        while True:
            msg = await self.next()
            if msg.get("id") == rid and "method" not in msg:
                return msg["result"]

    async def until(self, method: str) -> dict[str, Any]:
        while (msg := await self.next()).get("method") != method:
            pass
        return msg


@pytest.fixture
async def two_clients(codex_home: Path, scripted: ScriptedResponses,
                      nursery: trio.Nursery) -> AsyncIterator[tuple[Client, Client]]:
    """The host's actors and two in-process connections to them."""
    settings = load_settings(codex_home=codex_home, overrides=[
        "analytics.enabled=true", f'analytics.export_jsonl="{codex_home / EVENTS}"'])
    info = ServerInfo(settings)
    models = ModelPool(settings, nursery)
    recorder = await nursery.start(run_analytics, settings.analytics)
    hub = await nursery.start(run_hub)
    approvals = await nursery.start(run_approvals, recorder)
    store = await nursery.start(run_store, settings.codex_home)
    registry = await nursery.start(ThreadRegistry(settings, models, hub, approvals, store, recorder).run)
    clients = []
    for conn_id in (1, 2):
        server_end, client_end = memory_frame_pair()
        nursery.start_soon(Connection(conn_id, server_end, info, hub, registry, approvals, recorder).run)
        clients.append(Client(client_end))
    for client in clients:
        await client.request("initialize", {"clientInfo": {"name": "two", "version": "1"}})
    yield clients[0], clients[1]
    for client in clients:
        await client.stream.aclose()
    await models.aclose()
    recorder.close()


#: The analytics export, in CODEX_HOME.
EVENTS = "analytics.jsonl"


async def exported(codex_home: Path, event_type: str) -> dict[str, Any]:
    """The first exported event of ``event_type``, once it is written."""
    with trio.fail_after(10):
        while True:
            path = codex_home / EVENTS
            for line in path.read_text().splitlines() if path.exists() else ():
                if (event := json.loads(line))["event_type"] == event_type:
                    return event
            await trio.sleep(0.01)


async def approval_thread(client: Client, workspace: Path) -> str:
    """A thread that asks before every command it was not told is safe."""
    workspace.mkdir()
    return (await client.request("thread/start", {"cwd": str(workspace), "approvalPolicy": "untrusted",
                                                  "sandbox": "danger-full-access"}))["thread"]["id"]


async def touch_turn(client: Client, tid: str, name: str) -> None:
    call = json.dumps({"command": f"touch {name}"})
    await client.request("turn/start", {"threadId": tid, "input": [
        {"type": "text", "text": f"[[call=shell_command {call}]]"}]})


async def test_a_pending_approval_reaches_both_subscribers_and_the_first_answer_wins(
        two_clients: tuple[Client, Client], tmp_path: Path, codex_home: Path) -> None:
    a, b = two_clients
    workspace = tmp_path / "ws"
    tid = await approval_thread(a, workspace)
    await b.until("thread/started")  # broadcast to every initialized connection
    await b.request("thread/resume", {"threadId": tid})  # b joins the loaded thread
    await touch_turn(a, tid, "agreed")
    to_a = await a.until("item/commandExecution/requestApproval")
    to_b = await b.until("item/commandExecution/requestApproval")
    assert to_a["id"] == to_b["id"] and to_a["params"] == to_b["params"]
    await b.send({"id": to_b["id"], "result": {"decision": "accept"}})
    await a.send({"id": to_a["id"], "result": {"decision": "decline"}})  # late: ignored
    for client in (a, b):
        resolved = await client.until("serverRequest/resolved")
        assert resolved["params"] == {"threadId": tid, "requestId": to_a["id"]}
        done = await client.until("turn/completed")
        assert done["params"]["turn"]["status"] == "completed"
    assert (workspace / "agreed").exists()
    approval = await exported(codex_home, "codex_tool_approval")
    assert (approval["request_id"], approval["decision"], approval["answered_by_connection"],
            approval["sent_to_connections"], approval["replayed"]) == (to_a["id"], "accept", 2, [1, 2], False)


async def test_a_client_that_joins_while_an_approval_is_pending_gets_it_replayed_and_may_answer(
        two_clients: tuple[Client, Client], tmp_path: Path, codex_home: Path) -> None:
    a, b = two_clients
    workspace = tmp_path / "ws"
    tid = await approval_thread(a, workspace)
    await touch_turn(a, tid, "late")
    asked = await a.until("item/commandExecution/requestApproval")
    await b.request("thread/resume", {"threadId": tid})  # joins while the request is pending
    replayed = await b.until("item/commandExecution/requestApproval")
    assert replayed["id"] == asked["id"] and replayed["params"] == asked["params"]
    await b.send({"id": replayed["id"], "result": {"decision": "accept"}})
    for client in (a, b):
        assert (await client.until("serverRequest/resolved"))["params"]["requestId"] == asked["id"]
    assert (await a.until("turn/completed"))["params"]["turn"]["status"] == "completed"
    assert (workspace / "late").exists()
    approval = await exported(codex_home, "codex_tool_approval")
    assert (approval["request_id"], approval["decision"], approval["answered_by_connection"],
            approval["sent_to_connections"], approval["replayed"]) == (asked["id"], "accept", 2, [1, 2], True)


async def test_a_thread_nobody_follows_unloads_after_its_delay(
        two_clients: tuple[Client, Client], tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    a, b = two_clients
    tid = (await a.request("thread/start", {}))["thread"]["id"]
    assert await a.request("thread/unsubscribe", {"threadId": tid}) == {"status": "unsubscribed"}
    assert await a.request("thread/unsubscribe", {"threadId": tid}) == {"status": "notSubscribed"}
    await trio.sleep(1799)  # the default delay is 1800 s; the mock clock jumps
    assert (await a.request("thread/loaded/list", {}))["data"] == [tid]
    await trio.sleep(2)
    for client in (a, b):  # every initialized connection is told, the unsubscribed one too
        status = await client.until("thread/status/changed")
        while status["params"]["status"] != {"type": "notLoaded"}:
            status = await client.until("thread/status/changed")
        closed = await client.next()
        assert closed["method"] == "thread/closed" and closed["params"] == {"threadId": tid}
    assert (await a.request("thread/loaded/list", {}))["data"] == []
    assert await a.request("thread/unsubscribe", {"threadId": tid}) == {"status": "notLoaded"}


async def test_resubscribing_before_the_delay_keeps_the_thread_loaded(
        two_clients: tuple[Client, Client], autojump_clock: trio.testing.MockClock) -> None:
    a, b = two_clients
    tid = (await a.request("thread/start", {}))["thread"]["id"]
    await a.request("thread/unsubscribe", {"threadId": tid})
    await trio.sleep(1000)
    await b.request("thread/resume", {"threadId": tid})
    await trio.sleep(3600)
    assert (await b.request("thread/loaded/list", {}))["data"] == [tid]


@pytest.fixture
def stored_thread(codex_home: Path) -> str:
    """A thread the original wrote, on disk before the host starts."""
    fixtures = Path(__file__).parent.parent / "fixtures" / "original"
    shutil.copytree(fixtures / "sessions", codex_home / "sessions")
    return "01a20d66-ed08-7673-88b9-a1d4a7463d58"


async def test_two_resumes_of_one_stored_thread_at_once_load_it_once_and_both_follow_it(
        stored_thread: str, two_clients: tuple[Client, Client]) -> None:
    a, b = two_clients
    tid = stored_thread
    answers: list[Any] = []

    async def resume(client: Client) -> None:
        answers.append(await client.request("thread/resume", {"threadId": tid}))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(resume, a)
        nursery.start_soon(resume, b)
    assert [r["thread"]["id"] for r in answers] == [tid, tid]
    assert all(r["thread"]["turns"] for r in answers)
    assert (await a.request("thread/loaded/list", {}))["data"] == [tid]
    await a.request("turn/start", {"threadId": tid, "input": [{"type": "text", "text": "both of you"}]})
    for client in (a, b):
        assert (await client.until("turn/completed"))["params"]["turn"]["status"] == "completed"


class WsClient(Client):
    """:class:`Client` over a websocket."""

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self.ws = ws
        self.ids = iter(range(1, 1000))

    async def send(self, msg: dict[str, Any]) -> None:
        await self.ws.send_message(json.dumps(msg))

    async def next(self) -> dict[str, Any]:
        with trio.fail_after(10):
            return json.loads(await self.ws.get_message())


async def test_a_websocket_client_that_stops_reading_is_closed_with_a_reason_and_the_other_finishes_its_turn(
        codex_home: Path, scripted: ScriptedResponses, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection, "FLUSH_TIMEOUT", 60.0)  # time for the silent client to read up to the close
    limits = Limits(outbox_byte_budget=1 << 20)
    told = trio.Event()
    close = connection.Connection._close
    monkeypatch.setattr(connection.Connection, "_close", lambda self, *a: (close(self, *a), told.set()))
    settings = load_settings(codex_home=codex_home)
    info = ServerInfo(settings)
    models = ModelPool(settings, nursery)
    hub = await nursery.start(run_hub)
    approvals = await nursery.start(run_approvals)
    store = await nursery.start(run_store, settings.codex_home)
    registry = await nursery.start(ThreadRegistry(settings, models, hub, approvals, store).run)
    conn_ids = iter(range(1, 10))

    async def serve(ws: FrameStream) -> None:
        await Connection(next(conn_ids), ws, info, hub, registry, approvals, DISABLED, can_disconnect=True,
                         limits=limits).run()

    listening = await open_listeners(ListenUrl("ws", host="127.0.0.1", port=0), codex_home)
    await nursery.start(partial(serve_websocket, listening, serve, auth=None, max_frame=1 << 26))
    port = listening.listeners[0].socket.getsockname()[1]
    # Over streams of our own: a trio-websocket client closed by its server
    # leaves its socket open.
    async with await trio.open_tcp_stream("127.0.0.1", port) as silent_tcp, \
            await trio.open_tcp_stream("127.0.0.1", port) as reader_tcp:
        silent_ws, reader_ws = [await trio_websocket.wrap_client_stream(
            nursery, tcp, "127.0.0.1", "/", max_message_size=1 << 26) for tcp in (silent_tcp, reader_tcp)]
        silent, reader = WsClient(silent_ws), WsClient(reader_ws)
        for client in (silent, reader):
            await client.request("initialize", {"clientInfo": {"name": "ws", "version": "1"}})
        tid = (await silent.request("thread/start", {}))["thread"]["id"]
        await reader.request("thread/resume", {"threadId": tid})
        # The silent client reads nothing more; the other's turns fill its socket.
        text = "x" * 200_000
        for _ in range(200):
            await reader.request("turn/start", {"threadId": tid, "input": [
                {"type": "text", "text": f"[[deltas=400]] {text}"}]})
            assert (await reader.until("turn/completed"))["params"]["turn"]["status"] == "completed"
            if told.is_set():
                break
        assert told.is_set()
        with pytest.raises(trio_websocket.ConnectionClosed) as closed:
            with trio.fail_after(30):
                while True:
                    await silent_ws.get_message()
        await reader_ws.aclose()
    assert closed.value.reason.code == 1008
    assert "over its budget of 1048576 (TRIO_CODEX_OUTBOX_BYTE_BUDGET)" in closed.value.reason.reason
    await models.aclose()

