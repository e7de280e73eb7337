"""The thread registry: the supervisor of every loaded thread.

It starts threads (``thread/start``), routes messages to them by id (so a
thread is addressed through the registry and could later live elsewhere),
and keeps each thread's last checkpoint: when a thread actor crashes its
supervisor restarts it from that checkpoint on the same mailbox, within a
per-thread restart budget.

Its loop never waits on another actor's work: requests that read a rollout
or ask the store (name, archive, delete, metadata) run beside it as workers
that answer when done, those about one thread one after another in arrival
order; what reaches a thread goes without waiting (a full thread answers
-32001).

Modules: :mod:`.registry` (the actor), :mod:`.workers` (requests run beside
its loop), :mod:`.config` (thread configuration, pure).
"""

from .registry import REGISTRY_CAPACITY, THREAD_CAPACITY, ThreadRegistry

__all__ = ["REGISTRY_CAPACITY", "THREAD_CAPACITY", "ThreadRegistry"]
