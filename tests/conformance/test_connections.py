"""Connections that hold up, against the real server over real sockets:
the connection and half-open caps, file descriptors running out at accept,
keepalive, the non-loopback refusal, several listeners at once, and the
per-connection request limits (runtime/server/limits.py has the knobs)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import trio
import trio_websocket
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request, TextMessage

from harness import RpcClient, server_env
from harness.ws import TIMEOUT, Server, ws_server
from trio_codex.runtime.server.limits import Limits, RateLimiter
from trio_codex.transports.framing import DEFAULT_MAX_LINE
from trio_codex.transports.listen import ALLOW_UNAUTHENTICATED_FLAG, parse_listen, unauthenticated_exposure

from .test_websocket import UPGRADE, http_status, ws_client

READYZ = b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"


async def _raw(url: str) -> trio.SocketStream:
    host, port = url.removeprefix("ws://").rsplit(":", 1)
    return await trio.open_tcp_stream(host, int(port))


async def _closed_by_server(stream: trio.SocketStream) -> None:
    """Wait (bounded) until the server closes ``stream``, reading what it
    sends; then close it."""
    async with stream:
        with trio.fail_after(TIMEOUT):
            try:
                while await stream.receive_some(65536):
                    pass
            except trio.BrokenResourceError:
                pass


async def _logged(server: Server, line: bytes) -> None:
    """Wait (bounded) until the server has logged ``line`` (its stderr is
    read beside the test)."""
    with trio.fail_after(TIMEOUT):
        while line not in server.log:
            await trio.sleep(0.05)


async def test_the_oldest_half_open_connection_goes_first_and_past_the_cap_a_connection_gets_503(
        codex_home: Path) -> None:
    env = {"TRIO_CODEX_MAX_CONNECTIONS": "3", "TRIO_CODEX_MAX_HALF_OPEN": "2"}
    async with ws_server(codex_home, env_extra=env) as server:
        first = await _raw(server.url)
        # A probe answered means the server has taken in the connection before it.
        assert await http_status(server.url, READYZ) == 200
        second = await _raw(server.url)
        assert await http_status(server.url, READYZ) == 200  # the third half-open: the first goes
        await _closed_by_server(first)
        async with ws_client(server.url) as a:  # its upgrade drops the second
            await _closed_by_server(second)
            await a.initialize("a")
            async with ws_client(server.url) as b:
                await b.initialize("b")
                idle = await _raw(server.url)  # the third connection
                assert await http_status(server.url, b"GET / HTTP/1.1\r\nHost: x\r\n" + UPGRADE + b"\r\n") == 503
                assert (await a.request("model/list", {}))["data"]
                await idle.aclose()
                with trio.fail_after(TIMEOUT):
                    while await http_status(server.url, READYZ) != 200:
                        await trio.sleep(0.05)
        assert b"TRIO_CODEX_MAX_HALF_OPEN" in server.log and b"TRIO_CODEX_MAX_CONNECTIONS" in server.log


@pytest.mark.skipif(not hasattr(resource, "prlimit"), reason="resource.prlimit is Linux only")
async def test_running_out_of_file_descriptors_at_accept_is_survived_and_recovered_from(codex_home: Path) -> None:
    env = {"TRIO_CODEX_MAX_HALF_OPEN": "10000", "TRIO_CODEX_MAX_CONNECTIONS": "10000"}
    async with ws_server(codex_home, env_extra=env) as server:
        pid = server.proc.pid
        async with ws_client(server.url) as steady:
            await steady.initialize()
            tid = (await steady.request("thread/start", {}))["thread"]["id"]
            # A sandboxed command first, so the sandbox's one-time set-up
            # (the seccomp filters, built at start-up in a worker thread) is
            # done before the descriptors run out: this test is about accept.
            assert (await steady.request("command/exec", {"command": ["true"]}))["exitCode"] == 0
            limits = resource.prlimit(pid, resource.RLIMIT_NOFILE)
            in_use = len(os.listdir(f"/proc/{pid}/fd"))
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (in_use + 8, limits[1]))
            hogs: list[trio.SocketStream] = []
            try:
                hogs += [await _raw(server.url) for _ in range(40)]  # far more than the server can accept
                # The server takes them in at its own pace (late, on a busy
                # machine): hold them until it has run out, or it never does.
                await _logged(server, b"cannot accept connections for now (Too many open files)")
                # A request that needs descriptors is told to retry later.
                refused = await steady.call("command/exec", {"command": ["true"]})
                assert refused["error"]["code"] == -32001, refused
                assert refused["error"]["data"] == {"codex_error_info": "server_overloaded"}
            finally:
                for hog in hogs:
                    await hog.aclose()
                resource.prlimit(pid, resource.RLIMIT_NOFILE, limits)
            # Accepting resumes: new clients get in, and turns run.
            with trio.fail_after(TIMEOUT):
                while await http_status(server.url, READYZ) != 200:
                    await trio.sleep(0.1)
            # A connection accepted while the listener recovers may still be
            # one the server has no descriptor left to serve (it closes it);
            # a client that retries gets in.
            with trio.fail_after(TIMEOUT):
                while True:
                    try:
                        async with ws_client(server.url) as late:
                            await late.initialize("late")
                            assert (await late.request("thread/start", {}))["thread"]["id"]
                        break
                    except trio_websocket.ConnectionClosed:
                        await trio.sleep(0.1)
            await _logged(server, b"accepting connections again after")
            assert (await steady.request("command/exec", {"command": ["true"]}))["exitCode"] == 0
            await steady.request("turn/start", {"threadId": tid, "input": [{"type": "text", "text": "hello"}]})
            done = await steady.until("turn/completed")
            assert done["params"]["turn"]["status"] == "completed", done["params"]["turn"].get("error")
        assert server.proc.returncode is None


async def test_a_peer_that_never_answers_pings_is_closed_and_cleaned_up_while_a_live_one_stays(
        codex_home: Path) -> None:
    env = {"TRIO_CODEX_KEEPALIVE_INTERVAL": "0.2", "TRIO_CODEX_KEEPALIVE_TIMEOUT": "0.5"}
    async with ws_server(codex_home, env_extra=env) as server:
        async with ws_client(server.url) as live:  # trio-websocket answers pings
            await live.initialize("live")
            tid = (await live.request("thread/start", {}))["thread"]["id"]
            silent = await _raw(server.url)
            ws = WSConnection(ConnectionType.CLIENT)
            hello = {"id": 1, "method": "initialize", "params": {"clientInfo": {"name": "silent", "version": "1"}}}
            resume = {"id": 2, "method": "thread/resume", "params": {"threadId": tid}}
            await silent.send_all(ws.send(Request(host="x", target="/")))
            events: list = []
            with trio.fail_after(TIMEOUT):
                while not any(isinstance(e, AcceptConnection) for e in events):
                    ws.receive_data(await silent.receive_some(65536))
                    events += list(ws.events())
            await silent.send_all(ws.send(TextMessage(json.dumps(hello))) + ws.send(TextMessage(json.dumps(resume))))
            # From here on it reads (so as to see the end) but never answers a ping.
            await _closed_by_server(silent)
            # Long past the timeout, the live client is still served, and its turns do not wait on the gone one.
            await live.request("turn/start", {"threadId": tid, "input": [{"type": "text", "text": "still here"}]})
            assert (await live.until("turn/completed"))["params"]["turn"]["status"] == "completed"
            loaded = await live.request("thread/loaded/list", {})
            assert tid in loaded["data"]
        assert b"did not answer a ping within 0.5 s" in server.log


async def test_an_approval_pending_when_its_asker_goes_silent_is_answered_by_the_other_subscriber(
        codex_home: Path, tmp_path: Path) -> None:
    env = {"TRIO_CODEX_KEEPALIVE_INTERVAL": "0.2", "TRIO_CODEX_KEEPALIVE_TIMEOUT": "0.5"}
    workspace = tmp_path / "ws"
    workspace.mkdir()
    async with ws_server(codex_home, env_extra=env) as server:
        async with ws_client(server.url) as other:
            await other.initialize("other")
            tid = (await other.request("thread/start", {"cwd": str(workspace), "approvalPolicy": "untrusted",
                                                        "sandbox": "danger-full-access"}))["thread"]["id"]
            asker = await _silent_subscriber(server.url, tid)
            async with asker:
                command = json.dumps({"command": "touch agreed"})
                await other.request("turn/start", {"threadId": tid, "input": [
                    {"type": "text", "text": f"[[call=shell_command {command}]]"}]})
                request = await other.until("item/commandExecution/requestApproval")
                # The silent subscriber was sent the request too; it is closed for not answering pings.
                await _closed_by_server(asker)
            await other.send({"id": request["id"], "result": {"decision": "accept"}})
            assert (await other.until("turn/completed"))["params"]["turn"]["status"] == "completed"
        assert (workspace / "agreed").exists()
        assert b"did not answer a ping" in server.log


def test_a_websocket_listener_off_loopback_needs_auth_or_the_explicit_flag() -> None:
    for url in ("ws://0.0.0.0:4000", "ws://192.168.1.4:4000", "ws://[::]:4000", "ws://example.com:4000"):
        refusal = unauthenticated_exposure(parse_listen(url), has_auth=False)
        assert refusal is not None and refusal.startswith("refusing to start non-loopback websocket listener ")
        assert "--ws-auth capability-token" in refusal and ALLOW_UNAUTHENTICATED_FLAG in refusal
        assert unauthenticated_exposure(parse_listen(url), has_auth=True) is None
    for url in ("ws://127.0.0.1:0", "ws://127.0.0.2:0", "ws://[::1]:0", "unix://", "stdio://"):
        assert unauthenticated_exposure(parse_listen(url), has_auth=False) is None


async def test_start_up_on_a_non_loopback_address_without_auth_is_refused_with_how_to_get_past_it(
        codex_home: Path) -> None:
    argv = [sys.executable, "-m", "trio_codex.runtime", "app-server", "--listen", "ws://0.0.0.0:0"]
    with trio.fail_after(TIMEOUT):
        done = await trio.run_process(argv, stdin=subprocess.DEVNULL, capture_stdout=True, capture_stderr=True,
                                      env=server_env(codex_home), check=False)
    assert done.returncode == 1
    assert done.stderr.decode().startswith(
        "Error: refusing to start non-loopback websocket listener 0.0.0.0:0 without auth; configure "
        "`--ws-auth capability-token` or `--ws-auth signed-bearer-token`")
    assert ALLOW_UNAUTHENTICATED_FLAG.encode() in done.stderr
    # With the flag it starts (no traffic is sent to that address).
    async with ws_server(codex_home, "ws://0.0.0.0:0", ALLOW_UNAUTHENTICATED_FLAG) as server:
        assert server.url.startswith("ws://0.0.0.0:")


async def test_stdio_and_websocket_listeners_serve_at_once_and_see_each_others_threads(codex_home: Path) -> None:
    argv = [sys.executable, "-m", "trio_codex.runtime", "app-server", "--listen", "stdio://",
            "--listen", "ws://127.0.0.1:0"]
    async with trio.open_nursery() as nursery:
        proc = await nursery.start(lambda task_status: trio.run_process(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False,
            env=server_env(codex_home), task_status=task_status))
        err = b""
        with trio.fail_after(TIMEOUT):
            while b"listening on: " not in err or not err.split(b"listening on: ", 1)[1].count(b"\n"):
                err += await proc.stderr.receive_some(4096)
        url = err.split(b"listening on: ", 1)[1].split(b"\n", 1)[0].decode()
        nursery.start_soon(_drain, proc.stderr)
        stdio = RpcClient(proc)
        nursery.start_soon(stdio._read)
        await stdio.initialize("over stdio")
        async with ws_client(url) as ws:
            await ws.initialize("over ws")
            tid = (await stdio.request("thread/start", {}))["thread"]["id"]
            assert (await ws.until("thread/started"))["params"]["thread"]["id"] == tid
            assert (await ws.request("thread/resume", {"threadId": tid}))["thread"]["id"] == tid
        # The end of stdin ends the server, as with stdio alone.
        await proc.stdin.aclose()
        with trio.fail_after(TIMEOUT):
            await proc.wait()
        nursery.cancel_scope.cancel()


async def test_a_websocket_and_a_unix_socket_listener_serve_at_once(codex_home: Path, tmp_path: Path) -> None:
    path = tmp_path / "s" / "control.sock"
    path.parent.mkdir(mode=0o700)
    async with ws_server(codex_home, "ws://127.0.0.1:0", "--listen", f"unix://{path}") as server:
        async with ws_client(server.url) as tcp:
            await tcp.initialize("tcp")
            stream = await trio.open_unix_socket(str(path))
            async with trio.open_nursery() as nursery:
                conn = await trio_websocket.wrap_client_stream(nursery, stream, "localhost", "/")
                await conn.send_message(json.dumps({"id": 1, "method": "initialize", "params": {
                    "clientInfo": {"name": "unix", "version": "1"}}}))
                with trio.fail_after(TIMEOUT):
                    answer = json.loads(await conn.get_message())
                assert "userAgent" in answer["result"]
                await conn.aclose()


async def _drain(stream: trio.abc.ReceiveStream) -> None:
    async for _ in stream:
        pass


async def test_a_client_over_its_request_rate_is_answered_overloaded_then_closed_and_the_others_go_on(
        codex_home: Path) -> None:
    env = {"TRIO_CODEX_REQUEST_RATE": "0.01", "TRIO_CODEX_REQUEST_BURST": "5", "TRIO_CODEX_ABUSE_LIMIT": "20"}
    async with ws_server(codex_home, env_extra=env) as server:
        async with ws_client(server.url) as calm, ws_client(server.url) as flood:
            await calm.initialize("calm")
            await flood.initialize("flood")
            for rid in range(100, 130):
                await flood.send({"id": rid, "method": "model/list", "params": {}})
            answers = []
            with trio.fail_after(TIMEOUT):
                try:
                    while True:
                        answers.append(json.loads(await flood.ws.get_message()))
                except trio_websocket.ConnectionClosed as exc:  # the server closed it
                    closed = exc
                    await flood.ws._stream.aclose()  # trio-websocket leaves the socket of a close it got mid-read
            codes = [a.get("error", {}).get("code") for a in answers]
            assert codes[:4] == [None] * 4 and set(codes[4:]) == {-32001}
            assert answers[-1]["error"]["data"] == {"codex_error_info": "server_overloaded"}
            assert closed.reason.code == 1008
            assert (await calm.request("model/list", {}))["data"]
        assert b"over the limits of one connection" in server.log


def test_the_limits_are_read_from_the_environment_and_refused_when_not_positive() -> None:
    limits = Limits.from_env({"TRIO_CODEX_MAX_CONNECTIONS": "7", "TRIO_CODEX_WRITE_TIMEOUT": "0.5"})
    assert (limits.max_connections, limits.write_timeout, limits.max_half_open) == (7, 0.5, Limits().max_half_open)
    assert Limits().max_message_bytes == DEFAULT_MAX_LINE
    for bad in ("0", "-1", "many"):
        with pytest.raises(ValueError, match="TRIO_CODEX_MAX_CONNECTIONS"):
            Limits.from_env({"TRIO_CODEX_MAX_CONNECTIONS": bad})


def test_the_rate_limiter_allows_a_burst_then_the_rate() -> None:
    bucket = RateLimiter(rate=2, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.5) and not bucket.take(0.5)


async def _agent_text(client, tid: str) -> str:
    """The agent message text of the turn as ``client`` saw it streamed (its
    deltas, merged or not), checked against the completed item."""
    deltas: list[str] = []
    while (msg := await client.next()).get("method") != "turn/completed":
        if msg.get("method") == "item/agentMessage/delta":
            deltas.append(msg["params"]["delta"])
        elif msg.get("method") == "item/completed" and msg["params"]["item"]["type"] == "agentMessage":
            assert "".join(deltas) == msg["params"]["item"]["text"]
    assert msg["params"]["turn"]["status"] == "completed"
    return "".join(deltas)


async def _silent_subscriber(url: str, tid: str) -> trio.SocketStream:
    """A websocket client subscribed to ``tid`` that reads nothing more
    (a small receive buffer, so the server sees it at once)."""
    host, port = url.removeprefix("ws://").rsplit(":", 1)
    sock = trio.socket.socket()
    sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, 4096)
    await sock.connect((host, int(port)))
    stream = trio.SocketStream(sock)
    ws = WSConnection(ConnectionType.CLIENT)
    await stream.send_all(ws.send(Request(host="x", target="/")))
    answered: list = []
    with trio.fail_after(TIMEOUT):
        while sum(isinstance(e, TextMessage) for e in answered) < 2:
            ws.receive_data(await stream.receive_some(65536))
            for event in ws.events():
                answered.append(event)
                if isinstance(event, AcceptConnection):
                    await stream.send_all(ws.send(TextMessage(json.dumps({"id": 1, "method": "initialize", "params": {
                        "clientInfo": {"name": "silent", "version": "1"}}}))) + ws.send(TextMessage(json.dumps(
                            {"id": 2, "method": "thread/resume", "params": {"threadId": tid}}))))
    return stream


async def test_a_slow_client_keeps_its_full_text_under_the_byte_budget_while_another_streams_on(
        codex_home: Path) -> None:
    prompt = "[[deltas=20000]] " + "slow but whole. " * 2000
    async with ws_server(codex_home) as server:
        async with ws_client(server.url) as fast, ws_client(server.url) as slow:
            await fast.initialize("fast")
            await slow.initialize("slow")
            tid = (await fast.request("thread/start", {}))["thread"]["id"]
            await slow.request("thread/resume", {"threadId": tid})
            # The slow client reads nothing until the fast one has the whole turn.
            await fast.request("turn/start", {"threadId": tid, "input": [{"type": "text", "text": prompt}]})
            text = await _agent_text(fast, tid)
            assert len(text) > 30_000
            assert await _agent_text(slow, tid) == text
            assert (await slow.request("model/list", {}))["data"]
        assert b"closing it" not in server.log


async def test_a_client_over_its_byte_budget_is_closed_with_the_reason_logged_and_the_other_streams_on(
        codex_home: Path) -> None:
    # Each turn queues ~5 MB for a client that does not read (the prompt
    # comes back in the user message's items, the reply in 20,000 deltas and
    # its item); a client that reads never has much of it queued at once.
    prompt = "[[deltas=20000]] " + "too much to queue. " * 30_000
    env = {"TRIO_CODEX_OUTBOX_BYTE_BUDGET": str(16 << 20)}
    async with ws_server(codex_home, env_extra=env) as server:
        async with ws_client(server.url) as fast:
            await fast.initialize("fast")
            tid = (await fast.request("thread/start", {}))["thread"]["id"]
            silent = await _silent_subscriber(server.url, tid)
            async with silent:
                for _ in range(10):
                    await fast.request("turn/start", {"threadId": tid, "input": [{"type": "text", "text": prompt}]})
                    assert len(await _agent_text(fast, tid)) > 500_000
                    if b"over its budget" in server.log:
                        break
                await _closed_by_server(silent)
        [line] = [line for line in server.log.splitlines() if b"over its budget" in line]
        assert b"over its budget of 16777216 (TRIO_CODEX_OUTBOX_BYTE_BUDGET)" in line and b"connection 2 " in line


async def test_a_client_whose_socket_takes_nothing_within_the_write_timeout_is_closed_and_the_other_streams_on(
        codex_home: Path) -> None:
    prompt = "[[deltas=2000]] " + "stalled. " * 50_000
    env = {"TRIO_CODEX_WRITE_TIMEOUT": "0.5"}
    async with ws_server(codex_home, env_extra=env) as server:
        async with ws_client(server.url) as fast:
            await fast.initialize("fast")
            tid = (await fast.request("thread/start", {}))["thread"]["id"]
            silent = await _silent_subscriber(server.url, tid)
            async with silent:
                for _ in range(10):
                    await fast.request("turn/start", {"threadId": tid, "input": [{"type": "text", "text": prompt}]})
                    assert len(await _agent_text(fast, tid)) > 400_000
                    if b"a write made no progress for 0.5 s" in server.log:
                        break
                await _closed_by_server(silent)
        assert b"a write made no progress for 0.5 s (the client stopped reading)" in server.log


async def test_a_request_over_the_pending_limit_is_answered_overloaded_and_the_pending_ones_complete(
        codex_home: Path) -> None:
    env = {"TRIO_CODEX_MAX_PENDING_REQUESTS": "2"}
    async with ws_server(codex_home, env_extra=env) as server:
        async with ws_client(server.url) as client:
            await client.initialize()
            # command/exec is answered when its command ends.
            for rid in ("a", "b", "c"):
                await client.send({"id": rid, "method": "command/exec", "params": {"command": ["sleep", "1"]}})
            answers = {}
            while len(answers) < 3:
                msg = await client.next()
                answers[msg["id"]] = msg
            assert answers["c"]["error"]["code"] == -32001
            assert answers["a"]["result"]["exitCode"] == answers["b"]["result"]["exitCode"] == 0
            # Once they are answered, there is room again.
            assert (await client.request("command/exec", {"command": ["true"]}))["exitCode"] == 0
