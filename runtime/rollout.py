"""Rollout files: the original's on-disk thread record, read and written.

A thread's durable record is one JSONL file, its *rollout*, laid out and
encoded as codex-cli 0.169.0 does, so that either program can list, read and
resume what the other wrote::

    $CODEX_HOME/sessions/YYYY/MM/DD/rollout-YYYY-MM-DDThh-mm-ss-<thread id>.jsonl
    $CODEX_HOME/archived_sessions/rollout-…-<thread id>.jsonl   (archived: moved, flat)
    $CODEX_HOME/session_index.jsonl                             (names: last entry wins)

The date in the name and the folders is local time, as the original writes it.
Every line is one object ``{"timestamp", "ordinal"?, "type", "payload"}``:

==================  =========================================================
``session_meta``    the first line: :class:`SessionMeta`
``response_item``   one Responses API item, kept byte-exact (:class:`ResponseItem`)
``turn_context``    the settings a turn ran with (:class:`TurnContext`)
``event_msg``       a persisted event (:data:`EVENT_TYPES`): turn starts and
                    ends, token counts, and the items of a turn
``compacted``       a compaction checkpoint: summary and replacement history
==================  =========================================================

Where the items of a turn come from depends on ``SessionMeta.history_mode``,
in 0.169 as here: a ``"paginated"`` file (what 0.169 writes) records them as
``item_completed`` events; a legacy file (no mode, what earlier releases
wrote) as ``user_message`` / ``agent_message`` / ``agent_reasoning`` events.
Each kind of file ignores the other's records. A writer picks one and sticks
to it; 0.169 resumed both kinds written by :func:`encode_line` to the same
turns as :func:`replay` (``tests/runtime/test_rollout.py``). Note that 0.169
answers ``thread/read`` of a paginated thread it has not loaded with no
turns when its own history database has none for it (as for any copied-in
file); ``thread/resume`` reads the rollout either way.

Design and rules:

* **Sans-I/O core.** :func:`encode_line` turns a payload into one line of
  bytes; :func:`parse_rollout` turns the bytes of a file into lines;
  :func:`replay` turns lines into what a resumed thread needs. Only
  :func:`read_rollout`, :func:`scan_rollout` and :func:`read_thread_names`
  touch the disk. They block: call them through ``trio.to_thread.run_sync``.
  Creating the file lazily, appending and flushing belong to the thread's
  writer actor, which uses :func:`rollout_path` and :func:`encode_line`.
* **A load never fails on content.** A torn last line (a crash mid-write)
  and any line that is not valid JSON are skipped with a warning. A line or
  event type we do not know, or a known one whose payload has a shape we do
  not expect, is kept as :class:`UnknownLine` / :class:`UnknownEvent` (raw
  bytes) and ignored by the replay, as the original ignores what it cannot
  parse. Only an unreadable *file* raises (``OSError``).
* **Items stay byte-exact.** Response items, replacement histories and
  unknown payloads are ``msgspec.Raw``: what the original wrote is what the
  next model request carries, field for field (including fields this module
  has never heard of).
* **Replay follows the original** (codex-rs ``core/src/codex/
  rollout_reconstruction.rs`` for the history, ``app-server-protocol/src/
  protocol/thread_history.rs`` for the turns) and was checked against what
  codex-cli 0.169.0's ``thread/resume`` returned for the same files: a
  ``compacted`` line with a replacement history replaces the history; a
  ``thread_rolled_back`` event drops the newest user turns; a turn still open
  at the end of the file (the process died mid-turn) comes back
  ``interrupted`` with no ``completedAt``.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import msgspec
from msgspec import Raw, Struct

from .errors import StorageFailure
from .history import compacted_history, drop_last_user_turns, is_api_item, pair_calls_and_outputs
from .review import parse_output as parse_review
from .review import render as render_review
from .rollout_tools import (
    CoreCommandExecution,
    CoreFileChange,
    ReplayedCommandExecution,
    ReplayedFileChange,
    ReplayedMcpToolCall,
    ReplayedWebSearch,
    core_command_execution,
    CoreMcpToolCall,
    core_mcp_tool_call,
    core_file_change,
    replay_command_execution,
    replay_file_change,
    replay_mcp_tool_call,
    replay_web_search,
)

__all__ = [
    "ARCHIVED_SESSIONS_SUBDIR",
    "EVENT_TYPES",
    "SESSIONS_SUBDIR",
    "SESSION_INDEX_FILE",
    "AgentMessageEvent",
    "AgentReasoningEvent",
    "AgentReasoningRawContentEvent",
    "BaseInstructions",
    "Compacted",
    "ContextCompactedEvent",
    "CoreAgentMessage",
    "CoreContextCompaction",
    "CorePlan",
    "CoreReasoning",
    "CoreTurnItem",
    "CoreEnteredReviewMode",
    "CoreExitedReviewMode",
    "CoreUserMessage",
    "GitInfo",
    "ItemCompletedEvent",
    "Payload",
    "PlanUpdateEvent",
    "Replay",
    "ReplayedAgentMessage",
    "ReplayedContextCompaction",
    "ReplayedItem",
    "ReplayedPlan",
    "ReplayedReasoning",
    "ReplayedTurn",
    "ReplayedTurnError",
    "ReplayedUserMessage",
    "ResponseItem",
    "Rollout",
    "RolloutLine",
    "SessionMeta",
    "ThreadMeta",
    "ThreadNameUpdatedEvent",
    "ThreadRolledBackEvent",
    "TokenCountEvent",
    "TokenUsage",
    "TokenUsageInfo",
    "TurnAbortedEvent",
    "TurnCompleteEvent",
    "TurnContext",
    "TurnError",
    "TurnStartedEvent",
    "UnknownEvent",
    "UnknownLine",
    "UserMessageEvent",
    "archived_rollout_path",
    "decode_line",
    "encode_line",
    "encode_session_index_entry",
    "format_timestamp",
    "iter_rollout_files",
    "parse_rollout",
    "parse_rollout_filename",
    "parse_timestamp",
    "read_rollout",
    "read_thread_names",
    "replay",
    "write_whole",
    "rollout_path",
    "running",
    "scan_rollout",
    "source_kind",
]

log = logging.getLogger("trio_codex.rollout")

SESSIONS_SUBDIR: Final = "sessions"
ARCHIVED_SESSIONS_SUBDIR: Final = "archived_sessions"
SESSION_INDEX_FILE: Final = "session_index.jsonl"

# --------------------------------------------------------------------------
# Paths and timestamps
# --------------------------------------------------------------------------

_FILENAME = re.compile(
    r"^rollout-(\d{4})-(\d{2})-(\d{2})T(\d{2})-(\d{2})-(\d{2})-"
    r"([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\.jsonl$"
)


def rollout_path(codex_home: str | os.PathLike[str], thread_id: str, created_at_ms: int) -> Path:
    """Where the original puts a new thread's rollout: dated folders and a
    dated name, both in local time."""
    t = _dt.datetime.fromtimestamp(created_at_ms / 1000).astimezone()
    stamp = t.strftime("%Y-%m-%dT%H-%M-%S")
    return (Path(codex_home) / SESSIONS_SUBDIR / t.strftime("%Y") / t.strftime("%m")
            / t.strftime("%d") / f"rollout-{stamp}-{thread_id}.jsonl")


def archived_rollout_path(codex_home: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """Where ``thread/archive`` moves a rollout: the archive folder, flat."""
    return Path(codex_home) / ARCHIVED_SESSIONS_SUBDIR / Path(path).name


def parse_rollout_filename(name: str) -> tuple[int, str] | None:
    """``(created_at_ms, thread_id)`` from a rollout file name (local time,
    whole seconds), or None if the name is not a rollout's."""
    m = _FILENAME.match(name)
    if m is None:
        return None
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    try:
        t = _dt.datetime(y, mo, d, h, mi, s).astimezone()
    except ValueError:
        return None
    return int(t.timestamp()) * 1000, m.group(7).lower()


def iter_rollout_files(codex_home: str | os.PathLike[str]) -> Iterator[tuple[os.DirEntry[str], bool]]:
    """Every rollout file under ``sessions/`` (archived False) and
    ``archived_sessions/`` (archived True), as directory entries, so a caller
    can use their cached ``stat()``. Other files are ignored."""
    root = Path(codex_home)
    for sub, archived in ((SESSIONS_SUBDIR, False), (ARCHIVED_SESSIONS_SUBDIR, True)):
        stack = [root / sub]
        while stack:
            try:
                entries = os.scandir(stack.pop())
            except (FileNotFoundError, NotADirectoryError):
                continue
            with entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        if not archived:  # the archive is flat
                            stack.append(Path(entry.path))
                    elif entry.name.startswith("rollout-") and entry.name.endswith(".jsonl"):
                        yield entry, archived


def format_timestamp(ms: int) -> str:
    """UTC, millisecond precision, ``Z``: the original's line timestamps."""
    t = _dt.datetime.fromtimestamp(ms / 1000, _dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_timestamp(text: str) -> int | None:
    """Milliseconds since the epoch from an RFC 3339 timestamp (any number
    of fractional digits), or None if it does not parse."""
    try:
        t = _dt.datetime.fromisoformat(text)
    except ValueError:
        # Python 3.11 takes at most 6 fractional digits; the original may
        # write 9 (``11:53:00.468252653Z`` in session_index.jsonl).
        m = re.match(r"^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$", text)
        if m is None:
            return None
        try:
            t = _dt.datetime.fromisoformat(m.group(1) + "." + (m.group(2) or "0")[:6].ljust(6, "0")
                                          + (m.group(3) or "Z"))
        except ValueError:
            return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.UTC)
    return int(t.timestamp() * 1000)


# --------------------------------------------------------------------------
# Payloads, with the original's field names and order. Optional fields are
# omitted on write when unset, as the original's ``skip_serializing_if``
# omits them.
# --------------------------------------------------------------------------


class _Payload(Struct, omit_defaults=True):
    """A payload. Fields the original requires have no default, so that
    omitting defaults on write can never drop one (0.169 skips a line that
    lacks one, such as a ``turn_aborted`` without its ``reason``); a line
    that lacks one on read is kept as unknown and ignored, as the original
    ignores it."""


class GitInfo(_Payload, kw_only=True):
    commit_hash: str | None = None
    branch: str | None = None
    repository_url: str | None = None


class BaseInstructions(_Payload, kw_only=True):
    text: str


class SessionMeta(_Payload, kw_only=True):
    """The first line of a rollout: who the thread is and where it runs."""

    account_scoped: bool | None = None
    session_id: str | None = None
    id: str
    forked_from_id: str | None = None
    parent_thread_id: str | None = None
    timestamp: str
    cwd: str
    runtime_workspace_roots: list[str] | None = None
    originator: str
    cli_version: str
    #: ``"cli"``, ``"vscode"``, ``"exec"``, ``"mcp"``, ``"unknown"``, or an
    #: object such as ``{"subagent": "review"}`` (see :func:`source_kind`).
    source: Any = "unknown"
    thread_source: str | None = None
    agent_nickname: str | None = None
    agent_role: str | None = None
    agent_path: str | None = None
    model_provider: str | None = None
    base_instructions: BaseInstructions | None = None
    dynamic_tools: list[Any] | None = None
    memory_mode: str | None = None
    history_mode: str | None = None
    context_window: Any = None
    git: GitInfo | None = None


class ResponseItem(Struct, frozen=True):
    """One Responses API input/output item, exactly as written."""

    raw: Raw


class TurnContext(_Payload, kw_only=True):
    """The settings one turn ran with; the newest one seeds a resumed
    thread's model and reasoning settings."""

    turn_id: str | None = None
    root_turn_id: str | None = None
    cwd: str
    current_date: str | None = None
    timezone: str | None = None
    approval_policy: Any
    approvals_reviewer: str | None = None
    sandbox_policy: Any
    permission_profile: Any = None
    #: ``{"id": ":read-only"}``: the profile the turn ran under (resume keeps it).
    active_permission_profile: Any = None
    model: str
    effort: str | None = None
    summary: Any
    personality: str | None = None
    collaboration_mode: Any = None
    user_instructions: str | None = None
    developer_instructions: str | None = None
    final_output_json_schema: Any = None
    truncation_policy: Any = None


class Compacted(_Payload, kw_only=True):
    """A compaction checkpoint. With ``replacement_history`` it is the whole
    history from here on; without it (older releases) the history is the
    user messages so far plus ``message``, the summary."""

    message: str
    replacement_history: list[Raw] | None = None


class UnknownLine(Struct, frozen=True):
    """A line type this module does not read (``world_state``,
    ``token_usage_record``, …), or a known one that did not decode."""

    type: str
    payload: Raw


class TokenUsage(Struct, kw_only=True):
    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_output_tokens: int = 0
    total_tokens: int = 0


class TokenUsageInfo(_Payload, kw_only=True):
    total_token_usage: TokenUsage
    last_token_usage: TokenUsage
    last_usage_includes_reasoning: bool | None = None
    model_context_window: int | None = None


class TurnError(_Payload, kw_only=True):
    message: str
    #: As the original writes it: snake_case (``"context_window_exceeded"``,
    #: ``{"http_connection_failed": {"http_status_code": 401}}``).
    codex_error_info: Any = None
    additional_details: str | None = None


class _Event(_Payload, tag_field="type"):
    pass


class TurnStartedEvent(_Event, kw_only=True, tag="task_started"):
    turn_attribution: Any = None
    turn_id: str
    root_turn_id: str | None = None
    started_at: int | None = None
    model_context_window: int | None = None
    collaboration_mode_kind: str | None = None


class TurnCompleteEvent(_Event, kw_only=True, tag="task_complete"):
    root_turn_id: str | None = None
    turn_id: str
    last_agent_message: str | None = None
    error: TurnError | None = None
    started_at: int | None = None
    completed_at: int | None = None
    duration_ms: int | None = None
    time_to_first_token_ms: int | None = None


class TurnAbortedEvent(_Event, kw_only=True, tag="turn_aborted"):
    root_turn_id: str | None = None
    turn_id: str | None = None
    #: ``"interrupted"``, ``"replaced"`` or ``"review_ended"``.
    reason: str
    started_at: int | None = None
    completed_at: int | None = None
    duration_ms: int | None = None


class _CoreItem(_Payload, tag_field="type"):
    pass


class CoreUserMessage(_CoreItem, kw_only=True, tag="UserMessage"):
    id: str
    #: The core's user input: ``{"type": "text", "text", "text_elements"}``,
    #: ``{"type": "image", "image_url"}``, ``{"type": "local_image", "path"}``, …
    content: list[Any]


class CoreAgentMessage(_CoreItem, kw_only=True, tag="AgentMessage"):
    id: str
    #: ``[{"type": "Text", "text": …}]``
    content: list[Any]
    phase: str | None = None
    memory_citation: Any = None


class CoreReasoning(_CoreItem, kw_only=True, tag="Reasoning"):
    id: str
    summary_text: list[str]
    raw_content: list[str]


class CoreContextCompaction(_CoreItem, kw_only=True, tag="ContextCompaction"):
    id: str


class CorePlan(_CoreItem, kw_only=True, tag="Plan"):
    id: str
    text: str


class CoreEnteredReviewMode(_CoreItem, kw_only=True, tag="EnteredReviewMode"):
    """A review began: its target as review/start gave it, and its hint."""

    id: str
    target: Any
    user_facing_hint: str


class CoreExitedReviewMode(_CoreItem, kw_only=True, tag="ExitedReviewMode"):
    """A review ended: the reviewer's answer as parsed (``findings``,
    ``overall_correctness``, ``overall_explanation``, ``overall_confidence_score``)."""

    id: str
    review_output: Any


CoreTurnItem = (CoreUserMessage | CoreAgentMessage | CoreReasoning | CoreContextCompaction | CorePlan
                | CoreCommandExecution | CoreFileChange | CoreEnteredReviewMode | CoreExitedReviewMode
                | CoreMcpToolCall)
"""The items of the core's ``TurnItem`` written here (tool items in
``runtime/rollout_tools.py``). The replay also reads ``McpToolCall`` and
``WebSearch`` items; others (image generations, …) are kept raw and not
shown."""


class ItemCompletedEvent(_Event, kw_only=True, tag="item_completed"):
    """A completed turn item, as 0.169 records it in paginated files. The
    item is kept raw: it may be one of the core's items not in
    :data:`CoreTurnItem`. Build one with :meth:`of`."""

    thread_id: str
    turn_id: str
    item: Raw
    started_at_ms: int | None = None
    completed_at_ms: int | None = None

    @classmethod
    def of(cls, item: CoreTurnItem, *, thread_id: str, turn_id: str, started_at_ms: int | None = None,
           completed_at_ms: int | None = None) -> ItemCompletedEvent:
        return cls(thread_id=thread_id, turn_id=turn_id, item=Raw(_encoder.encode(item)),
                   started_at_ms=started_at_ms, completed_at_ms=completed_at_ms)


class UserMessageEvent(_Event, kw_only=True, tag="user_message"):
    message: str
    images: list[str] | None = None
    local_images: list[str] = []
    text_elements: list[Any] = []


class AgentMessageEvent(_Event, kw_only=True, tag="agent_message"):
    message: str
    phase: str | None = None
    memory_citation: Any = None


class AgentReasoningEvent(_Event, kw_only=True, tag="agent_reasoning"):
    text: str


class AgentReasoningRawContentEvent(_Event, kw_only=True, tag="agent_reasoning_raw_content"):
    text: str


class TokenCountEvent(_Event, kw_only=True, tag="token_count"):
    info: TokenUsageInfo | None = None
    rate_limits: Any = None


class ThreadNameUpdatedEvent(_Event, kw_only=True, tag="thread_name_updated"):
    thread_id: str
    thread_name: str | None = None


class ContextCompactedEvent(_Event, kw_only=True, tag="context_compacted"):
    pass


class PlanUpdateEvent(_Event, kw_only=True, tag="plan_update"):
    """An ``update_plan`` call's arguments (``{step, status}`` steps,
    snake_case statuses), which 0.169 records in both history modes."""

    explanation: str | None = None
    plan: list[Any]


class ThreadRolledBackEvent(_Event, kw_only=True, tag="thread_rolled_back"):
    num_turns: int


class UnknownEvent(Struct, frozen=True):
    """An ``event_msg`` this module does not read (``thread_settings_applied``,
    …), kept raw."""

    type: str
    payload: Raw


_KnownEvent = (
    TurnStartedEvent | TurnCompleteEvent | TurnAbortedEvent | ItemCompletedEvent
    | UserMessageEvent | AgentMessageEvent | AgentReasoningEvent | AgentReasoningRawContentEvent
    | TokenCountEvent | ThreadNameUpdatedEvent | ContextCompactedEvent | ThreadRolledBackEvent | PlanUpdateEvent
)
EVENT_TYPES: Final = frozenset(cls.__struct_config__.tag for cls in _KnownEvent.__args__)
"""The ``event_msg`` types read here (the original persists these and more)."""

Payload = SessionMeta | ResponseItem | TurnContext | Compacted | _KnownEvent | UnknownEvent | UnknownLine


class RolloutLine(Struct, frozen=True):
    timestamp: str
    payload: Payload
    ordinal: int | None = None

    @property
    def type(self) -> str:
        """The line's ``type`` on disk."""
        return _line_type(self.payload)


def _line_type(payload: Payload) -> str:
    if isinstance(payload, (_Event, UnknownEvent)):
        return "event_msg"
    if isinstance(payload, UnknownLine):
        return payload.type
    return _LINE_TYPES[type(payload)]


_LINE_TYPES: Final[dict[type, str]] = {
    SessionMeta: "session_meta", ResponseItem: "response_item",
    TurnContext: "turn_context", Compacted: "compacted",
}

# --------------------------------------------------------------------------
# Encoding and decoding one line
# --------------------------------------------------------------------------


class _LineOut(Struct, kw_only=True, omit_defaults=True):
    timestamp: str
    ordinal: int | None = None
    type: str
    payload: Any


class _LineIn(Struct):
    timestamp: str = ""
    type: str = ""
    payload: Raw = Raw(b"null")
    ordinal: int | None = None


class _Tag(Struct):
    type: str = ""


_encoder = msgspec.json.Encoder()
_line_decoder = msgspec.json.Decoder(_LineIn)
_tag_decoder = msgspec.json.Decoder(_Tag)
_core_item_decoder = msgspec.json.Decoder(CoreTurnItem)
_event_decoder = msgspec.json.Decoder(_KnownEvent)
_payload_decoders: Final[dict[str, msgspec.json.Decoder[Any]]] = {
    "session_meta": msgspec.json.Decoder(SessionMeta),
    "turn_context": msgspec.json.Decoder(TurnContext),
    "compacted": msgspec.json.Decoder(Compacted),
}


def encode_line(payload: Payload, *, timestamp_ms: int, ordinal: int | None = None) -> bytes:
    """One rollout line, newline included, ready to append.

    ``ordinal`` numbers the lines of a file from 0, as 0.169 does; the
    original's paginated reads use it as a cursor, so a writer appending to a
    file continues from :attr:`Replay.next_ordinal`.
    """
    body: Any = payload.raw if isinstance(payload, ResponseItem) else (
        payload.payload if isinstance(payload, (UnknownLine, UnknownEvent)) else payload)
    return _encoder.encode(_LineOut(timestamp=format_timestamp(timestamp_ms), ordinal=ordinal,
                                    type=_line_type(payload), payload=body)) + b"\n"


def decode_line(data: bytes) -> RolloutLine:
    """One line (without its newline) as a :class:`RolloutLine`.

    Raises ``msgspec.DecodeError`` if it is not a JSON object with a
    ``type``; anything else decodes, unknown content as raw bytes.
    """
    env = _line_decoder.decode(data)
    if not env.type:
        raise msgspec.DecodeError("a rollout line needs a `type`")
    return RolloutLine(env.timestamp, _decode_payload(env.type, env.payload), env.ordinal)


def _decode_payload(kind: str, raw: Raw) -> Payload:
    try:
        if kind == "response_item":
            return ResponseItem(raw)
        if kind == "event_msg":
            try:
                return _event_decoder.decode(raw)
            except msgspec.ValidationError:
                tag = _tag_decoder.decode(raw).type
                if tag in EVENT_TYPES:
                    log.warning("rollout: an `%s` event has an unexpected shape; ignored", tag)
                return UnknownEvent(tag, raw)
        decoder = _payload_decoders.get(kind)
        if decoder is not None:
            return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        log.warning("rollout: a `%s` line has an unexpected shape (%s); ignored", kind, exc)
    return UnknownLine(kind, raw)


# --------------------------------------------------------------------------
# Whole files
# --------------------------------------------------------------------------


class Rollout(Struct):
    """The decoded lines of one rollout file."""

    path: str
    lines: list[RolloutLine]
    #: Complete lines that were not valid JSON objects (each logged).
    bad_lines: int = 0
    #: The file ended in a partial line (a crash mid-write), which was skipped.
    torn_tail: bool = False
    size: int = 0
    mtime_ns: int = 0
    #: Bytes of the lines decoded: the whole file but a torn tail.
    consumed: int = 0

    @property
    def session_meta(self) -> SessionMeta | None:
        for line in self.lines:
            if isinstance(line.payload, SessionMeta):
                return line.payload
        return None


def parse_rollout(data: bytes, path: str = "<memory>") -> Rollout:
    """Decode a whole rollout's bytes. Never raises on content: bad lines and
    a torn last line are skipped and counted, with a warning naming the file
    and line."""
    chunks = data.split(b"\n")
    last = chunks.pop()  # b"" when the file ends with a newline
    lines: list[RolloutLine] = []
    bad = 0
    for number, chunk in enumerate(chunks, 1):
        if not chunk.strip():
            continue
        try:
            lines.append(decode_line(chunk))
        except msgspec.DecodeError as exc:
            bad += 1
            log.warning("%s:%d: skipped a line that is not a rollout line (%s)", path, number, exc)
    torn = False
    if last.strip():
        try:
            lines.append(decode_line(last))
        except msgspec.DecodeError:
            torn = True
            log.warning("%s:%d: skipped a torn last line (%d bytes); the writer stopped mid-line",
                        path, len(chunks) + 1, len(last))
    return Rollout(path, lines, bad, torn, len(data), consumed=len(data) - len(last) if torn else len(data))


def read_rollout(path: str | os.PathLike[str]) -> Rollout:
    """Read and decode a rollout file (blocking). Raises ``OSError`` only
    when the file cannot be read."""
    with open(path, "rb") as f:
        stat = os.fstat(f.fileno())
        data = f.read()
    rollout = parse_rollout(data, os.fspath(path))
    rollout.mtime_ns = stat.st_mtime_ns
    return rollout


# --------------------------------------------------------------------------
# Thread metadata (for listing) and names
# --------------------------------------------------------------------------


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


# --------------------------------------------------------------------------
# Replay: history, turns, usage
# --------------------------------------------------------------------------


class _Camel(Struct, rename="camel", gc=False):
    pass


class ReplayedUserMessage(_Camel, kw_only=True, tag_field="type", tag="userMessage"):
    id: str
    client_id: str | None = None
    #: v2 ``UserInput`` objects (``{"type": "text", "text", "text_elements"}``, …).
    content: list[Any] = []
    started_at_ms: int | None = None
    completed_at_ms: int | None = None


class ReplayedAgentMessage(_Camel, kw_only=True, tag_field="type", tag="agentMessage"):
    moderation: Any = None
    id: str
    text: str
    phase: str | None = None
    memory_citation: Any = None
    delivery: Any = None
    questions: Any = None
    started_at_ms: int | None = None
    completed_at_ms: int | None = None


class ReplayedReasoning(_Camel, kw_only=True, tag_field="type", tag="reasoning"):
    id: str
    summary: list[str] = []
    content: list[str] = []
    started_at_ms: int | None = None
    completed_at_ms: int | None = None


class ReplayedContextCompaction(_Camel, kw_only=True, tag_field="type", tag="contextCompaction"):
    id: str
    started_at_ms: int | None = None
    completed_at_ms: int | None = None


class ReplayedPlan(_Camel, kw_only=True, tag_field="type", tag="plan"):
    id: str
    text: str = ""
    started_at_ms: int | None = None
    completed_at_ms: int | None = None


class ReplayedEnteredReviewMode(_Camel, kw_only=True, tag_field="type", tag="enteredReviewMode"):
    id: str
    review: str
    started_at_ms: int | None = None
    completed_at_ms: int | None = None


class ReplayedExitedReviewMode(_Camel, kw_only=True, tag_field="type", tag="exitedReviewMode"):
    id: str
    review: str
    started_at_ms: int | None = None
    completed_at_ms: int | None = None


ReplayedItem = (ReplayedEnteredReviewMode | ReplayedExitedReviewMode | ReplayedUserMessage | ReplayedAgentMessage
                | ReplayedReasoning
                | ReplayedContextCompaction | ReplayedPlan | ReplayedCommandExecution | ReplayedFileChange
                | ReplayedMcpToolCall | ReplayedWebSearch)


class ReplayedTurnError(_Camel, kw_only=True):
    message: str
    codex_error_info: Any = None
    additional_details: str | None = None
    misalignment: Any = None


class ReplayedTurn(_Camel, kw_only=True):
    """A turn as ``thread/resume`` and ``thread/read`` return it: encoded,
    it is the v2 ``Turn`` object, key for key, as the original sends it."""

    id: str
    root_turn_id: str | None = None
    items: list[ReplayedItem] = []
    items_view: str = "full"
    status: str = "completed"
    error: ReplayedTurnError | None = None
    started_at: int | None = None
    completed_at: int | None = None
    duration_ms: int | None = None


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


# Core (rollout) user input -> v2 user input.
def _v2_user_input(raw: dict[str, Any]) -> dict[str, Any]:
    kind = raw.get("type")
    if kind == "text":
        return {"type": "text", "text": raw.get("text", ""),
                "text_elements": [_v2_text_element(e) for e in raw.get("text_elements") or []]}
    if kind == "image":
        return {"type": "image", "url": raw.get("image_url", raw.get("url"))}
    if kind == "local_image":
        return {"type": "localImage", "path": raw.get("path")}
    if kind in ("skill", "mention"):
        return {"type": kind, "name": raw.get("name"), "path": raw.get("path")}
    return {_camel(k): _camel(v) if k == "type" and isinstance(v, str) else v for k, v in raw.items()}


def _v2_text_element(raw: dict[str, Any]) -> dict[str, Any]:
    rng = raw.get("byte_range") or raw.get("byteRange") or {}
    return {"byteRange": {"start": rng.get("start", 0), "end": rng.get("end", 0)},
            "placeholder": raw.get("placeholder")}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _camelize(value: Any) -> Any:
    """snake_case keys and string values -> camelCase, recursively: the
    rollout's ``codex_error_info`` as the v2 ``codexErrorInfo``."""
    if isinstance(value, str):
        return _camel(value)
    if isinstance(value, dict):
        return {_camel(k): v if isinstance(v, (int, float)) or v is None else _camelize(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_camelize(v) for v in value]
    return value


_UPPER = re.compile(r"(?<!^)(?=[A-Z])")


def snakeize(value: Any) -> Any:
    """The inverse of the replay's camelCasing: a v2 ``codexErrorInfo`` as
    the rollout's snake_case ``codex_error_info``."""
    if isinstance(value, str):
        return _UPPER.sub("_", value).lower()
    if isinstance(value, dict):
        return {snakeize(k): v if isinstance(v, (int, float)) or v is None else snakeize(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [snakeize(v) for v in value]
    return value


class _Pending:
    """A turn being rebuilt."""

    __slots__ = ("id", "root_turn_id", "explicit", "ended", "status", "error", "started_at",
                 "completed_at", "duration_ms", "items", "saw_compaction")

    def __init__(self, turn_id: str, *, explicit: bool, started_at: int | None = None,
                 root_turn_id: str | None = None) -> None:
        self.id = turn_id
        self.root_turn_id = root_turn_id
        self.explicit = explicit
        self.ended = False
        self.status = "completed"
        self.error: ReplayedTurnError | None = None
        self.started_at = started_at
        self.completed_at: int | None = None
        self.duration_ms: int | None = None
        self.items: list[ReplayedItem] = []
        self.saw_compaction = False

    def finish(self) -> ReplayedTurn:
        return ReplayedTurn(
            id=self.id, root_turn_id=self.root_turn_id, items=self.items, status=self.status,
            error=self.error, started_at=self.started_at, completed_at=self.completed_at,
            duration_ms=self.duration_ms)


class TurnBuilder:
    """Turns from rollout lines (the app-server's ThreadHistoryBuilder).

    Where a turn's items come from depends on the file's history mode, as
    in 0.169: a ``paginated`` rollout (what 0.169 writes) records them as
    ``item_completed`` events; a ``legacy`` one as ``user_message``,
    ``agent_message`` and ``agent_reasoning`` events, whose items get
    positional ids (``item-1``, …) and no timestamps. Each mode ignores the
    other's records (``Plan`` items come from ``item_completed`` in both).
    """

    def __init__(self, thread_id: str, *, paginated: bool) -> None:
        self.thread_id = thread_id
        self.paginated = paginated
        self.turns: list[ReplayedTurn] = []
        self.current: _Pending | None = None
        self.next_item = 1
        self.implicit = 0

    def _item_id(self) -> str:
        item_id = f"item-{self.next_item}"
        self.next_item += 1
        return item_id

    def _finish_current(self) -> None:
        turn, self.current = self.current, None
        if turn is None:
            return
        if turn.explicit and not turn.ended:
            turn.status = "interrupted"
        if turn.explicit or turn.items:
            self.turns.append(turn.finish())

    def _ensure(self) -> _Pending:
        if self.current is None:
            # Legacy rollouts did not record turn starts. Their turn ids are
            # derived from the thread id and position so that every read of
            # the same file gives the same ids.
            self.implicit += 1
            tid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"codex-thread:{self.thread_id}/turn/{self.implicit}"))
            self.current = _Pending(tid, explicit=False)
        return self.current

    def line(self, payload: Payload) -> None:
        legacy = not self.paginated
        match payload:
            case TurnStartedEvent():
                self._finish_current()
                self.current = _Pending(payload.turn_id, explicit=True, started_at=payload.started_at,
                                        root_turn_id=payload.root_turn_id)
            case TurnCompleteEvent() | TurnAbortedEvent():
                turn = self.current
                if turn is None or (payload.turn_id and turn.id != payload.turn_id):
                    return
                turn.ended = True
                if isinstance(payload, TurnAbortedEvent):
                    turn.status = "interrupted"
                elif payload.error is not None:
                    turn.status = "failed"
                    turn.error = ReplayedTurnError(
                        message=payload.error.message,
                        codex_error_info=_camelize(payload.error.codex_error_info),
                        additional_details=payload.error.additional_details)
                turn.completed_at = payload.completed_at
                turn.duration_ms = payload.duration_ms
                self._finish_current()
            case ItemCompletedEvent():
                item = self._completed_item(payload)
                if item is not None:
                    self._upsert(payload.turn_id, item)
            case UserMessageEvent() if legacy:
                cur = self.current
                if cur is not None and not cur.explicit and not (cur.saw_compaction and not cur.items):
                    self._finish_current()
                content: list[Any] = []
                if payload.message:
                    content.append(_v2_user_input({"type": "text", "text": payload.message,
                                                   "text_elements": payload.text_elements}))
                content += [{"type": "image", "url": url} for url in payload.images or []]
                content += [{"type": "localImage", "path": p} for p in payload.local_images]
                self._ensure().items.append(ReplayedUserMessage(id=self._item_id(), content=content))
            case AgentMessageEvent() if legacy and payload.message:
                self._ensure().items.append(ReplayedAgentMessage(
                    id=self._item_id(), text=payload.message, phase=payload.phase,
                    memory_citation=payload.memory_citation))
            case AgentReasoningEvent() | AgentReasoningRawContentEvent() if legacy and payload.text:
                items = self._ensure().items
                raw = isinstance(payload, AgentReasoningRawContentEvent)
                if items and isinstance(items[-1], ReplayedReasoning):
                    (items[-1].content if raw else items[-1].summary).append(payload.text)
                else:
                    items.append(ReplayedReasoning(id=self._item_id(), summary=[] if raw else [payload.text],
                                                   content=[payload.text] if raw else []))
            case ContextCompactedEvent() if legacy:
                self._ensure().items.append(ReplayedContextCompaction(id=self._item_id()))
            case Compacted():
                if self.current is not None:
                    self.current.saw_compaction = True
            case ThreadRolledBackEvent():
                self._finish_current()
                if payload.num_turns > 0:
                    del self.turns[-payload.num_turns:]

    def _upsert(self, turn_id: str, item: ReplayedItem) -> None:
        """Put a completed item in the turn it names, as the original's
        ``upsert_item_in_turn_id`` does: a process that outlived its turn
        records its item later in the file, under its own turn. An item
        whose turn is unknown joins the current one; one seen before
        (same id) is replaced."""
        items = None
        if self.current is not None and self.current.id == turn_id:
            items = self.current.items
        else:
            for turn in reversed(self.turns):
                if turn.id == turn_id:
                    items = turn.items
                    break
        if items is None:
            items = self._ensure().items
        for i, seen in enumerate(items):
            if seen.id == item.id and type(seen) is type(item):
                items[i] = item
                return
        items.append(item)

    def _completed_item(self, event: ItemCompletedEvent) -> ReplayedItem | None:
        times = {"started_at_ms": event.started_at_ms, "completed_at_ms": event.completed_at_ms}
        try:
            item = _core_item_decoder.decode(event.item)
        except msgspec.ValidationError:
            if not self.paginated:
                return None
            # Items read leniently, whose exact keys this module does not write.
            try:
                raw = msgspec.json.decode(event.item)
            except msgspec.DecodeError:
                return None
            kind = raw.get("type") if isinstance(raw, dict) else None
            if kind == "McpToolCall":
                return replay_mcp_tool_call(raw, **times)
            if kind == "WebSearch":
                return replay_web_search(raw, **times)
            return None  # an item kind the replay does not show
        if not self.paginated and not isinstance(item, CorePlan):
            return None
        match item:
            case CoreUserMessage():
                return ReplayedUserMessage(id=item.id, content=[_v2_user_input(c) for c in item.content], **times)
            case CoreAgentMessage():
                text = "".join(c.get("text", "") for c in item.content if c.get("type") == "Text")
                return ReplayedAgentMessage(id=item.id, text=text, phase=item.phase,
                                            memory_citation=item.memory_citation, **times)
            case CoreReasoning():
                return ReplayedReasoning(id=item.id, summary=item.summary_text, content=item.raw_content, **times)
            case CoreContextCompaction():
                return ReplayedContextCompaction(id=item.id, **times)
            case CorePlan():
                return ReplayedPlan(id=item.id, text=item.text, **times)
            case CoreCommandExecution():
                return replay_command_execution(item, **times)
            case CoreFileChange():
                return replay_file_change(item, **times)
            case CoreEnteredReviewMode():
                return ReplayedEnteredReviewMode(id=item.id, review=item.user_facing_hint, **times)
            case CoreExitedReviewMode():
                # The rendered review, as the thread showed it (parsed again:
                # a file may hold any JSON there).
                review = render_review(parse_review(_encoder.encode(item.review_output).decode()))
                return ReplayedExitedReviewMode(id=item.id, review=review, **times)
            case CoreMcpToolCall():
                return replay_mcp_tool_call(msgspec.to_builtins(item), **times)
        return None

    def snapshot(self) -> list[ReplayedTurn]:
        """The turns so far, the one still open included as the end of the
        file shows it (``interrupted`` when it started explicitly), without
        closing it: more lines may follow."""
        turn = self.current
        if turn is None or not (turn.explicit or turn.items):
            return list(self.turns)
        return [*self.turns, ReplayedTurn(
            id=turn.id, root_turn_id=turn.root_turn_id, items=list(turn.items),
            status="interrupted" if turn.explicit else turn.status, error=turn.error,
            started_at=turn.started_at, completed_at=turn.completed_at, duration_ms=turn.duration_ms)]

    @property
    def open_turn_id(self) -> str | None:
        """The turn the lines so far left open, if it started explicitly."""
        return self.current.id if self.current is not None and self.current.explicit else None


def _first_user_text(payload: Payload) -> str | None:
    """The preview text if this line is a user message event, else None."""
    if isinstance(payload, UserMessageEvent):
        return payload.message
    if isinstance(payload, ItemCompletedEvent):
        try:
            item = _core_item_decoder.decode(payload.item)
        except msgspec.ValidationError:
            return None
        if isinstance(item, CoreUserMessage):
            return "\n".join(c.get("text", "") for c in item.content if c.get("type") == "text")
    return None


def replay(rollout: Rollout, *, thread_names: dict[str, str | None] | None = None) -> Replay:
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
            preview = _first_user_text(payload)
    turns, open_turn = builder.snapshot(), builder.open_turn_id
    if thread_names is not None and meta.id in thread_names:
        name = thread_names[meta.id]
    thread = _thread_meta(meta, rollout.path, created, updated, recency or updated, preview or "",
                          context, name, usage)
    return Replay(meta=thread, history=pair_calls_and_outputs(history), turns=turns, token_usage=usage,
                  token_usage_turn_id=usage_turn, turn_context=context, session_meta=meta,
                  open_turn_id=open_turn, next_ordinal=last_ordinal + 1, builder=builder,
                  consumed=rollout.consumed)


def _thread_meta(meta: SessionMeta, path: str, created: int, updated: int, recency: int, preview: str,
                 context: TurnContext | None, name: str | None, usage: TokenUsageInfo | None) -> ThreadMeta:
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


# --------------------------------------------------------------------------
# Fast metadata scan (for the listing index)
# --------------------------------------------------------------------------

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
                        preview = _first_user_text(line.payload)
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
    thread = _thread_meta(meta, fspath, created, updated, recency or updated, preview or "",
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



def core_item(item: Any) -> CoreTurnItem | None:
    """The core item an ``item_completed`` line records for a v2 thread item
    (user and agent messages, reasoning, plans, compactions, command
    executions, file changes); None for the others and for a declined
    command, which the original does not record."""
    from .protocol.v2 import item as v2

    match item:
        case v2.UserMessageItem(id=item_id, content=content):
            return CoreUserMessage(id=item_id, content=[
                {"type": "text", "text": part.text, "text_elements": []} if isinstance(part, v2.TextInput)
                else msgspec.to_builtins(part) for part in content])
        case v2.AgentMessageItem(id=item_id, text=text, phase=phase):
            return CoreAgentMessage(id=item_id, content=[{"type": "Text", "text": text}], phase=phase)
        case v2.ReasoningItem(id=item_id, summary=summary, content=content):
            return CoreReasoning(id=item_id, summary_text=list(summary), raw_content=list(content))
        case v2.PlanItem(id=item_id, text=text):
            return CorePlan(id=item_id, text=text)
        case v2.ContextCompactionItem(id=item_id):
            return CoreContextCompaction(id=item_id)
        case v2.CommandExecutionItem():
            return core_command_execution(item)
        case v2.FileChangeItem():
            return core_file_change(item)
        case v2.McpToolCallItem():
            return core_mcp_tool_call(item)
    return None


def thread_from_meta(meta: ThreadMeta, loaded: bool) -> Any:
    """A listed thread as the protocol shows it (times in seconds)."""
    from .protocol.v2.thread import Idle, NotLoaded, Thread, git_info

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


def running(turns: list[Any], turn_id: str | None) -> list[Any]:
    """``turns`` of a live thread whose turn ``turn_id`` is running: a replay
    cannot tell that turn from one cut off by a crash and says
    ``interrupted``; the original says ``inProgress`` while it runs."""
    if turn_id is None or not turns or turns[-1].id != turn_id:
        return turns
    last = msgspec.structs.replace(turns[-1], status="inProgress", error=None, completed_at=None, duration_ms=None)
    return [*turns[:-1], last]


def revert_rollout(path: str | os.PathLike[str], before_turn_id: str) -> Replay:
    """thread/revert: cut a thread's rollout just before the turn
    ``before_turn_id`` started, and replay what is left. The cut file is
    written beside the rollout, fsynced, and put in its place at once, so a
    crash leaves the old file or the new one, never half of either. Raises
    ``ValueError("turn not found: …")`` when no turn of that id started in
    it (a legacy rollout records no turn starts)."""
    rollout = read_rollout(path)
    kept: list[bytes] = []
    for line in rollout.lines:
        if isinstance(line.payload, TurnStartedEvent) and line.payload.turn_id == before_turn_id:
            break
        kept.append(encode_line(line.payload, timestamp_ms=parse_timestamp(line.timestamp) or 0,
                                ordinal=len(kept)))
    else:
        raise ValueError(f"turn not found: {before_turn_id}")
    data = b"".join(kept)
    write_whole(path, data)
    return replay(parse_rollout(data, os.fspath(path)))


def write_whole(path: str | os.PathLike[str], data: bytes) -> None:
    """Put ``data`` at ``path`` whole or not at all (blocking): written
    beside it, fsynced, then renamed into place, so a crash or a full disk
    leaves the old file (or none), never part of the new one.

    Raises:
      StorageFailure: it could not be written; nothing was left behind.
    """
    tmp = f"{os.fspath(path)}.tmp-{os.getpid()}"
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise StorageFailure.writing(os.fspath(path), exc) from None


def fork_lines(rollout: Rollout, new_id: str, forked_at_ms: int, last_turn_id: str | None = None) -> bytes:
    """A fork's rollout: the source's lines through the end of
    ``last_turn_id`` (all of them when None), under a new session meta that
    names the source in ``forked_from_id``, numbered from 0 again."""
    meta = rollout.session_meta
    if meta is None:
        raise ValueError(f"{rollout.path} has no session meta: it is not a thread's rollout")
    out = [encode_line(msgspec.structs.replace(meta, id=new_id, session_id=new_id, forked_from_id=meta.id,
                                               timestamp=format_timestamp(forked_at_ms)),
                       timestamp_ms=forked_at_ms, ordinal=0)]
    for line in rollout.lines:
        if isinstance(line.payload, SessionMeta):
            continue
        at = parse_timestamp(line.timestamp) or forked_at_ms
        out.append(encode_line(line.payload, timestamp_ms=at, ordinal=len(out)))
        if last_turn_id is not None and isinstance(line.payload, (TurnCompleteEvent, TurnAbortedEvent)) \
                and line.payload.turn_id == last_turn_id:
            break
    else:
        if last_turn_id is not None:
            raise ValueError(f"turn {last_turn_id} is not in {rollout.path}")
    return b"".join(out)
