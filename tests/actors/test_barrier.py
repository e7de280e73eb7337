"""The bug barrier and the supervision of the host's singletons, in process
over the memory transport (and a real websocket for the close reason): a
bug injected into a handler costs its request, never the server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import CloseConnection
from wsproto.events import Request as WsRequest

from harness import mock_config
from trio_codex.actors import store
from trio_codex.actors.analytics.facts import DISABLED
from trio_codex.actors.approvals import run_approvals
from trio_codex.actors.connection import Connection
from trio_codex.actors.hub import run_hub
from trio_codex.runtime.app import serve
from trio_codex.runtime.config import load_settings
from trio_codex.runtime.protocol import codec
from trio_codex.runtime.protocol.v2.models import AccountReadParams
from trio_codex.runtime.server.info import ServerInfo
from trio_codex.runtime.persistence.thread_index import ThreadIndex
from trio_codex.transports.listen import ListenUrl
from trio_codex.transports.memory import MemoryFrameStream, memory_frame_pair
from trio_codex.transports.websocket import WebSocketStream, open_listeners, serve_websocket

INIT = {"id": "init", "method": "initialize", "params": {"clientInfo": {"name": "t", "version": "1"}}}


async def call(client: MemoryFrameStream, msg: dict[str, Any]) -> dict[str, Any]:
    await client.send_frames([json.dumps(msg).encode()])
    with trio.fail_after(10):
        while True:
            frame = await client.receive_frame()
            assert isinstance(frame, bytes), "the server closed the connection"
            reply = json.loads(frame)
            if reply.get("id") == msg["id"] and "method" not in reply:
                return reply


@pytest.fixture
async def client(tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[MemoryFrameStream]:
    (tmp_path / "config.toml").write_text(mock_config("http://127.0.0.1:9/v1"))
    server_end, client = memory_frame_pair()
    nursery.start_soon(partial(serve, load_settings(codex_home=tmp_path), ListenUrl("stdio"), stream=server_end))
    await call(client, INIT)
    yield client
    await client.aclose()


def boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("an injected bug")


async def test_a_bug_under_a_registry_request_answers_it_internal_error_and_the_registry_goes_on(
        client: MemoryFrameStream, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ThreadIndex, "get", boom)  # the store's FindThread, asked by thread/archive
    reply = await call(client, {"id": 1, "method": "thread/archive", "params": {"threadId": "t"}})
    assert reply["error"]["code"] == -32603
    assert "RuntimeError('an injected bug')" in reply["error"]["message"]
    monkeypatch.undo()
    assert (await call(client, {"id": 2, "method": "thread/loaded/list", "params": {}}))["result"] == {
        "data": [], "nextCursor": None}
    assert "error" in await call(client, {"id": 3, "method": "thread/archive", "params": {"threadId": "t"}})


async def test_a_bug_in_a_request_the_connection_answers_itself_is_internal_error(
        client: MemoryFrameStream, monkeypatch: pytest.MonkeyPatch) -> None:
    decode_params = codec.decode_params

    def buggy(raw: Any, type_: Any) -> Any:
        return boom() if type_ is AccountReadParams else decode_params(raw, type_)

    monkeypatch.setattr(codec, "decode_params", buggy)
    reply = await call(client, {"id": 1, "method": "account/read", "params": {}})
    assert reply["error"]["code"] == -32603
    assert (await call(client, {"id": 2, "method": "model/list", "params": {}}))["result"]["data"]


async def test_a_store_whose_index_failed_to_open_answers_that_request_and_opens_it_for_the_next(
        tmp_path: Path, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch) -> None:
    opened = []

    def open_index_once_broken(codex_home: Path) -> ThreadIndex:
        opened.append(codex_home)
        if len(opened) == 1:
            raise RuntimeError("a bug, this once")
        return real_open_index(codex_home)

    real_open_index = store.open_index
    monkeypatch.setattr(store, "open_index", open_index_once_broken)
    (tmp_path / "config.toml").write_text(mock_config("http://127.0.0.1:9/v1"))
    server_end, client = memory_frame_pair()
    nursery.start_soon(partial(serve, load_settings(codex_home=tmp_path), ListenUrl("stdio"), stream=server_end))
    await call(client, INIT)
    failed = await call(client, {"id": 1, "method": "thread/list", "params": {}})
    assert failed["error"]["code"] == -32603
    reply = await call(client, {"id": 2, "method": "thread/list", "params": {}})
    assert reply["result"]["data"] == []
    assert len(opened) == 2
    await client.aclose()


async def test_a_bug_in_a_connection_closes_that_websocket_with_a_reason(
        tmp_path: Path, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(codex_home=tmp_path)
    hub = await nursery.start(run_hub)
    approvals = await nursery.start(run_approvals)
    monkeypatch.setattr(Connection, "_read_loop", boom)

    async def connection(ws: WebSocketStream) -> None:
        await Connection(1, ws, ServerInfo(settings), hub, hub, approvals, DISABLED).run()

    listening = await open_listeners(ListenUrl("ws", host="127.0.0.1", port=0), tmp_path)
    await nursery.start(partial(serve_websocket, listening, connection, auth=None, max_frame=1 << 20))
    host, port = listening.url.removeprefix("ws://").rsplit(":", 1)
    ws = WSConnection(ConnectionType.CLIENT)
    with trio.fail_after(10):
        async with await trio.open_tcp_stream(host, int(port)) as stream:
            await stream.send_all(ws.send(WsRequest(host=host, target="/")))
            while not isinstance(event := next(ws.events(), None), CloseConnection):
                if event is None:
                    ws.receive_data(await stream.receive_some(4096))
    assert event.code == 1011
    assert event.reason.startswith("internal error: RuntimeError('an injected bug')")
