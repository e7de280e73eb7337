"""Nothing a client sends takes the server down: fuzzed frames for every
method we serve (params generated from the original's schema, then
mutated; see harness/fuzz.py) over stdio and websocket, against the real
server in a subprocess with a scratch CODEX_HOME and cwd.

For each transport: the server stays up, every request gets exactly one
answer, and its memory stays bounded. ``TRIO_CODEX_FUZZ_FRAMES`` frames per
transport (default 300); bench/fuzz_frames.py is the long form.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import pytest

from harness import mock_config
from harness.fuzz import drive, generate, rss_kb, session
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


@pytest.mark.parametrize("transport", ["stdio", "ws"])
async def test_fuzzed_requests_are_each_answered_once_and_never_take_the_server_down(
        transport: str, fuzz_home: Path, scratch: Path) -> None:
    frames = templates()  # generated before the clock of any wait starts
    async with session(transport, fuzz_home, scratch) as server:
        thread_id = await server.start()
        await drive(server.send, server.tally, frames[:WARM_UP], thread_id)
        warm = rss_kb(server.pid)
        await drive(server.send, server.tally, frames[WARM_UP:], thread_id, first_id=1000 + WARM_UP)
        end = rss_kb(server.pid)
        assert "result" in await server.call("still-there", "model/list", {})
        assert server.returncode() is None
    tally = server.tally
    assert not tally.owed, f"requests never answered: {list(tally.owed.values())[:5]}"
    assert not tally.doubles(), f"requests answered twice: {tally.doubles()[:5]}"
    assert end - warm < RSS_GROWTH_KB, f"RSS grew from {warm} KiB to {end} KiB over {FRAMES} frames"
