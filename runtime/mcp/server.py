"""``trio-codex mcp-server``: Codex as a stdio MCP server, for agents that
call Codex as a tool, as the original's ``codex mcp-server`` up to 0.153.4.

Built on the official ``mcp`` package (imported here only, so no other
command pays for it). Like ``exec`` (runtime/exec/run.py) it runs the app
server in-process over the memory transport and is a JSON-RPC client of
it: a ``codex`` call is ``thread/start`` then ``turn/start``; a
``codex-reply`` is another ``turn/start`` on the thread that call started.
While a turn runs, each v2 notification goes to the MCP client as the
``codex/event`` notification(s) the original sent (runtime/mcp/server_tools.py),
and each approval request becomes an ``elicitation/create`` request whose
answer goes back to the app server. One :class:`AppClient` multiplexes all
calls: responses by request id, a thread's messages to the call running on
it.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import msgspec
import trio

from ..config import Settings
from ..exec.human import VERSION
from .server_tools import (
    TOOLS,
    ToolArgError,
    approval_decision,
    codex_events,
    error_result,
    exec_elicitation,
    patch_elicitation,
    reply_params,
    session_configured,
    thread_start_params,
    tool_result,
)
from ..kernel.stream import FrameStream

log = logging.getLogger("trio_codex.mcp_server")

#: Bound on the app server's answer to each request.
REQUEST_TIMEOUT = 60.0
#: Messages of one thread waiting for its call to read them.
THREAD_BUFFER = 256
#: How long the in-process app server gets to finish (rollouts) at exit.
SHUTDOWN_GRACE = 10.0
CLIENT_NAME = "codex-mcp-server"

_APPROVALS = {"item/commandExecution/requestApproval": exec_elicitation,
              "item/fileChange/requestApproval": patch_elicitation}


class AppError(Exception):
    """The app server refused a request, or went away."""


class AppClient:
    """One connection to the in-process app server, shared by every tool
    call: :meth:`run` routes each incoming message to the request that
    waits for it or to the call subscribed to its thread."""

    def __init__(self, stream: FrameStream) -> None:
        self.stream = stream
        self._ids = itertools.count(1)
        self._waiting: dict[int, trio.MemorySendChannel[dict[str, Any]]] = {}
        self._threads: dict[str, trio.MemorySendChannel[dict[str, Any]]] = {}

    async def run(self) -> None:
        try:
            while isinstance(frame := await self.stream.receive_frame(), bytes):
                await self._route(msgspec.json.decode(frame))
        finally:
            for chan in [*self._waiting.values(), *self._threads.values()]:
                chan.close()

    async def _route(self, msg: dict[str, Any]) -> None:
        if "method" not in msg:
            rid = msg.get("id")
            chan = self._waiting.pop(rid, None) if isinstance(rid, int) else None
            if chan is not None:
                chan.send_nowait(msg)
            return
        thread_id = (msg.get("params") or {}).get("threadId")
        subscriber = self._threads.get(thread_id) if isinstance(thread_id, str) else None
        if subscriber is not None:
            try:
                await subscriber.send(msg)
            except trio.BrokenResourceError:
                pass  # the call stopped reading (cancelled): the message is for no one
        elif "id" in msg:
            await self.send({"id": msg["id"], "error": {"code": -32601,
                                                         "message": f"no tool call is waiting on {msg['method']}"}})

    async def send(self, msg: dict[str, Any]) -> None:
        await self.stream.send_frames([msgspec.json.encode(msg)])

    async def request(self, method: str, params: dict[str, Any]) -> Any:
        rid = next(self._ids)
        send, receive = trio.open_memory_channel[dict[str, Any]](1)
        self._waiting[rid] = send
        try:
            await self.send({"id": rid, "method": method, "params": params})
            with trio.move_on_after(REQUEST_TIMEOUT):
                try:
                    msg = await receive.receive()
                except trio.EndOfChannel:
                    raise AppError("the app server closed the connection") from None
                if "error" in msg:
                    raise AppError(msg["error"].get("message", "request failed"))
                return msg["result"]
            raise AppError(f"the app server did not answer {method} within {REQUEST_TIMEOUT:.0f} s")
        finally:
            self._waiting.pop(rid, None)

    @asynccontextmanager
    async def subscribe(self, thread_id: str) -> AsyncIterator[trio.MemoryReceiveChannel[dict[str, Any]]]:
        """The thread's messages while the context is open."""
        send, receive = trio.open_memory_channel[dict[str, Any]](THREAD_BUFFER)
        self._threads[thread_id] = send
        try:
            yield receive
        finally:
            if self._threads.get(thread_id) is send:
                del self._threads[thread_id]


class CodexTools:
    """The two tools over one :class:`AppClient`. Threads this server
    started are the only ones ``codex-reply`` knows, as the original's
    in-memory sessions; calls on one thread take turns (a lock each)."""

    def __init__(self, app: AppClient) -> None:
        self.app = app
        self.threads: dict[str, trio.Lock] = {}

    async def call(self, ctx: Any, name: str, args: dict[str, Any] | None) -> dict[str, Any]:
        if name == "codex":
            return await self._codex(ctx, args)
        if name == "codex-reply":
            return await self._reply(ctx, args)
        return error_result(f"Unknown tool '{name}'")

    async def _codex(self, ctx: Any, args: dict[str, Any] | None) -> dict[str, Any]:
        try:
            prompt, params = thread_start_params(args, os.getcwd())
        except ToolArgError as exc:
            return error_result(str(exc))
        try:
            started = await self.app.request("thread/start", params)
        except AppError as exc:
            return error_result(f"Failed to start Codex session: {exc}")
        thread_id = started["thread"]["id"]
        self.threads[thread_id] = trio.Lock()
        await _notify(ctx, thread_id, "", session_configured(started))
        return await self._turn(ctx, thread_id, prompt)

    async def _reply(self, ctx: Any, args: dict[str, Any] | None) -> dict[str, Any]:
        try:
            thread_id, prompt = reply_params(args)
        except ToolArgError as exc:
            return error_result(str(exc))
        if thread_id not in self.threads:
            return tool_result(thread_id, f"Session not found for thread_id: {thread_id}", error=True)
        return await self._turn(ctx, thread_id, prompt)

    async def _turn(self, ctx: Any, thread_id: str, prompt: str) -> dict[str, Any]:
        async with self.threads[thread_id], self.app.subscribe(thread_id) as messages:
            try:
                turn = await self.app.request("turn/start", {
                    "threadId": thread_id, "input": [{"type": "text", "text": prompt, "text_elements": []}]})
            except AppError as exc:
                return tool_result(thread_id, str(exc), error=True)
            turn_id = turn["turn"]["id"]
            finished = False
            try:
                result = await self._follow(ctx, thread_id, turn_id, messages)
                finished = True
                return result
            finally:
                if not finished:
                    # A cancelled tools/call (or a lost client) interrupts its
                    # turn; what the thread says meanwhile is for no one, and
                    # must not hold up the router that brings the answer.
                    messages.close()
                    with trio.move_on_after(REQUEST_TIMEOUT, shield=True):
                        try:
                            await self.app.request("turn/interrupt", {"threadId": thread_id, "turnId": turn_id})
                        except (AppError, trio.ClosedResourceError, trio.BrokenResourceError):
                            pass

    async def _follow(self, ctx: Any, thread_id: str, turn_id: str,
                      messages: trio.MemoryReceiveChannel[dict[str, Any]]) -> dict[str, Any]:
        last_message = ""
        error = ""
        async for msg in messages:
            method, params = msg.get("method", ""), msg.get("params") or {}
            for event in codex_events(method, params):
                if event["type"] == "task_complete":
                    event["last_agent_message"] = last_message or None
                await _notify(ctx, thread_id, turn_id, event)
            if "id" in msg and method in _APPROVALS:
                await self._relay_approval(ctx, msg, turn_id)
            elif "id" in msg:
                await self.app.send({"id": msg["id"], "error": {
                    "code": -32601, "message": f"codex mcp-server cannot answer {method}"}})
            elif method == "item/completed" and params["item"].get("type") == "agentMessage":
                last_message = params["item"].get("text", "")
            elif method == "error" and not params.get("willRetry"):
                error = (params.get("error") or {}).get("message", "")
            elif method == "turn/completed" and params["turn"]["id"] == turn_id:
                status = params["turn"]["status"]
                if status == "completed":
                    return tool_result(thread_id, last_message)
                failure = (params["turn"].get("error") or {}).get("message") or error or f"turn {status}"
                return tool_result(thread_id, failure, error=True)
        return tool_result(thread_id, "Codex runtime error: the app server closed the connection", error=True)

    async def _relay_approval(self, ctx: Any, msg: dict[str, Any], turn_id: str) -> None:
        """Ask the MCP client (``elicitation/create``) and answer the app
        server with its decision; no answer, or one we cannot read,
        declines."""
        from mcp.shared.exceptions import MCPError
        from mcp_types import Request
        from pydantic import BaseModel, ConfigDict, ValidationError

        class Answer(BaseModel):
            model_config = ConfigDict(extra="allow")

        params = _APPROVALS[msg["method"]](msg["params"], str(ctx.request_id), turn_id)
        try:
            answer = await ctx.session.send_request(Request[dict[str, Any], str](method="elicitation/create",
                                                                                 params=params),
                                                    result_type=Answer)
            decision = approval_decision(answer.model_dump())
        except ValidationError as exc:
            # The SDK checks the answer against MCP's ElicitResult ({action}),
            # but the original's clients answer {decision}: the answer it
            # refused is still in the error.
            raw: dict[str, Any] = next((e["input"] for e in exc.errors() if isinstance(e.get("input"), dict)), {})
            decision = approval_decision(raw)
        except MCPError as exc:
            log.warning("elicitation/create failed, declining: %s", exc)
            decision = "decline"
        await self.app.send({"id": msg["id"], "result": {"decision": decision}})


async def _notify(ctx: Any, thread_id: str, turn_id: str, event: dict[str, Any]) -> None:
    """One ``codex/event`` notification, tied to the ``tools/call``."""
    from mcp_types import Notification

    params = {"_meta": {"requestId": ctx.request_id, "threadId": thread_id}, "id": turn_id, "msg": event}
    # Parametrized with a plain dict: the bare generic would coerce the params
    # to NotificationParams and drop every key but _meta.
    await ctx.session.send_notification(Notification[dict[str, Any], str](method="codex/event", params=params),
                                        related_request_id=ctx.request_id)


async def serve_mcp(settings: Settings) -> None:
    """Serve MCP on stdin/stdout until stdin closes."""
    import mcp_types as types
    from mcp.server.lowlevel import NotificationOptions, Server
    from mcp.server.stdio import stdio_server

    from ...transports.listen import ListenUrl
    from ...transports.memory import memory_frame_pair
    from ..app import serve

    server_end, stream = memory_frame_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(serve, settings, ListenUrl("stdio"), stream=server_end))
        app = AppClient(stream)
        nursery.start_soon(app.run)
        await app.request("initialize", {"clientInfo": {"name": CLIENT_NAME, "version": VERSION}})
        await app.send({"method": "initialized"})
        tools = CodexTools(app)

        # Results go out as plain dicts, as the SDK allows: a CallToolResult
        # model would add `isError: false`, which the original never sent.
        async def list_tools(ctx: Any, params: Any) -> Any:
            return {"tools": list(TOOLS)}

        async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> Any:
            return await tools.call(ctx, params.name, params.arguments)

        server: Server[Any] = Server(CLIENT_NAME, version=VERSION, title="Codex",
                                     on_list_tools=list_tools, on_call_tool=call_tool)
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options(
                NotificationOptions(tools_changed=True)))
        # The in-process server ends with its only connection.
        await stream.aclose()
        nursery.cancel_scope.deadline = trio.current_time() + SHUTDOWN_GRACE
