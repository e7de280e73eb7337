"""The Responses wire vocabulary: pure tests, no trio, no sockets."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_codex.runtime.protocol import responses as wire

MESSAGE = b'{"type": "message", "role": "assistant", "id": "msg_1",  "content": [{"type": "output_text", "text": "Hi"}]}'

EVENTS: list[wire.ResponsesEvent] = [
    wire.ResponseCreated(response=wire.Response(id="resp_1", model="m", status="in_progress")),
    wire.OutputItemAdded(item=msgspec.Raw(b'{"type":"message","role":"assistant","content":[]}'), sequence_number=1),
    wire.OutputTextDelta(delta="Hel", item_id="msg_1", sequence_number=2),
    wire.OutputTextDelta(delta="lo\n\n é€😀", item_id="msg_1", sequence_number=3),
    wire.ReasoningSummaryPartAdded(summary_index=1, item_id="rs_1"),
    wire.ReasoningSummaryTextDelta(delta="think", summary_index=1, item_id="rs_1"),
    wire.ReasoningTextDelta(delta="raw", content_index=0, item_id="rs_1"),
    wire.CustomToolCallInputDelta(delta="*** Begin Patch", item_id="ctc_1"),
    wire.OutputItemDone(item=msgspec.Raw(MESSAGE), output_index=0),
    wire.ResponseCompleted(
        response=wire.Response(id="resp_1", usage=wire.TokenUsage(10, 2, 5, 1, 15).to_usage())
    ),
    wire.ResponseFailed(response=wire.Response(error=wire.ResponseError("server_error", "boom"))),
    wire.ResponseIncomplete(response=wire.Response(incomplete_details=wire.IncompleteDetails("max_output_tokens"))),
]
STREAM = b"".join(wire.render_event(event) for event in EVENTS)


def feed_all(chunks: list[bytes]) -> list[wire.ResponsesEvent]:
    decoder = wire.SSEDecoder()
    return [event for chunk in chunks for event in decoder.feed(chunk)]


def test_rendered_events_decode_to_equal_events() -> None:
    assert feed_all([STREAM]) == EVENTS


def test_render_event_writes_the_type_as_the_event_name() -> None:
    frame = wire.render_event(wire.OutputTextDelta(delta="x", item_id="m"))
    assert frame.startswith(b"event: response.output_text.delta\ndata: {")
    assert frame.endswith(b"}\n\n")


def test_rendered_delta_carries_the_fields_the_openai_sdk_requires() -> None:
    frame = wire.render_event(wire.OutputTextDelta(delta="x", item_id="m"))
    data = msgspec.json.decode(frame.split(b"data: ", 1)[1])
    assert set(data) == {
        "content_index", "delta", "item_id", "logprobs", "output_index", "sequence_number", "type"
    }


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=40))
def test_any_chunk_boundaries_give_the_same_events(cuts: list[int]) -> None:
    points = [0, *sorted(cuts), len(STREAM)]
    chunks = [STREAM[a:b] for a, b in zip(points, points[1:])]
    assert feed_all(chunks) == EVENTS


@pytest.mark.parametrize("newline", [b"\r\n", b"\r"])
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=20))
def test_crlf_and_cr_line_ends_with_any_chunk_boundaries(newline: bytes, cuts: list[int]) -> None:
    # The JSON payloads hold no raw newlines (they are escaped), so every
    # b"\n" in the stream is a line end.
    stream = STREAM.replace(b"\n", newline)
    points = [0, *sorted(cuts), len(stream)]
    assert feed_all([stream[a:b] for a, b in zip(points, points[1:])]) == EVENTS


def test_one_byte_at_a_time() -> None:
    assert feed_all([STREAM[i : i + 1] for i in range(len(STREAM))]) == EVENTS


def test_comments_ids_retry_lines_and_data_without_a_space_are_understood() -> None:
    body = (
        b": keep-alive\n\n"
        b"id: 7\nretry: 100\nevent: whatever\n: a comment inside\n"
        b'data:{"type":"response.output_text.delta","delta":"a"}\n\n'
    )
    assert feed_all([body]) == [wire.OutputTextDelta(delta="a")]


def test_multi_line_data_is_joined_with_newlines() -> None:
    body = b'data: {"type":"response.output_text.delta",\ndata: "delta": "a"}\n\n'
    assert feed_all([body]) == [wire.OutputTextDelta(delta="a")]


def test_unknown_types_and_undecodable_data_are_skipped() -> None:
    body = (
        b'event: response.in_progress\ndata: {"type":"response.in_progress","response":{}}\n\n'
        b"data: not json\n\n"
        b'data: {"type":"response.output_text.delta"}\n\n'  # missing delta
        b'data: {"type":"response.output_text.delta","delta":"ok"}\n\n'
        b"event: ping\n\n"
    )
    assert feed_all([body]) == [wire.OutputTextDelta(delta="ok")]


def test_an_unterminated_event_is_not_emitted() -> None:
    frame = wire.render_event(wire.OutputTextDelta(delta="a"))
    assert feed_all([frame[:-1]]) == []


def test_sparse_events_of_minimal_servers_decode_with_defaults() -> None:
    body = (
        b'data: {"type":"response.created","response":{"id":"resp-1"}}\n\n'
        b'data: {"type":"response.completed","response":{"id":"resp-1"}}\n\n'
    )
    created, completed = feed_all([body])
    assert created == wire.ResponseCreated(response=wire.Response(id="resp-1"))
    assert completed.response.usage is None


def test_only_events_with_data_count_as_dispatched() -> None:
    decoder = wire.SSEDecoder()
    decoder.feed(b": keepalive\n\nevent: ping\n\n\n\n")
    assert decoder.dispatched == 0
    decoder.feed(b"data: not json\n\ndata\n\n" + wire.render_event(wire.OutputTextDelta(delta="a")))
    assert decoder.dispatched == 3


def test_bytes_that_are_not_utf8_stop_the_stream_as_the_originals_reader() -> None:
    decoder = wire.SSEDecoder()
    before, after = wire.render_event(EVENTS[0]), wire.render_event(EVENTS[2])
    assert decoder.feed(before + b'data: {"type":"response.output_text.delta","delta":"\xff"}\n\n' + after) == [
        EVENTS[0]]
    assert decoder.feed(after) == []
    assert decoder.end_error() == "UTF8 error: invalid utf-8 sequence of 1 bytes from index 0"


def test_a_utf8_sequence_cut_by_the_end_of_the_body_is_an_error() -> None:
    decoder = wire.SSEDecoder()
    decoder.feed(wire.render_event(EVENTS[3])[:-2] + "é".encode()[:1])
    assert decoder.end_error() == "UTF8 error: incomplete utf-8 byte sequence from index 0"


def test_events_nested_deeper_than_the_originals_limit_are_skipped() -> None:
    def frame(depth: int) -> bytes:
        nested = b"[" * (depth - 2) + b"]" * (depth - 2)
        return b'data: {"type":"response.output_item.done","item":{"type":"x","v":' + nested + b"}}\n\n"

    decoder = wire.SSEDecoder()
    kept = decoder.feed(frame(wire.MAX_DEPTH))
    assert decoder.feed(frame(wire.MAX_DEPTH + 1) + frame(100_000)) == []
    assert len(kept) == 1 and decoder.dispatched == 3
    brackets_in_strings = b'data: {"type":"response.output_text.delta","delta":"' + b"[{" * 500 + b'"}\n\n'
    assert decoder.feed(brackets_in_strings) == [wire.OutputTextDelta(delta="[{" * 500)]


def test_item_events_whose_item_is_not_an_object_with_a_type_are_skipped() -> None:
    body = b"".join(
        b'data: {"type":"response.output_item.done","item":' + item + b"}\n\n"
        for item in (b"[1]", b'"text"', b'{"id":"x"}', b'{"type":"x"}'))
    (event,) = feed_all([body])
    assert bytes(event.item) == b'{"type":"x"}'


def test_items_stay_byte_exact() -> None:
    frame = b'data: {"type":"response.output_item.done","output_index":0,"item":' + MESSAGE + b"}\n\n"
    (event,) = feed_all([b": padding\n\n" + frame])
    assert bytes(event.item) == MESSAGE


def test_decode_item_gives_typed_items() -> None:
    assert wire.decode_item(MESSAGE) == wire.MessageItem(
        role="assistant", content=(wire.OutputText("Hi"),), id="msg_1"
    )
    assert wire.decode_item(MESSAGE).text == "Hi"
    reasoning = b'{"type":"reasoning","id":"rs_1","summary":[{"type":"summary_text","text":"s"}],"encrypted_content":"e"}'
    assert wire.decode_item(reasoning) == wire.ReasoningItem(
        (wire.SummaryText("s"),), id="rs_1", encrypted_content="e"
    )
    call = b'{"type":"function_call","call_id":"c","name":"shell","arguments":"{}","namespace":"ns"}'
    assert wire.decode_item(call) == wire.FunctionCallItem("c", "shell", "{}", namespace="ns")
    custom = b'{"type":"custom_tool_call","call_id":"c","name":"apply_patch","input":"*** Begin"}'
    assert wire.decode_item(custom) == wire.CustomToolCallItem("c", "apply_patch", "*** Begin")


def test_decode_item_keeps_other_shapes_generic() -> None:
    assert wire.decode_item(b'{"type":"web_search_call","id":"ws_1","action":{}}') == wire.OtherItem(
        "web_search_call", "ws_1"
    )
    odd_message = b'{"type":"message","role":"assistant","content":[{"type":"audio"}]}'
    assert wire.decode_item(odd_message) == wire.OtherItem("message")
    with pytest.raises(msgspec.ValidationError):
        wire.decode_item(b"[1, 2]")


def test_items_render_without_absent_fields() -> None:
    item = wire.FunctionCallItem("call_1", "shell", "{}")
    assert msgspec.json.encode(item) == b'{"type":"function_call","call_id":"call_1","name":"shell","arguments":"{}"}'


def test_token_usage_flattens_the_details() -> None:
    usage = msgspec.json.decode(
        b'{"input_tokens":10,"input_tokens_details":{"cached_tokens":4},"output_tokens":6,'
        b'"output_tokens_details":{"reasoning_tokens":2},"total_tokens":16}',
        type=wire.Usage,
    )
    tokens = wire.TokenUsage.from_usage(usage)
    assert tokens == wire.TokenUsage(10, 4, 6, 2, 16)
    assert tokens.to_usage() == usage
    assert wire.TokenUsage.from_usage(wire.Usage(input_tokens=3, total_tokens=3)) == wire.TokenUsage(3, 0, 0, 0, 3)


def test_encode_request_omits_none_and_passes_input_through() -> None:
    item = msgspec.Raw(b'{"type":"message","role":"user","content":[{"type":"input_text","text":"hi"}]}')
    body = wire.encode_request(wire.ResponsesRequest(model="m", input=[item], prompt_cache_key="t"))
    assert body == (
        b'{"model":"m","input":[' + bytes(item) + b'],"tools":[],"tool_choice":"auto",'
        b'"parallel_tool_calls":false,"store":false,"stream":true,"include":[],"prompt_cache_key":"t"}'
    )
