"""The JSON-RPC codec, pure: bytes in, typed messages out; no sockets."""

from __future__ import annotations

import json

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_codex.runtime.protocol import codec
from trio_codex.runtime.protocol.codec import ClientNotification, ClientResponse, Invalid, Request
from trio_codex.runtime.protocol.jsonrpc import (
    ErrorResponse,
    JsonRpcError,
    Notification,
    Response,
    ServerRequest,
    overloaded,
)
from trio_codex.runtime.protocol.methods import METHODS
from trio_codex.runtime.protocol.v2.command import CommandExecParams, CommandExecResizeParams
from trio_codex.runtime.protocol.v2.models import ModelListParams
from trio_codex.runtime.protocol.v2.thread import ThreadIdParams
from trio_codex.runtime.protocol.v2.turn import TurnStartParams


def test_request_ids_of_both_kinds_are_kept_verbatim() -> None:
    assert codec.decode(b'{"id":7,"method":"thread/start","params":{}}') == Request(7, "thread/start", msgspec.Raw(b"{}"))
    req = codec.decode(b'{"id":"initialize","method":"initialize"}')
    assert isinstance(req, Request) and req.id == "initialize" and req.params is None


def test_a_jsonrpc_member_on_input_is_tolerated() -> None:
    assert isinstance(codec.decode(b'{"jsonrpc":"2.0","id":1,"method":"model/list","params":{}}'), Request)


def test_notifications_and_responses_are_told_apart() -> None:
    assert codec.decode(b'{"method":"initialized"}') == ClientNotification("initialized", None)
    resp = codec.decode(b'{"id":0,"result":{"decision":"accept"}}')
    assert isinstance(resp, ClientResponse) and bytes(resp.result) == b'{"decision":"accept"}'


def test_a_line_that_is_not_json_owes_no_reply() -> None:
    out = codec.decode(b"this is not json")
    assert isinstance(out, Invalid) and out.id is None


def test_json_that_is_not_a_message_is_answered_when_it_has_an_id() -> None:
    out = codec.decode(b'{"id":3,"method":42}')
    assert isinstance(out, Invalid) and out.id == 3
    assert out.reason == "Invalid request: invalid type: integer, expected a string at `method`"
    assert codec.decode(b"[1,2]") == Invalid("Invalid request: invalid type: array, expected a map")


def test_params_errors_use_the_originals_wording() -> None:
    with pytest.raises(JsonRpcError) as exc:
        codec.decode_params(msgspec.Raw(b'{"threadId":123,"input":[]}'), TurnStartParams)
    assert exc.value.error.code == -32600
    assert exc.value.error.message == "Invalid request: invalid type: integer, expected a string at `threadId`"
    with pytest.raises(JsonRpcError, match=r"^Invalid request: missing field `input`$"):
        codec.decode_params(msgspec.Raw(b'{"threadId":"t"}'), TurnStartParams)
    with pytest.raises(JsonRpcError, match=r"^Invalid request: missing field `params`$"):
        codec.decode_params(None, TurnStartParams)
    with pytest.raises(JsonRpcError, match=r"^Invalid request: missing field `params`$"):
        codec.decode_params(msgspec.Raw(b"null"), TurnStartParams)


def test_outbound_messages_never_carry_a_jsonrpc_member() -> None:
    for msg in (Response(1, {}), ErrorResponse("a", overloaded().error),
                Notification("thread/started", {"x": 1}, 5), ServerRequest(0, "item/tool/call", {})):
        assert b"jsonrpc" not in codec.encode(msg)


def test_the_overload_error_names_server_overloaded_for_the_sdk() -> None:
    out = json.loads(codec.encode(ErrorResponse(9, overloaded().error)))
    assert out == {"id": 9, "error": {"code": -32001, "message": "Server overloaded; retry later.",
                                      "data": {"codex_error_info": "server_overloaded"}}}


def test_notifications_carry_emitted_at_ms() -> None:
    assert json.loads(codec.encode(Notification("turn/started", {}, 12))) == {
        "method": "turn/started", "params": {}, "emittedAtMs": 12}


def test_encode_into_appends_one_jsonl_line() -> None:
    buf = bytearray(b"x\n")
    codec.encode_into(Response(1, None), buf)
    assert bytes(buf) == b'x\n{"id":1,"result":null}\n'


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_message = st.fixed_dictionaries(
    {"method": st.sampled_from([*METHODS, "nope", ""]) | st.text()},
    optional={"id": st.integers() | st.text() | st.none() | st.booleans() | st.floats(),
              "params": _json, "result": _json, "error": _json, "jsonrpc": _json},
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_raise(frame: bytes) -> None:
    assert isinstance(codec.decode(frame), (Request, ClientNotification, ClientResponse, Invalid))


@settings(max_examples=300, deadline=None)
@given(_message, st.integers(min_value=0, max_value=400), st.binary(max_size=3))
def test_mutated_messages_never_raise_and_requests_stay_answerable(msg: dict, cut: int, junk: bytes) -> None:
    frame = json.dumps(msg).encode()
    mutated = frame[:cut] + junk + frame[cut + len(junk):]
    for f in (frame, mutated):
        out = codec.decode(f)
        if isinstance(out, Request):
            spec = METHODS.get(out.method)
            try:
                codec.decode_params(out.params, spec.params if spec else None)
            except JsonRpcError as exc:
                assert exc.error.code == -32600


def test_integers_out_of_their_rust_range_are_refused_with_serdes_wording() -> None:
    with pytest.raises(JsonRpcError, match=r"^Invalid request: invalid value: integer `70000`, expected u16 at `size.rows`$"):
        codec.decode_params(msgspec.Raw(b'{"command":["x"],"size":{"rows":70000,"cols":1}}'), CommandExecParams)
    with pytest.raises(JsonRpcError, match=r"^Invalid request: invalid value: integer `-1`, expected u32 at `limit`$"):
        codec.decode_params(msgspec.Raw(b'{"limit":-1}'), ModelListParams)
    # Invalid UTF-8 after the bad integer: still an invalid request, never a crash.
    with pytest.raises(JsonRpcError) as exc:
        codec.decode_params(msgspec.Raw(b'{"size":{"rows":70000,"cols":1},"processId":"\xff"}'), CommandExecResizeParams)
    assert exc.value.error.code == -32600


def test_params_with_invalid_utf8_are_an_invalid_request() -> None:
    with pytest.raises(JsonRpcError, match=r"^Invalid request: params are not valid JSON: Invalid UTF-8"):
        codec.decode_params(msgspec.Raw(b'{"threadId":"\xff\xfe"}'), ThreadIdParams)


def test_json_nested_deeper_than_serdes_limit_or_an_id_outside_i64_is_no_message() -> None:
    # The envelope is the first level: 127 in all are read, 128 are not.
    deep = b'{"id":1,"method":"model/list","params":' + b"[" * 127 + b"]" * 127 + b"}"
    assert codec.decode(deep) == Invalid("not valid JSON: recursion limit exceeded (nested deeper than 127)")
    assert isinstance(codec.decode(deep.replace(b"[]", b"", 1)), Request)
    assert codec.decode(b'{"id":9223372036854775808,"method":"model/list"}').id is None
    assert codec.decode(b'{"id":-9223372036854775808,"method":"model/list"}') == Request(
        -(2**63), "model/list", None)
    assert not codec.too_deep(b'"' + b"[" * 500 + b'"')  # brackets in a string are text
