"""The connection actor: its session (handshake, reading, admission,
dispatch through the method table, closing); its handlers are in
:mod:`.handlers`, its writer in :mod:`.writer`."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable
from typing import Any, ClassVar

import msgspec
import trio

from ...runtime.kernel.errors import MailboxClosed
from ...runtime.handshake import Accepted
from ...runtime.server.limits import Limits, RateLimiter
from ...runtime.kernel.mailbox import DROP, Inbox, Mailbox, open_mailbox
from ...runtime.protocol import codec
from ...runtime.protocol.codec import ClientNotification, ClientResponse, Invalid, Request
from ...runtime.protocol.jsonrpc import (
    NOT_INITIALIZED,
    ErrorResponse,
    JsonRpcError,
    Outbound,
    RequestId,
    Response,
    invalid_request,
    method_not_found,
    overloaded,
)
from ...runtime.protocol.methods import (
    CONNECTION,
    METHODS,
    ORIGINAL_METHODS,
    THREAD,
    Route,
    dispatches,
    is_experimental,
)
from ...runtime.protocol.v2.account import Empty
from ...runtime.protocol.v2.approval import GranularAskForApproval
from ...runtime.protocol.v2.thread import (
    ThreadSearchCancelParams,
    ThreadSearchParams,
)
from ...runtime.server.info import ServerInfo
from ...runtime.kernel.stream import FrameStream, Oversized
from ..analytics import facts
from ..analytics.facts import Recorder
from ..messages.barrier import bug_error, innermost, log_bug
from .command_exec import CommandExecs
from .fs_requests import FsRequests
from ..messages import (
    ClientAnswer,
    CloseConnection,
    ConnectionGone,
    ConnectionRef,
    Reply,
    SearchTicket,
    ThreadRequest,
    ToThread,
    Unregister,
    ApprovalsInbox,
    HubInbox,
    RegistryInbox,
)
from ...runtime.commands.process import open_process_table

from . import handlers
from . import writer
from .writer import (
    CLOSE,
    GOING_AWAY_CLOSE_CODE,
    INTERNAL_ERROR_CLOSE_CODE,
    NORMAL_CLOSE,
    SLOW_CLIENT_CLOSE_CODE,
)

log = logging.getLogger("trio_codex.connection")

#: Wire messages queued for one client before its writer takes them into
#: its backlog, which is bounded in bytes (Limits.outbox_byte_budget; a
#: websocket over it is closed, a stdio client holds its senders back, who
#: give up on it after Limits.write_timeout). Nothing is dropped from a
#: connection that stays open: a sender that cannot queue closes it instead
#: (fanout.deliver after the write timeout, fanout.post at once), except
#: stdio, which cannot be closed: there a broadcast or server request that
#: finds the outbox full is missed, logged (fanout.post).
OUTBOX_CAPACITY = 4096
#: Thread searches of one connection that its cancel requests can reach;
#: an older one still runs, but can no longer be cancelled.
MAX_SEARCH_TICKETS = 64
#: How long a closing connection may take to flush what it owes the client.
FLUSH_TIMEOUT = 5.0

_ID_IN_HEAD = re.compile(rb'"id"\s*:\s*(-?\d+|"(?:[^"\\]|\\.)*")')


@dispatches(CONNECTION, THREAD)
class Connection:
    """The session of one client; see the package docstring. It answers the
    method table's CONNECTION rows, and builds the thread's message for its
    THREAD rows."""

    HANDLERS: ClassVar[dict[str, Callable[..., Any]]]
    #: Declared here for the handlers (actors/connection/handlers.py), typed
    #: before this module is.
    info: ServerInfo

    # Defined in :mod:`.writer` (functions of the actor, bound here).
    _record_answers = writer._record_answers
    _write_loop = writer._write_loop
    _drain = writer._drain
    _write_backlog = writer._write_backlog

    # Defined in :mod:`.handlers` (functions of the actor, bound here).
    rpc_thread_search_cancel = handlers.rpc_thread_search_cancel
    rpc_thread_search_stream_cancel = handlers.rpc_thread_search_stream_cancel
    rpc_model_list = handlers.rpc_model_list
    rpc_account_read = handlers.rpc_account_read
    rpc_config_read = handlers.rpc_config_read
    rpc_config_requirements_read = handlers.rpc_config_requirements_read
    rpc_skills_list = handlers.rpc_skills_list
    rpc_hooks_list = handlers.rpc_hooks_list
    rpc_plugin_installed = handlers.rpc_plugin_installed
    rpc_app_list = handlers.rpc_app_list
    rpc_experimental_feature_list = handlers.rpc_experimental_feature_list
    rpc_collaboration_mode_list = handlers.rpc_collaboration_mode_list
    rpc_permission_profile_list = handlers.rpc_permission_profile_list
    rpc_gov_cloud_check = handlers.rpc_gov_cloud_check
    rpc_command_exec_resize = handlers.rpc_command_exec_resize
    rpc_command_exec_terminate = handlers.rpc_command_exec_terminate
    rpc_fs_read_file = handlers.rpc_fs_read_file
    rpc_fs_write_file = handlers.rpc_fs_write_file
    rpc_fs_get_metadata = handlers.rpc_fs_get_metadata
    rpc_fs_read_directory = handlers.rpc_fs_read_directory
    rpc_fs_create_directory = handlers.rpc_fs_create_directory
    rpc_fs_remove = handlers.rpc_fs_remove
    rpc_fs_copy = handlers.rpc_fs_copy
    rpc_fs_unwatch = handlers.rpc_fs_unwatch
    rpc_fuzzy_session_start = handlers.rpc_fuzzy_session_start
    rpc_fuzzy_session_update = handlers.rpc_fuzzy_session_update
    rpc_fuzzy_session_stop = handlers.rpc_fuzzy_session_stop
    rpc_config_value_write = handlers.rpc_config_value_write
    rpc_config_batch_write = handlers.rpc_config_batch_write
    rpc_model_provider_list = handlers.rpc_model_provider_list
    rpc_model_provider_default_set = handlers.rpc_model_provider_default_set
    rpc_feature_enablement_set = handlers.rpc_feature_enablement_set
    rpc_rate_limits_read = handlers.rpc_rate_limits_read
    rpc_feedback_save = handlers.rpc_feedback_save
    rpc_plugin_list = handlers.rpc_plugin_list
    rpc_plugin_read = handlers.rpc_plugin_read
    rpc_external_agent_detect = handlers.rpc_external_agent_detect
    rpc_fs_watch = handlers.rpc_fs_watch
    rpc_fuzzy_file_search = handlers.rpc_fuzzy_file_search
    rpc_initialize = handlers.rpc_initialize
    _register = handlers._register
    _initialized = handlers._initialized
    rpc_login = handlers.rpc_login
    rpc_logout = handlers.rpc_logout
    _account_updated = handlers._account_updated
    rpc_command_exec = handlers.rpc_command_exec
    rpc_command_exec_write = handlers.rpc_command_exec_write
    rpc_turn_start = handlers.rpc_turn_start
    rpc_turn_steer = handlers.rpc_turn_steer
    rpc_turn_interrupt = handlers.rpc_turn_interrupt
    rpc_settings_update = handlers.rpc_settings_update
    rpc_thread_revert = handlers.rpc_thread_revert
    rpc_thread_rollback = handlers.rpc_thread_rollback
    rpc_thread_compact = handlers.rpc_thread_compact
    rpc_shell_command = handlers.rpc_shell_command
    rpc_background_terminals_list = handlers.rpc_background_terminals_list
    rpc_background_terminals_clean = handlers.rpc_background_terminals_clean
    rpc_background_terminals_terminate = handlers.rpc_background_terminals_terminate
    rpc_inject_items = handlers.rpc_inject_items
    rpc_review_start = handlers.rpc_review_start
    rpc_goal_get = handlers.rpc_goal_get
    rpc_goal_set = handlers.rpc_goal_set
    rpc_goal_clear = handlers.rpc_goal_clear

    def __init__(self, conn_id: int, stream: FrameStream, info: ServerInfo,
                 hub: Mailbox[HubInbox], threads: Mailbox[RegistryInbox], approvals: Mailbox[ApprovalsInbox],
                 recorder: Recorder, *,
                 can_disconnect: bool = False, limits: Limits = Limits(),
                 handshake: Accepted | None = None) -> None:
        self.id = conn_id
        #: An ``initialize`` already answered on this connection before the
        #: server started (runtime/handshake.py): adopted as the first request.
        self._handshake = handshake
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
                if self._handshake is not None:
                    await self._adopt(self._handshake)
                with self._reading:
                    await self._read_loop()
                self._leave()
                with trio.move_on_after(FLUSH_TIMEOUT):
                    if not self._drop_backlog:
                        # Everything queued before the marker is still written.
                        await outbox.send(CLOSE)
                    else:
                        # A client that stopped reading gets none of its
                        # backlog: the marker wakes an idle writer, a busy
                        # one stops after the write in progress.
                        with contextlib.suppress(MailboxClosed):
                            outbox.send_nowait(CLOSE)
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

    async def _adopt(self, accepted: Accepted) -> None:
        """Start as if this connection had handled ``accepted`` (answered
        before the server started, runtime/handshake.py) itself: the same
        state, the same hub registration, the same analytics facts, its
        share of the request rate; its answer is already written."""
        rid, params = accepted.request_id, accepted.params
        self._rate.take(trio.current_time())
        if self.recorder.enabled:
            self.unanswered[rid] = ("initialize", None)
            self.recorder.record(facts.ClientRequest(
                connection_id=self.id, request_id=rid, method="initialize", thread_id=None))
        await self._register(params)
        if self.originator != params.client_info.name:
            # Only the process's first client can be answered early; a bug if not.
            log.error("connection %d: initialize answered at start-up with the originator %r, the hub's is %r",
                      self.id, params.client_info.name, self.originator)
        self._initialized(params)
        self._record_answers([Response(rid, accepted.response)])
        log.debug("connection %d: initialize answered at start-up (%s), adopted", self.id, params.client_info.name)

    def _leave(self) -> None:
        """Tell the hub and the threads this client is gone (once)."""
        if self.initialized and not self._left:
            self._left = True
            self.hub.send_nowait(Unregister(self.id))
            self.threads.send_nowait(ConnectionGone(self.id))

    async def _obey(self, orders: Inbox[CloseConnection]) -> None:
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
            if not self.experimental_api and isinstance(getattr(params, "approval_policy", None),
                                                        GranularAskForApproval):
                raise invalid_request("askForApproval.granular requires experimentalApi capability")
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

_EXPECTED = ", ".join(f"`{m}`" for m in sorted(set(METHODS) | ORIGINAL_METHODS))
