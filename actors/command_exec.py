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
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import logging
import os
from collections import deque
from typing import Any

import msgspec
import trio

from ..runtime.config import Settings
from ..runtime.errors import MailboxClosed
from ..runtime.protocol.jsonrpc import (
    INVALID_PARAMS,
    ErrorResponse,
    JsonRpcError,
    RequestId,
    Response,
    invalid_request,
    overloaded,
)
from ..runtime.protocol.v2.command import (
    CommandExecOutputDelta,
    CommandExecParams,
    CommandExecResizeParams,
    CommandExecResponse,
    CommandExecTerminateParams,
    CommandExecWriteParams,
)
from ..runtime.protocol.v2.thread import SandboxPolicy
from ..runtime.sandbox import SandboxUnavailable, create_env, sandbox_env
from .fanout import notification
from .messages import ConnectionRef
from .process import ProcessError, ProcessTable

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
        if not params.command:
            raise invalid_request("command must not be empty")
        streaming = params.tty or params.stream_stdin or params.stream_stdout_stderr
        if streaming and not params.process_id:
            raise invalid_request("command/exec tty or streaming requires a client-supplied processId")
        if params.process_id and params.process_id in self.table:
            raise invalid_request(f"processId `{params.process_id}` is already running on this connection")
        if params.disable_timeout and params.timeout_ms is not None:
            raise invalid_request("timeoutMs cannot be combined with disableTimeout")
        if params.disable_output_cap and params.output_bytes_cap is not None:
            raise invalid_request("outputBytesCap cannot be combined with disableOutputCap")
        try:
            policy = (self.settings.sandbox_policy() if params.sandbox_policy is None
                      else _policy.decode(msgspec.json.encode(params.sandbox_policy)))
        except msgspec.ValidationError as exc:
            raise invalid_request(f"Invalid request: sandboxPolicy: {exc}") from None
        pid = params.process_id or f"internal-{next(_internal_ids)}"
        stream = params.tty or params.stream_stdout_stderr
        cap = None if params.disable_output_cap else (params.output_bytes_cap or DEFAULT_OUTPUT_CAP)
        kept = {"stdout": bytearray(), "stderr": bytearray()}
        sent = {"stdout": 0, "stderr": 0}

        async def on_output(chunk: bytes, name: str) -> None:
            if stream:
                room = len(chunk) if cap is None else max(0, cap - sent[name])
                if room:
                    sent[name] += min(room, len(chunk))
                    await self._send(notification("command/exec/outputDelta", CommandExecOutputDelta(
                        pid, name, base64.b64encode(chunk[:room]).decode(),  # type: ignore[arg-type]
                        cap is not None and sent[name] >= cap)))
            elif cap is None or len(kept[name]) < cap:
                kept[name] += chunk if cap is None else chunk[: cap - len(kept[name])]

        env = create_env(os.environ)
        for key, value in (params.env or {}).items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        size = (params.size.rows, params.size.cols) if params.size else None
        timeout = None if params.disable_timeout else (params.timeout_ms or DEFAULT_TIMEOUT_MS)
        try:
            await self.table.spawn(pid, params.command, cwd=params.cwd or os.getcwd(),
                                   env=sandbox_env(env, policy), sandbox_policy=policy, tty=params.tty,
                                   stdin=params.tty or params.stream_stdin, size=size, on_output=on_output)
        except (OSError, ProcessError, SandboxUnavailable) as exc:
            raise invalid_request(f"command/exec failed to start: {exc}") from None
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
        if params.delta_base64 is None and not params.close_stdin:
            raise JsonRpcError(INVALID_PARAMS, "command/exec/write requires deltaBase64 or closeStdin")
        try:
            data = base64.b64decode(params.delta_base64 or "", validate=True)
        except binascii.Error as exc:
            raise JsonRpcError(INVALID_PARAMS, f"invalid deltaBase64: {exc}") from None
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
        stdin.closing = stdin.closing or params.close_stdin
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


def _seconds(timeout_ms: int | None) -> float:
    return float("inf") if timeout_ms is None else timeout_ms / 1000
