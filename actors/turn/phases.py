"""The turn's phases beside sampling: review mode (entered and left) and
compaction (functions of :class:`~.actor.TurnActor`, bound as its methods)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
import trio

from ...runtime.conversation import review
from ...runtime.kernel.clock import now_ms
from ...runtime.persistence.git import merge_base
from ...runtime.conversation.history import (
    compacted_history,
    estimate_tokens,
    summary_text,
    user_message,
)
from ...runtime.kernel.ids import uuid7
from ...runtime.kernel.mailbox import Inbox
from ...runtime.protocol import responses as rs
from ...runtime.protocol.v2.thread import ReadOnly
from ...runtime.protocol.v2.item import (
    AgentMessageItem,
    ContextCompactionItem,
    ExitedReviewModeItem,
    ItemCompleted,
    ItemStarted,
    TextInput,
    UserMessageItem,
)
from ...runtime.protocol.v2.turn import (
    TokenUsageBreakdown,
    TurnError,
)
from ...runtime.persistence.rollout import (
    Compacted,
    CoreExitedReviewMode,
    ItemCompletedEvent,
    ResponseItem,
    core_item,
)
from ..messages import TurnInbox
from ..analytics import facts
from .spec import (
    SUMMARIZE,
    kept_out,
)

if TYPE_CHECKING:
    from .actor import TurnActor


async def _enter_review(self: TurnActor) -> None:
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
    self.spec = msgspec.structs.replace(spec, persist=kept_out)
    self.instructions = review.REVIEW_INSTRUCTIONS
    self.reviewing = True
    self.base, self.added = (), [user_message(request)]
    self.tools = msgspec.structs.replace(self.tools, approval_policy="never", sandbox_policy=ReadOnly())

def leave_review(self: TurnActor) -> None:
    """Back to the thread: its rollout, and none of the reviewer's items."""
    if self.reviewing:
        self.spec = msgspec.structs.replace(self.spec, persist=self.thread_persist)
        self.reviewing = False
        self.instructions = None
        self.compacted = False  # whatever the reviewer compacted was its own
        self.base, self.added, self.final = self.spec.history, [], []

async def _exit_review(self: TurnActor) -> None:
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

async def _compact(self: TurnActor, inbox: Inbox[TurnInbox], trigger: str, phase: str) -> TurnError | None:
    """Have the model summarize the history (no tools), and replace the
    history with the newest user messages and the summary."""
    started_ms, started = now_ms(), trio.current_time()
    item = ContextCompactionItem(uuid7(), started_at_ms=started_ms)
    await self._notify("item/started", ItemStarted(item, self.thread_id, self.turn_id, started_ms))
    history = [*self.base, *self.added]
    before = self.context_tokens
    request = msgspec.structs.replace(self._request(), input=[*history, SUMMARIZE], tools=[],
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

    error = await self._stream(request, on_events, inbox)

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
    completed_at_ms = now_ms()
    done = msgspec.structs.replace(item, completed_at_ms=completed_at_ms)
    await self.spec.persist(
        Compacted(message=summary, replacement_history=replacement),
        self._token_count(last),
        ItemCompletedEvent.of(core_item(done), thread_id=self.thread_id, turn_id=self.turn_id,
                              completed_at_ms=completed_at_ms))
    await self._notify("item/completed", ItemCompleted(done, self.thread_id, self.turn_id, completed_at_ms))
    record("completed")
    return None
