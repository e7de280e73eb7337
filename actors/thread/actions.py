"""What a thread does beside its turns: the user's shell commands,
reviews, background terminals, injected items and goals (functions of
:class:`~.actor.ThreadActor`, which holds the state, bound as its methods)."""

from __future__ import annotations

import time
from functools import partial
from typing import TYPE_CHECKING, Any

import msgspec
import trio

from ...runtime.persistence import goals
from ...runtime.conversation import review
from ...runtime.kernel.clock import now_ms
from ...runtime.kernel.ids import uuid7
from ...runtime.protocol.jsonrpc import (
    ErrorResponse,
    Response,
    invalid_request,
)
from ...runtime.protocol.v2.item import (
    EnteredReviewModeItem,
    ItemCompleted,
    ItemStarted,
    TextInput,
    UserMessageItem,
)
from ...runtime.protocol.v2.thread import (
    Active,
    ReviewStartResponse,
    ThreadBackgroundTerminal,
    ThreadBackgroundTerminalsListResponse,
    ThreadBackgroundTerminalsTerminateResponse,
    ThreadGoal,
    ThreadGoalClearParams,
    ThreadGoalSetParams,
    ThreadGoalUpdated,
    ThreadIdParams,
)
from ...runtime.protocol.v2.turn import (
    Turn,
    TurnStarted,
)
from ...runtime.persistence.rollout import (
    CoreEnteredReviewMode,
    ItemCompletedEvent,
    ResponseItem,
    TurnStartedEvent,
    UnknownEvent,
)
from ..messages import (
    BackgroundTerminals,
    GoalTool,
    Reply,
    UserShell,
)
from .state import Ready, Running, Stopping

if TYPE_CHECKING:
    from .actor import ThreadActor


async def _user_shell(self: ThreadActor, command: str, timeout_ms: int | None) -> None:
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

async def _review(self: ThreadActor, reply: Reply, target: dict[str, Any]) -> None:
    """review/start, delivered inline as 0.169 does: answered at once
    with the review's turn (its hint as a user message whose id is the
    turn's); the reviewer runs now or once the running turn has ended."""
    turn_id, hint = uuid7(), review.hint(target)
    user = UserMessageItem(id=turn_id, content=[TextInput(hint)])
    await self._to(reply.conn, Response(reply.request_id, ReviewStartResponse(
        Turn(id=turn_id, items=[user], status="inProgress"), self.config.id)))
    await self._start_review(turn_id, target, hint)

async def _start_review(self: ThreadActor, turn_id: str, target: dict[str, Any], hint: str) -> None:
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

async def _background_terminals(self: ThreadActor, request: BackgroundTerminals) -> None:
    """thread/backgroundTerminals/*: the unified exec processes the
    thread's turns left running. Clean kills them all (reaped beside the
    loop); terminate kills one (``terminated: false`` for an unknown id)."""
    reply = request.reply
    result: object
    match request.action:
        case "list":
            terminals = [ThreadBackgroundTerminal(pid, label.get("item_id", ""), label.get("command", ""),
                                                  label.get("cwd", self.config.cwd), os_pid)
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
            result = ThreadBackgroundTerminalsListResponse(
                terminals[start:end], str(end) if end < len(terminals) else None)
        case "clean":
            self.nursery.start_soon(self.processes.close_all)
            result = {}
        case _:
            pid = request.process_id
            running = any(p == pid for p, _label, _os in self.processes.running())
            if running and pid is not None:
                self.processes.terminate(pid)
            result = ThreadBackgroundTerminalsTerminateResponse(running)
    await self._to(reply.conn, Response(reply.request_id, result))

async def _inject(self: ThreadActor, reply: Reply, items: tuple[msgspec.Raw, ...]) -> None:
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

async def _goal(self: ThreadActor, reply: Reply,
                params: ThreadIdParams | ThreadGoalSetParams | ThreadGoalClearParams) -> None:
    """thread/goal/get|set|clear, kept in the goals database as the
    original keeps it; a change is announced to the subscribers after
    the answer (``thread/goal/updated``, ``thread/goal/cleared``)."""
    home, tid = self.config.codex_home, self.config.id
    if self.goal is msgspec.UNSET:
        self.goal = await trio.to_thread.run_sync(goals.read_goal, home, tid)
    goal = self.goal
    if isinstance(params, ThreadIdParams):  # thread/goal/get
        await self._to(reply.conn, Response(reply.request_id, {"goal": goal}))
        return
    if isinstance(params, ThreadGoalClearParams):
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
    await self._notify("thread/goal/updated", ThreadGoalUpdated(tid, turn.id if turn else None, goal))
    # As the original: an idle thread starts pursuing an active goal at once.
    await self._continue_goal()

async def _goal_tool(self: ThreadActor, call: GoalTool) -> str:
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
            await self._notify("thread/goal/updated", ThreadGoalUpdated(self.config.id, call.turn_id, goal))
        goal, new = msgspec.structs.replace(goal, status=call.status, updated_at=now), False
        # Tokens the turn uses from here on still count at its end.
        self.goal_counted = (call.turn_id, max(counted, call.turn_tokens))
    await self._store_goal(goal, new)
    await self._notify("thread/goal/updated", ThreadGoalUpdated(self.config.id, call.turn_id, goal))
    return goals.tool_result(goal, completed=goal.status == "complete")

async def _store_goal(self: ThreadActor, goal: ThreadGoal, new: bool) -> None:
    """Keep ``goal`` in the goals database and, as the original, note
    the change in the rollout."""
    await trio.to_thread.run_sync(goals.write_goal, self.config.codex_home, goal, new)
    self.goal = goal
    if self.rollout is not None:
        await self._persist(UnknownEvent("thread_goal_updated", msgspec.Raw(msgspec.json.encode(
            {"type": "thread_goal_updated", "threadId": self.config.id, "goal": goals.rollout_goal(goal)}))))

async def _account_goal(self: ThreadActor, turn_id: str, tokens: int, duration_ms: int) -> None:
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
    await self._notify("thread/goal/updated", ThreadGoalUpdated(self.config.id, turn_id, goal))

async def _continue_goal(self: ThreadActor) -> None:
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
