"""The fast scan: a rollout's listing metadata from its head and tail only
(:func:`scan_rollout`), so that indexing tens of thousands of threads
(:mod:`..thread_index`) does not decode every line of every file. Blocking.
"""

from __future__ import annotations

import os
from typing import Final

import msgspec

from .codec import decode_line
from .meta import ThreadMeta, first_user_text, thread_meta
from .paths import parse_timestamp
from .records import (
    RolloutLine,
    SessionMeta,
    ThreadNameUpdatedEvent,
    TokenCountEvent,
    TokenUsageInfo,
    TurnContext,
    TurnStartedEvent,
    UserMessageEvent,
)

_HEAD_CHUNK: Final = 256 * 1024
_HEAD_LIMIT: Final = 4 * 1024 * 1024
_TAIL_CHUNK: Final = 64 * 1024

# Substrings that must appear in a line for it to matter to the scan, so
# that most lines are never decoded.
_USER_MARKERS: Final = (b'"UserMessage"', b'"user_message"')
_TAIL_MARKERS: Final = (b'"token_count"', b'"task_started"', b'"user_message"', b'"turn_context"',
                        b'"thread_name_updated"')


def scan_rollout(path: str | os.PathLike[str], *, archived: bool = False,
                 stat: os.stat_result | None = None) -> ThreadMeta | None:
    """The listing metadata of a rollout, reading only its head (session
    meta, first user message, first turn context) and its tail (last
    timestamp, token count, turn start, turn context, name) (blocking).
    Returns None if the head holds no session meta.

    Agrees with ``replay(read_rollout(path)).meta`` whenever the first user
    message lies within the first 4 MiB and the newest turn start, turn
    context and token count within the last 64 KiB, which holds for the
    rollouts both programs write; otherwise the preview stays empty and the
    recency, model and token count fall back to what the head and tail hold.
    """
    fspath = os.fspath(path)
    with open(fspath, "rb") as f:
        st = stat or os.fstat(f.fileno())
        size = st.st_size
        head = f.read(min(size, _HEAD_CHUNK))
        meta: SessionMeta | None = None
        preview: str | None = None
        context: TurnContext | None = None
        done = 0
        while True:
            end = len(head) if len(head) >= size else head.rfind(b"\n") + 1
            for chunk in head[done:end].split(b"\n"):
                if meta is None:
                    if b'"session_meta"' in chunk:
                        line = _decode_quiet(chunk)
                        if line is not None and isinstance(line.payload, SessionMeta):
                            meta = line.payload
                    continue
                if preview is None and any(m in chunk for m in _USER_MARKERS):
                    line = _decode_quiet(chunk)
                    if line is not None:
                        preview = first_user_text(line.payload)
                if context is None and b'"turn_context"' in chunk:
                    line = _decode_quiet(chunk)
                    if line is not None and isinstance(line.payload, TurnContext):
                        context = line.payload
                if preview is not None and context is not None:
                    break
            done = max(done, end)
            if (meta is not None and preview is not None) or len(head) >= min(size, _HEAD_LIMIT):
                break
            head += f.read(_HEAD_CHUNK)
        if meta is None:
            return None
        if size > len(head):
            start = max(len(head), size - _TAIL_CHUNK)
            f.seek(start - 1)  # one byte back: is `start` itself a line start?
            tail = f.read()
            tail = tail[tail.find(b"\n") + 1:]
        else:
            tail = head
    created = parse_timestamp(meta.timestamp) or st.st_mtime_ns // 1_000_000
    updated = recency = None
    usage: TokenUsageInfo | None = None
    name: str | None = None
    tail_context: TurnContext | None = None
    for chunk in reversed(tail.split(b"\n")):
        if updated is None:
            line = _decode_quiet(chunk)
            if line is None:
                continue  # blank, or a torn last line
            updated = parse_timestamp(line.timestamp)
        if not any(m in chunk for m in _TAIL_MARKERS):
            continue
        line = _decode_quiet(chunk)
        if line is None:
            continue
        match line.payload:
            case TokenCountEvent(info=info) if info is not None and usage is None:
                usage = info
            case TurnStartedEvent() | UserMessageEvent() if recency is None:
                recency = parse_timestamp(line.timestamp)
            case TurnContext() if tail_context is None:
                tail_context = line.payload
            case ThreadNameUpdatedEvent() if name is None:
                name = line.payload.thread_name or None
        if usage is not None and recency is not None and tail_context is not None:
            break
    updated = max(updated or created, created)
    thread = thread_meta(meta, fspath, created, updated, recency or updated, preview or "",
                          tail_context or context, name, usage)
    thread.archived = archived
    if archived:
        thread.archived_at = st.st_mtime_ns // 1_000_000
    return thread


def _decode_quiet(chunk: bytes) -> RolloutLine | None:
    try:
        return decode_line(chunk)
    except msgspec.DecodeError:
        return None
