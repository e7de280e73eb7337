"""The websocket listeners of the real server, driven by a real websocket
client (trio-websocket) over real sockets: ``ws://`` on loopback and
``unix://``; the HTTP probes and refusals the original gives; token auth;
many clients on one thread; bad input and vanishing clients."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import h11
import pytest
import trio
import trio_websocket

from harness import server_env
from harness.ws import SECRET, TIMEOUT, jwt, ws_server


class Client:
    """A JSON-RPC client over one websocket."""

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self.ws = ws
        self.ids = iter(range(1, 10_000))

    async def send(self, msg: dict[str, Any]) -> None:
        await self.ws.send_message(json.dumps(msg))

    async def next(self) -> dict[str, Any]:
        with trio.fail_after(TIMEOUT):
            return json.loads(await self.ws.get_message())

    async def call(self, method: str, params: Any, *, rid: Any = None) -> dict[str, Any]:
        rid = next(self.ids) if rid is None else rid
        await self.send({"id": rid, "method": method, "params": params})
        while (msg := await self.next()).get("id") != rid or "method" in msg:
            pass
        return msg

    async def request(self, method: str, params: Any) -> Any:
        msg = await self.call(method, params)
        assert "result" in msg, msg
        return msg["result"]

    async def initialize(self, name: str = "ws_tests") -> None:
        await self.request("initialize", {"clientInfo": {"name": name, "version": "1"}})

    async def until(self, method: str) -> dict[str, Any]:
        while (msg := await self.next()).get("method") != method:
            pass
        return msg


@asynccontextmanager
async def ws_client(url: str, **kwargs: Any) -> AsyncIterator[Client]:
    async with trio_websocket.open_websocket_url(url + "/", message_queue_size=1024, **kwargs) as ws:
        yield Client(ws)


async def http_status(url: str, request: bytes) -> int:
    host, port = url.removeprefix("ws://").rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(request)
        conn = h11.Connection(h11.CLIENT)
        # Proposing an upgrade lets h11 read a 101 as well as any other answer.
        conn.send(h11.Request(method="GET", target="/", headers=[("host", "x"), ("connection", "upgrade"),
                                                                  ("upgrade", "websocket")]))
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                with trio.fail_after(TIMEOUT):
                    conn.receive_data(await stream.receive_some(4096))
            else:
                assert isinstance(event, (h11.Response, h11.InformationalResponse))  # 101 is informational
                return event.status_code


UPGRADE = (b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")


async def test_the_http_probes_and_refusals_are_the_originals(codex_home: Path) -> None:
    async with ws_server(codex_home) as server:
        assert server.url.startswith("ws://127.0.0.1:")
        for request, status in [
            (b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n", 200),
            (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 200),
            (b"GET /healthz HTTP/1.1\r\nHost: x\r\nOrigin: http://evil.example\r\n\r\n", 403),
            (b"GET / HTTP/1.1\r\nHost: x\r\nOrigin: http://evil.example\r\n" + UPGRADE + b"\r\n", 403),
            (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405),
            (b"NONSENSE\r\n\r\n", 400),
        ]:
            assert await http_status(server.url, request) == status, request


async def test_a_malformed_upgrade_gets_400_and_the_listener_lives(codex_home: Path) -> None:
    async with ws_server(codex_home) as server:
        for request in (
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",  # no key
            b"GET / HTTP/1.1\r\nHost: xn--zz\xff\r\nConnection: upgrade\r\n" + UPGRADE + b"\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n" + UPGRADE.replace(b"Version: 13", b"Version: 7") + b"\r\n",
        ):
            assert await http_status(server.url, request) == 400, request
        assert await http_status(server.url, b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n") == 200


async def test_a_message_sent_right_behind_the_upgrade_is_answered(codex_home: Path) -> None:
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, Request, TextMessage

    async with ws_server(codex_home) as server:
        host, port = server.url.removeprefix("ws://").rsplit(":", 1)
        ws = WSConnection(ConnectionType.CLIENT)
        hello = json.dumps({"id": 1, "method": "initialize", "params": {"clientInfo": {"name": "eager",
                                                                                     "version": "1"}}})
        async with await trio.open_tcp_stream(host, int(port)) as stream:
            # The head and the first message in one write, before the 101.
            await stream.send_all(ws.send(Request(host="x", target="/")) + _frame_after_accept(hello))
            events: list[Any] = []
            with trio.fail_after(TIMEOUT):
                while not any(isinstance(e, TextMessage) for e in events):
                    ws.receive_data(await stream.receive_some(65536))
                    events += list(ws.events())
        assert isinstance(events[0], AcceptConnection)
        [answer] = [json.loads(e.data) for e in events if isinstance(e, TextMessage)]
        assert answer["id"] == 1 and "userAgent" in answer["result"]


def _frame_after_accept(text: str) -> bytes:
    """A masked client text frame, as a client sends once accepted."""
    from wsproto.frame_protocol import FrameProtocol, Opcode

    return FrameProtocol(client=True, extensions=[])._serialize_frame(Opcode.TEXT, text.encode())


async def test_two_websocket_clients_share_a_thread_and_whoever_answers_the_approval_wins(
        codex_home: Path, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    workspace = tmp_path / "ws"
    workspace.mkdir()
    async with ws_server(codex_home, "ws://127.0.0.1:0", "-c", "analytics.enabled=true",
                         "-c", f'analytics.export_jsonl="{events}"') as server:
        async with ws_client(server.url) as a, ws_client(server.url) as b:
            await a.initialize("first")
            await b.initialize("second")
            tid = (await a.request("thread/start", {"cwd": str(workspace), "approvalPolicy": "untrusted",
                                                    "sandbox": "danger-full-access"}))["thread"]["id"]
            assert (await b.until("thread/started"))["params"]["thread"]["id"] == tid
            await b.request("thread/resume", {"threadId": tid})
            command = json.dumps({"command": "touch agreed"})
            await a.request("turn/start", {"threadId": tid, "input": [
                {"type": "text", "text": f"[[call=shell_command {command}]]"}]})
            to_a = await a.until("item/commandExecution/requestApproval")
            to_b = await b.until("item/commandExecution/requestApproval")
            assert to_a["id"] == to_b["id"]
            await b.send({"id": to_b["id"], "result": {"decision": "accept"}})
            for client in (a, b):
                assert (await client.until("turn/completed"))["params"]["turn"]["status"] == "completed"
            assert (workspace / "agreed").exists()
    # The server has stopped: its events are all written.
    [approval] = [e for line in events.read_text().splitlines()
                  if (e := json.loads(line))["event_type"] == "codex_tool_approval"]
    assert (approval["decision"], approval["answered_by_connection"], approval["sent_to_connections"]) == (
        "accept", 2, [1, 2])


async def test_a_capability_token_is_required_before_the_upgrade(codex_home: Path, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    async with ws_server(codex_home, "ws://127.0.0.1:0", "--ws-auth", "capability-token",
                         "--ws-token-file", str(token)) as server:
        for authorization in (b"", b"Authorization: Bearer wrong\r\n", b"Authorization: s3cret-token\r\n"):
            assert await http_status(server.url, b"GET / HTTP/1.1\r\nHost: x\r\n" + UPGRADE + authorization
                                     + b"\r\n") == 401
        async with ws_client(server.url, extra_headers=[(b"authorization", b"Bearer s3cret-token")]) as client:
            await client.initialize()
        assert await http_status(server.url, b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n") == 200


async def test_a_signed_bearer_token_is_required_before_the_upgrade(codex_home: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET + b"\n")
    now = int(time.time())
    async with ws_server(codex_home, "ws://127.0.0.1:0", "--ws-auth", "signed-bearer-token",
                         "--ws-shared-secret-file", str(secret), "--ws-audience", "trio-codex") as server:
        for claims in ({"aud": "trio-codex", "exp": now - 300}, {"aud": "elsewhere", "exp": now + 300},
                       {"aud": "trio-codex"}):
            assert await http_status(server.url, b"GET / HTTP/1.1\r\nHost: x\r\n" + UPGRADE + b"Authorization: "
                                     + jwt(claims) + b"\r\n\r\n") == 401
        good = jwt({"aud": "trio-codex", "exp": now + 300})
        async with ws_client(server.url, extra_headers=[(b"authorization", good)]) as client:
            await client.initialize()


async def test_the_first_authorization_header_counts_and_an_exp_beyond_i64_is_refused(
        codex_home: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    good = b"Authorization: " + jwt({"exp": int(time.time()) + 300}) + b"\r\n"
    bad = b"Authorization: Bearer not-a-token\r\n"
    head = b"GET / HTTP/1.1\r\nHost: x\r\n" + UPGRADE
    async with ws_server(codex_home, "ws://127.0.0.1:0", "--ws-auth", "signed-bearer-token",
                         "--ws-shared-secret-file", str(secret)) as server:
        assert await http_status(server.url, head + good + bad + b"\r\n") == 101
        assert await http_status(server.url, head + bad + good + b"\r\n") == 401
        for exp in (2**64, 2**63):
            assert await http_status(server.url, head + b"Authorization: " + jwt({"exp": exp}) + b"\r\n\r\n") == 401
        assert await http_status(server.url, head + b"Authorization: " + jwt({"exp": 2**63 - 1}) + b"\r\n\r\n") == 101


@pytest.mark.parametrize("content", [b"abc", b"  " + b"x" * 31 + b"\n\n"])
async def test_a_shared_secret_under_32_bytes_stops_start_up_with_the_originals_message(
        codex_home: Path, tmp_path: Path, content: bytes) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(content)
    result = await trio.run_process(
        [sys.executable, "-m", "trio_codex.runtime", "app-server", "--listen", "ws://127.0.0.1:0",
         "--ws-auth", "signed-bearer-token", "--ws-shared-secret-file", str(secret)],
        env=server_env(codex_home), capture_stderr=True, check=False)
    assert result.returncode != 0
    assert f"signed websocket bearer secret {secret} must be at least 32 bytes".encode() in result.stderr
    assert b"Traceback" not in result.stderr


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="unix sockets")
@pytest.mark.parametrize("mode", [0o777, 0o770, 0o702])
async def test_a_unix_socket_in_a_directory_others_can_write_is_refused(
        codex_home: Path, tmp_path: Path, mode: int) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(mode)
    result = await trio.run_process(
        [sys.executable, "-m", "trio_codex.runtime", "app-server", "--listen", f"unix://{shared}/app.sock"],
        env=server_env(codex_home), capture_stderr=True, check=False)
    assert result.returncode != 0 and b"Traceback" not in result.stderr
    assert (b"socket parent must be owned by the user or root and prevent other users from replacing socket "
            b"entries") in result.stderr
    assert not (shared / "app.sock").exists()


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="unix sockets")
async def test_a_unix_socket_in_a_sticky_directory_of_the_user_is_served(codex_home: Path, tmp_path: Path) -> None:
    shared = tmp_path / "sticky"
    shared.mkdir()
    shared.chmod(0o1777)  # as /tmp: others may add entries but not replace ours
    async with ws_server(codex_home, f"unix://{shared}/app.sock") as server:
        assert server.url == f"unix://{shared}/app.sock"


@pytest.mark.parametrize(("flags", "error"), [
    (["--ws-auth", "capability-token"], b"needs exactly one of --ws-token-file PATH or --ws-token-sha256 HEX"),
    (["--ws-auth", "signed-bearer-token"], b"needs --ws-shared-secret-file PATH"),
    (["--ws-token-sha256", "ab"], b"need --ws-auth capability-token"),
    (["--ws-auth", "capability-token", "--ws-token-sha256", "ab"], b"expected 64 hex digits"),
    (["--ws-auth", "capability-token", "--ws-token-file", "/nonexistent"], b"No such file or directory"),
])
async def test_bad_ws_auth_flags_stop_start_up_with_a_clear_error(
        codex_home: Path, flags: list[str], error: bytes) -> None:
    result = await trio.run_process(
        [sys.executable, "-m", "trio_codex.runtime", "app-server", "--listen", "ws://127.0.0.1:0", *flags],
        env=server_env(codex_home), capture_stderr=True, check=False)
    assert result.returncode == 2
    assert error in result.stderr


async def test_bad_input_and_a_vanishing_client_lose_nothing_for_the_others(codex_home: Path) -> None:
    async with ws_server(codex_home, env_extra={"TRIO_CODEX_MAX_MESSAGE_BYTES": "4096"}) as server:
        async with ws_client(server.url) as steady:
            await steady.initialize()
            await steady.ws.send_message("not json at all")
            await steady.ws.send_message(b'{"id": "binary", "method": "model/list", "params": {}}')
            big = {"threadId": "t", "input": [{"type": "text", "text": "x" * 100_000}]}
            refused = await steady.call("turn/start", big, rid="big")
            assert refused["error"]["code"] == -32600
            assert refused["error"]["message"].startswith("Invalid request: message of ")
            tid = (await steady.request("thread/start", {}))["thread"]["id"]
            # Another client joins the thread, starts a slow turn and vanishes mid-turn.
            async with trio.open_nursery() as nursery:
                ws = await trio_websocket.connect_websocket_url(nursery, server.url + "/")
                gone = Client(ws)
                await gone.initialize("gone")
                await gone.request("thread/resume", {"threadId": tid})
                await gone.request("turn/start", {"threadId": tid, "input": [
                    {"type": "text", "text": "[[deltas=20 delay_ms=20]] slow"}]})
                await gone.until("item/agentMessage/delta")
                await ws._stream.aclose()  # no close handshake: the socket just goes
                nursery.cancel_scope.cancel()
            done = await steady.until("turn/completed")
            assert done["params"]["turn"]["status"] == "completed"
            assert (await steady.request("model/list", {}))["data"]


async def test_a_unix_path_that_is_no_stale_socket_is_never_replaced(codex_home: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    result = await trio.run_process(
        [sys.executable, "-m", "trio_codex.runtime", "app-server", "--listen", f"unix://{notes}"],
        env=server_env(codex_home), capture_stderr=True, check=False)
    assert result.returncode != 0 and b"is not an app server's socket" in result.stderr
    assert notes.read_text() == "keep me"
    stale = tmp_path / "stale.sock"
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(stale))
    dead.close()  # a socket file nobody listens on: replaced
    async with ws_server(codex_home, f"unix://{stale}") as server:
        assert server.url == f"unix://{stale}" and stale.is_socket()
        result = await trio.run_process(  # a live one is not
            [sys.executable, "-m", "trio_codex.runtime", "app-server", "--listen", f"unix://{stale}"],
            env=server_env(codex_home), capture_stderr=True, check=False)
        assert b"another app server is listening there" in result.stderr
        assert stale.is_socket()


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="unix sockets")
async def test_the_unix_control_socket_serves_websocket_and_is_removed_at_exit(codex_home: Path) -> None:
    async with ws_server(codex_home, "unix://") as server:
        path = codex_home / "app-server-control" / "app-server-control.sock"
        assert server.url == f"unix://{path}"
        assert len(os.fsencode(path)) > 100 or path.is_socket()  # a long path is a link to a short one
        async with trio.open_nursery() as nursery:
            # Clients connect through the link: a long path cannot be connected to either.
            stream = await trio.open_unix_socket(os.path.realpath(path))
            ws = await trio_websocket.wrap_client_stream(nursery, stream, "localhost", "/")
            client = Client(ws)
            await client.initialize()
            tid = (await client.request("thread/start", {}))["thread"]["id"]
            await client.request("turn/start", {"threadId": tid, "input": [{"type": "text", "text": "hi"}]})
            assert (await client.until("turn/completed"))["params"]["turn"]["status"] == "completed"
            await ws.aclose()
        server.proc.send_signal(signal.SIGTERM)
        with trio.fail_after(TIMEOUT):
            assert await server.proc.wait() == 0
        assert not path.exists() and not path.is_symlink()


async def test_a_client_joining_a_paced_stream_gets_the_rest_of_its_deltas_in_order(codex_home: Path) -> None:
    # The turn reads the thread's messages (here: a new subscriber) beside
    # the model stream it runs itself; the deltas after the join reach both.
    async with ws_server(codex_home, "ws://127.0.0.1:0") as server:
        async with ws_client(server.url) as a, ws_client(server.url) as b:
            await a.initialize("first")
            await b.initialize("second")
            tid = (await a.request("thread/start", {}))["thread"]["id"]
            await a.request("turn/start", {"threadId": tid, "input": [
                {"type": "text", "text": "[[deltas=300 delay_ms=2]] " + "joined midway. " * 20}]})
            first = (await a.until("item/agentMessage/delta"))["params"]["delta"]
            await b.request("thread/resume", {"threadId": tid})

            async def text(client: Client, deltas: list[str]) -> str:
                while (msg := await client.next()).get("method") != "item/completed" \
                        or msg["params"]["item"]["type"] != "agentMessage":
                    if msg.get("method") == "item/agentMessage/delta":
                        deltas.append(msg["params"]["delta"])
                return msg["params"]["item"]["text"]

            seen_a, seen_b = [first], []
            final = await text(a, seen_a)
            assert await text(b, seen_b) == final == "".join(seen_a)
            assert seen_b and final.endswith("".join(seen_b)) and seen_a[-len(seen_b):] == seen_b
