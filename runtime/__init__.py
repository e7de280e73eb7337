"""trio_codex.runtime: the kernel every actor builds on, and the wire
vocabulary (:mod:`.protocol`).

The kernel's public names are re-exported here. The composition root,
:func:`trio_codex.runtime.app.serve`, is imported from its module: it pulls
in actors/ and transports/, which themselves import this package.

Beside the kernel sit the Codex domain libraries (command safety, apply_patch,
rollout, config, sandbox, ...); the command-safety rules and apply_patch are
the packages :mod:`.command_safety` and :mod:`.apply_patch` (their docstrings
list their modules).

Embedding the server in a trio program, and a typed client of it or of
any app server: :mod:`trio_codex.runtime.embed` (README, "Embedding")::

    from trio_codex.runtime.embed import Client, Server
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .ask import ReplySlot as ReplySlot
    from .ask import ask as ask
    from .errors import ActorCrashed as ActorCrashed
    from .errors import ActorGone as ActorGone
    from .errors import AskTimeout as AskTimeout
    from .errors import MailboxClosed as MailboxClosed
    from .errors import MailboxFull as MailboxFull
    from .errors import RuntimeFailure as RuntimeFailure
    from .errors import ShutdownTimeout as ShutdownTimeout
    from .errors import SupervisorEscalation as SupervisorEscalation
    from .ids import IdSource as IdSource
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
    "MailboxFull": "errors",
    "RuntimeFailure": "errors",
    "ShutdownTimeout": "errors",
    "SupervisorEscalation": "errors",
    "IdSource": "ids",
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
    "IdSource", "Inbox", "Mailbox", "MailboxClosed", "MailboxFull", "MailboxStatistics",
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
