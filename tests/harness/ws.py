"""The real server on a websocket listener, for tests that connect to it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from trio_codex.transports.connect import connect_websocket

from . import RpcClient, server_env

TIMEOUT = 20.0
#: A signed-bearer-token secret: at least the 32 bytes the server requires.
SECRET = b"a-shared-secret-of-at-least-32-bytes"


def jwt(claims: dict, *, alg: str = "HS256", key: bytes = SECRET) -> bytes:
    """An ``Authorization`` value: ``Bearer`` and a JWT of ``claims``."""
    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    signed = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode()) + b"." + b64(json.dumps(claims).encode())
    return b"Bearer " + signed + b"." + b64(hmac.new(key, signed, hashlib.sha256).digest())


class Server:
    def __init__(self, proc: trio.Process, url: str) -> None:
        self.proc = proc
        self.url = url
        #: What the server wrote on stderr so far (its log).
        self.log = bytearray()


@asynccontextmanager
async def ws_server(codex_home: Path, listen: str = "ws://127.0.0.1:0", *args: str,
                    env_extra: dict[str, str] | None = None, cwd: Path | None = None) -> AsyncIterator[Server]:
    """The server listening on ``listen``, in ``cwd`` (where a thread started
    without one works); its URL read from the banner it prints on stderr
    (the rest of stderr is drained)."""
    argv = [sys.executable, "-m", "trio_codex.runtime", "app-server", "--listen", listen, *args]
    async with trio.open_nursery() as nursery:
        proc = await nursery.start(lambda task_status: trio.run_process(
            argv, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False, cwd=cwd,
            env=server_env(codex_home, **(env_extra or {})), task_status=task_status))
        assert proc.stderr is not None
        err = b""
        with trio.fail_after(TIMEOUT):
            while b"listening on: " not in err or not err.split(b"listening on: ", 1)[1].count(b"\n"):
                chunk = await proc.stderr.receive_some(4096)
                assert chunk, f"the server exited: {err.decode(errors='replace')}"
                err += chunk
        url = err.split(b"listening on: ", 1)[1].split(b"\n", 1)[0].decode()

        server = Server(proc, url)
        server.log += err

        async def drain() -> None:
            async for chunk in proc.stderr:
                server.log += chunk

        nursery.start_soon(drain)
        try:
            yield server
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                with trio.move_on_after(TIMEOUT):
                    await proc.wait()
                if proc.returncode is None:
                    proc.kill()


@asynccontextmanager
async def ws_client(url: str, *, token: str | None = None, timeout: float = TIMEOUT) -> AsyncIterator[RpcClient]:
    """An :class:`RpcClient` over a websocket to ``url`` (the Client's
    trio-websocket transport), ``token`` sent as ``Authorization: Bearer``;
    not initialized. ``timeout`` bounds each of its waits."""
    async with connect_websocket(url, token=token) as stream, trio.open_nursery() as nursery:
        client = RpcClient(stream=stream, timeout=timeout)
        nursery.start_soon(client.run)
        try:
            yield client
        finally:
            nursery.cancel_scope.cancel()
