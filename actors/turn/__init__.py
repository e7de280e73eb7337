"""One actor per turn: the sampling loop.

It samples the model with the thread's history plus what this turn added,
streams item events (``item/started``, deltas, ``item/completed``,
``thread/tokenUsage/updated``) straight to the thread's subscribers, and
samples again while the model asks for a follow-up (a tool call's output to
read). When it is over it reports :class:`~.messages.TurnEnded` to its
thread, which writes the closing notifications.

The delta path is one mailbox hop: the turn runs its model stream in its
own task and handles each network read's :class:`~.messages.ModelEvents`
batch where it is read (one wake-up per read, not two); each delta becomes
one notification queued on each subscriber's outbox. The thread's messages
(subscribers, steered input, user shell commands) are read beside the
stream by a task that wakes only when the thread sends one.

Compaction: a ``compact`` turn (thread/compact/start) only compacts; a
regular turn compacts before it samples when the thread's context is past
its limit (``compact_first``), and between two samplings when it gets there
and the model has more to do. The model summarizes the history; the newest
user messages and the summary replace it (``runtime/conversation/history.py``), in a
``contextCompaction`` item and a ``compacted`` rollout line.

Interrupt: the thread cancels the turn's scope with a reason. A message that
was streaming gets no ``item/completed`` (as the original); what completed is
kept, and the history records that the user interrupted the turn.

Modules: :mod:`.actor` (the loop and tool calls), :mod:`.events` (model
events, notifications, usage), :mod:`.phases` (review mode, compaction),
:mod:`.spec` (the spec, the mailbox, constants).

The other modules:

=====================  =======================================================
``mcp_calls``          the model's MCP tool and resource calls, for
                       :mod:`.tools`
``tools``              one tool call, run in its turn's nursery
=====================  =======================================================
"""

from .actor import run_turn
from .spec import TURN_CAPACITY, TurnSpec, open_turn_mailbox, user_message_lines

__all__ = ["TURN_CAPACITY", "TurnSpec", "open_turn_mailbox", "run_turn", "user_message_lines"]
