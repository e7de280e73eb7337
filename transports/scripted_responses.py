"""A scripted OpenAI Responses API server: trio + h11, many streams at once.

Tests, the bench and the built-in offline model provider (no API key) all talk
to this server exactly as they would to the real API: ``POST …/responses``
answers ``200 text/event-stream`` with chunked SSE frames, and
``GET …/models`` answers ``{"models": []}``. Everything else is a 404.

Each ``/responses`` request gets one :class:`Script`, chosen in this order:

1. the next script pushed with :meth:`ScriptedResponses.enqueue` (a FIFO, like
   the original's ``mount_sse_sequence``);
2. directives written in the last user message, when that message is the last
   input item (see below), so that black-box clients (the openai-codex SDK,
   the original binary, the bench) can drive the server with plain prompts;
3. otherwise an echo: the last user message comes back as the assistant
   message in ``deltas`` pieces; when the last input item is a tool output,
   the reply quotes it (``tool output: …``), which ends a tool round trip.

Directives
----------

A directive block is ``[[key=value flag …]]`` anywhere in the prompt;
blocks are removed from the echoed text, several blocks merge, and a block
that does not parse is ordinary text (so ``[[ -f x ]]`` stays bash). Values
are bare words or JSON strings (``text="two words"``).

===========================  ===============================================
``deltas=N``                 the reply message streams as N deltas (a text
                             shorter than N characters is repeated)
``text="…"``                 reply with this text instead of the echo
``delay_ms=N``               sleep N ms between deltas
``first_byte_ms=N``          sleep N ms before the response headers
``reasoning=N``              a reasoning item first, N summary deltas
``call=NAME {json}``         reply with a function call (arguments JSON,
                             default ``{}``); repeat for parallel calls
``custom=NAME "input"``      reply with a freeform (custom) tool call
``status=CODE``              answer HTTP CODE with an OpenAI-style error
                             body; ``message="…"``, ``code=…`` and
                             ``error_type=…`` fill it in
``disconnect_after=K``       drop the connection after K deltas (or before
                             ``response.completed`` if there are fewer)
``hang`` / ``hang=K``        send nothing more after K deltas (default 0),
                             keeping the socket open: for idle timeouts
``keepalive_ms=N``           while hanging, an SSE comment every N ms (data
                             that is no event, as proxies send)
``bad_utf8``                 after ``response.created``, a text delta whose
                             data holds a byte that is not UTF-8
``deep=N``                   after ``response.created``, the message
                             ``deep`` whose text part nests N arrays in an
                             extra field (N + 4 levels in all)
``fail=CODE``                end with ``response.failed {code, message}``
``incomplete=REASON``        end with ``response.incomplete {reason}``
``no_completed``             end the body cleanly without
                             ``response.completed``
``times=N``                  the failure directives above (status,
                             disconnect_after, hang, fail, incomplete,
                             no_completed, bad_utf8, deep) apply
                             to the first N requests with the same
                             ``(prompt_cache_key, prompt text)`` only, so a
                             retried turn then succeeds
``used_percent=N``            the response headers report N % of a
                             5-hour usage window used
                             (``x-codex-primary-*``, as ChatGPT's backend)
``input_tokens=N`` …         usage numbers: ``input_tokens``,
                             ``cached_tokens``, ``output_tokens``,
                             ``reasoning_tokens``
===========================  ===============================================

Examples: ``[[deltas=1000 delay_ms=5]] go``, ``[[status=500 times=1]] hi``,
``[[call=shell_command {"command":"echo hi"}]]``,
``[[fail=context_length_exceeded]]``, ``[[hang]]``.

``fail`` and ``incomplete`` send ``response.created`` and then their event,
with no output items; ``disconnect_after`` and ``hang`` cut the normal output;
``bad_utf8`` and ``deep`` come before it.

Streams look like the API's: ``response.created``, then per item
``output_item.added``, its deltas and ``output_item.done``, then
``response.completed`` with usage. Frames are rendered with the shared wire
types and written up to :data:`FRAMES_PER_WRITE` per ``send_all``, so the
server is never the bottleneck of a load test; with ``delay_ms`` each delta
is written on its own.

Run it as a process for the bench::

    python -m trio_codex.transports.scripted_responses [--host H] [--port P]
        [--deltas N] [--delay-ms N] [--ignore-stdin]

It prints ``LISTENING http://H:P/v1`` and serves until SIGTERM, SIGINT or
the end of its stdin.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import http
import itertools
import json
import re
import signal
import sys
import time
from collections.abc import Generator, Iterator
from typing import Any, TypeGuard

import h11
import msgspec
import trio

from ..runtime.protocol import responses as wire

__all__ = [
    "FRAMES_PER_WRITE",
    "CustomToolCall",
    "FunctionCall",
    "HttpError",
    "Message",
    "Reasoning",
    "RecordedRequest",
    "Script",
    "ScriptedResponses",
    "main",
    "parse_directives",
    "split_text",
]

FRAMES_PER_WRITE = 64
"""SSE frames joined into one chunk and one ``send_all`` when not throttled."""

_READ_SIZE = 65536


# --- scripts -----------------------------------------------------------------


class Message(msgspec.Struct, frozen=True):
    """An assistant message streamed as these text deltas."""

    deltas: tuple[str, ...]

    @classmethod
    def of(cls, text: str, deltas: int = 1) -> Message:
        return cls(split_text(text, deltas))


class Reasoning(msgspec.Struct, frozen=True):
    """A reasoning item; each inner tuple is one summary part's deltas."""

    summary: tuple[tuple[str, ...], ...]

    @classmethod
    def of(cls, *parts: str, deltas: int = 1) -> Reasoning:
        return cls(tuple(split_text(part, deltas) for part in parts))


class FunctionCall(msgspec.Struct, frozen=True):
    """A function tool call; the server numbers ``call_id`` when it is None."""

    name: str
    arguments: str = "{}"
    call_id: str | None = None
    #: An MCP tool's namespace (``mcp__<server>``), None for a plain function.
    namespace: str | None = None

    @classmethod
    def named(cls, name: str, arguments: str) -> FunctionCall:
        """``mcp__<server>__<tool>`` calls the tool in the server's namespace,
        as the original's mock directive does; any other name is a function."""
        if name.startswith("mcp__") and "__" in name[5:]:
            server, tool = name[5:].split("__", 1)
            return cls(tool, arguments, namespace=f"mcp__{server}")
        return cls(name, arguments)


class CustomToolCall(msgspec.Struct, frozen=True):
    """A freeform tool call (such as apply_patch's), its input in one delta."""

    name: str
    input: str
    call_id: str | None = None


class HttpError(msgspec.Struct, frozen=True):
    """Answer with this status and ``{"error": {message, type, param, code}}``.

    ``message`` defaults to the status phrase; ``type`` to
    ``invalid_request_error`` for 4xx and ``server_error`` for 5xx.
    """

    status: int
    message: str | None = None
    code: str | None = None
    type: str | None = None


OutputStep = Message | Reasoning | FunctionCall | CustomToolCall


class Script(msgspec.Struct, frozen=True, kw_only=True):
    """What the server does with one ``/responses`` request.

    The stream carries ``output`` in order and ends with
    ``response.completed``, unless ``fail`` or ``incomplete`` names another
    ending, ``omit_completed`` ends the body without one, or
    ``disconnect_after``/``hang_after`` cut it after that many deltas; a
    hanging stream sends an SSE comment every ``keepalive`` seconds when it
    is set. ``extra_frames`` are written as they are right after
    ``response.created`` (malformed or hostile frames). ``http_error``
    replaces the stream. ``usage`` defaults to counts derived from the
    request size and the deltas sent.
    """

    output: tuple[OutputStep, ...] = ()
    http_error: HttpError | None = None
    first_byte_delay: float = 0.0
    delta_delay: float = 0.0
    disconnect_after: int | None = None
    hang_after: int | None = None
    keepalive: float = 0.0
    extra_frames: tuple[bytes, ...] = ()
    fail: wire.ResponseError | None = None
    incomplete: str | None = None
    omit_completed: bool = False
    usage: wire.TokenUsage | None = None
    #: Extra response headers of the stream.
    headers: tuple[tuple[str, str], ...] = ()


class RecordedRequest(msgspec.Struct, frozen=True):
    """One request as the server saw it: ``headers`` has lower-case names,
    ``body`` is the decoded JSON (None when it is not JSON or there is none)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any


def split_text(text: str, n: int) -> tuple[str, ...]:
    """``text`` in ``n`` non-empty pieces of near-equal length.

    A text shorter than ``n`` characters (or empty) is first repeated until it
    is ``n`` characters long, so that any delta count can be asked for.
    """
    n = max(n, 1)
    if len(text) < n:
        text = ((text or ".") * n)[:n]
    size, extra = divmod(len(text), n)
    pieces = []
    start = 0
    for i in range(n):
        end = start + size + (i < extra)
        pieces.append(text[start:end])
        start = end
    return tuple(pieces)


# --- directives ------------------------------------------------------------------

_KEY = re.compile(r"[a-z_][a-z0-9_]*")
_BARE = re.compile(r"[^\s\]]+")
_SPACE = re.compile(r"\s*")
_JSON = json.JSONDecoder()
_INT_KEYS = frozenset(
    {
        "deltas",
        "reasoning",
        "status",
        "times",
        "disconnect_after",
        "input_tokens",
        "cached_tokens",
        "output_tokens",
        "reasoning_tokens",
        "deep",
        "used_percent",
    }
)
_FLOAT_KEYS = frozenset({"delay_ms", "first_byte_ms", "keepalive_ms"})
_STR_KEYS = frozenset({"text", "message", "code", "error_type", "fail", "incomplete"})
_FAILURE_KEYS = ("status", "disconnect_after", "hang", "fail", "incomplete", "no_completed", "bad_utf8", "deep")
_FLAGS = {"hang": 0, "no_completed": True, "bad_utf8": True}


def parse_directives(text: str) -> tuple[dict[str, Any], str]:
    """The directives in ``text``, and ``text`` without their blocks.

    ``call`` and ``custom`` map to lists of ``(name, argument)`` pairs; every
    other key maps to its last value.
    """
    directives: dict[str, Any] = {}
    plain = []
    pos = 0
    while (start := text.find("[[", pos)) != -1:
        parsed = _parse_block(text, start + 2)
        if parsed is None:
            plain.append(text[pos : start + 2])
            pos = start + 2
            continue
        entries, end = parsed
        for key, value in entries:
            if key in ("call", "custom"):
                directives.setdefault(key, []).append(value)
            else:
                directives[key] = value
        plain.append(text[pos:start])
        pos = end
    plain.append(text[pos:])
    return directives, "".join(plain)


def _skip_space(text: str, i: int) -> int:
    """The index of the first non-blank at or after ``i``."""
    blanks = _SPACE.match(text, i)
    assert blanks is not None  # `\s*` matches everywhere
    return blanks.end()


def _parse_block(text: str, i: int) -> tuple[list[tuple[str, Any]], int] | None:
    entries: list[tuple[str, Any]] = []
    while True:
        i = _skip_space(text, i)
        if text.startswith("]]", i):
            return (entries, i + 2) if entries else None
        match = _KEY.match(text, i)
        if match is None:
            return None
        key, i = match.group(), match.end()
        if key in ("call", "custom"):
            name = _BARE.match(text, i + 1) if text.startswith("=", i) else None
            if name is None:
                return None
            i = name.end()
            j = _skip_space(text, i)
            value: Any = None
            if text[j : j + 1] in ("{", "[", '"'):
                try:
                    value, i = _JSON.raw_decode(text, j)
                except (ValueError, RecursionError):  # too deep for json: write it as a string
                    return None
            if key == "call":
                # Arguments travel as the JSON text written, a string as its value.
                arguments = value if isinstance(value, str) else text[j:i] if value is not None else "{}"
                entries.append((key, (name.group(), arguments)))
            elif isinstance(value, str):
                entries.append((key, (name.group(), value)))
            else:
                return None
        elif text.startswith("=", i):
            if text.startswith('"', i + 1):
                try:
                    raw, i = _JSON.raw_decode(text, i + 1)
                except ValueError:
                    return None
            else:
                bare = _BARE.match(text, i + 1)
                if bare is None:
                    return None
                raw, i = bare.group(), bare.end()
            try:
                if key in _INT_KEYS or key == "hang":
                    value = int(raw)
                elif key in _FLOAT_KEYS:
                    value = float(raw)
                elif key in _STR_KEYS:
                    value = str(raw)
                else:
                    return None
            except ValueError:
                return None
            entries.append((key, value))
        elif key in _FLAGS:
            entries.append((key, _FLAGS[key]))
        else:
            return None


# --- the server ------------------------------------------------------------------


class ScriptedResponses:
    """A Responses API server that plays scripts; see the module docstring.

    ``deltas`` and ``delta_delay`` shape the default echo reply; the last
    ``record_limit`` requests are kept in :attr:`requests`.
    """

    def __init__(
        self,
        *,
        deltas: int = 4,
        delta_delay: float = 0.0,
        model: str = "scripted",
        record_limit: int = 1000,
    ) -> None:
        self.deltas = deltas
        self.delta_delay = delta_delay
        self.model = model
        self.requests: collections.deque[RecordedRequest] = collections.deque(maxlen=record_limit)
        self.port: int | None = None
        self._host = "127.0.0.1"
        self._queue: collections.deque[Script] = collections.deque()
        self._failures: collections.Counter[tuple[Any, str]] = collections.Counter()
        self._ids = itertools.count(1)

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT/v1``, the provider base URL for clients."""
        if self.port is None:
            raise RuntimeError("the server has no port yet: await nursery.start(server.serve) first")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}/v1"

    def enqueue(self, *scripts: Script) -> None:
        """Play these scripts, in order, for the next ``/responses`` requests."""
        self._queue.extend(scripts)

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``host:port`` and serve until cancelled.

        Use ``port = await nursery.start(server.serve)``: it reports the bound
        port once the server accepts connections.
        """
        listeners = await trio.open_tcp_listeners(port, host=host)
        self._host = host
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._serve_connection, listeners)

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        async with stream:
            try:
                while await self._serve_request(conn, stream):
                    conn.start_next_cycle()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the client went away

    async def _serve_request(self, conn: h11.Connection, stream: trio.SocketStream) -> bool:
        """Answer one request; return whether the connection stays open."""
        try:
            request = await _receive(conn, stream)
            if type(request) is not h11.Request:
                return False
            body = bytearray()
            while type(event := await _receive(conn, stream)) is h11.Data:
                body += event.data
        except h11.RemoteProtocolError as exc:
            if conn.our_state is h11.SEND_RESPONSE:
                await _send_json(conn, stream, exc.error_status_hint, _error_body(str(exc)))
            return False
        method = request.method.decode("ascii")
        path, _, query = request.target.decode("ascii", "replace").partition("?")
        headers = {name.decode("ascii"): value.decode("latin-1") for name, value in request.headers}
        record = RecordedRequest(method, path, query, headers, None)
        keep_open = True
        if method == "POST" and path.endswith("/responses"):
            keep_open = await self._respond(conn, stream, record, bytes(body))
        elif method == "GET" and path.endswith("/models"):
            self.requests.append(record)
            await _send_json(conn, stream, 200, b'{"models":[]}')
        else:
            message = f"no route for {method} {path}: this server answers POST .../responses and GET .../models"
            await _send_json(conn, stream, 404, _error_body(message))
        return keep_open and conn.our_state is h11.DONE and conn.their_state is h11.DONE

    async def _respond(
        self, conn: h11.Connection, stream: trio.SocketStream, record: RecordedRequest, body: bytes
    ) -> bool:
        try:
            payload = msgspec.json.decode(body)
        except msgspec.DecodeError as exc:
            self.requests.append(record)
            await _send_json(conn, stream, 400, _error_body(f"the request body is not valid JSON: {exc}"))
            return True
        self.requests.append(msgspec.structs.replace(record, body=payload))
        problem = _check_request(payload)
        if problem is not None:
            await _send_json(conn, stream, 400, _error_body(problem))
            return True
        script = self._select(payload)
        if script.first_byte_delay:
            await trio.sleep(script.first_byte_delay)
        if script.http_error is not None:
            error = script.http_error
            kind = error.type or ("invalid_request_error" if error.status < 500 else "server_error")
            message = error.message or _phrase(error.status)
            await _send_json(conn, stream, error.status, _error_body(message, type=kind, code=error.code))
            return True
        await stream.send_all(conn.send(h11.Response(status_code=200, headers=[*_SSE_HEADERS, *script.headers])))
        return await self._stream(conn, stream, script, payload["model"], len(body) // 4)

    def _select(self, payload: dict) -> Script:
        if self._queue:
            return self._queue.popleft()
        items = payload["input"]
        if isinstance(items, str):
            items = [{"role": "user", "content": items}]
        last = items[-1] if items else None
        if isinstance(last, dict) and last.get("type") in ("function_call_output", "custom_tool_call_output"):
            return self._reply(f"tool output: {_output_text(last.get('output'))}")
        if _is_user_message(last):
            text = _message_text(last)
            directives, plain = parse_directives(text)
            if directives:
                return self._directed(directives, plain, (payload.get("prompt_cache_key"), text))
            return self._reply(plain)
        user_messages = [item for item in items if _is_user_message(item)]
        return self._reply(parse_directives(_message_text(user_messages[-1]))[1] if user_messages else "")

    def _reply(self, text: str, deltas: int | None = None) -> Script:
        message = Message.of(text.strip() or "ok", self.deltas if deltas is None else deltas)
        return Script(output=(message,), delta_delay=self.delta_delay)

    def _directed(self, d: dict[str, Any], plain: str, key: tuple[Any, str]) -> Script:
        output: list[OutputStep] = []
        if "reasoning" in d:
            output.append(Reasoning.of("Thinking it through.", deltas=d["reasoning"]))
        output += [FunctionCall.named(name, arguments) for name, arguments in d.get("call", ())]
        output += [CustomToolCall(name, input) for name, input in d.get("custom", ())]
        if "call" not in d and "custom" not in d:
            output += self._reply(d.get("text", plain), d.get("deltas")).output
        usage = None
        if any(name in d for name in ("input_tokens", "cached_tokens", "output_tokens", "reasoning_tokens")):
            tokens = [d.get(name, 0) for name in ("input_tokens", "cached_tokens", "output_tokens", "reasoning_tokens")]
            usage = wire.TokenUsage(tokens[0], tokens[1], tokens[2], tokens[3], total_tokens=tokens[0] + tokens[2])
        script = Script(
            output=tuple(output),
            first_byte_delay=d.get("first_byte_ms", 0.0) / 1000,
            delta_delay=d["delay_ms"] / 1000 if "delay_ms" in d else self.delta_delay,
            keepalive=d.get("keepalive_ms", 0.0) / 1000,
            usage=usage,
            headers=_usage_headers(d["used_percent"]) if "used_percent" in d else (),
        )
        if not any(name in d for name in _FAILURE_KEYS):
            return script
        if "times" in d:
            if self._failures[key] >= d["times"]:
                return script
            self._failures[key] += 1
        extra: tuple[bytes, ...] = (_BAD_UTF8_FRAME,) if "bad_utf8" in d else ()
        if "deep" in d:
            extra += (_deep_frame(d["deep"]),)
        script = msgspec.structs.replace(script, extra_frames=extra)
        if "status" in d:
            error = HttpError(d["status"], d.get("message"), d.get("code"), d.get("error_type"))
            return msgspec.structs.replace(script, http_error=error)
        if "fail" in d:
            message = d.get("message") or _FAILURE_MESSAGES.get(d["fail"], f"scripted failure: {d['fail']}")
            return msgspec.structs.replace(script, output=(), fail=wire.ResponseError(d["fail"], message))
        if "incomplete" in d:
            return msgspec.structs.replace(script, output=(), incomplete=d["incomplete"])
        if "no_completed" in d:
            return msgspec.structs.replace(script, omit_completed=True)
        return msgspec.structs.replace(script, disconnect_after=d.get("disconnect_after"), hang_after=d.get("hang"))

    async def _stream(
        self, conn: h11.Connection, stream: trio.SocketStream, script: Script, model: str, input_tokens: int
    ) -> bool:
        """Send the stream's frames; return False if the script cut it short."""
        cut = script.disconnect_after if script.disconnect_after is not None else script.hang_after
        pending: list[bytes] = []
        deltas = 0
        for frame, kind in self._frames(script, model, input_tokens):
            if cut is not None and (kind is _TERMINAL or kind is _DELTA and deltas == cut):
                break
            if kind is _DELTA:
                if script.delta_delay and deltas:
                    await _flush(conn, stream, pending)
                    await trio.sleep(script.delta_delay)
                deltas += 1
            pending.append(frame)
            if len(pending) >= FRAMES_PER_WRITE:
                await _flush(conn, stream, pending)
        else:
            await stream.send_all(conn.send(h11.Data(data=b"".join(pending))) + conn.send(h11.EndOfMessage()))
            return True
        await _flush(conn, stream, pending)
        if script.hang_after is not None:
            async with trio.open_nursery() as nursery:
                if script.keepalive:
                    nursery.start_soon(_send_keepalives, conn, stream, script.keepalive)
                await _until_closed(stream)
                nursery.cancel_scope.cancel()
        return False

    def _frames(self, script: Script, model: str, input_tokens: int) -> Iterator[tuple[bytes, object]]:
        """Every SSE frame of the stream, each tagged plain, delta or terminal."""
        sequence = itertools.count()
        response = wire.Response(
            id=f"resp_{next(self._ids)}", created_at=int(time.time()), model=model, status="in_progress"
        )
        yield _frame(wire.ResponseCreated(response=response, sequence_number=next(sequence)))
        for extra in script.extra_frames:
            yield extra, _PLAIN
        done = []
        deltas = collections.Counter[type]()
        for index, step in enumerate(script.output):
            item = yield from self._item_frames(step, index, sequence, deltas)
            raw = _raw(item)
            done.append(raw)
            yield _frame(wire.OutputItemDone(item=raw, output_index=index, sequence_number=next(sequence)))
        if script.omit_completed:
            return
        output_tokens = deltas[Message] + deltas[Reasoning]
        usage = script.usage or wire.TokenUsage(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            reasoning_output_tokens=deltas[Reasoning],
            total_tokens=input_tokens + output_tokens,
        )
        final = msgspec.structs.replace(response, output=tuple(done), usage=usage.to_usage())
        replace = msgspec.structs.replace
        event: wire.ResponseFailed | wire.ResponseIncomplete | wire.ResponseCompleted
        if script.fail is not None:
            failed = replace(final, status="failed", usage=None, error=script.fail)
            event = wire.ResponseFailed(response=failed, sequence_number=next(sequence))
        elif script.incomplete is not None:
            details = wire.IncompleteDetails(script.incomplete)
            incomplete = replace(final, status="incomplete", incomplete_details=details)
            event = wire.ResponseIncomplete(response=incomplete, sequence_number=next(sequence))
        else:
            event = wire.ResponseCompleted(response=replace(final, status="completed"), sequence_number=next(sequence))
        yield _frame(event, _TERMINAL)

    def _item_frames(
        self, step: OutputStep, index: int, sequence: Iterator[int], deltas: collections.Counter[type]
    ) -> Generator[tuple[bytes, object], None, msgspec.Struct]:
        """The frames of one output item up to its done event; returns the item."""
        number = next(self._ids)
        added: msgspec.Struct
        delta: wire.ResponsesEvent
        match step:
            case Message(texts):
                item_id = f"msg_{number}"
                added = wire.MessageItem("assistant", (), id=item_id, status="in_progress")
                yield _frame(wire.OutputItemAdded(item=_raw(added), output_index=index, sequence_number=next(sequence)))
                for text in texts:
                    delta = wire.OutputTextDelta(
                        delta=text, item_id=item_id, output_index=index, sequence_number=next(sequence)
                    )
                    yield _frame(delta, _DELTA)
                deltas[Message] += len(texts)
                content = (wire.OutputText("".join(texts), annotations=()),)
                return msgspec.structs.replace(added, content=content, status="completed")
            case Reasoning(summary):
                item_id = f"rs_{number}"
                added = wire.ReasoningItem((), id=item_id)
                yield _frame(wire.OutputItemAdded(item=_raw(added), output_index=index, sequence_number=next(sequence)))
                for part, texts in enumerate(summary):
                    yield _frame(
                        wire.ReasoningSummaryPartAdded(
                            summary_index=part, item_id=item_id, output_index=index, sequence_number=next(sequence)
                        )
                    )
                    for text in texts:
                        delta = wire.ReasoningSummaryTextDelta(
                            delta=text,
                            summary_index=part,
                            item_id=item_id,
                            output_index=index,
                            sequence_number=next(sequence),
                        )
                        yield _frame(delta, _DELTA)
                    deltas[Reasoning] += len(texts)
                return msgspec.structs.replace(added, summary=tuple(wire.SummaryText("".join(t)) for t in summary))
            case FunctionCall(name, arguments, call_id, namespace):
                added = wire.FunctionCallItem(
                    call_id or f"call_{number}", name, "", id=f"fc_{number}", namespace=namespace,
                    status="in_progress"
                )
                yield _frame(wire.OutputItemAdded(item=_raw(added), output_index=index, sequence_number=next(sequence)))
                return msgspec.structs.replace(added, arguments=arguments, status="completed")
            case CustomToolCall(name, input, call_id):
                item_id = f"ctc_{number}"
                added = wire.CustomToolCallItem(call_id or f"call_{number}", name, "", id=item_id, status="in_progress")
                yield _frame(wire.OutputItemAdded(item=_raw(added), output_index=index, sequence_number=next(sequence)))
                delta = wire.CustomToolCallInputDelta(
                    delta=input, item_id=item_id, output_index=index, sequence_number=next(sequence)
                )
                yield _frame(delta, _DELTA)
                return msgspec.structs.replace(added, input=input, status="completed")
        raise TypeError(f"a script step must be a Message, Reasoning, FunctionCall or CustomToolCall, not {step!r}")


_PLAIN, _DELTA, _TERMINAL = object(), object(), object()
_SSE_HEADERS = [("content-type", "text/event-stream"), ("cache-control", "no-cache")]


def _usage_headers(percent: int) -> tuple[tuple[str, str], ...]:
    """A usage window as ChatGPT's backend reports it: 5 hours, resetting
    in one."""
    return (("x-codex-primary-used-percent", str(percent)), ("x-codex-primary-window-minutes", "300"),
            ("x-codex-primary-reset-at", str(int(time.time()) + 3600)))
_FAILURE_MESSAGES = {
    "context_length_exceeded": "Your input exceeds the context window of this model. Please adjust your input and try again.",
    "insufficient_quota": "You exceeded your current quota, please check your plan and billing details.",
    "rate_limit_exceeded": "Rate limit reached for requests. Please try again in 0.1s.",
    "server_is_overloaded": "The server is overloaded. Please try again later.",
}
_encode = msgspec.json.encode
_BAD_UTF8_FRAME = (
    b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"\xff",'
    b'"item_id":"msg_bad","output_index":0,"content_index":0,"sequence_number":1}\n\n'
)
_KEEPALIVE = b": keepalive\n\n"


def _deep_frame(depth: int) -> bytes:
    """An ``output_item.done`` with an assistant message ``deep`` whose text
    part carries an extra field nesting ``depth`` arrays (``depth`` + 4
    levels in all)."""
    nested = b"[" * depth + b"]" * depth
    return (
        b'event: response.output_item.done\ndata: {"type":"response.output_item.done","output_index":0,'
        b'"sequence_number":1,"item":{"type":"message","role":"assistant","id":"msg_deep","content":'
        b'[{"type":"output_text","text":"deep","annotations":[],"nested":' + nested + b"}]}}\n\n"
    )


def _frame(event: wire.ResponsesEvent, kind: object = _PLAIN) -> tuple[bytes, object]:
    return wire.render_event(event), kind


def _raw(item: msgspec.Struct) -> msgspec.Raw:
    return msgspec.Raw(_encode(item))


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def _check_request(payload: Any) -> str | None:
    """Why the body is not a streaming Responses request, or None if it is."""
    if not isinstance(payload, dict):
        return "the request body must be a JSON object"
    if not isinstance(payload.get("model"), str):
        return "missing required parameter: 'model' (a string)"
    if not isinstance(payload.get("input"), (str, list)):
        return "missing required parameter: 'input' (a string or an array of items)"
    if payload.get("stream") is not True:
        return "this server only streams: send \"stream\": true"
    return None


def _is_user_message(item: Any) -> TypeGuard[dict[str, Any]]:
    return isinstance(item, dict) and item.get("role") == "user" and item.get("type", "message") == "message"


def _message_text(item: dict) -> str:
    content = item.get("content")
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return "".join(
        part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)
    )


def _output_text(output: Any) -> str:
    if isinstance(output, str):
        return output
    if isinstance(output, list) and all(isinstance(part, dict) for part in output):
        return "".join(part.get("text", "") for part in output)
    return json.dumps(output)


def _error_body(message: str, *, type: str = "invalid_request_error", code: str | None = None) -> bytes:
    return _encode({"error": {"message": message, "type": type, "param": None, "code": code}})


async def _receive(conn: h11.Connection, stream: trio.SocketStream) -> Any:
    while (event := conn.next_event()) is h11.NEED_DATA:
        conn.receive_data(await stream.receive_some(_READ_SIZE))
    return event


async def _send_json(conn: h11.Connection, stream: trio.SocketStream, status: int, body: bytes) -> None:
    headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
    await stream.send_all(
        conn.send(h11.Response(status_code=status, headers=headers))
        + conn.send(h11.Data(data=body))
        + conn.send(h11.EndOfMessage())
    )


async def _send_keepalives(conn: h11.Connection, stream: trio.SocketStream, interval: float) -> None:
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        while True:
            await trio.sleep(interval)
            await stream.send_all(conn.send(h11.Data(data=_KEEPALIVE)))


async def _until_closed(stream: trio.SocketStream) -> None:
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        while await stream.receive_some(_READ_SIZE):
            pass


async def _flush(conn: h11.Connection, stream: trio.SocketStream, pending: list[bytes]) -> None:
    if pending:
        await stream.send_all(conn.send(h11.Data(data=b"".join(pending))))
        pending.clear()


# --- command line -------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    """``python -m trio_codex.transports.scripted_responses``: serve until told to stop."""
    parser = argparse.ArgumentParser(
        prog="python -m trio_codex.transports.scripted_responses",
        description="Serve scripted OpenAI Responses API streams (see the module docstring for directives).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--deltas", type=int, default=4, help="deltas per echoed reply")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="delay between deltas")
    parser.add_argument("--ignore-stdin", action="store_true", help="do not stop at the end of stdin")
    args = parser.parse_args(argv)
    trio.run(_main, args)


async def _main(args: argparse.Namespace) -> None:
    server = ScriptedResponses(deltas=args.deltas, delta_delay=args.delay_ms / 1000)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve, args.host, args.port)
            print(f"LISTENING {server.base_url}", flush=True)
            if not args.ignore_stdin:
                nursery.start_soon(_cancel_at_stdin_eof, nursery.cancel_scope)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


async def _cancel_at_stdin_eof(scope: trio.CancelScope) -> None:
    await trio.to_thread.run_sync(_read_until_eof, abandon_on_cancel=True)
    scope.cancel()


def _read_until_eof() -> None:
    while sys.stdin.buffer.read1(_READ_SIZE):  # type: ignore[union-attr]  # a BufferedReader; typeshed says BinaryIO
        pass


if __name__ == "__main__":
    main()
