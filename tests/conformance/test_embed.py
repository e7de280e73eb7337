"""The embedding API (runtime/embed.py, runtime/client.py): a host program
runs the server in its own nursery, and the same typed client code drives
it in-process, over a child's stdio and over ws:// with a token."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

from harness import ORIGINAL_BIN, TIMEOUT, server_argv, server_env
from harness.ws import ws_server
from trio_codex.runtime.embed import Client, CodexError, Response, Server, ServerRequest, TurnFailed
from trio_codex.runtime.protocol.v2.approval import ApprovalResponse, CommandExecutionRequestApprovalParams
from trio_codex.runtime.protocol.v2.item import AgentMessageDelta, CommandExecutionItem, ItemCompleted
from trio_codex.runtime.protocol.v2.thread import ThreadStartResponse
from trio_codex.runtime.protocol.v2.turn import TurnCompleted
from trio_codex.transports.jsonl import JsonlStream
from trio_codex.transports.scripted_responses import ScriptedResponses

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "s3cret-token"


def call(name: str, **args: Any) -> str:
    return f"[[call={name} {json.dumps(args)}]]"


ASKED: list[CommandExecutionRequestApprovalParams] = []


async def approve(request: ServerRequest) -> ApprovalResponse:
    """The host's callback: every command it is asked about is accepted."""
    assert isinstance(request.params, CommandExecutionRequestApprovalParams)
    ASKED.append(request.params)
    return ApprovalResponse("accept")


@pytest.fixture(autouse=True)
def _forget_approvals() -> None:
    ASKED.clear()


async def exercise(client: Client, workspace: Path) -> None:
    """What every way of reaching a server must do alike: typed results, a
    turn whose approval the callback answers, a typed error."""
    started = await client.thread_start(cwd=str(workspace), approval_policy="untrusted",
                                        sandbox="danger-full-access")
    assert isinstance(started, ThreadStartResponse)
    tid = started.thread.id
    # exec_command: the tool both ours and the original offer a mock model.
    result = await client.run_turn(tid, call("exec_command", cmd="touch made"))
    assert result.turn.status == "completed"
    assert [(a.thread_id, a.turn_id) for a in ASKED] == [(tid, result.turn.id)]
    assert (workspace / "made").exists()
    commands = [i for i in result.turn.items if isinstance(i, CommandExecutionItem)]
    assert commands == [] or commands[0].status == "completed"
    assert result.usage is not None and result.usage.last.total_tokens > 0
    assert (await client.thread_read(tid)).thread.id == tid
    assert tid in [t.id for t in (await client.thread_list()).data] or started.thread.ephemeral
    assert (await client.model_list()).data
    with pytest.raises(CodexError) as refused:
        await client.thread_resume("00000000-0000-0000-0000-000000000000")
    assert refused.value.code == -32600


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


async def test_a_host_embeds_the_server_in_its_nursery_with_two_in_process_clients(
        codex_home: Path, workspace: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as host:
            async with Server(codex_home=codex_home, nursery=host) as server, \
                    Client.in_process(server, on_request=approve) as first, \
                    Client.in_process(server) as second:
                tid = (await first.thread_start(cwd=str(workspace), approval_policy="untrusted",
                                                sandbox="danger-full-access")).thread.id
                await second.thread_resume(tid)
                async with second.events() as watched:
                    result = await first.run_turn(tid, call("shell_command", command="touch made"))
                    seen = [await watched.receive()]
                    while not isinstance(seen[-1], TurnCompleted):
                        seen.append(await watched.receive())
                assert result.turn.status == "completed"
                assert len(ASKED) == 1 and (workspace / "made").exists()
                assert seen[-1].turn.id == result.turn.id
                assert any(isinstance(e, ItemCompleted) and isinstance(e.item, CommandExecutionItem) for e in seen)
            # The server stopped with its block: the host's nursery has only its own work left.
            assert host.child_tasks == set()


@asynccontextmanager
async def _in_process(codex_home: Path, **options: Any) -> AsyncIterator[Client]:
    async with Server(codex_home=codex_home) as server, Client.in_process(server, **options) as client:
        yield client


@asynccontextmanager
async def _stdio(codex_home: Path, **options: Any) -> AsyncIterator[Client]:
    async with Client.spawn(server_argv(), env=server_env(codex_home), stderr=subprocess.DEVNULL,
                            **options) as client:
        yield client


@asynccontextmanager
async def _websocket(codex_home: Path, token: str | None = TOKEN, **options: Any) -> AsyncIterator[Client]:
    token_file = codex_home.parent / "token"
    token_file.write_text(TOKEN + "\n")
    async with ws_server(codex_home, "ws://127.0.0.1:0", "--ws-auth", "capability-token",
                         "--ws-token-file", str(token_file)) as server, \
            Client.websocket(server.url, token=token, **options) as client:
        yield client


@asynccontextmanager
async def _original(codex_home: Path, **options: Any) -> AsyncIterator[Client]:
    async with Client.spawn(server_argv(program=(str(ORIGINAL_BIN),)), env=server_env(codex_home),
                            stderr=subprocess.DEVNULL, **options) as client:
        yield client


WAYS: dict[str, Callable[..., AbstractAsyncContextManager[Client]]] = {
    "in-process": _in_process, "stdio": _stdio, "websocket": _websocket, "the-original-over-stdio": _original}


@pytest.mark.parametrize("way", WAYS)
async def test_the_same_client_code_drives_the_server_every_way(codex_home: Path, workspace: Path, way: str) -> None:
    if way == "the-original-over-stdio" and not ORIGINAL_BIN.exists():
        pytest.skip(f"the original is not installed at {ORIGINAL_BIN}")
    with trio.fail_after(TIMEOUT * 2):
        async with WAYS[way](codex_home, on_request=approve) as client:
            await exercise(client, workspace)


@pytest.mark.parametrize("way", ["in-process", "stdio", "websocket"])
async def test_the_wire_level_gives_whole_answers_every_frame_and_survives_garbage(codex_home: Path, way: str) -> None:
    frames: list[bytes] = []
    with trio.fail_after(TIMEOUT):
        async with WAYS[way](codex_home, tap=frames.append) as client, client.events() as events:
            assert json.loads(frames[0])["id"] == 1  # initialize's answer, seen before it was routed
            refused = await client.exchange("thread/read", {"threadId": "not-a-thread"}, id="mine")
            assert refused.id == "mine" and refused.error is not None and refused.error.code == -32600
            assert refused.to_json() == json.loads(frames[-1])
            await client.send_frame(b'not json at all\n\xff\xfe')
            # An answer nobody awaits (a request sent as is) is an event.
            await client.send({"id": 7_000, "method": "model/list", "params": {}})
            answer = await events.receive()
            assert isinstance(answer, Response) and answer.id == 7_000 and answer.result["data"]
            assert (await client.model_list()).data


async def test_a_websocket_client_without_the_token_is_refused(codex_home: Path) -> None:
    with trio.fail_after(TIMEOUT):
        with pytest.raises(ExceptionGroup) as refused:
            async with _websocket(codex_home, token=None):
                pass
    assert refused.group_contains(ConnectionRefusedError, match="HTTP 401", depth=None)


async def test_a_custom_transport_is_served_through_the_public_api(codex_home: Path, workspace: Path) -> None:
    to_server, from_client = trio.testing.memory_stream_one_way_pair()
    to_client, from_server = trio.testing.memory_stream_one_way_pair()
    server_side = trio.StapledStream(to_client, from_client)
    client_side = trio.StapledStream(to_server, from_server)
    with trio.fail_after(TIMEOUT):
        async with Server(codex_home=codex_home) as server:
            await server.serve_stream(server_side, peer="stapled")
            async with Client.over(JsonlStream(client_side, client_side, peer="host"),
                                   on_request=approve) as client:
                await exercise(client, workspace)


async def test_memory_channels_of_frames_are_a_session(codex_home: Path) -> None:
    to_server, server_in = trio.open_memory_channel[bytes](16)
    to_client, client_in = trio.open_memory_channel[bytes](16)
    with trio.fail_after(TIMEOUT):
        async with Server(codex_home=codex_home) as server:
            await server.serve_channels(to_client, server_in)
            await to_server.send(b'{"id":1,"method":"initialize","params":{"clientInfo":{"name":"h","version":"1"}}}')
            answer = json.loads(await client_in.receive())
    assert answer["id"] == 1 and "userAgent" in answer["result"]


async def test_errors_are_typed_with_their_code_and_codex_error_info(
        codex_home: Path, scripted: ScriptedResponses, workspace: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with _in_process(codex_home) as client:
            with pytest.raises(CodexError) as unknown:
                await client.thread_read("not-a-thread")
            assert (unknown.value.code, unknown.value.method) == (-32600, "thread/read")
            with pytest.raises(msgspec.ValidationError):
                await client.thread_start(approval_policy=42)
            tid = (await client.thread_start(cwd=str(workspace))).thread.id
            with pytest.raises(TurnFailed) as failed:
                await client.run_turn(tid, "[[status=401]] hello")
            assert failed.value.turn.status == "failed"
            assert failed.value.codex_error_info is not None


async def test_leaving_a_turn_early_interrupts_it(codex_home: Path, workspace: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with _in_process(codex_home) as client:
            tid = (await client.thread_start(cwd=str(workspace))).thread.id
            async with client.turn(tid, "[[hang=2 deltas=10]] a long answer that never ends") as turn:
                async for event in turn:
                    if isinstance(event, AgentMessageDelta):
                        break
                turn_id = turn.turn.id if turn.turn is not None else ""
            read = await client.thread_read(tid, include_turns=True)
            assert [t.status for t in read.thread.turns if t.id == turn_id] == ["interrupted"]


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Embedding", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


async def test_the_readme_embedding_example_runs_as_written(codex_home: Path, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(readme_example())
    with trio.fail_after(TIMEOUT * 2):
        done = await trio.run_process([sys.executable, str(script)], env=server_env(codex_home), cwd=tmp_path,
                                      capture_stdout=True, capture_stderr=True, check=False)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.strip()


async def test_without_a_callback_a_server_request_is_an_event_to_respond_to(
        codex_home: Path, workspace: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with _in_process(codex_home) as client:
            tid = (await client.thread_start(cwd=str(workspace), approval_policy="untrusted",
                                             sandbox="danger-full-access")).thread.id
            async with client.turn(tid, call("exec_command", cmd="touch made")) as turn:
                async for event in turn:
                    if isinstance(event, ServerRequest):
                        assert event.method == "item/commandExecution/requestApproval"
                        assert event.thread_id == tid
                        await event.respond(ApprovalResponse("decline"))
            assert turn.turn is not None and turn.turn.status == "completed"
    assert not (workspace / "made").exists()


async def test_leaving_the_server_block_stops_it_with_a_turn_in_flight_and_a_client_connected(
        codex_home: Path, workspace: Path) -> None:
    # Bounded by the shutdown deadline (Server.aclose), with room to spare.
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as host:
            async with Server(codex_home=codex_home, nursery=host) as server:
                async with Client.in_process(server) as client:
                    tid = (await client.thread_start(cwd=str(workspace))).thread.id
                    await client.turn_start(tid, "[[hang=1 deltas=5]] a model that stalls mid-answer")
                still_connected = await server.connect()
            assert host.child_tasks == set()
    assert await still_connected.receive_frame() is None
