"""The thread actor: its state, its loop and its dispatch, subscribers,
persistence and the thread's wire objects; its turns are in
:mod:`.turns`, its other requests in :mod:`.actions`."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import trio

from ...runtime.kernel.ask import ReplySlot
from ...runtime.kernel.errors import StorageFailure
from ...runtime.persistence.git import collect_git_info
from ...runtime.persistence.history_pages import TurnProjection, history_page
from ...runtime.kernel.mailbox import Inbox, Mailbox
from ...runtime.protocol.jsonrpc import (ErrorResponse, JsonRpcError, Notification, Outbound, Response,
                                         internal_error, invalid_request, overloaded)
from ...runtime.protocol.v2.thread import (
    Idle,
    SystemError,
    Thread,
    ThreadStarted,
    ThreadReadResponse,
    ThreadStartResponse,
    ThreadStatus,
    ThreadGoal,
    ThreadStatusChanged,
    ThreadUnsubscribeResponse,
    git_info,
)
from ...runtime.protocol.v2.turn import ThreadTokenUsage, ThreadTokenUsageUpdated, TokenUsageBreakdown
from ...runtime.persistence.rollout import GitInfo, Payload, SessionMeta, ThreadMeta, format_timestamp, rollout_path
from ...runtime.server.info import PROTOCOL_VERSION
from ..messages.fanout import EventNumbers, deliver, notification
from ..analytics import facts
from ..analytics.facts import Recorder
from ..messages import (
    ApprovalDone,
    ApprovalGate,
    Broadcast,
    Checkpoint,
    BackgroundTerminals,
    CompactThread,
    GoalRequest,
    GoalTool,
    HistoryPage,
    InjectItems,
    ReviewThread,
    ShellCommand,
    ConnectionRef,
    RevertThread,
    IndexThread,
    InterruptTurn,
    ReadThread,
    Renamed,
    PatchGitInfo,
    STORE_TIMEOUT,
    UpdateGitInfo,
    ReplayApprovals,
    Reply,
    Resumed,
    StartTurn,
    UpdateSettings,
    SteerTurn,
    Subscribe,
    SubscribersChanged,
    ThreadConfig,
    TurnEnded,
    UnloadDue,
    UnloadThread,
    Unsubscribe,
    AppendRollout,
    ApprovalsInbox,
    HubInbox,
    McpPoolInbox,
    RegistryInbox,
    StoreInbox,
    ThreadInbox,
)
from ...runtime.commands.process import ProcessTable, open_process_table
from ..rollout_writer import append, run_rollout_writer
from . import actions
from . import turns
from .state import (
    Ready,
    Running,
    Stopping,
    ThreadState,
    TurnHandle,
    Unloading,
    follow_rollout,
    lost_turn,
)


log = logging.getLogger("trio_codex.thread")


async def run_thread(config: ThreadConfig, model: Any, hub: Mailbox[HubInbox], approvals: Mailbox[ApprovalsInbox],
                     store: Mailbox[StoreInbox], recorder: Recorder, registry: Mailbox[RegistryInbox],
                     mailbox: Mailbox[ThreadInbox], inbox: Inbox[ThreadInbox],
                     start: Reply | Resumed | Checkpoint, *, mcp: Mailbox[McpPoolInbox] | None = None,
                     numbers: EventNumbers, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Run a thread: a new one (``start`` is the thread/start reply) or one
    restarted by its supervisor from its last checkpoint. The mailbox belongs
    to the registry, so messages queued during a restart are not lost."""
    actor = ThreadActor(config, model, hub, approvals, store, registry, mailbox)
    actor.recorder = recorder
    actor.mcp = mcp
    actor.numbers = numbers
    # Unified exec processes belong to the thread: they outlive a turn, and
    # go with the thread.
    async with open_process_table() as processes, trio.open_nursery() as nursery:
        actor.processes = processes
        actor.nursery = nursery
        task_status.started()
        if isinstance(start, Reply):
            actor.subscribers[start.conn.id] = start.conn
            await actor.started(start)
        elif isinstance(start, Resumed):
            actor.subscribers[start.reply.conn.id] = start.reply.conn
            await actor.resumed(start)
        else:
            await actor.restarted(start)
        actor._watch_idle()
        async for msg in inbox:
            await actor.handle(msg)


#: How long a new rollout waits for the cwd's git info (a few file reads;
#: a hung network filesystem is what this bounds).
GIT_PROBE_TIMEOUT = 5.0


class ThreadActor:
    """See the package docstring (actors/thread/__init__.py): its state,
    handled one message at a time."""

    nursery: trio.Nursery
    processes: ProcessTable
    recorder: Recorder
    #: The MCP pool (None: no MCP); each turn asks it for the thread's servers.
    mcp: Mailbox[McpPoolInbox] | None
    numbers: EventNumbers  # every event to all the subscribers takes the next one of the thread

    # Defined in :mod:`.actions` (functions of the actor, bound here).
    _user_shell = actions._user_shell
    _review = actions._review
    _start_review = actions._start_review
    _background_terminals = actions._background_terminals
    _inject = actions._inject
    _goal = actions._goal
    _goal_tool = actions._goal_tool
    _store_goal = actions._store_goal
    _account_goal = actions._account_goal
    _continue_goal = actions._continue_goal

    # Defined in :mod:`.turns` (functions of the actor, bound here).
    _steer = turns._steer
    _apply_settings = turns._apply_settings
    _update_settings = turns._update_settings
    _start_turn = turns._start_turn
    _requested_settings = turns._requested_settings
    _overrides = turns._overrides
    _compact = turns._compact
    _compaction = turns._compaction
    _stop = turns._stop
    _after_turn = turns._after_turn
    _revert = turns._revert
    _start_compaction = turns._start_compaction
    _open_turn = turns._open_turn
    _launch_turn = turns._launch_turn
    _interrupt = turns._interrupt
    _own_turn = turns._own_turn
    _approval_gate = turns._approval_gate
    _approval_done = turns._approval_done
    _turn_ended = turns._turn_ended
    _run_notify = turns._run_notify

    def __init__(self, config: ThreadConfig, model: Any, hub: Mailbox[HubInbox], approvals: Mailbox[ApprovalsInbox],
                 store: Mailbox[StoreInbox], registry: Mailbox[RegistryInbox], mailbox: Mailbox[ThreadInbox]) -> None:
        self.config = config
        self.model = model
        self.hub = hub
        self.approvals = approvals
        self.store = store
        self.registry = registry
        self.mailbox = mailbox
        self.subscribers: dict[int, ConnectionRef] = {}
        self.history: tuple[msgspec.Raw, ...] = ()
        self.usage = TokenUsageBreakdown()
        self.preview = ""
        self.updated_at = config.created_at
        self.status: ThreadStatus = Idle()
        #: The lifecycle state: see the package docstring.
        self.state: ThreadState = Ready()
        self.name: str | None = None
        #: Running while the thread is Ready with no subscriber; its
        #: generation names the UnloadDue it sends.
        self.unload_timer: trio.CancelScope | None = None
        self.unload_generation = 0
        #: The rollout writer, started by the first turn (never for an
        #: ephemeral thread), and where it writes.
        self.rollout: Mailbox[AppendRollout] | None = None
        self.rollout_path: Path | None = None
        #: The ordinal of the next rollout line (a resumed file goes on).
        self.next_ordinal = 0
        #: Approval cache keys the user accepted for the session.
        self.session_approvals: set[str] = set()
        #: The thread's git info (index column -> value): what its new
        #: rollout found in the cwd, under what thread/metadata/update set.
        self.git: dict[str, str | None] = {}
        #: A new thread's cwd probe (``started``), read when its rollout is made.
        self._git_probe: tuple[trio.Event, list[GitInfo | None]] | None = None
        #: Tokens in the model's context after the last turn (compaction
        #: starts past the config's limit).
        self.context_tokens = 0
        #: Work that waits for the running turn to end without stopping it
        #: (the user's shell commands), in order.
        self.queued: list[Callable[[], Awaitable[None]]] = []
        #: The thread's goal, once read from the goals database.
        self.goal: ThreadGoal | None | msgspec.UnsetType = msgspec.UNSET
        #: Its turns as the rollout holds them, for thread/read, resume and
        #: history pages: kept from a resume's replay or built on first use,
        #: brought up to date from the file's tail on each use, and dropped
        #: while nobody follows the thread (it is memory a client asked for).
        self.projection: TurnProjection | None = None
        #: Turn time not yet counted in the goal's whole seconds.
        self.goal_ms = 0
        #: The objective the model was last given (its ``goal_objective``
        #: context item), so a continuation adds it only when it changed.
        self.goal_context: str | None = None
        #: The running turn's tokens already counted in the goal (a goal
        #: tool counts them before it changes the goal): (turn id, tokens).
        self.goal_counted: tuple[str, int] = ("", 0)

    async def handle(self, msg: Any) -> None:
        if isinstance(self.state, Unloading) and not isinstance(msg, UnloadDue):
            # The registry sees this message was sent and keeps the thread.
            self.state = Ready()
        await self._dispatch(msg)
        self._watch_idle()

    def _turn(self) -> TurnHandle | None:
        """The turn the thread started and has not seen end, if any."""
        return self.state.turn if isinstance(self.state, (Running, Stopping)) else None

    def _watch_idle(self) -> None:
        """Unload after the delay while no one follows the thread and no
        turn runs; anything that changes that stops the clock."""
        idle = isinstance(self.state, Ready) and not self.subscribers
        if idle:
            self.projection = None
        if idle and self.unload_timer is None:
            self.unload_timer = trio.CancelScope()
            self.unload_generation += 1
            self.nursery.start_soon(self._unload_after, self.unload_timer, self.unload_generation)
        elif not idle and self.unload_timer is not None:
            self.unload_timer.cancel(reason="the thread is followed or busy again")
            self.unload_timer = None

    async def _unload_after(self, timer: trio.CancelScope, generation: int) -> None:
        with timer:
            await trio.sleep(self.config.unload_delay_secs)
            # Decided by the thread's own loop, between two messages.
            await self.mailbox.send(UnloadDue(generation))

    def _unload_due(self, generation: int) -> None:
        """Ask the registry to unload the thread, with how many messages it
        has received: the registry unloads it only if none came since."""
        if generation != self.unload_generation or not isinstance(self.state, Ready) or self.subscribers:
            return
        stats = self.mailbox.statistics()
        if self.registry.send_nowait(UnloadThread(self.config.id, self.mailbox, stats.sent - stats.depth)):
            self.state = Unloading()
        else:
            log.info("thread %s: the registry is full; the unload delay starts over", self.config.id)
            self.unload_timer = None

    async def _dispatch(self, msg: Any) -> None:
        match msg:
            case UpdateSettings(reply=reply, params=params, permissions=perms):
                await self._update_settings(reply, params, perms)
            case StartTurn(reply=reply, params=params, permissions=perms):
                match self.state:
                    case Running():
                        await self._steer(reply, tuple(params.input), None)
                    case Stopping(then=then):
                        then.append(partial(self._dispatch, msg))
                    case _:
                        await self._start_turn(reply, params, perms)
            case SteerTurn(reply=reply, input=inputs, expected_turn_id=expected):
                await self._steer(reply, inputs, expected)
            case InterruptTurn(reply=reply, turn_id=turn_id):
                await self._interrupt(reply, turn_id)
            case TurnEnded() as ended:
                await self._turn_ended(ended)
            case Subscribe(conn=conn):
                self.subscribers[conn.id] = conn
                self._subscribers_changed()
            case Unsubscribe(conn_id=conn_id, reply=reply):
                was = self.subscribers.pop(conn_id, None) is not None
                if was:
                    self._subscribers_changed()
                if reply is not None:
                    await self._to(reply.conn, Response(reply.request_id, ThreadUnsubscribeResponse(
                        "unsubscribed" if was else "notSubscribed")))
            case ApprovalGate(turn_id=turn_id, cache_keys=keys, reply=reply):
                await self._approval_gate(turn_id, keys, reply)
            case ApprovalDone(turn_id=turn_id, cache_keys=keys, for_session=for_session):
                await self._approval_done(turn_id, keys, for_session)
            case Renamed(name=name):
                self.name = name
            case CompactThread(reply=reply):
                await self._compact(reply)
            case ShellCommand(reply=reply, command=command, timeout_ms=timeout_ms):
                await self._to(reply.conn, Response(reply.request_id, {}))
                await self._user_shell(command, timeout_ms)
            case BackgroundTerminals() as request:
                await self._background_terminals(request)
            case InjectItems(reply=reply, items=items):
                await self._inject(reply, items)
            case GoalRequest(reply=reply, params=params):
                await self._goal(reply, params)
            case GoalTool() as call:
                call.reply.set(await self._goal_tool(call))
            case ReviewThread(reply=reply, target=target):
                await self._review(reply, msgspec.to_builtins(target))
            case RevertThread(reply=reply, before_turn_id=before, num_turns=num_turns):
                await self._revert(reply, before, num_turns)
            case PatchGitInfo(reply=reply, patch=patch):
                await self._patch_git(reply, patch)
            case HistoryPage(reply=reply, method=method, params=params):
                try:
                    page = history_page(await self._turns(), method, params)
                except ValueError as exc:
                    await self._to(reply.conn, ErrorResponse(reply.request_id, invalid_request(str(exc)).error))
                except JsonRpcError as exc:
                    await self._to(reply.conn, ErrorResponse(reply.request_id, exc.error))
                else:
                    await self._to(reply.conn, Response(reply.request_id, page))
            case ReadThread(reply=reply, include_turns=include, subscribe=subscribe):
                try:
                    turns = await self._turns() if include else []
                except JsonRpcError as exc:
                    await self._to(reply.conn, ErrorResponse(reply.request_id, exc.error))
                    return
                if subscribe:
                    self.subscribers[reply.conn.id] = reply.conn
                    self._subscribers_changed()
                thread = msgspec.structs.replace(self.wire_thread(), turns=turns)
                result: Any = (self._start_response(thread) if subscribe else ThreadReadResponse(thread))
                await self._to(reply.conn, Response(reply.request_id, result))
                if subscribe:
                    await self.approvals.send(ReplayApprovals(self.config.id, reply.conn))
            case UnloadDue(generation=generation):
                self._unload_due(generation)
            case _:
                raise TypeError(f"thread {self.config.id}: {type(msg).__name__} is not a thread message "
                                "(a bug in its sender)")

    async def _patch_git(self, reply: Reply, patch: dict[str, str | None]) -> None:
        """thread/metadata/update: the thread keeps its git info, and a
        thread with a rollout has the index take it (sent from the loop, so
        in order; its answer awaited beside the loop, so a slow store holds
        up only this request)."""
        indexed: ReplySlot[Any] = ReplySlot()
        if self.rollout_path is not None and not self.store.send_nowait(
                UpdateGitInfo(self.config.id, patch, indexed)):
            await self._to(reply.conn, ErrorResponse(reply.request_id, overloaded().error))
            return
        self.git.update(patch)
        answer = Response(reply.request_id, ThreadReadResponse(self.wire_thread()))
        if self.rollout_path is None:
            await self._to(reply.conn, answer)
        else:
            self.nursery.start_soon(self._answer_indexed, reply, indexed, answer)

    async def _answer_indexed(self, reply: Reply, indexed: ReplySlot[Any], answer: Response) -> None:
        with trio.move_on_after(STORE_TIMEOUT):
            try:
                await indexed.wait()
            except Exception as exc:
                log.warning("thread %s: the index did not take its git info: %r", self.config.id, exc)
            else:
                await deliver((reply.conn,), answer)
                return
        await deliver((reply.conn,), ErrorResponse(reply.request_id, internal_error(
            "thread/metadata/update: the thread index did not take it; try again").error))

    # --- wire objects --------------------------------------------------------

    def wire_thread(self) -> Thread:
        c = self.config
        return Thread(
            id=c.id, session_id=c.id, preview=self.preview, ephemeral=c.ephemeral,
            model_provider=c.model_provider, created_at=c.created_at, updated_at=self.updated_at,
            cwd=c.cwd, cli_version=PROTOCOL_VERSION, source="vscode", status=self.status, turns=[],
            model=c.model, reasoning_effort=c.reasoning_effort, originator=c.originator,
            recency_at=self.updated_at, path=str(self.rollout_path) if self.rollout_path else None,
            name=self.name, forked_from_id=c.forked_from_id, history_mode=c.history_mode,
            git_info=git_info(self.git.get("git_sha"), self.git.get("git_branch"), self.git.get("git_origin_url")),
        )

    # --- sending ---------------------------------------------------------------

    async def _to(self, conn: ConnectionRef, msg: Outbound) -> None:
        await self._drop(await deliver((conn,), msg))

    async def _notify(self, method: str, params: object) -> Notification:
        note = self.numbers.stamp(self.config.id, notification(method, params))
        await self._drop(await deliver(list(self.subscribers.values()), note))
        return note

    async def _broadcast(self, method: str, params: object) -> None:
        """Notify the subscribers, and the hub's other clients too."""
        self.hub.send_nowait(Broadcast(await self._notify(method, params), frozenset(self.subscribers)))

    async def _drop(self, lost: list[ConnectionRef]) -> None:
        if lost:
            for conn in lost:
                self.subscribers.pop(conn.id, None)
            self._subscribers_changed()

    def _subscribers_changed(self) -> None:
        if (turn := self._turn()) is not None:
            # Coalesced when full: this never waits on the turn.
            turn.mailbox.send_nowait(SubscribersChanged(tuple(self.subscribers.values())))

    async def _persist(self, *payloads: Payload, turn_end: bool = False) -> None:
        """Append to the rollout and wait until it reached the OS."""
        if self.config.ephemeral:
            return
        if self.rollout is None:
            c = self.config
            self.rollout_path = self.rollout_path or rollout_path(c.codex_home, c.id, c.created_at * 1000)
            meta = SessionMeta(
                id=c.id, session_id=c.id, timestamp=format_timestamp(c.created_at * 1000), cwd=c.cwd,
                originator=c.originator, cli_version=PROTOCOL_VERSION, source="vscode",
                model_provider=c.model_provider, history_mode=c.history_mode, git=await self._git_found(),
            )
            self.rollout = await self.nursery.start(
                run_rollout_writer, self.rollout_path, meta, self.next_ordinal, c.rollout_fsync)
        try:
            await append(self.rollout, *payloads, turn_end=turn_end)
        except StorageFailure as exc:
            # The writer logged it and keeps refusing until the next turn
            # starts; the running turn fails with it at its next write.
            log.debug("thread %s: %s", self.config.id, exc)

    async def _probe_git(self, done: trio.Event, found: list[GitInfo | None]) -> None:
        try:
            found.append(await trio.to_thread.run_sync(collect_git_info, self.config.cwd, abandon_on_cancel=True))
        finally:
            done.set()

    async def _git_found(self) -> GitInfo | None:
        """The probe's git info for a new rollout (None: no probe, or no
        repository); what it found also fills what metadata/update left unset."""
        if self._git_probe is None:
            return None
        done, found = self._git_probe
        self._git_probe = None
        with trio.move_on_after(GIT_PROBE_TIMEOUT):
            await done.wait()
        git = found[0] if found else None
        if git is not None:
            for key, value in (("git_sha", git.commit_hash), ("git_branch", git.branch),
                               ("git_origin_url", git.repository_url)):
                self.git.setdefault(key, value)
        return git

    def _index(self, last_turn_started: int, texts: tuple[str, ...] = ()) -> None:
        """Keep the listing index in step (best effort: the index is rebuilt
        from the rollouts when it lags)."""
        c = self.config
        if c.ephemeral or self.rollout_path is None:
            return
        self.store.send_nowait(IndexThread(ThreadMeta(
            id=c.id, rollout_path=str(self.rollout_path), created_at=c.created_at * 1000,
            updated_at=self.updated_at * 1000, recency_at=last_turn_started * 1000, source="vscode",
            model_provider=c.model_provider, cwd=c.cwd, cli_version=PROTOCOL_VERSION, originator=c.originator,
            model=c.model, reasoning_effort=c.reasoning_effort, preview=self.preview, history_mode=c.history_mode,
            tokens_used=self.usage.total_tokens, git_sha=self.git.get("git_sha"), git_branch=self.git.get("git_branch"),
            git_origin_url=self.git.get("git_origin_url")), texts))

    async def _set_status(self, status: ThreadStatus) -> None:
        self.status = status
        await self._broadcast("thread/status/changed", ThreadStatusChanged(self.config.id, status))

    # --- handlers ----------------------------------------------------------------

    def _checkpoint(self) -> None:
        # Best-effort: a full registry only means a restart would resume
        # from an older checkpoint.
        self.registry.send_nowait(Checkpoint(
            self.config.id, self.history, self.usage, self.preview, self.updated_at,
            tuple(self.subscribers.values()), turn.id if (turn := self._turn()) else None, self.config))

    async def restarted(self, cp: Checkpoint) -> None:
        self.history, self.usage, self.preview = cp.history, cp.usage, cp.preview
        self.updated_at = cp.updated_at
        self.subscribers = {c.id: c for c in cp.subscribers}
        if cp.active_turn is not None:
            await self._set_status(SystemError())
            for note in lost_turn(self.config.id, cp.active_turn, "was restarted", self.recorder):
                note = self.numbers.stamp(self.config.id, note)
                await self._drop(await deliver(list(self.subscribers.values()), note))
        self._checkpoint()

    def _start_response(self, thread: Thread) -> ThreadStartResponse:
        """The result of thread/start, and of thread/resume (same shape)."""
        c = self.config
        return ThreadStartResponse(
            thread=thread, model=c.model, model_provider=c.model_provider, cwd=c.cwd,
            approval_policy=c.approval_policy, approvals_reviewer=c.approvals_reviewer,
            sandbox=c.sandbox, reasoning_effort=c.reasoning_effort, active_permission_profile=c.permission_profile,
        )

    def _record_started(self, conn_id: int, mode: str) -> None:
        c = self.config
        self.recorder.record(facts.ThreadStarted(
            thread_id=c.id, connection_id=conn_id, model=c.model, model_provider=c.model_provider,
            ephemeral=c.ephemeral, initialization_mode=mode, created_at=c.created_at))

    async def started(self, reply: Reply) -> None:
        if not self.config.ephemeral:
            # Ahead of the first turn, which writes it into the new rollout.
            self._git_probe = (trio.Event(), [])
            self.nursery.start_soon(self._probe_git, *self._git_probe)
        self._record_started(reply.conn.id, "new")
        thread = self.wire_thread()
        await self._to(reply.conn, Response(reply.request_id, self._start_response(thread)))
        await self._broadcast("thread/started", ThreadStarted(thread))

    async def resumed(self, start: Resumed) -> None:
        """Restore from the rollout; answer with the turns it holds and
        replay the token usage, as the original."""
        r = start.replay
        self._record_started(start.reply.conn.id, "forked" if start.forked else "resumed")
        self.history, self.preview, self.name = tuple(r.history), r.meta.preview, r.meta.name
        self.git = {"git_sha": start.git[0], "git_branch": start.git[1], "git_origin_url": start.git[2]}
        self.updated_at = r.meta.updated_at // 1000
        self.next_ordinal = r.next_ordinal
        self.rollout_path = Path(start.path) if start.path else None
        if start.path and r.builder is not None:
            self.projection = TurnProjection(start.path, r.builder, r.consumed)
        if r.token_usage is not None:
            self.usage = TokenUsageBreakdown.of(r.token_usage.total_token_usage)
            self.context_tokens = r.token_usage.last_token_usage.total_tokens
        thread = msgspec.structs.replace(self.wire_thread(), turns=[] if start.exclude_turns else r.turns)
        await self._to(start.reply.conn, Response(start.reply.request_id, self._start_response(thread)))
        if r.token_usage is not None:
            last = r.token_usage.last_token_usage
            await self._notify("thread/tokenUsage/updated", ThreadTokenUsageUpdated(
                self.config.id, r.token_usage_turn_id or "", ThreadTokenUsage(
                    self.usage, TokenUsageBreakdown.of(last), r.token_usage.model_context_window)))
        if start.forked:
            await self._broadcast("thread/started", ThreadStarted(self.wire_thread()))
        self._checkpoint()

    async def _turns(self) -> list[Any]:
        """The thread's turns, as its rollout holds them: the projection,
        after what was appended since it last looked (built on first use).
        Raises ``JsonRpcError`` when the rollout cannot be read."""
        path = self.rollout_path
        if path is None:
            return []
        try:
            if self.projection is None or not self.projection.is_current():
                self.projection = await trio.to_thread.run_sync(follow_rollout, self.projection, path)
        except FileNotFoundError:
            return []  # before the first turn: the writer makes the file
        except (OSError, ValueError) as exc:
            self.projection = None
            raise invalid_request(f"cannot read rollout {path}: {exc}") from None
        return self.projection.turns(turn.id if (turn := self._turn()) else None)


