"""The turn actor: its sampling loop, tool calls and MCP servers; its stream
events and usage are in :mod:`.events`, review mode and compaction in
:mod:`.phases`, what it is given in :mod:`.spec`."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import trio

from ...runtime.kernel.clock import now_ms
from ...runtime.kernel.errors import ActorGone, AskTimeout, McpCallFailed, StorageFailure
from ...runtime.kernel.ask import ask
from ...runtime.kernel.mailbox import Inbox, Mailbox
from ...runtime.mcp.tools import model_tools
from ...runtime.protocol import responses as rs
from ...runtime.protocol.v2.item import (
    ItemCompleted,
    ItemStarted,
    ThreadItem,
)
from ...runtime.protocol.v2.turn import (
    ErrorNotification,
    TurnDiffUpdated,
    TurnError,
    TurnStatus,
)
from ...runtime.persistence.rollout import ResponseItem
from ..messages import (
    McpAcquire,
    McpInventory,
    McpServerRef,
    ModelEvents,
    ModelFailed,
    ModelRetrying,
    Steered,
    SubscribersChanged,
    TurnEnded,
    UserShell,
    McpPoolInbox,
    TurnInbox,
)
from ..model.stream import stream_response
from .tools import ToolContext, aborted_output, is_parallel, run_tool_call, run_user_shell
from . import events
from . import phases
from .spec import (
    ABORTED,
    DEFAULT_INSTRUCTIONS,
    MCP_TIMEOUT,
    TOOL_SPECS,
    TURN_CAPACITY,
    ToolCall,
    TurnSpec,
    user_message_lines,
)

log = logging.getLogger("trio_codex.turn")


async def run_turn(spec: TurnSpec, inbox: Inbox[TurnInbox], scope: trio.CancelScope) -> None:
    """Run one turn, reading the thread's messages from ``inbox``, under
    the thread's cancel ``scope``; report
    :class:`~.messages.TurnEnded` last. The thread closes the mailbox when it
    handles that, and keeps what the turn did not read (steered input that
    came too late for the model)."""
    turn = TurnActor(spec)
    error: TurnError | None = None
    status: TurnStatus
    with scope:
        try:
            error = await turn.run(inbox, scope)
        except* StorageFailure as failed:
            # The rollout cannot be written (disk full, read-only): the turn
            # fails with why, rather than report items it could not keep.
            error = TurnError(str(_first_leaf(failed)), "other")
    if scope.cancelled_caught:
        status = "interrupted"
        turn.leave_review()
        before = len(turn.added)
        turn.abort_calls()
        turn.added.append(ABORTED)
        turn.final = []
        try:
            await turn.spec.persist(*(ResponseItem(raw) for raw in turn.added[before:]))
        except StorageFailure:
            pass  # the writer logged it; the turn ends interrupted all the same
    else:
        status = "failed" if error else "completed"
    # A turn that compacted hands back the whole new history.
    history = (*turn.base, *turn.added) if turn.compacted else tuple(turn.added)
    await spec.thread.send(TurnEnded(spec.turn_id, status, error, history, tuple(turn.final), turn.usage,
                                     replaces_history=turn.compacted, context_tokens=turn.context_tokens))


class _Direct:
    """The model stream's outbox when the turn itself runs the stream: each
    message is handled on the spot, in the stream's task, in wire order.

    Safe without a mailbox between them: the stream is the turn's own
    child, sends nothing else, and waits for each batch to be handled
    exactly as it waited for room in the mailbox (its idle clock stops
    meanwhile, see ``model._put``); a batch is never split or reordered.
    After the response completed or failed, nothing more is sent."""

    __slots__ = ("turn", "on_events", "error", "done")

    def __init__(self, turn: TurnActor, on_events: Callable[[tuple[Any, ...]], Awaitable[bool]]) -> None:
        self.turn = turn
        self.on_events = on_events
        self.error: TurnError | None = None
        self.done = False

    async def send(self, msg: Any) -> None:
        if self.done:
            return
        turn = self.turn
        match msg:
            case ModelEvents(events=events):
                self.done = await self.on_events(events)
            case ModelRetrying(message=message, codex_error_info=info, additional_details=more):
                turn.texts.clear()
                await turn._notify("error", ErrorNotification(
                    TurnError(message, info, more), True, turn.thread_id, turn.turn_id))
            case ModelFailed(message=message, codex_error_info=info, additional_details=more):
                self.error, self.done = TurnError(message, info, more), True


def _first_leaf(group: BaseException) -> BaseException:
    while isinstance(group, BaseExceptionGroup):
        group = group.exceptions[0]
    return group


class TurnActor:
    def __init__(self, spec: TurnSpec) -> None:
        self.spec = spec
        self.thread_id = spec.config.id
        self.turn_id = spec.turn_id
        self.subscribers = spec.subscribers
        #: The history the turn started from, or its compacted replacement.
        self.base = spec.history
        self.compacted = False
        self.context_tokens = spec.context_tokens
        self.added: list[msgspec.Raw] = [] if spec.user_raw is None or spec.compact_first else [spec.user_raw]
        self.usage = spec.usage
        self.final: list[ThreadItem] = []
        self.texts: dict[str, list[str]] = {}  # item id -> deltas of a message in flight
        self.calls: list[ToolCall] = []  # tool calls of the current sampling request
        self.steered: list[msgspec.Raw] = []  # input steered in since the last request
        self.diffs: list[str] = []  # the patches this turn applied, for turn/diff/updated
        self.tool_started: dict[str, int] = {}  # tool item id -> its item/started time
        #: While a review turn runs its reviewer: the reviewer's instructions,
        #: and the thread's own persist (the reviewer's goes nowhere).
        self.reviewing = False
        self.instructions: str | None = None
        self.thread_persist = spec.persist
        self.mcp_tools: list[msgspec.Raw] = []  # the MCP servers' tools for the model
        c = spec.config
        self.tools = ToolContext(
            thread_id=c.id, turn_id=spec.turn_id, cwd=c.cwd, approval_policy=c.approval_policy,
            sandbox_policy=c.sandbox, thread=spec.thread, approvals=spec.approvals,
            processes=spec.processes, notify=self._tool_notify, subscribers=lambda: self.subscribers,
            recorder=spec.recorder, turn_tokens=lambda: self.usage.minus(spec.usage).total_tokens,
        )

    # Defined in :mod:`.phases` (functions of the actor, bound here).
    _enter_review = phases._enter_review
    leave_review = phases.leave_review
    _exit_review = phases._exit_review
    _compact = phases._compact

    # Defined in :mod:`.events` (functions of the actor, bound here).
    _notify = events._notify
    _tool_notify = events._tool_notify
    _send = events._send
    _events = events._events
    _item_added = events._item_added
    _item_done = events._item_done
    _token_count = events._token_count
    _usage = events._usage
    _usage_updated = events._usage_updated

    async def run(self, inbox: Inbox[TurnInbox], scope: trio.CancelScope) -> TurnError | None:
        spec = self.spec
        if spec.mcp is not None and spec.kind != "compact":
            await self._open_mcp(spec.mcp)
        if spec.kind == "compact":
            return await self._compact(inbox, "manual", "standalone_turn")
        if spec.kind == "shell":
            assert spec.shell_command is not None
            record = await run_user_shell(self.tools, *spec.shell_command)
            await spec.persist(ResponseItem(record))
            self.added.append(record)
            return None
        if spec.compact_first:
            error = await self._compact(inbox, "auto", "pre_turn")
            if error is not None:
                return error
            assert spec.user_item is not None and spec.user_raw is not None
            await self._notify("item/started", ItemStarted(spec.user_item, self.thread_id, self.turn_id, now_ms()))
            await spec.persist(*user_message_lines(spec.user_item, spec.user_raw, self.thread_id, self.turn_id))
            await self._notify("item/completed", ItemCompleted(spec.user_item, self.thread_id, self.turn_id, now_ms()))
            self.added.append(spec.user_raw)
        if spec.kind == "review":
            await self._enter_review()
            error = await self._sample_loop(inbox, scope)
            if error is None:
                await self._exit_review()
            else:
                self.leave_review()  # a failed review leaves nothing in the thread
            return error
        return await self._sample_loop(inbox, scope)

    async def _sample_loop(self, inbox: Inbox[TurnInbox], scope: trio.CancelScope) -> TurnError | None:
        """Sample, run the calls, and sample again while there are calls or
        steered input to answer (compacting past the context limit)."""
        limit = self.spec.config.auto_compact_limit
        while True:
            error = await self._sample_with_tools(inbox)
            if any(call.outcome is not None and call.outcome.cancel for call in self.calls):
                scope.cancel(reason="the client answered an approval with cancel")
                await trio.lowlevel.checkpoint()
            # Steered input joins the history after this response and makes
            # the model answer it, as the original's pending input does.
            for msg in inbox.drain_nowait(TURN_CAPACITY):
                match msg:
                    case Steered(items=items):
                        self.steered += items
                    case SubscribersChanged(conns=conns):
                        self.subscribers = conns
                    case UserShell(command=command, timeout_ms=timeout_ms):
                        await self._user_shell(command, timeout_ms)
            followed_up, self.calls = bool(self.calls or self.steered), []
            self.added += self.steered
            self.steered.clear()
            if error is not None or not followed_up:
                return error
            if limit is not None and self.context_tokens >= limit:
                error = await self._compact(inbox, "auto", "mid_turn")
                if error is not None:
                    return error


    async def _sample_with_tools(self, inbox: Inbox[TurnInbox]) -> TurnError | None:
        """One sampling request; the calls it makes run while it streams and
        their outputs join the history in call order."""
        async with trio.open_nursery() as tools:
            self.tool_nursery = tools
            error = await self._sample(inbox)
            if error is not None:
                tools.cancel_scope.cancel(reason="the model stream failed")
        for call in self.calls:
            if call.outcome is not None:
                self.added.append(call.outcome.output)
                await self.spec.persist(ResponseItem(call.outcome.output), wait=False)
                if call.outcome.diff:
                    self.diffs.append(call.outcome.diff)
                    await self._notify("turn/diff/updated", TurnDiffUpdated(
                        self.thread_id, self.turn_id, "".join(self.diffs)))
        return error

    async def _open_mcp(self, pool: Mailbox[McpPoolInbox]) -> None:
        """The thread's MCP servers (the current config's: a reload shows on
        the next turn), their tools for the model once each settled."""
        try:
            refs: dict[str, McpServerRef] = await ask(
                pool, lambda slot: McpAcquire(self.thread_id, (), False, slot), timeout=MCP_TIMEOUT)
        except (AskTimeout, ActorGone) as exc:
            log.warning("thread %s: no MCP tools this turn: %s", self.thread_id, exc)
            return
        if not refs:
            return
        found: dict[str, Any] = {}

        async def inventory(name: str, ref: Any) -> None:
            try:
                found[name] = await ask(ref.mailbox, McpInventory, timeout=ref.config.startup_timeout_sec + MCP_TIMEOUT)
            except (AskTimeout, ActorGone, McpCallFailed):
                pass  # offered without this server's tools

        async with trio.open_nursery() as nursery:
            for name, ref in refs.items():
                nursery.start_soon(inventory, name, ref)
        servers = {name: (ref, found.get(name)) for name, ref in refs.items()}
        self.mcp_tools = model_tools({
            name: [t for t in (inv.tools if inv is not None else ()) if ref.config.allows(t["name"])]
            for name, (ref, inv) in servers.items()})
        self.tools = msgspec.structs.replace(self.tools, mcp=servers)

    def abort_calls(self) -> None:
        """An interrupt cut the calls short: each still owes the model an
        output, as the original fills in."""
        now = trio.current_time()
        for call in self.calls:
            output = call.outcome.output if call.outcome else aborted_output(call.item, now - call.started)
            self.added.append(output)

    def _start_call(self, item: rs.FunctionCallItem | rs.CustomToolCallItem) -> None:
        if is_parallel(item):
            waits = [c for c in self.calls if not is_parallel(c.item)][-1:]
        else:
            waits = list(self.calls)
        call = ToolCall(item, waits)
        self.calls.append(call)
        self.tool_nursery.start_soon(self._run_call, call)

    async def _run_call(self, call: ToolCall) -> None:
        try:
            for earlier in call.waits_for:
                await earlier.done.wait()
            call.started = trio.current_time()
            call.outcome = await run_tool_call(self.tools, call.item)
        finally:
            call.done.set()

    def _request(self) -> rs.ResponsesRequest:
        c = self.spec.config
        reasoning = None
        if c.reasoning_effort:
            reasoning = {"effort": c.reasoning_effort, "summary": c.reasoning_summary or "auto"}
        return rs.ResponsesRequest(
            model=c.model,
            instructions=self.instructions or c.base_instructions or DEFAULT_INSTRUCTIONS,
            input=[*self.base, *self.added],
            tools=[*TOOL_SPECS, *self.mcp_tools] if self.mcp_tools else TOOL_SPECS,
            parallel_tool_calls=True,
            reasoning=reasoning,
            include=["reasoning.encrypted_content"] if reasoning else [],
            prompt_cache_key=self.thread_id,
            text=None if self.spec.output_schema is None else {"format": {
                "type": "json_schema", "strict": True, "schema": self.spec.output_schema,
                "name": "codex_output_schema"}},
        )

    async def _sample(self, inbox: Inbox[TurnInbox]) -> TurnError | None:
        return await self._stream(self._request(), self._events, inbox)

    async def _stream(self, request: rs.ResponsesRequest, on_events: Callable[[tuple[Any, ...]], Awaitable[bool]],
                      inbox: Inbox[TurnInbox]) -> TurnError | None:
        """Stream one response; ``on_events`` takes each batch of its events
        and says when the response is complete.

        The model stream runs in this task, handing each network read's
        events straight to ``on_events`` (see :class:`_Direct`): no mailbox
        hop and no second wake-up per read. The thread's messages are read
        beside it, by :meth:`_control`, which wakes only when the thread
        sends one."""
        direct = _Direct(self, on_events)
        async with trio.open_nursery() as nursery:
            control = trio.CancelScope()
            nursery.start_soon(self._control, inbox, nursery, control)
            try:
                await stream_response(self.spec.model, request, direct)
            finally:
                # Stops reading the inbox only: a user shell started
                # beside the stream still ends before this returns.
                control.cancel()
        return direct.error

    async def _control(self, inbox: Inbox[TurnInbox], nursery: trio.Nursery, scope: trio.CancelScope) -> None:
        """The thread's messages to the turn while it streams. Cancelled
        between two messages (a batch is handled without a checkpoint), so
        none is lost: what is left stays in the inbox."""
        with scope:
            while True:
                for msg in await inbox.receive_batch():
                    match msg:
                        case SubscribersChanged(conns=conns):
                            self.subscribers = conns
                        case Steered(items=items):
                            self.steered += items
                        case UserShell(command=command, timeout_ms=timeout_ms):
                            # Beside the stream; the response ends once it has.
                            nursery.start_soon(self._user_shell, command, timeout_ms)

    async def _user_shell(self, command: str, timeout_ms: int | None) -> None:
        """The user's shell command, run inside this turn: its record joins
        the history as steered input does, so the model answers it."""
        record = await run_user_shell(self.tools, command, timeout_ms)
        await self.spec.persist(ResponseItem(record))
        self.steered.append(record)


