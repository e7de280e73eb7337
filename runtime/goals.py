"""Thread goals (``thread/goal/get|set|clear``), kept where the original
keeps them: the ``thread_goals`` table of ``$CODEX_HOME/goals_1.sqlite``, one
row per thread, status in snake_case, times in milliseconds. Blocking
sqlite3 calls: run them in a worker thread."""

from __future__ import annotations

import contextlib
import re
import sqlite3
import uuid
from pathlib import Path
from typing import cast

import msgspec

from .protocol.v2.thread import GoalStatus, ThreadGoal

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
