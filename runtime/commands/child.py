"""One child process of the server (for :mod:`.process`, which runs them):
spawned as the leader of its own session, on pipes or on a new terminal;
its session signalled as a whole; reaped on every way out.

A child stays a zombie after it exits until it is reaped, so its pid (also
its process group and session id) cannot be reused while we still signal
them. Processes are forked from the thread running trio (see
:mod:`.process`), and their exit is awaited on a pidfd.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import struct
import subprocess
import sys
import termios
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Literal

import trio
from trio.lowlevel import FdStream

__all__ = [
    "READ_CHUNK", "REAP_TIMEOUT", "Child", "Stream", "close_all", "pump", "set_size", "spawn_piped",
    "spawn_terminal",
]

log = logging.getLogger("trio_codex.process")

Stream = Literal["stdout", "stderr"]
#: How long a SIGKILLed process may take to die before we give up on it.
REAP_TIMEOUT = 5.0
READ_CHUNK = 8192


class Child:
    """A spawned process that leads its own session. It stays a zombie
    after it exits until :meth:`reap`, so its pid (also its process group
    and session id) cannot be reused while we still signal them."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        self.pid = popen.pid
        self._pidfd = os.pidfd_open(popen.pid)
        self.exit_code: int | None = None

    @classmethod
    def spawn(cls, argv: Sequence[str], *, cwd: str | os.PathLike[str], env: Mapping[str, str],
              stdin: int, stdout: int, stderr: int, pass_fds: Sequence[int]) -> Child:
        popen = subprocess.Popen(argv, cwd=cwd, env=env, stdin=stdin, stdout=stdout,
                                 stderr=stderr, start_new_session=True, pass_fds=pass_fds)
        try:
            return cls(popen)
        except OSError:  # no pidfd (Linux < 5.3): do not leave the process behind
            popen.kill()
            popen.wait()
            raise

    async def exited(self) -> None:
        if self.exit_code is None:
            await trio.lowlevel.wait_readable(self._pidfd)

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the process and everything in its session."""
        if self.exit_code is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)
        for pid in (self.pid, *_session_members(self.pid)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)

    def reap(self) -> int:
        """Kill what the exited process left in its session, then collect
        its status. Call only once :meth:`exited` has returned."""
        self.signal(signal.SIGKILL)
        returncode = self._popen.wait()
        trio.lowlevel.notify_closing(self._pidfd)
        os.close(self._pidfd)
        self.exit_code = 128 - returncode if returncode < 0 else returncode
        return self.exit_code

    async def kill(self, grace: float = 0.0) -> None:
        """Stop the session (SIGTERM first when ``grace`` > 0, then SIGKILL),
        reap the process and wait until the rest of its session has died
        too. Runs shielded, so it also works on the way out of a cancelled
        scope; bounded by ``grace`` + twice :data:`REAP_TIMEOUT`."""
        if self.exit_code is not None:
            return
        with trio.CancelScope(shield=True):
            if grace > 0:
                self.signal(signal.SIGTERM)
                with trio.move_on_after(grace):
                    await self.exited()
            # A SIGKILLed process dies only once the kernel schedules it
            # (late, on a busy machine): hold a pidfd on each member of the
            # session, opened before the signal so that no pid can be reused
            # meanwhile, and wait on them, so nothing of the session still
            # runs when this returns.
            members = _pidfds(_session_members(self.pid))
            try:
                self.signal(signal.SIGKILL)
                with trio.move_on_after(REAP_TIMEOUT) as waited:
                    await self.exited()
                if waited.cancelled_caught:
                    log.error("process %d did not die within %.0f s of SIGKILL; leaving it",
                              self.pid, REAP_TIMEOUT)
                    return
                self.reap()
                with trio.move_on_after(REAP_TIMEOUT) as waited:
                    for pidfd in members:
                        await trio.lowlevel.wait_readable(pidfd)
                if waited.cancelled_caught:
                    log.error("processes of the session of %d did not die within %.0f s of SIGKILL; "
                              "leaving them", self.pid, REAP_TIMEOUT)
            finally:
                for pidfd in members:
                    os.close(pidfd)


def _pidfds(pids: list[int]) -> list[int]:
    # A pidfd turns readable when its process has exited (a zombie, or gone).
    # A process already gone, or no descriptor left: not waited for.
    fds = []
    for pid in pids:
        with contextlib.suppress(OSError):
            fds.append(os.pidfd_open(pid))
    return fds


def _session_members(sid: int) -> list[int]:
    # Processes whose session is `sid`: field 6 of /proc/<pid>/stat, the
    # fourth after the parenthesised command name (which may hold spaces).
    members = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rpartition(b")")[2].split()
        except OSError:
            continue
        if len(fields) > 3 and int(fields[3]) == sid:
            members.append(int(name))
    return members


# A tty child takes its terminal as its controlling terminal before exec
# (Popen has already made it a session leader), so line discipline signals
# (^C, ^Z) and SIGWINCH reach it. Run as `python -I -S -c ...` rather than a
# preexec_fn, which is unsafe in a process with threads. The descriptors
# Popen passed on (the seccomp program) stay open across its exec.
_TAKE_TERMINAL = """\
import fcntl, os, sys, termios
fcntl.ioctl(0, termios.TIOCSCTTY, 0)
try:
    os.execvp(sys.argv[1], sys.argv[1:])
except OSError as exc:
    sys.stderr.write(f"{sys.argv[1]}: {exc.strerror}\\n")
    sys.exit(127)
"""


def spawn_piped(argv: Sequence[str], *, cwd: str | os.PathLike[str], env: Mapping[str, str],
                 stdin: bool, pass_fds: Sequence[int],
                 ) -> tuple[Child, FdStream | None, list[tuple[FdStream, Stream]]]:
    # (child, stdin writer or None for /dev/null, [(reader, stream)])
    with contextlib.ExitStack() as child_ends, contextlib.ExitStack() as on_error:
        def pipe() -> tuple[int, int]:
            r, w = os.pipe()
            on_error.callback(os.close, r)
            on_error.callback(os.close, w)
            return r, w
        out_r, out_w = pipe()
        err_r, err_w = pipe()
        in_r, in_w = pipe() if stdin else (subprocess.DEVNULL, -1)
        child = Child.spawn(argv, cwd=cwd, env=env, stdin=in_r, stdout=out_w, stderr=err_w,
                             pass_fds=pass_fds)
        on_error.pop_all()
        for fd in (out_w, err_w, in_r):
            if fd >= 0:
                child_ends.callback(os.close, fd)
    writer = FdStream(in_w) if stdin else None
    return child, writer, [(FdStream(out_r), "stdout"), (FdStream(err_r), "stderr")]


def spawn_terminal(argv: Sequence[str], *, cwd: str | os.PathLike[str], env: Mapping[str, str],
                    size: tuple[int, int], pass_fds: Sequence[int]) -> tuple[Child, FdStream]:
    master, slave = os.openpty()
    try:
        set_size(master, size)
        child = Child.spawn([sys.executable, "-I", "-S", "-c", _TAKE_TERMINAL, *argv],
                             cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave,
                             pass_fds=pass_fds)
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    return child, FdStream(master)


def set_size(fd: int, size: tuple[int, int]) -> None:
    rows, cols = size
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


async def pump(reader: FdStream, stream: Stream,
                deliver: Callable[[bytes, Stream], Awaitable[None]]) -> None:
    while True:
        try:
            data = await reader.receive_some(READ_CHUNK)
        except trio.BrokenResourceError:  # a terminal reads EIO once nobody holds it open
            return
        if not data:
            return
        await deliver(data, stream)


async def close_all(streams: Sequence[FdStream | None]) -> None:
    with trio.CancelScope(shield=True):
        for stream in streams:
            if stream is not None:
                await stream.aclose()
