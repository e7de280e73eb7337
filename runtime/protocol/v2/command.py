"""`command/exec`: a process with no thread, owned by the connection that
started it."""

from __future__ import annotations

from typing import Any, Literal

from ..rust import I64, U16, USIZE
from ._base import Leaf, Wire


class TerminalSize(Wire, frozen=True):
    rows: U16
    cols: U16


class CommandExecParams(Wire, frozen=True):
    command: list[str]
    process_id: str | None = None
    cwd: str | None = None
    env: dict[str, str | None] | None = None
    sandbox_policy: dict[str, Any] | None = None
    tty: bool = False
    stream_stdin: bool = False
    stream_stdout_stderr: bool = False
    size: TerminalSize | None = None
    output_bytes_cap: USIZE | None = None
    disable_output_cap: bool = False
    timeout_ms: I64 | None = None
    disable_timeout: bool = False


class CommandExecResponse(Wire, frozen=True):
    exit_code: int
    stdout: str
    stderr: str


class CommandExecOutputDelta(Leaf, frozen=True):
    process_id: str
    stream: Literal["stdout", "stderr"]
    delta_base64: str
    cap_reached: bool


class CommandExecWriteParams(Wire, frozen=True):
    process_id: str
    delta_base64: str | None = None
    close_stdin: bool = False


class CommandExecResizeParams(Wire, frozen=True):
    process_id: str
    size: TerminalSize


class CommandExecTerminateParams(Wire, frozen=True):
    process_id: str
