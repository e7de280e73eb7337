"""The connection actor over the in-process memory transport: no sockets,
the real codec, hub and thread registry."""

from __future__ import annotations

import base64
import json
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import mock_config
from trio_codex.actors.connection.command_exec import STDIN_WAIT_TIMEOUT
from trio_codex.actors.connection import Connection, coalesce_deltas
from trio_codex.actors.analytics.facts import DISABLED
from trio_codex.actors.approvals import run_approvals
from trio_codex.actors.hub import run_hub
from trio_codex.runtime.app import serve
from trio_codex.runtime.config import load_settings
from trio_codex.runtime.kernel.mailbox import open_mailbox
from trio_codex.runtime.protocol import codec
from trio_codex.runtime.protocol.codec import Invalid, Request
from trio_codex.runtime.protocol.jsonrpc import Notification, Response
from trio_codex.runtime.protocol.methods import METHODS
from trio_codex.runtime.protocol.v2.item import AgentMessageDelta, ReasoningSummaryTextDelta
from trio_codex.runtime.server.info import ServerInfo
from trio_codex.transports.listen import ListenUrl
from trio_codex.transports.memory import MemoryFrameStream, memory_frame_pair

INIT = {"id": "init", "method": "initialize", "params": {"clientInfo": {"name": "t", "version": "1"}}}


async def call(client: MemoryFrameStream, msg: dict[str, Any]) -> dict[str, Any]:
    await client.send_frames([json.dumps(msg).encode()])
    with trio.fail_after(10):
        while True:
            frame = await client.receive_frame()
            assert isinstance(frame, bytes)
            reply = json.loads(frame)
            if reply.get("id") == msg["id"] and "method" not in reply:
                return reply


async def test_a_full_registry_answers_overloaded_with_the_sdks_retry_hint(
        tmp_path: Path, nursery: trio.Nursery) -> None:
    settings = load_settings(codex_home=tmp_path)
    hub = await nursery.start(run_hub)
    stalled, _unread = open_mailbox(1, name="stalled-registry")
    server_end, client = memory_frame_pair()
    approvals = await nursery.start(run_approvals)
    nursery.start_soon(Connection(1, server_end, ServerInfo(settings), hub, stalled, approvals, DISABLED).run)
    await call(client, INIT)
    await client.send_frames([json.dumps({"id": 1, "method": "thread/start", "params": {}}).encode()])
    reply = await call(client, {"id": 2, "method": "thread/start", "params": {}})
    assert reply["error"] == {"code": -32001, "message": "Server overloaded; retry later.",
                              "data": {"codex_error_info": "server_overloaded"}}
    await client.aclose()


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                     max_leaves=8)
_frame = st.one_of(
    st.binary(max_size=40).filter(lambda b: b"\n" not in b and b.strip()),
    # fs/* are left to tests/conformance/test_fuzz.py, which keeps their
    # paths inside a scratch directory: any absolute path is theirs to reach.
    st.fixed_dictionaries({"method": st.sampled_from([*(m for m in METHODS if not m.startswith("fs/")), "nope/x",
                                                      "account/gatewayOAuth/read"])},
                          optional={"params": _json, "jsonrpc": _json}).map(lambda d: ("request", d)),
    st.fixed_dictionaries({"method": _json}).map(lambda d: ("odd", d)),
)


@settings(max_examples=40, deadline=None)
@given(frames=st.lists(_frame, max_size=12))
async def test_every_request_among_random_frames_is_answered_exactly_once(tmp_path_factory, frames) -> None:
    home = tmp_path_factory.mktemp("home")
    (home / "config.toml").write_text(mock_config("http://127.0.0.1:9/v1"))
    wire = []
    for n, frame in enumerate(frames):
        if isinstance(frame, bytes):
            wire.append(frame)
        else:
            kind, msg = frame
            # Distinct ids: an answer owed twice would hide a double answer.
            wire.append(json.dumps({**msg, "id": n}).encode())
    owed = {m.id for m in map(codec.decode, wire) if isinstance(m, (Request, Invalid)) and m.id is not None}
    server_end, client = memory_frame_pair()
    answers: list[Any] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(serve, load_settings(codex_home=home), ListenUrl("stdio"), stream=server_end))
        await call(client, INIT)
        await client.send_frames(wire)
        with trio.fail_after(10):
            while {a for a in answers} != owed:
                reply = msgspec.json.decode(await client.receive_frame())
                if "method" not in reply:
                    answers.append(reply["id"])
        await client.aclose()
    assert sorted(map(str, answers)) == sorted(map(str, owed))


def test_a_backlog_of_deltas_merges_per_stream_without_losing_or_reordering_text() -> None:
    def delta(text: str, item: str = "a") -> Notification:
        return Notification("item/agentMessage/delta", AgentMessageDelta("T", "U", item, text), 1)

    def summary(text: str, index: int) -> Notification:
        return Notification("item/reasoning/summaryTextDelta", ReasoningSummaryTextDelta("T", "U", "r", text, index), 1)

    batch = [delta("a"), delta("b"), delta("c", "x"), Response(1, {}), delta("d"), delta("e"),
             summary("p", 0), summary("q", 0), summary("s", 1)]
    out = coalesce_deltas(batch)
    assert [(getattr(m, "method", None), getattr(getattr(m, "params", None), "delta", None)) for m in out] == [
        ("item/agentMessage/delta", "ab"), ("item/agentMessage/delta", "c"), (None, None),
        ("item/agentMessage/delta", "de"), ("item/reasoning/summaryTextDelta", "pq"),
        ("item/reasoning/summaryTextDelta", "s")]


class Wire:
    """A client end that keeps every frame the server sends, in order."""

    def __init__(self, client: MemoryFrameStream) -> None:
        self.client = client
        self.log: list[dict[str, Any]] = []

    async def pump(self) -> None:
        while (frame := await self.client.receive_frame()) is not None:
            assert isinstance(frame, bytes)
            self.log.append(json.loads(frame))

    async def send(self, rid: int | str, method: str, params: dict[str, Any]) -> None:
        await self.client.send_frames([json.dumps({"id": rid, "method": method, "params": params}).encode()])

    def answered(self, rid: int | str) -> dict[str, Any] | None:
        return next((m for m in self.log if m.get("id") == rid and "method" not in m), None)

    async def answer(self, rid: int | str) -> dict[str, Any]:
        with trio.fail_after(10):
            while (found := self.answered(rid)) is None:
                await trio.sleep(0.005)
        return found

    async def notified(self, method: str, done: Any = lambda params: True) -> dict[str, Any]:
        with trio.fail_after(10):
            while True:
                for m in self.log:
                    if m.get("method") == method and done(m["params"]):
                        return m["params"]
                await trio.sleep(0.005)


def stdin_process(process_id: str, command: list[str]) -> dict[str, Any]:
    return {"command": command, "processId": process_id, "streamStdin": True,
            "sandboxPolicy": {"type": "dangerFullAccess"}, "disableTimeout": True}


def chunk(size: int) -> dict[str, Any]:
    return {"processId": "p", "deltaBase64": base64.b64encode(b"x" * size).decode()}


async def test_a_child_that_does_not_read_its_stdin_holds_up_no_other_request(
        codex_home: Path, nursery: trio.Nursery) -> None:
    server_end, client = memory_frame_pair()
    wire = Wire(client)
    nursery.start_soon(partial(serve, load_settings(codex_home=codex_home), ListenUrl("stdio"), stream=server_end))
    nursery.start_soon(wire.pump)
    await wire.send("init", "initialize", INIT["params"])
    await wire.answer("init")
    await wire.send("exec", "command/exec", stdin_process("p", ["sleep", "20"]))
    await wire.send(1, "command/exec/write", chunk(1 << 20))
    await wire.send(2, "command/exec/write", chunk(1 << 20))  # behind the first, which the child never reads
    await wire.send(3, "model/list", {})
    await wire.send(4, "thread/start", {})
    assert (await wire.answer(1))["result"] == {}  # queued, as the original answers
    assert "result" in await wire.answer(3)
    tid = (await wire.answer(4))["result"]["thread"]["id"]
    await wire.send(5, "turn/start", {"threadId": tid, "input": [
        {"type": "text", "text": "[[deltas=200 delay_ms=20]] long"}]})
    turn_id = (await wire.answer(5))["result"]["turn"]["id"]
    await wire.send(6, "turn/interrupt", {"threadId": tid, "turnId": turn_id})
    assert (await wire.answer(6))["result"] == {}
    done = await wire.notified("turn/completed", lambda p: p["turn"]["id"] == turn_id)
    assert done["turn"]["status"] == "interrupted"
    assert wire.answered(2) is None  # still waiting for room, beside the reader
    await wire.send(7, "command/exec/write", {"processId": "nope", "deltaBase64": "aGk="})
    assert (await wire.answer(7))["error"] == {
        "code": -32600, "message": 'no active command/exec for process id "nope"'}
    await wire.send(8, "command/exec/terminate", {"processId": "p"})
    assert (await wire.answer("exec"))["result"]["exitCode"] == 137
    assert (await wire.answer(2))["error"]["message"] in (
        "stdin is already closed", 'command/exec "p" is no longer running')
    await client.aclose()


async def test_writes_a_child_leaves_unread_for_too_long_are_refused_overloaded_with_those_behind_them(
        tmp_path: Path, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> None:
    server_end, client = memory_frame_pair()
    wire = Wire(client)
    nursery.start_soon(partial(serve, load_settings(codex_home=tmp_path), ListenUrl("stdio"), stream=server_end))
    nursery.start_soon(wire.pump)
    await wire.send("init", "initialize", INIT["params"])
    await wire.answer("init")
    await wire.send("exec", "command/exec", stdin_process("p", ["sleep", "20"]))
    for rid in (1, 2, 3):
        await wire.send(rid, "command/exec/write", chunk(1 << 20))
    assert (await wire.answer(1))["result"] == {}
    await trio.sleep(STDIN_WAIT_TIMEOUT + 1)
    for rid in (2, 3):
        assert (await wire.answer(rid))["error"] == {
            "code": -32001, "message": "Server overloaded; retry later.",
            "data": {"codex_error_info": "server_overloaded"}}
    await wire.send(4, "command/exec/write", {"processId": "p", "closeStdin": True})
    assert (await wire.answer(4))["result"] == {}
    await wire.send(5, "command/exec/write", chunk(1))
    assert (await wire.answer(5))["error"]["message"] == "stdin is already closed"
    await wire.send(6, "command/exec/terminate", {"processId": "p"})
    await wire.answer("exec")
    await client.aclose()
