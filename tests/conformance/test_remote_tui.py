"""The original's own terminal client, ``codex --remote ws://…`` (0.169.0, and
0.171.0, the release whose protocol we speak), drives our server through a
whole session on a pseudo-terminal, as its user would: it starts up
(initialize, the discovery requests, a thread), runs a turn, a ``!`` shell
command, ``/review`` of uncommitted changes, ``/model`` (the choice saved to
config.toml, comments kept), ``/fork``, ``/resume`` of the first thread,
``/compact``, ``/permissions``, ``/stop``, ``/goal`` (read),
``/plan`` with a turn in plan mode, a command that leaves the sandbox
approved, a slow turn interrupted with Esc, ``/side`` with a question, and
``/logout``, which ends it. A logging proxy between the two sees every
request answered, none with an error, and the TUI stays up until
``/logout``. Each version is skipped where it is not
installed (``npm i @openai/codex@0.169.0``, or ``CODEX_ORIGINAL_BIN``;
0.171.0: see ``harness.ORIGINAL_0171_BIN``)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import termios
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pyte
import pytest
import trio
import trio_websocket

from harness import ORIGINAL_0171_BIN
from harness import ORIGINAL_BIN as ORIGINAL
from harness.ws import TIMEOUT, ws_server

#: What the TUI asks its terminal, and what a terminal answers.
TERMINAL_ANSWERS = {
    b"\x1b[6n": b"\x1b[1;1R",
    b"\x1b]10;?": b"\x1b]10;rgb:ffff/ffff/ffff\x1b\\",
    b"\x1b]11;?": b"\x1b]11;rgb:0000/0000/0000\x1b\\",
    b"\x1b[c": b"\x1b[?62;c",
}

ESC, DOWN, SHIFT_TAB, CTRL_C = b"\x1b", b"\x1b[B", b"\x1b[Z", b"\x03"
#: The footer while plan mode is on.
PLAN_MODE = "Planmode(shift+tabtocycle)"
#: The pseudo-terminal's size: tall enough to hold the whole session, since
#: the TUI redraws its screen rather than scroll it, so a line pushed off
#: the top is gone.
COLUMNS, LINES = 120, 400


class Proxy:
    """A websocket proxy between the TUI and our server that notes every
    request method, every method answered and every error answer."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.methods: list[str] = []
        self.answered: list[str] = []
        #: (method, params, error) of each request answered with an error.
        self.errors: list[tuple[str, Any, Any]] = []
        self.url = ""

    async def run(self, nursery: trio.Nursery) -> None:
        server = await nursery.start(partial(trio_websocket.serve_websocket, self._handle, "127.0.0.1", 0,
                                             ssl_context=None, max_message_size=2**26))
        self.url = f"ws://127.0.0.1:{server.port}"

    async def _handle(self, request: trio_websocket.WebSocketRequest) -> None:
        down = await request.accept()
        sent: dict[Any, tuple[str, Any]] = {}
        async with trio_websocket.open_websocket_url(self.upstream + "/", message_queue_size=4096,
                                                     max_message_size=2**26) as up:
            async def client_to_server() -> None:
                while True:
                    message = await down.get_message()
                    msg = json.loads(message)
                    if "method" in msg and "id" in msg:
                        sent[msg["id"]] = (msg["method"], msg.get("params"))
                        self.methods.append(msg["method"])
                    await up.send_message(message)

            async def server_to_client() -> None:
                while True:
                    message = await up.get_message()
                    msg = json.loads(message)
                    if "method" not in msg and msg.get("id") in sent:
                        method, params = sent.pop(msg["id"])
                        self.answered.append(method)
                        if "error" in msg:
                            self.errors.append((method, params, msg["error"]))
                    await down.send_message(message)

            # Either side closing ends the session; the nursery reports it
            # in a group (the TUI is killed at the end, before the proxy).
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(client_to_server)
                    nursery.start_soon(server_to_client)
            except* trio_websocket.ConnectionClosed:
                pass


def events_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


class Tui:
    """The TUI on a pseudo-terminal, rendered by a terminal emulator: what
    it shows, and keys typed into it. Every wait fails if the TUI exits
    meanwhile."""

    def __init__(self, proc: trio.Process, terminal: trio.lowlevel.FdStream) -> None:
        self.proc = proc
        self.terminal = terminal
        self.emulator = pyte.Screen(COLUMNS, LINES)
        self._stream = pyte.ByteStream(self.emulator)
        self._text: str | None = ""

    async def read(self) -> None:
        """Render what the TUI writes, answering its terminal queries,
        until it exits (a pseudo-terminal whose last writer closed reads
        as an I/O error)."""
        with contextlib.suppress(trio.BrokenResourceError):
            await self._render()

    async def _render(self) -> None:
        while data := await self.terminal.receive_some(65536):
            self._stream.feed(data)
            self._text = None
            for query, answer in TERMINAL_ANSWERS.items():
                if query in data:
                    await self.terminal.send_all(answer)

    def text(self) -> str:
        """The screen without whitespace (so wrapped lines join)."""
        if self._text is None:
            self._text = re.sub(r"\s", "", "".join(self.emulator.display))
        return self._text

    def mark(self) -> str:
        return self.text()

    def shown(self, text: str, since: str = "") -> bool:
        """Whether ``text`` shows more often than at the mark ``since``."""
        return self.text().count(text) > since.count(text)

    async def wait_for(self, done: Callable[[], bool], what: str) -> None:
        with trio.move_on_after(TIMEOUT):
            while not done():
                assert self.proc.returncode is None, (
                    f"the TUI exited ({self.proc.returncode}) waiting for {what}:\n{self.tail()}")
                await trio.sleep(0.05)
            return
        raise AssertionError(f"the TUI did not show {what} in {TIMEOUT} s:\n{self.tail()}")

    async def wait_shown(self, text: str, since: str = "") -> None:
        await self.wait_for(lambda: self.shown(text, since), text)

    async def press(self, keys: bytes) -> None:
        await self.terminal.send_all(keys)
        await trio.sleep(0.2)

    async def type_line(self, text: str) -> str:
        """Type ``text`` and Enter; the mark before it."""
        mark = self.mark()
        for key in text:
            await self.terminal.send_all(key.encode())
            await trio.sleep(0.01)
        await trio.sleep(0.3)
        await self.terminal.send_all(b"\r")
        return mark

    def tail(self) -> str:
        """The screen as it is, for failure messages."""
        return "\n".join(line.rstrip() for line in self.emulator.display if line.strip())


@asynccontextmanager
async def open_tui(tui: Path, url: str, env: dict[str, str], workspace: Path) -> AsyncIterator[Tui]:
    """The TUI started on a pseudo-terminal against ``url``; killed
    at the end if still running."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", LINES, COLUMNS, 0, 0))
    proc = await trio.lowlevel.open_process([str(tui), "--remote", url], stdin=slave, stdout=slave,
                                            stderr=slave, env=env, cwd=workspace, start_new_session=True)
    os.close(slave)
    terminal = trio.lowlevel.FdStream(master)
    driver = Tui(proc, terminal)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(driver.read)
            yield driver
            nursery.cancel_scope.cancel()
    finally:
        proc.kill()
        with trio.move_on_after(TIMEOUT):
            await proc.wait()
        await terminal.aclose()


async def git_repo_with_a_change(workspace: Path) -> None:
    """``workspace`` as a git repository with an uncommitted change, for
    ``/review``."""
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    (workspace / "notes.txt").write_text("one\n")
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "first"]):
        await trio.run_process([*git, *args], cwd=workspace, stdout=subprocess.DEVNULL)
    (workspace / "notes.txt").write_text("one\ntwo\n")


@pytest.mark.parametrize("tui", [ORIGINAL, ORIGINAL_0171_BIN], ids=["0.169.0", "0.171.0"])
async def test_the_codex_tui_goes_through_a_whole_session_on_our_websocket_listener(
        codex_home: Path, tmp_path: Path, tui: Path) -> None:
    if not tui.exists():
        pytest.skip(f"the original codex binary is not installed at {tui}")
    events = tmp_path / "events.jsonl"
    workspace = tmp_path / "ws"
    workspace.mkdir()
    await git_repo_with_a_change(workspace)
    (tmp_path / "tui-home" / ".codex").mkdir(parents=True)
    config = codex_home / "config.toml"
    config.write_text("# the user's own note\n" + config.read_text())
    env = {"HOME": str(tmp_path / "tui-home"), "CODEX_HOME": str(tmp_path / "tui-home" / ".codex"),
           "TERM": "xterm-256color", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    async with ws_server(codex_home, "ws://127.0.0.1:0", "-c", "analytics.enabled=true",
                         "-c", f'analytics.export_jsonl="{events}"', cwd=workspace) as server:
        proxy = Proxy(server.url)
        async with trio.open_nursery() as proxies:
            await proxy.run(proxies)
            async with open_tui(tui, proxy.url, env, workspace) as driver:
                await session(driver, proxy, workspace)
            proxies.cancel_scope.cancel()
    # Every request answered, none with an error.
    assert set(proxy.methods) <= set(proxy.answered)
    assert not proxy.errors, proxy.errors
    assert {"initialize", "thread/start", "turn/start", "thread/shellCommand", "review/start",
            "config/batchWrite", "thread/fork", "thread/resume", "thread/compact/start", "permissionProfile/list",
            "thread/settings/update", "thread/backgroundTerminals/clean", "thread/goal/get",
            "collaborationMode/list", "turn/interrupt", "thread/inject_items",
            "account/logout"} <= set(proxy.methods)
    # /model saved the choice in the server's config.toml, the user's comment kept.
    saved = config.read_text()
    assert saved.startswith("# the user's own note\n") and 'model_reasoning_effort = "medium"' in saved
    # Analytics saw the user accept the command.
    approvals = [e for e in events_of(events) if e["event_type"] == "codex_tool_approval" and e["decision"]]
    assert [(e["decision"], e["request_method"]) for e in approvals] == [
        ("accept", "item/commandExecution/requestApproval")]


async def session(tui: Tui, proxy: Proxy, workspace: Path) -> None:
    """The user's session, each step waiting for what the TUI shows."""
    async def answered(method: str, count: int = 1) -> None:
        await tui.wait_for(lambda: proxy.answered.count(method) >= count, f"an answer to {method}")

    await tui.wait_shown("AskCodextodoanything")
    mark = await tui.type_line("say hello")
    await tui.wait_shown("Workedfor", mark)
    # `!cmd`: the server runs it as a turn of its own.
    mark = await tui.type_line("!echo hi")
    await answered("thread/shellCommand")
    await tui.wait_shown("•Youranechohi└hi", mark)
    await tui.wait_shown("Workedfor", mark)
    # /review, second preset: the uncommitted changes, reviewed inline.
    mark = await tui.type_line("/review")
    await tui.wait_shown("Reviewuncommittedchanges", mark)
    await tui.press(b"2")
    await tui.wait_shown("<<Codereviewfinished>>", mark)
    # /model: pick the model, then the effort; the TUI saves both (config/batchWrite).
    mark = await tui.type_line("/model")
    await tui.wait_shown("SelectModelandEffort", mark)
    await tui.press(b"\r")
    await tui.wait_shown("SelectReasoningLevel", mark)
    await tui.press(b"\r")
    await tui.wait_shown("Modelchangedtomock-model", mark)
    await answered("config/batchWrite")
    # /fork, then /resume back to the first thread (the fork is the newest).
    mark = await tui.type_line("/fork")
    await tui.wait_shown("Forkcreated", mark)
    listed = proxy.answered.count("thread/list")
    mark = await tui.type_line("/resume")
    await tui.wait_shown("Resumeaprevioussession", mark)
    await answered("thread/list", listed + 1)
    await tui.press(DOWN)
    await tui.press(b"\r")
    await answered("thread/resume")
    mark = await tui.type_line("/compact")
    await tui.wait_shown("Contextcompacted", mark)
    # /permissions: the profiles listed, "Ask for approval" chosen.
    mark = await tui.type_line("/permissions")
    await answered("permissionProfile/list")
    await tui.wait_shown("ReadOnly(current)", mark)
    await tui.press(b"1")
    await tui.wait_shown("Permissionselectionrequested", mark)
    mark = await tui.type_line("/stop")
    await answered("thread/backgroundTerminals/clean")
    await tui.wait_shown("Stoppingallbackgroundterminals", mark)
    mark = await tui.type_line("/goal")
    await tui.wait_shown("Nogoaliscurrentlyset", mark)
    # Setting a goal starts turns that go on until it is paused, completed or
    # cleared (as the original's), against a scripted model without end: set,
    # clear and continuation are tested over the protocol, in
    # test_goal_continuation.py.
    # /plan (the server's presets), a turn in plan mode, back to default with Shift+Tab.
    await tui.type_line("/plan")
    await tui.wait_for(lambda: tui.shown(PLAN_MODE), "plan mode")
    mark = await tui.type_line("make a plan")
    await tui.wait_shown("Workedfor", mark)
    await tui.press(SHIFT_TAB)
    await tui.wait_for(lambda: not tui.shown(PLAN_MODE), "default mode")
    # A command that asks to leave the sandbox: the TUI asks its user, who accepts.
    call = {"command": "touch approved.txt", "sandbox_permissions": "require_escalated",
            "justification": "to test approvals"}
    mark = await tui.type_line(f"[[call=shell_command {json.dumps(call)}]]")
    await tui.wait_shown("Yes,proceed(y)", mark)
    await tui.press(b"y")
    await tui.wait_for(lambda: (workspace / "approved.txt").exists() and tui.shown("Workedfor", mark),
                       "the approved command")
    # Esc during a slow turn interrupts it.
    mark = await tui.type_line("[[deltas=400 delay_ms=50]] slow turn")
    await tui.wait_shown("slowturnslowturn", mark)
    await tui.press(ESC)
    await tui.wait_shown("Conversationinterrupted", mark)
    # /side: a side conversation (a fork with injected instructions) answers; Ctrl+C closes it.
    mark = await tui.type_line("/side")
    await answered("thread/inject_items")
    await tui.wait_shown("Askafollow-upquestion", mark)
    mark = await tui.type_line("side question")
    await tui.wait_shown("•sidequestion", mark)
    # Its turn over (else Ctrl+C interrupts it, racing its end).
    await tui.wait_shown("Workedfor", mark)
    mark = tui.mark()
    await tui.press(CTRL_C)
    await tui.wait_shown("AskCodextodoanything", mark)
    # /logout signs out and ends the TUI, as it does against the original.
    mark = await tui.type_line("/logout")
    await answered("account/logout")
    with trio.fail_after(TIMEOUT):
        assert await tui.proc.wait() == 0, tui.tail()
