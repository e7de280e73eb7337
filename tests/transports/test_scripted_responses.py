"""The scripted Responses server, over real loopback sockets.

The directive parser and ``split_text`` are tested pure; everything else
goes through a socket, with an h11 client written here (so the server's HTTP
is checked byte by byte) or the openai SDK's typed path.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import h11
import msgspec
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from trio_codex.runtime.protocol import responses as wire
from trio_codex.transports.scripted_responses import (
    HttpError,
    Message,
    Reasoning,
    Script,
    ScriptedResponses,
    parse_directives,
    split_text,
)

TIMEOUT = 10


@pytest.fixture
async def server(nursery: trio.Nursery) -> ScriptedResponses:
    server = ScriptedResponses()
    await nursery.start(server.serve)
    return server


class Reply(msgspec.Struct):
    status: int
    headers: dict[str, str]
    chunks: list[bytes]
    complete: bool

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    @property
    def events(self) -> list[wire.ResponsesEvent]:
        return wire.SSEDecoder().feed(self.body)

    @property
    def text(self) -> str:
        return "".join(e.delta for e in self.events if isinstance(e, wire.OutputTextDelta))


class Client:
    """One keep-alive HTTP/1.1 connection, driven by h11."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)

    async def request(self, method: str, target: str, body: bytes | None = None, **headers: str) -> Reply:
        if self.conn.our_state is h11.DONE:
            self.conn.start_next_cycle()
        fields = [("host", "127.0.0.1"), *headers.items()]
        if body is not None:
            fields.append(("content-length", str(len(body))))
        data = self.conn.send(h11.Request(method=method, target=target, headers=fields))
        if body is not None:
            data += self.conn.send(h11.Data(data=body))
        data += self.conn.send(h11.EndOfMessage())
        await self.stream.send_all(data)
        response = await self._next()
        reply = Reply(response.status_code, {k.decode(): v.decode() for k, v in response.headers}, [], False)
        while True:
            try:
                event = await self._next()
            except h11.RemoteProtocolError:
                return reply  # the server closed mid-body
            if type(event) is h11.Data:
                reply.chunks.append(bytes(event.data))
            else:
                reply.complete = type(event) is h11.EndOfMessage
                return reply

    async def _next(self) -> object:
        while (event := self.conn.next_event()) is h11.NEED_DATA:
            self.conn.receive_data(await self.stream.receive_some(65536))
        return event


async def connect(server: ScriptedResponses) -> Client:
    return Client(await trio.open_tcp_stream("127.0.0.1", server.port))


def user(text: str) -> dict:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def body(*items: dict, **fields: object) -> bytes:
    return json.dumps({"model": "m", "input": list(items), "stream": True, **fields}).encode()


async def post(server: ScriptedResponses, *items: dict, **fields: object) -> Reply:
    with trio.fail_after(TIMEOUT):
        client = await connect(server)
        async with client.stream:
            return await client.request("POST", "/v1/responses", body(*items, **fields))


# --- pure ----------------------------------------------------------------------


def test_directives_take_numbers_strings_and_json_arguments() -> None:
    text = '[[deltas=3 delay_ms=2.5]] hi [[text="two words" call=shell {"cmd":"echo ]] x"} call=noop hang]]'
    directives, plain = parse_directives(text)
    assert directives == {
        "deltas": 3,
        "delay_ms": 2.5,
        "text": "two words",
        "call": [("shell", '{"cmd":"echo ]] x"}'), ("noop", "{}")],
        "hang": 0,
    }
    assert plain == " hi "


def test_json_too_deep_to_parse_is_no_directive_but_a_string_argument_is() -> None:
    deep = "[" * 5000 + "]" * 5000
    assert parse_directives(f"[[call=x {deep}]]") == ({}, f"[[call=x {deep}]]")
    assert parse_directives(f"[[call=x {json.dumps(deep)}]]")[0] == {"call": [("x", deep)]}


def test_custom_directive_takes_a_json_string() -> None:
    directives, _ = parse_directives('[[custom=apply_patch "*** Begin Patch\\n"]]')
    assert directives == {"custom": [("apply_patch", "*** Begin Patch\n")]}


@pytest.mark.parametrize(
    "text",
    ["[[ -f x ]] && echo", "[[deltas=many]]", "[[bogus=1]]", "[[]]", "[[deltas=3", "[[custom=x {}]]", "[[hang=x]]"],
)
def test_blocks_that_do_not_parse_stay_text(text: str) -> None:
    assert parse_directives(text) == ({}, text)


def test_split_text_makes_near_equal_pieces() -> None:
    assert split_text("abcdefg", 3) == ("abc", "de", "fg")
    assert split_text("hi", 5) == ("h", "i", "h", "i", "h")
    assert split_text("", 2) == (".", ".")


@given(st.text(min_size=1), st.integers(min_value=1, max_value=50))
def test_split_text_keeps_the_text_when_long_enough(text: str, n: int) -> None:
    pieces = split_text(text, n)
    assert len(pieces) == n
    assert all(pieces)
    if len(text) >= n:
        assert "".join(pieces) == text


# --- streams ----------------------------------------------------------------------


async def test_echo_streams_like_the_api(server: ScriptedResponses) -> None:
    reply = await post(server, user("first"), user("hello world"))
    assert reply.status == 200
    assert reply.headers["content-type"] == "text/event-stream"
    assert reply.headers["transfer-encoding"] == "chunked"
    assert reply.complete
    events = reply.events
    kinds = [type(e) for e in events]
    assert kinds == [
        wire.ResponseCreated,
        wire.OutputItemAdded,
        *[wire.OutputTextDelta] * server.deltas,
        wire.OutputItemDone,
        wire.ResponseCompleted,
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert reply.text == "hello world"
    item = wire.decode_item(events[-2].item)
    assert isinstance(item, wire.MessageItem)
    assert (item.text, item.status, item.id) == ("hello world", "completed", events[2].item_id)
    completed = events[-1].response
    assert completed.status == "completed"
    assert [bytes(raw) for raw in completed.output] == [bytes(events[-2].item)]
    usage = completed.usage
    assert usage.output_tokens == server.deltas
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens


async def test_the_openai_sdk_typed_path_reads_every_event(server: ScriptedResponses) -> None:
    from openai import AsyncOpenAI
    from openai.types.responses import (
        ResponseCompletedEvent,
        ResponseFunctionToolCall,
        ResponseOutputItemDoneEvent,
        ResponseReasoningSummaryPartAddedEvent,
        ResponseReasoningSummaryTextDeltaEvent,
        ResponseTextDeltaEvent,
    )

    with trio.fail_after(TIMEOUT):
        async with AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0) as client:
            stream = await client.responses.create(model="m", input="[[reasoning=2 deltas=3]] hello", stream=True)
            events = [event async for event in stream]
            stream = await client.responses.create(model="m", input='[[call=shell {"a":1}]]', stream=True)
            calls = [event async for event in stream]
    kinds = {type(e) for e in events}
    assert {ResponseReasoningSummaryPartAddedEvent, ResponseReasoningSummaryTextDeltaEvent} <= kinds
    assert "".join(e.delta for e in events if isinstance(e, ResponseTextDeltaEvent)) == "hello"
    assert isinstance(events[-1], ResponseCompletedEvent)
    assert events[-1].response.output_text == "hello"
    assert events[-1].response.usage.output_tokens == 5
    (done,) = [e for e in calls if isinstance(e, ResponseOutputItemDoneEvent)]
    assert isinstance(done.item, ResponseFunctionToolCall)
    assert (done.item.name, done.item.arguments) == ("shell", '{"a":1}')


async def test_one_connection_serves_many_requests(server: ScriptedResponses) -> None:
    with trio.fail_after(TIMEOUT):
        client = await connect(server)
        async with client.stream:
            first = await client.request("POST", "/v1/responses", body(user("first")))
            models = await client.request("GET", "/v1/models?client_version=1")
            second = await client.request("POST", "/v1/responses", body(user("second")))
    assert (first.text, second.text) == ("first", "second")
    assert first.complete and second.complete
    assert (models.status, json.loads(models.body)) == (200, {"models": []})


async def test_unknown_routes_are_404_with_an_openai_style_error(server: ScriptedResponses) -> None:
    with trio.fail_after(TIMEOUT):
        client = await connect(server)
        async with client.stream:
            replies = [
                await client.request("GET", "/v1/nope"),
                await client.request("GET", "/v1/responses"),
                await client.request("POST", "/v1/models", b"{}"),
            ]
    for reply in replies:
        assert reply.status == 404
        error = json.loads(reply.body)["error"]
        assert error["type"] == "invalid_request_error"
        assert error["message"].startswith("no route for ")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"{not json", "the request body is not valid JSON: "),
        (b"[1]", "the request body must be a JSON object"),
        (b'{"input": []}', "missing required parameter: 'model' (a string)"),
        (b'{"model": "m", "input": 3}', "missing required parameter: 'input' (a string or an array of items)"),
        (b'{"model": "m", "input": []}', 'this server only streams: send "stream": true'),
    ],
)
async def test_bad_bodies_get_a_400_and_the_connection_stays_open(
    server: ScriptedResponses, payload: bytes, message: str
) -> None:
    with trio.fail_after(TIMEOUT):
        client = await connect(server)
        async with client.stream:
            bad = await client.request("POST", "/v1/responses", payload)
            good = await client.request("POST", "/v1/responses", body(user("fine")))
    assert bad.status == 400
    error = json.loads(bad.body)["error"]
    assert error["message"].startswith(message)
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", None, None)
    assert good.text == "fine"


async def test_enqueued_scripts_come_first_in_order(server: ScriptedResponses) -> None:
    server.enqueue(
        Script(output=(Message(("a", "b")),)),
        Script(http_error=HttpError(503, code="server_is_overloaded")),
    )
    first = await post(server, user("[[status=500]] ignored"))
    second = await post(server, user("x"))
    third = await post(server, user("echo"))
    assert first.text == "ab"
    assert second.status == 503
    assert json.loads(second.body)["error"] == {
        "message": "Service Unavailable", "type": "server_error", "param": None, "code": "server_is_overloaded"
    }
    assert third.text == "echo"


async def test_a_string_input_is_the_user_message(server: ScriptedResponses) -> None:
    with trio.fail_after(TIMEOUT):
        client = await connect(server)
        async with client.stream:
            reply = await client.request("POST", "/v1/responses", b'{"model":"m","input":"plain","stream":true}')
    assert reply.text == "plain"


async def test_after_a_tool_output_the_reply_quotes_it(server: ScriptedResponses) -> None:
    call = {"type": "function_call", "call_id": "c1", "name": "shell", "arguments": "{}"}
    output = {"type": "function_call_output", "call_id": "c1", "output": "hi\n"}
    reply = await post(server, user("[[call=shell]]"), call, output)
    assert reply.text == "tool output: hi"


async def test_call_directives_reply_with_function_calls_only(server: ScriptedResponses) -> None:
    reply = await post(server, user('[[reasoning=1 call=shell_command {"command":"echo hi"} call=noop]]'))
    items = [wire.decode_item(e.item) for e in reply.events if isinstance(e, wire.OutputItemDone)]
    reasoning, first, second = items
    assert isinstance(reasoning, wire.ReasoningItem)
    assert (first.name, first.arguments) == ("shell_command", '{"command":"echo hi"}')
    assert (second.name, second.arguments) == ("noop", "{}")
    assert first.call_id != second.call_id
    assert reply.text == ""


async def test_custom_directive_streams_the_input(server: ScriptedResponses) -> None:
    reply = await post(server, user('[[custom=apply_patch "*** Begin Patch"]]'))
    deltas = [e.delta for e in reply.events if isinstance(e, wire.CustomToolCallInputDelta)]
    (done,) = [e for e in reply.events if isinstance(e, wire.OutputItemDone)]
    item = wire.decode_item(done.item)
    assert deltas == ["*** Begin Patch"]
    assert (item.name, item.input) == ("apply_patch", "*** Begin Patch")


async def test_reasoning_streams_summary_parts(server: ScriptedResponses) -> None:
    server.enqueue(Script(output=(Reasoning((("a", "b"), ("c",))), Message(("ok",)))))
    events = (await post(server, user("x"))).events
    parts = [e.summary_index for e in events if isinstance(e, wire.ReasoningSummaryPartAdded)]
    deltas = [(e.summary_index, e.delta) for e in events if isinstance(e, wire.ReasoningSummaryTextDelta)]
    done = wire.decode_item(next(e for e in events if isinstance(e, wire.OutputItemDone)).item)
    assert parts == [0, 1]
    assert deltas == [(0, "a"), (0, "b"), (1, "c")]
    assert [s.text for s in done.summary] == ["ab", "c"]
    assert events[-1].response.usage.output_tokens_details.reasoning_tokens == 3


async def test_failures_with_times_count_per_cache_key_and_text(server: ScriptedResponses) -> None:
    prompt = user("[[status=500 times=2]] again")
    statuses = [(await post(server, prompt, prompt_cache_key="a")).status for _ in range(3)]
    other_thread = await post(server, prompt, prompt_cache_key="b")
    assert statuses == [500, 500, 200]
    assert other_thread.status == 500
    assert json.loads(other_thread.body)["error"]["type"] == "server_error"


async def test_disconnect_after_cuts_the_body(server: ScriptedResponses) -> None:
    reply = await post(server, user("[[disconnect_after=2 deltas=6]] abcdef"))
    assert not reply.complete
    assert reply.text == "ab"
    assert not any(isinstance(e, wire.ResponseCompleted) for e in reply.events)


async def test_disconnect_after_more_deltas_than_sent_cuts_before_completed(server: ScriptedResponses) -> None:
    reply = await post(server, user("[[disconnect_after=99]] abc"))
    assert not reply.complete
    assert isinstance(reply.events[-1], wire.OutputItemDone)


async def test_hang_sends_nothing_more_and_keeps_the_socket_open(server: ScriptedResponses) -> None:
    with trio.fail_after(TIMEOUT):
        client = await connect(server)
        async with client.stream:
            await client.stream.send_all(
                client.conn.send(h11.Request(method="POST", target="/v1/responses", headers=[
                    ("host", "x"), ("content-length", str(len(body(user("[[hang=1]] abc")))))]))
                + client.conn.send(h11.Data(data=body(user("[[hang=1]] abc"))))
                + client.conn.send(h11.EndOfMessage())
            )
            received = b""
            while received.count(b"\n\n") < 3:
                received += await client.stream.receive_some(65536)
            with trio.move_on_after(0.2) as idle:
                received += await client.stream.receive_some(65536)
    assert idle.cancelled_caught
    assert received.count(b"response.output_text.delta") == 2  # its event: line and its data


async def test_a_hanging_stream_can_send_keepalive_comments(server: ScriptedResponses) -> None:
    prompt = body(user("[[hang keepalive_ms=20]] abc"))
    with trio.fail_after(TIMEOUT):
        client = await connect(server)
        async with client.stream:
            await client.stream.send_all(
                client.conn.send(h11.Request(method="POST", target="/v1/responses", headers=[
                    ("host", "x"), ("content-length", str(len(prompt)))]))
                + client.conn.send(h11.Data(data=prompt)) + client.conn.send(h11.EndOfMessage()))
            received = b""
            while received.count(b": keepalive\n\n") < 3:
                received += await client.stream.receive_some(65536)
    assert b"response.created" in received and b"output_text.delta" not in received


async def test_bad_utf8_and_deep_frames_follow_response_created(server: ScriptedResponses) -> None:
    reply = await post(server, user("[[bad_utf8 deep=3]] abc"))
    assert reply.complete
    created, bad, deep = reply.body.split(b"\n\n")[:3]
    assert b"response.created" in created
    assert b'"delta":"\xff"' in bad
    assert b'"nested":[[[]]]' in deep
    assert wire.SSEDecoder().feed(deep + b"\n\n")[0].item  # a well-formed event otherwise


@pytest.mark.parametrize(
    ("prompt", "ending"),
    [
        ("[[fail=context_length_exceeded]]", wire.ResponseFailed),
        ("[[incomplete=max_output_tokens]]", wire.ResponseIncomplete),
        ("[[no_completed]] abc", wire.OutputItemDone),
    ],
)
async def test_scripted_endings(server: ScriptedResponses, prompt: str, ending: type) -> None:
    reply = await post(server, user(prompt))
    assert reply.complete
    assert isinstance(reply.events[-1], ending)


async def test_failed_and_incomplete_carry_code_message_and_reason(server: ScriptedResponses) -> None:
    failed = (await post(server, user('[[fail=server_error message="boom"]]'))).events[-1]
    incomplete = (await post(server, user("[[incomplete=content_filter]]"))).events[-1]
    assert failed.response.error == wire.ResponseError("server_error", "boom")
    assert failed.response.status == "failed"
    assert incomplete.response.incomplete_details == wire.IncompleteDetails("content_filter")


async def test_delays_before_the_first_byte_and_between_deltas(server: ScriptedResponses) -> None:
    start = trio.current_time()
    reply = await post(server, user("[[first_byte_ms=50 delay_ms=20 deltas=3]] abc"))
    assert trio.current_time() - start >= 0.05 + 2 * 0.02
    delta_chunks = [chunk for chunk in reply.chunks if b"output_text.delta" in chunk]
    assert len(delta_chunks) == 3  # each throttled delta is written on its own


async def test_usage_directives(server: ScriptedResponses) -> None:
    reply = await post(server, user("[[input_tokens=100 cached_tokens=40 output_tokens=7 reasoning_tokens=3]]"))
    usage = wire.TokenUsage.from_usage(reply.events[-1].response.usage)
    assert usage == wire.TokenUsage(100, 40, 7, 3, 107)


async def test_requests_are_recorded_and_bounded(nursery: trio.Nursery) -> None:
    server = ScriptedResponses(record_limit=2)
    await nursery.start(server.serve)
    for text in ("one", "two", "three"):
        await post(server, user(text), prompt_cache_key="t")
    assert [r.body["input"][0]["content"][0]["text"] for r in server.requests] == ["two", "three"]
    record = server.requests[-1]
    assert (record.method, record.path, record.query) == ("POST", "/v1/responses", "")
    assert record.headers["host"] == "127.0.0.1"
    assert record.body["prompt_cache_key"] == "t"


async def test_server_default_deltas_and_delay(nursery: trio.Nursery) -> None:
    server = ScriptedResponses(deltas=7)
    await nursery.start(server.serve)
    reply = await post(server, user("seven deltas"))
    assert sum(isinstance(e, wire.OutputTextDelta) for e in reply.events) == 7


async def test_many_concurrent_streams(server: ScriptedResponses) -> None:
    texts: dict[int, str] = {}

    async def one(i: int) -> None:
        texts[i] = (await post(server, user(f"[[deltas=500]] stream number {i} " + "x" * 500))).text

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for i in range(50):
                nursery.start_soon(one, i)
    assert texts == {i: f"stream number {i} " + "x" * 500 for i in range(50)}


def test_base_url_needs_a_running_server() -> None:
    with pytest.raises(RuntimeError, match=r"^the server has no port yet: await nursery.start\(server.serve\) first$"):
        ScriptedResponses().base_url


# --- as a process -------------------------------------------------------------------


async def start_process(nursery: trio.Nursery, *args: str) -> tuple[trio.Process, str]:
    command = [sys.executable, "-m", "trio_codex.transports.scripted_responses", "--deltas", "2", *args]
    process = await nursery.start(
        lambda task_status: trio.run_process(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, check=False, task_status=task_status
        )
    )
    line = b""
    while not line.endswith(b"\n"):
        line += await process.stdout.receive_some(1)
    verb, url = line.decode().split()
    assert verb == "LISTENING"
    return process, url


async def test_process_serves_until_stdin_closes(nursery: trio.Nursery) -> None:
    with trio.fail_after(TIMEOUT):
        process, url = await start_process(nursery)
        host_port = url.removeprefix("http://").removesuffix("/v1")
        host, port = host_port.rsplit(":", 1)
        client = Client(await trio.open_tcp_stream(host, int(port)))
        async with client.stream:
            reply = await client.request("POST", "/v1/responses", body(user("hi")))
        assert reply.text == "hi"
        await process.stdin.aclose()
        assert await process.wait() == 0


async def test_process_stops_on_sigterm(nursery: trio.Nursery) -> None:
    with trio.fail_after(TIMEOUT):
        process, url = await start_process(nursery, "--ignore-stdin")
        assert url.startswith("http://127.0.0.1:")
        process.send_signal(signal.SIGTERM)
        assert await process.wait() == 0
