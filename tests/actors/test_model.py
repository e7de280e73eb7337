"""The model stream against the scripted server, over real loopback sockets.

Retry delays are injected (``backoff``) so that no test sleeps long; the
idle-timeout tests use a small ``stream_idle_timeout_ms``.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator

import msgspec
import pytest
import trio

from trio_codex.actors.messages import ModelEvents, ModelFailed, ModelRetrying
from trio_codex.actors.model.stream import ModelClient, StreamError, backoff, classify, connection_backoff, stream_response
from trio_codex.runtime.kernel.mailbox import open_mailbox
from trio_codex.runtime.protocol import responses as wire
from trio_codex.transports.scripted_responses import ScriptedResponses, split_text

TIMEOUT = 10
DISCONNECTED = {"responseStreamDisconnected": {"httpStatusCode": None}}


@pytest.fixture
async def server(nursery: trio.Nursery) -> ScriptedResponses:
    server = ScriptedResponses()
    await nursery.start(server.serve)
    return server


@pytest.fixture
async def make_client(server: ScriptedResponses) -> AsyncIterator:
    clients = []

    def make(base_url: str | None = None, **settings: object) -> ModelClient:
        settings.setdefault("backoff", lambda attempt: 0.0)
        client = ModelClient(base_url or server.base_url, **settings)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


def request(text: str, **fields: object) -> wire.ResponsesRequest:
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    return wire.ResponsesRequest(model="m", input=[msgspec.Raw(msgspec.json.encode(item))], **fields)


async def collect(client: ModelClient, text: str, **headers: str) -> list:
    """Everything ``stream_response`` sends for one prompt, in order."""
    send, receive = trio.open_memory_channel(16)
    messages: list = []

    async def consume() -> None:
        async for message in receive:
            messages.append(message)

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            async with send:
                await stream_response(client, request(text), send, headers=headers)
    return messages


def events(messages: list, attempt: int | None = None) -> list:
    return [
        event
        for message in messages
        if isinstance(message, ModelEvents) and attempt in (None, message.attempt)
        for event in message.events
    ]


def text(messages: list, attempt: int | None = None) -> str:
    return "".join(e.delta for e in events(messages, attempt) if isinstance(e, wire.OutputTextDelta))


def controls(messages: list) -> list:
    """The retry and failure messages; a retry's details (the failure text,
    which names ports) are checked on their own."""
    return [msgspec.structs.replace(m, additional_details=None) if isinstance(m, ModelRetrying) else m
            for m in messages if not isinstance(m, ModelEvents)]


async def test_a_plain_stream_arrives_in_order_and_ends_at_completed(make_client, server) -> None:
    messages = await collect(make_client(), "hello world")
    assert controls(messages) == []
    kinds = [type(e) for e in events(messages)]
    assert kinds[0] is wire.ResponseCreated
    assert kinds[-2:] == [wire.OutputItemDone, wire.ResponseCompleted]
    assert text(messages) == "hello world"
    assert events(messages)[-1].response.usage.output_tokens == server.deltas


async def test_many_deltas_arrive_batched(make_client) -> None:
    messages = await collect(make_client(), "[[deltas=5000]] go")
    deltas = [e for e in events(messages) if isinstance(e, wire.OutputTextDelta)]
    assert len(deltas) == 5000
    assert len(messages) < len(deltas) // 4
    assert {m.attempt for m in messages} == {0}


async def test_a_500_then_success_is_retried_with_a_notice(make_client, server) -> None:
    messages = await collect(make_client(request_max_retries=0), "[[status=500 times=1]] again")
    assert controls(messages) == [ModelRetrying(1, 5, "Reconnecting... 1/5", DISCONNECTED, 0.0)]
    retry = next(m for m in messages if isinstance(m, ModelRetrying))
    assert retry.additional_details == "We’re currently experiencing high demand, which may cause temporary errors."
    assert text(messages, attempt=1) == "again"
    assert len(server.requests) == 2


async def test_5xx_while_opening_is_retried_silently(make_client, server) -> None:
    messages = await collect(make_client(request_max_retries=2), "[[status=502 times=2]] quiet")
    assert controls(messages) == []
    assert text(messages, attempt=0) == "quiet"
    assert len(server.requests) == 3


async def test_a_400_fails_at_once_with_the_provider_body(make_client, server) -> None:
    messages = await collect(make_client(), '[[status=400 message="bad input"]]')
    body = '{"error":{"message":"bad input","type":"invalid_request_error","param":null,"code":null}}'
    assert messages == [ModelFailed(body, "other")]
    assert len(server.requests) == 1


async def test_a_401_is_retried_then_fails_as_the_original(make_client, server) -> None:
    messages = await collect(make_client(stream_max_retries=1), "[[status=401]]")
    url = f"{server.base_url}/responses"
    failure = f"unexpected status 401 Unauthorized: Unauthorized, url: {url}"
    assert messages == [
        ModelRetrying(1, 1, "Reconnecting... 1/1", {"responseStreamDisconnected": {"httpStatusCode": 401}},
                      0.0, failure),
        ModelFailed(failure, {"httpConnectionFailed": {"httpStatusCode": 401}}),
    ]


async def test_a_429_is_not_retried(make_client, server) -> None:
    messages = await collect(make_client(), "[[status=429]]")
    assert messages == [
        ModelFailed(
            "exceeded retry limit, last status: 429 Too Many Requests",
            {"responseTooManyFailedAttempts": {"httpStatusCode": 429}},
        )
    ]
    assert len(server.requests) == 1


async def test_an_overloaded_503_fails_after_the_request_retries(make_client, server) -> None:
    messages = await collect(make_client(request_max_retries=1), "[[status=503 code=server_is_overloaded]]")
    assert messages == [ModelFailed("Selected model is at capacity. Please try a different model.", "serverOverloaded")]
    assert len(server.requests) == 2


async def test_a_mid_stream_disconnect_then_success(make_client) -> None:
    messages = await collect(make_client(), "[[disconnect_after=2 deltas=6 times=1]] abcdef")
    assert text(messages, attempt=0) == "ab"
    assert controls(messages) == [ModelRetrying(1, 5, "Reconnecting... 1/5", DISCONNECTED, 0.0)]
    assert text(messages, attempt=1) == "abcdef"
    assert isinstance(events(messages)[-1], wire.ResponseCompleted)


async def test_exhausted_stream_retries_fail_with_the_last_error(make_client) -> None:
    messages = await collect(make_client(stream_max_retries=2), "[[disconnect_after=1]] abcdef")
    assert [m.message for m in controls(messages)] == ["Reconnecting... 1/2", "Reconnecting... 2/2", (
        "stream disconnected before completion: Transport error: network error: error decoding response body"
    )]
    assert controls(messages)[-1].codex_error_info == "other"


async def test_an_idle_stream_times_out(make_client) -> None:
    client = make_client(stream_idle_timeout_ms=200, stream_max_retries=0)
    messages = await collect(client, "[[hang]]")
    assert [type(e) for e in events(messages)] == [wire.ResponseCreated, wire.OutputItemAdded]
    assert controls(messages) == [
        ModelFailed("stream disconnected before completion: idle timeout waiting for SSE", "other")
    ]


async def test_an_idle_timeout_is_retried(make_client) -> None:
    messages = await collect(make_client(stream_idle_timeout_ms=200), "[[hang=1 times=1]] later")
    assert controls(messages) == [ModelRetrying(1, 5, "Reconnecting... 1/5", DISCONNECTED, 0.0)]
    assert text(messages, attempt=1) == "later"


async def test_keepalive_comments_do_not_keep_a_stalled_stream_alive(make_client) -> None:
    client = make_client(stream_idle_timeout_ms=300, stream_max_retries=0)
    messages = await collect(client, "[[hang keepalive_ms=50]]")
    assert controls(messages) == [
        ModelFailed("stream disconnected before completion: idle timeout waiting for SSE", "other")
    ]


async def test_a_first_byte_after_the_idle_timeout_is_waited_for(make_client) -> None:
    client = make_client(stream_idle_timeout_ms=100, stream_max_retries=0)
    messages = await collect(client, "[[first_byte_ms=500]] late")
    assert controls(messages) == []
    assert text(messages) == "late"


async def test_the_wait_for_headers_is_bounded_by_the_request_timeout(make_client) -> None:
    client = make_client(request_timeout=0.2, stream_idle_timeout_ms=100, request_max_retries=0,
                         stream_max_retries=0)
    messages = await collect(client, "[[first_byte_ms=3000]] too late")
    assert messages == [ModelFailed("request timed out", "other")]


async def test_bytes_that_are_not_utf8_fail_the_stream_at_its_end_as_the_original(make_client) -> None:
    messages = await collect(make_client(stream_max_retries=1), "[[bad_utf8 times=1]] fine")
    assert [type(e) for e in events(messages, attempt=0)] == [wire.ResponseCreated]
    assert controls(messages) == [ModelRetrying(1, 1, "Reconnecting... 1/1", DISCONNECTED, 0.0)]
    retry = next(m for m in messages if isinstance(m, ModelRetrying))
    assert retry.additional_details == (
        "stream disconnected before completion: UTF8 error: invalid utf-8 sequence of 1 bytes from index 0")
    assert text(messages, attempt=1) == "fine"


async def test_after_bytes_that_are_not_utf8_a_hanging_stream_times_out(make_client) -> None:
    client = make_client(stream_idle_timeout_ms=200, stream_max_retries=0)
    messages = await collect(client, "[[bad_utf8 hang]]")
    assert controls(messages) == [
        ModelFailed("stream disconnected before completion: idle timeout waiting for SSE", "other")
    ]


async def test_events_nested_deeper_than_the_originals_limit_are_skipped(make_client) -> None:
    client = make_client()
    items = []
    for depth in (123, 124, 100_000):  # 127, 128 and 100,004 levels in all
        messages = await collect(client, f"[[deep={depth}]] after")
        items.append([wire.decode_item(e.item).id for e in events(messages) if isinstance(e, wire.OutputItemDone)])
        assert controls(messages) == [] and text(messages) == "after"
    assert [ids[:-1] for ids in items] == [["msg_deep"], [], []]


@pytest.mark.parametrize(
    ("prompt", "failure"),
    [
        # Traced against the original 0.169.
        ("[[status=400 code=context_length_exceeded]]", ModelFailed(
            "Codex ran out of room in the model's context window. "
            "Start a new thread or clear earlier history before retrying.", "contextWindowExceeded")),
        ('[[status=400 code=invalid_prompt message="nope"]]', ModelFailed("nope", "other")),
        ('[[status=400 code=bio_policy message="flagged"]]', ModelFailed("flagged", "bioPolicy")),  # 0.171 (0.169: "other")
        ("[[status=400 code=cyber_policy]]", ModelFailed("Bad Request", "cyberPolicy")),
        ('[[fail=bio_policy message="flagged"]]', ModelFailed("flagged", "bioPolicy")),  # 0.171
    ],
)
async def test_bad_requests_and_policy_failures_map_as_the_original(make_client, prompt, failure) -> None:
    assert controls(await collect(make_client(), prompt)) == [failure]


async def test_a_stream_that_ends_without_completed_is_retried(make_client, server) -> None:
    messages = await collect(make_client(stream_max_retries=1), "[[no_completed]] abcd")
    assert [m.message for m in controls(messages)] == [
        "Reconnecting... 1/1",
        "stream disconnected before completion: stream closed before response.completed",
    ]


async def test_response_failed_for_the_context_window_is_final(make_client) -> None:
    messages = await collect(make_client(), "[[fail=context_length_exceeded]]")
    assert controls(messages) == [
        ModelFailed(
            "Codex ran out of room in the model's context window. "
            "Start a new thread or clear earlier history before retrying.",
            "contextWindowExceeded",
        )
    ]
    assert [type(e) for e in events(messages)] == [wire.ResponseCreated]


async def test_a_rate_limited_response_waits_as_the_server_asks(make_client) -> None:
    prompt = '[[fail=rate_limit_exceeded message="Slow down. Please try again in 1ms." times=1]] ok then'
    messages = await collect(make_client(), prompt)
    assert controls(messages) == [ModelRetrying(1, 5, "Reconnecting... 1/5", DISCONNECTED, 0.001)]
    assert text(messages, attempt=1) == "ok then"


async def test_response_incomplete_is_final(make_client) -> None:
    messages = await collect(make_client(), "[[incomplete=max_output_tokens]]")
    assert controls(messages) == [ModelFailed("Incomplete response returned, reason: max_output_tokens", "other")]


async def unused_port() -> int:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    for listener in listeners:
        await listener.aclose()
    return port


async def test_an_unreachable_server_is_waited_for_until_cancelled(make_client) -> None:
    client = make_client(f"http://127.0.0.1:{await unused_port()}/v1", connection_backoff=lambda n: n / 1000)
    send, receive = trio.open_memory_channel(16)
    notices = []
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream_response, client, request("hi"), send)
            async for message in receive:
                notices.append(message)
                if len(notices) == 3:
                    nursery.cancel_scope.cancel()
    assert notices == [
        ModelRetrying(0, 5, "Reconnecting... waiting for network", DISCONNECTED, delay,
                      "Connection failed: error sending request")
        for delay in (0.001, 0.002, 0.003)
    ]


async def test_an_unreachable_server_fails_when_waiting_is_off(make_client) -> None:
    url = f"http://127.0.0.1:{await unused_port()}/v1"
    client = make_client(url, unbounded_connection_retries=False, request_max_retries=0, stream_max_retries=1)
    messages = await collect(client, "hi")
    failure = "Connection failed: error sending request"
    assert messages == [
        ModelRetrying(1, 1, "Reconnecting... 1/1", DISCONNECTED, 0.0, failure),
        ModelFailed(failure, {"httpConnectionFailed": {"httpStatusCode": None}}),
    ]


@pytest.mark.parametrize("prompt", ["[[deltas=500 delay_ms=20]] reading", "[[deltas=5000]] blocked on the mailbox"])
async def test_cancelling_mid_stream_closes_it_and_the_client_stays_usable(make_client, server, prompt) -> None:
    client = make_client()
    send, receive = trio.open_memory_channel(0)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream_response, client, request(prompt), send)
            first = await receive.receive()
            nursery.cancel_scope.cancel()
    assert isinstance(first, ModelEvents)
    gc.collect()  # a body generator left suspended would warn now
    messages = await collect(client, "next turn")
    assert text(messages) == "next turn"
    assert len(server.requests) == 2


async def test_settings_reach_the_server(make_client, server) -> None:
    client = make_client(api_key="sk-test", headers={"X-Provider": "p"}, query_params={"api-version": "2"})
    await collect(client, "hi there", session_id="thread-1")
    await collect(make_client(), "no key")
    keyed, anonymous = server.requests
    assert keyed.headers["authorization"] == "Bearer sk-test"
    assert (keyed.headers["x-provider"], keyed.headers["session_id"]) == ("p", "thread-1")
    assert keyed.headers["accept"] == "text/event-stream"
    assert keyed.query == "api-version=2"
    assert "authorization" not in anonymous.headers


async def test_the_request_body_is_sent_as_encoded(make_client, server) -> None:
    await collect(make_client(), "byte exact")
    body = server.requests[0].body
    assert body == msgspec.json.decode(wire.encode_request(request("byte exact")))
    assert "instructions" not in body


def test_default_delays_follow_the_original() -> None:
    assert [connection_backoff(n) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]
    assert 0.18 <= backoff(1) <= 0.22
    assert 0.72 <= backoff(3) <= 0.88


def test_classify_names_what_it_takes() -> None:
    assert classify(StreamError("x")) == classify(StreamError("x"))
    with pytest.raises(TypeError, match=r"^classify\(\) got 42: pass an SDK error, a StreamError or a failed/incomplete event$"):
        classify(42)


async def drain_mailbox(client: ModelClient, prompt: str, capacity: int, pause: float = 0.0) -> list:
    """What ``stream_response`` sends into a real mailbox of ``capacity``,
    taken in batches as the turn takes them, ``pause`` seconds apart."""
    mailbox, inbox = open_mailbox(capacity, name="turn")
    messages: list = []

    async def consume() -> None:
        while not any(isinstance(m, ModelFailed) for m in messages):
            batch = await inbox.receive_batch()
            messages.extend(batch)
            if any(isinstance(m, ModelEvents) and isinstance(m.events[-1], wire.ResponseCompleted) for m in batch):
                return
            await trio.sleep(pause)

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            await stream_response(client, request(prompt), mailbox)
    return messages


@pytest.mark.parametrize(("count", "directives"), [
    (300, "delay_ms=1"),  # paced: one delta per read
    (3000, ""),  # bursty: many deltas per read
])
async def test_deltas_reach_the_turn_lossless_and_in_order_however_they_are_batched(
        make_client, count, directives) -> None:
    reply = "every delta of this reply, in order"
    messages = await drain_mailbox(make_client(), f"[[deltas={count} {directives}]] {reply}", capacity=4)
    deltas = [e.delta for e in events(messages) if isinstance(e, wire.OutputTextDelta)]
    assert tuple(deltas) == split_text(reply, count)
    done = [e for e in events(messages) if isinstance(e, wire.OutputItemDone)]
    assert "".join(deltas) == msgspec.json.decode(done[-1].item)["content"][0]["text"]
    assert isinstance(events(messages)[-1], wire.ResponseCompleted)


async def test_a_turn_slower_than_the_idle_timeout_does_not_time_the_model_out(make_client) -> None:
    # The mailbox fills while the turn pauses longer than the idle timeout:
    # the stream waits for room, losing nothing, and the model is not blamed.
    client = make_client(stream_idle_timeout_ms=100, stream_max_retries=0)
    prompt = "[[deltas=40 delay_ms=1]] a slow turn"
    messages = await drain_mailbox(client, prompt, capacity=1, pause=0.15)
    assert not [m for m in messages if not isinstance(m, ModelEvents)]
    assert text(messages) == "".join(split_text("a slow turn", 40))


class SlowHandler:
    """An outbox that handles each message in the stream's own task, as the
    turn does (no mailbox between them), taking ``pause`` seconds each."""

    def __init__(self, pause: float) -> None:
        self.pause = pause
        self.messages: list = []

    async def send(self, msg: object) -> None:
        self.messages.append(msg)
        await trio.sleep(self.pause)


@pytest.mark.parametrize(("count", "directives"), [(300, "delay_ms=1"), (3000, "")])
async def test_deltas_handled_in_the_streams_own_task_arrive_lossless_and_in_order(
        make_client, count, directives) -> None:
    reply = "every delta of this reply, handled where it is read"
    out = SlowHandler(0)
    with trio.fail_after(TIMEOUT):
        await stream_response(make_client(), request(f"[[deltas={count} {directives}]] {reply}"), out)
    deltas = [e.delta for e in events(out.messages) if isinstance(e, wire.OutputTextDelta)]
    assert tuple(deltas) == split_text(reply, count)
    assert isinstance(events(out.messages)[-1], wire.ResponseCompleted)


async def test_handling_slower_than_the_idle_timeout_in_the_streams_task_does_not_time_the_model_out(
        make_client) -> None:
    # The turn handles each read's events where the stream reads them: the
    # idle clock stops while it does, as while a full mailbox makes it wait.
    client = make_client(stream_idle_timeout_ms=100, stream_max_retries=0)
    out = SlowHandler(0.15)
    with trio.fail_after(TIMEOUT):
        await stream_response(client, request("[[deltas=20 delay_ms=1]] a slow turn"), out)
    assert not [m for m in out.messages if not isinstance(m, ModelEvents)]
    assert text(out.messages) == "".join(split_text("a slow turn", 20))
