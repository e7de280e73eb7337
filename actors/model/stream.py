"""The model stream: one Responses API request, streamed into a mailbox.

:func:`stream_response` POSTs a :class:`~..runtime.protocol.responses.ResponsesRequest`
through the openai SDK's client and sends what comes back to ``out``:

* :class:`~.messages.ModelEvents`: the events decoded from one read of the
  HTTP body (one body chunk as the HTTP client yields it), in wire order: one
  mailbox hop for many deltas. ``attempt`` counts the tries before this one.
* :class:`~.messages.ModelRetrying` before each retry. ``attempt`` and
  ``max_attempts`` are the ``n/max`` of its message, ``Reconnecting... n/max``;
  while the server cannot be reached at all the message is ``Reconnecting...
  waiting for network`` and ``n`` does not move.
* :class:`~.messages.ModelFailed` when it gives up.

It returns after ``response.completed`` or ``ModelFailed``; events after
``response.completed`` are not sent, and ``response.failed`` or
``response.incomplete`` become ``ModelRetrying`` or ``ModelFailed``.

Rules:

1. The hot path never builds the SDK's typed events (~80 µs each): it reads
   the raw body through the SDK client and decodes it with the shared sans-I/O
   :class:`~..runtime.protocol.responses.SSEDecoder` (~1 µs each). The body
   goes to the SDK already encoded, which skips its per-request transform of
   the whole history.
2. The idle timeout (``stream_idle_timeout_ms``) counts only events that
   carry data, as the original's: SSE comments (keepalives) do not keep a
   stalled stream alive. Waiting for the response headers is bounded by the
   request timeout instead (the original waits for them without limit).
3. Retries follow the original (codex-core §1.4). Opening the request is
   retried ``request_max_retries`` times on 5xx and network errors (not 429),
   silently. A failure after that, or a broken, stalled or early-ended stream,
   is retried ``stream_max_retries`` times if :func:`classify` says it is
   retryable, each retry announced with ``ModelRetrying``. A server that
   refuses connections is waited for without limit (see :class:`ModelClient`).
4. Every failure is described by :func:`classify`, the one table from causes
   to the message and ``codexErrorInfo`` the turn reports. An SDK that cannot
   be loaded (out of file descriptors) is waited for like a server that
   cannot be reached; nothing about it is cached.
5. Cancelling the caller's scope closes the HTTP response at once; the
   :class:`ModelClient` stays usable.
"""

from __future__ import annotations

import contextlib
import http
import importlib
import itertools
import logging
import math
import random
import re
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
import trio

from ...runtime.kernel.errors import descriptor_error
from ...runtime.kernel.mailbox import Mailbox
from ...runtime.protocol import responses as wire
from ...runtime.server.rate_limits import RateLimits
from ..messages import ModelEvents, ModelFailed, ModelRetrying
from .sdk import load as load_sdk

if TYPE_CHECKING:
    import httpx2
    import openai

__all__ = [
    "Failure",
    "ModelClient",
    "Outbox",
    "StreamError",
    "backoff",
    "classify",
    "connection_backoff",
    "stream_response",
]

log = logging.getLogger("trio_codex.model")

#: Seconds to wait for a connection, as the SDK's default.
CONNECT_TIMEOUT = 5.0

#: Seconds to wait for the response headers: the SDK's default request
#: timeout (the original waits without limit; a first byte may come long
#: after ``stream_idle_timeout_ms``).
REQUEST_TIMEOUT = 600.0

#: How late the idle timeout may fire, as a share of it: its deadline is
#: moved once the stream has used this much of it, not on every read.
IDLE_SLACK = 0.02

#: Once a stream has ended (``response.completed`` or a failure event), how
#: long to wait for the end of the body so the connection can be reused; a
#: server that keeps it open is dropped.
DRAIN_TIMEOUT = 0.5


class Outbox(Protocol):
    """Where the stream sends its messages: a Mailbox or a trio channel."""

    async def send(self, msg: Any) -> None: ...


def backoff(attempt: int) -> float:
    """The original's retry delay: 200 ms · 2^(attempt-1), jittered ±10 %."""
    return 0.2 * 2 ** (attempt - 1) * random.uniform(0.9, 1.1)


def connection_backoff(attempt: int) -> float:
    """The original's wait for an unreachable server: 5 s, doubling up to 60 s."""
    return min(5.0 * 2 ** (attempt - 1), 60.0)


class ModelClient:
    """One per model provider: its settings and one ``openai.AsyncOpenAI``.

    The SDK client is made on first use (importing openai takes a while) with
    its own retries off, since :func:`stream_response` applies the original's
    policy. Close it with :meth:`aclose`: under trio the SDK cannot close
    itself. An empty or missing ``api_key`` sends no Authorization header.
    ``backoff(n)`` gives the n-th retry's delay in seconds. With
    ``unbounded_connection_retries`` (the original's default feature), a
    server that cannot be reached is retried until the caller cancels,
    outside the ``stream_max_retries`` budget, the n-th wait lasting
    ``connection_backoff(n)``. ``request_timeout`` bounds the wait for the
    response headers (seconds).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        query_params: Mapping[str, str] | None = None,
        request_max_retries: int = 4,
        stream_max_retries: int = 5,
        stream_idle_timeout_ms: int = 300_000,
        request_timeout: float = REQUEST_TIMEOUT,
        unbounded_connection_retries: bool = True,
        backoff: Callable[[int], float] = backoff,
        connection_backoff: Callable[[int], float] = connection_backoff,
        rate_limits: RateLimits | None = None,
    ) -> None:
        self.base_url = base_url
        self.api_key = api_key or None
        self.headers = dict(headers or {})
        self.query_params = dict(query_params or {})
        self.request_max_retries = request_max_retries
        self.stream_max_retries = stream_max_retries
        self.stream_idle_timeout = stream_idle_timeout_ms / 1000
        self.request_timeout = request_timeout
        self.unbounded_connection_retries = unbounded_connection_retries
        self.backoff = backoff
        self.connection_backoff = connection_backoff
        self._sdk: openai.AsyncOpenAI | None = None
        self._making = trio.Lock()
        #: Where the usage-limit headers of responses are noted (ModelPool's).
        self.rate_limits = rate_limits

    async def sdk(self) -> openai.AsyncOpenAI:
        """The SDK client, made on first use. Raises ``OSError`` when it
        cannot be loaded (e.g. out of file descriptors); the next call tries
        again."""
        if self._sdk is None:
            # One make at a time: a turn that starts while the start-up
            # warm-up is making the client waits for that one.
            async with self._making:
                if self._sdk is None:
                    # Import and construct off the event loop (~0.1 s: the
                    # client modules, then an SSL context).
                    self._sdk = await trio.to_thread.run_sync(self._make)
        return self._sdk

    def _make(self) -> openai.AsyncOpenAI:
        sdk = load_sdk()
        # The HTTP client's trio backend, which its first request would
        # otherwise import on the event loop.
        with contextlib.suppress(ImportError):
            importlib.import_module("anyio._backends._trio")
        return sdk.AsyncOpenAI(
            base_url=self.base_url,
            api_key=self.api_key or "unused",
            default_headers=self.headers,
            default_query=self.query_params,
            max_retries=0,
            # The body's idle timeout is ours (it counts data events only);
            # this read timeout must not fire before it.
            timeout=sdk.Timeout(max(self.request_timeout, self.stream_idle_timeout), connect=CONNECT_TIMEOUT),
        )

    async def warm(self) -> None:
        """Load the SDK ahead of the first turn. A failure is logged, not
        raised: the turn that needs the client tries again and reports it."""
        try:
            await self.sdk()
        except Exception as exc:  # best effort: a warm-up never takes the server down
            log.warning("could not load the model client ahead of the first turn: %s", exc)

    async def aclose(self) -> None:
        """Close the SDK client and its connections; the next request makes a new one."""
        sdk, self._sdk = self._sdk, None
        if sdk is not None:
            await sdk.close()


class Failure(msgspec.Struct, frozen=True):
    """What went wrong with one attempt, as the turn reports it.

    ``http_status`` is the status the original puts in its retry notice
    (None where it has none, e.g. for a 500); ``delay`` is a retry delay the
    server asked for; ``connection_failed`` marks a failure to reach the
    server at all, which may wait for the network without limit.
    """

    message: str
    codex_error_info: str | dict | None
    retryable: bool
    http_status: int | None = None
    delay: float | None = None
    connection_failed: bool = False


class StreamError(Exception):
    """The SSE stream broke: timed out, ended early or failed to read."""


async def stream_response(
    client: ModelClient,
    request: wire.ResponsesRequest,
    out: Outbox,
    *,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Stream one response into ``out``; see the module docstring.

    ``headers`` are added to this request only (e.g. ``session_id``).
    """
    body = wire.encode_request(request)
    request_headers = {"Accept": "text/event-stream", "Content-Type": "application/json", **(headers or {})}
    retries = waits = 0
    for attempt in itertools.count():
        failure = await _attempt(client, body, request_headers, out, attempt)
        if failure is None:
            return
        if failure.connection_failed and client.unbounded_connection_retries:
            waits += 1
            message = "Reconnecting... waiting for network"
            delay = client.connection_backoff(waits)
        elif failure.retryable and retries < client.stream_max_retries:
            retries += 1
            message = f"Reconnecting... {retries}/{client.stream_max_retries}"
            delay = failure.delay if failure.delay is not None else client.backoff(retries)
        else:
            await out.send(ModelFailed(failure.message, failure.codex_error_info))
            return
        info = {"responseStreamDisconnected": {"httpStatusCode": failure.http_status}}
        await out.send(ModelRetrying(retries, client.stream_max_retries, message, info, delay, failure.message))
        await trio.sleep(delay)


async def _attempt(
    client: ModelClient, body: bytes, headers: dict[str, Any], out: Outbox, attempt: int
) -> Failure | None:
    """One sampling attempt; None once ``response.completed`` was sent on."""
    try:
        sdk = await client.sdk()
    except OSError as exc:
        return classify(exc)
    except Exception as exc:  # a broken install: the turn fails, the thread goes on
        return Failure(f"could not load the model client (the openai SDK): {exc!r}; reinstall trio-codex",
                       "other", False)
    api = load_sdk()
    if client.api_key is None:
        headers = {**headers, "Authorization": api.omit}
    try:
        response = await _open(client, sdk, body, headers)
    except api.APIError as exc:
        return classify(exc)
    except RuntimeError:
        if not sdk.is_closed():
            raise
        # The server's shutdown closed the client under this request (the
        # SDK's worker-thread steps ignore cancellation): the turn is being
        # cancelled, and this checkpoint says so.
        await trio.lowlevel.checkpoint()
        return classify(StreamError("the model client was closed: the server is shutting down"))
    if client.rate_limits is not None:
        client.rate_limits.observe(response.headers)
    async with _closing(response), contextlib.aclosing(response.aiter_bytes()) as chunks:
        try:
            return await _read(client, chunks, out, attempt)
        finally:
            await _drain(chunks)


async def _read(client: ModelClient, chunks: AsyncIterator[bytes], out: Outbox, attempt: int) -> Failure | None:
    import httpx2

    decoder = wire.SSEDecoder()
    idle = client.stream_idle_timeout
    slack = idle * IDLE_SLACK
    # One cancel scope for the whole body, its deadline moved only when the
    # stream has eaten into the slack: a scope per read cost more than the
    # rest of a paced delta's handling here (bench/where_cpu.py).
    with trio.CancelScope(deadline=trio.current_time() + idle + slack) as watch:
        while True:
            try:
                chunk = await anext(chunks)
            except StopAsyncIteration:
                return classify(StreamError(decoder.end_error() or "stream closed before response.completed"))
            except httpx2.TimeoutException:
                break
            except httpx2.HTTPError:
                return classify(StreamError(_READ_ERROR))
            dispatched = decoder.dispatched
            events = decoder.feed(chunk)
            if decoder.dispatched != dispatched:
                now = trio.current_time()
                if watch.deadline < now + idle:
                    watch.deadline = now + idle + slack
            for index, event in enumerate(events):
                if isinstance(event, _ENDINGS):
                    if isinstance(event, wire.ResponseCompleted):
                        await _put(out, ModelEvents(attempt, tuple(events[: index + 1])), watch, idle + slack)
                        return None
                    if index:
                        await _put(out, ModelEvents(attempt, tuple(events[:index])), watch, idle + slack)
                    return classify(event)
            if events:
                await _put(out, ModelEvents(attempt, tuple(events)), watch, idle + slack)
    return classify(StreamError("idle timeout waiting for SSE"))


async def _put(out: Outbox, msg: ModelEvents, watch: trio.CancelScope, rearm: float) -> None:
    """Send ``msg`` on. A mailbox with room takes it at once; while ``out``
    has no room (or handles ``msg`` in this task, as the turn does), the
    idle clock stops: it times the model, not the turn taking its events.
    It restarts with ``rearm`` seconds (the timeout and its slack), so the
    next read need not move it again."""
    if type(out) is Mailbox and out.send_nowait(msg):
        return
    watch.deadline = math.inf
    try:
        await out.send(msg)
    finally:
        watch.deadline = trio.current_time() + rearm


_ENDINGS = (wire.ResponseCompleted, wire.ResponseFailed, wire.ResponseIncomplete)


async def _open(
    client: ModelClient, sdk: openai.AsyncOpenAI, body: bytes, headers: dict[str, Any]
) -> httpx2.Response:
    """POST the request; retry 5xx and network errors (not 429) as the original."""
    import httpx2

    api = load_sdk()
    attempt = 0
    while True:
        try:
            return await sdk.post(
                "/responses", cast_to=httpx2.Response, content=body, options={"headers": headers}, stream=True
            )
        except (api.APIStatusError, api.APIConnectionError) as exc:
            status = getattr(exc, "status_code", None)
            if attempt >= client.request_max_retries or (status is not None and status < 500):
                raise
            attempt += 1
            await trio.sleep(client.backoff(attempt))


@contextlib.asynccontextmanager
async def _closing(response: httpx2.Response) -> AsyncIterator[httpx2.Response]:
    try:
        yield response
    finally:
        # Closing must happen even when the turn is cancelled: it only drops
        # or returns the connection, so it is quick.
        with trio.CancelScope(shield=True):
            await response.aclose()


async def _drain(chunks: AsyncIterator[bytes]) -> None:
    """Read the rest of the body, for at most :data:`DRAIN_TIMEOUT`.

    Reading to the end lets the connection be reused. It also leaves none
    of the HTTP client's nested body generators suspended: stopping early
    would leave them to the garbage collector (trio warns); a read that is
    cancelled instead, by the timeout or by the caller, unwinds them all.
    """
    import httpx2

    with trio.move_on_after(DRAIN_TIMEOUT):
        with contextlib.suppress(httpx2.HTTPError):
            async for _ in chunks:
                pass


# --- the failure table ---------------------------------------------------------------
#
# Traced against the original 0.169.0 through this project's scripted server,
# except where marked "(source)": those follow codex-rs and were not traced.

_RETRY_AFTER = re.compile(r"(?i)try again in\s*(\d+(?:\.\d+)?)\s*(s|ms|seconds?)")
_CONTEXT_WINDOW = (
    "Codex ran out of room in the model's context window. "
    "Start a new thread or clear earlier history before retrying."
)
_QUOTA = "Quota exceeded. Check your plan and billing details."
_USAGE_NOT_INCLUDED = "To use Codex with your ChatGPT plan, upgrade to Plus: https://chatgpt.com/explore/plus."
_USAGE_LIMIT = "You\u2019ve hit your usage limit. Try again later."
_OVERLOADED = "Selected model is at capacity. Please try a different model."
_CYBER_POLICY = "This request has been flagged for possible cybersecurity risk."
_BIO_POLICY = "This request has been flagged for possible biological risk."
_HIGH_DEMAND = "We\u2019re currently experiencing high demand, which may cause temporary errors."
_READ_ERROR = "Transport error: network error: error decoding response body"


def classify(cause: BaseException | wire.ResponseFailed | wire.ResponseIncomplete) -> Failure:
    """The one table from a failure's cause to what the turn reports.

    Causes: an SDK error from opening the request (status, timeout,
    connection), a :class:`StreamError` (idle timeout, early end, read error,
    bytes that are not UTF-8), a ``response.failed``/``response.incomplete``
    event, or the ``OSError`` of an SDK that could not be loaded.
    """
    if isinstance(cause, OSError):
        # Before openai is imported: importing it may be what failed.
        message = f"Connection failed: could not load the model client: {cause}"
        if descriptor_error(cause) is not None:
            message += _FD_HINT
        return Failure(message, {"httpConnectionFailed": {"httpStatusCode": None}}, True, connection_failed=True)
    api = load_sdk()

    def stream(message: str, delay: float | None = None) -> Failure:
        return Failure(f"stream disconnected before completion: {message}", "other", True, delay=delay)

    match cause:
        case wire.ResponseFailed(response=wire.Response(error=error)):
            if error is None:
                return stream("response.failed event received")  # (source)
            message = error.message or ""
            match error.code:
                case "context_length_exceeded":
                    return Failure(_CONTEXT_WINDOW, "contextWindowExceeded", False)
                case "insufficient_quota":
                    return Failure(_QUOTA, "usageLimitExceeded", False)
                case "usage_not_included":
                    return Failure(_USAGE_NOT_INCLUDED, "usageLimitExceeded", False)
                case "cyber_policy":
                    return Failure(message.strip() or _CYBER_POLICY, "cyberPolicy", False)
                case "bio_policy":
                    return Failure(message.strip() or _BIO_POLICY, "bioPolicy", False)
                case "invalid_prompt":
                    return Failure(message, "other", False)
                case "server_is_overloaded":
                    return Failure(_OVERLOADED, "serverOverloaded", False)
                case "rate_limit_exceeded" | "slow_down":
                    delay = _retry_after(message)
                    return Failure(f"rate limit exceeded: {message}", "rateLimitExceeded", True, delay=delay)
                case _:
                    return stream(message)
        case wire.ResponseIncomplete(response=wire.Response(incomplete_details=details)):
            reason = details.reason if details and details.reason else "unknown"
            return Failure(f"Incomplete response returned, reason: {reason}", "other", False)
        case StreamError():
            return stream(str(cause))
        case api.APIStatusError(status_code=status, response=response):
            return _classify_status(status, response)
        case api.APITimeoutError():
            return Failure("request timed out", "other", True)  # (source)
        case api.APIConnectionError():
            info = {"httpConnectionFailed": {"httpStatusCode": None}}
            message = "Connection failed: error sending request"
            if (under := descriptor_error(cause)) is not None:
                message += f": {under.strerror}{_FD_HINT}"
            return Failure(message, info, True, connection_failed=True)
    raise TypeError(f"classify() got {cause!r}: pass an SDK error, a StreamError or a failed/incomplete event")


#: What to do about an error that is the process running out of files.
_FD_HINT = " (out of file descriptors: close idle connections or raise the open-file limit)"


def _classify_status(status: int, response: httpx2.Response) -> Failure:
    body = response.text
    error = _error_object(body)
    code = error.get("code")
    if status == 400:
        # bio_policy is "other" in 0.169; 0.171 names it bioPolicy (a 0.169
        # client cannot parse that: its connection downgrades it).
        message = error.get("message")
        match code:
            case "context_length_exceeded":
                return Failure(_CONTEXT_WINDOW, "contextWindowExceeded", False)
            case "cyber_policy":
                return Failure(str(message or "").strip() or _CYBER_POLICY, "cyberPolicy", False)
            case "bio_policy":
                return Failure(str(message or "").strip() or _BIO_POLICY, "bioPolicy", False)
            case "invalid_prompt" if isinstance(message, str) and message:
                return Failure(message, "other", False)
        return Failure(body, "other", False)
    if status == 429:
        kind = error.get("type")
        if kind == "usage_limit_reached":
            return Failure(_USAGE_LIMIT, "usageLimitExceeded", False)
        if kind == "usage_not_included":
            return Failure(_USAGE_NOT_INCLUDED, "usageLimitExceeded", False)  # (source)
        message = f"exceeded retry limit, last status: {_status_line(status)}{_request_id(response)}"
        return Failure(message, {"responseTooManyFailedAttempts": {"httpStatusCode": status}}, False, status)
    if status == 500:
        return Failure(_HIGH_DEMAND, "internalServerError", True)
    if status == 503 and code in ("server_is_overloaded", "slow_down"):
        return Failure(_OVERLOADED, "serverOverloaded", False)
    message = _unexpected_status(status, body, error, response)
    return Failure(message, {"httpConnectionFailed": {"httpStatusCode": status}}, True, status)


def _unexpected_status(status: int, body: str, error: dict, response: httpx2.Response) -> str:
    message = error.get("message")
    if isinstance(message, str) and message.strip():
        detail = message.strip()
    else:
        detail = body.strip() or "Unknown error"
        if len(detail.encode()) > 1000:
            detail = detail.encode()[:1000].decode(errors="ignore") + "..."
    return f"unexpected status {_status_line(status)}: {detail}, url: {response.request.url}{_request_id(response)}"


def _status_line(status: int) -> str:
    try:
        return f"{status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def _request_id(response: httpx2.Response) -> str:
    request_id = response.headers.get("x-request-id") or response.headers.get("x-oai-request-id")
    return f", request id: {request_id}" if request_id else ""


def _error_object(body: str) -> dict:
    try:
        error = msgspec.json.decode(body).get("error")
    except (msgspec.DecodeError, AttributeError, RecursionError):
        return {}
    return error if isinstance(error, dict) else {}


def _retry_after(message: str) -> float | None:
    match = _RETRY_AFTER.search(message)
    if match is None:
        return None
    value, unit = float(match.group(1)), match.group(2).lower()
    return value / 1000 if unit == "ms" else value
