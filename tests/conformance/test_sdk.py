"""The official openai-codex SDK (PyPI) drives our server unchanged.

The SDK is synchronous (it owns a reader thread), so each scenario runs in a
worker thread while the scripted Responses server serves from the test's
trio loop.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from openai_codex import Codex, CodexConfig

from harness import server_argv, server_env
from trio_codex.transports.scripted_responses import ScriptedResponses

TRIO_CODEX_BIN = str(Path(sys.executable).parent / "trio-codex")

# The SDK (0.163.0) leaves its child's pipes to the garbage collector.
pytestmark = pytest.mark.filterwarnings(
    "ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")


def launched_by_argv(home: Path) -> CodexConfig:
    return CodexConfig(launch_args_override=tuple(server_argv()), env=server_env(home), cwd=str(home))


async def in_thread(fn: Callable[[], Any]) -> Any:
    with trio.fail_after(60):
        return await trio.to_thread.run_sync(fn)


async def test_sdk_streams_a_turn_and_runs_a_second_one_on_the_same_thread(
        codex_home: Path, scripted: ScriptedResponses) -> None:
    def drive() -> tuple[list[str], Any, str]:
        with Codex(config=launched_by_argv(codex_home)) as codex:
            thread = codex.thread_start()
            events = [event.method for event in thread.turn("[[deltas=4]] hello sdk").stream()]
            result = thread.run("and again")
            return events, result, thread.id
    events, result, thread_id = await in_thread(drive)
    assert events[0] == "turn/started" and events[-1] == "turn/completed"
    assert "item/agentMessage/delta" in events and "item/completed" in events
    assert result.status.value == "completed"
    assert result.final_response == "and again"
    history = str(scripted.requests[-1].body["input"])
    assert "hello sdk" in history and "and again" in history
    assert scripted.requests[-1].body["prompt_cache_key"] == thread_id


async def test_sdk_runs_two_threads_at_once(codex_home: Path) -> None:
    def drive() -> list[str | None]:
        with Codex(config=launched_by_argv(codex_home)) as codex:
            a, b = codex.thread_start(), codex.thread_start()
            turn_a = a.turn("[[deltas=6 delay_ms=2]] first thread")
            turn_b = b.turn("[[deltas=6 delay_ms=2]] second thread")
            return [turn_a.run().final_response, turn_b.run().final_response]
    assert await in_thread(drive) == ["first thread", "second thread"]


async def test_sdk_launches_the_trio_codex_binary_with_its_own_argv(codex_home: Path) -> None:
    def drive() -> str | None:
        config = CodexConfig(codex_bin=TRIO_CODEX_BIN, config_overrides=("model=mock-model",),
                             env=server_env(codex_home), cwd=str(codex_home))
        with Codex(config=config) as codex:
            return codex.thread_start().run("via codex_bin").final_response
    assert await in_thread(drive) == "via codex_bin"


async def test_sdk_sees_a_failed_turn_as_an_error(codex_home: Path) -> None:
    def drive() -> str:
        with Codex(config=launched_by_argv(codex_home)) as codex:
            thread = codex.thread_start()
            try:
                thread.run('[[status=400 message="no such model"]] hi')
            except RuntimeError as exc:
                return str(exc)
            return "no error"
    assert "no such model" in await in_thread(drive)


async def test_sdk_approval_handlers_that_accept_and_decline_complete_their_turns(
        codex_home: Path, scripted: ScriptedResponses, tmp_path: Path) -> None:
    from openai_codex.client import CodexClient

    workspace = tmp_path / "ws"
    workspace.mkdir()

    def drive(decision: str) -> tuple[list[str], str, bool]:
        asked: list[str] = []

        def handler(method: str, params: Any) -> dict[str, str]:
            asked.append(method)
            return {"decision": decision}

        client = CodexClient(config=launched_by_argv(codex_home), approval_handler=handler)
        client.start()
        try:
            client.initialize()
            started = client.thread_start({"cwd": str(workspace), "approvalPolicy": "untrusted",
                                           "sandbox": "danger-full-access"})
            turn = client.turn_start(started.thread.id, f'[[call=shell_command {{"command": "touch {decision}"}}]]')
            done = client.wait_for_turn_completed(turn.turn.id)
        finally:
            client.close()
        return asked, done.turn.status.value, (workspace / decision).exists()

    assert await in_thread(lambda: drive("accept")) == (
        ["item/commandExecution/requestApproval"], "completed", True)
    assert await in_thread(lambda: drive("decline")) == (
        ["item/commandExecution/requestApproval"], "completed", False)


async def test_sdk_lists_reads_names_archives_unarchives_resumes_and_forks_threads(codex_home: Path) -> None:
    def first_server() -> str:
        with Codex(config=launched_by_argv(codex_home)) as codex:
            thread = codex.thread_start()
            thread.run("remember this")
            thread.set_name("Remembered")
            return thread.id

    def second_server(thread_id: str) -> tuple[list[str], str | None, int, list[str], str | None]:
        with Codex(config=launched_by_argv(codex_home)) as codex:
            listed = [t.id for t in codex.thread_list().data]
            read = codex.thread_resume(thread_id).read(include_turns=True).thread
            codex.thread_archive(thread_id)
            archived = [t.id for t in codex.thread_list(archived=True).data]
            codex.thread_unarchive(thread_id)
            final = codex.thread_resume(thread_id).run("and this").final_response
            fork = codex.thread_fork(thread_id)
            assert fork.read(include_turns=True).thread.forked_from_id == thread_id
            return listed, read.name, len(read.turns), archived, final

    thread_id = await in_thread(first_server)
    listed, name, turns, archived, final = await in_thread(lambda: second_server(thread_id))
    assert listed == [thread_id] and archived == [thread_id]
    assert (name, turns, final) == ("Remembered", 1, "and this")


async def test_sdk_compacts_a_thread_and_the_next_turn_sees_the_summary(
        codex_home: Path, scripted: ScriptedResponses) -> None:
    def drive() -> tuple[Any, list[str]]:
        with Codex(config=launched_by_argv(codex_home)) as codex:
            thread = codex.thread_start()
            thread.run("something long ago")
            answer = thread.compact()
            # The compaction runs as a turn of its own; the next turn waits
            # for it (turn/start during it would be refused, as the original).
            for _ in range(500):
                turns = thread.read(include_turns=True).thread.turns
                if len(turns) == 2 and turns[-1].status.value == "completed":
                    break
                time.sleep(0.01)
            thread.run("and now")
            return answer, [item["type"] for item in scripted.requests[-1].body["input"]]
    answer, kinds = await in_thread(drive)
    assert answer is not None
    summary = str(scripted.requests[-1].body["input"][-2])
    assert "Another language model started to solve this problem" in summary
    assert kinds == ["message", "message", "message"]  # the question, the summary, the new question
