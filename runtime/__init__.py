"""trio_codex.runtime: the kernel every actor builds on, the wire
vocabulary, the Codex domain libraries, and the entry points.

The kernel's public names are re-exported here. The composition root,
:func:`trio_codex.runtime.app.serve`, is imported from its module: it pulls
in actors/ and transports/, which themselves import this package.

Embedding the server in a trio program, and a typed client of it or of
any app server: :mod:`trio_codex.runtime.embed` (README, "Embedding")::

    from trio_codex.runtime.embed import Client, Server

The kernel (trio and msgspec only, nothing about Codex):

=====================  ======================================================
``mailbox``            bounded mailboxes and their overflow policies
``ask``                request/reply between actors, bounded by a timeout
``supervisor``         one-for-one supervision with a restart budget
``errors``             the one exception tree
``stream``             ``FrameStream``, the seam between transports and
                       connections
``ids``                UUIDv7 ids
``clock``              Unix milliseconds, as the protocol stamps time
``log``                logging to stderr (stdout is the stdio transport's)
=====================  ======================================================

The wire vocabulary: ``protocol`` (the JSON-RPC envelope and codec, the
method table, the v2 types, the Responses API types, serde's wording).

The Codex domain libraries (sans-I/O where they can be; blocking ones are
run off the trio thread by their actor). ``config``, ``command_safety``,
``apply_patch``, ``rollout``, ``thread_index`` and ``cluster`` are packages
whose docstrings list their modules:

=====================  ======================================================
``config``             config.toml, ``-c`` and profiles read as the original
                       reads them; the provider catalog
``config_write``       ``config/value/write`` and ``config/batchWrite``
``mcp_config``         ``[mcp_servers.NAME]``, typed
``auth``               the stored API-key login
``home``               ``CODEX_HOME`` checked at start-up
``limits``             the limits that keep clients from taking the server
                       down
``rate_limits``        the provider's usage limits, from response headers
``server_info``        the handshake and the read-only requests
``handshake``          a stdio client's ``initialize`` answered before trio
                       and the server are imported (a faster cold start)
``local_requests``     requests answered from ``CODEX_HOME`` alone
``permissions``        permission profiles: the sandbox a profile stands for
``sandbox``            the bubblewrap sandbox, the writable roots and the
                       denial heuristic, and the spawn environment
``seccomp``            the sandbox's seccomp filter
``command_safety``     which commands and patches run without asking
``apply_patch``        the ``apply_patch`` format: parse, plan, apply
``patch_writer``       carrying out a planned patch, undoing on failure
``tool_output``        the text the model receives for a command
``mcp_tools``          MCP tools as the model sees them
``history``            the model-facing history: turns, rollback, compaction
``history_pages``      pages of a thread's history (``thread/turns/list``,
                       ``thread/items/list``)
``collaboration``      collaboration modes and their instructions
``review``             ``review/start``: prompts and the reviewer's answer
``goals``              thread goals (SQLite)
``rollout``            rollout files: the on-disk thread record, its
                       replay for ``thread/resume`` and ``thread/read``
``thread_index``       the thread listing index (SQLite)
``git``                what a rollout records of its repository
``notify``             the ``notify`` program run after each turn
``file_search``        the fuzzy file search (``@`` mentions)
``fs_ops``             the file operations behind ``fs/*``
``cluster``            the seams (thread store, bus, directory) that let
                       threads live on other nodes, and their backends
=====================  ======================================================

The composition root and the entry points (of these, ``app``, ``cli``,
``exec``, ``embed``, ``client`` and ``mcp_server`` may import actors/ and
transports/; nothing else may):

=====================  ======================================================
``app``                ``serve()``: the host nursery and every actor under it
``cli``                ``trio-codex``'s command line
``exec``               ``trio-codex exec``: one turn, no client needed
``exec_cli``           ``exec``'s command line
``exec_events``        ``exec --json``: notifications in, JSONL events out
``exec_human``         ``exec``'s transcript and answer
``embed``              the embedding API: ``Server``
``client``             ``Client``: any transport, typed
``client_events``      the client's errors and events, and their decoding
``mcp_server``         ``trio-codex mcp-server``
``mcp_server_tools``   ``mcp-server``'s tools and messages, sans-I/O
``mcp_cli``            ``trio-codex mcp list|get|add|remove``
=====================  ======================================================
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .ask import ReplySlot as ReplySlot
    from .ask import ask as ask
    from .errors import ActorCrashed as ActorCrashed
    from .errors import ActorGone as ActorGone
    from .errors import AskTimeout as AskTimeout
    from .errors import MailboxClosed as MailboxClosed
    from .errors import RuntimeFailure as RuntimeFailure
    from .errors import ShutdownTimeout as ShutdownTimeout
    from .errors import SupervisorEscalation as SupervisorEscalation
    from .ids import uuid7 as uuid7
    from .mailbox import DROP as DROP
    from .mailbox import LOSSLESS as LOSSLESS
    from .mailbox import Coalesce as Coalesce
    from .mailbox import Inbox as Inbox
    from .mailbox import Mailbox as Mailbox
    from .mailbox import MailboxStatistics as MailboxStatistics
    from .mailbox import open_mailbox as open_mailbox
    from .stream import FrameStream as FrameStream
    from .stream import Oversized as Oversized
    from .stream import TransportClosed as TransportClosed
    from .supervisor import RestartPolicy as RestartPolicy
    from .supervisor import Supervisor as Supervisor
    from .supervisor import open_supervisor as open_supervisor

#: Each re-exported name's module. Imported on first use (PEP 562): the
#: command line imports this package, and answering a stdio client's
#: `initialize` (:mod:`.handshake`) must not wait for trio, which the
#: kernel's modules import.
_EXPORTS = {
    "ReplySlot": "ask",
    "ask": "ask",
    "ActorCrashed": "errors",
    "ActorGone": "errors",
    "AskTimeout": "errors",
    "MailboxClosed": "errors",
    "RuntimeFailure": "errors",
    "ShutdownTimeout": "errors",
    "SupervisorEscalation": "errors",
    "uuid7": "ids",
    "DROP": "mailbox",
    "LOSSLESS": "mailbox",
    "Coalesce": "mailbox",
    "Inbox": "mailbox",
    "Mailbox": "mailbox",
    "MailboxStatistics": "mailbox",
    "open_mailbox": "mailbox",
    "FrameStream": "stream",
    "Oversized": "stream",
    "TransportClosed": "stream",
    "RestartPolicy": "supervisor",
    "Supervisor": "supervisor",
    "open_supervisor": "supervisor",
}

__all__ = [
    "DROP", "LOSSLESS", "ActorCrashed", "ActorGone", "AskTimeout", "Coalesce", "FrameStream",
    "Inbox", "Mailbox", "MailboxClosed", "MailboxStatistics",
    "Oversized", "ReplySlot", "RestartPolicy", "RuntimeFailure", "ShutdownTimeout",
    "Supervisor", "SupervisorEscalation", "TransportClosed", "ask", "open_mailbox",
    "open_supervisor", "uuid7",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
