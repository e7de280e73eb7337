"""One MCP connection actor per configured server: the client session with
one MCP server, and (stdio) the server's process.

The process is a child of this actor's nursery (the ``mcp`` package's
``stdio_client`` opens it in the task that enters it). Leaving the actor, for
whatever reason (its last thread unloaded, a reload removed the server, the
host shuts down), closes the session: stdin is closed, then the process tree
gets SIGTERM and then SIGKILL, each wait bounded, and the process is reaped.

It starts at once (its mailbox serves requests from the start) and connects
in the background: requests that need the session wait until startup settles
(``ready`` or ``failed``), bounded by ``startup_timeout_sec``. A server that
fails to start is not retried: it answers every request with its failure, as
the original's failed client does. A server that dies after startup (a call
finds the connection closed) makes this actor raise, and its supervisor (the
MCP pool's) restarts it on the same mailbox within a restart budget.

The ``mcp`` package (pydantic, httpx, …) is imported here only, when the
first server starts: a host without MCP servers never loads it.
"""

from __future__ import annotations

import logging
import os
import sys
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from ...runtime.kernel.ask import ReplySlot
from ...runtime.kernel.errors import McpCallFailed
from ...runtime.kernel.mailbox import Inbox, Mailbox
from ...runtime.config.mcp import McpServerConfig
from ..messages.barrier import contained
from ..messages import (
    McpCallTool,
    McpCancel,
    McpInventory,
    McpInventoryResult,
    McpJson,
    McpListResources,
    McpReadResource,
    McpConnectionInbox,
)

log = logging.getLogger("trio_codex.mcp")

#: Requests waiting for one MCP connection (calls from every thread that shares it).
CONNECTION_CAPACITY = 256
#: Progress messages of one call waiting for its client; more are dropped.
PROGRESS_BACKLOG = 64


class ConnectionLost(Exception):
    """The server's connection closed after startup: the supervisor restarts it."""


def startup_error(name: str, cause: str) -> str:
    """The ``failed`` status text, as the original words it."""
    return f"MCP client for `{name}` failed to start: {cause}"


def timeout_error(name: str, seconds: float) -> str:
    return (f"MCP client for `{name}` timed out after {seconds:g} seconds. Add or adjust `startup_timeout_sec` "
            f"in your config.toml:\n[mcp_servers.{name}]\nstartup_timeout_sec = XX")


def _leaf(exc: BaseException) -> BaseException:
    """The first exception of a (nested) group, or ``exc``."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _cause(exc: BaseException) -> str:
    """The startup failure as the original reports it."""
    exc = _leaf(exc)
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"MCP startup failed: {os.strerror(exc.errno)} (os error {exc.errno})"
    return f"handshaking with MCP server failed: {exc}"


def _dump(model: Any) -> Any:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


class _State:
    """What the connection knows; only this actor's tasks touch it."""

    def __init__(self) -> None:
        self.settled = trio.Event()
        self.session: Any = None
        self.inventory = McpInventoryResult("starting", None)
        self.calls: dict[str, trio.CancelScope] = {}
        #: Per call in flight that may be asked: how to ask its clients.
        self.elicitors: dict[str, Callable[[McpJson], Awaitable[McpJson]]] = {}
        self.lost = trio.Event()


async def run_connection(config: McpServerConfig, box: tuple[Mailbox, Inbox], failure: str | None = None, *,
                         task_status: trio.TaskStatus[Mailbox[McpConnectionInbox]] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``box`` for ``config``'s server. ``failure`` starts it failed
    (its supervisor gave up restarting it): it only answers with that."""
    mailbox, inbox = box
    state = _State()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_serve, config, inbox, state, nursery)
        task_status.started(mailbox)
        if failure is not None:
            _fail(state, failure)
            await trio.sleep_forever()
        try:
            with trio.CancelScope(deadline=trio.current_time() + config.startup_timeout_sec) as startup:
                async with _transport(config) as (read, write), _session(read, write, state) as session:
                    await _start(config, session, state)
                    startup.deadline = math.inf
                    await state.lost.wait()
                    raise ConnectionLost(f"the connection to MCP server `{config.name}` closed")
            _fail(state, timeout_error(config.name, config.startup_timeout_sec))
        except Exception as exc:
            if state.session is not None:
                raise  # after startup: the supervisor restarts it
            # Any failure to start is this server's status, never a crash.
            _fail(state, startup_error(config.name, _cause(exc)))
        await trio.sleep_forever()


def _fail(state: _State, error: str) -> None:
    log.warning("%s", error)
    state.inventory = McpInventoryResult("failed", error)
    state.settled.set()


@asynccontextmanager
async def _transport(config: McpServerConfig) -> AsyncIterator[tuple[Any, Any]]:
    """The server's streams: a child process over stdio, or streamable HTTP."""
    if config.command is not None:
        from mcp.client.stdio import StdioServerParameters, stdio_client

        params = StdioServerParameters(command=config.command, args=list(config.args), env=config.child_env(),
                                       cwd=config.cwd)
        async with stdio_client(params, errlog=sys.stderr) as (read, write):
            yield read, write
        return
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    assert config.url is not None
    async with create_mcp_http_client(headers=config.headers()) as http, \
            streamable_http_client(config.url, http_client=http) as streams:
        yield streams[0], streams[1]


def _session(read: Any, write: Any, state: _State) -> Any:
    from mcp import ClientSession
    from mcp_types import ElicitResult

    async def on_elicit(context: Any, params: Any) -> Any:
        """A server's elicitation goes to the clients of the call that
        caused it. The connection is shared and MCP over stdio does not say
        which request an elicitation belongs to: with exactly one call in
        flight it is that call's; otherwise it is declined."""
        askers = list(state.elicitors.values())
        if len(askers) != 1:
            log.info("MCP elicitation declined: %d calls in flight, cannot tell whose it is", len(askers))
            return ElicitResult(action="decline")
        answer = await askers[0](_dump(params))
        return ElicitResult(action=answer["action"], content=answer.get("content"))

    return ClientSession(read, write, elicitation_callback=on_elicit)


async def _start(config: McpServerConfig, session: Any, state: _State) -> None:
    """The handshake and the inventory; then the connection is ready."""
    init = await session.initialize()
    tools = (await session.list_tools()).tools
    resources: list[Any] = []
    templates: list[Any] = []
    if init.capabilities.resources is not None:
        resources = [_dump(r) for r in (await session.list_resources()).resources]
        templates = [_dump(t) for t in (await session.list_resource_templates()).resource_templates]
    state.session = session
    state.inventory = McpInventoryResult(
        "ready", None, tools=tuple(_dump(t) for t in tools), resources=tuple(resources),
        templates=tuple(templates), server_info=_dump(init.server_info),
        capabilities=_dump(init.capabilities))
    state.settled.set()
    log.info("MCP server `%s` ready (%d tools)", config.name, len(tools))


async def _serve(config: McpServerConfig, inbox: Inbox[McpConnectionInbox], state: _State,
                 nursery: trio.Nursery) -> None:
    async for msg in inbox:
        async with contained(msg, log, f"the MCP connection `{config.name}`"):
            match msg:
                case McpCancel(call_id=call_id):
                    if (scope := state.calls.get(call_id)) is not None:
                        scope.cancel(reason="its turn was interrupted")
                case McpInventory(reply=reply):
                    nursery.start_soon(_inventory, state, reply)
                case McpCallTool() | McpReadResource() | McpListResources():
                    nursery.start_soon(_request, config, state, msg)


async def _inventory(state: _State, reply: ReplySlot[McpInventoryResult]) -> None:
    try:
        await state.settled.wait()
        reply.set(state.inventory)
    finally:  # cancelled with the actor: the asker is told now
        reply.fail(McpCallFailed("the connection to the MCP server closed"))


async def _request(config: McpServerConfig, state: _State,
                   msg: McpCallTool | McpReadResource | McpListResources) -> None:
    """One request on the session, once startup settled; its answer or
    failure goes to ``msg.reply``."""
    from mcp.shared.exceptions import MCPError

    try:
        await state.settled.wait()
        if state.session is None:
            msg.reply.fail(McpCallFailed(f"failed to get client: {_strip(config.name, state.inventory.error)}"))
            return
        match msg:
            case McpCallTool(call_id=call_id, tool=tool, arguments=arguments, timeout=timeout, progress=progress):
                await _call(state, msg, call_id, tool, arguments, timeout, progress)
            case McpReadResource(uri=uri):
                msg.reply.set(_dump(await state.session.read_resource(uri)))
            case McpListResources(templates=True, cursor=cursor):
                msg.reply.set(_dump(await state.session.list_resource_templates(params=_page(cursor))))
            case McpListResources(cursor=cursor):
                msg.reply.set(_dump(await state.session.list_resources(params=_page(cursor))))
    except Exception as group:
        exc = _leaf(group)
        if isinstance(exc, MCPError):
            err = exc.error
            if err.code == -32000 and "closed" in err.message.lower():
                state.lost.set()
            msg.reply.fail(McpCallFailed(err.message, code=err.code, data=err.data))
        elif isinstance(exc, (trio.ClosedResourceError, trio.BrokenResourceError, OSError)):
            state.lost.set()
            msg.reply.fail(McpCallFailed(f"Connection closed: {exc}"))
        else:  # what the SDK refused (bad arguments, a malformed answer): this request's only
            msg.reply.fail(McpCallFailed(str(exc)))
    finally:
        # Cancelled with the actor (a restart, a stop): the caller is told now,
        # not when its own deadline runs out.
        msg.reply.fail(McpCallFailed(f"the connection to MCP server `{config.name}` closed"))


def _page(cursor: str | None) -> Any:
    if cursor is None:
        return None
    from mcp_types import PaginatedRequestParams

    return PaginatedRequestParams(cursor=cursor)


async def _call(state: _State, msg: McpCallTool, call_id: str, tool: str, arguments: McpJson | None,
                timeout: float, progress: Callable[[str], Awaitable[None]] | None) -> None:
    """A ``tools/call`` under the tool timeout and the caller's cancel. The
    server's progress messages reach ``progress`` in order, from a task of
    the call's own: a slow client never holds up the shared session."""
    messages, pending = trio.open_memory_channel[str](PROGRESS_BACKLOG)

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        if message:
            try:
                messages.send_nowait(message)
            except trio.WouldBlock:
                log.info("MCP call %s: progress dropped, its client is behind", call_id)

    async def forward(report: Callable[[str], Awaitable[None]]) -> None:
        async for message in pending:
            await report(message)

    result: Any = None
    with trio.CancelScope() as scope:
        state.calls[call_id] = scope
        if msg.elicit is not None:
            state.elicitors[call_id] = msg.elicit
        try:
            async with trio.open_nursery() as nursery:
                if progress is not None:
                    nursery.start_soon(forward, progress)
                with messages, trio.move_on_after(timeout) as deadline:
                    result = await state.session.call_tool(
                        tool, arguments, progress_callback=on_progress if progress is not None else None)
        finally:
            state.calls.pop(call_id, None)
            state.elicitors.pop(call_id, None)
    if scope.cancelled_caught:
        msg.reply.fail(McpCallFailed("the call was cancelled: its turn was interrupted"))
    elif deadline.cancelled_caught:
        msg.reply.fail(McpCallFailed(f"request timed out after {timeout:g}s"))
    else:
        msg.reply.set(_dump(result))


def _strip(name: str, error: str | None) -> str:
    """The cause of a startup failure, without the "MCP client for" lead."""
    prefix = startup_error(name, "")
    return (error or "").removeprefix(prefix)
