"""One-shot commands: :func:`run_command` runs a command to completion (the
shell tools), output captured up to a cap and streamed to a callback."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

import trio

from ...runtime import sandbox
from ...runtime.protocol.v2.thread import SandboxPolicy
from .child import (
    DEFAULT_OUTPUT_CAP_BYTES,
    DEFAULT_TIMEOUT_MS,
    IO_DRAIN_TIMEOUT,
    MAX_OUTPUT_CALLBACKS,
    TERM_GRACE,
    TIMEOUT_EXIT_CODE,
    _close_all,
    _pump,
    _spawn_piped,
    ExecOutcome,
    OnOutput,
    Stream,
)


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

    Raises :class:`~trio_codex.runtime.sandbox.SandboxUnavailable` when the
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
        child, _, readers = _spawn_piped(command.argv, cwd=cwd, env=env, stdin=False,
                                         pass_fds=command.pass_fds)
        timed_out = False
        try:
            async with trio.open_nursery() as pumps:
                for reader, stream in readers:
                    pumps.start_soon(_pump, reader, stream, deliver)
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
            await _close_all([reader for reader, _ in readers])
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
