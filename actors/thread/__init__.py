"""One actor per loaded thread.

It owns the thread's subscribers, its history (the Responses items sent to
the model on every request), its token usage and its one active turn. It is
the single writer of the thread's lifecycle notifications; the turn it starts
streams item events to the same subscribers directly (one hop less on the
delta path) and reports back with :class:`~.messages.TurnEnded`.

Order on the wire, as the original: the ``turn/start`` response, then
``thread/status/changed {active}``, ``turn/started``, the user message item;
at the end ``thread/status/changed {idle}`` (``systemError`` and an ``error``
notification when it failed) and ``turn/completed``.

Broadcast notifications (``thread/started``, ``thread/status/changed``) go to
the subscribers directly, in order with everything else, and to every other
initialized connection through the hub.

Lifecycle: one state, :data:`ThreadState`, says what the thread is doing.
The thread opens its turn's mailbox, sends to it without ever waiting for
room (subscriber changes and steered input are coalesced when it is full) and
closes it when it handles the turn's ``TurnEnded``; the turn reads it and
never closes it. So a message that reaches the thread after its turn has stopped reading (but
before ``TurnEnded``) still finds the mailbox open; steered input the turn
never read joins the history, as the original records pending input when a
turn finishes. What each message does in each state:

=================  ==============  =================  ==================  ===========
message            Ready           Running(turn)      Stopping(turn)      Unloading
=================  ==============  =================  ==================  ===========
StartTurn          start a turn    steer it (0.169)   deferred to its end as Ready
SteerTurn          error: no turn  steer it           error: no turn      as Ready
InterruptTurn      error: no turn  cancel: Stopping   answer (stopping)   as Ready
CompactThread      compact turn    cancel: Stopping,  deferred to its end as Ready
                                   then compact
RevertThread       revert          cancel: Stopping,  deferred to its end as Ready
                                   then revert
TurnEnded (its)    stale: dropped  close its mailbox, finish: Ready;     stale: dropped
                                   then the deferred work, in order
TurnEnded (other)  stale: dropped  stale: dropped     stale: dropped      stale: dropped
ApprovalGate/Done  session cache   + its waiting      + its waiting       as Ready
                                   status if its own  status if its own
Subscribe, Unsub-  subscribers     subscribers, and   as Running          as Ready
scribe, ReadThread                 the turn is told
Renamed, Patch-    update          update             update              as Ready
GitInfo
UnloadDue (its)    no subscriber:  ignored            ignored             ignored
                   Unloading
=================  ==============  =================  ==================  ===========

"as Ready": the thread is Ready again first (the registry unloads a thread
only when nothing was sent to it since it asked, see ``UnloadThread``), and
its unload delay starts over. A stale message (for a turn this incarnation
did not start: a predecessor's, before a restart) is logged and dropped. A
message of a class no thread takes is a bug in its sender: the actor
crashes and its supervisor restarts it.

Modules: :mod:`.actor` (the actor, its loop and dispatch), :mod:`.state`
(lifecycle states, the turn handle), :mod:`.turns` (turn handlers),
:mod:`.actions` (shell, review, background terminals, injected items,
goals).
"""

from .actor import ThreadActor, run_thread
from .state import lost_turn, user_history_item

__all__ = ["ThreadActor", "lost_turn", "run_thread", "user_history_item"]
