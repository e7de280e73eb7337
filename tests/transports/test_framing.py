"""JSONL framing, pure: byte chunks in, frames out."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from trio_codex.runtime.kernel.stream import Oversized
from trio_codex.transports.framing import NEED_DATA, LineFramer, frame_lines


def frames(framer: LineFramer) -> list:
    out = []
    while (f := framer.next_frame()) is not NEED_DATA:
        out.append(f)
    return out


def test_lines_split_across_chunks_come_out_whole() -> None:
    f = LineFramer()
    f.receive_data(b'{"a":1}\n{"b"')
    assert frames(f) == [b'{"a":1}']
    f.receive_data(b":2}\r\n\n  \n")
    assert frames(f) == [b'{"b":2}']
    assert f.pending == 0


def test_an_oversized_line_is_dropped_and_reported_once_with_its_head() -> None:
    f = LineFramer(max_line=16)
    f.receive_data(b'{"id":5,"method":"x","params":')
    assert frames(f) == []
    f.receive_data(b'"' + b"y" * 100)
    assert frames(f) == []
    assert f.pending == 0  # nothing of the long line is held
    f.receive_data(b'"}\n{"id":6}\n')
    out = frames(f)
    assert isinstance(out[0], Oversized) and out[0].size == 133
    assert out[0].head.startswith(b'{"id":5')
    assert out[1:] == [b'{"id":6}']


def test_an_oversized_line_in_one_chunk_is_reported() -> None:
    f = LineFramer(max_line=4)
    f.receive_data(b"123456\nok\n")
    out = frames(f)
    assert isinstance(out[0], Oversized) and out[0].size == 6 and out[1] == b"ok"


@given(st.lists(st.binary(min_size=1, max_size=40).filter(lambda b: b"\n" not in b and b.strip()), max_size=20),
       st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=10))
def test_any_chunking_gives_the_same_frames(lines: list[bytes], sizes: list[int]) -> None:
    data = frame_lines(lines)
    f = LineFramer()
    out, i, k = [], 0, 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        f.receive_data(data[i:i + n])
        out += frames(f)
        i, k = i + n, k + 1
    assert out == [line.rstrip(b"\r") for line in lines]
