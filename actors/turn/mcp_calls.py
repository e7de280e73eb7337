"""The model's MCP calls, as a turn's tool calls run them (a helper of
``actors/turn/tools.py``, not an actor): a namespaced ``function_call`` to a
server's tool, and the three resource functions.

A tool call is an ``mcpToolCall`` item: ``item/started``, approval when the
tool's annotations say it may change things (``mcpServer/elicitation/request``
with ``_meta.codex_approval_kind = "mcp_tool_call"``; under ``never`` it
fails at once, as the original), ``item/mcpToolCall/progress`` for each
progress message, then ``item/completed``. The call itself is a message to the
server's connection actor; an interrupt cancels it there
(:class:`~.messages.McpCancel`), and the tool timeout bounds it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import trio

from ...runtime.mcp import tools as mcp_tools
from ...runtime.kernel.ask import ReplySlot, ask
from ...runtime.kernel.clock import now_ms
from ...runtime.kernel.errors import ActorGone, AskTimeout, McpCallFailed, MailboxClosed
from ...runtime.protocol import responses as rs
from ...runtime.protocol.v2.approval import GranularAskForApproval, McpElicitationParams
from ...runtime.protocol.v2.item import ItemCompleted, ItemStarted, McpToolCallItem, McpToolCallProgress
from ..messages import McpCallTool, McpCancel, McpListResources, McpReadResource, RequestApproval

#: Beyond a server's own bounds (startup, tool timeout): how long to wait for
#: its connection actor's answer.
_MARGIN = 5.0

_METHOD = "mcpServer/elicitation/request"


def _output(call: rs.FunctionCallItem, output: Any) -> msgspec.Raw:
    return msgspec.Raw(msgspec.json.encode({"type": "function_call_output", "call_id": call.call_id,
                                            "output": output}))


async def call_tool(ctx: Any, call: rs.FunctionCallItem, approve: Callable[..., Awaitable[Any]],
                    verdict: Callable[[Any], str]) -> tuple[msgspec.Raw, bool]:
    """Run one MCP tool call; the output for the model and whether the
    client cancelled the turn in its approval."""
    assert call.namespace is not None
    server = call.namespace.removeprefix(mcp_tools.NAMESPACE_PREFIX)
    ref, inventory = ctx.mcp[server]
    tool = next((t for t in (inventory.tools if inventory else ()) if t["name"] == call.name), None)
    started = time.monotonic()
    try:
        arguments = json.loads(call.arguments) if call.arguments.strip() else None
        if arguments is not None and not isinstance(arguments, dict):
            raise ValueError("arguments must be a JSON object")
    except ValueError as exc:
        return _output(call, f"failed to parse function arguments: {exc}"), False
    annotations = (tool or {}).get("annotations") or {}
    read_only = True if annotations.get("readOnlyHint") is True else None
    item = McpToolCallItem(id=call.call_id, server=server, tool=call.name, status="inProgress",
                           arguments=arguments, started_at_ms=now_ms(), read_only_hint=read_only)
    await ctx.notify("item/started", ItemStarted(item, ctx.thread_id, ctx.turn_id, item.started_at_ms))

    async def finish(result: Any, error: str | None) -> msgspec.Raw:
        done = now_ms()
        await ctx.notify("item/completed", ItemCompleted(msgspec.structs.replace(
            item, status="failed" if error is not None else "completed", result=result,
            error=None if error is None else {"message": error}, duration_ms=done - item.started_at_ms,
            completed_at_ms=done), ctx.thread_id, ctx.turn_id, done))
        seconds = time.monotonic() - started
        if error is not None:
            return _output(call, mcp_tools.failure_output(error, seconds))
        return _output(call, mcp_tools.result_output(result, seconds))

    if mcp_tools.needs_approval(annotations):
        policy = ctx.approval_policy
        asks = policy != "never" and not (isinstance(policy, GranularAskForApproval)
                                          and not policy.granular.mcp_elicitations)
        if not asks:
            return await finish(None, "MCP tool call requires approval, but approval policy is never"), False
        params = McpElicitationParams(
            thread_id=ctx.thread_id, turn_id=ctx.turn_id, server_name=server,
            message=f'Allow the {server} MCP server to run tool "{call.name}"?',
            requested_schema={"type": "object", "properties": {}},
            meta={"codex_approval_kind": "mcp_tool_call", "persist": ["session", "always"],
                  "tool_name": call.name, "tool_description": (tool or {}).get("description"),
                  "tool_params": arguments,
                  "tool_params_display": [{"name": k, "value": v, "display_name": k}
                                          for k, v in (arguments or {}).items()]})
        decision = verdict(await approve(ctx, _METHOD, params, (f"mcp:{server}:{call.name}",), call.call_id))
        if decision == "cancel":
            return await finish(None, "user cancelled MCP tool call"), True
        if decision != "accept":
            return await finish(None, "user rejected MCP tool call"), False

    async def progress(message: str) -> None:
        await ctx.notify("item/mcpToolCall/progress",
                         McpToolCallProgress(ctx.thread_id, ctx.turn_id, call.call_id, message))

    timeout = ref.config.tool_timeout_sec

    async def elicit(request: dict[str, Any]) -> dict[str, Any]:
        """The server asks the user something mid-call: relayed to the
        thread's clients as ``mcpServer/elicitation/request``, first answer
        wins; no answer within the tool timeout is a ``cancel``."""
        slot: ReplySlot = ReplySlot()
        params = {"threadId": ctx.thread_id, "turnId": ctx.turn_id, "serverName": server, **request}
        await ctx.approvals.send(RequestApproval(ctx.thread_id, ctx.turn_id, _METHOD, params, ctx.subscribers(),
                                                 slot))
        with trio.move_on_after(timeout):
            answer = await slot.wait()
            return {"action": answer.decision, "content": answer.content}
        return {"action": "cancel"}

    try:
        result: dict[str, Any] = await ask(ref.mailbox, lambda slot: McpCallTool(
            call.call_id, call.name, arguments, timeout, progress, slot, elicit),
            timeout=ref.config.startup_timeout_sec + timeout + _MARGIN)
    except McpCallFailed as exc:
        return await finish(None, f"tool call error: {exc}"), False
    except (AskTimeout, ActorGone, MailboxClosed) as exc:
        return await finish(None, f"tool call error: {exc}"), False
    except trio.Cancelled:
        try:
            ref.mailbox.send_nowait(McpCancel(call.call_id))
        except MailboxClosed:
            pass  # the connection is gone, and the call with it
        raise
    # As the item and the rollout record it (isError is not kept).
    result = {"content": result.get("content") or [], "structuredContent": result.get("structuredContent"),
              "_meta": result.get("_meta")}
    return await finish(result, None), False


async def resource_tool(ctx: Any, call: rs.FunctionCallItem) -> msgspec.Raw:
    """``list_mcp_resources``, ``list_mcp_resource_templates`` or
    ``read_mcp_resource``: the server's JSON answer for the model."""
    try:
        args = json.loads(call.arguments) if call.arguments.strip() else {}
        if not isinstance(args, dict):
            raise ValueError("arguments must be an object")
    except ValueError as exc:
        return _output(call, f"failed to parse function arguments: {exc}")
    server = args.get("server")
    if server is not None and server not in ctx.mcp:
        return _output(call, f"resources/list failed: unknown MCP server '{server}'")
    try:
        if call.name == "read_mcp_resource":
            if not isinstance(server, str) or not isinstance(args.get("uri"), str):
                return _output(call, "failed to parse function arguments: missing field `server` or `uri`")
            ref = ctx.mcp[server][0]
            result: dict[str, Any] = await ask(ref.mailbox, lambda slot: McpReadResource(args["uri"], slot),
                                               timeout=ref.config.tool_timeout_sec + _MARGIN)
            return _output(call, json.dumps({"server": server, "uri": args["uri"], **result}))
        templates = call.name == "list_mcp_resource_templates"
        key = "resourceTemplates" if templates else "resources"
        listed: list[Any] = []
        cursor = None
        for name in [server] if server else sorted(ctx.mcp):
            ref = ctx.mcp[name][0]
            page: dict[str, Any] = await ask(
                ref.mailbox, lambda slot: McpListResources(templates, args.get("cursor"), slot),
                timeout=ref.config.tool_timeout_sec + _MARGIN)
            listed += [{"server": name, **r} for r in page.get(key, [])]
            cursor = page.get("nextCursor") if server else None
        out: dict[str, Any] = {key: listed}
        if server:
            out["server"] = server
            if cursor:
                out["nextCursor"] = cursor
        return _output(call, json.dumps(out))
    except (McpCallFailed, AskTimeout, ActorGone, MailboxClosed) as exc:
        return _output(call, f"{call.name} failed: {exc}")
