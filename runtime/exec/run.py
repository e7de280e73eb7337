"""``trio-codex exec``: one turn, no client needed, as the original's
``codex exec`` (the engine of ``@openai/codex-sdk``).

It runs the app server in-process and is a client of it through the
embedding API (:mod:`..embed`: ``Server`` and ``Client.in_process``), as the
original's exec is of its in-process app-server: ``initialize``,
``thread/start`` (or ``thread/resume``), ``turn/start`` with approval policy
``never``, then the turn's notifications (as JSON: ``typed=False``) go to the
JSONL (:mod:`.events`) or human (:mod:`.human`) view until
``turn/completed``. Exit status: 0 when the
turn completed, 1 otherwise (a failed turn, a refused request).

A caller that starts exec once per turn (``@openai/codex-sdk``) pays the
server's start each time, most of it importing the openai SDK. When an
app-server daemon of the same CODEX_HOME listens on the control socket
(``trio-codex app-server --listen unix://``), exec is its client instead,
over that socket, and imports none of the server (``--no-daemon``: always
in-process). See README, "exec".

Waits: each request's answer is bounded by the client's request timeout
(:data:`REQUEST_TIMEOUT`); the turn itself by the server's own bounds (model stream idle timeouts, tool
timeouts) and by Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, NoReturn, TextIO

import msgspec
import trio

from ..client import Client, ClientClosed, CodexError, Notification, RequestTimeout, ServerRequest
from ..config import ConfigError, Settings, load_settings, parse_override
from .cli import (
    FULL_AUTO_WARNING,
    ExecError,
    ExecOptions,
    check_git_repo,
    load_output_schema,
    parse_exec_args,
    read_stdin,
    resolve_prompt,
)
from .events import JsonlEvents
from .human import VERSION, HumanOutput, isatty, sandbox_summary, supports_color, write_last_message
from ..kernel.log import setup_logging
from ..kernel.stream import FrameStream

#: Bound on the answer to each request exec makes.
REQUEST_TIMEOUT = 60.0
#: Bound on the wait for the turn's next event: the turn itself is bounded
#: by the server's own timeouts, and Ctrl-C.
EVENT_TIMEOUT = float("inf")
#: How often the progress line of a terminal stderr is redrawn.
PROGRESS_INTERVAL = 0.1
#: How many threads whose name contains SESSION_ID ``exec resume`` looks through.
NAME_MATCHES = 50
#: The client name exec introduces itself with, as the original's exec.
CLIENT_NAME = "codex_exec"

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def main(top: argparse.Namespace, argv: list[str]) -> NoReturn:
    """``trio-codex [TOP FLAGS] exec ARGV``: checks in the original's order
    (prompt, output schema, git repository), then the turn; exits."""
    options = parse_exec_args(argv, top)
    setup_logging()
    if options.full_auto:
        _stderr_line(FULL_AUTO_WARNING)
    try:
        cwd = os.path.abspath(options.cd or os.curdir)
        prompt = resolve_prompt(options, stdin_is_tty=sys.stdin is not None and isatty(sys.stdin),
                                read_stdin=read_stdin, say=_stderr_line)
        schema = load_output_schema(options.output_schema)
        check_git_repo(options, cwd)
        settings = load_settings(overrides=options.config, profile=options.profile)
        status = trio.run(run_exec, settings, options, prompt, schema, cwd)
    except RequestFailed as exc:
        _stderr_line(f"Error: {exc}")
        status = 1
    except ConfigError as exc:
        _stderr_line(f"Error loading config.toml: {exc}")
        status = 1
    except ExecError as exc:
        _stderr_line(str(exc))
        status = 1
    except KeyboardInterrupt:
        status = 130
    # Nothing is left to do: the server has shut down (rollouts written, a
    # notifier detached). Skip the interpreter's teardown of the module
    # graph (the openai SDK's pydantic models), a tenth of a second or more.
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(status)


class RequestFailed(ExecError):
    """The server answered a request with an error (the original's words)."""

    def __init__(self, method: str, error: dict[str, Any]) -> None:
        super().__init__(f"{method}: {method} failed: {error.get('message')} (code {error.get('code')})")


async def run_exec(settings: Settings, options: ExecOptions, prompt: str, schema: Any, cwd: str, *,
                   out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Run one turn, through a daemon on the control socket when one
    listens there (see :func:`_daemon`), else in-process; returns the exit
    status."""
    view = _view(options, out, err)
    failure: ExecError | None = None
    status = 1
    daemon = await _daemon(settings, options)
    flags = _session_flags(options.config) if daemon is not None else {}
    async with trio.open_nursery() as nursery:
        try:
            async with _connect(settings, daemon) as client:
                status = await _drive(client, nursery, settings, options, view, prompt, schema, cwd, out, flags)
        except ExecError as exc:
            failure = exc  # raised bare below, not in the nursery's exception group
        except BrokenPipeError:
            # Whoever read our output stopped reading (`| head`): stop too.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if failure is not None:
        raise failure
    return status


@asynccontextmanager
async def _connect(settings: Settings, daemon: FrameStream | None) -> AsyncIterator[Client]:
    """A client of the daemon, else of a server run here, in-process (it
    stops when the client is done)."""
    options: dict[str, Any] = dict(name=CLIENT_NAME, version=VERSION, on_request=_refuse, typed=False,
                                   request_timeout=REQUEST_TIMEOUT, event_timeout=EVENT_TIMEOUT)
    try:
        if daemon is not None:
            async with Client.over(daemon, **options) as client:
                yield client
        else:
            # Imported here: a run through the daemon needs none of it.
            from ..embed import Server

            async with Server(settings) as server, Client.in_process(server, **options) as client:
                yield client
    except RequestTimeout as exc:
        raise ExecError(f"the app server did not answer {exc.method} within {REQUEST_TIMEOUT:.0f} s") from None
    except ClientClosed:
        raise ExecError("the app server closed the connection") from None
    except CodexError as exc:
        raise RequestFailed(exc.method, {"message": exc.message, "code": exc.code}) from None


async def _refuse(request: ServerRequest) -> None:
    """Exec runs with approval policy never; anything else the server asks
    has no one to answer it here."""
    await request.reject(f"codex exec cannot answer {request.method}")


async def _daemon(settings: Settings, options: ExecOptions) -> FrameStream | None:
    """A connection to the app-server daemon of this CODEX_HOME, if one is
    listening on the control socket (``app-server --listen unix://``), as
    the original's clients use its daemon; None without one, with
    ``--no-daemon`` or ``--profile`` (a profile cannot be passed to it)."""
    if options.no_daemon or options.profile:
        return None
    path = settings.codex_home / "app-server-control" / "app-server-control.sock"
    if not path.exists():
        return None
    from ...transports.ws_client import connect_unix

    try:
        return await connect_unix(path)
    except OSError:
        return None


def _session_flags(overrides: tuple[str, ...]) -> dict[str, Any]:
    """``-c`` overrides as ``thread/start.config`` flags, for a daemon that
    read its config files without them."""
    flags = {}
    for text in overrides:
        path, value = parse_override(text)
        flags[".".join(path)] = value
    return flags


def _view(options: ExecOptions, out: TextIO, err: TextIO) -> JsonlEvents | HumanOutput:
    if options.json:
        return JsonlEvents()
    ansi = options.color == "always" or (options.color == "auto" and supports_color(err))
    return HumanOutput(err, out, ansi=ansi, last_message_file=options.last_message_file)


async def _drive(client: Client, nursery: trio.Nursery, settings: Settings, options: ExecOptions,
                 view: JsonlEvents | HumanOutput, prompt: str, schema: Any, cwd: str, out: TextIO,
                 flags: dict[str, Any]) -> int:
    def emit(events: list[dict[str, Any]]) -> None:
        for event in events:
            out.write(msgspec.json.encode(event).decode() + "\n")
        out.flush()

    async with client.events() as events:
        started = await _open_thread(client, settings, options, cwd, flags)
        thread_id = started["thread"]["id"]
        if isinstance(view, JsonlEvents):
            emit(view.thread_started(thread_id))
        else:
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
            async for event in events:
                assert isinstance(event, Notification)  # typed=False
                method, params = event.method, event.params or {}
                if isinstance(view, JsonlEvents):
                    emit(view.process(method, params))
                else:
                    view.process(method, params)
                if method == "turn/completed" and params["turn"]["id"] == turn_id:
                    break
            else:
                raise ClientClosed("turn")
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


async def _open_thread(client: Client, settings: Settings, options: ExecOptions, cwd: str,
                       flags: dict[str, Any]) -> Any:
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
        flags = {**flags, "sandbox_workspace_write.writable_roots": roots}
    if flags:
        params["config"] = flags
    if options.resume:
        thread_id = await _find_session(client, options, cwd)
        if thread_id is not None:
            return await client.request("thread/resume", {"threadId": thread_id, **params})
    if options.thread_source:
        params["threadSource"] = options.thread_source
    return await client.request("thread/start", {**params, "ephemeral": options.ephemeral})


async def _find_session(client: Client, options: ExecOptions, cwd: str) -> str | None:
    """The thread ``exec resume`` means: an id as given, else the newest
    thread by that name, else (``--last``) the newest one in this directory
    (any with ``--all``)."""
    wanted = options.session_id
    if wanted is not None and _UUID.fullmatch(wanted):
        return wanted
    query: dict[str, Any] = {"limit": 1, "sortKey": "updated_at", "sortDirection": "desc"}
    if wanted is not None:
        # searchTerm matches parts of names too: take a page, keep exact ones.
        query.update(searchTerm=wanted, limit=NAME_MATCHES)
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
