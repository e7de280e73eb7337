"""``command/exec``: processes with no thread, owned by one connection.

Not an actor: the connection holds one :class:`CommandExecs` and calls it
from its reader. Each command runs in the connection's process table (so it
dies with the connection) and its own task; the response is deferred until
the process exits and comes after all of its ``command/exec/outputDelta``
notifications, which go to this connection only.

Rules, as the original:
- ``tty``, ``streamStdin`` and ``streamStdoutStderr`` need a client-chosen
  ``processId``; ``tty`` implies both streams.
- Streamed bytes are not repeated in the response (its ``stdout``/``stderr``
  are then ``""``); buffered ones are capped per stream.
- ``command/exec/terminate`` kills the process; its exit then reports 137.
- ``command/exec/write`` never waits on the child: each process with a
  stdin has a writer task fed by a queue bounded in bytes. A write is
  answered once queued, as the original's (its writer channel); one that
  finds the queue full waits beside the reader, behind the writes already
  waiting, for at most :data:`STDIN_WAIT_TIMEOUT`; then it and those behind
  it get -32001 (none of them is queued, so what the child reads stays in
  order). Errors otherwise as the original's.
- Bad params get the original's errors before anything is spawned (-32602
  for its own checks: a negative ``timeoutMs``, a zero terminal size...); a
  command that cannot be spawned (a missing cwd, a NUL in an argument) is
  -32603 ``failed to spawn command: ...``. ``outputBytesCap: 0`` and
  ``timeoutMs: 0`` mean 0, not the default.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import os
from collections import deque
from typing import Any

import msgspec
import trio

from ...runtime.config import Settings
from ...runtime.kernel.errors import MailboxClosed, out_of_descriptors
from ...runtime.protocol.jsonrpc import (
    ErrorResponse,
    RequestId,
    Response,
    internal_error,
    invalid_params,
    invalid_request,
    overloaded,
)
from ...runtime.protocol.v2.command import (
    CommandExecOutputDelta,
    CommandExecParams,
    CommandExecResizeParams,
    CommandExecResponse,
    CommandExecTerminateParams,
    CommandExecWriteParams,
    TerminalSize,
)
from ...runtime.protocol.v2.thread import SandboxPolicy
from ...runtime.commands.environment import create_env
from ...runtime.commands.sandbox import SandboxError, sandbox_env
from ..messages.fanout import notification
from ..messages import ConnectionRef
from ...runtime.commands.process import ProcessError, ProcessTable, Stream

log = logging.getLogger("trio_codex.command_exec")

#: The server's default timeout and per-stream capture cap.
DEFAULT_TIMEOUT_MS = 10_000
DEFAULT_OUTPUT_CAP = 1024 * 1024
#: Bytes queued for one process's stdin (a write into an empty queue is
#: taken whole, however large)...
STDIN_QUEUE_BYTES = 1024 * 1024
#: ...beyond which at most this many writes wait for room, each for at most
#: this long, before -32001 (the child is not reading).
STDIN_WAITING = 16
STDIN_WAIT_TIMEOUT = 30.0

_STDIN_CLOSED = "stdin is already closed"

_internal_ids = itertools.count(1)
_policy = msgspec.json.Decoder(SandboxPolicy)


class _Stdin:
    """What a process's writer task writes, and the writes that wait for
    room in it. The connection's reader only queues; see the module
    docstring."""

    def __init__(self) -> None:
        #: (data, close after it), oldest first, and their bytes.
        self.queue: deque[tuple[bytes, bool]] = deque()
        self.queued = 0
        #: Writes that found the queue full: (request id, data, close, deadline).
        self.waiting: deque[tuple[RequestId, bytes, bool, float]] = deque()
        #: A closeStdin was taken: no write after it.
        self.closing = False
        #: Why nothing can be written any more (the pipe closed, the process
        #: ended); None while it can.
        self.dead: str | None = None
        self.changed = trio.lowlevel.ParkingLot()

    def fits(self, data: bytes) -> bool:
        return not self.queue or self.queued + len(data) <= STDIN_QUEUE_BYTES

    def put(self, data: bytes, close: bool) -> None:
        self.queue.append((data, close))
        self.queued += len(data)
        self.closing = self.closing or close
        self.changed.unpark_all()

    def end(self, why: str) -> None:
        if self.dead is None:
            self.dead = why
        self.queue.clear()
        self.queued = 0
        self.changed.unpark_all()


class CommandExecs:
    def __init__(self, conn: ConnectionRef, settings: Settings, table: ProcessTable,
                 nursery: trio.Nursery) -> None:
        self.conn = conn
        self.settings = settings
        self.table = table
        self.nursery = nursery
        #: The running processes the client named, with their stdin (None:
        #: not streamed).
        self.stdins: dict[str, _Stdin | None] = {}

    async def start(self, rid: RequestId, params: CommandExecParams) -> None:
        """Validate and spawn (before the next request is read, so a
        ``write`` right behind it finds the process); the response follows
        when the process exits."""
        _check(params)
        try:
            policy = (self.settings.sandbox_policy() if params.sandbox_policy is None
                      else _policy.decode(msgspec.json.encode(params.sandbox_policy)))
        except msgspec.ValidationError as exc:
            raise invalid_request(f"Invalid request: sandboxPolicy: {exc}") from None
        streaming = params.tty or params.stream_stdin or params.stream_stdout_stderr
        if streaming and params.process_id is None:
            raise invalid_request("command/exec tty or streaming requires a client-supplied processId")
        if params.process_id is not None and params.process_id in self.table:
            raise invalid_request(
                f"duplicate active command/exec process id: {msgspec.json.encode(params.process_id).decode()}")
        pid = params.process_id if params.process_id is not None else f"internal-{next(_internal_ids)}"
        stream = params.tty or params.stream_stdout_stderr
        # 0 is a cap like any other (nothing kept), as the original.
        cap = None if params.disable_output_cap else (
            DEFAULT_OUTPUT_CAP if params.output_bytes_cap is None else params.output_bytes_cap)
        kept = {"stdout": bytearray(), "stderr": bytearray()}
        sent = {"stdout": 0, "stderr": 0}
        reached = {"stdout": False, "stderr": False}

        async def on_output(chunk: bytes, name: Stream) -> None:
            if stream:
                if reached[name]:
                    return
                part = chunk if cap is None else chunk[: cap - sent[name]]
                sent[name] += len(part)
                reached[name] = cap is not None and sent[name] >= cap
                await self._send(notification("command/exec/outputDelta", CommandExecOutputDelta(
                    pid, name, base64.b64encode(part).decode(), reached[name])))
            elif cap is None or len(kept[name]) < cap:
                kept[name] += chunk if cap is None else chunk[: cap - len(kept[name])]

        env = create_env(os.environ)
        for key, value in (params.env or {}).items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        size = (params.size.rows, params.size.cols) if params.size else None
        timeout = None if params.disable_timeout else (
            DEFAULT_TIMEOUT_MS if params.timeout_ms is None else params.timeout_ms)
        # A relative cwd is the server's cwd joined with it, as the original.
        cwd = os.path.join(os.getcwd(), params.cwd) if params.cwd else os.getcwd()
        try:
            await self.table.spawn(pid, params.command, cwd=cwd,
                                   env=sandbox_env(env, policy), sandbox_policy=policy, tty=params.tty,
                                   stdin=params.tty or params.stream_stdin, size=size, on_output=on_output)
        except SandboxError as exc:
            raise internal_error(f"exec failed: {exc}") from None
        # ValueError: what exec cannot take (a NUL in an argument, `=` in
        # an environment name).
        except (OSError, ValueError, ProcessError) as exc:
            if out_of_descriptors(exc):
                raise overloaded() from None
            raise internal_error(f"failed to spawn command: {exc}") from None
        stdin = _Stdin() if params.tty or params.stream_stdin else None
        if params.process_id:
            self.stdins[pid] = stdin
        if stdin is not None:
            self.nursery.start_soon(self._write_stdin, pid, stdin)
        self.nursery.start_soon(self._finish, rid, pid, timeout, kept, stdin)

    async def _finish(self, rid: RequestId, pid: str, timeout: int | None,
                      kept: dict[str, bytearray], stdin: _Stdin | None) -> None:
        with trio.move_on_after(_seconds(timeout)) as expiry:
            code = await self.table.wait(pid)
        if expiry.cancelled_caught:
            self.table.terminate(pid)
            code = 124
            await self.table.wait(pid)
        if self.stdins.get(pid) is stdin:
            self.stdins.pop(pid, None)
        if stdin is not None:
            stdin.end(f"command/exec {json.dumps(pid)} is no longer running")
        await self._send(Response(rid, CommandExecResponse(
            code, kept["stdout"].decode("utf-8", "replace"), kept["stderr"].decode("utf-8", "replace"))))

    def write(self, rid: RequestId, params: CommandExecWriteParams) -> dict | None:
        """Queue a write for the process's writer task: ``{}`` once queued,
        None when it waits for room (it is answered then)."""
        data = _stdin_delta(params)
        stdin = self._known(params.process_id)
        if stdin is None:
            raise invalid_request("stdin streaming is not enabled for this command/exec")
        if stdin.dead is not None or stdin.closing:
            raise invalid_request(stdin.dead or _STDIN_CLOSED)
        if not stdin.waiting and stdin.fits(data):
            stdin.put(data, params.close_stdin)
            return {}
        if len(stdin.waiting) >= STDIN_WAITING:
            raise overloaded()
        stdin.waiting.append((rid, data, params.close_stdin, trio.current_time() + STDIN_WAIT_TIMEOUT))
        stdin.closing = params.close_stdin  # it was not closing: checked above
        if len(stdin.waiting) == 1:
            self.nursery.start_soon(self._feed, stdin)
        return None

    async def _feed(self, stdin: _Stdin) -> None:
        """Queue the waiting writes of one process as room frees, oldest
        first, answering each; the first that waits too long fails with all
        behind it."""
        while stdin.waiting:
            rid, data, close, deadline = stdin.waiting[0]
            with trio.move_on_at(deadline):
                while stdin.dead is None and not stdin.fits(data):
                    await stdin.changed.park()
            if stdin.dead is not None or not stdin.fits(data):
                error = invalid_request(stdin.dead) if stdin.dead is not None else overloaded()
                if stdin.dead is None:
                    log.warning("command/exec: a process has not read its stdin for %.0f s; %d write(s) refused",
                                STDIN_WAIT_TIMEOUT, len(stdin.waiting))
                    stdin.closing = False  # the closeStdin among them, if any, was refused too
                for waiting_rid, *_ in stdin.waiting:
                    await self._send(ErrorResponse(waiting_rid, error.error))
                stdin.waiting.clear()
                return
            stdin.waiting.popleft()
            stdin.put(data, close)
            await self._send(Response(rid, {}))

    async def _write_stdin(self, pid: str, stdin: _Stdin) -> None:
        """The writer task of one process: write what is queued, in order,
        until stdin is closed or the process ends (the table closes the pipe
        then, which ends a write the child does not read)."""
        try:
            while True:
                while not stdin.queue:
                    if stdin.dead is not None:
                        return
                    await stdin.changed.park()
                data, close = stdin.queue[0]
                if data:
                    await self.table.write(pid, data)
                if close:
                    await self.table.close_stdin(pid)
                    return
                stdin.queue.popleft()
                stdin.queued -= len(data)
                stdin.changed.unpark_all()
        except ProcessError as exc:
            # Written or not, the write was answered once queued (as the
            # original's writer, which drops such errors too).
            log.info("command/exec %s: writing to stdin failed: %s", pid, exc)
        finally:
            stdin.end(_STDIN_CLOSED)

    def _known(self, process_id: str) -> _Stdin | None:
        """The stdin of a running process the client named (None: not
        streamed). Raises the original's error for any other id."""
        if process_id not in self.stdins:
            raise invalid_request(f"no active command/exec for process id {json.dumps(process_id)}")
        return self.stdins[process_id]

    def resize(self, params: CommandExecResizeParams) -> dict:
        self._known(params.process_id)
        _check_size(params.size)
        try:
            self.table.resize(params.process_id, params.size.rows, params.size.cols)
        except (ProcessError, ValueError) as exc:
            raise invalid_request(str(exc)) from None
        return {}

    def terminate(self, params: CommandExecTerminateParams) -> dict:
        self._known(params.process_id)
        try:
            self.table.terminate(params.process_id)
        except ProcessError as exc:
            raise invalid_request(str(exc)) from None
        return {}

    async def _send(self, msg: Any) -> None:
        try:
            await self.conn.outbox.send(msg)
        except MailboxClosed:
            pass


def _check(params: CommandExecParams) -> None:
    """The original's checks of ``command/exec`` params, in its order and
    words, before anything is spawned."""
    if not params.command:
        raise invalid_request("command must not be empty")
    if params.size is not None and not params.tty:
        raise invalid_params("command/exec size requires tty: true")
    if params.disable_output_cap and params.output_bytes_cap is not None:
        raise invalid_params("command/exec cannot set both outputBytesCap and disableOutputCap")
    if params.disable_timeout and params.timeout_ms is not None:
        raise invalid_params("command/exec cannot set both timeoutMs and disableTimeout")
    if params.timeout_ms is not None and params.timeout_ms < 0:
        raise invalid_params(f"command/exec timeoutMs must be non-negative, got {params.timeout_ms}")
    if params.size is not None:
        _check_size(params.size)


def _check_size(size: TerminalSize) -> None:
    if size.rows == 0 or size.cols == 0:
        raise invalid_params("command/exec size rows and cols must be greater than 0")


def _stdin_delta(params: CommandExecWriteParams) -> bytes:
    """The bytes a ``command/exec/write`` carries, checked as the original."""
    if params.delta_base64 is None and not params.close_stdin:
        raise invalid_params("command/exec/write requires deltaBase64 or closeStdin")
    try:
        return base64.b64decode(params.delta_base64 or "", validate=True)
    except ValueError as exc:  # binascii.Error, or a character that is not ASCII
        raise invalid_params(f"invalid deltaBase64: {exc}") from None


def _seconds(timeout_ms: int | None) -> float:
    return float("inf") if timeout_ms is None else timeout_ms / 1000
