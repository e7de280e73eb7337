"""Test helpers: drive the real server over real pipes.

:func:`open_app_server` starts ``python -m trio_codex.runtime app-server`` as
a subprocess with a fresh CODEX_HOME, and gives back an :class:`RpcClient`
that speaks JSONL over its stdin/stdout, the way any client of the original
does, through the embedding API's Client. Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from trio_codex.runtime.client import Client, CodexError
from trio_codex.runtime.kernel.stream import FrameStream
from trio_codex.transports.connect import spawn_stdio
from trio_codex.transports.jsonl import JsonlStream

#: Bound on any single wait for the server in tests.
TIMEOUT = 20.0

#: The original's binary (codex-cli 0.169.0: ``npm i @openai/codex@0.169.0``,
#: or ``CODEX_ORIGINAL_BIN``), for the tests that compare with it; they skip
#: where it is not installed.
ORIGINAL_BIN = Path(os.environ.get(
    "CODEX_ORIGINAL_BIN",
    "/work/orig/node_modules/@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex"))
#: The release whose protocol we speak (codex-cli 0.171.0: ``npm i --prefix
#: /work/orig171 @openai/codex@0.171.0``, or ``CODEX_ORIGINAL_0171_BIN``),
#: for the tests of its clients; they skip where it is not installed.
ORIGINAL_0171_BIN = Path(os.environ.get(
    "CODEX_ORIGINAL_0171_BIN",
    "/work/orig171/node_modules/@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex"))


def mock_config(base_url: str, **provider: Any) -> str:
    """A config.toml pointing at a scripted Responses server, as the
    original's own tests configure it."""
    extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in provider.items())
    return (
        'model = "mock-model"\n'
        'model_provider = "mock"\n\n'
        "[model_providers.mock]\n"
        'name = "Mock"\n'
        f'base_url = "{base_url}"\n'
        'wire_api = "responses"\n'
        "request_max_retries = 0\n"
        "stream_max_retries = 0\n" + extra
    )


class RpcError(CodexError):
    """A request refused: the error body's ``code``, ``message``, ``data``."""

    def __init__(self, error: dict[str, Any], method: str = "request") -> None:
        super().__init__(method, error.get("code", 0), error.get("message", ""), error.get("data"))


class RpcClient:
    """The tests' view of one app-server session: every message as its JSON
    dict, in order. It is a thin layer over the embedding API's
    :class:`~trio_codex.runtime.client.Client` (so everything the tests run
    exercises it): the Client sends, matches answers to requests and bounds
    the waits; its ``tap`` gives the exact messages for :attr:`log` and the
    queue of :meth:`next_message`."""

    def __init__(self, proc: trio.Process | None = None, *, stream: FrameStream | None = None,
                 timeout: float = TIMEOUT) -> None:
        """Over ``stream``, or over the pipes of ``proc`` (an app server on
        stdio); the session is live while :meth:`run` runs. ``timeout``
        bounds each answer and each wait for the next message."""
        if stream is None:
            assert proc is not None and proc.stdout is not None and proc.stdin is not None
            stream = JsonlStream(proc.stdout, proc.stdin, peer="stdio:app-server")
        #: The server's process, when it is a child.
        self.proc = proc
        self.timeout = timeout
        self.client = Client(stream, typed=False, request_timeout=timeout, tap=self._tap)
        #: Ids of the requests whose answers :meth:`call` awaits (not queued).
        self._calls: set[Any] = set()
        send, self._messages = trio.open_memory_channel[dict[str, Any]](100_000)
        self._push = send
        #: Every message the server sent, decoded, in order (responses too).
        self.log: list[dict[str, Any]] = []
        #: Called with each message as it arrives.
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        #: False: messages go to the log and the listeners only, for a
        #: driver that never calls :meth:`next_message` (the fuzzer).
        self.queued = True

    def _tap(self, frame: bytes) -> None:
        msg = json.loads(frame)  # the server must send only JSON
        self.log.append(msg)
        for listener in self.listeners:
            listener(msg)
        if self.queued and not ("id" in msg and "method" not in msg and msg["id"] in self._calls):
            # Unbounded in effect (100,000): a test reads its messages when it likes.
            self._push.send_nowait(msg)

    async def run(self) -> None:
        """Read the server's messages until its output ends."""
        try:
            await self.client.run()
        finally:
            self._push.close()

    _read = run

    async def send_raw(self, data: bytes) -> None:
        """Write ``data`` as is: one or more lines, each ending in a newline
        (malformed ones too), through the Client's unchecked frame path."""
        assert data.endswith(b"\n"), "a raw write is whole lines"
        await self.client.send_frame(data[:-1])

    async def send(self, msg: dict[str, Any]) -> None:
        await self.client.send(msg)

    async def call(self, method: str, params: Any = None, *, id: Any = None) -> dict[str, Any]:
        """Send a request; return the whole response message."""
        rid = self.client.next_id() if id is None else id
        self._calls.add(rid)
        try:
            return (await self.client.exchange(method, params, id=rid)).to_json()
        finally:
            self._calls.discard(rid)

    async def request(self, method: str, params: Any = None) -> Any:
        """Send a request; return its result or raise :class:`RpcError`."""
        response = await self.call(method, params)
        if "error" in response:
            raise RpcError(response["error"], method)
        return response["result"]

    async def initialize(self, name: str = "trio_codex_tests", **capabilities: Any) -> Any:
        result = await self.request("initialize", {
            "clientInfo": {"name": name, "version": "1.0"}, "capabilities": capabilities or None})
        await self.send({"method": "initialized"})
        return result

    async def next_message(self) -> dict[str, Any]:
        with trio.fail_after(self.timeout):
            return await self._messages.receive()

    async def until(self, done: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        """Messages (notifications and server requests) up to and including
        the first for which ``done`` is true."""
        seen = []
        while True:
            msg = await self.next_message()
            seen.append(msg)
            if done(msg):
                return seen

    async def next_of(self, method: str) -> dict[str, Any]:
        """The next message of ``method`` (the ones before it are dropped)."""
        return (await self.until(lambda m: m.get("method") == method))[-1]

    async def start_thread(self) -> str:
        """Initialize, start a thread, and take its ``thread/started``."""
        await self.initialize()
        result = await self.request("thread/start", {})
        started = await self.next_message()
        assert started["method"] == "thread/started"
        assert started["params"]["thread"]["id"] == result["thread"]["id"]
        return result["thread"]["id"]

    async def turn(self, thread_id: str, text: str, **params: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Start a turn and collect its notifications through turn/completed."""
        result = await self.request("turn/start", {
            "threadId": thread_id, "input": [{"type": "text", "text": text}], **params})
        turn_id = result["turn"]["id"]
        msgs = await self.until(lambda m: m.get("method") == "turn/completed"
                                and m["params"]["turn"]["id"] == turn_id)
        return result, msgs


#: How to start our server; a test comparing with the original passes its
#: binary as ``program`` instead.
OURS = (sys.executable, "-m", "trio_codex.runtime")


async def run_turn(client: RpcClient, thread_id: str, text: str, answer: Any = None,
                   **params: Any) -> list[dict[str, Any]]:
    """Start a turn and collect its messages through turn/completed,
    answering each approval request with ``answer``: a decision, or a
    function of the request's params that returns one."""
    await client.request("turn/start", {"threadId": thread_id, "input": [{"type": "text", "text": text}],
                                        **params})
    seen = []
    while True:
        msg = await client.next_message()
        seen.append(msg)
        if "id" in msg and "method" in msg:
            decision = answer(msg["params"]) if callable(answer) else answer
            await client.send({"id": msg["id"], "result": {"decision": decision}})
        if msg.get("method") == "turn/completed":
            return seen


def server_argv(*config: str, program: Sequence[str] = OURS) -> list[str]:
    args = list(program)
    for kv in config:
        args += ["-c", kv]
    return [*args, "app-server", "--listen", "stdio://"]


def server_env(codex_home: Path, **extra: str) -> dict[str, str]:
    """The server's environment: this CODEX_HOME and an empty HOME, so the
    login shells of shell tools do not run this machine's profile."""
    home = codex_home.parent / "home"
    home.mkdir(exist_ok=True)
    env = dict(os.environ, CODEX_HOME=str(codex_home), HOME=str(home), **extra)
    env.pop("OPENAI_API_KEY", None)
    return env


@asynccontextmanager
async def open_app_server(codex_home: Path, *config: str, env_extra: dict[str, str] | None = None,
                          stderr: int | None = subprocess.DEVNULL, cwd: Path | None = None,
                          program: Sequence[str] = OURS) -> AsyncIterator[RpcClient]:
    """Run the server with ``codex_home`` (write its config.toml first), in
    ``cwd``; ``config`` are ``-c key=value`` overrides; ``program`` is the
    server command before them (the original's binary, to compare). It runs
    as the Client's stdio child (:func:`~trio_codex.transports.connect.spawn_stdio`):
    on exit its stdin is closed and it is given ``TIMEOUT`` to exit."""
    async with spawn_stdio(server_argv(*config, program=program), env=server_env(codex_home, **(env_extra or {})),
                           cwd=cwd, stderr=stderr, exit_timeout=TIMEOUT) as stream, \
            trio.open_nursery() as nursery:
        client = RpcClient(stream.process, stream=stream)
        nursery.start_soon(client.run)
        try:
            yield client
        finally:
            nursery.cancel_scope.cancel()


async def run_exec(codex_home: Path, *args: str, stdin: bytes | int | None = b"", cwd: Path | None = None,
                   program: Sequence[str] = OURS, env: dict[str, str] | None = None,
                   ) -> subprocess.CompletedProcess[bytes]:
    """``<program> exec ARGS`` with this CODEX_HOME, run in its parent
    directory; ``stdin`` bytes arrive through a pipe (so stdin is no
    terminal), an int is a file descriptor."""
    with trio.fail_after(TIMEOUT):
        return await trio.run_process([*program, "exec", *args], env=env or server_env(codex_home),
                                      cwd=cwd or codex_home.parent, stdin=stdin, capture_stdout=True,
                                      capture_stderr=True, check=False)
