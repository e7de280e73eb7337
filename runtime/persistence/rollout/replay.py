"""Replay: rebuild a thread from its rollout (:func:`replay`), everything a
resumed thread needs: the model-visible history, the turns, the token usage
and the listing metadata.

The history follows the original's ``core/src/codex/
rollout_reconstruction.rs``: response items in order, a ``compacted`` line
with a replacement history replaces the history (one without, from older
releases, keeps the user messages so far plus the summary), and a
``thread_rolled_back`` event drops the newest user turns. The turns come
from :class:`~.turns.TurnBuilder`. Sans-I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from msgspec import Raw, Struct

from ...conversation.history import compacted_history, drop_last_user_turns, is_api_item, pair_calls_and_outputs
from .codec import Rollout
from .meta import ThreadMeta, first_user_text, thread_meta
from .paths import parse_timestamp
from .records import (
    Compacted,
    ResponseItem,
    SessionMeta,
    ThreadNameUpdatedEvent,
    ThreadRolledBackEvent,
    TokenCountEvent,
    TokenUsageInfo,
    TurnContext,
    TurnStartedEvent,
    UserMessageEvent,
)
from .replayed import ReplayedTurn
from .turns import TurnBuilder


class Replay(Struct, kw_only=True):
    """What a resumed thread needs from its rollout."""

    meta: ThreadMeta
    #: The model-visible history, oldest first, each item byte-exact. It does
    #: not include the base instructions (``SessionMeta.base_instructions``),
    #: which the original sends ahead of it. A call the file left without
    #: an output (a process killed mid-call) is answered ``"aborted"``, as
    #: the original answers it before it samples.
    history: list[Raw]
    turns: list[ReplayedTurn]
    #: The last token count, and the turn it was reported in: what
    #: ``thread/tokenUsage/updated`` replays on resume.
    token_usage: TokenUsageInfo | None = None
    token_usage_turn_id: str | None = None
    #: The newest turn context: the settings (model, effort, …) to resume with.
    turn_context: TurnContext | None = None
    session_meta: SessionMeta | None = None
    #: A turn the file left open (the writer died mid-turn); it is replayed
    #: as ``interrupted``. A writer resuming the thread should append a
    #: ``turn_aborted`` for it.
    open_turn_id: str | None = None
    #: The ordinal for the next appended line.
    next_ordinal: int = 0
    #: The turn builder the replay left open, and the bytes of the file it
    #: saw: a loaded thread's :class:`~.history_pages.TurnProjection` goes
    #: on from there.
    builder: Any = None
    consumed: int = 0


def replay(rollout: Rollout, *, thread_names: Mapping[str, str | None] | None = None) -> Replay:
    """Rebuild a thread from its rollout: history, turns, token usage and
    listing metadata. ``thread_names`` (from :func:`read_thread_names`)
    overrides names recorded in the file. Raises ``ValueError`` when the file
    has no session meta (it is not a thread's rollout)."""
    meta = rollout.session_meta
    if meta is None:
        raise ValueError(f"{rollout.path}: no session_meta line; this is not a thread rollout")
    created = parse_timestamp(meta.timestamp) or 0
    builder = TurnBuilder(meta.id, paginated=meta.history_mode == "paginated")
    history: list[Raw] = []
    usage: TokenUsageInfo | None = None
    usage_turn: str | None = None
    context: TurnContext | None = None
    name: str | None = None
    preview: str | None = None
    updated = created
    recency: int | None = None
    last_ordinal = -1
    for line in rollout.lines:
        ts = parse_timestamp(line.timestamp)
        if ts is not None:
            updated = max(updated, ts)
        else:
            ts = updated
        if line.ordinal is not None:
            last_ordinal = max(last_ordinal, line.ordinal)
        payload = line.payload
        builder.line(payload)
        match payload:
            case ResponseItem():
                if is_api_item(payload.raw):
                    history.append(payload.raw)
            case Compacted():
                if payload.replacement_history is not None:
                    history = list(payload.replacement_history)
                else:
                    history = compacted_history(history, payload.message)
            case ThreadRolledBackEvent():
                history = drop_last_user_turns(history, payload.num_turns)
            case TokenCountEvent() if payload.info is not None:
                usage = payload.info
                usage_turn = builder.current.id if builder.current is not None else (
                    builder.turns[-1].id if builder.turns else None)
            case TurnContext():
                context = payload
            case ThreadNameUpdatedEvent():
                name = payload.thread_name or None
            case TurnStartedEvent() | UserMessageEvent():
                recency = ts
        if preview is None:
            preview = first_user_text(payload)
    turns, open_turn = builder.snapshot(), builder.open_turn_id
    if thread_names is not None and meta.id in thread_names:
        name = thread_names[meta.id]
    thread = thread_meta(meta, rollout.path, created, updated, recency or updated, preview or "",
                          context, name, usage)
    return Replay(meta=thread, history=pair_calls_and_outputs(history), turns=turns, token_usage=usage,
                  token_usage_turn_id=usage_turn, turn_context=context, session_meta=meta,
                  open_turn_id=open_turn, next_ordinal=last_ordinal + 1, builder=builder,
                  consumed=rollout.consumed)
