"""What a flaky or hostile model stream does to a turn, end to end: the real
server over stdio, the real openai SDK inside it, our scripted Responses
server on loopback. Expected texts were traced against the original 0.169."""

from __future__ import annotations

import contextlib
import json
import os
import resource
from pathlib import Path

import pytest

from harness import mock_config, open_app_server
from trio_codex.transports.scripted_responses import ScriptedResponses

DEEP = "[" * 1000 + "]" * 1000


def home_with(tmp_path: Path, scripted: ScriptedResponses, **provider: object) -> Path:
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text(mock_config(scripted.base_url, **provider))
    return home


def ended(msgs: list[dict]) -> dict:
    assert msgs[-1]["method"] == "turn/completed"
    return msgs[-1]["params"]["turn"]


async def test_a_model_that_only_sends_keepalives_fails_the_turn_after_the_idle_timeout(
        tmp_path: Path, scripted: ScriptedResponses) -> None:
    async with open_app_server(home_with(tmp_path, scripted, stream_idle_timeout_ms=300)) as client:
        tid = await client.start_thread()
        _, msgs = await client.turn(tid, "[[hang keepalive_ms=50]] anyone?")
        turn = ended(msgs)
        assert turn["status"] == "failed"
        assert turn["error"]["message"] == "stream disconnected before completion: idle timeout waiting for SSE"
        assert turn["error"]["codexErrorInfo"] == "other"
        _, again = await client.turn(tid, "still there?")
        assert ended(again)["status"] == "completed"


async def test_a_400_for_the_context_window_fails_the_turn_with_context_window_exceeded(codex_home: Path) -> None:
    async with open_app_server(codex_home) as client:
        tid = await client.start_thread()
        _, msgs = await client.turn(tid, "[[status=400 code=context_length_exceeded]] too long")
    error = ended(msgs)["error"]
    assert error["codexErrorInfo"] == "contextWindowExceeded"
    assert error["message"] == ("Codex ran out of room in the model's context window. "
                                "Start a new thread or clear earlier history before retrying.")


async def test_bytes_that_are_not_utf8_fail_the_turn_as_the_original(codex_home: Path) -> None:
    async with open_app_server(codex_home) as client:
        tid = await client.start_thread()
        _, msgs = await client.turn(tid, "[[bad_utf8]] garbled")
        error = ended(msgs)["error"]
        assert error["message"] == (
            "stream disconnected before completion: UTF8 error: invalid utf-8 sequence of 1 bytes from index 0")
        assert not [m for m in msgs if m["method"] == "item/agentMessage/delta"]
        _, again = await client.turn(tid, "clean")
        assert ended(again)["status"] == "completed"


async def test_deeply_nested_model_output_neither_crashes_nor_unloads_the_thread(
        codex_home: Path, scripted: ScriptedResponses) -> None:
    async with open_app_server(codex_home) as client:
        tid = await client.start_thread()
        # Three in a row: what used to crash the thread actor three times and unload it.
        _, msgs = await client.turn(tid, "[[deep=100000]] deep event")
        texts = [m["params"]["item"]["text"] for m in msgs if m["method"] == "item/completed"
                 and m["params"]["item"]["type"] == "agentMessage"]
        assert ended(msgs)["status"] == "completed" and texts == ["deep event"]  # the deep item is skipped
        deep_arguments = json.dumps('{"cmd":' + DEEP + "}")
        for _ in range(2):
            _, msgs = await client.turn(tid, f"[[call=exec_command {deep_arguments}]] go")
            assert ended(msgs)["status"] == "completed"
            outputs = [item["output"] for item in scripted.requests[-1].body["input"]
                       if item.get("type") == "function_call_output"]
            assert outputs[-1] == (
                "failed to parse function arguments: invalid type: sequence, expected a string at line 1 column 7")
        _, msgs = await client.turn(tid, "still here")
        assert ended(msgs)["status"] == "completed"
        assert await client.request("thread/loaded/list", {}) == {"data": [tid], "nextCursor": None}


def _exhaust_fds(pid: int) -> tuple[int, int]:
    """Lower ``pid``'s open-file limit to its lowest free descriptor, so that
    it cannot open one more; return the limits to put back."""
    used = {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}
    lowest_free = next(fd for fd in range(len(used) + 1) if fd not in used)
    limits = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (lowest_free, limits[1]))
    return limits


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to count a process's descriptors")
@pytest.mark.parametrize("sdk", ["loading", "loaded"])
async def test_running_out_of_file_descriptors_stalls_a_turn_until_they_are_free(codex_home: Path, sdk: str) -> None:
    async with open_app_server(codex_home) as client:
        await client.initialize()
        await client.request("thread/list", {})  # the store has opened its index
        tid = (await client.request("thread/start", {"ephemeral": True}))["thread"]["id"]
        if sdk == "loaded":
            # The SDK is in and the server dropped the connection it used, so
            # the turn below needs a new socket: that is what fails.
            _, warm = await client.turn(tid, "[[disconnect_after=0]] warm")
            assert ended(warm)["status"] == "failed"
        # "loading": importing the SDK (overlapping the handshake) may be what needs files.
        limits = _exhaust_fds(client.proc.pid)
        try:
            result = await client.request("turn/start", {"threadId": tid, "input": [{"type": "text", "text": "hi"}]})
            error = (await client.until(lambda m: m.get("method") == "error"))[-1]["params"]
        finally:
            with contextlib.suppress(ProcessLookupError):  # a server that died fails the test below
                resource.prlimit(client.proc.pid, resource.RLIMIT_NOFILE, limits)
        assert error["willRetry"] is True and error["error"]["message"] == "Reconnecting... waiting for network"
        assert "Too many open files" in error["error"]["additionalDetails"]
        assert "raise the open-file limit" in error["error"]["additionalDetails"]
        msgs = await client.until(lambda m: m.get("method") == "turn/completed")
        assert ended(msgs)["id"] == result["turn"]["id"] and ended(msgs)["status"] == "completed"
        _, again = await client.turn(tid, "and again")
        assert ended(again)["status"] == "completed"
