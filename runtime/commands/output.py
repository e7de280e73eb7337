"""The text the model receives for a command, byte for byte as the original.

A port of the original's output shaping (codex-rs ``utils/string/src/
truncate.rs``, ``utils/output-truncation``, ``core/src/tools/mod.rs``,
``tools/context.rs``, ``tools/events.rs``, ``tools/parallel.rs``,
``unified_exec/head_tail_buffer.rs`` and ``core/src/exec.rs``). Pure functions
over text and numbers; durations are seconds as floats.

Rules the formats share:

* Sizes are UTF-8 bytes, never characters, and a token is four bytes
  (``approx_token_count`` rounds up). Cuts fall on character boundaries.
* Truncation keeps the head and the tail, half the budget each, and puts
  ``…N tokens truncated…`` (token policies; N is removed bytes / 4, rounded
  up) or ``…N chars truncated…`` (byte policies; N counts characters) in
  between. The model's default policy is 10 000 tokens.
* Line counts are Rust's ``str::lines().count()``: a final newline does not
  start another line.
* ``shell_command`` rounds its wall time to tenths in 32-bit floats and
  prints it the way Rust prints an ``f32`` (``1``, ``0.5``); unified exec
  prints four decimals.

Capture is bounded as in the original: ``shell_command`` keeps the first
MiB of each stream and splits the cap between them when both overflow
(:func:`aggregate_output`); unified exec keeps the first and last half MiB
with a marker for what was dropped (:class:`HeadTailBuffer`), which is also
the ``aggregatedOutput`` of its items.
"""

from __future__ import annotations

import math
import random
import struct
from decimal import Decimal
from typing import Literal

import msgspec

__all__ = [
    "APPROX_BYTES_PER_TOKEN",
    "DEFAULT_MAX_OUTPUT_TOKENS",
    "DEFAULT_TRUNCATION_POLICY",
    "EXEC_OUTPUT_MAX_BYTES",
    "UNIFIED_EXEC_OUTPUT_MAX_BYTES",
    "HeadTailBuffer",
    "TruncationPolicy",
    "abort_message",
    "aggregate_output",
    "append_capped",
    "approx_token_count",
    "approx_tokens_from_byte_count",
    "format_exec_output",
    "format_exec_output_json",
    "format_exec_output_str",
    "format_unified_exec_output",
    "formatted_truncate_text",
    "line_count",
    "new_chunk_id",
    "patch_rejected",
    "rejection_message",
    "truncate_middle_chars",
    "truncate_middle_with_token_budget",
    "truncate_text",
]

APPROX_BYTES_PER_TOKEN = 4
#: ``exec_command``/``write_stdin`` ``max_output_tokens`` when the model gives none.
DEFAULT_MAX_OUTPUT_TOKENS = 10_000
#: Bytes ``shell_command`` keeps of each of stdout and stderr.
EXEC_OUTPUT_MAX_BYTES = 1024 * 1024
#: Bytes unified exec keeps of a process's output (head and tail halves).
UNIFIED_EXEC_OUTPUT_MAX_BYTES = 1024 * 1024
_REJECTION_MESSAGE_MAX_TOKENS = 900


class TruncationPolicy(msgspec.Struct, frozen=True):
    """How much of a tool's output the model may see: ``limit`` bytes or
    ``limit`` tokens (the catalogue's ``truncation_policy``)."""

    mode: Literal["bytes", "tokens"]
    limit: int

    @property
    def byte_budget(self) -> int:
        return self.limit if self.mode == "bytes" else self.limit * APPROX_BYTES_PER_TOKEN

    @property
    def token_budget(self) -> int:
        return approx_tokens_from_byte_count(self.limit) if self.mode == "bytes" else self.limit


DEFAULT_TRUNCATION_POLICY = TruncationPolicy("tokens", 10_000)


# ---------------------------------------------------------------------------
# Counting and cutting
# ---------------------------------------------------------------------------


def approx_tokens_from_byte_count(n: int) -> int:
    return -(-n // APPROX_BYTES_PER_TOKEN)


def approx_token_count(text: str) -> int:
    return approx_tokens_from_byte_count(len(_utf8(text)))


def line_count(text: str) -> int:
    """Rust's ``text.lines().count()``."""
    return text.count("\n") + (1 if text and not text.endswith("\n") else 0)


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


_CONTINUATION_BYTES = bytes(range(0x80, 0xC0))


def _char_count(data: bytes) -> int:
    """Characters in valid UTF-8: the bytes that start one."""
    return len(data.translate(None, _CONTINUATION_BYTES))


def _truncate(text: str, max_bytes: int, *, tokens: bool) -> str:
    """Keep the first and last ``max_bytes // 2`` bytes (whole characters
    only) around a marker that says how much went."""
    if not text:
        return ""
    data = _utf8(text)
    if max_bytes == 0:
        removed = approx_tokens_from_byte_count(len(data)) if tokens else _char_count(data)
        return _marker(removed, tokens=tokens)
    if len(data) <= max_bytes:
        return text
    left = max_bytes // 2
    head_end = left
    while head_end > 0 and 0x80 <= data[head_end] < 0xC0:
        head_end -= 1  # a character that does not fit whole stays out
    tail_start = len(data) - (max_bytes - left)
    while tail_start < len(data) and 0x80 <= data[tail_start] < 0xC0:
        tail_start += 1
    removed = (
        approx_tokens_from_byte_count(len(data) - max_bytes) if tokens else _char_count(data[head_end:tail_start])
    )
    head = data[:head_end].decode("utf-8", "surrogatepass")
    tail = data[tail_start:].decode("utf-8", "surrogatepass")
    return head + _marker(removed, tokens=tokens) + tail


def _marker(removed: int, *, tokens: bool) -> str:
    return f"…{removed} tokens truncated…" if tokens else f"…{removed} chars truncated…"


def truncate_middle_chars(text: str, max_bytes: int) -> str:
    """Cut the middle to fit ``max_bytes``, counting removed characters."""
    return _truncate(text, max_bytes, tokens=False)


def truncate_middle_with_token_budget(text: str, max_tokens: int) -> tuple[str, int | None]:
    """Cut the middle to fit ``max_tokens``; also return the original token
    count when something was cut."""
    if not text:
        return "", None
    if max_tokens > 0 and len(_utf8(text)) <= max_tokens * APPROX_BYTES_PER_TOKEN:
        return text, None
    truncated = _truncate(text, max_tokens * APPROX_BYTES_PER_TOKEN, tokens=True)
    return truncated, (None if truncated == text else approx_token_count(text))


def truncate_text(text: str, policy: TruncationPolicy) -> str:
    if policy.mode == "bytes":
        return truncate_middle_chars(text, policy.limit)
    return truncate_middle_with_token_budget(text, policy.limit)[0]


def formatted_truncate_text(text: str, policy: TruncationPolicy) -> str:
    """:func:`truncate_text` under a header with the original size, when
    anything is cut."""
    if len(_utf8(text)) <= policy.byte_budget:
        return text
    return (
        f"Warning: truncated output (original token count: {approx_token_count(text)})\n"
        f"Total output lines: {line_count(text)}\n\n{truncate_text(text, policy)}"
    )


# ---------------------------------------------------------------------------
# Numbers as Rust prints them
# ---------------------------------------------------------------------------


def _f32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]


def _tenths_f32(seconds: float) -> float:
    """``((d.as_secs_f32()) * 10.0).round() / 10.0`` in 32-bit floats (Rust
    rounds halves away from zero)."""
    scaled = _f32(_f32(seconds) * 10.0)
    return _f32(math.floor(scaled + 0.5) / 10.0)


def _shortest_f32(value: float) -> Decimal:
    """The shortest decimal that reads back as the same ``f32``."""
    for digits in range(1, 10):
        candidate = Decimal(f"{value:.{digits}g}")
        if _f32(float(candidate)) == value:
            return candidate
    return Decimal(value)


def _display_f32(value: float) -> str:
    """``format!("{}", value)`` for an ``f32``: ``1``, ``0.5``, ``12.3``."""
    return format(_shortest_f32(value), "f")


def _json_f32(value: float) -> str:
    """serde_json's ``f32``: like Display, but whole numbers keep ``.0``."""
    text = _display_f32(value)
    return text if "." in text else text + ".0"


# ---------------------------------------------------------------------------
# shell_command and shell
# ---------------------------------------------------------------------------


def _content_with_timeout(output: str, duration: float, timed_out: bool) -> str:
    if not timed_out:
        return output
    millis = round(duration * 1e9) // 1_000_000  # Duration::as_millis
    return f"command timed out after {millis} milliseconds\n{output}"


def format_exec_output(
    output: str,
    *,
    exit_code: int,
    duration: float,
    timed_out: bool = False,
    policy: TruncationPolicy = DEFAULT_TRUNCATION_POLICY,
) -> str:
    """The ``shell_command`` output (``format_exec_output_for_model``)::

        Exit code: 0
        Wall time: 0.1 seconds
        [Total output lines: K]   (only when truncation removed lines)
        Output:
        <aggregated output, middle-truncated>

    ``output`` is the aggregated stdout and stderr; a timed-out command
    (exit code 124) gets ``command timed out after <ms> milliseconds``
    before it."""
    content = _content_with_timeout(output, duration, timed_out)
    total_lines = line_count(content)
    truncated = truncate_text(content, policy)
    sections = [f"Exit code: {exit_code}", f"Wall time: {_display_f32(_tenths_f32(duration))} seconds"]
    if total_lines != line_count(truncated):
        sections.append(f"Total output lines: {total_lines}")
    sections += ["Output:", truncated]
    return "\n".join(sections)


def format_exec_output_str(
    output: str, *, duration: float, timed_out: bool = False, policy: TruncationPolicy = DEFAULT_TRUNCATION_POLICY
) -> str:
    """The bare output with its timeout notice, truncated with the
    ``Warning: truncated output …`` header (``format_exec_output_str``)."""
    return formatted_truncate_text(_content_with_timeout(output, duration, timed_out), policy)


def format_exec_output_json(
    output: str,
    *,
    exit_code: int,
    duration: float,
    timed_out: bool = False,
    policy: TruncationPolicy = DEFAULT_TRUNCATION_POLICY,
) -> str:
    """The legacy ``shell`` tool's structured output:
    ``{"output":"…","metadata":{"exit_code":0,"duration_seconds":0.5}}``."""
    text = format_exec_output_str(output, duration=duration, timed_out=timed_out, policy=policy)
    return (
        f'{{"output":{msgspec.json.encode(text).decode()},'
        f'"metadata":{{"exit_code":{exit_code},"duration_seconds":{_json_f32(_tenths_f32(duration))}}}}}'
    )


def user_shell_record(command: str, output: str, *, exit_code: int, duration: float,
                      timed_out: bool = False) -> str:
    """What the history keeps of the user's own shell command (``!cmd``,
    ``format_user_shell_command_record``): the command and its result, so
    the model sees it next turn::

        <user_shell_command>
        <command>
        CMD
        </command>
        <result>
        Exit code: 0
        Duration: 0.0123 seconds
        Output:
        <output, truncated as format_exec_output_str>
        </result>
        </user_shell_command>
    """
    body = "\n".join(["<command>", command, "</command>", "<result>", f"Exit code: {exit_code}",
                      f"Duration: {duration:.4f} seconds", "Output:",
                      format_exec_output_str(output, duration=duration, timed_out=timed_out), "</result>"])
    return f"<user_shell_command>\n{body}\n</user_shell_command>"


# ---------------------------------------------------------------------------
# Unified exec (exec_command, write_stdin)
# ---------------------------------------------------------------------------


def _omission_marker(omitted_bytes: int) -> str:
    return f"... {omitted_bytes} bytes omitted ..."


class HeadTailBuffer:
    """A process's output with bounded memory: the first half of
    ``max_bytes`` and the last half are kept, the middle is dropped and
    counted (``HeadTailBuffer``). Feed it 10 MB and it holds 1 MiB."""

    def __init__(self, max_bytes: int = UNIFIED_EXEC_OUTPUT_MAX_BYTES) -> None:
        self._head_budget = max_bytes // 2
        self._tail_budget = max_bytes - self._head_budget
        self._head = bytearray()
        self._tail = bytearray()
        self.omitted_bytes = 0

    @property
    def retained_bytes(self) -> int:
        return len(self._head) + len(self._tail)

    @property
    def total_bytes(self) -> int:
        """Everything fed, dropped bytes included."""
        return self.retained_bytes + self.omitted_bytes

    def feed(self, data: bytes) -> None:
        """Append output: the head fills first, then the tail keeps the
        newest bytes."""
        room = self._head_budget - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        if not data:
            return
        if len(data) >= self._tail_budget:
            kept = data[len(data) - self._tail_budget :] if self._tail_budget else b""
            self.omitted_bytes += len(self._tail) + len(data) - len(kept)
            self._tail[:] = kept
            return
        self._tail += data
        excess = len(self._tail) - self._tail_budget
        if excess > 0:
            del self._tail[:excess]  # cheap: bytearray drops its front in place
            self.omitted_bytes += excess

    def to_bytes(self) -> bytes:
        """Head and tail, with ``\\n... N bytes omitted ...\\n`` between them
        when the middle was dropped."""
        if not self.omitted_bytes:
            return bytes(self._head + self._tail)
        return b"".join((self._head, b"\n", _omission_marker(self.omitted_bytes).encode(), b"\n", self._tail))

    def text(self) -> str:
        """:meth:`to_bytes` decoded leniently: ``aggregatedOutput``."""
        return self.to_bytes().decode("utf-8", "replace")


def format_unified_exec_output(
    output: HeadTailBuffer | bytes,
    *,
    wall_time: float,
    chunk_id: str = "",
    exit_code: int | None = None,
    session_id: int | None = None,
    original_token_count: int | None = None,
    omitted_bytes: int = 0,
    max_output_tokens: int | None = None,
    policy: TruncationPolicy = DEFAULT_TRUNCATION_POLICY,
) -> str:
    """An ``exec_command``/``write_stdin`` response::

        Chunk ID: 3fa2b1
        Wall time: 0.2513 seconds
        Process exited with code 0        (or: Process running with session ID 7)
        Original token count: 3
        Output:
        <output>

    Given a :class:`HeadTailBuffer`, the token count covers every byte the
    process wrote and the dropped middle is marked; given bytes, pass those
    yourself. The output is cut to ``max_output_tokens`` (default 10 000),
    never above the policy's token budget."""
    if isinstance(output, HeadTailBuffer):
        original_token_count = approx_tokens_from_byte_count(output.total_bytes)
        omitted_bytes = output.omitted_bytes
        output = output.to_bytes()
    max_tokens = DEFAULT_MAX_OUTPUT_TOKENS if max_output_tokens is None else max_output_tokens
    sections = [f"Chunk ID: {chunk_id}"] if chunk_id else []
    sections.append(f"Wall time: {wall_time:.4f} seconds")
    if exit_code is not None:
        sections.append(f"Process exited with code {exit_code}")
    if session_id is not None:
        sections.append(f"Process running with session ID {session_id}")
    if original_token_count is not None:
        sections.append(f"Original token count: {original_token_count}")
    text = output.decode("utf-8", "replace")
    truncated = _truncate_unified(text, min(max_tokens, policy.token_budget), original_token_count, omitted_bytes)
    sections += ["Output:", truncated]
    return "\n".join(sections)


def _truncate_unified(text: str, max_tokens: int, original_token_count: int | None, omitted_bytes: int) -> str:
    """``ExecCommandToolOutput::truncated_output``: the omission marker is
    kept in sight even when the middle truncation would cut it out."""
    policy = TruncationPolicy("tokens", max_tokens)
    if not omitted_bytes:
        return formatted_truncate_text(text, policy)
    marker = _omission_marker(omitted_bytes)
    if len(_utf8(text)) <= policy.byte_budget:
        return text if marker in text else f"{marker}\n{text}"
    truncated = truncate_text(text, policy)
    notice = "" if marker in truncated else f"{marker}\n"
    count = approx_token_count(text) if original_token_count is None else original_token_count
    return f"Warning: truncated output (original token count: {count})\n{notice}\n{truncated}"


def new_chunk_id(rng: random.Random | None = None) -> str:
    """Six random hex digits, as ``generate_chunk_id``."""
    return "".join(f"{(rng or random).randrange(16):x}" for _ in range(6))


# ---------------------------------------------------------------------------
# shell_command capture
# ---------------------------------------------------------------------------


def append_capped(buffer: bytearray, chunk: bytes, max_bytes: int = EXEC_OUTPUT_MAX_BYTES) -> None:
    """Keep the first ``max_bytes`` of a stream; later bytes are read and
    dropped (``append_capped``)."""
    room = max_bytes - len(buffer)
    if room > 0:
        buffer += chunk[:room]


def aggregate_output(stdout: bytes, stderr: bytes, max_bytes: int = EXEC_OUTPUT_MAX_BYTES) -> bytes:
    """stdout then stderr, within ``max_bytes``: when both do not fit,
    stdout gets a third and stderr the rest, and what stderr leaves unused
    goes back to stdout (``aggregate_output``)."""
    if len(stdout) + len(stderr) <= max_bytes:
        return stdout + stderr
    want_stdout = min(len(stdout), max_bytes // 3)
    stderr_take = min(len(stderr), max_bytes - want_stdout)
    remaining = max_bytes - want_stdout - stderr_take
    stdout_take = want_stdout + min(remaining, len(stdout) - want_stdout)
    return stdout[:stdout_take] + stderr[:stderr_take]


# ---------------------------------------------------------------------------
# Aborted and rejected calls
# ---------------------------------------------------------------------------


def abort_message(tool_name: str, seconds: float) -> str:
    """The output of a call cut short by an interrupt: ``shell_command``
    reports its wall time, other tools how long they ran."""
    secs = _f32(seconds)
    if tool_name in ("shell_command", "unified_exec"):
        return f"Wall time: {secs:.1f} seconds\naborted by user"
    return f"aborted by user after {secs:.1f}s"


def rejection_message(message: str, *, tool: Literal["exec", "apply_patch"] = "exec") -> str:
    """What the model sees for a refused call: a user's denial is named per
    tool (``exec command rejected by user`` / ``patch rejected by user``),
    any other reason passes through; both are capped at 900 tokens."""
    if message == "rejected by user":
        message = "exec command rejected by user" if tool == "exec" else "patch rejected by user"
    return truncate_middle_with_token_budget(message, _REJECTION_MESSAGE_MAX_TOKENS)[0]


def patch_rejected(reason: str) -> str:
    """The output of a patch that safety checks refused."""
    return f"patch rejected: {reason}"
