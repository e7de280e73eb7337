"""One actor per turn: the sampling loop.

It samples the model with the thread's history plus what this turn added,
streams item events (``item/started``, deltas, ``item/completed``,
``thread/tokenUsage/updated``) straight to the thread's subscribers, and
samples again while the model asks for a follow-up (a tool call's output to
read). When it is over it reports :class:`~.messages.TurnEnded` to its
thread, which writes the closing notifications.

The delta path is two mailbox hops: the model stream sends one
:class:`~.messages.ModelEvents` batch per network read, and each delta
becomes one notification queued on each subscriber's outbox.

Compaction: a ``compact`` turn (thread/compact/start) only compacts; a
regular turn compacts before it samples when the thread's context is past
its limit (``compact_first``), and between two samplings when it gets there
and the model has more to do. The model summarizes the history; the newest
user messages and the summary replace it (``runtime/history.py``), in a
``contextCompaction`` item and a ``compacted`` rollout line.

Interrupt: the thread cancels the turn's scope with a reason. A message that
was streaming gets no ``item/completed`` (as the original); what completed is
kept, and the history records that the user interrupted the turn.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import trio

from ..runtime import review
from ..runtime.errors import ActorGone, AskTimeout, McpCallFailed, StorageFailure
from ..runtime.git import merge_base
from ..runtime.history import (
    SUMMARIZATION_PROMPT,
    compacted_history,
    estimate_tokens,
    summary_text,
    user_message,
)
from ..runtime.ids import uuid7
from ..runtime.ask import ask
from ..runtime.mailbox import Coalesce, Inbox, Mailbox, open_mailbox
from ..runtime.mcp_tools import model_tools
from ..runtime.protocol import responses as rs
from ..runtime.protocol.jsonrpc import Notification
from ..runtime.protocol.v2.thread import ReadOnly
from ..runtime.protocol.tools import turn_tools
from ..runtime.protocol.v2.item import (
    AgentMessageDelta,
    AgentMessageItem,
    ContextCompactionItem,
    ExitedReviewModeItem,
    ItemCompleted,
    ItemStarted,
    ReasoningItem,
    ReasoningSummaryPartAdded,
    ReasoningSummaryTextDelta,
    ReasoningTextDelta,
    TextInput,
    ThreadItem,
    UserMessageItem,
)
from ..runtime.protocol.v2.turn import (
    ErrorNotification,
    ThreadTokenUsage,
    ThreadTokenUsageUpdated,
    TokenUsageBreakdown,
    TurnDiffUpdated,
    TurnError,
)
from ..runtime.rollout import (
    Compacted,
    CoreExitedReviewMode,
    ItemCompletedEvent,
    PlanUpdateEvent,
    ResponseItem,
    TokenCountEvent,
    TokenUsageInfo,
    core_item,
)
from ..runtime.rollout import TokenUsage as RolloutTokenUsage
from .fanout import deliver, notification, now_ms
from .messages import (
    ConnectionRef,
    McpAcquire,
    McpInventory,
    ModelEvents,
    ModelFailed,
    ModelRetrying,
    Steered,
    SubscribersChanged,
    ThreadConfig,
    TurnEnded,
    UserShell,
)
from . import analytics_facts as facts
from .analytics_facts import Recorder
from .model import stream_response
from .process import ProcessTable
from .tools import ToolContext, ToolOutcome, aborted_output, is_parallel, run_tool_call, run_user_shell

log = logging.getLogger("trio_codex.turn")

#: Model event batches and control messages waiting for the turn. The model
#: stream awaits space, so a slow turn slows the socket read, never loses.
TURN_CAPACITY = 64

#: How long the MCP pool may take to answer (it answers at once).
MCP_TIMEOUT = 10.0

#: The tools offered to the model, encoded once.
TOOL_SPECS = turn_tools(goals=True)

DEFAULT_INSTRUCTIONS = (
    "You are Codex, a coding agent. You and the user share the same workspace "
    "and collaborate to achieve the user's goals."
)

_SUMMARIZE = user_message(SUMMARIZATION_PROMPT)

_ABORTED = msgspec.Raw(msgspec.json.encode({
    "type": "message", "role": "user", "content": [{"type": "input_text", "text": (
        "<turn_aborted>\nThe user interrupted the previous turn on purpose. Any running "
        "unified exec processes may still be running in the background. If any tools/commands "
        "were aborted, they may have partially executed.\n</turn_aborted>")}],
}))


class TurnSpec(msgspec.Struct, frozen=True):
    """What a thread hands the turn it starts."""

    config: ThreadConfig
    turn_id: str
    model: Any
    thread: Mailbox
    approvals: Mailbox
    processes: ProcessTable
    recorder: Recorder
    #: Appends to the thread's rollout (``wait=False``: no ack needed); a
    #: no-op for an ephemeral thread.
    persist: Callable[..., Awaitable[None]]
    history: tuple[msgspec.Raw, ...]
    #: The user's message (None for a compact turn) and its Responses item.
    user_item: UserMessageItem | None
    user_raw: msgspec.Raw | None
    usage: TokenUsageBreakdown
    subscribers: tuple[ConnectionRef, ...]
    #: ``regular``, ``compact`` (thread/compact/start), ``shell``
    #: (thread/shellCommand) or ``review`` (review/start).
    kind: str = "regular"
    #: Compact before the user's message joins the history: the thread's
    #: context was past its limit. The turn then records the message itself.
    compact_first: bool = False
    #: Tokens in the model's context as the last response left it.
    context_tokens: int = 0
    #: turn/start's ``outputSchema``: every request of this turn asks the
    #: model for JSON that fits it (``text.format``, strict).
    output_schema: Any = None
    #: A ``shell`` turn's command and timeout (thread/shellCommand).
    shell_command: tuple[str, int | None] | None = None
    #: A ``review`` turn's target (review/start), as the request gave it.
    review_target: dict[str, Any] | None = None
    #: The MCP pool: the turn asks it for the thread's servers (None: no MCP).
    mcp: Mailbox | None = None


async def _kept_out(*_lines: Any, **_options: Any) -> None:
    """The reviewer's persist: its own items stay out of the thread's rollout."""


def user_message_lines(item: UserMessageItem, raw: msgspec.Raw, thread_id: str, turn_id: str) -> tuple[Any, ...]:
    """The rollout lines of a user message: the history item and the
    completed turn item."""
    return (ResponseItem(raw), ItemCompletedEvent.of(core_item(item), thread_id=thread_id, turn_id=turn_id,
                                                      completed_at_ms=now_ms()))


class _Call:
    """One tool call of this turn, in call order."""

    def __init__(self, item: rs.FunctionCallItem | rs.CustomToolCallItem, waits_for: list[_Call]) -> None:
        self.item = item
        self.waits_for = waits_for
        self.done = trio.Event()
        self.started = trio.current_time()
        self.outcome: ToolOutcome | None = None


def open_turn_mailbox(turn_id: str) -> tuple[Mailbox, Inbox]:
    """The mailbox of a turn, which its thread opens, sends to and closes
    (the turn only reads it). What the thread sends never waits for room:
    when the mailbox is full, subscriber changes fold into the latest set and
    steered input into one batch, behind what is queued."""
    return open_mailbox(TURN_CAPACITY, name=f"turn:{turn_id}", policies={
        SubscribersChanged: Coalesce(key=lambda _: "subscribers", merge=lambda _, new: new),
        Steered: Coalesce(key=lambda _: "steered", merge=lambda old, new: Steered(old.items + new.items)),
    })


async def run_turn(spec: TurnSpec, mailbox: Mailbox, inbox: Inbox, scope: trio.CancelScope) -> None:
    """Run one turn, reading ``inbox`` (its model streams send to
    ``mailbox``) under the thread's cancel ``scope``; report
    :class:`~.messages.TurnEnded` last. The thread closes the mailbox when it
    handles that, and keeps what the turn did not read (steered input that
    came too late for the model)."""
    turn = _Turn(spec)
    error: TurnError | None = None
    with scope:
        try:
            error = await turn.run(mailbox, inbox, scope)
        except* StorageFailure as failed:
            # The rollout cannot be written (disk full, read-only): the turn
            # fails with why, rather than report items it could not keep.
            error = TurnError(str(_first_leaf(failed)), "other")
    if scope.cancelled_caught:
        status = "interrupted"
        turn.leave_review()
        before = len(turn.added)
        turn.abort_calls()
        turn.added.append(_ABORTED)
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


def _first_leaf(group: BaseException) -> BaseException:
    while isinstance(group, BaseExceptionGroup):
        group = group.exceptions[0]
    return group


class _Turn:
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
        self.calls: list[_Call] = []  # tool calls of the current sampling request
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

    async def run(self, mailbox: Mailbox, inbox: Inbox, scope: trio.CancelScope) -> TurnError | None:
        spec = self.spec
        if spec.mcp is not None and spec.kind != "compact":
            await self._open_mcp(spec.mcp)
        if spec.kind == "compact":
            return await self._compact(mailbox, inbox, "manual", "standalone_turn")
        if spec.kind == "shell":
            assert spec.shell_command is not None
            record = await run_user_shell(self.tools, *spec.shell_command)
            await spec.persist(ResponseItem(record))
            self.added.append(record)
            return None
        if spec.compact_first:
            error = await self._compact(mailbox, inbox, "auto", "pre_turn")
            if error is not None:
                return error
            assert spec.user_item is not None and spec.user_raw is not None
            await self._notify("item/started", ItemStarted(spec.user_item, self.thread_id, self.turn_id, now_ms()))
            await spec.persist(*user_message_lines(spec.user_item, spec.user_raw, self.thread_id, self.turn_id))
            await self._notify("item/completed", ItemCompleted(spec.user_item, self.thread_id, self.turn_id, now_ms()))
            self.added.append(spec.user_raw)
        if spec.kind == "review":
            await self._enter_review()
            error = await self._sample_loop(mailbox, inbox, scope)
            if error is None:
                await self._exit_review()
            else:
                self.leave_review()  # a failed review leaves nothing in the thread
            return error
        return await self._sample_loop(mailbox, inbox, scope)

    async def _sample_loop(self, mailbox: Mailbox, inbox: Inbox, scope: trio.CancelScope) -> TurnError | None:
        """Sample, run the calls, and sample again while there are calls or
        steered input to answer (compacting past the context limit)."""
        limit = self.spec.config.auto_compact_limit
        while True:
            error = await self._sample_with_tools(mailbox, inbox)
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
                error = await self._compact(mailbox, inbox, "auto", "mid_turn")
                if error is not None:
                    return error

    async def _enter_review(self) -> None:
        """Become the reviewer (``review/start``): a fresh context with the
        review instructions and the target's request, read-only and never
        asking; what it says stays out of the thread's history and rollout
        (and its answer is not reported completed: the rendered review is)."""
        spec = self.spec
        assert spec.review_target is not None
        target = spec.review_target
        base = await merge_base(spec.config.cwd, target["branch"]) if target["type"] == "baseBranch" else None
        request = review.prompt(target, base)
        item = UserMessageItem(id=uuid7(), content=[TextInput(request)])
        await self._notify("item/started", ItemStarted(item, self.thread_id, self.turn_id, now_ms()))
        await self._notify("item/completed", ItemCompleted(item, self.thread_id, self.turn_id, now_ms()))
        self.thread_persist = spec.persist
        self.spec = msgspec.structs.replace(spec, persist=_kept_out)
        self.instructions = review.REVIEW_INSTRUCTIONS
        self.reviewing = True
        self.base, self.added = (), [user_message(request)]
        self.tools = msgspec.structs.replace(self.tools, approval_policy="never", sandbox_policy=ReadOnly())

    def leave_review(self) -> None:
        """Back to the thread: its rollout, and none of the reviewer's items."""
        if self.reviewing:
            self.spec = msgspec.structs.replace(self.spec, persist=self.thread_persist)
            self.reviewing = False
            self.instructions = None
            self.compacted = False  # whatever the reviewer compacted was its own
            self.base, self.added, self.final = self.spec.history, [], []

    async def _exit_review(self) -> None:
        """The reviewer's answer, parsed and rendered, as the original
        reports it: ``exitedReviewMode``, then an agent message with the
        rendered review; the history keeps it as a ``<user_action>`` and the
        assistant's message."""
        last = next((i.text for i in reversed(self.final) if isinstance(i, AgentMessageItem)), "")
        output = review.parse_output(last)
        rendered = review.render(output)
        self.leave_review()
        exited = ExitedReviewModeItem(uuid7(), rendered)
        await self._notify("item/started", ItemStarted(exited, self.thread_id, self.turn_id, now_ms()))
        await self.spec.persist(ItemCompletedEvent.of(CoreExitedReviewMode(id=exited.id, review_output=output),
                                                      thread_id=self.thread_id, turn_id=self.turn_id,
                                                      completed_at_ms=now_ms()))
        await self._notify("item/completed", ItemCompleted(exited, self.thread_id, self.turn_id, now_ms()))
        message = AgentMessageItem(f"msg_{uuid7()}", rendered)
        record = user_message(review.user_action(rendered))
        answer = msgspec.Raw(msgspec.json.encode({"type": "message", "id": message.id, "role": "assistant",
                                                  "content": [{"type": "output_text", "text": rendered}]}))
        await self.spec.persist(ResponseItem(record), ResponseItem(answer), ItemCompletedEvent.of(
            core_item(message), thread_id=self.thread_id, turn_id=self.turn_id, completed_at_ms=now_ms()))
        await self._notify("item/started", ItemStarted(message, self.thread_id, self.turn_id, now_ms()))
        await self._notify("item/completed", ItemCompleted(message, self.thread_id, self.turn_id, now_ms()))
        self.added, self.final = [record, answer], [message]

    async def _sample_with_tools(self, mailbox: Mailbox, inbox: Inbox) -> TurnError | None:
        """One sampling request; the calls it makes run while it streams and
        their outputs join the history in call order."""
        async with trio.open_nursery() as tools:
            self.tool_nursery = tools
            error = await self._sample(mailbox, inbox)
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

    async def _open_mcp(self, pool: Mailbox) -> None:
        """The thread's MCP servers (the current config's: a reload shows on
        the next turn), their tools for the model once each settled."""
        try:
            refs = await ask(pool, lambda slot: McpAcquire(self.thread_id, (), False, slot), timeout=MCP_TIMEOUT)
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
        call = _Call(item, waits)
        self.calls.append(call)
        self.tool_nursery.start_soon(self._run_call, call)

    async def _run_call(self, call: _Call) -> None:
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

    async def _sample(self, mailbox: Mailbox, inbox: Inbox) -> TurnError | None:
        return await self._stream(self._request(), self._events, mailbox, inbox)

    async def _stream(self, request: rs.ResponsesRequest, on_events: Callable[[tuple[Any, ...]], Awaitable[bool]],
                      mailbox: Mailbox, inbox: Inbox) -> TurnError | None:
        """Stream one response; ``on_events`` takes each batch of its events
        and says when the response is complete."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream_response, self.spec.model, request, mailbox)
            while True:
                for msg in await inbox.receive_batch():
                    match msg:
                        case ModelEvents(events=events):
                            if await on_events(events):
                                return None
                        case ModelRetrying(message=message, codex_error_info=info, additional_details=more):
                            self.texts.clear()
                            await self._notify("error", ErrorNotification(
                                TurnError(message, info, more), True, self.thread_id, self.turn_id))
                        case ModelFailed(message=message, codex_error_info=info, additional_details=more):
                            return TurnError(message, info, more)
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

    async def _notify(self, method: str, params: object) -> None:
        await self._send(notification(method, params))

    async def _tool_notify(self, method: str, params: Any) -> None:
        """A tool call's notification. Its completed item reaches the
        rollout before it is reported (``kill -9`` loses nothing reported
        completed), and a plan update is recorded, as the original records
        both."""
        if method == "item/started":
            self.tool_started[params.item.id] = params.started_at_ms
        elif method == "item/completed":
            core = core_item(params.item)
            if core is not None:
                await self.spec.persist(ItemCompletedEvent.of(
                    core, thread_id=self.thread_id, turn_id=self.turn_id,
                    started_at_ms=self.tool_started.pop(params.item.id, None),
                    completed_at_ms=params.completed_at_ms))
        elif method == "turn/plan/updated":
            await self.spec.persist(PlanUpdateEvent(explanation=params.explanation, plan=[
                {"step": s.step, "status": "in_progress" if s.status == "inProgress" else s.status}
                for s in params.plan]), wait=False)
        await self._notify(method, params)

    async def _send(self, note: Notification) -> None:
        lost = await deliver(self.subscribers, note)
        if lost:
            self.subscribers = tuple(c for c in self.subscribers if c not in lost)

    async def _events(self, events: tuple[Any, ...]) -> bool:
        """Handle one batch; True once the response is complete."""
        tid, uid = self.thread_id, self.turn_id
        batch_ms = now_ms()  # one timestamp per network read, not per delta
        for ev in events:
            match ev:
                case rs.OutputTextDelta(item_id=item_id, delta=delta):
                    self.texts.setdefault(item_id, []).append(delta)
                    await self._send(Notification("item/agentMessage/delta",
                                                  AgentMessageDelta(tid, uid, item_id, delta), batch_ms))
                case rs.ReasoningSummaryTextDelta(item_id=item_id, delta=delta, summary_index=i):
                    await self._notify("item/reasoning/summaryTextDelta",
                                       ReasoningSummaryTextDelta(tid, uid, item_id, delta, i))
                case rs.ReasoningSummaryPartAdded(item_id=item_id, summary_index=i):
                    await self._notify("item/reasoning/summaryPartAdded",
                                       ReasoningSummaryPartAdded(tid, uid, item_id, i))
                case rs.ReasoningTextDelta(item_id=item_id, delta=delta, content_index=i):
                    await self._notify("item/reasoning/textDelta", ReasoningTextDelta(tid, uid, item_id, delta, i))
                case rs.OutputItemAdded(item=raw):
                    await self._item_added(rs.decode_item(raw))
                case rs.OutputItemDone(item=raw):
                    await self._item_done(raw, rs.decode_item(raw))
                case rs.ResponseCompleted(response=response):
                    if response.usage is not None:
                        await self._usage(rs.TokenUsage.from_usage(response.usage))
                    return True
        return False

    async def _item_added(self, item: Any) -> None:
        match item:
            case rs.MessageItem(id=item_id):
                self.texts[item_id] = []
                await self._notify("item/started", ItemStarted(
                    AgentMessageItem(item_id, ""), self.thread_id, self.turn_id, now_ms()))
            case rs.ReasoningItem(id=item_id):
                await self._notify("item/started", ItemStarted(
                    ReasoningItem(item_id), self.thread_id, self.turn_id, now_ms()))

    async def _item_done(self, raw: msgspec.Raw, item: Any) -> None:
        self.added.append(raw)
        match item:
            case rs.MessageItem(id=item_id):
                streamed = self.texts.pop(item_id, None)
                done: Any = AgentMessageItem(item_id, item.text or "".join(streamed or ()), phase=item.phase)
                self.final = [done]
            case rs.ReasoningItem(id=item_id):
                done = ReasoningItem(item_id, summary=[p.text for p in item.summary],
                                     content=[p.text for p in item.content or ()])
            case rs.FunctionCallItem() | rs.CustomToolCallItem():
                await self.spec.persist(ResponseItem(raw), wait=False)
                self._start_call(item)
                return
            case _:
                await self.spec.persist(ResponseItem(raw), wait=False)
                return
        # On disk before it is reported: kill -9 loses nothing reported completed.
        await self.spec.persist(ResponseItem(raw), ItemCompletedEvent.of(
            core_item(done), thread_id=self.thread_id, turn_id=self.turn_id, completed_at_ms=now_ms()))
        if not (self.reviewing and isinstance(done, AgentMessageItem)):
            await self._notify("item/completed", ItemCompleted(done, self.thread_id, self.turn_id, now_ms()))

    async def _compact(self, mailbox: Mailbox, inbox: Inbox, trigger: str, phase: str) -> TurnError | None:
        """Have the model summarize the history (no tools), and replace the
        history with the newest user messages and the summary."""
        started_ms, started = now_ms(), trio.current_time()
        item = ContextCompactionItem(uuid7(), started_at_ms=started_ms)
        await self._notify("item/started", ItemStarted(item, self.thread_id, self.turn_id, started_ms))
        history = [*self.base, *self.added]
        before = self.context_tokens
        request = msgspec.structs.replace(self._request(), input=[*history, _SUMMARIZE], tools=[],
                                          parallel_tool_calls=False)
        reply: list[str] = []

        async def on_events(events: tuple[Any, ...]) -> bool:
            for ev in events:
                match ev:
                    case rs.OutputTextDelta(delta=delta):
                        reply.append(delta)
                    case rs.OutputItemDone(item=raw):
                        done = rs.decode_item(raw)
                        if isinstance(done, rs.MessageItem):
                            reply[:] = [done.text or "".join(reply)]
                        await self.spec.persist(ResponseItem(raw), wait=False)
                    case rs.ResponseCompleted(response=response):
                        if response.usage is not None:
                            await self._usage(rs.TokenUsage.from_usage(response.usage))
                        return True
            return False

        error = await self._stream(request, on_events, mailbox, inbox)

        def record(status: str) -> None:
            if self.spec.recorder.enabled:
                self.spec.recorder.record(facts.Compaction(
                    thread_id=self.thread_id, turn_id=self.turn_id, trigger=trigger,
                    reason="user_requested" if trigger == "manual" else "context_limit", status=status,
                    active_context_tokens_before=before, active_context_tokens_after=self.context_tokens,
                    started_at=started_ms // 1000, duration_ms=int((trio.current_time() - started) * 1000),
                    phase=phase, error=error.message if error else None))

        if error is not None:
            self.context_tokens = before
            record("failed")
            return error
        summary = summary_text("".join(reply))
        replacement = compacted_history(history, summary)
        self.base, self.added, self.compacted = tuple(replacement), [], True
        self.context_tokens = estimate_tokens(replacement)
        last = TokenUsageBreakdown(total_tokens=self.context_tokens)
        await self._usage_updated(last)
        done = msgspec.structs.replace(item, completed_at_ms=now_ms())
        await self.spec.persist(
            Compacted(message=summary, replacement_history=replacement),
            self._token_count(last),
            ItemCompletedEvent.of(core_item(done), thread_id=self.thread_id, turn_id=self.turn_id,
                                  completed_at_ms=done.completed_at_ms))
        await self._notify("item/completed", ItemCompleted(done, self.thread_id, self.turn_id, done.completed_at_ms))
        record("completed")
        return None

    def _token_count(self, last: TokenUsageBreakdown) -> TokenCountEvent:
        return TokenCountEvent(info=TokenUsageInfo(
            total_token_usage=RolloutTokenUsage(**msgspec.structs.asdict(self.usage)),
            last_token_usage=RolloutTokenUsage(**msgspec.structs.asdict(last)),
            model_context_window=self.spec.config.model_context_window))

    async def _usage(self, usage: rs.TokenUsage) -> None:
        if self.reviewing:
            return  # the reviewer's tokens are its own context's, not the thread's (the original's sub-agent)
        last = TokenUsageBreakdown.of(usage)
        self.context_tokens = last.total_tokens
        self.usage = self.usage.plus(last)
        await self._usage_updated(last)
        await self.spec.persist(self._token_count(last), wait=False)

    async def _usage_updated(self, last: TokenUsageBreakdown) -> None:
        recorder = self.spec.recorder
        if recorder.enabled:
            # The turn's usage so far: what analytics reports if the turn
            # is lost before the thread records it completed.
            recorder.record(facts.TurnTokenUsage(thread_id=self.thread_id, turn_id=self.turn_id,
                                                 usage=self.usage.minus(self.spec.usage)))
        await self._notify("thread/tokenUsage/updated", ThreadTokenUsageUpdated(
            self.thread_id, self.turn_id, ThreadTokenUsage(self.usage, last, self.spec.config.model_context_window)))

