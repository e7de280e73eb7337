"""The MCP pool: the host's one owner of MCP connections.

It supervises one connection actor (``actors/mcp/connection.py``) per
configured server, shared by every thread that uses the server:

- **Sharing.** The original starts a fresh set of server processes for each
  thread and another for every ``mcpServerStatus/list``; with many threads
  that is hundreds of processes, and users report them never reaped. Here a
  server runs at most once per host (:data:`MAX_PROCESSES_PER_SERVER`):
  MCP sessions take concurrent requests, so one connection serves every
  thread's calls. (A server that keeps per-session state shares it between
  threads; the tools the original ships with are stateless.)
- **Holders.** A thread holds each server from its start (or first turn)
  until it unloads (:class:`~.messages.McpRelease`, after the unload delay).
  When the last holder goes, the connection actor is stopped: its process is
  terminated (stdin closed, SIGTERM, SIGKILL, each wait bounded) and reaped.
  A server started for a request without a thread (``mcpServerStatus/list``,
  ``mcpServer/resource/read``) lingers :data:`LINGER` seconds for the next one.
- **Failures.** A server that fails to start stays failed for the threads
  that hold it (as in the original); the next thread to start after all of
  them unloaded tries again. One that dies after startup is restarted on the
  same mailbox, within :data:`CONNECTION_RESTARTS`; past that it is failed.

Its loop never waits on a server: startup statuses and client requests run
as tasks beside it, each bounded by the server's timeouts.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Awaitable, Callable
from functools import partial

import trio

from ...runtime.kernel.ask import ReplySlot, ask
from ...runtime.config import ConfigError, Settings, load_settings
from ...runtime.kernel.errors import ActorGone, AskTimeout, McpCallFailed, MailboxClosed
from ...runtime.kernel.mailbox import Inbox, Mailbox, open_mailbox
from ...runtime.config.mcp import McpServerConfig, enabled_servers
from ...runtime.protocol.jsonrpc import ErrorResponse, JsonRpcError, Response, internal_error, invalid_request
from ...runtime.protocol.v2.mcp import (
    McpServerResourceReadParams,
    McpServerResourceReadResponse,
    McpServerStartupStatusUpdated,
    McpServerStatus,
    McpServerStatusListParams,
    McpServerStatusListResponse,
    McpServerToolCallParams,
    capabilities,
    server_info,
    tool_entry,
)
from ..messages.barrier import contained
from ..messages.fanout import deliver, notification
from .connection import CONNECTION_CAPACITY, run_connection, startup_error
from ..messages import (
    ConnectionRef,
    McpAcquire,
    McpCallTool,
    McpConnectionInbox,
    McpInventory,
    McpInventoryResult,
    McpJson,
    McpReadResource,
    McpRelease,
    McpReloadRequest,
    McpResourceReadRequest,
    McpServerRef,
    McpStatusListRequest,
    McpToolCallRequest,
    Msg,
    Reply,
    McpPoolInbox,
)
from ...runtime.kernel.supervisor import RestartPolicy, open_supervisor

log = logging.getLogger("trio_codex.mcp")

POOL_CAPACITY = 1024
#: Live connections (so processes) per configured server, whatever the
#: number of threads; one being replaced (reload, a retry after a failed
#: start) may still be stopping beside it, for at most SHUTDOWN_TIMEOUT.
MAX_PROCESSES_PER_SERVER = 1
#: A server that died after startup is restarted up to 3 times a minute.
CONNECTION_RESTARTS = RestartPolicy(intensity=3, period=60.0)
#: How long a server started without a thread stays up for the next request.
LINGER = 30.0
#: How long stopping the connections may take at shutdown (stdin close 2 s,
#: SIGTERM 2 s, SIGKILL: the ``mcp`` package's bounds).
SHUTDOWN_TIMEOUT = 6.0
#: Margin over a server's own timeouts for the answers the pool waits for.
_MARGIN = 5.0


class _GaveUp(Msg, tag="mcp_gave_up", frozen=True):
    name: str
    child: str
    failure: str


class _Expired(Msg, tag="mcp_expired", frozen=True):
    name: str
    child: str


class _Link:
    """One running server: its connection actor and who holds it."""

    def __init__(self, config: McpServerConfig, child: str) -> None:
        self.config = config
        self.child = child
        self.box = open_mailbox(CONNECTION_CAPACITY, name=child)
        self.holders: set[str] = set()
        self.failed = False

    @property
    def ref(self) -> McpServerRef:
        return McpServerRef(self.config.name, self.config, self.box[0])


class McpPool:
    """See the module docstring."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.servers: dict[str, McpServerConfig] = {}
        self.config_error: str | None = None
        self.links: dict[str, _Link] = {}
        self.ids = itertools.count(1)
        self._configure(settings)

    def _configure(self, settings: Settings) -> None:
        try:
            self.servers, self.config_error = enabled_servers(settings.mcp_servers), None
        except ConfigError as exc:
            self.servers, self.config_error = {}, str(exc)
            log.error("MCP servers not started: %s", exc)

    async def run(self, box: tuple[Mailbox, Inbox] | None = None, *,
                  task_status: trio.TaskStatus[Mailbox[McpPoolInbox]] = trio.TASK_STATUS_IGNORED) -> None:
        mailbox, inbox = box or open_mailbox(POOL_CAPACITY, name="mcp")
        self.mailbox = mailbox
        self.links.clear()  # a restarted pool starts afresh: its connections died with it
        async with open_supervisor("mcp", policy=CONNECTION_RESTARTS, shutdown_timeout=SHUTDOWN_TIMEOUT) as sup, \
                trio.open_nursery() as beside:
            self.sup = sup
            self.beside = beside
            task_status.started(mailbox)
            async for msg in inbox:
                async with contained(msg, log, "the MCP pool"):
                    await self._handle(msg)
            beside.cancel_scope.cancel(reason="the MCP pool's mailbox closed")

    async def _handle(self, msg: McpPoolInbox | _GaveUp | _Expired) -> None:
        match msg:
            case McpAcquire(thread_id=tid, conns=conns, announce=announce, reply=reply):
                refs = {}
                for name in self.servers:
                    link = await self._link(name)
                    link.holders.add(tid)
                    refs[name] = link.ref
                    if announce:
                        self.beside.start_soon(self._announce, tid, conns, link)
                reply.set(refs)
            case McpRelease(thread_id=tid):
                for name, link in list(self.links.items()):
                    link.holders.discard(tid)
                    if not link.holders:
                        self._stop(name, f"its last thread ({tid}) unloaded")
            case _GaveUp(name=name, child=child, failure=failure):
                current = self.links.get(name)
                if current is not None and current.child == child:
                    # The same mailbox, now answered with the failure.
                    current.failed = True
                    current.child = f"{child}!failed"
                    await self.sup.start_child(
                        current.child, run_connection, current.config, current.box, startup_error(
                        name, f"the server exited {CONNECTION_RESTARTS.intensity + 1} times within "
                              f"{CONNECTION_RESTARTS.period:g} s ({failure})"), restart="temporary")
            case _Expired(name=name, child=child):
                current = self.links.get(name)
                if current is not None and current.child == child and not current.holders:
                    self._stop(name, f"no thread used it for {LINGER:g} s")
            case McpReloadRequest(reply=reply):
                await self._reload(reply)
            case McpStatusListRequest(reply=reply, params=params):
                if await self._configured(reply):
                    listed = []
                    for name in [n for n in self.servers if params.server_name in (None, n)]:
                        listed.append(await self._lingering(name))
                    self.beside.start_soon(self._answer, reply, partial(_status_list, self, listed, params))
            case McpToolCallRequest(reply=reply, params=params):
                if await self._configured(reply) and (ref := await self._server(reply, params.server)):
                    self.beside.start_soon(self._answer, reply, partial(_tool_call, ref, params))
            case McpResourceReadRequest(reply=reply, params=params):
                if await self._configured(reply) and (ref := await self._server(reply, params.server)):
                    self.beside.start_soon(self._answer, reply, partial(_resource_read, ref, params))

    async def _link(self, name: str) -> _Link:
        """The running connection of ``name``, started if none runs (or the
        one that runs failed and nobody holds it any more)."""
        link = self.links.get(name)
        if link is not None and not (link.failed and not link.holders):
            return link
        if link is not None:
            self._stop(name, "failed, and a new thread wants it: trying again")
        config = self.servers[name]
        link = self.links[name] = _Link(config, f"mcp:{name}#{next(self.ids)}")
        child = link.child
        await self.sup.start_child(
            child, run_connection, config, link.box, restart="transient",
            on_give_up=lambda failure: self.mailbox.send_nowait(_GaveUp(name, child, repr(failure))))
        live = sum(1 for c in self.sup.children if c.startswith(f"mcp:{name}#"))
        log.info("MCP server `%s`: connection %s started (%d live, the older ones stopping)", name, child, live)
        return link

    def _stop(self, name: str, reason: str) -> None:
        link = self.links.pop(name, None)
        if link is not None:
            self.sup.stop_child(link.child, f"MCP server `{name}` stopped: {reason}")
            link.box[1].close()

    def _linger(self, name: str, link: _Link) -> None:
        if not link.holders:
            self.beside.start_soon(self._expire_after, name, link.child)

    async def _expire_after(self, name: str, child: str) -> None:
        await trio.sleep(LINGER)
        self.mailbox.send_nowait(_Expired(name, child))

    # --- startup status ----------------------------------------------------------

    async def _announce(self, thread_id: str, conns: tuple[ConnectionRef, ...], link: _Link) -> None:
        """``mcpServer/startupStatus/updated``: ``starting``, then ``ready``
        or ``failed``, to the thread's first subscriber."""
        name = link.config.name
        await deliver(conns, notification("mcpServer/startupStatus/updated",
                                          McpServerStartupStatusUpdated(thread_id, name, "starting")))
        inv = await self._inventory(link.ref)
        await deliver(conns, notification("mcpServer/startupStatus/updated", McpServerStartupStatusUpdated(
            thread_id, name, "ready" if inv.status == "ready" else "failed", inv.error)))

    @staticmethod
    async def _inventory(ref: McpServerRef) -> McpInventoryResult:
        try:
            return await ask(ref.mailbox, lambda slot: McpInventory(slot),
                             timeout=ref.config.startup_timeout_sec + _MARGIN)
        except (AskTimeout, ActorGone, McpCallFailed) as exc:
            return McpInventoryResult("failed", startup_error(ref.name, str(exc)))

    # --- client requests -----------------------------------------------------------

    # Each request starts the servers it needs here, then is answered
    # beside the loop.

    async def _configured(self, reply: Reply) -> bool:
        """Whether config.toml's MCP servers could be read; if not, the
        client is told why."""
        if self.config_error is not None:
            await deliver((reply.conn,), ErrorResponse(reply.request_id, invalid_request(self.config_error).error))
        return self.config_error is None

    async def _lingering(self, name: str) -> McpServerRef:
        """The running connection of ``name`` (started if none runs), kept
        :data:`LINGER` seconds when no thread holds it."""
        link = await self._link(name)
        self._linger(name, link)
        return link.ref

    async def _server(self, reply: Reply, name: str) -> McpServerRef | None:
        """The server a request names, or None once the client is told it is unknown."""
        if name not in self.servers:
            await deliver((reply.conn,), ErrorResponse(
                reply.request_id, internal_error(f"unknown MCP server '{name}'").error))
            return None
        return await self._lingering(name)

    async def _answer(self, reply: Reply, answer: Callable[[], Awaitable[object]]) -> None:
        try:
            result = await answer()
        except JsonRpcError as exc:
            await deliver((reply.conn,), ErrorResponse(reply.request_id, exc.error))
        else:
            await deliver((reply.conn,), Response(reply.request_id, result))

    async def _reload(self, reply: Reply) -> None:
        """``config/mcpServer/reload``: read config.toml again; servers removed
        or changed are stopped now (the next turn of each thread acquires
        the new set)."""
        s = self.settings
        try:
            settings = await trio.to_thread.run_sync(lambda: load_settings(
                codex_home=s.codex_home, overrides=s.overrides, profile=s.profile))
        except ConfigError as exc:
            await deliver((reply.conn,), ErrorResponse(reply.request_id, invalid_request(str(exc)).error))
            return
        self.settings = settings
        self._configure(settings)
        for name, link in list(self.links.items()):
            if self.servers.get(name) != link.config:
                self._stop(name, "removed or changed by config/mcpServer/reload")
        await deliver((reply.conn,), Response(reply.request_id, {}))


async def _status_list(pool: McpPool, refs: list[McpServerRef],
                       params: McpServerStatusListParams) -> McpServerStatusListResponse:
    """``mcpServerStatus/list`` from the live connections (one per server)."""
    found: dict[str, McpInventoryResult] = {}

    async def one(ref: McpServerRef) -> None:
        found[ref.name] = await pool._inventory(ref)

    async with trio.open_nursery() as nursery:
        for ref in refs:
            nursery.start_soon(one, ref)
    data = []
    for ref in refs:
        inv = found[ref.name]
        ready = inv.status == "ready"
        data.append(McpServerStatus(
            name=ref.name, runtime_status=None if params.thread_id is None else ("connected" if ready else "failed"),
            plugin_id=None, http_origin=None,
            server_info=server_info(inv.server_info) if ready else None,
            server_capabilities=capabilities(inv.capabilities) if ready else None,
            tool_list_meta=None,
            tools={t["name"]: tool_entry(t) for t in inv.tools if ref.config.allows(t["name"])},
            tools_error=None if ready else (inv.error or "").removeprefix(startup_error(ref.name, "")),
            resources=list(inv.resources) if params.detail != "toolsAndAuthOnly" else [],
            resource_templates=list(inv.templates) if params.detail != "toolsAndAuthOnly" else [],
        ))
    return McpServerStatusListResponse(data)


async def _tool_call(ref: McpServerRef, params: McpServerToolCallParams) -> McpJson:
    return await _ask_server(ref, lambda slot: McpCallTool(
        f"client:{id(slot)}", params.tool, params.arguments, ref.config.tool_timeout_sec, None, slot),
        ref.config.tool_timeout_sec)


async def _resource_read(ref: McpServerRef, params: McpServerResourceReadParams) -> McpServerResourceReadResponse:
    result = await _ask_server(ref, lambda slot: McpReadResource(params.uri, slot), ref.config.tool_timeout_sec)
    return McpServerResourceReadResponse(result.get("contents", []))


async def _ask_server(ref: McpServerRef, make: Callable[[ReplySlot[McpJson]], McpConnectionInbox],
                      timeout: float) -> McpJson:
    """A request to a server's connection, its failure as the original's
    JSON-RPC error (the server's own error passes through)."""
    try:
        return await ask(ref.mailbox, make, timeout=ref.config.startup_timeout_sec + timeout + _MARGIN)
    except McpCallFailed as exc:
        if exc.code is not None and exc.code != -32000:
            raise JsonRpcError(exc.code, str(exc), exc.data) from None
        raise internal_error(str(exc)) from None
    except (AskTimeout, ActorGone, MailboxClosed) as exc:
        raise internal_error(f"failed to get client: {exc}") from None


