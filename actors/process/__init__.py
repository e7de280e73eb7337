"""The process runner: every child process of the server starts here, and
none outlives its owner.

Two ways in:

- :func:`run_command` runs one command to completion (the shell tools):
  stdin is ``/dev/null``, stdout and stderr are captured up to a cap and
  streamed to an optional callback, a timeout stops it.
- A :class:`ProcessTable` keeps long-lived processes (unified exec sessions,
  ``command/exec`` with a ``processId``) for one owner, a thread or a
  connection, which calls it from its own task: spawn, write, resize,
  terminate, poll or wait for output, and :meth:`ProcessTable.close_all`
  when the owner goes away. Open one with :func:`open_process_table`.
  It is a helper the owning actor holds, not an actor: its processes need
  no mailbox of their own, and their tasks live in the table's nursery.

Rules:

- A child leads its own session (``pid == pgid == sid``). Stopping it
  signals everything still in that session (the process group and, found
  through ``/proc``, job-control groups a shell made), so ``sh -c 'sleep 100
  & sleep 100'`` or an interactive shell's background jobs go too. When a
  command's leader exits, whatever it left running in its session is
  killed: a process started by a command ends with it (as in the original's
  sandbox, where the pid namespace dies with the command). Only a process
  that leaves the session (``setsid``, a daemon) can escape an unsandboxed
  command.
- Every exit path reaps: normal exit, timeout (SIGTERM to the session, then
  SIGKILL after :data:`TERM_GRACE`), and cancellation (SIGKILL, then reap
  under a shield, bounded by :data:`REAP_TIMEOUT`, before the cancellation
  goes on).
- Memory is bounded whatever a command writes: run_command keeps the first
  ``output_cap_bytes`` of each stream; a table keeps the first and last half
  of the unread output and counts what it dropped.
- Children are forked from the thread running trio, never from a worker
  thread: bubblewrap's ``--die-with-parent`` follows the forking thread, and
  trio's workers exit after 10 s idle. So spawning goes through
  ``subprocess.Popen`` here and waits on a pidfd, instead of
  ``trio.run_process``. Linux only (5.3+: pidfds, ``/proc``).

Modules: :mod:`.child` (limits, results, one child), :mod:`.oneshot`
(:func:`run_command`), :mod:`.table` (:class:`ProcessTable`).
"""

from __future__ import annotations

from .child import (
    DEFAULT_OUTPUT_CAP_BYTES,
    DEFAULT_TIMEOUT_MS,
    MAX_PROCESSES,
    ExecOutcome,
    OnOutput,
    Poll,
    ProcessError,
    ProcessIdInUse,
    StdinClosed,
    UnknownProcess,
)
from .oneshot import run_command
from .table import (
    open_process_table,
    ProcessTable,
)

__all__ = [
    "DEFAULT_OUTPUT_CAP_BYTES",
    "DEFAULT_TIMEOUT_MS",
    "MAX_PROCESSES",
    "ExecOutcome",
    "OnOutput",
    "Poll",
    "ProcessError",
    "ProcessIdInUse",
    "ProcessTable",
    "StdinClosed",
    "UnknownProcess",
    "open_process_table",
    "run_command",
]
