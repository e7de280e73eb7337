"""Tool output: truncation, the shell_command, shell and unified exec forms,
bounded capture, aborted and rejected calls.

Expected strings are the original's: the truncation cases are its own unit
tests (codex-rs ``utils/output-truncation/src/truncate_tests.rs`` and
``core/src/unified_exec/head_tail_buffer_tests.rs``), the formats follow
``core/src/tools/mod.rs`` and ``tools/context.rs`` to the byte.
"""

from __future__ import annotations

import json
import random
import tracemalloc

import pytest

from trio_codex.runtime.commands.output import (
    DEFAULT_TRUNCATION_POLICY,
    HeadTailBuffer,
    TruncationPolicy,
    abort_message,
    aggregate_output,
    append_capped,
    approx_token_count,
    format_exec_output,
    format_exec_output_json,
    format_exec_output_str,
    format_unified_exec_output,
    formatted_truncate_text,
    line_count,
    new_chunk_id,
    patch_rejected,
    rejection_message,
    truncate_middle_chars,
    truncate_middle_with_token_budget,
    truncate_text,
)

BYTES = lambda n: TruncationPolicy("bytes", n)  # noqa: E731
TOKENS = lambda n: TruncationPolicy("tokens", n)  # noqa: E731
LONG = "this is an example of a long output that should be truncated"
TWO_LINES = LONG + "\nalso some other line"

# ---------------------------------------------------------------------------
# Truncation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "policy", "expected"),
    [
        (
            "example output",
            BYTES(1),
            "Warning: truncated output (original token count: 4)\nTotal output lines: 1\n\n…13 chars truncated…t",
        ),
        (
            "example output",
            TOKENS(1),
            "Warning: truncated output (original token count: 4)\nTotal output lines: 1\n\n"
            "ex…3 tokens truncated…ut",
        ),
        ("example output", TOKENS(10), "example output"),
        ("example output", BYTES(20), "example output"),
        (
            LONG,
            TOKENS(5),
            "Warning: truncated output (original token count: 15)\nTotal output lines: 1\n\n"
            "this is an…10 tokens truncated… truncated",
        ),
        (
            LONG,
            BYTES(30),
            "Warning: truncated output (original token count: 15)\nTotal output lines: 1\n\n"
            "this is an exam…30 chars truncated…ld be truncated",
        ),
        (
            TWO_LINES,
            BYTES(30),
            "Warning: truncated output (original token count: 21)\nTotal output lines: 2\n\n"
            "this is an exam…51 chars truncated…some other line",
        ),
        (
            TWO_LINES,
            TOKENS(10),
            "Warning: truncated output (original token count: 21)\nTotal output lines: 2\n\n"
            "this is an example o…11 tokens truncated…also some other line",
        ),
    ],
)
def test_formatted_truncation_matches_the_originals_vectors(text: str, policy, expected: str) -> None:
    assert formatted_truncate_text(text, policy) == expected


def test_truncation_cuts_on_character_boundaries_and_counts_characters() -> None:
    text = "😀😀😀😀😀😀😀😀😀😀\nsecond line with text\n"
    assert truncate_text(text, BYTES(20)) == "😀😀…21 chars truncated…with text\n"


def test_token_truncation_counts_removed_bytes_in_tokens_rounded_up() -> None:
    text = "é" * 30  # 60 bytes
    assert truncate_middle_with_token_budget(text, 5) == ("ééééé…10 tokens truncated…ééééé", 15)
    assert truncate_middle_with_token_budget(text, 15) == (text, None)
    assert truncate_middle_with_token_budget("", 0) == ("", None)
    assert truncate_middle_with_token_budget("abc", 0) == ("…1 tokens truncated…", 1)


def test_a_budget_of_zero_bytes_leaves_only_the_marker() -> None:
    assert truncate_middle_chars("abcdé", 0) == "…5 chars truncated…"
    assert truncate_middle_chars("", 0) == ""


@pytest.mark.parametrize(("text", "budget"), [("x" * 40_000, True), ("x" * 40_001, False)])
def test_the_default_policy_keeps_ten_thousand_tokens(text: str, budget: bool) -> None:
    assert (formatted_truncate_text(text, DEFAULT_TRUNCATION_POLICY) == text) is budget
    assert DEFAULT_TRUNCATION_POLICY.byte_budget == 40_000
    assert BYTES(10_001).token_budget == 2_501


@pytest.mark.parametrize(
    ("text", "lines"), [("", 0), ("a", 1), ("a\n", 1), ("a\nb", 2), ("\n\n", 2), ("a\r\nb\r\n", 2)]
)
def test_lines_are_counted_as_rust_counts_them(text: str, lines: int) -> None:
    assert line_count(text) == lines


def test_tokens_are_utf8_bytes_over_four_rounded_up() -> None:
    assert [approx_token_count(t) for t in ("", "a", "abcd", "abcde", "é")] == [0, 1, 1, 2, 1]


# ---------------------------------------------------------------------------
# shell_command, shell
# ---------------------------------------------------------------------------


def test_shell_command_output_names_exit_code_wall_time_and_output() -> None:
    out = format_exec_output("hi\n", exit_code=0, duration=0.123)
    assert out == "Exit code: 0\nWall time: 0.1 seconds\nOutput:\nhi\n"
    assert format_exec_output("", exit_code=1, duration=2.0) == "Exit code: 1\nWall time: 2 seconds\nOutput:\n"


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.0, "0"), (0.04, "0"), (0.05, "0.1"), (0.15, "0.2"), (0.25, "0.3"), (1.0, "1"), (2.55, "2.6"),
     (12.34, "12.3"), (99.96, "100"), (1234.56, "1234.6")],
)
def test_wall_time_is_rounded_to_tenths_in_f32_and_printed_as_rust_prints_f32(seconds: float, shown: str) -> None:
    assert format_exec_output("", exit_code=0, duration=seconds).split("\n")[1] == f"Wall time: {shown} seconds"


def test_a_timeout_is_announced_before_the_output() -> None:
    out = format_exec_output("partial\n", exit_code=124, duration=10.0004, timed_out=True)
    assert out == (
        "Exit code: 124\nWall time: 10 seconds\nOutput:\ncommand timed out after 10000 milliseconds\npartial\n"
    )
    assert format_exec_output("", exit_code=124, duration=0.3, timed_out=True).endswith(
        "command timed out after 300 milliseconds\n"
    )


def test_total_output_lines_appear_only_when_truncation_removed_lines() -> None:
    many = "".join(f"line {i}\n" for i in range(1000))
    out = format_exec_output(many, exit_code=0, duration=1.0, policy=TOKENS(10))
    assert out == (
        "Exit code: 0\nWall time: 1 seconds\nTotal output lines: 1000\nOutput:\n"
        "line 0\nline 1\nline 2…2213 tokens truncated…7\nline 998\nline 999\n"
    )
    one_line = "x" * 100
    assert format_exec_output(one_line, exit_code=0, duration=1.0, policy=BYTES(10)) == (
        "Exit code: 0\nWall time: 1 seconds\nOutput:\nxxxxx…90 chars truncated…xxxxx"
    )


def test_output_at_the_budget_is_kept_and_one_byte_more_is_cut() -> None:
    at, over = "a\n" * 20, "a\n" * 20 + "b"
    assert format_exec_output(at, exit_code=0, duration=0, policy=TOKENS(10)).endswith("Output:\n" + at)
    # one byte cut: the marker takes a line of its own, so the count (21) stays and no header appears
    assert format_exec_output(over, exit_code=0, duration=0, policy=TOKENS(10)) == (
        "Exit code: 0\nWall time: 0 seconds\nOutput:\n"
        "a\na\na\na\na\na\na\na\na\na\n…1 tokens truncated…\na\na\na\na\na\na\na\na\na\nb"
    )


def test_the_shell_tool_returns_json_with_exit_code_and_duration() -> None:
    out = format_exec_output_json('a "quoted"\n\tline\n', exit_code=2, duration=1.0)
    assert out == '{"output":"a \\"quoted\\"\\n\\tline\\n","metadata":{"exit_code":2,"duration_seconds":1.0}}'
    assert json.loads(format_exec_output_json("x", exit_code=0, duration=0.25))["metadata"] == {
        "exit_code": 0,
        "duration_seconds": 0.3,
    }


def test_the_shell_tool_json_truncates_with_the_warning_header() -> None:
    out = json.loads(format_exec_output_json(LONG, exit_code=0, duration=0, policy=BYTES(30)))["output"]
    assert out == formatted_truncate_text(LONG, BYTES(30))
    assert format_exec_output_str("late\n", duration=1.5, timed_out=True) == (
        "command timed out after 1500 milliseconds\nlate\n"
    )


# ---------------------------------------------------------------------------
# Unified exec
# ---------------------------------------------------------------------------


def test_unified_exec_output_of_an_exited_process() -> None:
    out = format_unified_exec_output(b"hi\n", wall_time=0.25, chunk_id="3fa2b1", exit_code=0, original_token_count=1)
    assert out == (
        "Chunk ID: 3fa2b1\nWall time: 0.2500 seconds\nProcess exited with code 0\n"
        "Original token count: 1\nOutput:\nhi\n"
    )


def test_unified_exec_output_of_a_running_process_without_chunk_id() -> None:
    out = format_unified_exec_output(b"", wall_time=5.00004, session_id=7, original_token_count=0)
    assert out == "Wall time: 5.0000 seconds\nProcess running with session ID 7\nOriginal token count: 0\nOutput:\n"


def test_unified_exec_truncates_to_max_output_tokens_and_never_above_the_policy() -> None:
    raw = b"0123456789" * 10
    out = format_unified_exec_output(raw, wall_time=1, exit_code=0, original_token_count=25, max_output_tokens=5)
    assert out.endswith(
        "Output:\nWarning: truncated output (original token count: 25)\nTotal output lines: 1\n\n"
        "0123456789…20 tokens truncated…0123456789"
    )
    capped = format_unified_exec_output(raw, wall_time=1, max_output_tokens=1000, policy=TOKENS(5))
    assert capped == out.replace("Process exited with code 0\nOriginal token count: 25\n", "")


def test_unified_exec_reads_counts_and_omissions_from_a_head_tail_buffer() -> None:
    buffer = HeadTailBuffer(10)
    buffer.feed(b"0123456789")
    buffer.feed(b"ab")
    out = format_unified_exec_output(buffer, wall_time=1.5, session_id=3)
    assert out == (
        "Wall time: 1.5000 seconds\nProcess running with session ID 3\nOriginal token count: 3\n"
        "Output:\n01234\n... 2 bytes omitted ...\n789ab"
    )


def test_the_omission_marker_survives_truncation() -> None:
    buffer = HeadTailBuffer(64)
    buffer.feed(b"h" * 32 + b"m" * 100 + b"t" * 32)
    out = format_unified_exec_output(buffer, wall_time=0, max_output_tokens=4)
    assert out == (
        "Wall time: 0.0000 seconds\nOriginal token count: 41\nOutput:\n"
        "Warning: truncated output (original token count: 41)\n... 100 bytes omitted ...\n\n"
        "hhhhhhhh…19 tokens truncated…tttttttt"
    )
    small = format_unified_exec_output(b"abc", wall_time=0, omitted_bytes=7)
    assert small.endswith("Output:\n... 7 bytes omitted ...\nabc")


def test_chunk_ids_are_six_hex_digits() -> None:
    assert new_chunk_id(random.Random(1)) == new_chunk_id(random.Random(1))
    chunk = new_chunk_id()
    assert len(chunk) == 6 and set(chunk) <= set("0123456789abcdef")


# ---------------------------------------------------------------------------
# Bounded capture
# ---------------------------------------------------------------------------


def test_head_tail_buffer_keeps_prefix_and_suffix_when_over_budget() -> None:
    buffer = HeadTailBuffer(10)
    buffer.feed(b"0123456789")
    assert buffer.omitted_bytes == 0
    buffer.feed(b"ab")
    assert buffer.text() == "01234\n... 2 bytes omitted ...\n789ab"
    assert (buffer.retained_bytes, buffer.omitted_bytes, buffer.total_bytes) == (10, 2, 12)


def test_head_tail_buffer_fills_the_head_then_the_tail_across_chunks() -> None:
    buffer = HeadTailBuffer(10)
    for chunk in (b"01", b"234", b"567", b"89"):
        buffer.feed(chunk)
    assert buffer.to_bytes() == b"0123456789"
    buffer.feed(b"a")
    assert buffer.to_bytes() == b"01234\n... 1 bytes omitted ...\n6789a"


def test_a_chunk_larger_than_the_tail_keeps_only_its_end() -> None:
    buffer = HeadTailBuffer(10)
    buffer.feed(b"0123456789")
    buffer.feed(b"ABCDEFGHIJK")
    assert buffer.to_bytes() == b"01234\n... 11 bytes omitted ...\nGHIJK"


def test_tiny_budgets_keep_what_the_original_keeps() -> None:
    nothing, one = HeadTailBuffer(0), HeadTailBuffer(1)
    nothing.feed(b"abc")
    one.feed(b"abc")
    assert (nothing.retained_bytes, nothing.omitted_bytes) == (0, 3)
    assert one.to_bytes() == b"\n... 2 bytes omitted ...\nc"


def test_head_tail_text_replaces_invalid_utf8() -> None:
    buffer = HeadTailBuffer(8)
    buffer.feed("héllo wörld".encode())  # the cut splits ö
    assert buffer.text() == "hél\n... 5 bytes omitted ...\n\ufffdrld"


def test_ten_megabytes_through_the_buffer_keep_memory_bounded() -> None:
    chunk = bytes(range(256)) * 256  # 64 KiB
    buffer = HeadTailBuffer()
    tracemalloc.start()
    try:
        for _ in range(160):  # 10 MiB
            buffer.feed(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * 1024 * 1024
    assert (buffer.retained_bytes, buffer.total_bytes) == (1024 * 1024, 10 * 1024 * 1024)
    text = buffer.text()
    assert f"\n... {9 * 1024 * 1024} bytes omitted ...\n" in text
    assert len(format_unified_exec_output(buffer, wall_time=1)) < 41_000


def test_shell_command_capture_keeps_the_first_mebibyte_of_each_stream() -> None:
    stream = bytearray()
    for _ in range(20):
        append_capped(stream, b"x" * 100_000)
    assert len(stream) == 1024 * 1024


def test_aggregated_output_splits_the_cap_a_third_to_stdout() -> None:
    assert aggregate_output(b"out", b"err") == b"outerr"
    assert aggregate_output(b"o" * 10, b"e" * 10, max_bytes=9) == b"ooo" + b"e" * 6
    assert aggregate_output(b"o" * 10, b"e" * 2, max_bytes=9) == b"o" * 7 + b"ee"
    assert aggregate_output(b"o" * 2, b"e" * 20, max_bytes=9) == b"oo" + b"e" * 7


# ---------------------------------------------------------------------------
# Aborted and rejected calls
# ---------------------------------------------------------------------------


def test_aborted_calls_report_their_time() -> None:
    assert abort_message("shell_command", 1.26) == "Wall time: 1.3 seconds\naborted by user"
    assert abort_message("exec_command", 0.04) == "aborted by user after 0.0s"


def test_rejections_name_the_tool_and_are_capped() -> None:
    assert rejection_message("rejected by user") == "exec command rejected by user"
    assert rejection_message("rejected by user", tool="apply_patch") == "patch rejected by user"
    assert rejection_message("`ls` rejected: blocked by policy") == "`ls` rejected: blocked by policy"
    long = "y" * 4000
    assert rejection_message(long) == "y" * 1800 + "…100 tokens truncated…" + "y" * 1800
    assert patch_rejected("empty patch") == "patch rejected: empty patch"
