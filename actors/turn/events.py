"""The turn's model events: items started and completed, deltas and tool
notifications to the subscribers, token usage (functions of
:class:`~.actor.TurnActor`, bound as its methods)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from ...runtime.kernel.clock import now_ms
from ...runtime.protocol import responses as rs
from ...runtime.protocol.jsonrpc import Notification
from ...runtime.protocol.v2.item import (
    AgentMessageDelta,
    AgentMessageItem,
    ItemCompleted,
    ItemStarted,
    ReasoningItem,
    ReasoningSummaryPartAdded,
    ReasoningSummaryTextDelta,
    ReasoningTextDelta,
)
from ...runtime.protocol.v2.turn import (
    ThreadTokenUsage,
    ThreadTokenUsageUpdated,
    TokenUsageBreakdown,
)
from ...runtime.persistence.rollout import (
    ItemCompletedEvent,
    PlanUpdateEvent,
    ResponseItem,
    TokenCountEvent,
    TokenUsageInfo,
    core_item,
)
from ...runtime.persistence.rollout import TokenUsage as RolloutTokenUsage
from ..messages.fanout import deliver, notification
from ..analytics import facts

if TYPE_CHECKING:
    from .actor import TurnActor


async def _notify(self: TurnActor, method: str, params: object) -> None:
    await self._send(notification(method, params))

async def _tool_notify(self: TurnActor, method: str, params: Any) -> None:
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

async def _send(self: TurnActor, note: Notification) -> None:
    self.spec.numbers.stamp(self.thread_id, note)
    lost = await deliver(self.subscribers, note)
    if lost:
        self.subscribers = tuple(c for c in self.subscribers if c not in lost)

async def _events(self: TurnActor, events: tuple[Any, ...]) -> bool:
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

async def _item_added(self: TurnActor, item: Any) -> None:
    match item:
        case rs.MessageItem(id=item_id):
            self.texts[item_id] = []
            await self._notify("item/started", ItemStarted(
                AgentMessageItem(item_id, ""), self.thread_id, self.turn_id, now_ms()))
        case rs.ReasoningItem(id=item_id):
            await self._notify("item/started", ItemStarted(
                ReasoningItem(item_id), self.thread_id, self.turn_id, now_ms()))

async def _item_done(self: TurnActor, raw: msgspec.Raw, item: Any) -> None:
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

def _token_count(self: TurnActor, last: TokenUsageBreakdown) -> TokenCountEvent:
    return TokenCountEvent(info=TokenUsageInfo(
        total_token_usage=RolloutTokenUsage(**msgspec.structs.asdict(self.usage)),
        last_token_usage=RolloutTokenUsage(**msgspec.structs.asdict(last)),
        model_context_window=self.spec.config.model_context_window))

async def _usage(self: TurnActor, usage: rs.TokenUsage) -> None:
    if self.reviewing:
        return  # the reviewer's tokens are its own context's, not the thread's (the original's sub-agent)
    last = TokenUsageBreakdown.of(usage)
    self.context_tokens = last.total_tokens
    self.usage = self.usage.plus(last)
    await self._usage_updated(last)
    await self.spec.persist(self._token_count(last), wait=False)

async def _usage_updated(self: TurnActor, last: TokenUsageBreakdown) -> None:
    recorder = self.spec.recorder
    if recorder.enabled:
        # The turn's usage so far: what analytics reports if the turn
        # is lost before the thread records it completed.
        recorder.record(facts.TurnTokenUsage(thread_id=self.thread_id, turn_id=self.turn_id,
                                             usage=self.usage.minus(self.spec.usage)))
    await self._notify("thread/tokenUsage/updated", ThreadTokenUsageUpdated(
        self.thread_id, self.turn_id, ThreadTokenUsage(self.usage, last, self.spec.config.model_context_window)))
