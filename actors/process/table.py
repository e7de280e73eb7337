"""Long-lived processes: a :class:`ProcessTable` keeps an owner's unified
exec sessions and ``command/exec`` processes, their output bounded."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import AsyncIterator, Mapping, Sequence

import trio
from trio.lowlevel import FdStream

from ...runtime import sandbox
from ...runtime.protocol.v2.thread import SandboxPolicy
from .child import (
    DEFAULT_TERMINAL_SIZE,
    IO_DRAIN_TIMEOUT,
    MAX_PROCESSES,
    PROTECTED_RECENT,
    REAP_TIMEOUT,
    TABLE_OUTPUT_CAP_BYTES,
    _Child,
    _close_all,
    _pump,
    _set_size,
    _spawn_piped,
    _spawn_terminal,
    log,
    OnOutput,
    Poll,
    ProcessIdInUse,
    StdinClosed,
    Stream,
    UnknownProcess,
)


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
        self.child: _Child | None = None
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

    Call it from one task (the owner's); open it with
    :func:`open_process_table`. A process's output is either pushed to its
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
        ``size`` without ``tty``), :class:`~trio_codex.runtime.sandbox.SandboxUnavailable`
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
            _set_size(proc.terminal.fileno(), (rows, cols))

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
                    proc.child, proc.terminal = _spawn_terminal(
                        command.argv, cwd=cwd, env=env, size=size, pass_fds=command.pass_fds)
                    readers: list[tuple[FdStream, Stream]] = [(proc.terminal, "stdout")]
                else:
                    proc.child, proc.stdin, readers = _spawn_piped(
                        command.argv, cwd=cwd, env=env, stdin=stdin, pass_fds=command.pass_fds)
                task_status.started()
                child = proc.child
                try:
                    async with trio.open_nursery() as pumps:
                        for reader, stream in readers:
                            pumps.start_soon(_pump, reader, stream, proc.deliver)
                        await child.exited()
                        child.reap()
                        pumps.cancel_scope.deadline = trio.current_time() + IO_DRAIN_TIMEOUT
                finally:
                    await child.kill()
                    await _close_all([proc.stdin, *(reader for reader, _ in readers)])
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
