"""A typed, trio-native client of the app-server protocol: one class, any
transport.

:class:`Client` speaks JSON-RPC over a :class:`~.stream.FrameStream`, and
three class methods give it one: :meth:`Client.in_process` (an embedded
:class:`~.embed.Server`, over the memory transport: no socket),
:meth:`Client.spawn` (a child app server over stdio, ours or the
original's) and :meth:`Client.websocket` (a ``ws://`` URL, with a bearer
token). The methods are the same whichever way it came.

- Requests return the wire Structs of :mod:`.protocol.v2` (params are checked
  against the method table's Structs before they are sent).
- A turn (:meth:`Client.turn`) is an ``async with`` and an async iterator of
  typed notifications (the v2 Structs; :class:`Notification` for a method
  without one); :meth:`TurnStream.result` returns its final text and usage.
  Leaving the ``async with`` before the turn completes interrupts it.
- Server requests (approvals, elicitations) go to the ``on_request``
  callback, whose return value is the answer; without one they are yielded
  by the turn as :class:`ServerRequest` events, to :meth:`~ServerRequest.respond`.
- A refused request raises :class:`CodexError` with the JSON-RPC code and
  ``codex_error_info``. Every wait is bounded (``request_timeout``,
  ``event_timeout``).
- The wire level, for proxies, recorders and tests of the protocol itself:
  :meth:`Client.exchange` returns the whole :class:`Response` (an error body
  included) for a request with an id of the caller's choosing;
  :meth:`Client.send` sends any message as is and :meth:`Client.send_frame`
  unchecked bytes; ``tap`` sees every frame the server sends, in order,
  before it is routed; an answer to a request nobody awaits (sent with
  :meth:`Client.send`) is an event too (a :class:`Response`).

The errors and the events, with the tables that decode them, are in
:mod:`.client_events`; the names a user needs are importable from here.

The transports are imported by the class methods that need them, so that a
client over a stream it already has (``trio-codex exec`` reaching a daemon)
imports no server.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
import trio

from .protocol.methods import METHODS
from .protocol.v2.command import CommandExecResponse
from .protocol.v2.initialize import InitializeResponse
from .protocol.v2.item import AgentMessageItem, ItemCompleted, TextInput, UserInput
from .protocol.v2.models import AccountReadResponse, ModelListResponse
from .protocol.v2.thread import (
    ThreadListResponse,
    ThreadLoadedListResponse,
    ThreadReadResponse,
    ThreadStartResponse,
)
from .protocol.v2.turn import (
    ThreadTokenUsage,
    ThreadTokenUsageUpdated,
    Turn,
    TurnCompleted,
    TurnStartResponse,
    TurnSteerResponse,
)
from .client_events import (
    SERVER_REQUESTS,
    ClientClosed,
    CodexError,
    Event,
    Notification,
    RequestHandler,
    RequestTimeout,
    Response,
    ServerRequest,
    Tap,
    TurnFailed,
    TurnResult,
    decode,
    notification,
    thread_of,
)
from .kernel.errors import unwrapped
from .protocol.jsonrpc import ErrorObject, RequestId
from .kernel.stream import FrameStream, TransportClosed

if TYPE_CHECKING:
    from .embed import Server

__all__ = [
    "Client", "ClientClosed", "CodexError", "Notification", "RequestTimeout", "Response", "ServerRequest",
    "TurnFailed", "TurnResult", "TurnStream",
]

#: Bound on the answer to one request.
REQUEST_TIMEOUT = 60.0
#: Bound on the wait for a turn's next event (a model stream that stalls
#: longer than this is the server's to time out first).
EVENT_TIMEOUT = 600.0
#: Events queued for one turn before the reader waits for its consumer.
TURN_QUEUE = 4096
#: How long leaving a turn early may spend interrupting it.
INTERRUPT_TIMEOUT = 5.0

T = TypeVar("T")


def _params(method: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """``given`` (snake_case, ``None`` = absent) as the method's camelCase
    params, checked against its params Struct before anything is sent
    (``msgspec.ValidationError`` names a wrong field)."""
    spec = METHODS[method].params if method in METHODS else None
    given = {k: v for k, v in given.items() if v is not None}
    if spec is None:
        return msgspec.to_builtins(given)
    names = dict(zip(spec.__struct_fields__, spec.__struct_encode_fields__))
    params = {names.get(k, k): v for k, v in msgspec.to_builtins(given).items()}
    msgspec.convert(params, spec)
    return params


class _Envelope(msgspec.Struct):
    """One inbound message; its payload is decoded later, straight into the
    Struct its method calls for (no dict in between)."""

    id: int | str | None | msgspec.UnsetType = msgspec.UNSET
    method: str | msgspec.UnsetType = msgspec.UNSET
    params: msgspec.Raw = msgspec.Raw()
    result: msgspec.Raw = msgspec.Raw()
    error: ErrorObject | msgspec.UnsetType = msgspec.UNSET


_ENVELOPE = msgspec.json.Decoder(_Envelope)


class Client:
    """One protocol session. Make it with :meth:`in_process`, :meth:`spawn`,
    :meth:`websocket`, or :meth:`over` a stream you have; each is an
    ``async with`` that initializes the session and closes it on exit.
    A client made directly (``Client(stream)``) is live while :meth:`run`
    runs."""

    def __init__(self, stream: FrameStream, *, on_request: RequestHandler | None = None,
                 request_timeout: float = REQUEST_TIMEOUT, event_timeout: float = EVENT_TIMEOUT,
                 typed: bool = True, tap: Tap | None = None) -> None:
        self.stream = stream
        self.on_request = on_request
        #: False: every event is a :class:`Notification` of its JSON, for a
        #: consumer that forwards or renders the JSON as is (``exec``).
        self.typed = typed
        #: Called with each frame the server sends, in order, before it is
        #: routed (its exception ends the session): a wire log.
        self.tap = tap
        self.request_timeout = request_timeout
        self.event_timeout = event_timeout
        #: What ``initialize`` answered.
        self.server: InitializeResponse | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[RequestId, trio.MemorySendChannel[_Envelope]] = {}
        self._turns: dict[str, trio.MemorySendChannel[Event]] = {}
        self._watchers: list[trio.MemorySendChannel[Event]] = []
        self._sending = trio.Lock()
        self._nursery: trio.Nursery | None = None
        self._closed = False

    # --- ways to connect ------------------------------------------------------

    @classmethod
    @asynccontextmanager
    async def over(cls, stream: FrameStream, *, name: str = "trio_codex_client", version: str = "0.1.0",
                   experimental_api: bool = False, initialize: bool = True, **options: Any
                   ) -> AsyncIterator[Client]:
        """A session over ``stream``, initialized as client ``name``
        (``initialize=False``: not, for a caller that sends its own)."""
        client = cls(stream, **options)
        with unwrapped():
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.run)
                try:
                    if initialize:
                        await client.initialize(name, version, experimental_api=experimental_api)
                    yield client
                finally:
                    client._closed = True
                    # The reader stops first: closing under it would be its error.
                    nursery.cancel_scope.cancel()
                    with trio.CancelScope(shield=True), trio.move_on_after(INTERRUPT_TIMEOUT):
                        await stream.aclose()

    @classmethod
    @asynccontextmanager
    async def in_process(cls, server: Server, **options: Any) -> AsyncIterator[Client]:
        """A session with an embedded server, over the memory transport."""
        async with cls.over(await server.connect(), **options) as client:
            yield client

    @classmethod
    @asynccontextmanager
    async def spawn(cls, argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | Path | None = None,
                    stderr: int | None = None, **options: Any) -> AsyncIterator[Client]:
        """A session with an app server run as a child process over stdio:
        ``argv`` is its whole command (``["codex", "app-server"]``, or ours);
        ``stderr`` is inherited unless redirected. The child ends with the
        session (stdin closed, then killed if it lingers); while it runs it
        is ``client.stream.process``."""
        from ..transports.connect import spawn_stdio

        async with spawn_stdio(argv, env=env, cwd=cwd, stderr=stderr) as stream, cls.over(stream, **options) as client:
            yield client

    @classmethod
    @asynccontextmanager
    async def websocket(cls, url: str, *, token: str | None = None, **options: Any) -> AsyncIterator[Client]:
        """A session with an app server listening on a ``ws://`` URL;
        ``token`` is sent as ``Authorization: Bearer``."""
        from ..transports.connect import connect_websocket

        async with connect_websocket(url, token=token) as stream, cls.over(stream, **options) as client:
            yield client

    # --- requests ---------------------------------------------------------------

    async def request(self, method: str, params: Any = None) -> Any:
        """Send ``method`` with ``params`` (JSON, or a params Struct); return
        the result's JSON or raise :class:`CodexError`."""
        return decode(Any, self._result(method, await self._exchange(method, params)))

    async def exchange(self, method: str, params: Any = None, *, id: RequestId | None = None) -> Response:
        """Send ``method`` with ``params`` as request ``id`` (the next number
        when None) and return the whole answer, an error body included, as
        it came: the wire level, for a caller that checks the answer itself."""
        answer = await self._exchange(method, params, id)
        error = answer.error if answer.error is not msgspec.UNSET else None
        assert isinstance(answer.id, int | str)  # the reader routed it here by its id
        return Response(answer.id, decode(Any, answer.result), error)

    def next_id(self) -> int:
        """A fresh request id, for a caller that must know it before the
        answer comes (pass it to :meth:`exchange`)."""
        return next(self._ids)

    async def send(self, message: Mapping[str, Any]) -> None:
        """Send one message as is: a notification, an answer, or a request
        whose answer comes as a :class:`Response` event."""
        await self._send(message)

    async def send_frame(self, frame: bytes) -> None:
        """Send ``frame`` unchecked (the transport adds its delimiter; a
        websocket sends bytes that are not UTF-8 as a binary message): for
        tests of what a server does with malformed input."""
        async with self._sending:
            try:
                await self.stream.send_frames([frame])
            except TransportClosed:
                raise ClientClosed("send_frame") from None

    async def _exchange(self, method: str, params: Any, id: RequestId | None = None) -> _Envelope:
        """The request's answer, its payload undecoded."""
        if self._closed:
            raise ClientClosed(method)
        rid = next(self._ids) if id is None else id
        if rid in self._waiting:
            raise ValueError(f"request id {rid!r} is already awaiting its answer")
        send, receive = trio.open_memory_channel[_Envelope](1)
        self._waiting[rid] = send
        msg: dict[str, Any] = {"id": rid, "method": method}
        if params is not None:
            msg["params"] = params
        try:
            with trio.move_on_after(self.request_timeout):
                await self._send(msg)
                try:
                    return await receive.receive()
                except trio.EndOfChannel:
                    raise ClientClosed(method) from None
        finally:
            self._waiting.pop(rid, None)
        raise RequestTimeout(method, self.request_timeout)

    @staticmethod
    def _result(method: str, answer: _Envelope) -> msgspec.Raw:
        """The answer's result, or its error raised as :class:`CodexError`."""
        error = answer.error
        if error is not msgspec.UNSET:
            raise CodexError(method, error.code, error.message, error.data)
        return answer.result

    async def call(self, method: str, result_type: type[T], **params: Any) -> T:
        """``method`` with snake_case ``params`` (checked against its params
        Struct), its result decoded into ``result_type``."""
        return decode(result_type, self._result(method, await self._exchange(method, _params(method, params))))

    async def initialize(self, name: str, version: str, *, experimental_api: bool = False) -> InitializeResponse:
        params: dict[str, Any] = {"clientInfo": {"name": name, "version": version}}
        if experimental_api:
            params["capabilities"] = {"experimentalApi": True}
        self.server = decode(InitializeResponse, self._result("initialize", await self._exchange("initialize", params)))
        await self._send({"method": "initialized"})
        return self.server

    async def thread_start(self, **params: Any) -> ThreadStartResponse:
        """``thread/start``: ``cwd``, ``model``, ``approval_policy``, ``sandbox``, ..."""
        return await self.call("thread/start", ThreadStartResponse, **params)

    async def thread_resume(self, thread_id: str, **params: Any) -> ThreadStartResponse:
        return await self.call("thread/resume", ThreadStartResponse, thread_id=thread_id, **params)

    async def thread_fork(self, thread_id: str, **params: Any) -> ThreadStartResponse:
        return await self.call("thread/fork", ThreadStartResponse, thread_id=thread_id, **params)

    async def thread_list(self, **params: Any) -> ThreadListResponse:
        return await self.call("thread/list", ThreadListResponse, **params)

    async def thread_loaded_list(self, **params: Any) -> ThreadLoadedListResponse:
        return await self.call("thread/loaded/list", ThreadLoadedListResponse, **params)

    async def thread_read(self, thread_id: str, *, include_turns: bool = False) -> ThreadReadResponse:
        return await self.call("thread/read", ThreadReadResponse, thread_id=thread_id, include_turns=include_turns)

    async def thread_archive(self, thread_id: str) -> None:
        await self.call("thread/archive", dict, thread_id=thread_id)

    async def turn_start(self, thread_id: str, input: str | Sequence[UserInput], **params: Any) -> TurnStartResponse:
        """``turn/start`` alone; :meth:`turn` also follows its events."""
        return await self.call("turn/start", TurnStartResponse, thread_id=thread_id, input=_inputs(input), **params)

    async def turn_steer(self, thread_id: str, turn_id: str, input: str | Sequence[UserInput]) -> TurnSteerResponse:
        return await self.call("turn/steer", TurnSteerResponse, thread_id=thread_id, expected_turn_id=turn_id,
                               input=_inputs(input))

    async def turn_interrupt(self, thread_id: str, turn_id: str) -> None:
        await self.call("turn/interrupt", dict, thread_id=thread_id, turn_id=turn_id)

    async def model_list(self, **params: Any) -> ModelListResponse:
        return await self.call("model/list", ModelListResponse, **params)

    async def account_read(self) -> AccountReadResponse:
        return await self.call("account/read", AccountReadResponse)

    async def config_read(self, **params: Any) -> dict[str, Any]:
        """``config/read``: the effective config (``config``) and its origins."""
        return await self.call("config/read", dict, **params)

    async def command_exec(self, command: Sequence[str], **params: Any) -> CommandExecResponse:
        """``command/exec``: run ``command`` under the sandbox policy, buffered."""
        return await self.call("command/exec", CommandExecResponse, command=list(command), **params)

    # --- turns and events -----------------------------------------------------------

    @asynccontextmanager
    async def turn(self, thread_id: str, input: str | Sequence[UserInput], **params: Any
                   ) -> AsyncIterator[TurnStream]:
        """Start a turn and follow it: iterate the ``async with``'s value for
        its events, or await its :meth:`~TurnStream.result`. Leaving early
        interrupts the turn."""
        send, receive = trio.open_memory_channel[Event](TURN_QUEUE)
        # Subscribed before turn/start goes out: no event can slip past.
        self._turns[thread_id] = send
        stream = TurnStream(self, thread_id, receive, send)
        try:
            stream.turn = (await self.turn_start(thread_id, input, **params)).turn
            yield stream
        finally:
            if stream.turn is not None and not stream.done and not self._closed:
                # Interrupted, and followed to its end: the thread is idle again on return.
                with trio.CancelScope(shield=True), trio.move_on_after(INTERRUPT_TIMEOUT):
                    try:
                        await self.turn_interrupt(thread_id, stream.turn.id)
                        async for _ in stream:
                            pass
                    except CodexError:
                        pass  # the turn ended meanwhile, or the connection did
            self._unsubscribe(thread_id, send)

    async def run_turn(self, thread_id: str, input: str | Sequence[UserInput], **params: Any) -> TurnResult:
        """A whole turn: its final text and usage (raises :class:`TurnFailed`)."""
        async with self.turn(thread_id, input, **params) as turn:
            return await turn.result()

    @asynccontextmanager
    async def events(self, capacity: int = TURN_QUEUE) -> AsyncIterator[trio.MemoryReceiveChannel[Event]]:
        """Every event of this session (not only a turn's), while open."""
        send, receive = trio.open_memory_channel[Event](capacity)
        self._watchers.append(send)
        try:
            yield receive
        finally:
            self._watchers.remove(send)

    def _unsubscribe(self, thread_id: str, send: trio.MemorySendChannel[Event]) -> None:
        if self._turns.get(thread_id) is send:
            del self._turns[thread_id]

    # --- the connection ---------------------------------------------------------

    async def _send(self, msg: Mapping[str, Any]) -> None:
        async with self._sending:
            try:
                await self.stream.send_frames([msgspec.json.encode(msg)])
            except TransportClosed:
                raise ClientClosed(str(msg.get("method", "answer"))) from None

    async def run(self) -> None:
        """Read and route the server's messages until the connection ends
        (:meth:`over` runs it); the ``on_request`` callbacks run under it."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await self._read()
            nursery.cancel_scope.cancel()  # a callback's answer has nowhere to go

    async def _read(self) -> None:
        try:
            while True:
                frame = await self.stream.receive_frame()
                if frame is None:
                    return
                if not isinstance(frame, bytes):
                    continue  # oversized: the transport dropped it
                if self.tap is not None:
                    self.tap(frame)
                try:
                    msg = _ENVELOPE.decode(frame)
                except msgspec.DecodeError:  # not one of ours: nothing to route it to
                    continue
                if msg.method is msgspec.UNSET:
                    waiting = self._waiting.pop(msg.id, None) if isinstance(msg.id, int | str) else None
                    if waiting is not None:
                        waiting.send_nowait(msg)
                    elif msg.id is not msgspec.UNSET and msg.id is not None:
                        error = msg.error if msg.error is not msgspec.UNSET else None
                        await self._deliver(Response(msg.id, decode(Any, msg.result), error))
                elif msg.id is not msgspec.UNSET:
                    await self._server_request(msg.id, msg.method, msg.params)
                elif not self._turns and not self._watchers:
                    continue  # nobody follows events: not worth decoding
                elif self.typed:
                    await self._deliver(notification(msg.method, msg.params))
                else:
                    await self._deliver(Notification(msg.method, decode(Any, msg.params)))
        finally:
            self._closed = True
            for channel in [*self._waiting.values(), *self._turns.values(), *self._watchers]:
                channel.close()

    async def _server_request(self, id: int | str | None, method: str, raw: msgspec.Raw) -> None:
        kind = SERVER_REQUESTS.get(method) if self.typed else None
        params: Any = None
        if kind is not None:
            try:
                params = decode(kind, raw)
            except msgspec.ValidationError:
                pass
        if params is None:
            params = decode(Any, raw)
        request = ServerRequest(self, id, method, params)
        if self.on_request is not None:
            assert self._nursery is not None
            self._nursery.start_soon(self._answer, request)
        else:
            # Unheard, it stays unanswered: another client of the thread may
            # answer it, and an interrupt resolves it.
            await self._deliver(request)

    async def _answer(self, request: ServerRequest) -> None:
        """The callback's return value is the answer; its exception, a refusal."""
        assert self.on_request is not None
        try:
            with trio.fail_after(self.event_timeout):
                result = await self.on_request(request)
        except Exception as exc:  # trio.TooSlowError included
            if not request.answered:
                await request.reject(f"the client's handler failed: {exc!r}", -32603)
            return
        if not request.answered:
            await request.respond(result)

    async def _deliver(self, event: Event) -> None:
        """To the turn of its thread and to every watcher. A consumer that takes nothing for ``event_timeout`` is dropped
        (its iterator ends with :class:`ClientClosed`): the session goes on."""
        thread_id = thread_of(event.params if isinstance(event, (ServerRequest, Notification)) else event)
        turn = self._turns.get(thread_id) if thread_id is not None else None
        for send in [*([turn] if turn is not None else []), *self._watchers]:
            with trio.move_on_after(self.event_timeout):
                try:
                    await send.send(event)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                continue
            send.close()


class TurnStream:
    """A running turn: an async iterator of its events, through its
    ``TurnCompleted`` (the last one yielded)."""

    def __init__(self, client: Client, thread_id: str, events: trio.MemoryReceiveChannel[Event],
                 subscription: trio.MemorySendChannel[Event]) -> None:
        self.client = client
        self.thread_id = thread_id
        self.turn: Turn | None = None
        self.done = False
        self._events = events
        self._subscription = subscription
        self._text: dict[str, str] = {}
        self._final = ""
        self.usage: ThreadTokenUsage | None = None

    def __aiter__(self) -> TurnStream:
        return self

    async def __anext__(self) -> Event:
        if self.done:
            raise StopAsyncIteration
        with trio.move_on_after(self.client.event_timeout) as waited:
            try:
                event = await self._events.receive()
            except trio.EndOfChannel:
                raise ClientClosed("turn") from None
        if waited.cancelled_caught:
            raise RequestTimeout("turn", self.client.event_timeout)
        self._observe(event)
        return event

    def _observe(self, event: Event) -> None:
        if isinstance(event, Notification) and event.method in ("item/completed", "thread/tokenUsage/updated",
                                                                 "turn/completed"):
            event = notification(event.method, event.params)  # a raw client's: typed here
        if isinstance(event, ItemCompleted) and isinstance(event.item, AgentMessageItem):
            self._final = event.item.text
        elif isinstance(event, ThreadTokenUsageUpdated):
            self.usage = event.token_usage
        elif isinstance(event, TurnCompleted) and self.turn is not None and event.turn.id == self.turn.id:
            self.turn = event.turn
            self.done = True
            # Later events of the thread are not this turn's: nobody would take them.
            self.client._unsubscribe(self.thread_id, self._subscription)

    async def result(self) -> TurnResult:
        """Run the turn to its end; its final text and usage. Server requests
        met on the way with no callback to answer them are refused."""
        async for event in self:
            if isinstance(event, ServerRequest) and not event.answered:
                await event.reject("this turn's consumer does not answer server requests")
        assert self.turn is not None
        if self.turn.status == "failed":
            raise TurnFailed(self.turn)
        return TurnResult(self.turn, self._final, self.usage)


def _inputs(input: str | Sequence[UserInput]) -> list[Any]:
    return [TextInput(input)] if isinstance(input, str) else list(input)
