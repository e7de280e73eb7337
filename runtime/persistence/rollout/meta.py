"""What ``thread/list`` shows of a thread, as its rollout tells it
(:class:`ThreadMeta`, built by the replay and the fast scan alike with
:func:`thread_meta`), and thread names, which live beside the rollouts in
``session_index.jsonl`` (the last entry for an id wins).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgspec
from msgspec import Struct

from ...protocol.v2.thread import Idle, NotLoaded, Thread, git_info
from .items import CoreUserMessage, core_item_decoder
from .paths import SESSION_INDEX_FILE, format_timestamp
from .records import GitInfo, ItemCompletedEvent, Payload, SessionMeta, TokenUsageInfo, TurnContext, UserMessageEvent

_encoder = msgspec.json.Encoder()


class ThreadMeta(Struct, kw_only=True):
    """What ``thread/list`` shows about a thread, as a rollout tells it.

    Times are milliseconds since the epoch: ``created_at`` from the session
    meta, ``updated_at`` from the last line, ``recency_at`` from the last turn
    start (``updated_at`` when the thread has no turn).
    """

    id: str
    rollout_path: str = ""
    created_at: int
    updated_at: int
    recency_at: int
    source: Any = "unknown"
    model_provider: str = ""
    cwd: str = ""
    cli_version: str = ""
    originator: str | None = None
    model: str | None = None
    reasoning_effort: str | None = None
    name: str | None = None
    #: The first user message's text; "" until there is one.
    preview: str = ""
    forked_from_id: str | None = None
    agent_nickname: str | None = None
    agent_role: str | None = None
    git_sha: str | None = None
    git_branch: str | None = None
    git_origin_url: str | None = None
    history_mode: str | None = None
    tokens_used: int = 0
    archived: bool = False
    archived_at: int | None = None


def source_kind(source: Any) -> str:
    """The ``thread/list`` ``sourceKinds`` value of a session source:
    ``cli``, ``vscode``, ``exec``, ``appServer``, ``subAgentReview``,
    ``subAgentCompact``, ``subAgentThreadSpawn``, ``subAgentOther`` or
    ``unknown``."""
    if isinstance(source, str):
        return {"cli": "cli", "vscode": "vscode", "exec": "exec", "mcp": "appServer",
                "app_server": "appServer", "appServer": "appServer"}.get(source, "unknown")
    if isinstance(source, dict):
        sub = source.get("subagent", source.get("subAgent"))
        if sub is not None:
            if sub == "review":
                return "subAgentReview"
            if sub == "compact":
                return "subAgentCompact"
            if isinstance(sub, dict) and ("thread_spawn" in sub or "threadSpawn" in sub):
                return "subAgentThreadSpawn"
            return "subAgentOther"
    return "unknown"


def thread_meta(meta: SessionMeta, path: str, created: int, updated: int, recency: int, preview: str,
                context: TurnContext | None, name: str | None, usage: TokenUsageInfo | None) -> ThreadMeta:
    """A thread's listing row from its session meta and what the rest of
    its file said (times in ms)."""
    git = meta.git or GitInfo()
    return ThreadMeta(
        id=meta.id, rollout_path=path, created_at=created, updated_at=updated, recency_at=recency,
        source=meta.source, model_provider=meta.model_provider or "", cwd=meta.cwd,
        cli_version=meta.cli_version, originator=meta.originator or None,
        model=(context.model or None) if context else None,
        reasoning_effort=context.effort if context else None, name=name, preview=preview,
        forked_from_id=meta.forked_from_id, agent_nickname=meta.agent_nickname,
        agent_role=meta.agent_role, git_sha=git.commit_hash, git_branch=git.branch,
        git_origin_url=git.repository_url, history_mode=meta.history_mode,
        tokens_used=usage.total_token_usage.total_tokens if usage else 0)


def thread_from_meta(meta: ThreadMeta, loaded: bool) -> Thread:
    """A listed thread as the protocol shows it (times in seconds)."""
    return Thread(
        id=meta.id, session_id=meta.id, preview=meta.preview, ephemeral=False,
        model_provider=meta.model_provider, created_at=meta.created_at // 1000,
        updated_at=meta.updated_at // 1000, cwd=meta.cwd, cli_version=meta.cli_version,
        source=meta.source, status=Idle() if loaded else NotLoaded(), turns=[], name=meta.name,
        path=meta.rollout_path or None, forked_from_id=meta.forked_from_id, model=meta.model,
        reasoning_effort=meta.reasoning_effort, originator=meta.originator,
        recency_at=meta.recency_at // 1000, history_mode=meta.history_mode or "legacy",
        git_info=git_info(meta.git_sha, meta.git_branch, meta.git_origin_url),
    )


def first_user_text(payload: Payload) -> str | None:
    """The preview text if this line is a user message, else None."""
    if isinstance(payload, UserMessageEvent):
        return payload.message
    if isinstance(payload, ItemCompletedEvent):
        try:
            item = core_item_decoder.decode(payload.item)
        except msgspec.ValidationError:
            return None
        if isinstance(item, CoreUserMessage):
            return "\n".join(c.get("text", "") for c in item.content if c.get("type") == "text")
    return None


class _SessionIndexEntry(Struct):
    id: str = ""
    thread_name: str | None = None
    updated_at: str = ""


_session_index_decoder = msgspec.json.Decoder(_SessionIndexEntry)


def encode_session_index_entry(thread_id: str, name: str | None, *, updated_at_ms: int) -> bytes:
    """A ``session_index.jsonl`` line recording a thread's name (None clears
    it), as ``thread/name/set`` appends it."""
    return _encoder.encode({"id": thread_id, "thread_name": name,
                            "updated_at": format_timestamp(updated_at_ms)}) + b"\n"


def read_thread_names(codex_home: str | os.PathLike[str]) -> dict[str, str | None]:
    """Thread names from ``session_index.jsonl`` (blocking): the last entry
    for an id wins; a missing file means no names."""
    try:
        data = (Path(codex_home) / SESSION_INDEX_FILE).read_bytes()
    except FileNotFoundError:
        return {}
    names: dict[str, str | None] = {}
    for chunk in data.split(b"\n"):
        if chunk.strip():
            try:
                entry = _session_index_decoder.decode(chunk)
            except msgspec.DecodeError:
                continue
            if entry.id:
                names[entry.id] = entry.thread_name
    return names
