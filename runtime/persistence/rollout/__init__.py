"""Rollout files: the original's on-disk thread record, read and written.

A thread's durable record is one JSONL file, its *rollout*, laid out and
encoded as codex-cli 0.169.0 does, so that either program can list, read and
resume what the other wrote::

    $CODEX_HOME/sessions/YYYY/MM/DD/rollout-YYYY-MM-DDThh-mm-ss-<thread id>.jsonl
    $CODEX_HOME/archived_sessions/rollout-…-<thread id>.jsonl   (archived: moved, flat)
    $CODEX_HOME/session_index.jsonl                             (names: last entry wins)

Every line is one object ``{"timestamp", "ordinal"?, "type", "payload"}``
(the line types: :mod:`.records`).

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

The modules, from the file up:

=============  ==============================================================
``paths``      where rollouts live and what they are called; timestamps
``items``      the core's turn items (what ``item_completed`` records) and
               :func:`core_item`, a live v2 item as its record
``records``    the line payloads (session meta, turn context, events, …)
``codec``      one line to bytes and back; a whole file's lines
               (:func:`read_rollout` blocks)
``meta``       the listing metadata (:class:`ThreadMeta`) and thread names
               (:func:`read_thread_names` blocks)
``casing``     snake_case (the file) <-> camelCase (the protocol)
``replayed``   the items and turns ``thread/read`` gives back from a file
``turns``      :class:`TurnBuilder`: turns from lines, incrementally
``replay``     :func:`replay`: history, turns, usage and metadata of a file
``scan``       :func:`scan_rollout`: listing metadata from head and tail
               (blocks)
``edit``       rewriting files whole: revert, fork (these block)
=============  ==============================================================

Design and rules:

* **Sans-I/O core.** Encoding, decoding, replay and the turn builder never
  touch the disk. What does is named above as blocking (reading a file,
  scanning one, reading the names, rewriting a file whole): call it
  through ``trio.to_thread.run_sync``. Creating a live thread's file
  lazily, appending and flushing belong to its writer actor
  (``actors/rollout_writer.py``), which uses :func:`rollout_path` and
  :func:`encode_line`.
* **A load never fails on content** (:mod:`.codec`): bad and torn lines are
  skipped with a warning, unknown ones kept raw and ignored; only an
  unreadable file raises.
* **Items stay byte-exact.** Response items, replacement histories and
  unknown payloads are ``msgspec.Raw``: what the original wrote is what the
  next model request carries, field for field (including fields this
  package has never heard of).
* **Replay follows the original** (:mod:`.replay`, :mod:`.turns`) and was
  checked against what codex-cli 0.169.0's ``thread/resume`` returned for
  the same files.
"""

from __future__ import annotations

from .casing import snakeize
from .codec import Rollout, decode_line, encode_line, parse_rollout, read_rollout
from .edit import fork_lines, revert_rollout, write_whole
from .items import (
    CoreAgentMessage,
    CoreCommandExecution,
    CoreContextCompaction,
    CoreEnteredReviewMode,
    CoreExitedReviewMode,
    CoreFileChange,
    CoreMcpToolCall,
    CorePlan,
    CoreReasoning,
    CoreTurnItem,
    CoreUserMessage,
    Duration,
    McpToolCallFields,
    core_item,
)
from .meta import ThreadMeta, encode_session_index_entry, read_thread_names, source_kind, thread_from_meta
from .paths import (
    ARCHIVED_SESSIONS_SUBDIR,
    SESSION_INDEX_FILE,
    SESSIONS_SUBDIR,
    archived_rollout_path,
    format_timestamp,
    iter_rollout_files,
    parse_rollout_filename,
    parse_timestamp,
    rollout_path,
)
from .records import (
    EVENT_TYPES,
    AgentMessageEvent,
    AgentReasoningEvent,
    AgentReasoningRawContentEvent,
    BaseInstructions,
    Compacted,
    ContextCompactedEvent,
    GitInfo,
    ItemCompletedEvent,
    Payload,
    PlanUpdateEvent,
    ResponseItem,
    RolloutLine,
    SessionMeta,
    ThreadNameUpdatedEvent,
    ThreadRolledBackEvent,
    TokenCountEvent,
    TokenUsage,
    TokenUsageInfo,
    TurnAbortedEvent,
    TurnCompleteEvent,
    TurnContext,
    TurnError,
    TurnStartedEvent,
    UnknownEvent,
    UnknownLine,
    UserMessageEvent,
)
from .replay import Replay, replay
from .replayed import (
    ReplayedAgentMessage,
    ReplayedCommandExecution,
    ReplayedEnteredReviewMode,
    ReplayedExitedReviewMode,
    ReplayedFileChange,
    ReplayedItem,
    ReplayedMcpToolCall,
    ReplayedPlan,
    ReplayedReasoning,
    ReplayedTurn,
    ReplayedTurnError,
    ReplayedUserMessage,
    ReplayedWebSearch,
)
from .scan import scan_rollout
from .turns import TurnBuilder, running

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
    "CoreCommandExecution",
    "CoreContextCompaction",
    "CoreEnteredReviewMode",
    "CoreExitedReviewMode",
    "CoreFileChange",
    "CoreMcpToolCall",
    "CorePlan",
    "CoreReasoning",
    "CoreTurnItem",
    "CoreUserMessage",
    "Duration",
    "GitInfo",
    "ItemCompletedEvent",
    "McpToolCallFields",
    "Payload",
    "PlanUpdateEvent",
    "Replay",
    "ReplayedAgentMessage",
    "ReplayedCommandExecution",
    "ReplayedEnteredReviewMode",
    "ReplayedExitedReviewMode",
    "ReplayedFileChange",
    "ReplayedItem",
    "ReplayedMcpToolCall",
    "ReplayedPlan",
    "ReplayedReasoning",
    "ReplayedTurn",
    "ReplayedTurnError",
    "ReplayedUserMessage",
    "ReplayedWebSearch",
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
    "TurnBuilder",
    "TurnCompleteEvent",
    "TurnContext",
    "TurnError",
    "TurnStartedEvent",
    "UnknownEvent",
    "UnknownLine",
    "UserMessageEvent",
    "archived_rollout_path",
    "core_item",
    "decode_line",
    "encode_line",
    "encode_session_index_entry",
    "fork_lines",
    "format_timestamp",
    "iter_rollout_files",
    "parse_rollout",
    "parse_rollout_filename",
    "parse_timestamp",
    "read_rollout",
    "read_thread_names",
    "replay",
    "revert_rollout",
    "rollout_path",
    "running",
    "scan_rollout",
    "snakeize",
    "source_kind",
    "thread_from_meta",
    "write_whole",
]
