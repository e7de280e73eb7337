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
- Bad params get the original's errors before anything is spawned (-32602
  for its own checks: a negative ``timeoutMs``, a zero terminal size...); a
  command that cannot be spawned (a missing cwd, a NUL in an argument) is
  -32603 ``failed to spawn command: ...``. ``outputBytesCap: 0`` and
  ``timeoutMs: 0`` mean 0, not the default.
"""

from __future__ import annotations

import base64
import itertools
import os
from typing import Any

import msgspec
import trio

from ..runtime.config import Settings
from ..runtime.errors import MailboxClosed
from ..runtime.protocol.jsonrpc import RequestId, Response, internal_error, invalid_params, invalid_request
from ..runtime.protocol.v2.command import (
    CommandExecOutputDelta,
    CommandExecParams,
    CommandExecResizeParams,
    CommandExecResponse,
    CommandExecTerminateParams,
    CommandExecWriteParams,
    TerminalSize,
)
from ..runtime.protocol.v2.thread import SandboxPolicy
from ..runtime.sandbox import SandboxError, create_env, sandbox_env
from .fanout import notification
from .messages import ConnectionRef
from .process import ProcessError, ProcessTable

#: The server's default timeout and per-stream capture cap.
DEFAULT_TIMEOUT_MS = 10_000
DEFAULT_OUTPUT_CAP = 1024 * 1024

_internal_ids = itertools.count(1)
_policy = msgspec.json.Decoder(SandboxPolicy)


class CommandExecs:
    def __init__(self, conn: ConnectionRef, settings: Settings, table: ProcessTable,
                 nursery: trio.Nursery) -> None:
        self.conn = conn
        self.settings = settings
        self.table = table
        self.nursery = nursery

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

        async def on_output(chunk: bytes, name: str) -> None:
            if stream:
                if reached[name]:
                    return
                part = chunk if cap is None else chunk[: cap - sent[name]]
                sent[name] += len(part)
                reached[name] = cap is not None and sent[name] >= cap
                await self._send(notification("command/exec/outputDelta", CommandExecOutputDelta(
                    pid, name, base64.b64encode(part).decode(), reached[name])))  # type: ignore[arg-type]
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
            raise internal_error(f"failed to spawn command: {exc}") from None
        self.nursery.start_soon(self._finish, rid, pid, timeout, kept)

    async def _finish(self, rid: RequestId, pid: str, timeout: int | None,
                      kept: dict[str, bytearray]) -> None:
        with trio.move_on_after(_seconds(timeout)) as expiry:
            code = await self.table.wait(pid)
        if expiry.cancelled_caught:
            self.table.terminate(pid)
            code = 124
            await self.table.wait(pid)
        await self._send(Response(rid, CommandExecResponse(
            code, kept["stdout"].decode("utf-8", "replace"), kept["stderr"].decode("utf-8", "replace"))))

    async def write(self, params: CommandExecWriteParams) -> dict:
        delta = _stdin_delta(params)
        try:
            if delta:
                await self.table.write(params.process_id, delta)
            if params.close_stdin:
                await self.table.close_stdin(params.process_id)
        except ProcessError as exc:
            raise invalid_request(str(exc)) from None
        return {}

    def resize(self, params: CommandExecResizeParams) -> dict:
        _check_size(params.size)
        try:
            self.table.resize(params.process_id, params.size.rows, params.size.cols)
        except ProcessError as exc:
            raise invalid_request(str(exc)) from None
        return {}

    def terminate(self, params: CommandExecTerminateParams) -> dict:
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
