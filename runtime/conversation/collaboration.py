"""Collaboration modes (``collaborationMode`` on ``turn/start``, the presets
of ``collaborationMode/list``): a mode is a set of developer instructions
the model gets, recorded in the history as a ``<collaboration_mode>``
developer message at the turn that changes it, as the original records it.
The instructions are ours; what a mode asks of the model follows the
original's (Plan: explore and ask, then one decision-complete plan in a
``<proposed_plan>`` block, no edits)."""

from __future__ import annotations

from msgspec import Raw

from .history import developer_message

PLAN_INSTRUCTIONS = """# Plan Mode

You are in Plan Mode until a developer message ends it; what the user asks
does not end it. In Plan Mode you do not change files or run commands that
change anything: you explore (read files, search, run read-only commands),
ask the user about what only they can decide, and then write a plan.

Work in three phases: understand the request and the code it touches; settle
every open decision with the user (one question at a time, with the options
you see and the one you recommend); then present the plan. The plan is
decision complete: another engineer or agent can implement it without making
any choice of their own. It names the files and interfaces to change, the
behaviour and edge cases, and how to test it.

Present the final plan in one block:

<proposed_plan>
...the plan, in markdown...
</proposed_plan>

If the user asks a question about a plan you proposed, answer it before the
block and then give the plan again, changed only where the answer changes it.
"""

DEFAULT_INSTRUCTIONS = """# Default Mode

Plan Mode has ended: you are in Default mode. Carry out the user's requests:
change files and run commands as your sandbox and approvals allow.
"""


def instructions(mode: str, custom: str | None) -> str:
    """A mode's developer instructions: the client's, else the mode's own."""
    return custom or (PLAN_INSTRUCTIONS if mode == "plan" else DEFAULT_INSTRUCTIONS)


def mode_message(mode: str, custom: str | None) -> Raw:
    """The developer message that puts the model in ``mode``."""
    return developer_message(f"<collaboration_mode>{instructions(mode, custom)}</collaboration_mode>")
