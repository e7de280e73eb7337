"""One actor per loaded thread.

It owns the thread's subscribers, its history (the Responses items sent to
the model on every request), its token usage and its one active turn. It is
the single writer of the thread's lifecycle notifications; the turn it starts
streams item events to the same subscribers directly (one hop less on the
delta path) and reports back with :class:`~.messages.TurnEnded`.

Order on the wire, as the original: the ``turn/start`` response, then
``thread/status/changed {active}``, ``turn/started``, the user message item;
at the end ``thread/status/changed {idle}`` (``systemError`` and an ``error``
notification when it failed) and ``turn/completed``.

Broadcast notifications (``thread/started``, ``thread/status/changed``) go to
the subscribers directly, in order with everything else, and to every other
initialized connection through the hub.

Lifecycle: one state, :data:`ThreadState`, says what the thread is doing.
The thread opens its turn's mailbox, sends to it without ever waiting for
room (subscriber changes and steered input are coalesced when it is full) and
closes it when it handles the turn's ``TurnEnded``; the turn reads it and
never closes it. So a message that reaches the thread after its turn has stopped reading (but
before ``TurnEnded``) still finds the mailbox open; steered input the turn
never read joins the history, as the original records pending input when a
turn finishes. What each message does in each state:

=================  ==============  =================  ==================  ===========
message            Ready           Running(turn)      Stopping(turn)      Unloading
=================  ==============  =================  ==================  ===========
StartTurn          start a turn    steer it (0.169)   deferred to its end as Ready
SteerTurn          error: no turn  steer it           error: no turn      as Ready
InterruptTurn      error: no turn  cancel: Stopping   answer (stopping)   as Ready
CompactThread      compact turn    cancel: Stopping,  deferred to its end as Ready
                                   then compact
RevertThread       revert          cancel: Stopping,  deferred to its end as Ready
                                   then revert
TurnEnded (its)    stale: dropped  close its mailbox, finish: Ready;     stale: dropped
                                   then the deferred work, in order
TurnEnded (other)  stale: dropped  stale: dropped     stale: dropped      stale: dropped
ApprovalGate/Done  session cache   + its waiting      + its waiting       as Ready
                                   status if its own  status if its own
Subscribe, Unsub-  subscribers     subscribers, and   as Running          as Ready
scribe, ReadThread                 the turn is told
Renamed, Patch-    update          update             update              as Ready
GitInfo
UnloadDue (its)    no subscriber:  ignored            ignored             ignored
                   Unloading
=================  ==============  =================  ==================  ===========

"as Ready": the thread is Ready again first (the registry unloads a thread
only when nothing was sent to it since it asked, see ``UnloadThread``), and
its unload delay starts over. A stale message (for a turn this incarnation
did not start: a predecessor's, before a restart) is logged and dropped. A
message of a class no thread takes is a bug in its sender: the actor
crashes and its supervisor restarts it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import trio

from ..runtime.ask import ReplySlot
from ..runtime.errors import StorageFailure
from ..runtime import collaboration, goals, review
from ..runtime.git import collect_git_info
from ..runtime.history import message_texts, user_texts
from ..runtime.history_pages import TurnProjection, history_page
from ..runtime.ids import uuid7
from ..runtime.mailbox import Inbox, Mailbox
from ..runtime.permissions import Permissions
from ..runtime.notify import notify_payload, run_notifier
from ..runtime.protocol.jsonrpc import (
    ErrorResponse,
    JsonRpcError,
    Notification,
    Outbound,
    Response,
    internal_error,
    invalid_request,
    overloaded,
)
from ..runtime.protocol.v2.item import (
    AgentMessageItem,
    EnteredReviewModeItem,
    ItemCompleted,
    ItemStarted,
    TextInput,
    UserMessageItem,
)
from ..runtime.protocol.v2.thread import (
    Active,
    ActivePermissionProfile,
    Idle,
    SystemError,
    Thread,
    ThreadStarted,
    ThreadReadResponse,
    ThreadStartResponse,
    ThreadStatus,
    NotLoaded,
    SandboxPolicy,
    ThreadGoal,
    ThreadIdParams,
    ThreadRevertResponse,
    ThreadStatusChanged,
    ThreadUnsubscribeResponse,
    git_info,
)
from ..runtime.protocol.v2.turn import (
    ErrorNotification,
    TokenUsageBreakdown,
    Turn,
    TurnCompleted,
    ThreadTokenUsage,
    ThreadTokenUsageUpdated,
    TurnError,
    TurnStarted,
    TurnStartResponse,
    TurnSteerResponse,
)
from ..runtime.rollout import (
    CoreEnteredReviewMode,
    GitInfo,
    ItemCompletedEvent,
    ResponseItem,
    SessionMeta,
    ThreadMeta,
    TurnAbortedEvent,
    TurnCompleteEvent,
    TurnContext,
    TurnStartedEvent,
    UnknownEvent,
    format_timestamp,
    revert_rollout,
    rollout_path,
    snakeize,
)
from ..runtime.rollout import TurnError as RolloutTurnError
from ..runtime.server_info import PROTOCOL_VERSION
from .fanout import deliver, notification, now_ms
from . import analytics_facts as facts
from .analytics_facts import Recorder
from .messages import (
    ApprovalDone,
    ApprovalGate,
    Broadcast,
    Checkpoint,
    BackgroundTerminals,
    ClearApprovals,
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
    Steered,
    Subscribe,
    SubscribersChanged,
    ThreadConfig,
    TurnEnded,
    UserShell,
    UnloadDue,
    UnloadThread,
    Unsubscribe,
)
from .process import ProcessTable, open_process_table
from .rollout_writer import append, run_rollout_writer
from .turn import TURN_CAPACITY, TurnSpec, open_turn_mailbox, run_turn, user_message_lines

log = logging.getLogger("trio_codex.thread")

_INTERRUPT_REASON = "interrupted by the client (turn/interrupt)"


def user_history_item(inputs: list[Any]) -> msgspec.Raw:
    """The Responses input item for a user message."""
    content = [{"type": "input_text", "text": i.text} if isinstance(i, TextInput)
               else {"type": "input_image", "image_url": getattr(i, "url", None) or getattr(i, "path", "")}
               for i in inputs]
    return msgspec.Raw(msgspec.json.encode({"type": "message", "role": "user", "content": content}))


def follow_rollout(projection: TurnProjection | None, path: Path) -> TurnProjection:
    """The turn projection of the rollout at ``path``, built or brought up
    to date (blocking: the thread runs it in a worker thread)."""
    return TurnProjection.load(path) if projection is None else projection.catch_up()


async def run_thread(config: ThreadConfig, model: Any, hub: Mailbox, approvals: Mailbox, store: Mailbox,
                     recorder: Recorder, registry: Mailbox, mailbox: Mailbox, inbox: Inbox,
                     start: Reply | Resumed | Checkpoint, *, mcp: Mailbox | None = None,
                     task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Run a thread: a new one (``start`` is the thread/start reply) or one
    restarted by its supervisor from its last checkpoint. The mailbox belongs
    to the registry, so messages queued during a restart are not lost."""
    actor = ThreadActor(config, model, hub, approvals, store, registry, mailbox)
    actor.recorder = recorder
    actor.mcp = mcp
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


def lost_turn(thread_id: str, turn_id: str, what_then: str,
              recorder: Recorder) -> tuple[Notification, Notification]:
    """What the subscribers of a thread whose actor crashed are told of the
    turn it was running: ``error``, then ``turn/completed`` failed, so no
    client waits for that turn forever. Analytics records it completed too
    (its usage is the last the turn recorded)."""
    error = TurnError(f"the thread's actor failed and {what_then}; this turn was lost", "internalServerError")
    recorder.record(facts.TurnCompleted(thread_id=thread_id, turn_id=turn_id, status="failed", duration_ms=None,
                                        error_info="internalServerError"))
    return (notification("error", ErrorNotification(error, False, thread_id, turn_id)),
            notification("turn/completed", TurnCompleted(thread_id, Turn(
                id=turn_id, items=[], status="failed", error=error, root_turn_id=turn_id))))


#: How long a new rollout waits for the cwd's git info (a few file reads;
#: a hung network filesystem is what this bounds).
GIT_PROBE_TIMEOUT = 5.0


class TurnHandle(msgspec.Struct):
    """The thread's handle on a turn it started: the turn's mailbox (both
    ends: the thread opened it and closes it) and its cancel scope."""

    id: str
    mailbox: Mailbox
    inbox: Inbox
    scope: trio.CancelScope
    started_at: int
    started_monotonic: float
    #: ``regular`` or ``compact``.
    kind: str
    #: Approval prompts of this turn waiting on a client.
    waiting: int = 0

    def close(self) -> tuple[msgspec.Raw, ...]:
        """Close the mailbox of a turn that has ended; return the input
        steered to it that it never read, in order."""
        self.mailbox.close()
        late: list[msgspec.Raw] = []
        while batch := self.inbox.drain_nowait(TURN_CAPACITY):
            late += (item for msg in batch if isinstance(msg, Steered) for item in msg.items)
        self.inbox.close()
        return tuple(late)


class Ready(msgspec.Struct):
    """No turn runs."""


class Unloading(msgspec.Struct):
    """No turn runs and nobody followed the thread for its unload delay: the
    registry was asked to unload it."""


class Running(msgspec.Struct):
    """A turn runs and takes steered input."""

    turn: TurnHandle


class Stopping(msgspec.Struct):
    """The turn was cancelled and has not reported its end yet; ``then``
    runs once it has (deferred turn/start, compaction, revert), in order."""

    turn: TurnHandle
    then: list[Callable[[], Awaitable[None]]]


ThreadState = Ready | Unloading | Running | Stopping


class ThreadActor:
    """See the module docstring; its state, handled one message at a time."""

    nursery: trio.Nursery
    processes: ProcessTable
    recorder: Recorder
    #: The MCP pool (None: no MCP); each turn asks it for the thread's servers.
    mcp: Mailbox | None

    def __init__(self, config: ThreadConfig, model: Any, hub: Mailbox, approvals: Mailbox, store: Mailbox,
                 registry: Mailbox, mailbox: Mailbox) -> None:
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
        #: The lifecycle state: see the module docstring.
        self.state: ThreadState = Ready()
        self.name: str | None = None
        #: Running while the thread is Ready with no subscriber; its
        #: generation names the UnloadDue it sends.
        self.unload_timer: trio.CancelScope | None = None
        self.unload_generation = 0
        #: The rollout writer, started by the first turn (never for an
        #: ephemeral thread), and where it writes.
        self.rollout: Mailbox | None = None
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
            case GoalRequest(reply=reply, action=action, params=params):
                await self._goal(reply, action, params)
            case GoalTool() as call:
                call.reply.set(await self._goal_tool(call))
            case ReviewThread(reply=reply, target=target):
                await self._review(reply, target)
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

    async def _notify(self, method: str, params: object) -> None:
        await self._drop(await deliver(list(self.subscribers.values()), notification(method, params)))

    async def _broadcast(self, method: str, params: object) -> None:
        note = notification(method, params)
        await self._drop(await deliver(list(self.subscribers.values()), note))
        self.hub.send_nowait(Broadcast(note, frozenset(self.subscribers)))

    async def _drop(self, lost: list[ConnectionRef]) -> None:
        if lost:
            for conn in lost:
                self.subscribers.pop(conn.id, None)
            self._subscribers_changed()

    def _subscribers_changed(self) -> None:
        if (turn := self._turn()) is not None:
            # Coalesced when full: this never waits on the turn.
            turn.mailbox.send_nowait(SubscribersChanged(tuple(self.subscribers.values())))

    async def _persist(self, *payloads: Any, turn_end: bool = False) -> None:
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
            tokens_used=self.usage.total_tokens, **self.git), texts))

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

    async def _steer(self, reply: Reply, inputs: tuple[Any, ...], expected: str | None) -> None:
        """More input for the running turn: a userMessage item of that turn,
        persisted, then handed to the turn, which samples again with it.
        ``expected`` None: a turn/start that found the turn running, which
        0.169 answers with the running turn. An interrupted turn
        (Stopping) takes no more input, as the original's."""
        turn = self.state.turn if isinstance(self.state, Running) else None
        error, reason = None, None
        if turn is None:
            error, reason = invalid_request("no active turn to steer"), "no_active_turn"
        elif turn.kind == "compact":
            # The original's words: turn/steer says it in a -32600 with the
            # reason in data; turn/start in a -32603 from deeper down.
            error = (internal_error("failed to submit turn input: ActiveTurnNotSteerable { turn_kind: Compact }")
                     if expected is None else invalid_request("cannot steer a compact turn", {
                         "message": "cannot steer a compact turn",
                         "codexErrorInfo": {"activeTurnNotSteerable": {"turnKind": "compact"}},
                         "additionalDetails": None, "misalignment": None}))
            reason = "active_turn_not_steerable"
        elif expected is not None and expected != turn.id:
            error = invalid_request(f"expected active turn id `{expected}` but found `{turn.id}`")
            reason = "expected_turn_mismatch"
        self.recorder.record(facts.Steer(
            thread_id=self.config.id, connection_id=reply.conn.id, expected_turn_id=expected,
            accepted_turn_id=turn.id if error is None and turn else None,
            result="rejected" if error else "accepted", rejection_reason=reason,
            num_input_images=sum(1 for i in inputs if not isinstance(i, TextInput))))
        if error is not None or turn is None:
            await self._to(reply.conn, ErrorResponse(reply.request_id, error.error))
            return
        result: Any = (TurnSteerResponse(turn.id) if expected is not None else TurnStartResponse(
            Turn(id=turn.id, items=[], status="inProgress", root_turn_id=turn.id)))
        await self._to(reply.conn, Response(reply.request_id, result))
        item = UserMessageItem(id=uuid7(), content=list(inputs))
        raw = user_history_item(list(inputs))
        await self._notify("item/started", ItemStarted(item, self.config.id, turn.id, now_ms()))
        await self._persist(*user_message_lines(item, raw, self.config.id, turn.id))
        await self._notify("item/completed", ItemCompleted(item, self.config.id, turn.id, now_ms()))
        # Coalesced when full: this never waits on the turn.
        turn.mailbox.send_nowait(Steered((raw,)))

    async def _apply_settings(self, settings: ThreadConfig) -> None:
        """Make *settings* the thread's, telling its clients when they differ."""
        if settings == self.config:
            return
        self.config = settings
        await self._notify("thread/settings/updated", {"threadId": settings.id, "threadSettings": {
            "approvalPolicy": settings.approval_policy, "approvalsReviewer": settings.approvals_reviewer,
            "collaborationMode": {"mode": settings.collaboration_mode, "settings": {
                "model": settings.model, "reasoning_effort": settings.reasoning_effort,
                "developer_instructions": collaboration.instructions(
                    settings.collaboration_mode, settings.mode_instructions)
                if settings.collaboration_mode == "plan"
                else settings.mode_instructions or settings.developer_instructions}},
            "cwd": settings.cwd, "model": settings.model, "modelProvider": settings.model_provider,
            "sandboxPolicy": settings.sandbox, "activePermissionProfile": settings.permission_profile,
            "effort": settings.reasoning_effort,
            "summary": settings.reasoning_summary}})

    async def _update_settings(self, reply: Reply, params: Any, perms: Permissions | None) -> None:
        """thread/settings/update: ``{}``, then ``thread/settings/updated``
        when something changed (0.171.0's order); a running turn keeps its
        settings."""
        try:
            settings = self._overrides(params, perms)
        except msgspec.ValidationError as exc:
            await self._to(reply.conn, ErrorResponse(reply.request_id, invalid_request(
                f"Invalid request: invalid sandboxPolicy: {exc}").error))
            return
        await self._to(reply.conn, Response(reply.request_id, {}))
        await self._apply_settings(settings)

    async def _start_turn(self, reply: Reply, params: Any, perms: Permissions | None) -> None:
        try:
            settings = self._overrides(params, perms)
        except msgspec.ValidationError as exc:
            await self._to(reply.conn, ErrorResponse(reply.request_id, invalid_request(
                f"Invalid request: invalid sandboxPolicy: {exc}").error))
            return
        mode_changed = (settings.collaboration_mode, settings.mode_instructions) != (
            self.config.collaboration_mode, self.config.mode_instructions)
        await self._apply_settings(settings)
        turn_id = uuid7()
        started_s = int(time.time())
        user_item = UserMessageItem(id=uuid7(), content=params.input)
        if not self.preview:
            self.preview = next((i.text for i in params.input if isinstance(i, TextInput)), "")
        await self._to(reply.conn, Response(reply.request_id, TurnStartResponse(
            Turn(id=turn_id, items=[], status="inProgress", root_turn_id=turn_id))))
        if self.recorder.enabled:
            c = self.config
            policy = c.approval_policy if isinstance(c.approval_policy, str) else "granular"
            self.recorder.record(facts.TurnStarted(thread_id=c.id, turn_id=turn_id))
            self.recorder.record(facts.TurnResolvedConfig(
                thread_id=c.id, turn_id=turn_id, model=c.model, approval_policy=policy,
                sandbox=type(c.sandbox).__name__, model_provider=c.model_provider,
                reasoning_effort=c.reasoning_effort, reasoning_summary=c.reasoning_summary,
                is_first_turn=not self.history))
        c = self.config
        # Past the context limit the turn compacts first, and then records
        # the user's message itself (after the contextCompaction item).
        compact_first = bool(self.history) and c.auto_compact_limit is not None \
            and self.context_tokens >= c.auto_compact_limit
        raw = user_history_item(params.input)
        mode = collaboration.mode_message(c.collaboration_mode, c.mode_instructions) if mode_changed else None
        if mode is not None:
            # The model is told of the new mode before the message.
            self.history += (mode,)
        await self._open_turn(turn_id, started_s)
        if not compact_first:
            await self._notify("item/started", ItemStarted(user_item, c.id, turn_id, now_ms()))
        await self._persist(
            TurnContext(turn_id=turn_id, root_turn_id=turn_id, cwd=c.cwd, approval_policy=c.approval_policy,
                        sandbox_policy=msgspec.to_builtins(c.sandbox),
                        active_permission_profile=_profile_line(c.permission_profile), model=c.model,
                        effort=c.reasoning_effort, summary=c.reasoning_summary or "auto",
                        collaboration_mode={"mode": c.collaboration_mode, "settings": {
                            "model": c.model, "reasoning_effort": c.reasoning_effort,
                            "developer_instructions": c.mode_instructions}}),
            *(() if mode is None else (ResponseItem(mode),)),
            TurnStartedEvent(turn_id=turn_id, root_turn_id=turn_id, started_at=started_s,
                             model_context_window=c.model_context_window),
            *(() if compact_first else user_message_lines(user_item, raw, c.id, turn_id)),
        )
        if not compact_first:
            await self._notify("item/completed", ItemCompleted(user_item, c.id, turn_id, now_ms()))
        await self._launch_turn(turn_id, started_s, "regular", user_item, raw, compact_first, params.output_schema)

    def _overrides(self, params: Any, perms: Permissions | None) -> ThreadConfig:
        """The thread's settings with a turn/start's overrides, which last
        for the turns after it too, as the original. Its sandbox changes only
        when the request names one: a ``permissions`` profile, or a
        ``sandboxPolicy`` (which leaves no profile, as the original)."""
        c = self.config
        changes = {name: value for name, value in (
            ("cwd", params.cwd), ("approval_policy", params.approval_policy),
            ("approvals_reviewer", params.approvals_reviewer), ("model", params.model),
            ("reasoning_effort", params.effort), ("reasoning_summary", params.summary),
        ) if value is not None and value != getattr(c, name)}
        if (mode := params.collaboration_mode) is not None:
            # A mode's settings choose the model and effort, as the original's.
            changes.update(collaboration_mode=mode.mode, mode_instructions=mode.settings.developer_instructions)
            if mode.settings.model:
                changes["model"] = mode.settings.model
            if mode.settings.reasoning_effort:
                changes["reasoning_effort"] = mode.settings.reasoning_effort
        if perms is not None:
            changes.update(sandbox=perms.sandbox, permission_profile=perms.profile)
        elif params.sandbox_policy is not None:
            changes.update(sandbox=msgspec.convert(params.sandbox_policy, SandboxPolicy), permission_profile=None)
        return msgspec.structs.replace(c, **changes) if changes else c

    async def _compact(self, reply: Reply) -> None:
        """thread/compact/start: answered at once, then a compact turn."""
        await self._to(reply.conn, Response(reply.request_id, {}))
        await self._compaction()

    async def _compaction(self) -> None:
        """A compact turn now, or once the turn has ended (a regular turn is
        interrupted first, as the original does; a compaction running
        already is enough)."""
        match self.state:
            case Running(turn=turn) if turn.kind == "compact":
                pass
            case Running() | Stopping():
                self._after_turn(self._compaction, "thread/compact/start")
            case _:
                await self._start_compaction()

    def _stop(self, turn: TurnHandle, reason: str) -> None:
        """Cancel the turn; it reports its end (TurnEnded) soon."""
        turn.scope.cancel(reason=reason)
        if isinstance(self.state, Running):
            self.state = Stopping(turn, [])

    def _after_turn(self, then: Callable[[], Awaitable[None]], method: str) -> None:
        """Interrupt the turn, and do ``then`` once it has ended."""
        turn = self._turn()
        assert turn is not None
        self._stop(turn, f"interrupted by the client ({method})")
        assert isinstance(self.state, Stopping)
        self.state.then.append(then)

    async def _revert(self, reply: Reply, before: str | None, num_turns: int | None) -> None:
        """Cut the rollout before a turn (the last ``num_turns`` for the
        legacy thread/rollback) and carry on from what is left, once a
        running turn is interrupted. As the original: the thread shows itself
        reloaded (``notLoaded`` then ``idle``), answers, then
        ``thread/reverted``."""
        if self._turn() is not None:
            self._after_turn(partial(self._revert, reply, before, num_turns), "thread/revert")
            return
        c = self.config
        path = self.rollout_path
        try:
            if c.ephemeral:
                raise invalid_request("ephemeral threads do not support thread/revert")
            if before is None:
                turns = await self._turns()
                if len(turns) < (num_turns or 0):
                    raise invalid_request(f"cannot roll back {num_turns} turns: the thread has {len(turns)}")
                before = turns[-(num_turns or 0)].id
            if path is None or not path.exists():
                raise invalid_request(f"turn not found: {before}")
            if self.rollout is not None:
                # Every append was acknowledged: the writer has nothing left.
                self.rollout.close()
                self.rollout = None
            r = await trio.to_thread.run_sync(revert_rollout, path, before)
        except ValueError as exc:
            await self._to(reply.conn, ErrorResponse(reply.request_id, invalid_request(str(exc)).error))
            return
        except StorageFailure as exc:
            await self._to(reply.conn, ErrorResponse(reply.request_id, internal_error(str(exc)).error))
            return
        except JsonRpcError as exc:
            await self._to(reply.conn, ErrorResponse(reply.request_id, exc.error))
            return
        self.history, self.next_ordinal = tuple(r.history), r.next_ordinal
        self.projection = TurnProjection(str(path), r.builder, r.consumed)
        usage = r.token_usage
        self.usage = TokenUsageBreakdown.of(usage.total_token_usage) if usage else TokenUsageBreakdown()
        self.context_tokens = usage.last_token_usage.total_tokens if usage else 0
        self.updated_at = int(time.time())
        self._index(self.updated_at)
        for status in (NotLoaded(), Idle()):
            await self._set_status(status)
        thread = self.wire_thread()
        if num_turns is not None:
            result: Any = ThreadReadResponse(msgspec.structs.replace(thread, turns=r.turns))
        else:
            result = ThreadRevertResponse(thread, "n:0" if r.turns else None,
                                          "n:0" if any(t.items for t in r.turns) else None)
        await self._to(reply.conn, Response(reply.request_id, result))
        if num_turns is None:
            await self._notify("thread/reverted", ThreadIdParams(c.id))
        self._checkpoint()

    async def _start_compaction(self) -> None:
        turn_id, started_s = uuid7(), int(time.time())
        await self._open_turn(turn_id, started_s)
        await self._persist(TurnStartedEvent(turn_id=turn_id, root_turn_id=turn_id, started_at=started_s,
                                             model_context_window=self.config.model_context_window))
        await self._launch_turn(turn_id, started_s, "compact", None, None, False)

    async def _user_shell(self, command: str, timeout_ms: int | None) -> None:
        """thread/shellCommand: a ``commandExecution`` item, ``source:
        userShell``. As the original: inside a running regular turn (the model
        then answers its record); else as a turn of its own, now or once a
        compaction, review or shell turn has ended."""
        match self.state:
            case Running(turn=turn) if turn.kind == "regular" and turn.mailbox.send_nowait(
                    UserShell(command, timeout_ms)):
                pass  # it runs inside the turn, as the original's
            case Running():
                self.queued.append(partial(self._user_shell, command, timeout_ms))
            case Stopping(then=then):
                then.append(partial(self._user_shell, command, timeout_ms))
            case _:
                turn_id, started_s = uuid7(), int(time.time())
                await self._open_turn(turn_id, started_s)
                await self._persist(TurnStartedEvent(turn_id=turn_id, root_turn_id=turn_id, started_at=started_s,
                                                     model_context_window=self.config.model_context_window))
                await self._launch_turn(turn_id, started_s, "shell", None, None, False,
                                        shell_command=(command, timeout_ms))

    async def _review(self, reply: Reply, target: dict[str, Any]) -> None:
        """review/start, delivered inline as 0.169 does: answered at once
        with the review's turn (its hint as a user message whose id is the
        turn's); the reviewer runs now or once the running turn has ended."""
        turn_id, hint = uuid7(), review.hint(target)
        user = UserMessageItem(id=turn_id, content=[TextInput(hint)])
        await self._to(reply.conn, Response(reply.request_id, {
            "turn": Turn(id=turn_id, items=[user], status="inProgress"), "reviewThreadId": self.config.id}))
        await self._start_review(turn_id, target, hint)

    async def _start_review(self, turn_id: str, target: dict[str, Any], hint: str) -> None:
        """As the original: ``enteredReviewMode`` first, then the thread is
        active and ``turn/started`` names the reviewer's own turn, whose root
        is the review's; everything after carries the review's turn id."""
        match self.state:
            case Running():
                self.queued.append(partial(self._start_review, turn_id, target, hint))
                return
            case Stopping(then=then):
                then.append(partial(self._start_review, turn_id, target, hint))
                return
        c = self.config
        entered = EnteredReviewModeItem(uuid7(), hint)
        await self._notify("item/started", ItemStarted(entered, c.id, turn_id, now_ms()))
        await self._notify("item/completed", ItemCompleted(entered, c.id, turn_id, now_ms()))
        started_s = int(time.time())
        await self._set_status(Active())
        await self._notify("turn/started", TurnStarted(c.id, Turn(
            id=uuid7(), items=[], status="inProgress", started_at=started_s, root_turn_id=turn_id)))
        # The original writes the entered item first; here the turn's start
        # comes first so that the replay files the item under its turn.
        await self._persist(TurnStartedEvent(turn_id=turn_id, root_turn_id=turn_id, started_at=started_s,
                                             model_context_window=c.model_context_window),
                            ItemCompletedEvent.of(CoreEnteredReviewMode(id=entered.id, target=target,
                                                                        user_facing_hint=hint),
                                                  thread_id=c.id, turn_id=turn_id, completed_at_ms=now_ms()))
        await self._launch_turn(turn_id, started_s, "review", None, None, False, review_target=target)

    async def _background_terminals(self, request: BackgroundTerminals) -> None:
        """thread/backgroundTerminals/*: the unified exec processes the
        thread's turns left running. Clean kills them all (reaped beside the
        loop); terminate kills one (``terminated: false`` for an unknown id)."""
        reply = request.reply
        result: Any
        match request.action:
            case "list":
                terminals = [{"processId": pid, "itemId": label.get("item_id", ""),
                              "command": label.get("command", ""), "cwd": label.get("cwd", self.config.cwd),
                              "osPid": os_pid, "cpuPercent": None, "rssKb": None}
                              for pid, label, os_pid in self.processes.running()]
                cursor = request.cursor
                if cursor is not None and not (cursor.isascii() and cursor.isdigit()):
                    # Rust's words for a cursor that is no usize.
                    why = "cannot parse integer from empty string" if not cursor else "invalid digit found in string"
                    await self._to(reply.conn, ErrorResponse(reply.request_id, invalid_request(
                        f"invalid cursor: {why}").error))
                    return
                start = int(cursor) if cursor is not None else 0
                end = start + (request.limit or len(terminals) or 1)
                result = {"data": terminals[start:end], "nextCursor": str(end) if end < len(terminals) else None}
            case "clean":
                self.nursery.start_soon(self.processes.close_all)
                result = {}
            case _:
                pid = request.process_id
                running = any(p == pid for p, _label, _os in self.processes.running())
                if running:
                    self.processes.terminate(pid)
                result = {"terminated": running}
        await self._to(reply.conn, Response(reply.request_id, result))

    async def _inject(self, reply: Reply, items: tuple[msgspec.Raw, ...]) -> None:
        """thread/inject_items: the items join the model-visible history
        (and the rollout) as they are; no turn, no notification."""
        for index, raw in enumerate(items):
            item = msgspec.json.decode(raw)
            if not isinstance(item, dict) or not isinstance(item.get("type"), str):
                why = ("missing field `type`" if isinstance(item, dict) else
                       f"invalid type: {_serde_kind(item)}, expected internally tagged enum ResponseItem")
                await self._to(reply.conn, ErrorResponse(reply.request_id, invalid_request(
                    f"items[{index}] is not a valid response item: {why}").error))
                return
        await self._persist(*(ResponseItem(raw) for raw in items))
        self.history += items
        self._checkpoint()
        await self._to(reply.conn, Response(reply.request_id, {}))

    async def _goal(self, reply: Reply, action: str, params: Any) -> None:
        """thread/goal/get|set|clear, kept in the goals database as the
        original keeps it; a change is announced to the subscribers after
        the answer (``thread/goal/updated``, ``thread/goal/cleared``)."""
        home, tid = self.config.codex_home, self.config.id
        if self.goal is msgspec.UNSET:
            self.goal = await trio.to_thread.run_sync(goals.read_goal, home, tid)
        goal = self.goal
        if action == "get":
            await self._to(reply.conn, Response(reply.request_id, {"goal": goal}))
            return
        if action == "clear":
            cleared = await trio.to_thread.run_sync(goals.delete_goal, home, tid)
            self.goal, self.goal_context = None, None
            await self._to(reply.conn, Response(reply.request_id, {"cleared": cleared}))
            if cleared:
                await self._notify("thread/goal/cleared", ThreadIdParams(tid))
            return
        now = int(time.time())
        objective = params.objective.strip() if params.objective is not None else None
        new = goal is None
        if objective == "" or (goal is None and objective is None):
            await self._to(reply.conn, ErrorResponse(reply.request_id, invalid_request(
                "goal objective must not be empty" if objective == "" else
                f"cannot update goal for thread {tid}: no goal exists").error))
            return
        if goal is None:
            goal = ThreadGoal(tid, objective or "", params.status or "active", params.token_budget, 0, 0, now, now)
        else:
            # As the original: a new objective updates the goal, keeping
            # its status, budget and creation time unless they are given.
            goal = msgspec.structs.replace(
                goal, objective=objective or goal.objective, status=params.status or goal.status, updated_at=now,
                token_budget=params.token_budget if params.token_budget is not None else goal.token_budget)
        await self._store_goal(goal, new)
        await self._to(reply.conn, Response(reply.request_id, {"goal": goal}))
        turn = self._turn()
        await self._notify("thread/goal/updated", {"threadId": tid, "turnId": turn.id if turn else None,
                                                   "goal": goal})
        # As the original: an idle thread starts pursuing an active goal at once.
        await self._continue_goal()

    async def _goal_tool(self, call: GoalTool) -> str:
        """The model's goal tools, as the original answers them; a change
        is announced (``thread/goal/updated`` with the turn's id)."""
        if self.goal is msgspec.UNSET:
            self.goal = await trio.to_thread.run_sync(goals.read_goal, self.config.codex_home, self.config.id)
        goal, now = self.goal, int(time.time())
        if call.name == "get_goal":
            return goals.tool_result(goal)
        if call.name == "create_goal":
            objective = (call.objective or "").strip()
            if not objective:
                return goals.EMPTY_OBJECTIVE
            if call.token_budget is not None and call.token_budget <= 0:
                return goals.BAD_BUDGET
            if goal is not None and goal.status != "complete":
                return goals.UNFINISHED
            goal, new = ThreadGoal(self.config.id, objective, "active", call.token_budget, 0, 0, now, now), True
        elif goal is None:
            return goals.NO_GOAL
        elif call.status not in goals.MODEL_STATUSES:
            return goals.NOT_MODEL_STATUS
        else:
            # As the original: the turn's tokens so far are counted first.
            counted = self.goal_counted[1] if self.goal_counted[0] == call.turn_id else 0
            if goal.status in goals.ACCOUNTED and call.turn_tokens > counted:
                goal = goals.account(goal, call.turn_tokens - counted, 0, now)
                await self._store_goal(goal, False)
                await self._notify("thread/goal/updated", {"threadId": self.config.id, "turnId": call.turn_id,
                                                           "goal": goal})
            goal, new = msgspec.structs.replace(goal, status=call.status, updated_at=now), False
            # Tokens the turn uses from here on still count at its end.
            self.goal_counted = (call.turn_id, max(counted, call.turn_tokens))
        await self._store_goal(goal, new)
        await self._notify("thread/goal/updated", {"threadId": self.config.id, "turnId": call.turn_id, "goal": goal})
        return goals.tool_result(goal, completed=goal.status == "complete")

    async def _store_goal(self, goal: ThreadGoal, new: bool) -> None:
        """Keep ``goal`` in the goals database and, as the original, note
        the change in the rollout."""
        await trio.to_thread.run_sync(goals.write_goal, self.config.codex_home, goal, new)
        self.goal = goal
        if self.rollout is not None:
            await self._persist(UnknownEvent("thread_goal_updated", msgspec.Raw(msgspec.json.encode(
                {"type": "thread_goal_updated", "threadId": self.config.id, "goal": goals.rollout_goal(goal)}))))

    async def _account_goal(self, turn_id: str, tokens: int, duration_ms: int) -> None:
        """At a turn's end, as the original: the goal being pursued counts
        the turn's tokens and time (``thread/goal/updated`` with the turn's
        id, before the turn is reported completed)."""
        if self.goal is msgspec.UNSET:
            self.goal = await trio.to_thread.run_sync(goals.read_goal, self.config.codex_home, self.config.id)
        goal = self.goal
        # A goal the model changed this turn counts the turn's remaining
        # tokens whatever its new status.
        touched = self.goal_counted[0] == turn_id
        counted = self.goal_counted[1] if touched else 0
        self.goal_counted = ("", 0)
        if goal is None or not (goal.status in goals.ACCOUNTED or touched) or (touched and tokens <= counted):
            return
        self.goal_ms += duration_ms
        goal = goals.account(goal, tokens - counted, self.goal_ms, int(time.time()))
        self.goal_ms %= 1000
        await self._store_goal(goal, False)
        await self._notify("thread/goal/updated", {"threadId": self.config.id, "turnId": turn_id, "goal": goal})

    async def _continue_goal(self) -> None:
        """An idle thread whose goal is ``active`` starts a continuation
        turn, as the original's goal runtime: no user message; the model is
        given the objective (when it changed) and asked to go on."""
        goal = self.goal
        if not isinstance(self.state, Ready) or not isinstance(goal, ThreadGoal) or goal.status != "active":
            return
        c = self.config
        turn_id, started_s = uuid7(), int(time.time())
        context = () if self.goal_context == goal.objective else (goals.objective_item(goal.objective),)
        self.goal_context = goal.objective
        self.history += context
        request = goals.continuation_message(goal)
        await self._open_turn(turn_id, started_s)
        await self._persist(TurnStartedEvent(turn_id=turn_id, root_turn_id=turn_id, started_at=started_s,
                                             model_context_window=c.model_context_window),
                            *(ResponseItem(raw) for raw in (*context, request)))
        await self._launch_turn(turn_id, started_s, "regular", None, request, False)

    async def _open_turn(self, turn_id: str, started_s: int) -> None:
        await self._set_status(Active())
        await self._notify("turn/started", TurnStarted(self.config.id, Turn(
            id=turn_id, items=[], status="inProgress", started_at=started_s, root_turn_id=turn_id)))

    async def _launch_turn(self, turn_id: str, started_s: int, kind: str, user_item: UserMessageItem | None,
                           raw: msgspec.Raw | None, compact_first: bool, output_schema: Any = None,
                           shell_command: tuple[str, int | None] | None = None,
                           review_target: dict[str, Any] | None = None) -> None:
        mailbox, inbox = open_turn_mailbox(turn_id)
        turn = TurnHandle(turn_id, mailbox, inbox, trio.CancelScope(), started_s, time.monotonic(), kind)
        spec = TurnSpec(
            config=self.config, turn_id=turn_id, model=self.model, thread=self.mailbox,
            approvals=self.approvals, processes=self.processes, recorder=self.recorder,
            persist=partial(append, self.rollout), history=self.history, user_item=user_item, user_raw=raw,
            usage=self.usage, subscribers=tuple(self.subscribers.values()), kind=kind,
            compact_first=compact_first, context_tokens=self.context_tokens, output_schema=output_schema,
            shell_command=shell_command, review_target=review_target, mcp=self.mcp,
        )
        self.state = Running(turn)
        self.nursery.start_soon(run_turn, spec, mailbox, inbox, turn.scope)
        self._checkpoint()

    async def _interrupt(self, reply: Reply, turn_id: str) -> None:
        """Stop the thread's turn ``turn_id``. An empty ``turn_id`` means
        whichever turn runs, and is answered ``{}`` when none does, as the
        original answers the TUI, which sends it when it leaves a side
        conversation or logs out."""
        turn = self._turn()
        if turn is None and not turn_id:
            await self._to(reply.conn, Response(reply.request_id, {}))
            return
        if turn is None:
            error = invalid_request("no active turn to interrupt")
        elif turn_id and turn.id != turn_id:
            error = invalid_request(f"expected active turn id {turn_id} but found {turn.id}")
        else:
            self._stop(turn, _INTERRUPT_REASON)
            await self._to(reply.conn, Response(reply.request_id, {}))
            return
        await self._to(reply.conn, ErrorResponse(reply.request_id, error.error))

    def _own_turn(self, turn_id: str, what: str) -> TurnHandle | None:
        """The thread's turn if it is ``turn_id``; else None, logged: a
        stale message (a predecessor's turn, before a restart)."""
        turn = self._turn()
        if turn is not None and turn.id == turn_id:
            return turn
        log.warning("thread %s: %s of turn %s, which is not its turn (%s); dropped", self.config.id, what, turn_id,
                    turn.id if turn else "none runs")
        return None

    async def _approval_gate(self, turn_id: str, keys: tuple[str, ...], reply: Any) -> None:
        if keys and self.session_approvals.issuperset(keys):
            reply.set(True)
            return
        reply.set(False)
        turn = self._own_turn(turn_id, "an approval prompt")
        if turn is not None:
            turn.waiting += 1
            if turn.waiting == 1:
                await self._set_status(Active(["waitingOnApproval"]))

    async def _approval_done(self, turn_id: str, keys: tuple[str, ...], for_session: bool) -> None:
        if for_session:
            self.session_approvals.update(keys)
        turn = self._own_turn(turn_id, "an approval answer")
        if turn is not None and turn.waiting > 0:
            turn.waiting -= 1
            if turn.waiting == 0:
                await self._set_status(Active())

    async def _turn_ended(self, ended: TurnEnded) -> None:
        turn = self._own_turn(ended.turn_id, "the end")
        if turn is None:
            return
        then = self.state.then if isinstance(self.state, Stopping) else []
        self.state = Ready()
        late = turn.close()
        usage_before = self.usage
        self.history = (ended.history if ended.replaces_history else self.history + ended.history) + late
        self.context_tokens = ended.context_tokens
        if ended.usage is not None:
            self.usage = ended.usage
        self.updated_at = int(time.time())
        duration_ms = int((time.monotonic() - turn.started_monotonic) * 1000)
        last = next((i.text for i in reversed(ended.items) if isinstance(i, AgentMessageItem)), None)
        if ended.status == "interrupted":
            closing: Any = TurnAbortedEvent(turn_id=turn.id, root_turn_id=turn.id, reason="interrupted",
                                            started_at=turn.started_at, completed_at=self.updated_at,
                                            duration_ms=duration_ms)
        else:
            error = ended.error and RolloutTurnError(message=ended.error.message,
                                                     codex_error_info=snakeize(ended.error.codex_error_info))
            closing = TurnCompleteEvent(turn_id=turn.id, root_turn_id=turn.id, last_agent_message=last,
                                        error=error, started_at=turn.started_at, completed_at=self.updated_at,
                                        duration_ms=duration_ms)
        await self._persist(closing, turn_end=True)
        self._index(turn.started_at, () if ended.replaces_history else tuple(message_texts(ended.history + late)))
        tokens = self.usage.minus(usage_before).total_tokens
        if tokens or ended.status != "interrupted":
            # As the original: an interrupt before any usage counts nothing.
            await self._account_goal(turn.id, tokens, duration_ms)
        if ended.status == "failed":
            await self._set_status(SystemError())
            await self._notify("error", ErrorNotification(ended.error, False, self.config.id, turn.id))
        else:
            await self._set_status(Idle())
        if ended.status == "completed" and self.config.notify and turn.kind != "shell":
            await self._run_notify(turn.id, last)
        await self._notify("turn/completed", TurnCompleted(self.config.id, Turn(
            id=turn.id, items=list(ended.items), status=ended.status,
            items_view="summary" if ended.items else "notLoaded", error=ended.error,
            started_at=turn.started_at, completed_at=self.updated_at,
            duration_ms=duration_ms, root_turn_id=turn.id,
        )))
        if self.recorder.enabled:
            self.recorder.record(facts.TurnCompleted(
                thread_id=self.config.id, turn_id=turn.id, status=ended.status, duration_ms=duration_ms,
                error_info=str(ended.error.codex_error_info) if ended.error else None,
                usage=self.usage.minus(usage_before)))
        await self.approvals.send(ClearApprovals(self.config.id, turn.id))
        self._checkpoint()
        queued, self.queued = self.queued, []
        for step in (*then, *queued):
            await step()
        # A goal is pursued after a turn that did something; one that failed,
        # was interrupted or answered nothing waits for the user, so errors
        # cannot loop.
        if ended.status == "completed" and ended.items:
            await self._continue_goal()

    async def _run_notify(self, turn_id: str, last: str | None) -> None:
        """config.toml ``notify``: the program is spawned before the turn is
        reported completed, and watched beside the thread (never awaited)."""
        c = self.config
        payload = notify_payload(thread_id=c.id, turn_id=turn_id, cwd=c.cwd, client=c.originator or None,
                                 input_messages=user_texts(self.history), last_assistant_message=last)
        await self.nursery.start(run_notifier, c.notify, payload)


def _serde_kind(value: Any) -> str:
    """How serde names a JSON value it did not expect (``integer `3```)."""
    match value:
        case bool():
            return f"boolean `{str(value).lower()}`"
        case int():
            return f"integer `{value}`"
        case float():
            return f"floating point `{value}`"
        case str():
            return f"string {msgspec.json.encode(value).decode()}"
        case list():
            return "sequence"
        case None:
            return "null"
    return "map"


def _profile_line(profile: ActivePermissionProfile | None) -> dict[str, str] | None:
    """A profile as the original's turn_context line holds it: ``{"id": ...}``."""
    if profile is None:
        return None
    return {"id": profile.id, **({"extends": profile.extends} if profile.extends else {})}
