"""The process runner: every child process of the server starts here, and
none outlives its owner.

Two ways in:

- :func:`run_command` runs one command to completion (the shell tools):
  stdin is ``/dev/null``, stdout and stderr are captured up to a cap and
  streamed to an optional callback, a timeout stops it.
- A :class:`ProcessTable` keeps long-lived processes (unified exec sessions,
  ``command/exec`` with a ``processId``) for one owner, a thread or a
  connection, whose tasks call it: spawn, write, resize,
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
  ``subprocess.Popen`` (:mod:`.child`, one child process) and waits on a
  pidfd, instead of ``trio.run_process``. Linux only (5.3+: pidfds,
  ``/proc``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence

import msgspec
import trio
from trio.lowlevel import FdStream

from . import sandbox
from ..kernel.errors import RuntimeFailure
from ..protocol.v2.thread import SandboxPolicy
from .child import REAP_TIMEOUT, Child, Stream, close_all, pump, set_size, spawn_piped, spawn_terminal

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

log = logging.getLogger("trio_codex.process")

#: Receives each chunk of output as it is read, with the stream it came from;
#: awaited before the next read, so a slow consumer slows the command down.
OnOutput = Callable[[bytes, Stream], Awaitable[None]]

#: The original's shell-tool timeout (``DEFAULT_EXEC_COMMAND_TIMEOUT_MS``).
DEFAULT_TIMEOUT_MS = 10_000
#: Bytes kept per stream by run_command (``DEFAULT_OUTPUT_BYTES_CAP``).
DEFAULT_OUTPUT_CAP_BYTES = 1024 * 1024
#: Unread output a table keeps per process (``UNIFIED_EXEC_OUTPUT_MAX_BYTES``).
TABLE_OUTPUT_CAP_BYTES = 1024 * 1024
#: run_command stops calling on_output after this many chunks
#: (``MAX_EXEC_OUTPUT_DELTAS_PER_CALL``); capture goes on.
MAX_OUTPUT_CALLBACKS = 10_000
#: Processes per table (``MAX_UNIFIED_EXEC_PROCESSES``). A full table stops
#: the least recently used, sparing the :data:`PROTECTED_RECENT` newest.
MAX_PROCESSES = 64
PROTECTED_RECENT = 8
#: run_command's exit code after a timeout (``EXEC_TIMEOUT_EXIT_CODE``).
TIMEOUT_EXIT_CODE = 124
#: Between SIGTERM and SIGKILL when a command times out.
TERM_GRACE = 2.0
#: After the leader exits, how long its output may take to drain; a process
#: that left the session can hold the pipes open (``IO_DRAIN_TIMEOUT_MS``).
IO_DRAIN_TIMEOUT = 2.0
DEFAULT_TERMINAL_SIZE = (24, 80)


class ProcessError(RuntimeFailure):
    """A request about a table's process that cannot be honoured."""


class UnknownProcess(ProcessError):
    def __init__(self, process_id: str) -> None:
        super().__init__(f"no process {process_id!r} here: it was never started, or its "
                         "exit has already been reported")
        self.process_id = process_id


class ProcessIdInUse(ProcessError):
    def __init__(self, process_id: str) -> None:
        super().__init__(f"process id {process_id!r} is already in use; pick another, or "
                         "wait for that process to end")
        self.process_id = process_id


class StdinClosed(ProcessError):
    def __init__(self, process_id: str) -> None:
        super().__init__(f"stdin of process {process_id!r} is closed; spawn it with a tty or "
                         "with stdin=True to write to it")
        self.process_id = process_id


class ExecOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """How a :func:`run_command` ended. ``exit_code`` is the process's, or
    128 + N if signal N killed it, or 124 if it timed out. ``stdout`` and
    ``stderr`` hold the first ``output_cap_bytes`` of each; ``truncated``
    says more was written. ``aggregated_output`` is stdout then stderr,
    within the same cap (under pressure a third for stdout, the rest for
    stderr, as the original). ``sandbox_denied``: it ran sandboxed, failed,
    and its output reads like a sandbox refusal or it died of SIGSYS (the
    original's heuristic, :func:`~..runtime.commands.sandbox.is_likely_sandbox_denied`);
    a caller may offer to rerun it unsandboxed."""

    exit_code: int
    stdout: bytes
    stderr: bytes
    aggregated_output: bytes
    duration_ms: int
    timed_out: bool
    truncated: bool
    sandbox_denied: bool


class Poll(msgspec.Struct, frozen=True, kw_only=True):
    """What :meth:`ProcessTable.poll` collected. ``exit_code`` is set once
    the process has ended (it has then left the table); ``dropped_bytes``
    counts unread output lost from the middle because nobody polled in time."""

    output: bytes
    exit_code: int | None
    dropped_bytes: int = 0


# --- one-shot commands -------------------------------------------------------------


async def run_command(
    argv: Sequence[str],
    *,
    cwd: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    sandbox_policy: SandboxPolicy,
    timeout_ms: int | None = DEFAULT_TIMEOUT_MS,
    output_cap_bytes: int | None = DEFAULT_OUTPUT_CAP_BYTES,
    on_output: OnOutput | None = None,
    bwrap: str = "bwrap",
) -> ExecOutcome:
    """Run ``argv`` in ``cwd`` to completion under ``sandbox_policy``.

    ``env`` is the command's whole environment (default: the server's); the
    network-disabled marker is added when the policy has no network.
    ``timeout_ms=None`` waits forever, ``output_cap_bytes=None`` keeps all
    output. ``on_output`` sees each chunk as it is read (at most
    :data:`MAX_OUTPUT_CALLBACKS` of them); if it raises, the command is
    killed and the error propagates (in an ExceptionGroup, from the task
    that read the output). If the caller is cancelled, the command and its
    session are killed and reaped before the cancellation propagates.

    Raises :class:`~trio_codex.runtime.commands.sandbox.SandboxUnavailable` when the
    policy needs a sandbox this host cannot make (``SandboxError`` when one
    of its writable roots is missing), and ``OSError`` when an unsandboxed
    ``argv[0]`` cannot be executed.
    """
    if not argv:
        raise ValueError("command must not be empty")
    env = sandbox.sandbox_env(os.environ if env is None else env, sandbox_policy)
    started = trio.current_time()
    capture = _Capture(output_cap_bytes)
    callbacks = 0

    async def deliver(data: bytes, stream: Stream) -> None:
        nonlocal callbacks
        capture.add(data, stream)
        if on_output is not None and callbacks < MAX_OUTPUT_CALLBACKS:
            callbacks += 1
            await on_output(data, stream)

    with sandbox.sandboxed_argv(argv, sandbox_policy, cwd, env, bwrap=bwrap) as command:
        child, _, readers = spawn_piped(command.argv, cwd=cwd, env=env, stdin=False,
                                         pass_fds=command.pass_fds)
        timed_out = False
        try:
            async with trio.open_nursery() as pumps:
                for reader, stream in readers:
                    pumps.start_soon(pump, reader, stream, deliver)
                timeout = math.inf if timeout_ms is None else timeout_ms / 1000
                with trio.move_on_after(timeout) as deadline:
                    await child.exited()
                if deadline.cancelled_caught:
                    timed_out = True
                    await child.kill(grace=TERM_GRACE)
                else:
                    child.reap()
                pumps.cancel_scope.deadline = trio.current_time() + IO_DRAIN_TIMEOUT
        finally:
            await child.kill()
            await close_all([reader for reader, _ in readers])
    exit_code = TIMEOUT_EXIT_CODE if timed_out else child.exit_code
    assert exit_code is not None  # reaped on every path that returns
    stdout, stderr = capture.take("stdout"), capture.take("stderr")
    return ExecOutcome(
        exit_code=exit_code,
        stdout=stdout,
        stderr=stderr,
        aggregated_output=_aggregate(stdout, stderr, output_cap_bytes),
        duration_ms=round((trio.current_time() - started) * 1000),
        timed_out=timed_out,
        truncated=capture.truncated,
        sandbox_denied=(sandbox.needs_sandbox(sandbox_policy) and not timed_out
                        and sandbox.is_likely_sandbox_denied(exit_code, stdout, stderr)),
    )


class _Capture:
    # The first `cap` bytes of each stream.
    def __init__(self, cap: int | None) -> None:
        self.cap = cap
        self.buffers: dict[Stream, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        self.truncated = False

    def add(self, data: bytes, stream: Stream) -> None:
        buf = self.buffers[stream]
        if self.cap is not None and len(buf) + len(data) > self.cap:
            self.truncated = True
            data = data[: max(0, self.cap - len(buf))]
        buf += data

    def take(self, stream: Stream) -> bytes:
        # One stream at a time, freeing its buffer, so at most one is doubled.
        out = bytes(self.buffers[stream])
        self.buffers[stream] = bytearray()
        return out


def _aggregate(stdout: bytes, stderr: bytes, cap: int | None) -> bytes:
    # The original's split (core/src/exec.rs aggregate_output): stdout then
    # stderr; over the cap, up to a third for stdout, the rest for stderr,
    # and what stderr leaves unused goes back to stdout.
    if cap is None or len(stdout) + len(stderr) <= cap:
        return stdout + stderr
    want_out = min(len(stdout), cap // 3)
    err_take = min(len(stderr), cap - want_out)
    out_take = want_out + min(cap - want_out - err_take, len(stdout) - want_out)
    return b"".join((memoryview(stdout)[:out_take], memoryview(stderr)[:err_take]))


# --- long-lived processes -------------------------------------------------------------


class _HeadTail:
    # Unread output within `cap`: the first half and the last half, with a
    # count of the bytes dropped between them.
    def __init__(self, cap: int) -> None:
        self._half = cap // 2
        self._head = bytearray()
        self._tail = bytearray()
        self.dropped = 0

    def push(self, data: bytes) -> None:
        room = self._half - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        self._tail += data
        excess = len(self._tail) - self._half
        if excess > 0:
            del self._tail[:excess]
            self.dropped += excess

    def take(self) -> tuple[bytes, int]:
        out, dropped = bytes(self._head + self._tail), self.dropped
        self._head.clear()
        self._tail.clear()
        self.dropped = 0
        return out, dropped


class _Process:
    def __init__(self, process_id: str, *, on_output: OnOutput | None, cap: int) -> None:
        self.id = process_id
        self.on_output = on_output
        self.buffer = _HeadTail(cap)
        self.child: Child | None = None
        self.stdin: FdStream | None = None
        self.terminal: FdStream | None = None
        self.ended = trio.Event()
        self.last_used = trio.current_time()
        self.label: dict[str, str] = {}

    async def deliver(self, data: bytes, stream: Stream) -> None:
        if self.on_output is not None:
            await self.on_output(data, stream)
        else:
            self.buffer.push(data)

    @property
    def exit_code(self) -> int:
        assert self.child is not None
        # -1: the process could not be reaped (stuck in the kernel).
        return -1 if self.child.exit_code is None else self.child.exit_code


class ProcessTable:
    """The long-lived processes of one owner, keyed by the owner's ids.

    The owner's tasks may call it concurrently for different processes (a
    turn's parallel tool calls do), but one process id is driven by one task
    at a time (a second concurrent :meth:`poll` of the same id would find it
    gone). Open it with :func:`open_process_table`. A process's output is either pushed to its
    ``on_output`` callback as it arrives (``command/exec`` streaming) or
    buffered for :meth:`poll` (unified exec). Its exit is reported once, by
    :meth:`poll` or :meth:`wait`, and then its id is free again.
    """

    def __init__(self, nursery: trio.Nursery, *, max_processes: int = MAX_PROCESSES,
                 bwrap: str = "bwrap") -> None:
        self._nursery = nursery
        self._max = max_processes
        self._bwrap = bwrap
        self._processes: dict[str, _Process] = {}

    def __len__(self) -> int:
        return len(self._processes)

    def __contains__(self, process_id: object) -> bool:
        return process_id in self._processes

    async def spawn(
        self,
        process_id: str,
        argv: Sequence[str],
        *,
        cwd: str | os.PathLike[str],
        env: Mapping[str, str] | None = None,
        sandbox_policy: SandboxPolicy,
        tty: bool = False,
        stdin: bool = False,
        size: tuple[int, int] | None = None,
        on_output: OnOutput | None = None,
        output_cap_bytes: int = TABLE_OUTPUT_CAP_BYTES,
        label: Mapping[str, str] | None = None,
    ) -> None:
        """Start ``argv`` as ``process_id``; ``label`` is what
        :meth:`running` reports of it (the command, its item). With ``tty``, it runs on a new
        pseudo-terminal of ``size`` (rows, cols; default 24x80) that is both
        its stdin and its output; otherwise stdout and stderr are pipes and
        stdin is a pipe only with ``stdin=True`` (else ``/dev/null``, so a
        command cannot hang waiting for input). ``env`` and
        ``sandbox_policy`` as in :func:`run_command`.

        A full table first stops its least recently used process, sparing
        the most recent ones (an exited one goes first), as the original.

        Raises :class:`ProcessIdInUse`, ``ValueError`` (empty ``argv``, a
        ``size`` without ``tty``), :class:`~trio_codex.runtime.commands.sandbox.SandboxUnavailable`
        and ``OSError`` (``argv[0]`` cannot be executed, without a tty; on a
        tty that shows as output and exit code 127).
        """
        if not argv:
            raise ValueError("command must not be empty")
        if size is not None and not tty:
            raise ValueError("a terminal size needs tty=True")
        if process_id in self._processes:
            raise ProcessIdInUse(process_id)
        if len(self._processes) >= self._max:
            self._evict()
        proc = _Process(process_id, on_output=on_output, cap=output_cap_bytes)
        proc.label = dict(label or {})
        self._processes[process_id] = proc
        env = sandbox.sandbox_env(os.environ if env is None else env, sandbox_policy)
        try:
            await self._nursery.start(self._run, proc, argv, cwd, env, sandbox_policy, tty,
                                      stdin, size or DEFAULT_TERMINAL_SIZE)
        except BaseException:
            del self._processes[process_id]
            raise

    async def write(self, process_id: str, data: bytes) -> None:
        """Write ``data`` to the process's terminal or stdin pipe; waits while
        the process is not reading. Raises :class:`StdinClosed` if it has
        none, or no longer has one."""
        proc = self._get(process_id)
        writer = proc.terminal or proc.stdin
        if writer is None:
            raise StdinClosed(process_id)
        try:
            await writer.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise StdinClosed(process_id) from None

    async def close_stdin(self, process_id: str) -> None:
        """Signal end of input: close the stdin pipe, or type ^D on a
        terminal (which ends input for a reader in canonical mode at the
        start of a line)."""
        proc = self._get(process_id)
        if proc.terminal is not None:
            await self.write(process_id, b"\x04")
        elif proc.stdin is not None:
            stdin, proc.stdin = proc.stdin, None
            await stdin.aclose()

    def resize(self, process_id: str, rows: int, cols: int) -> None:
        """Set the terminal size (the process gets SIGWINCH). Raises
        ``ValueError`` for a process without a tty."""
        proc = self._get(process_id)
        if proc.terminal is None:
            raise ValueError(f"process {process_id!r} has no terminal to resize; spawn it "
                             "with tty=True")
        with contextlib.suppress(OSError):  # it just ended and its terminal is closed
            set_size(proc.terminal.fileno(), (rows, cols))

    def running(self) -> list[tuple[str, dict[str, str], int | None]]:
        """The processes still running, oldest first: id, label, OS pid."""
        return [(p.id, p.label, p.child.pid if p.child else None)
                for p in self._processes.values() if not p.ended.is_set()]

    def terminate(self, process_id: str) -> None:
        """SIGKILL the process and its session. Its exit (code 137) is then
        reported by :meth:`poll` or :meth:`wait`."""
        proc = self._get(process_id)
        assert proc.child is not None
        proc.child.signal(signal.SIGKILL)

    async def poll(self, process_id: str, yield_time_ms: int) -> Poll:
        """Wait up to ``yield_time_ms``, or until the process ends, and
        return the output that arrived since the last poll (unified exec's
        semantics). Once it reports the exit code, the process is gone."""
        proc = self._get(process_id)
        with trio.move_on_after(yield_time_ms / 1000):
            await proc.ended.wait()
        output, dropped = proc.buffer.take()
        if not proc.ended.is_set():
            return Poll(output=output, exit_code=None, dropped_bytes=dropped)
        del self._processes[process_id]
        return Poll(output=output, exit_code=proc.exit_code, dropped_bytes=dropped)

    async def wait(self, process_id: str) -> int:
        """Wait until the process has ended and all its output has been
        delivered; return its exit code (128 + N for signal N). The process
        is then gone. Bound the wait with your own cancel scope."""
        proc = self._get(process_id)
        await proc.ended.wait()
        self._processes.pop(process_id, None)
        return proc.exit_code

    async def close_all(self) -> None:
        """Kill every process in the table with its session and wait (bounded,
        shielded) until each is reaped. Call it when the owner goes away."""
        procs = list(self._processes.values())
        self._processes.clear()
        for proc in procs:
            if proc.child is not None:
                proc.child.signal(signal.SIGKILL)
        with trio.CancelScope(shield=True), trio.move_on_after(REAP_TIMEOUT + IO_DRAIN_TIMEOUT):
            for proc in procs:
                await proc.ended.wait()

    def _get(self, process_id: str) -> _Process:
        proc = self._processes.get(process_id)
        if proc is None:
            raise UnknownProcess(process_id)
        proc.last_used = trio.current_time()
        return proc

    def _evict(self) -> None:
        newest_first = sorted(self._processes.values(), key=lambda p: p.last_used, reverse=True)
        candidates = newest_first[min(PROTECTED_RECENT, len(newest_first) - 1):][::-1]
        victim = next((p for p in candidates if p.ended.is_set()), candidates[0])
        log.info("process table full (%d): dropping %r (%s)", self._max, victim.id,
                 "exited" if victim.ended.is_set() else "least recently used; killed")
        del self._processes[victim.id]
        if victim.child is not None:
            victim.child.signal(signal.SIGKILL)

    async def _run(self, proc: _Process, argv: Sequence[str], cwd: str | os.PathLike[str],
                   env: dict[str, str], policy: SandboxPolicy, tty: bool, stdin: bool,
                   size: tuple[int, int], *, task_status: trio.TaskStatus[None]) -> None:
        try:
            with sandbox.sandboxed_argv(argv, policy, cwd, env, bwrap=self._bwrap) as command:
                if tty:
                    proc.child, proc.terminal = spawn_terminal(
                        command.argv, cwd=cwd, env=env, size=size, pass_fds=command.pass_fds)
                    readers: list[tuple[FdStream, Stream]] = [(proc.terminal, "stdout")]
                else:
                    proc.child, proc.stdin, readers = spawn_piped(
                        command.argv, cwd=cwd, env=env, stdin=stdin, pass_fds=command.pass_fds)
                task_status.started()
                child = proc.child
                try:
                    async with trio.open_nursery() as pumps:
                        for reader, stream in readers:
                            pumps.start_soon(pump, reader, stream, proc.deliver)
                        await child.exited()
                        child.reap()
                        pumps.cancel_scope.deadline = trio.current_time() + IO_DRAIN_TIMEOUT
                finally:
                    await child.kill()
                    await close_all([proc.stdin, *(reader for reader, _ in readers)])
                    proc.stdin = None
        finally:
            proc.ended.set()


@contextlib.asynccontextmanager
async def open_process_table(*, max_processes: int = MAX_PROCESSES,
                             bwrap: str = "bwrap") -> AsyncIterator[ProcessTable]:
    """A :class:`ProcessTable` whose processes are all killed and reaped
    when the block exits, however it exits."""
    async with trio.open_nursery() as nursery:
        table = ProcessTable(nursery, max_processes=max_processes, bwrap=bwrap)
        try:
            yield table
        finally:
            await table.close_all()
            nursery.cancel_scope.cancel()
