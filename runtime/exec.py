"""``trio-codex exec``: one turn, no client needed, as the original's
``codex exec`` (the engine of ``@openai/codex-sdk``).

It runs the app server in-process, over the memory transport (the seam an
embedding host uses), and is a JSON-RPC client of it, as the original's
exec is of its in-process app-server: ``initialize``, ``thread/start`` (or
``thread/resume``), ``turn/start`` with approval policy ``never``, then the
turn's notifications go to the JSONL (``exec_events``) or human
(``exec_human``) view until ``turn/completed``. Exit status: 0 when the
turn completed, 1 otherwise (a failed turn, a refused request).

Waits: each request's answer is bounded by :data:`REQUEST_TIMEOUT`; the
turn itself by the server's own bounds (model stream idle timeouts, tool
timeouts) and by Ctrl-C.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import sys
from collections import deque
from functools import partial
from typing import Any, TextIO

import msgspec
import trio

from ..transports.listen import ListenUrl
from ..transports.memory import MemoryFrameStream, memory_frame_pair
from .app import serve
from .config import ConfigError, Settings, load_settings
from .exec_cli import (
    FULL_AUTO_WARNING,
    ExecError,
    ExecOptions,
    check_git_repo,
    load_output_schema,
    parse_exec_args,
    read_stdin,
    resolve_prompt,
)
from .exec_events import JsonlEvents
from .exec_human import VERSION, HumanOutput, isatty, sandbox_summary, supports_color, write_last_message
from .log import setup_logging

#: Bound on the answer to each request exec makes.
REQUEST_TIMEOUT = 60.0
#: How often the progress line of a terminal stderr is redrawn.
PROGRESS_INTERVAL = 0.1
#: The client name exec introduces itself with, as the original's exec.
CLIENT_NAME = "codex_exec"

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def main(top: argparse.Namespace, argv: list[str]) -> int:
    """``trio-codex [TOP FLAGS] exec ARGV``: checks in the original's order
    (prompt, output schema, git repository), then the turn."""
    options = parse_exec_args(argv, top)
    setup_logging()
    try:
        cwd = os.path.abspath(options.cd or os.curdir)
        prompt = resolve_prompt(options, stdin_is_tty=sys.stdin is not None and isatty(sys.stdin),
                                read_stdin=read_stdin, say=_stderr_line)
        schema = load_output_schema(options.output_schema)
        check_git_repo(options, cwd)
        settings = load_settings(overrides=options.config, profile=options.profile)
        return trio.run(run_exec, settings, options, prompt, schema, cwd)
    except RequestFailed as exc:
        _stderr_line(f"Error: {exc}")
    except ConfigError as exc:
        _stderr_line(f"Error loading config.toml: {exc}")
    except ExecError as exc:
        _stderr_line(str(exc))
    except KeyboardInterrupt:
        return 130
    return 1


class RequestFailed(ExecError):
    """The server answered a request with an error (the original's words)."""

    def __init__(self, method: str, error: dict[str, Any]) -> None:
        super().__init__(f"{method}: {method} failed: {error.get('message')} (code {error.get('code')})")


class _Client:
    """Exec's side of the memory connection: requests, and the messages
    that arrive meanwhile, kept in order for :meth:`next_message`."""

    def __init__(self, stream: MemoryFrameStream) -> None:
        self.stream = stream
        self.ids = itertools.count(1)
        self.pending: deque[dict[str, Any]] = deque()

    async def _receive(self) -> dict[str, Any]:
        frame = await self.stream.receive_frame()
        if not isinstance(frame, bytes):
            raise ExecError("the app server closed the connection")
        return msgspec.json.decode(frame)

    async def send(self, msg: dict[str, Any]) -> None:
        await self.stream.send_frames([msgspec.json.encode(msg)])

    async def request(self, method: str, params: dict[str, Any]) -> Any:
        rid = next(self.ids)
        await self.send({"id": rid, "method": method, "params": params})
        with trio.move_on_after(REQUEST_TIMEOUT):
            while True:
                msg = await self._receive()
                if msg.get("id") == rid and "method" not in msg:
                    if "error" in msg:
                        raise RequestFailed(method, msg["error"])
                    return msg["result"]
                self.pending.append(msg)
        raise ExecError(f"the app server did not answer {method} within {REQUEST_TIMEOUT:.0f} s")

    async def next_message(self) -> dict[str, Any]:
        return self.pending.popleft() if self.pending else await self._receive()


async def run_exec(settings: Settings, options: ExecOptions, prompt: str, schema: Any, cwd: str, *,
                   out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Run one turn; returns the exit status."""
    server_end, client_end = memory_frame_pair()
    client = _Client(client_end)
    view = _view(options, out, err)
    failure: ExecError | None = None
    status = 1
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(serve, settings, ListenUrl("stdio"), stream=server_end))
        try:
            status = await _drive(client, nursery, settings, options, view, prompt, schema, cwd, out)
        except ExecError as exc:
            failure = exc  # raised bare below, not in the nursery's exception group
        finally:
            # The server ends with its only connection.
            await client_end.aclose()
    if failure is not None:
        raise failure
    return status


def _view(options: ExecOptions, out: TextIO, err: TextIO) -> JsonlEvents | HumanOutput:
    if options.json:
        return JsonlEvents()
    ansi = options.color == "always" or (options.color == "auto" and supports_color(err))
    return HumanOutput(err, out, ansi=ansi, last_message_file=options.last_message_file)


async def _drive(client: _Client, nursery: trio.Nursery, settings: Settings, options: ExecOptions,
                 view: JsonlEvents | HumanOutput, prompt: str, schema: Any, cwd: str, out: TextIO) -> int:
    def emit(events: list[dict[str, Any]]) -> None:
        for event in events:
            out.write(msgspec.json.encode(event).decode() + "\n")
        out.flush()

    await client.request("initialize", {"clientInfo": {"name": CLIENT_NAME, "version": VERSION}})
    await client.send({"method": "initialized"})
    started = await _open_thread(client, settings, options, cwd)
    thread_id = started["thread"]["id"]
    if isinstance(view, JsonlEvents):
        emit(view.thread_started(thread_id))
        if options.full_auto:
            emit(view.warning(FULL_AUTO_WARNING.removeprefix("warning: ")))
    else:
        if options.full_auto:
            view.warning(FULL_AUTO_WARNING.removeprefix("warning: "))
        view.header(entries=_summary(started, settings, thread_id), prompt=prompt)
    inputs: list[dict[str, Any]] = [{"type": "text", "text": prompt, "text_elements": []}]
    inputs += [{"type": "localImage", "path": os.path.join(cwd, image)} for image in options.images]
    params: dict[str, Any] = {"threadId": thread_id, "input": inputs}
    if schema is not None:
        params["outputSchema"] = schema
    turn_id = (await client.request("turn/start", params))["turn"]["id"]
    progress = trio.CancelScope()
    if isinstance(view, HumanOutput) and isatty(view.err) and os.environ.get("TERM") != "dumb":
        nursery.start_soon(_show_progress, view, progress)
    try:
        while True:
            msg = await client.next_message()
            if "id" in msg and "method" in msg:
                # Exec runs with approval policy never; anything else the
                # server asks has no one to answer it here.
                await client.send({"id": msg["id"], "error": {
                    "code": -32601, "message": f"codex exec cannot answer {msg['method']}"}})
                continue
            method, params = msg.get("method", ""), msg.get("params") or {}
            if isinstance(view, JsonlEvents):
                emit(view.process(method, params))
            else:
                view.process(method, params)
            if method == "turn/completed" and params["turn"]["id"] == turn_id:
                break
    finally:
        progress.cancel()
    if isinstance(view, JsonlEvents):
        if view.completed and options.last_message_file is not None:
            write_last_message(view.final_message, options.last_message_file, _stderr_line)
    else:
        view.finish()
    return 0 if view.completed else 1


def _stderr_line(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def _show_progress(view: HumanOutput, scope: trio.CancelScope) -> None:
    with scope:
        start = trio.current_time()
        while True:
            await trio.sleep(PROGRESS_INTERVAL)
            view.progress(trio.current_time() - start)


async def _open_thread(client: _Client, settings: Settings, options: ExecOptions, cwd: str) -> Any:
    """``thread/resume`` of the session asked for, or ``thread/start``
    (also when ``resume --last`` or a name finds none, as the original)."""
    params: dict[str, Any] = {"cwd": cwd, "approvalPolicy": "never"}
    if options.model:
        params["model"] = options.model
    if options.sandbox_mode():
        params["sandbox"] = options.sandbox_mode()
    if options.add_dirs:
        roots = [*settings.sandbox_workspace_write.writable_roots,
                 *(os.path.join(cwd, d) for d in options.add_dirs)]
        params["config"] = {"sandbox_workspace_write.writable_roots": roots}
    if options.resume:
        thread_id = await _find_session(client, options, cwd)
        if thread_id is not None:
            return await client.request("thread/resume", {"threadId": thread_id, **params})
    if options.thread_source:
        params["threadSource"] = options.thread_source
    return await client.request("thread/start", {**params, "ephemeral": options.ephemeral})


async def _find_session(client: _Client, options: ExecOptions, cwd: str) -> str | None:
    """The thread ``exec resume`` means: an id as given, else the newest
    thread by that name, else (``--last``) the newest one in this directory
    (any with ``--all``)."""
    wanted = options.session_id
    if wanted is not None and _UUID.fullmatch(wanted):
        return wanted
    query: dict[str, Any] = {"limit": 1, "sortKey": "updated_at", "sortDirection": "desc"}
    if wanted is not None:
        query["searchTerm"] = wanted
    elif not options.all:
        query["cwd"] = cwd
    found = (await client.request("thread/list", query))["data"]
    if wanted is not None:
        found = [t for t in found if t.get("name") == wanted]
    return found[0]["id"] if found else None


def _summary(started: dict[str, Any], settings: Settings, thread_id: str) -> list[tuple[str, str]]:
    """The human header's entries, as the original's config summary."""
    policy = started.get("approvalPolicy")
    return [
        ("workdir", started.get("cwd", "")),
        ("model", started.get("model", "")),
        ("provider", started.get("modelProvider", "")),
        ("approval", policy if isinstance(policy, str) else "granular"),
        ("sandbox", sandbox_summary(started.get("sandbox") or {})),
        ("reasoning effort", started.get("reasoningEffort") or "none"),
        ("reasoning summaries", settings.model_reasoning_summary or "none"),
        ("session id", thread_id),
    ]
