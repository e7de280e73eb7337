"""One actor per client connection: the JSON-RPC session.

The reader turns frames into requests through the sans-I/O codec, enforces
the handshake (``initialize`` exactly once; nothing else before it), decodes
params against the method table and hands each request to whoever owns it,
with a :class:`~.messages.Reply` so the owner answers in order with its own
notifications. The reader never waits on another actor's work, so requests
are pipelined.

The writer owns the socket's write side: it drains the outbox as messages
come into a backlog counted in bytes, drops the notifications this client
opted out of, merges runs of deltas when a backlog built up (no text is
lost; fewer, larger messages), encodes and writes each batch with one call.

Rules:
- Every request gets exactly one answer, an error included; a frame that is
  not a request with a usable id gets none and is logged.
- A full actor mailbox answers -32001 (with ``codex_error_info``, which the
  openai-codex SDK needs before it retries), never blocks the reader.
- One slow-client policy (runtime/limits.py): a connection that can be
  closed (websocket: ``can_disconnect``) is closed when the bytes queued for
  it exceed its budget, when a write makes no progress for the write
  timeout, when its peer stops answering pings, or when told to
  (:class:`~.messages.CloseConnection`, from whoever could not queue for
  it): it stops reading, drops its backlog, lets the write in progress
  finish (bounded) and sends a close frame with the reason, logged. Stdio
  is never closed so: that would end the server.
- Per connection, a request over the request rate or the pending requests
  is answered -32001; a client refused ``abuse_limit`` times in a row is
  closed.
- A bug is contained (see :mod:`.barrier`): in a request handled here it is
  that request's -32603; anywhere else in the connection it ends this
  connection only, with the reason.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import msgspec
import trio

from ..runtime import review
from ..runtime.ask import ask
from ..runtime.errors import MailboxClosed
from ..runtime.limits import Limits, RateLimiter
from ..runtime.mailbox import DROP, Inbox, Mailbox, open_mailbox
from ..runtime.protocol import codec
from ..runtime.protocol.codec import ClientNotification, ClientResponse, Invalid, Request
from ..runtime.protocol.jsonrpc import (
    ALREADY_INITIALIZED,
    NOT_INITIALIZED,
    ErrorResponse,
    JsonRpcError,
    Notification,
    Outbound,
    MAX_INPUT_CHARS,
    RequestId,
    Response,
    input_too_large,
    invalid_params,
    invalid_request,
    method_not_found,
    overloaded,
)
from ..runtime.protocol.methods import (
    CONNECTION,
    METHODS,
    ORIGINAL_METHODS,
    THREAD,
    Route,
    dispatches,
    is_experimental,
)
from ..runtime.protocol.v2.account import (
    AccountUpdatedNotification,
    ApiKeyLoginResponse,
    Empty,
    LoginAccountParams,
    LoginCompletedNotification,
)
from ..runtime.protocol.v2.initialize import InitializeParams, InitializeResponse
from ..runtime.protocol.v2.item import TextInput
from ..runtime.protocol.v2.thread import (
    ReviewStartParams,
    ThreadBackgroundTerminalsListParams,
    ThreadBackgroundTerminalsTerminateParams,
    ThreadGoalClearParams,
    ThreadGoalSetParams,
    ThreadIdParams,
    ThreadInjectItemsParams,
    ThreadRevertParams,
    ThreadRollbackParams,
    ThreadSearchCancelParams,
    ThreadSearchParams,
    ThreadShellCommandParams,
)
from ..runtime.protocol.v2.turn import ThreadSettingsUpdateParams, TurnInterruptParams, TurnStartParams, TurnSteerParams
from ..runtime.server_info import ServerInfo
from ..runtime.stream import FrameStream, Oversized, TransportClosed, WriteStalled
from . import analytics_facts as facts
from .analytics_facts import Recorder
from .barrier import bug_error, innermost, log_bug
from .command_exec import CommandExecs
from .fs_requests import FsRequests
from .fanout import now_ms
from .messages import (
    BackgroundTerminals,
    Broadcast,
    ClientAnswer,
    CloseConnection,
    CompactThread,
    ConnectionGone,
    ConnectionRef,
    GoalRequest,
    InjectItems,
    InterruptTurn,
    Register,
    Reply,
    RevertThread,
    ReviewThread,
    SearchTicket,
    ShellCommand,
    StartTurn,
    SteerTurn,
    ThreadRequest,
    ToThread,
    Unregister,
    UpdateSettings,
)
from .process import open_process_table

log = logging.getLogger("trio_codex.connection")

#: Wire messages queued for one client before its writer takes them into
#: its backlog, which is bounded in bytes (Limits.outbox_byte_budget; a
#: websocket over it is closed, a stdio client holds its senders back, who
#: give up on it after Limits.write_timeout). Lossless: responses, items and
#: deltas alike are never dropped.
OUTBOX_CAPACITY = 4096
#: Thread searches of one connection that its cancel requests can reach;
#: an older one still runs, but can no longer be cancelled.
MAX_SEARCH_TICKETS = 64
#: Most messages encoded into one write.
WRITE_BATCH = 1024
#: A backlog this long is worth merging deltas for.
COALESCE_BACKLOG = 64
#: How long a closing connection may take to flush what it owes the client.
FLUSH_TIMEOUT = 5.0
#: How long the handshake with the hub may take.
ASK_TIMEOUT = 10.0
#: Websocket close codes (RFC 6455): a normal close; a client closed for
#: not reading (policy violation); a connection ended by a bug of ours.
NORMAL_CLOSE = 1000
GOING_AWAY_CLOSE_CODE = 1001
SLOW_CLIENT_CLOSE_CODE = 1008
INTERNAL_ERROR_CLOSE_CODE = 1011

#: Queued behind the last message owed to a closing client.
_CLOSE = object()

_DELTA_METHODS = frozenset({"item/agentMessage/delta", "item/reasoning/summaryTextDelta",
                            "item/reasoning/textDelta", "item/commandExecution/outputDelta"})
# An HTTP header value: visible ASCII, spaces and tabs (the original's check).
_HEADER_VALUE = re.compile(r"^[\t\x20-\x7e\x80-\xff]*$")
_ID_IN_HEAD = re.compile(rb'"id"\s*:\s*(-?\d+|"(?:[^"\\]|\\.)*")')


def _answer(fn: Callable[[Connection, Any], Any]) -> Callable[[Connection, RequestId, Any], Awaitable[None]]:
    """A CONNECTION handler that answers with ``fn(connection, params)``."""
    async def handle(self: Connection, rid: RequestId, params: Any) -> None:
        await self._send(Response(rid, fn(self, params)))
    return handle


def _answer_awaited(fn: Callable[[Connection, Any], Awaitable[Any]]
                    ) -> Callable[[Connection, RequestId, Any], Awaitable[None]]:
    """A handler answered by file work in a worker thread (config writes):
    this client's next requests wait for it, no one else's."""
    async def handle(self: Connection, rid: RequestId, params: Any) -> None:
        await self._send(Response(rid, await fn(self, params)))
    return handle


def _fs(method: str) -> Callable[[Connection, RequestId, Any], Awaitable[None]]:
    """A handler of a one-shot fs/* request, run beside the reader."""
    async def handle(self: Connection, rid: RequestId, params: Any) -> None:
        await self.files.run(rid, method, params)
    return handle


@dispatches(CONNECTION, THREAD)
class Connection:
    """The session of one client; see the module docstring. It answers the
    method table's CONNECTION rows, and builds the thread's message for its
    THREAD rows."""

    HANDLERS: ClassVar[dict[str, Callable[..., Any]]]

    def __init__(self, conn_id: int, stream: FrameStream, info: ServerInfo,
                 hub: Mailbox, threads: Mailbox, approvals: Mailbox, recorder: Recorder, *,
                 can_disconnect: bool = False, limits: Limits = Limits()) -> None:
        self.id = conn_id
        self.can_disconnect = can_disconnect
        self.limits = limits
        #: Why the server closes this connection (set once), and the code,
        #: for its close frame.
        self.close_reason: str | None = None
        self.close_code = SLOW_CLIENT_CLOSE_CODE
        self._drop_backlog = False
        #: Requests read and not answered yet; requests refused in a row.
        self.pending = 0
        self.refused = 0
        self._rate = RateLimiter(limits.request_rate, limits.request_burst)
        self._reading = trio.CancelScope()
        self.recorder = recorder
        #: Requests not answered yet: id -> (method, thread id), for analytics.
        self.unanswered: dict[RequestId, tuple[str, str | None]] = {}
        #: Thread searches in flight, by request id, for their cancel requests.
        self.searches: dict[RequestId, SearchTicket] = {}
        self.stream = stream
        self.info = info
        self.hub = hub
        self.threads = threads
        self.approvals = approvals
        self.initialized = False
        self._left = False
        self.experimental_api = False
        self.opt_out: frozenset[str] = frozenset()
        self.originator = ""
        #: A client older than 0.171 (clientInfo.version), whose closed
        #: CodexErrorInfo enum lacks ``bioPolicy``: it is sent ``other``,
        #: what a 0.169 server sends.
        self.legacy_error_info = False
        self.ref: ConnectionRef
        self.files: FsRequests
        self.execs: CommandExecs
        self._written = trio.Event()
    async def run(self, *, task_status: trio.TaskStatus[ConnectionRef] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the client until it closes. A bug in this connection (its
        reader, its writer) ends this connection only: it is logged and the
        client is told why where the transport can say it."""
        outbox, inbox = open_mailbox(OUTBOX_CAPACITY, name=f"conn{self.id}.outbox")
        # One order to close is enough: later ones are dropped.
        control, orders = open_mailbox(1, name=f"conn{self.id}.control", default=DROP)
        self.ref = ConnectionRef(self.id, outbox, control if self.can_disconnect else None,
                                 give_up_after=self.limits.write_timeout)
        close_code = NORMAL_CLOSE
        try:
            # command/exec processes belong to the connection and die with it.
            async with open_process_table() as table, trio.open_nursery() as nursery:
                self.execs = CommandExecs(self.ref, self.info.settings, table, nursery)
                # fs watches and search sessions, like processes, end with it.
                self.files = FsRequests(self.ref, nursery)
                nursery.start_soon(self._write_loop, inbox, nursery.cancel_scope)
                if self.can_disconnect:
                    nursery.start_soon(self._obey, orders)
                    if (keepalive := getattr(self.stream, "keepalive", None)) is not None:
                        nursery.start_soon(self._keepalive, keepalive)
                task_status.started(self.ref)
                with self._reading:
                    await self._read_loop()
                self._leave()
                with trio.move_on_after(FLUSH_TIMEOUT):
                    if not self._drop_backlog:
                        # Everything queued before the marker is still written.
                        await outbox.send(_CLOSE)
                    else:
                        # A client that stopped reading gets none of its
                        # backlog: the marker wakes an idle writer, a busy
                        # one stops after the write in progress.
                        with contextlib.suppress(MailboxClosed):
                            outbox.send_nowait(_CLOSE)
                    await self._written.wait()
                nursery.cancel_scope.cancel(reason=f"connection {self.id}: "
                                                   f"{self.close_reason or 'the client closed it'}")
            if self.close_reason is not None:
                close_code = self.close_code
        except Exception as exc:
            self.close_reason = f"internal error: {innermost(exc)!r}"
            close_code = INTERNAL_ERROR_CLOSE_CODE
            log.error("connection %d (%s) failed and is closed (a bug: please report it)", self.id,
                      self.stream.peer, exc_info=exc)
            self._leave()
        finally:
            self.recorder.record(facts.ConnectionClosed(connection_id=self.id))
            inbox.close()
            orders.close()
            await self.stream.aclose(close_code, self.close_reason or "")
            log.info("connection %d (%s) closed", self.id, self.stream.peer)

    def _leave(self) -> None:
        """Tell the hub and the threads this client is gone (once)."""
        if self.initialized and not self._left:
            self._left = True
            self.hub.send_nowait(Unregister(self.id))
            self.threads.send_nowait(ConnectionGone(self.id))

    async def _obey(self, orders: Inbox) -> None:
        """Close the connection when told to (its client stopped reading)."""
        match await orders.receive():
            case CloseConnection(reason=reason, code=code):
                self._close(reason, code)

    async def _keepalive(self, keepalive: Callable[[float, float], Any]) -> None:
        """Close the connection once its peer stops answering pings."""
        reason = await keepalive(self.limits.keepalive_interval, self.limits.keepalive_timeout)
        self._close(reason, GOING_AWAY_CLOSE_CODE)

    def _close(self, reason: str, code: int, *, flush: bool = False) -> None:
        """Stop reading and close with ``code`` and ``reason`` (the first
        reason given wins), logged; ``flush``: after writing what is queued
        (bounded by FLUSH_TIMEOUT), else dropping it (a client that does
        not read)."""
        if self.close_reason is not None:
            return
        log.warning("connection %d (%s): closing it: %s", self.id, self.stream.peer, reason)
        self.close_reason = reason
        self.close_code = code
        self._drop_backlog = not flush
        self._reading.cancel(reason=f"connection {self.id}: {reason}")

    # --- reading ---------------------------------------------------------

    async def _read_loop(self) -> None:
        while (frame := await self.stream.receive_frame()) is not None:
            if isinstance(frame, Oversized):
                await self._oversized(frame)
                continue
            match codec.decode(frame):
                case Request() as req:
                    await self._request(req)
                case ClientNotification(method=method):
                    log.debug("connection %d: notification %s ignored", self.id, method)
                case ClientResponse(id=rid, result=result, error=error):
                    # An answer is never dropped: wait for room if need be.
                    await self.approvals.send(ClientAnswer(self.id, rid, result, error))
                case Invalid(reason=reason, id=None):
                    log.warning("connection %d: dropped a frame that is not a message: %s", self.id, reason)
                case Invalid(reason=reason, id=rid):
                    self.pending += 1
                    await self._send(ErrorResponse(rid, invalid_request(reason).error))

    async def _oversized(self, frame: Oversized) -> None:
        message = (f"Invalid request: message of {frame.size} bytes exceeds the limit of "
                   f"{self.stream.max_frame} bytes; send large inputs as files or URLs")
        found = _ID_IN_HEAD.search(frame.head)
        if found is None:
            log.warning("connection %d: dropped a %d-byte frame with no request id", self.id, frame.size)
            return
        rid = msgspec.json.decode(found.group(1))
        self.pending += 1
        await self._send(ErrorResponse(rid, invalid_request(message).error))

    def _admit(self) -> None:
        """Count a request in, within this connection's limits.

        Raises:
          JsonRpcError: -32001, over the request rate or the pending
            requests; past ``abuse_limit`` refusals in a row the connection
            is closed as well.
        """
        self.pending += 1
        if self.pending <= self.limits.max_pending_requests and self._rate.take(trio.current_time()):
            self.refused = 0
            return
        self.refused += 1
        if self.refused == 1:
            log.warning("connection %d (%s): over its limits (%d pending requests, %g a second); answering "
                        "-32001", self.id, self.stream.peer, self.limits.max_pending_requests,
                        self.limits.request_rate)
        if self.refused >= self.limits.abuse_limit and self.can_disconnect:
            self._close(f"{self.refused} requests in a row over the limits of one connection",
                        SLOW_CLIENT_CLOSE_CODE, flush=True)
        raise overloaded()

    async def _request(self, req: Request) -> None:
        try:
            self._admit()
            if req.method not in METHODS and req.method not in ORIGINAL_METHODS:
                raise invalid_request(f"Invalid request: unknown variant `{req.method}`, "
                                      f"expected one of {_EXPECTED}")
            if not self.initialized and req.method != "initialize":
                raise invalid_request(NOT_INITIALIZED)
            if is_experimental(req.method) and not self.experimental_api:
                raise invalid_request(f"{req.method} requires experimentalApi capability")
            spec = METHODS.get(req.method)
            if spec is None:
                raise method_not_found(req.method)
            params = codec.decode_params(req.params, spec.params)
            if self.recorder.enabled:
                thread_id = getattr(params, "thread_id", None)
                self.unanswered[req.id] = (req.method, thread_id)
                self.recorder.record(facts.ClientRequest(
                    connection_id=self.id, request_id=req.id, method=req.method, thread_id=thread_id))
            await self._dispatch(req.id, req.method, spec.route, params)
        except JsonRpcError as exc:
            await self._send(ErrorResponse(req.id, exc.error))
        except Exception as exc:
            # The bug barrier of the requests handled here (server info,
            # command/exec, the forwarding itself).
            what = f"connection {self.id} ({req.method})"
            log_bug(log, exc, what, self.id, req.id)
            await self._send(ErrorResponse(req.id, bug_error(exc, what)))

    async def _send(self, msg: Outbound) -> None:
        try:
            await self.ref.outbox.send(msg)
        except MailboxClosed:
            pass

    def _forward(self, mailbox: Mailbox, msg: Any) -> None:
        if not mailbox.send_nowait(msg):
            raise overloaded()

    def _reply(self, rid: RequestId) -> Reply:
        return Reply(self.ref, rid)

    async def _dispatch(self, rid: RequestId, method: str, route: Route, params: Any) -> None:
        """Hand a request to whoever its row of the method table names."""
        reply = self._reply(rid)
        match route:
            case Route.CONNECTION:
                await self.HANDLERS[method](self, rid, params)
            case Route.REGISTRY:
                ticket = self._search_ticket(rid, method) if isinstance(params, ThreadSearchParams) else None
                self._forward(self.threads, ThreadRequest(reply, method, params, self.originator, ticket))
            case Route.THREAD:
                msg = self.HANDLERS[method](self, reply, params)
                self._forward(self.threads, ToThread(params.thread_id, msg, reply))

    def _search_ticket(self, rid: RequestId, method: str) -> SearchTicket:
        """The ticket of a thread search, by which this connection can cancel
        it (the newest :data:`MAX_SEARCH_TICKETS` of them)."""
        for done in [r for r, t in self.searches.items() if t.done]:
            del self.searches[done]
        if len(self.searches) >= MAX_SEARCH_TICKETS:
            del self.searches[next(iter(self.searches))]
        ticket = self.searches[rid] = SearchTicket(method)
        return ticket

    def _cancel_search(self, method: str, params: ThreadSearchCancelParams) -> Empty:
        """As the original: always ``{}``; a search of the other kind, or
        one already answered, is left alone; a cancelled one is answered
        with an error once it has stopped."""
        ticket = self.searches.get(params.request_id)
        if ticket is not None and ticket.method == method:
            ticket.cancelled = True
            del self.searches[params.request_id]
        return Empty()

    # --- handlers of the method table's CONNECTION rows ---------------------

    rpc_thread_search_cancel = _answer(lambda c, p: c._cancel_search("thread/search", p))
    rpc_thread_search_stream_cancel = _answer(lambda c, p: c._cancel_search("thread/search/stream", p))

    rpc_model_list = _answer(lambda c, p: c.info.model_list(p))
    rpc_account_read = _answer(lambda c, p: c.info.account_read(p))
    rpc_config_read = _answer(lambda c, p: c.info.config_read(p))
    rpc_config_requirements_read = _answer(lambda c, p: c.info.config_requirements(p))
    rpc_skills_list = _answer(lambda c, p: c.info.skills_list(p))
    rpc_hooks_list = _answer(lambda c, p: c.info.hooks_list(p))
    rpc_plugin_installed = _answer(lambda c, p: c.info.plugins_installed(p))
    rpc_app_list = _answer(lambda c, p: c.info.empty_page(p))
    rpc_experimental_feature_list = _answer(lambda c, p: c.info.empty_page(p))
    rpc_collaboration_mode_list = _answer(lambda c, p: c.info.collaboration_modes(p))
    rpc_permission_profile_list = _answer(lambda c, p: c.info.permission_profiles(p))
    rpc_gov_cloud_check = _answer(lambda c, p: c.info.gov_cloud_check(p))
    rpc_command_exec_resize = _answer(lambda c, p: c.execs.resize(p))
    rpc_command_exec_terminate = _answer(lambda c, p: c.execs.terminate(p))
    rpc_fs_read_file = _fs("fs/readFile")
    rpc_fs_write_file = _fs("fs/writeFile")
    rpc_fs_get_metadata = _fs("fs/getMetadata")
    rpc_fs_read_directory = _fs("fs/readDirectory")
    rpc_fs_create_directory = _fs("fs/createDirectory")
    rpc_fs_remove = _fs("fs/remove")
    rpc_fs_copy = _fs("fs/copy")
    rpc_fs_unwatch = _answer(lambda c, p: c.files.unwatch(p))
    rpc_fuzzy_session_start = _answer(lambda c, p: c.files.session_start(p))
    rpc_fuzzy_session_update = _answer(lambda c, p: c.files.session_update(p))
    rpc_fuzzy_session_stop = _answer(lambda c, p: c.files.session_stop(p))
    rpc_config_value_write = _answer_awaited(lambda c, p: c.info.local.config_value_write(p))
    rpc_config_batch_write = _answer_awaited(lambda c, p: c.info.local.config_batch_write(p))
    rpc_model_provider_list = _answer(lambda c, p: c.info.local.model_provider_list(p))
    rpc_model_provider_default_set = _answer_awaited(lambda c, p: c.info.local.model_provider_default_set(p))
    rpc_feature_enablement_set = _answer(lambda c, p: c.info.local.feature_enablement_set(p))
    rpc_rate_limits_read = _answer(lambda c, p: c.info.local.rate_limits_read(p))
    rpc_feedback_save = _answer(lambda c, p: c.info.local.feedback_save(p))
    rpc_plugin_list = _answer(lambda c, p: c.info.local.plugin_list(p))
    rpc_plugin_read = _answer(lambda c, p: c.info.local.plugin_read(p))
    rpc_external_agent_detect = _answer(lambda c, p: c.info.local.external_agent_detect(p))

    async def rpc_fs_watch(self, rid: RequestId, params: Any) -> None:
        await self.files.watch(rid, params)

    async def rpc_fuzzy_file_search(self, rid: RequestId, params: Any) -> None:
        await self.files.search(rid, params)

    async def rpc_initialize(self, rid: RequestId, params: InitializeParams) -> None:
        if self.initialized:
            raise invalid_request(ALREADY_INITIALIZED)
        name = params.client_info.name
        if not name or not _HEADER_VALUE.match(name):
            raise invalid_request(f"Invalid clientInfo.name: '{name}'. Must be a valid HTTP header value.")
        self.legacy_error_info = _older_than_0171(params.client_info.version)
        caps = params.capabilities
        if caps is not None:
            self.experimental_api = caps.experimental_api
            self.opt_out = frozenset(caps.opt_out_notification_methods or ())
        self.originator = await ask(self.hub, lambda slot: Register(self.ref, name, slot), timeout=ASK_TIMEOUT)
        self.initialized = True
        await self._send(Response(rid, InitializeResponse(
            user_agent=self.info.user_agent(self.originator, params.client_info),
            codex_home=self.info.codex_home,
            platform_family=self.info.platform_family,
            platform_os=self.info.platform_os,
        )))
        self.info.answered_initialize.set()
        self.recorder.record(facts.Initialize(connection_id=self.id, client_name=name,
                                              client_version=params.client_info.version,
                                              transport=self.stream.peer.split(":")[0]))

    async def rpc_login(self, rid: RequestId, params: LoginAccountParams) -> None:
        """As the original: the answer, ``account/login/completed`` to this
        client, then ``account/updated`` to every client."""
        self.info.local.login_api_key(params)
        await self._send(Response(rid, ApiKeyLoginResponse()))
        await self._send(Notification("account/login/completed", LoginCompletedNotification(success=True),
                                      now_ms()))
        self._account_updated("apikey")

    async def rpc_logout(self, rid: RequestId, params: None) -> None:
        self.info.local.logout()
        await self._send(Response(rid, Empty()))
        self._account_updated(None)

    def _account_updated(self, mode: str | None) -> None:
        # After the answer: a full hub drops the notice (logged) rather than
        # answering the request a second time.
        note = Notification("account/updated", AccountUpdatedNotification(auth_mode=mode), now_ms())
        if not self.hub.send_nowait(Broadcast(note)):
            log.warning("connection %d: account/updated not sent: the hub is full", self.id)

    async def rpc_command_exec(self, rid: RequestId, params: Any) -> None:
        await self.execs.start(rid, params)

    async def rpc_command_exec_write(self, rid: RequestId, params: Any) -> None:
        # Queued for the process's writer task: the reader never waits on it.
        if (result := self.execs.write(rid, params)) is not None:
            await self._send(Response(rid, result))

    # --- message builders of the method table's THREAD rows -------------------

    def rpc_turn_start(self, reply: Reply, params: TurnStartParams) -> StartTurn:
        chars = sum(len(i.text) for i in params.input if isinstance(i, TextInput))
        if chars > MAX_INPUT_CHARS:
            raise input_too_large(chars)
        return StartTurn(reply, params, self.info.turn_permissions(params))

    def rpc_turn_steer(self, reply: Reply, params: TurnSteerParams) -> SteerTurn:
        return SteerTurn(reply, tuple(params.input), params.expected_turn_id)

    def rpc_turn_interrupt(self, reply: Reply, params: TurnInterruptParams) -> InterruptTurn:
        return InterruptTurn(reply, params.turn_id)

    def rpc_settings_update(self, reply: Reply, params: ThreadSettingsUpdateParams) -> UpdateSettings:
        return UpdateSettings(reply, params, self.info.turn_permissions(params))

    def rpc_thread_revert(self, reply: Reply, params: ThreadRevertParams) -> RevertThread:
        return RevertThread(reply, params.before_turn_id)

    def rpc_thread_rollback(self, reply: Reply, params: ThreadRollbackParams) -> RevertThread:
        if params.num_turns < 1:
            raise invalid_request("numTurns must be >= 1")
        return RevertThread(reply, None, params.num_turns)

    def rpc_thread_compact(self, reply: Reply, params: ThreadIdParams) -> CompactThread:
        return CompactThread(reply)

    def rpc_shell_command(self, reply: Reply, params: ThreadShellCommandParams) -> ShellCommand:
        command = params.command.strip()
        if not command:
            raise invalid_request("command must not be empty")
        if params.timeout_ms is not None and params.timeout_ms < 0:
            raise invalid_params(f"thread/shellCommand timeoutMs must be non-negative, got {params.timeout_ms}")
        return ShellCommand(reply, command, params.timeout_ms)

    def rpc_background_terminals_list(self, reply: Reply, params: ThreadBackgroundTerminalsListParams
                                      ) -> BackgroundTerminals:
        return BackgroundTerminals(reply, "list", limit=params.limit, cursor=params.cursor)

    def rpc_background_terminals_clean(self, reply: Reply, params: ThreadIdParams) -> BackgroundTerminals:
        return BackgroundTerminals(reply, "clean")

    def rpc_background_terminals_terminate(self, reply: Reply, params: ThreadBackgroundTerminalsTerminateParams
                                           ) -> BackgroundTerminals:
        return BackgroundTerminals(reply, "terminate", process_id=params.process_id)

    def rpc_inject_items(self, reply: Reply, params: ThreadInjectItemsParams) -> InjectItems:
        return InjectItems(reply, tuple(msgspec.Raw(msgspec.json.encode(item)) for item in params.items))

    def rpc_review_start(self, reply: Reply, params: ReviewStartParams) -> ReviewThread:
        target = msgspec.to_builtins(params.target)
        try:
            review.prompt(target, None)
        except review.ReviewTargetError as exc:
            raise invalid_request(str(exc)) from None
        return ReviewThread(reply, target)

    def rpc_goal_get(self, reply: Reply, params: ThreadIdParams) -> GoalRequest:
        return GoalRequest(reply, "get", params)

    def rpc_goal_set(self, reply: Reply, params: ThreadGoalSetParams) -> GoalRequest:
        return GoalRequest(reply, "set", params)

    def rpc_goal_clear(self, reply: Reply, params: ThreadGoalClearParams) -> GoalRequest:
        return GoalRequest(reply, "clear", params)

    # --- writing -----------------------------------------------------------

    def _record_answers(self, batch: list[Outbound]) -> None:
        """Analytics facts for the answers going out (the outbound path)."""
        for msg in batch:
            if type(msg) is Response and msg.id in self.unanswered:
                method, thread_id = self.unanswered.pop(msg.id)
                self.recorder.record(facts.ClientResponse(
                    connection_id=self.id, request_id=msg.id, method=method,
                    thread_id=thread_id or getattr(getattr(msg.result, "thread", None), "id", None),
                    turn_id=_turn_id(msg.result)))
            elif type(msg) is ErrorResponse and msg.id in self.unanswered:
                method, _ = self.unanswered.pop(msg.id)
                self.recorder.record(facts.ErrorResponse(
                    connection_id=self.id, request_id=msg.id, method=method,
                    code=msg.error.code, message=msg.error.message))

    async def _write_loop(self, inbox: Inbox, scope: trio.CancelScope) -> None:
        """Move what is queued for the client from the outbox into the
        backlog (see :class:`_Backlog`) and write the backlog out, both at
        once: the outbox never stays full while the client is within its
        byte budget, so no sender waits on a slow client."""
        backlog = _Backlog()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._drain, inbox, backlog)
                await self._write_backlog(backlog)
                nursery.cancel_scope.cancel()
        except TransportClosed as exc:
            # A write that stalled is the slow-client policy at work: say so.
            log.log(logging.WARNING if isinstance(exc, WriteStalled) else logging.INFO,
                    "connection %d: closed while writing: %s", self.id, exc)
            scope.cancel(reason=f"connection {self.id}: the peer is gone")

    async def _drain(self, inbox: Inbox, backlog: _Backlog) -> None:
        budget = self.limits.outbox_byte_budget
        while True:
            batch = await inbox.receive_batch(WRITE_BATCH)
            closing = next((i for i, m in enumerate(batch) if m is _CLOSE), None)
            if closing is not None:
                batch = batch[:closing]
            if self.opt_out:
                batch = [m for m in batch if type(m) is not Notification or m.method not in self.opt_out]
            if self.unanswered:
                self._record_answers(batch)
            self.pending -= sum(1 for m in batch if type(m) is Response or type(m) is ErrorResponse)
            backlog.add(batch)
            if closing is not None:
                backlog.close()
                return
            if backlog.size > budget:
                if self.can_disconnect:
                    self._close(f"{backlog.size} bytes were queued for the client, over its budget of {budget} "
                                f"(TRIO_CODEX_OUTBOX_BYTE_BUDGET): it does not read fast enough",
                                SLOW_CLIENT_CLOSE_CODE)
                    backlog.close()
                    # Its senders learn at once that it is gone, rather than
                    # waiting for room while it closes.
                    inbox.close()
                    return
                # Stdio cannot be closed: hold its senders back instead.
                await backlog.shrunk(budget)

    async def _write_backlog(self, backlog: _Backlog) -> None:
        encode = codec.encode
        # A client closed for being slow gets none of its backlog.
        while (taken := await backlog.take()) is not None and not self._drop_backlog:
            batch, size = taken
            if len(batch) > COALESCE_BACKLOG:
                batch = coalesce_deltas(batch)
            frames = [m if type(m) is bytes else encode(m) for m in batch]
            if self.legacy_error_info:
                frames = [_downgrade_error_info(f) for f in frames]
            await self.stream.send_frames(frames)
            backlog.sent(size)
        self._written.set()


class _Backlog:
    """What the writer has yet to write, with its size in bytes (what is
    being written included): messages are encoded as they come in, except
    deltas, kept as messages (sized by their text) so that a run of them
    can still be merged into one."""

    #: What a delta notification costs beyond its text, roughly.
    DELTA_OVERHEAD = 160

    def __init__(self) -> None:
        self.items: list[Outbound | bytes] = []
        self.size = 0
        self.closed = False
        self._changed = trio.Event()

    def add(self, batch: list[Outbound]) -> None:
        encode = codec.encode
        for msg in batch:
            if _stream_key(msg) is not None:
                self.items.append(msg)
                self.size += len(msg.params.delta) + self.DELTA_OVERHEAD  # type: ignore[attr-defined]
            else:
                data = encode(msg)
                self.items.append(data)
                self.size += len(data)
        self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    async def take(self) -> tuple[list[Outbound | bytes], int] | None:
        """All that is queued and its size (waiting for something), or None
        once closed and empty. The size counts until :meth:`sent`."""
        while not self.items:
            if self.closed:
                return None
            await self._changed.wait()
        items, self.items = self.items, []
        return items, self.size  # the previous batch is sent: all of it is this one

    def sent(self, size: int) -> None:
        self.size -= size
        self._wake()

    async def shrunk(self, budget: int) -> None:
        while self.size > budget:
            await self._changed.wait()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()


def _older_than_0171(version: str) -> bool:
    """Whether a client's version reads as a codex release before 0.171
    (``0.169.0``); other version schemes are taken as current."""
    parts = version.split("-")[0].split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return False
    return (int(parts[0]), int(parts[1])) < (0, 171)


def _downgrade_error_info(frame: bytes) -> bytes:
    if b'"bioPolicy"' not in frame:
        return frame
    return frame.replace(b'"codexErrorInfo":"bioPolicy"', b'"codexErrorInfo":"other"')


def _turn_id(result: Any) -> str | None:
    turn = getattr(result, "turn", None)
    return getattr(turn, "id", None)


def coalesce_deltas(batch: list[Outbound]) -> list[Outbound]:
    """Merge runs of delta notifications for the same stream (method, item,
    index) into one each. Lossless: the merged delta carries all the text, in
    order. Linear: each run is joined once."""
    out: list[Outbound] = []
    run: list[str] = []
    key: tuple | None = None

    def close_run() -> None:
        if len(run) > 1:
            last = out[-1]
            out[-1] = Notification(last.method, msgspec.structs.replace(last.params, delta="".join(run)),
                                   last.emitted_at_ms)
        run.clear()

    for msg in batch:
        k = _stream_key(msg)
        if k is not None and k == key:
            run.append(msg.params.delta)
            continue
        close_run()
        out.append(msg)
        key = k
        if k is not None:
            run.append(msg.params.delta)
    close_run()
    return out


def _stream_key(msg: Outbound) -> tuple | None:
    if type(msg) is not Notification or msg.method not in _DELTA_METHODS:
        return None
    p = msg.params
    return (msg.method, p.item_id, p.turn_id, getattr(p, "summary_index", None), getattr(p, "content_index", None))


_EXPECTED = ", ".join(f"`{m}`" for m in sorted(set(METHODS) | ORIGINAL_METHODS))
