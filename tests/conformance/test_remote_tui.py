"""The original's own terminal client, ``codex --remote ws://…`` (0.169.0, and
0.171.0, the release whose protocol we speak),
drives our server: it starts up (initialize, the discovery requests, a
thread), takes a prompt typed into its terminal and shows the reply, asks its user
to approve a command that leaves the sandbox and runs it once approved, saves
a model chosen in ``/model`` to config.toml (comments kept), and a proxy
between the two sees no request of it answered with an error. Run on
a pseudo-terminal; each version is skipped where it is not installed
(``npm i @openai/codex@0.169.0``, or ``CODEX_ORIGINAL_BIN``; 0.171.0: see
``harness.ORIGINAL_0171_BIN``)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import termios
from functools import partial
from pathlib import Path
from typing import Any

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


class Proxy:
    """A websocket proxy between the TUI and our server that notes every
    request method and every error answer."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.methods: list[str] = []
        self.errors: list[str] = []
        self.url = ""

    async def run(self, nursery: trio.Nursery) -> None:
        server = await nursery.start(partial(trio_websocket.serve_websocket, self._handle, "127.0.0.1", 0,
                                             ssl_context=None, max_message_size=2**26))
        self.url = f"ws://127.0.0.1:{server.port}"

    async def _handle(self, request: trio_websocket.WebSocketRequest) -> None:
        down = await request.accept()
        sent: dict[Any, str] = {}
        async with trio_websocket.open_websocket_url(self.upstream + "/", message_queue_size=4096,
                                                     max_message_size=2**26) as up:
            async def client_to_server() -> None:
                while True:
                    message = await down.get_message()
                    msg = json.loads(message)
                    if "method" in msg and "id" in msg:
                        sent[msg["id"]] = msg["method"]
                        self.methods.append(msg["method"])
                    await up.send_message(message)

            async def server_to_client() -> None:
                while True:
                    message = await up.get_message()
                    msg = json.loads(message)
                    if "error" in msg:
                        self.errors.append(f"{sent.get(msg.get('id'))}: {msg['error']}")
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


def turn_events(path: Path) -> list[dict]:
    return [e for e in events_of(path) if e["event_type"] == "codex_turn_event"]


@pytest.mark.parametrize("tui", [ORIGINAL, ORIGINAL_0171_BIN], ids=["0.169.0", "0.171.0"])
async def test_the_codex_tui_runs_a_turn_through_our_websocket_listener(codex_home: Path, tmp_path: Path,
                                                                        tui: Path) -> None:
    if not tui.exists():
        pytest.skip(f"the original codex binary is not installed at {tui}")
    events = tmp_path / "events.jsonl"
    workspace = tmp_path / "ws"
    workspace.mkdir()
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
            await drive_tui(tui, proxy.url, env, workspace, events)
            proxies.cancel_scope.cancel()
    # Everything the TUI asked at start-up and for the turn was answered.
    assert not proxy.errors, proxy.errors
    assert {"initialize", "thread/start", "turn/start", "thread/list", "configRequirements/read",
            "thread/settings/update", "config/batchWrite"} <= set(proxy.methods)
    # /model saved the choice in the server's config.toml, the user's comment kept.
    saved = config.read_text()
    assert saved.startswith("# the user's own note\n") and 'model_reasoning_effort = "medium"' in saved
    # Analytics saw the user accept; the 0.169 TUI's title-writing helper
    # thread, which the scripted model also asked to run the command,
    # answered with an error (it takes no tools), recorded as such. The
    # 0.171 TUI's helper thread runs read-only and asks for no approval.
    approvals = {e["decision"] or e["failure"]: e for e in events_of(events)
                 if e["event_type"] == "codex_tool_approval"}
    assert set(approvals) == ({"accept", "error"} if tui == ORIGINAL else {"accept"})
    assert approvals["accept"]["request_method"] == "item/commandExecution/requestApproval"


def visible(screen: bytes) -> bytes:
    """What a terminal shows, without escapes and whitespace."""
    return re.sub(rb"\x1b\[[0-9;?<>=]*[a-zA-Z~]|\s", b"", screen)


async def drive_tui(tui: Path, url: str, env: dict[str, str], workspace: Path, events: Path) -> bytes:
    """Start the TUI on a pseudo-terminal against ``url``, type a prompt and
    wait for the turn; what the terminal received."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = await trio.lowlevel.open_process([str(tui), "--remote", url], stdin=slave, stdout=slave,
                                            stderr=slave, env=env, cwd=workspace, start_new_session=True)
    os.close(slave)
    terminal = trio.lowlevel.FdStream(master)
    screen = bytearray()
    try:
        async with trio.open_nursery() as nursery:

            async def read() -> None:
                while data := await terminal.receive_some(65536):
                    screen.extend(data)
                    for query, answer in TERMINAL_ANSWERS.items():
                        if query in data:
                            await terminal.send_all(answer)

            async def wait_for(done: object) -> None:
                with trio.fail_after(TIMEOUT):
                    while not done():  # type: ignore[operator]
                        await trio.sleep(0.05)

            async def type_line(text: str) -> None:
                for key in text:
                    await terminal.send_all(key.encode())
                    await trio.sleep(0.01)
                await trio.sleep(0.3)
                await terminal.send_all(b"\r")

            def shown(text: bytes, since: int = 0) -> bool:
                return text in visible(bytes(screen[since:]))

            nursery.start_soon(read)
            await wait_for(lambda: b"Ask Codex to do anything" in screen)
            await type_line("say hello")
            # The turn as our server saw it (the TUI also runs a helper turn on an ephemeral thread).
            await wait_for(lambda: any(e["status"] == "completed" and e["client_name"] == "codex-tui"
                                       for e in turn_events(events)))
            await wait_for(lambda: shown(b"Workedfor"))
            # A command that asks to leave the sandbox: the TUI asks its user, who accepts.
            mark = len(screen)
            call = {"command": "touch approved.txt", "sandbox_permissions": "require_escalated",
                    "justification": "to test approvals"}
            await type_line(f"[[call=shell_command {json.dumps(call)}]]")
            await wait_for(lambda: shown(b"Yes,proceed(y)", mark))
            await terminal.send_all(b"y")
            await wait_for(lambda: (workspace / "approved.txt").exists() and shown(b"Workedfor", mark))
            # /model: pick the model, then the effort; the TUI saves both (config/batchWrite).
            mark = len(screen)
            await type_line("/model")
            await wait_for(lambda: shown(b"SelectModelandEffort", mark))
            await terminal.send_all(b"\r")
            await wait_for(lambda: shown(b"SelectReasoningLevel", mark))
            await terminal.send_all(b"\r")
            await wait_for(lambda: shown(b"Modelchangedtomock-model", mark))
            nursery.cancel_scope.cancel()
    finally:
        proc.kill()
        with trio.move_on_after(TIMEOUT):
            await proc.wait()
        await terminal.aclose()
    return bytes(screen)
