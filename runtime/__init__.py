"""trio_codex.runtime: the kernel every actor builds on, the wire
vocabulary, the Codex domain libraries in rooms by concern, and the entry
points.

The kernel's public names are re-exported here. The composition root,
:func:`trio_codex.runtime.app.serve`, is imported from its module: it pulls
in actors/ and transports/, which themselves import this package.

Embedding the server in a trio program, and a typed client of it or of
any app server: :mod:`trio_codex.runtime.embed` (README, "Embedding")::

    from trio_codex.runtime.embed import Client, Server

Nothing in a room imports actors/ or transports/; the kernel imports nothing
outside itself (``tests/test_layout.py``). Each room's docstring lists its
modules.

The kernel and the wire vocabulary:

=====================  =======================================================
``kernel``             the actor runtime: mailboxes, ask, supervision, errors,
                       the frame seam, ids, clock, logging (trio and msgspec
                       only, nothing about Codex)
``protocol``           the wire vocabulary: JSON-RPC envelope and codec, the
                       method table, the v2 types, the Responses API types,
                       serde's wording
=====================  =======================================================

The Codex domain libraries (sans-I/O where they can be; blocking ones are
run off the trio thread by their actor):

=====================  =======================================================
``config``             config.toml, ``-c`` and profiles read as the original
                       reads them; config writes, the MCP server table, the
                       stored login, ``CODEX_HOME``
``persistence``        what a thread leaves on disk (rollouts, the listing
                       index, goals) and reading it back
``conversation``       what the model is sent: the history, collaboration
                       modes, review prompts
``commands``           running a command: whether it may, its sandbox, its
                       process, what the model reads of it
``files``              patches and the client's file operations
``mcp``                MCP tools as the model sees them; ``trio-codex
                       mcp-server`` and ``mcp``
``server``             what the server answers by itself, and the limits it
                       keeps
``cluster``            the seams (thread store, bus, directory) that let
                       threads live on other nodes, and their backends
=====================  =======================================================

The composition root and the entry points (of these, ``app``, ``cli``,
``embed`` and ``client``, with ``exec.run`` and ``mcp.server``, may import
actors/ and transports/; nothing else may):

=====================  =======================================================
``app``                ``serve()``: the host nursery and every actor under it
                       (the composition root)
``cli``                ``trio-codex``'s command line
``exec``               ``trio-codex exec``: one turn, no client needed
``embed``              the embedding API: ``Server``
``client``             ``Client``: any transport, typed
``client_events``      the client's errors and events, and their decoding
``handshake``          a stdio client's ``initialize`` answered before trio
                       and the server are imported (a faster cold start)
=====================  =======================================================
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .kernel.ask import ReplySlot as ReplySlot
    from .kernel.ask import ask as ask
    from .kernel.errors import ActorCrashed as ActorCrashed
    from .kernel.errors import ActorGone as ActorGone
    from .kernel.errors import AskTimeout as AskTimeout
    from .kernel.errors import MailboxClosed as MailboxClosed
    from .kernel.errors import RuntimeFailure as RuntimeFailure
    from .kernel.errors import ShutdownTimeout as ShutdownTimeout
    from .kernel.errors import SupervisorEscalation as SupervisorEscalation
    from .kernel.ids import uuid7 as uuid7
    from .kernel.mailbox import DROP as DROP
    from .kernel.mailbox import LOSSLESS as LOSSLESS
    from .kernel.mailbox import Coalesce as Coalesce
    from .kernel.mailbox import Inbox as Inbox
    from .kernel.mailbox import Mailbox as Mailbox
    from .kernel.mailbox import MailboxStatistics as MailboxStatistics
    from .kernel.mailbox import open_mailbox as open_mailbox
    from .kernel.stream import FrameStream as FrameStream
    from .kernel.stream import Oversized as Oversized
    from .kernel.stream import TransportClosed as TransportClosed
    from .kernel.supervisor import RestartPolicy as RestartPolicy
    from .kernel.supervisor import Supervisor as Supervisor
    from .kernel.supervisor import open_supervisor as open_supervisor

#: Each re-exported name's module. Imported on first use (PEP 562): the
#: command line imports this package, and answering a stdio client's
#: `initialize` (:mod:`.handshake`) must not wait for trio, which the
#: kernel's modules import.
_EXPORTS = {
    "ReplySlot": "kernel.ask",
    "ask": "kernel.ask",
    "ActorCrashed": "kernel.errors",
    "ActorGone": "kernel.errors",
    "AskTimeout": "kernel.errors",
    "MailboxClosed": "kernel.errors",
    "RuntimeFailure": "kernel.errors",
    "ShutdownTimeout": "kernel.errors",
    "SupervisorEscalation": "kernel.errors",
    "uuid7": "kernel.ids",
    "DROP": "kernel.mailbox",
    "LOSSLESS": "kernel.mailbox",
    "Coalesce": "kernel.mailbox",
    "Inbox": "kernel.mailbox",
    "Mailbox": "kernel.mailbox",
    "MailboxStatistics": "kernel.mailbox",
    "open_mailbox": "kernel.mailbox",
    "FrameStream": "kernel.stream",
    "Oversized": "kernel.stream",
    "TransportClosed": "kernel.stream",
    "RestartPolicy": "kernel.supervisor",
    "Supervisor": "kernel.supervisor",
    "open_supervisor": "kernel.supervisor",
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
