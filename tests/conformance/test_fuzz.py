"""Nothing a client sends takes the server down: fuzzed frames for every
method we serve (params generated from the original's schema, then
mutated; see harness/fuzz.py) over stdio and websocket, against the real
server in a subprocess with a scratch CODEX_HOME and cwd.

For each transport: the server stays up, every request gets exactly one
answer, and its memory stays bounded. ``TRIO_CODEX_FUZZ_FRAMES`` frames per
transport (default 300); bench/fuzz_frames.py is the long form.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import trio
import trio_websocket

from harness import mock_config, open_app_server
from harness.fuzz import Tally, drive, generate, rss_kb
from harness.ws import ws_server
from trio_codex.transports.scripted_responses import ScriptedResponses

FRAMES = int(os.environ.get("TRIO_CODEX_FUZZ_FRAMES", "300"))
#: Frames sent before the memory baseline is taken (imports, caches, pools).
WARM_UP = 64
#: How much the server may grow over the frames after the warm-up. Generous:
#: the threads the frames start stay loaded, which is state, not a leak.
RSS_GROWTH_KB = 96 * 1024


@cache
def templates() -> list[bytes]:
    return generate(FRAMES)


@pytest.fixture
def fuzz_home(tmp_path: Path, scripted: ScriptedResponses) -> Path:
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text(mock_config(scripted.base_url) + 'sandbox_mode = "read-only"\n')
    return home


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    return cwd


async def fuzz(send: Callable[[bytes], Awaitable[None]], tally: Tally, thread_id: str, pid: int) -> tuple[int, int]:
    """Drive every frame; (RSS after the warm-up, RSS at the end), in KiB."""
    frames = templates()
    await drive(send, tally, frames[:WARM_UP], thread_id)
    warm = rss_kb(pid)
    await drive(send, tally, frames[WARM_UP:], thread_id, first_id=1000 + WARM_UP)
    return warm, rss_kb(pid)


def check(tally: Tally, alive: bool, warm: int, end: int) -> None:
    assert alive, "the server died"
    assert not tally.owed, f"requests never answered: {list(tally.owed.values())[:5]}"
    assert not tally.doubles(), f"requests answered twice: {tally.doubles()[:5]}"
    assert end - warm < RSS_GROWTH_KB, f"RSS grew from {warm} KiB to {end} KiB over {FRAMES} frames"


async def test_fuzzed_requests_over_stdio_are_each_answered_once_and_never_take_the_server_down(
        fuzz_home: Path, scratch: Path) -> None:
    templates()  # generated before the clock of any wait starts
    tally = Tally()
    async with open_app_server(fuzz_home, cwd=scratch) as client:
        thread_id = await client.start_thread()
        client.listeners.append(tally.received)
        warm, end = await fuzz(lambda data: client.send_raw(data + b"\n"), tally, thread_id, client.proc.pid)
        assert "result" in await client.call("model/list", {}, id="still-there")
        alive = client.proc.returncode is None
    check(tally, alive, warm, end)


@asynccontextmanager
async def ws_tally(url: str, tally: Tally) -> AsyncIterator[trio_websocket.WebSocketConnection]:
    """A websocket whose every incoming message goes to ``tally``."""
    async with trio_websocket.open_websocket_url(url + "/", message_queue_size=4096) as ws, \
            trio.open_nursery() as nursery:
        async def read() -> None:
            while True:
                tally.received(json.loads(await ws.get_message()))

        nursery.start_soon(read)
        yield ws
        nursery.cancel_scope.cancel()


async def test_fuzzed_requests_over_websocket_are_each_answered_once_and_never_take_the_server_down(
        fuzz_home: Path, scratch: Path) -> None:
    templates()
    tally = Tally()
    async with ws_server(fuzz_home, cwd=scratch) as server, ws_tally(server.url, tally) as ws:
        async def send(data: bytes) -> None:
            # Text messages must be UTF-8 (a websocket closes on one that
            # is not), so invalid UTF-8 goes as a binary message.
            try:
                await ws.send_message(data.decode())
            except UnicodeDecodeError:
                await ws.send_message(data)

        async def call(rid: str, method: str, params: Any) -> dict[str, Any]:
            await send(json.dumps({"id": rid, "method": method, "params": params}).encode())
            with trio.fail_after(20):
                while rid not in tally.replies:
                    await trio.sleep(0.005)
            return tally.replies[rid]

        await call("init", "initialize", {"clientInfo": {"name": "fuzz", "version": "1"}})
        thread_id = (await call("thread", "thread/start", {}))["result"]["thread"]["id"]
        warm, end = await fuzz(send, tally, thread_id, server.proc.pid)
        assert "result" in await call("still-there", "model/list", {})
        alive = server.proc.returncode is None
    check(tally, alive, warm, end)
