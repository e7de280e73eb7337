"""Thread goals (``thread/goal/get|set|clear``), kept where the original
keeps them: the ``thread_goals`` table of ``$CODEX_HOME/goals_1.sqlite``, one
row per thread, status in snake_case, times in milliseconds. Blocking
sqlite3 calls: run them in a worker thread.

While a goal is ``active`` the thread pursues it on its own, as the
original's goal runtime does: each turn's tokens and time are added to the
goal (:func:`account`; past its ``tokenBudget`` it is ``budgetLimited``),
and an idle thread starts a continuation turn whose model input is the
objective (a ``goal_objective`` context item, :func:`objective_item`) and a
request to go on (:func:`continuation_message`), with no user message of its
own."""

from __future__ import annotations

import contextlib
import re
import sqlite3
import uuid
from pathlib import Path
from typing import cast

import msgspec

from ..protocol.v2.thread import GoalStatus, ThreadGoal

GOALS_DB = "goals_1.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS thread_goals (
    thread_id TEXT PRIMARY KEY NOT NULL,
    goal_id TEXT NOT NULL,
    objective TEXT NOT NULL,
    status TEXT NOT NULL CHECK(status IN ('active', 'paused', 'blocked', 'usage_limited', 'budget_limited',
                                          'complete')),
    token_budget INTEGER,
    tokens_used INTEGER NOT NULL DEFAULT 0,
    time_used_seconds INTEGER NOT NULL DEFAULT 0,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
)
"""


def rollout_goal(goal: ThreadGoal) -> dict[str, object]:
    """A goal as the original's ``thread_goal_updated`` rollout event holds
    it: camelCase, no ``tokenBudget`` when there is none."""
    out = msgspec.to_builtins(goal)
    if out.get("tokenBudget") is None:
        out.pop("tokenBudget", None)
    return out


#: The statuses whose goal is still pursued, so accounted each turn (a
#: budget-limited goal keeps counting, as the original's).
ACCOUNTED = frozenset({"active", "budgetLimited"})


def account(goal: ThreadGoal, tokens: int, elapsed_ms: int, now: int) -> ThreadGoal:
    """``goal`` after a turn that used ``tokens`` and, with the time not
    yet counted, ``elapsed_ms`` (whole seconds are added): an active goal
    whose tokens reach its budget becomes ``budgetLimited``."""
    used = goal.tokens_used + tokens
    status = goal.status
    if status == "active" and goal.token_budget is not None and used >= goal.token_budget:
        status = "budgetLimited"
    return msgspec.structs.replace(goal, tokens_used=used, status=status, updated_at=now,
                                   time_used_seconds=goal.time_used_seconds + elapsed_ms // 1000)


def objective_item(objective: str) -> msgspec.Raw:
    """The objective as the model sees it, as the original gives it: a
    ``goal_objective`` output in the ``agent`` namespace."""
    return msgspec.Raw(msgspec.json.encode({"type": "function_call_output", "name": "goal_objective",
                                            "namespace": "agent", "output": objective}))


def continuation_message(goal: ThreadGoal) -> msgspec.Raw:
    """The user-role request of a continuation turn: go on with the goal,
    its budget so far, and when to call ``update_goal`` (our wording of the
    original's ``goals/continuation.md``; the budget lines are its)."""
    budget = "none" if goal.token_budget is None else str(goal.token_budget)
    remaining = "unbounded" if goal.token_budget is None else str(max(goal.token_budget - goal.tokens_used, 0))
    text = (
        '<codex_internal_context source="goal">\n'
        "Continue working toward the active thread goal.\n\n"
        "Use the current goal_objective context as the task to pursue. If the objective is missing or "
        "truncated, retrieve the full objective with get_goal.\n\n"
        "Continuation behavior:\n"
        "- The goal persists across turns: keep the full objective, make concrete progress toward it and "
        "leave the goal active if it cannot be finished now.\n\n"
        f"Budget:\n- Tokens used: {goal.tokens_used}\n- Token budget: {budget}\n- Tokens remaining: {remaining}\n\n"
        "Work from evidence: inspect the current state of the worktree and of anything external before relying "
        "on earlier turns.\n\n"
        "Completion: mark the goal complete (update_goal with status \"complete\") only when current evidence "
        "proves every requirement of the objective is met. Use status \"blocked\" only when the same blocker "
        "has repeated for at least three consecutive goal turns, and \"paused\" only at the user's explicit "
        "request.\n\n"
        "</codex_internal_context>")
    return msgspec.Raw(msgspec.json.encode({"type": "message", "role": "user",
                                            "content": [{"type": "input_text", "text": text}]}))


#: Statuses the model may set with ``update_goal``.
MODEL_STATUSES = frozenset({"complete", "blocked", "paused"})
#: The original's tool errors and its note on a completed goal.
NO_GOAL = "cannot update goal because this thread has no goal"
EMPTY_OBJECTIVE = "goal objective must not be empty"
BAD_BUDGET = "goal budgets must be positive when provided"
UNFINISHED = ("cannot create a new goal because this thread has an unfinished goal; complete the existing goal "
              "first")
NOT_MODEL_STATUS = ("update_goal can only mark the existing goal complete, blocked, or paused at the user's explicit "
                    "request; resume, budget-limited, and usage-limited status changes are controlled by the user "
                    "or system")
COMPLETION_REPORT = ("Goal achieved. Report final usage from this tool result's structured goal fields. If "
                     "`goal.tokenBudget` is present, include token usage from `goal.tokensUsed` and "
                     "`goal.tokenBudget`. If `goal.timeUsedSeconds` is greater than 0, summarize elapsed time in a "
                     "concise, human-friendly form appropriate to the response language.")


def tool_result(goal: ThreadGoal | None, completed: bool = False) -> str:
    """A goal tool's output, as the original's: the goal, the tokens left
    of its budget, and, when the call completed it, how to report it."""
    remaining = None if goal is None or goal.token_budget is None else max(goal.token_budget - goal.tokens_used, 0)
    return msgspec.json.encode({"goal": goal, "remainingTokens": remaining,
                                "completionBudgetReport": COMPLETION_REPORT if completed else None}).decode()


def _snake(status: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), status)


def _camel(status: str) -> GoalStatus:
    # The table holds only the statuses we wrote (in snake case).
    return cast(GoalStatus, re.sub(r"_([a-z])", lambda m: m.group(1).upper(), status))


def _open(codex_home: str) -> sqlite3.Connection:
    db = sqlite3.connect(Path(codex_home) / GOALS_DB, timeout=5.0)
    db.execute(_SCHEMA)
    return db


def read_goal(codex_home: str, thread_id: str) -> ThreadGoal | None:
    with contextlib.closing(_open(codex_home)) as db, db:
        row = db.execute("SELECT objective, status, token_budget, tokens_used, time_used_seconds, created_at_ms, "
                         "updated_at_ms FROM thread_goals WHERE thread_id = ?", (thread_id,)).fetchone()
    if row is None:
        return None
    objective, status, budget, used, seconds, created, updated = row
    return ThreadGoal(thread_id, objective, _camel(status), budget, used, seconds, created // 1000, updated // 1000)


def write_goal(codex_home: str, goal: ThreadGoal, new: bool) -> None:
    """Insert (``new``: a new objective, a new goal id) or update the row."""
    with contextlib.closing(_open(codex_home)) as db, db:
        values = (goal.objective, _snake(goal.status), goal.token_budget, goal.tokens_used, goal.time_used_seconds,
                  goal.created_at * 1000, goal.updated_at * 1000, goal.thread_id)
        if new:
            db.execute("INSERT OR REPLACE INTO thread_goals (objective, status, token_budget, tokens_used, "
                       "time_used_seconds, created_at_ms, updated_at_ms, thread_id, goal_id) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", (*values, str(uuid.uuid4())))
        else:
            db.execute("UPDATE thread_goals SET objective = ?, status = ?, token_budget = ?, tokens_used = ?, "
                       "time_used_seconds = ?, created_at_ms = ?, updated_at_ms = ? WHERE thread_id = ?", values)


def delete_goal(codex_home: str, thread_id: str) -> bool:
    """Whether there was a goal to clear."""
    with contextlib.closing(_open(codex_home)) as db, db:
        return db.execute("DELETE FROM thread_goals WHERE thread_id = ?", (thread_id,)).rowcount > 0
