"""trio_codex.runtime: the kernel every actor builds on, and the wire
vocabulary (:mod:`.protocol`).

The kernel's public names are re-exported here. The composition root,
:func:`trio_codex.runtime.app.serve`, is imported from its module: it pulls
in actors/ and transports/, which themselves import this package.

Embedding the server in a trio program, and a typed client of it or of
any app server: :mod:`trio_codex.runtime.embed` (README, "Embedding")::

    from trio_codex.runtime.embed import Client, Server
"""

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

__all__ = [
    "DROP", "LOSSLESS", "ActorCrashed", "ActorGone", "AskTimeout", "Coalesce", "FrameStream",
    "Inbox", "Mailbox", "MailboxClosed", "MailboxStatistics",
    "Oversized", "ReplySlot", "RestartPolicy", "RuntimeFailure", "ShutdownTimeout",
    "Supervisor", "SupervisorEscalation", "TransportClosed", "ask", "open_mailbox",
    "open_supervisor", "uuid7",
]
