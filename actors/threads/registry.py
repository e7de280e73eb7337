"""The registry actor: its loop, the handlers of the method table's REGISTRY
rows, thread start, load and unload; the work it runs beside its loop is in
:mod:`.workers`, the thread configuration it builds in :mod:`.config`."""

from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, ClassVar

import trio

from ...runtime.config import ConfigError, Settings, resolve_provider
from ...runtime.kernel.ids import uuid7
from ...runtime.kernel.mailbox import Inbox, Mailbox, open_mailbox
from ...runtime.kernel.ask import ask
from ...runtime.kernel.errors import ActorGone, AskTimeout, McpCallFailed, StorageFailure
from ...runtime.protocol.jsonrpc import (
    ErrorResponse,
    JsonRpcError,
    Response,
    internal_error,
    invalid_params,
    invalid_request,
    overloaded,
)
from ...runtime.protocol.methods import REGISTRY, dispatches
from ...runtime.protocol.v2.account import ThreadReadStateUpdateParams
from ...runtime.protocol.v2.mcp import McpServerResourceReadParams, McpServerStatusListParams, McpServerToolCallParams
from ...runtime.protocol.v2.thread import (
    MAX_STREAM_SEARCH_BYTES,
    NotLoaded,
    ThreadForkParams,
    ThreadIdParams,
    ThreadItemsListParams,
    ThreadListParams,
    ThreadListResponse,
    ThreadLoadedListParams,
    ThreadMetadataUpdateParams,
    ThreadNameSetParams,
    ThreadReadParams,
    ThreadResumeParams,
    ThreadSearchParams,
    ThreadStartParams,
    ThreadStatusChanged,
    ThreadTurnsListParams,
    ThreadUnsubscribeResponse,
)
from ...runtime.protocol.v2.turn import TokenUsageBreakdown
from ...runtime.persistence.rollout import (
    Replay,
    ThreadMeta,
)
from ...runtime.config.mcp import enabled_servers
from ...runtime.kernel.supervisor import RestartPolicy, open_supervisor
from ..analytics.facts import DISABLED, Recorder
from ..messages.barrier import contained
from ..messages.fanout import EventNumbers, deliver, notification
from ..messages import (
    ConnectionGone,
    Broadcast,
    EvictThread,
    Loaded,
    LoadFailed,
    McpAcquire,
    McpInventory,
    McpRelease,
    McpReloadRequest,
    McpRequest,
    McpResourceReadRequest,
    McpServerRef,
    McpStatusListRequest,
    McpToolCallRequest,
    Msg,
    ThreadGaveUp,
    PatchGitInfo,
    Checkpoint,
    ListThreads,
    ReadThread,
    HistoryPage,
    Renamed,
    Reply,
    Resumed,
    ThreadConfig,
    ThreadRequest,
    ToThread,
    UnloadThread,
    Unsubscribe,
    ApprovalsInbox,
    HubInbox,
    McpPoolInbox,
    RegistryInbox,
    StoreInbox,
)
from ..thread import lost_turn, run_thread
from . import workers
from .workers import READERS
from .config import (
    SANDBOX_CHOICE,
    common_fields,
    git_patch,
    loaded_page,
    recorded_mode,
    recorded_permissions,
    recorded_policy,
    thread_permissions,
    wire_policy,
)

log = logging.getLogger("trio_codex.threads")

#: Requests waiting for the registry. A full registry answers -32001.
REGISTRY_CAPACITY = 1024
#: Messages waiting for one thread; a full thread mailbox answers -32001.
THREAD_CAPACITY = 256
#: A thread that crashes more than 3 times in 10 s is dropped (unloaded).
THREAD_RESTARTS = RestartPolicy(intensity=3, period=10.0)

_ZERO_USAGE = TokenUsageBreakdown()

#: How long the MCP pool may take to hand out a thread's connections (it
#: answers at once; the servers start in the background).
MCP_ACQUIRE_TIMEOUT = 10.0


class _LaunchStarted(Msg, tag="launch_started", frozen=True):
    """A thread/start whose required MCP servers are ready: launch it."""

    config: ThreadConfig
    model: Any
    reply: Reply


@dispatches(REGISTRY)
class ThreadRegistry:
    """The registry actor; it answers the method table's REGISTRY rows."""

    #: Each takes the ThreadRequest of its row's params type.
    HANDLERS: ClassVar[dict[str, Callable[[ThreadRegistry, ThreadRequest[Any]], Awaitable[None]]]]

    # Defined in :mod:`.workers` (functions of the actor, bound here).
    _beside = workers._beside
    _work = workers._work
    _read_unloaded = workers._read_unloaded
    _history_page = workers._history_page
    _metadata = workers._metadata
    _name = workers._name
    _archive = workers._archive
    _delete = workers._delete
    _fork = workers._fork
    _read_for_resume = workers._read_for_resume
    _stored = workers._stored
    _find = workers._find
    _read = workers._read
    _replay = workers._replay

    def __init__(self, settings: Settings, models: Any, hub: Mailbox[HubInbox], approvals: Mailbox[ApprovalsInbox],
                 store: Mailbox[StoreInbox], recorder: Recorder = DISABLED,
                 mcp: Mailbox[McpPoolInbox] | None = None, numbers: EventNumbers | None = None) -> None:
        self.recorder = recorder
        #: The server's per-thread event numbers (:class:`~..fanout.EventNumbers`).
        self.numbers = numbers or EventNumbers()
        #: The MCP pool (None: MCP disabled, as in tests of the registry alone).
        self.mcp = mcp
        self.settings = settings
        self.models = models
        self.hub = hub
        self.approvals = approvals
        self.store = store
        self.threads: dict[str, Mailbox] = {}
        self.checkpoints: dict[str, Checkpoint] = {}
        #: Threads whose rollout is being read for a resume, with the
        #: resumes of the same thread that wait for it.
        self.loading: dict[str, list[tuple[Reply, ThreadResumeParams]]] = {}
        self.readers_limit = trio.CapacityLimiter(READERS)
        #: Requests accepted to run beside the loop and not done yet.
        self.workers = 0
        #: Per thread id, the requests about it that run one after another.
        self.serial: dict[str, deque[tuple[Reply, Callable[..., Awaitable[None]], tuple[Any, ...]]]] = {}
        #: Replays of big rollouts by path, oldest use first.
        self.replays: OrderedDict[str, tuple[tuple[str, str | None, int, int], Replay]] = OrderedDict()

    async def run(self, box: tuple[Mailbox, Inbox] | None = None, *,
                  task_status: trio.TaskStatus[Mailbox[RegistryInbox]] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve ``box`` (a mailbox the parent opened, so that a restarted
        registry serves the same one), or a mailbox of its own."""
        mailbox, inbox = box or open_mailbox(REGISTRY_CAPACITY, name="threads")
        self.mailbox = mailbox
        # A restart starts afresh: the threads died with the last incarnation
        # (and hold their MCP servers no longer).
        for tid in self.threads:
            if self.mcp is not None:
                self.mcp.send_nowait(McpRelease(tid))
        self.threads.clear()
        self.checkpoints.clear()
        self.loading.clear()
        async with open_supervisor("threads", policy=THREAD_RESTARTS) as sup, trio.open_nursery() as readers:
            self.sup = sup
            self.readers = readers
            task_status.started(mailbox)
            async for msg in inbox:
                async with contained(msg, log, "the thread registry"):
                    match msg:
                        case ThreadRequest() as req:
                            await self._thread_request(req)
                        case ToThread(thread_id=tid, msg=inner, reply=reply):
                            await self._route(tid, inner, reply)
                        case Checkpoint(thread_id=tid) as cp:
                            self.checkpoints[tid] = cp
                        case UnloadThread(thread_id=tid, mailbox=mailbox, received=received):
                            # What was sent to the thread since it asked is its
                            # to answer: then it stays.
                            if self.threads.get(tid) is mailbox and mailbox.statistics().sent == received:
                                await self._unload(tid)
                        case ConnectionGone(conn_id=conn_id):
                            for mailbox in self.threads.values():
                                mailbox.send_nowait(Unsubscribe(conn_id))
                        case Loaded() as loaded:
                            await self._loaded(loaded)
                        case ThreadGaveUp(thread_id=tid, failure=failure):
                            await self._gave_up(tid, failure)
                        case EvictThread(thread_id=tid):
                            self._evict(tid)
                        case _LaunchStarted(config=config, model=model, reply=reply):
                            await self._launch(config, model, reply)
                        case LoadFailed(thread_id=tid):
                            for reply, params in self.loading.pop(tid, ()):
                                await self._resume(reply, params)
            readers.cancel_scope.cancel(reason="the thread registry's mailbox closed")

    async def _route(self, thread_id: str, msg: Any, reply: Reply | None) -> bool:
        """Hand ``msg`` to a loaded thread without waiting; if it cannot
        take it, answer ``reply`` and return False."""
        mailbox = self.threads.get(thread_id)
        if mailbox is None:
            if reply is not None:
                await deliver((reply.conn,), ErrorResponse(
                    reply.request_id, invalid_request(f"thread not found: {thread_id}").error))
            return False
        if not mailbox.send_nowait(msg):
            if reply is not None:
                await deliver((reply.conn,), ErrorResponse(reply.request_id, overloaded().error))
            return False
        return True

    async def _thread_request(self, req: ThreadRequest) -> None:
        """Answer a client request with its handler from the method table;
        the errors it raises are the client's answer."""
        try:
            await self.HANDLERS[req.method](self, req)
        except JsonRpcError as exc:
            await deliver((req.reply.conn,), ErrorResponse(req.reply.request_id, exc.error))
        except StorageFailure as exc:  # the store met a full or read-only disk
            await deliver((req.reply.conn,), ErrorResponse(req.reply.request_id, internal_error(str(exc)).error))

    # --- handlers of the method table's REGISTRY rows ---------------------

    async def rpc_thread_start(self, req: ThreadRequest[ThreadStartParams]) -> None:
        await self._start(req.reply, req.params, req.originator)

    async def rpc_thread_list(self, req: ThreadRequest[ThreadListParams]) -> None:
        params = req.params
        if params.included_thread_ids is not None and len(params.included_thread_ids) > 100:
            raise invalid_params("includedThreadIds accepts at most 100 entries")
        if params.section_id is not None:
            # Sections (experimental) file no thread here: each is empty.
            await self._answer(req.reply, ThreadListResponse([]))
            return
        if params.sort_key == "section_position":
            raise invalid_request("section-position sorting requires a section filter")
        self._to_store(ListThreads(req.reply, params, frozenset(self.threads)))

    async def rpc_thread_search(self, req: ThreadRequest[ThreadSearchParams]) -> None:
        if not req.params.search_term.strip():
            raise invalid_request("thread/search requires a non-empty searchTerm")
        self._to_store(ListThreads(req.reply, req.params, frozenset(self.threads), req.ticket))

    async def rpc_thread_search_stream(self, req: ThreadRequest[ThreadSearchParams]) -> None:
        term = req.params.search_term.strip()
        if not term:
            raise invalid_request("thread/search requires a non-empty searchTerm")
        if len(term.encode()) > MAX_STREAM_SEARCH_BYTES:
            raise invalid_params(f"thread/search/stream searchTerm exceeds {MAX_STREAM_SEARCH_BYTES} UTF-8 bytes")
        self._to_store(ListThreads(req.reply, req.params, frozenset(self.threads), req.ticket))

    async def rpc_read_state_update(self, req: ThreadRequest[ThreadReadStateUpdateParams]) -> None:
        if req.params.thread_id in self.threads:
            # As 0.171.0 with no read-state store: nothing to update.
            raise invalid_request("thread read state unavailable")
        raise invalid_request(f"thread not loaded: {req.params.thread_id}")

    async def rpc_thread_loaded_list(self, req: ThreadRequest[ThreadLoadedListParams]) -> None:
        await self._answer(req.reply, loaded_page(sorted(self.threads), req.params))

    async def rpc_thread_read(self, req: ThreadRequest[ThreadReadParams]) -> None:
        reply, params = req.reply, req.params
        if params.thread_id in self.threads:
            await self._route(params.thread_id, ReadThread(reply, params.include_turns, False), reply)
        else:
            await self._beside(reply, self._read_unloaded, reply, params)

    async def rpc_thread_resume(self, req: ThreadRequest[ThreadResumeParams]) -> None:
        if req.params.permissions is not None and req.params.sandbox is not None:
            raise invalid_request(SANDBOX_CHOICE)
        await self._resume(req.reply, req.params)

    async def rpc_thread_fork(self, req: ThreadRequest[ThreadForkParams]) -> None:
        if req.params.permissions is not None and req.params.sandbox is not None:
            raise invalid_request(SANDBOX_CHOICE)
        await self._beside(req.reply, self._fork, req.reply, req.params)

    async def rpc_thread_unsubscribe(self, req: ThreadRequest[ThreadIdParams]) -> None:
        reply, tid = req.reply, req.params.thread_id
        if tid in self.threads:
            await self._route(tid, Unsubscribe(reply.conn.id, reply), reply)
        else:
            await self._answer(reply, ThreadUnsubscribeResponse("notLoaded"))

    async def rpc_thread_delete(self, req: ThreadRequest[ThreadIdParams]) -> None:
        tid = req.params.thread_id
        await self._beside(req.reply, self._delete, req.reply, tid, key=tid)

    async def rpc_thread_turns_list(self, req: ThreadRequest[ThreadTurnsListParams]) -> None:
        await self._history(req, "thread/turns/list")

    async def rpc_thread_items_list(self, req: ThreadRequest[ThreadItemsListParams]) -> None:
        await self._history(req, "thread/items/list")

    async def _history(self, req: ThreadRequest[ThreadTurnsListParams] | ThreadRequest[ThreadItemsListParams],
                       method: str) -> None:
        """A history page: the loaded thread serves it from the turns it
        keeps; else a worker, from the rollout."""
        reply, params = req.reply, req.params
        if params.thread_id in self.threads:
            await self._route(params.thread_id, HistoryPage(reply, method, params), reply)
        else:
            await self._beside(reply, self._history_page, reply, method, params)

    async def rpc_thread_name_set(self, req: ThreadRequest[ThreadNameSetParams]) -> None:
        reply, tid, name = req.reply, req.params.thread_id, req.params.name
        if tid not in self.threads:
            await self._beside(reply, self._name, reply, tid, name, True, key=tid)
        # The thread shows the name from now on: a thread/read behind this
        # request sees it.
        elif await self._route(tid, Renamed(name), reply):
            await self._beside(reply, self._name, reply, tid, name, False, key=tid)

    async def rpc_thread_archive(self, req: ThreadRequest[ThreadIdParams]) -> None:
        tid = req.params.thread_id
        await self._beside(req.reply, self._archive, req.reply, tid, True, key=tid)

    async def rpc_thread_unarchive(self, req: ThreadRequest[ThreadIdParams]) -> None:
        tid = req.params.thread_id
        await self._beside(req.reply, self._archive, req.reply, tid, False, key=tid)

    async def rpc_thread_metadata_update(self, req: ThreadRequest[ThreadMetadataUpdateParams]) -> None:
        reply, tid = req.reply, req.params.thread_id
        if tid in self.threads:
            # Git info lives in the index only (as in the original's state
            # database); a loaded thread keeps its own copy and answers itself.
            await self._route(tid, PatchGitInfo(reply, git_patch(req.params)), reply)
        else:
            await self._beside(reply, self._metadata, reply, tid, git_patch(req.params), key=tid)

    async def rpc_mcp_server_status_list(self, req: ThreadRequest[McpServerStatusListParams]) -> None:
        self._to_mcp(McpStatusListRequest(req.reply, req.params))

    async def rpc_mcp_tool_call(self, req: ThreadRequest[McpServerToolCallParams]) -> None:
        self._to_mcp(McpToolCallRequest(req.reply, req.params))

    async def rpc_mcp_resource_read(self, req: ThreadRequest[McpServerResourceReadParams]) -> None:
        self._to_mcp(McpResourceReadRequest(req.reply, req.params))

    async def rpc_mcp_reload(self, req: ThreadRequest[None]) -> None:
        self._to_mcp(McpReloadRequest(req.reply))

    def _to_mcp(self, msg: McpRequest) -> None:
        if self.mcp is None:
            raise internal_error("MCP is not available in this server")
        if not self.mcp.send_nowait(msg):
            raise overloaded()

    def _to_store(self, msg: ListThreads) -> None:
        if not self.store.send_nowait(msg):
            raise overloaded()


    async def _gave_up(self, thread_id: str, failure: str) -> None:
        """A thread that kept crashing is unloaded, as after its unload
        delay; the turn it ran is reported failed to its subscribers. Its
        rollout stays: ``thread/resume`` loads it afresh."""
        cp = self.checkpoints.get(thread_id)
        if cp is not None and cp.active_turn is not None:
            for note in lost_turn(thread_id, cp.active_turn, f"was dropped after repeated crashes ({failure})",
                                  self.recorder):
                self.numbers.stamp(thread_id, note)
                await deliver(cp.subscribers, note)
        await self._unload(thread_id, "dropped by its supervisor after repeated crashes")

    async def _unload(self, thread_id: str, reason: str = "idle with no subscriber for its unload delay") -> None:
        """Unload a thread (idle and followed by nobody, or dropped):
        ``thread/status/changed {notLoaded}`` then ``thread/closed`` to every
        initialized connection."""
        if not self._stop_loaded(thread_id, reason):
            return
        for method, params in (("thread/status/changed", ThreadStatusChanged(thread_id, NotLoaded())),
                               ("thread/closed", ThreadIdParams(thread_id))):
            self.hub.send_nowait(Broadcast(notification(method, params)))

    def _evict(self, thread_id: str) -> None:
        """Another node owns the thread now: stop its actor (the turn it
        runs, its model stream and tools are cancelled with it, and write
        nothing: an interrupted turn's rollout lines are written only when
        the turn itself is interrupted), close its mailbox, and unload it
        without telling anyone (the cluster layer did)."""
        mailbox = self.threads.get(thread_id)
        if mailbox is not None and self._stop_loaded(thread_id, "taken over by another node of the cluster"):
            mailbox.close()

    def _stop_loaded(self, thread_id: str, reason: str) -> bool:
        """Stop a loaded thread's actor for good; False if it was not loaded."""
        if self.threads.pop(thread_id, None) is None:
            return False
        self.sup.stop_child(f"thread:{thread_id}", reason)
        self.checkpoints.pop(thread_id, None)
        if self.mcp is not None:
            self.mcp.send_nowait(McpRelease(thread_id))
        return True

    async def _broadcast(self, reply: Reply, method: str, params: Any) -> None:
        """To every initialized connection: the caller directly, so it sees
        this in order with its response; the others through the hub."""
        note = notification(method, params)
        await deliver((reply.conn,), note)
        self.hub.send_nowait(Broadcast(note, frozenset({reply.conn.id})))

    async def _answer(self, reply: Reply, result: Any) -> None:
        await deliver((reply.conn,), Response(reply.request_id, result))


    async def _resume(self, reply: Reply, params: ThreadResumeParams) -> None:
        """Subscribe the caller to a loaded thread, or load it from its
        rollout; a second resume while the first one reads waits for it."""
        tid = params.thread_id
        if tid in self.threads:
            await self._route(tid, ReadThread(reply, not params.exclude_turns, True), reply)
        elif tid in self.loading:
            self.loading[tid].append((reply, params))
        elif await self._beside(reply, self._read_for_resume, reply, params):
            self.loading[tid] = []


    async def _loaded(self, msg: Loaded) -> None:
        """Start a thread a reader loaded; the resumes that waited for it
        subscribe to it."""
        try:
            await self._load(msg.reply, msg.params, msg.meta, msg.replay, msg.path,
                             forked_from=msg.forked_from, ephemeral=msg.ephemeral)
        except JsonRpcError as exc:
            await deliver((msg.reply.conn,), ErrorResponse(msg.reply.request_id, exc.error))
        finally:
            waiting = self.loading.pop(msg.meta.id, ())
        for reply, params in waiting:
            await self._resume(reply, params)


    async def _load(self, reply: Reply, params: ThreadResumeParams | ThreadForkParams, meta: ThreadMeta, r: Replay,
                    path: str | None, *,
                    forked_from: str | None = None, ephemeral: bool = False) -> None:
        """Start a thread from a replayed rollout (resume, fork), with the
        request's overrides over what the rollout recorded."""
        ctx = r.turn_context
        try:
            s = self._settings(params)
            perms = thread_permissions(s, params, recorded_permissions(ctx, s))
            config = ThreadConfig(
                id=meta.id, created_at=meta.created_at // 1000, cwd=params.cwd or meta.cwd,
                model=params.model or meta.model or (ctx.model if ctx else None) or s.model,
                model_provider=params.model_provider or meta.model_provider or s.model_provider,
                approval_policy=params.approval_policy or recorded_policy(ctx) or wire_policy(s.approval_policy),
                sandbox=perms.sandbox, permission_profile=perms.profile,
                reasoning_effort=meta.reasoning_effort or s.model_reasoning_effort,
                ephemeral=ephemeral, originator=meta.originator or "", forked_from_id=forked_from,
                history_mode=meta.history_mode or "legacy", **common_fields(s, params), **recorded_mode(ctx),
            )
            model = await self.models.get(config.model_provider)
        except ConfigError as exc:
            raise invalid_request(str(exc)) from None
        await self._launch(config, model, Resumed(reply, r, path, params.exclude_turns, forked_from is not None,
                                                  (meta.git_sha, meta.git_branch, meta.git_origin_url)))

    async def _start(self, reply: Reply, params: ThreadStartParams, originator: str) -> None:
        try:
            config = self._config(params, originator)
            model = await self.models.get(config.model_provider)
        except ConfigError as exc:
            await deliver((reply.conn,), ErrorResponse(reply.request_id, invalid_request(str(exc)).error))
            return
        except JsonRpcError as exc:
            await deliver((reply.conn,), ErrorResponse(reply.request_id, exc.error))
            return
        except Exception as exc:
            # A bug in starting one thread must not take the registry, and
            # every other thread with it, down.
            log.exception("thread/start failed")
            await deliver((reply.conn,), ErrorResponse(
                reply.request_id, internal_error(f"thread/start failed: {exc!r}").error))
            return
        if self.mcp is not None and self.settings.mcp_servers:
            await self._beside(reply, self._start_mcp, reply, config, model)
        else:
            await self._launch(config, model, reply)

    async def _start_mcp(self, reply: Reply, config: ThreadConfig, model: Any) -> None:
        """Start a thread's MCP servers beside the loop, then launch it. A
        ``required`` server that fails fails thread/start, as the
        original's, with nothing announced and no server left running for it."""
        assert self.mcp is not None
        try:
            required = [s for s in enabled_servers(self.settings.mcp_servers).values() if s.required]
        except ConfigError as exc:
            raise invalid_request(str(exc)) from None
        refs: dict[str, McpServerRef] = await ask(
            self.mcp, lambda slot: McpAcquire(config.id, (reply.conn,), not required, slot),
            timeout=MCP_ACQUIRE_TIMEOUT)
        if required:
            causes = []
            for server in required:
                try:
                    inv = await ask(refs[server.name].mailbox, McpInventory,
                                    timeout=server.startup_timeout_sec + MCP_ACQUIRE_TIMEOUT)
                    error = None if inv.status == "ready" else inv.error
                except (AskTimeout, ActorGone, McpCallFailed) as exc:
                    error = str(exc)
                if error is not None:
                    causes.append(f"{server.name}: "
                                  + error.removeprefix(f"MCP client for `{server.name}` failed to start: "))
            if causes:
                self.mcp.send_nowait(McpRelease(config.id))
                raise internal_error("error creating thread: Fatal error: Failed to initialize session: required "
                                     "MCP servers failed to initialize: " + "; ".join(causes))
            await ask(self.mcp, lambda slot: McpAcquire(config.id, (reply.conn,), True, slot),
                      timeout=MCP_ACQUIRE_TIMEOUT)
        await self.mailbox.send(_LaunchStarted(config, model, reply))

    async def _launch(self, config: ThreadConfig, model: Any, start: Reply | Resumed) -> None:
        mailbox, inbox = open_mailbox(THREAD_CAPACITY, name=f"thread:{config.id}")
        self.threads[config.id] = mailbox
        conn = start.conn if isinstance(start, Reply) else start.reply.conn

        def restart_args() -> tuple[Any, ...]:
            cp = self.checkpoints.get(config.id) or Checkpoint(
                config.id, (), _ZERO_USAGE, "", config.created_at, (conn,))
            return (cp.config or config, model, self.hub, self.approvals, self.store, self.recorder, self.mailbox,
                    mailbox, inbox, cp)

        await self.sup.start_child(
            f"thread:{config.id}", partial(run_thread, mcp=self.mcp, numbers=self.numbers), config, model, self.hub, self.approvals, self.store, self.recorder,
            self.mailbox, mailbox, inbox, start, restart="transient", restart_args=restart_args,
            on_give_up=lambda failure: self.mailbox.send_nowait(ThreadGaveUp(config.id, repr(failure))),
        )

    def _config(self, params: ThreadStartParams, originator: str) -> ThreadConfig:
        s = self._settings(params)
        perms = thread_permissions(s, params, None)
        provider_id = params.model_provider or s.model_provider
        resolve_provider(s, provider_id)  # an unknown provider fails here, with the known ids
        return ThreadConfig(
            id=uuid7(), created_at=int(time.time()),
            cwd=os.path.abspath(params.cwd or os.getcwd()),
            model=params.model or s.model, model_provider=provider_id,
            approval_policy=params.approval_policy or wire_policy(s.approval_policy),
            sandbox=perms.sandbox, permission_profile=perms.profile, reasoning_effort=s.model_reasoning_effort,
            ephemeral=bool(params.ephemeral), originator=originator, **common_fields(s, params),
        )

    def _settings(self, params: Any) -> Settings:
        """The settings with the request's ``config`` flags applied."""
        return self.settings.with_session_flags(params.config) if params.config else self.settings


