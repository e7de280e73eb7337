"""The connection's handlers of the method table's rows: those it answers
itself (CONNECTION: server info, config files, fs, command/exec, login) and
the messages it builds for the loaded thread a THREAD row names (functions of
:class:`~.session.Connection`, bound as its methods)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from ...runtime.conversation import review
from ...runtime.kernel.ask import ask
from ...runtime.kernel.clock import now_ms
from ...runtime.protocol.jsonrpc import (
    ALREADY_INITIALIZED,
    Notification,
    MAX_INPUT_CHARS,
    RequestId,
    Response,
    input_too_large,
    invalid_params,
    invalid_request,
)
from ...runtime.protocol.v2.account import (
    AccountUpdatedNotification,
    ApiKeyLoginResponse,
    Empty,
    LoginAccountParams,
    LoginCompletedNotification,
)
from ...runtime.handshake import HEADER_VALUE
from ...runtime.protocol.v2.initialize import InitializeParams, InitializeResponse
from ...runtime.protocol.v2.item import TextInput
from ...runtime.protocol.v2.thread import (
    ReviewStartParams,
    ThreadBackgroundTerminalsListParams,
    ThreadBackgroundTerminalsTerminateParams,
    ThreadGoalClearParams,
    ThreadGoalSetParams,
    ThreadIdParams,
    ThreadInjectItemsParams,
    ThreadRevertParams,
    ThreadRollbackParams,
    ThreadShellCommandParams,
)
from ...runtime.protocol.v2.turn import ThreadSettingsUpdateParams, TurnInterruptParams, TurnStartParams, TurnSteerParams
from ..analytics import facts
from ..messages import (
    BackgroundTerminals,
    Broadcast,
    CompactThread,
    GoalRequest,
    InjectItems,
    InterruptTurn,
    Register,
    Reply,
    RevertThread,
    ReviewThread,
    ShellCommand,
    StartTurn,
    SteerTurn,
    UpdateSettings,
)

if TYPE_CHECKING:
    from .session import Connection


log = logging.getLogger("trio_codex.connection")

#: How long the handshake with the hub may take.
ASK_TIMEOUT = 10.0


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

async def rpc_fs_watch(self: Connection, rid: RequestId, params: Any) -> None:
    await self.files.watch(rid, params)

async def rpc_fuzzy_file_search(self: Connection, rid: RequestId, params: Any) -> None:
    await self.files.search(rid, params)

async def rpc_initialize(self: Connection, rid: RequestId, params: InitializeParams) -> None:
    if self.initialized:
        raise invalid_request(ALREADY_INITIALIZED)
    name = params.client_info.name
    if not name or not HEADER_VALUE.match(name):
        raise invalid_request(f"Invalid clientInfo.name: '{name}'. Must be a valid HTTP header value.")
    await self._register(params)
    await self._send(Response(rid, InitializeResponse(
        user_agent=self.info.user_agent(self.originator, params.client_info),
        codex_home=self.info.codex_home,
        platform_family=self.info.platform_family,
        platform_os=self.info.platform_os,
    )))
    self._initialized(params)

async def _register(self: Connection, params: InitializeParams) -> None:
    """Take the client's info and capabilities; the hub names the originator."""
    self.legacy_error_info = _older_than_0171(params.client_info.version)
    caps = params.capabilities
    if caps is not None:
        self.experimental_api = caps.experimental_api
        self.opt_out = frozenset(caps.opt_out_notification_methods or ())
    name = params.client_info.name
    self.originator = await ask(self.hub, lambda slot: Register(self.ref, name, slot), timeout=ASK_TIMEOUT)
    self.initialized = True

def _initialized(self: Connection, params: InitializeParams) -> None:
    """What follows an ``initialize`` answered: start-up's background
    work may begin; the analytics fact."""
    self.info.answered_initialize.set()
    self.recorder.record(facts.Initialize(connection_id=self.id, client_name=params.client_info.name,
                                          client_version=params.client_info.version,
                                          transport=self.stream.peer.split(":")[0]))

async def rpc_login(self: Connection, rid: RequestId, params: LoginAccountParams) -> None:
    """As the original: the answer, ``account/login/completed`` to this
    client, then ``account/updated`` to every client."""
    self.info.local.login_api_key(params)
    await self._send(Response(rid, ApiKeyLoginResponse()))
    await self._send(Notification("account/login/completed", LoginCompletedNotification(success=True),
                                  now_ms()))
    self._account_updated("apikey")

async def rpc_logout(self: Connection, rid: RequestId, params: None) -> None:
    self.info.local.logout()
    await self._send(Response(rid, Empty()))
    self._account_updated(None)

def _account_updated(self: Connection, mode: Literal["apikey"] | None) -> None:
    # After the answer: a full hub drops the notice (logged) rather than
    # answering the request a second time.
    note = Notification("account/updated", AccountUpdatedNotification(auth_mode=mode), now_ms())
    if not self.hub.send_nowait(Broadcast(note)):
        log.warning("connection %d: account/updated not sent: the hub is full", self.id)

async def rpc_command_exec(self: Connection, rid: RequestId, params: Any) -> None:
    await self.execs.start(rid, params)

async def rpc_command_exec_write(self: Connection, rid: RequestId, params: Any) -> None:
    # Queued for the process's writer task: the reader never waits on it.
    if (result := self.execs.write(rid, params)) is not None:
        await self._send(Response(rid, result))

# --- message builders of the method table's THREAD rows -------------------

def rpc_turn_start(self: Connection, reply: Reply, params: TurnStartParams) -> StartTurn:
    chars = sum(len(i.text) for i in params.input if isinstance(i, TextInput))
    if chars > MAX_INPUT_CHARS:
        raise input_too_large(chars)
    return StartTurn(reply, params, self.info.turn_permissions(params))

def rpc_turn_steer(self: Connection, reply: Reply, params: TurnSteerParams) -> SteerTurn:
    return SteerTurn(reply, tuple(params.input), params.expected_turn_id)

def rpc_turn_interrupt(self: Connection, reply: Reply, params: TurnInterruptParams) -> InterruptTurn:
    return InterruptTurn(reply, params.turn_id)

def rpc_settings_update(self: Connection, reply: Reply, params: ThreadSettingsUpdateParams) -> UpdateSettings:
    return UpdateSettings(reply, params, self.info.turn_permissions(params))

def rpc_thread_revert(self: Connection, reply: Reply, params: ThreadRevertParams) -> RevertThread:
    return RevertThread(reply, params.before_turn_id)

def rpc_thread_rollback(self: Connection, reply: Reply, params: ThreadRollbackParams) -> RevertThread:
    if params.num_turns < 1:
        raise invalid_request("numTurns must be >= 1")
    return RevertThread(reply, None, params.num_turns)

def rpc_thread_compact(self: Connection, reply: Reply, params: ThreadIdParams) -> CompactThread:
    return CompactThread(reply)

def rpc_shell_command(self: Connection, reply: Reply, params: ThreadShellCommandParams) -> ShellCommand:
    command = params.command.strip()
    if not command:
        raise invalid_request("command must not be empty")
    if params.timeout_ms is not None and params.timeout_ms < 0:
        raise invalid_params(f"thread/shellCommand timeoutMs must be non-negative, got {params.timeout_ms}")
    return ShellCommand(reply, command, params.timeout_ms)

def rpc_background_terminals_list(self: Connection, reply: Reply, params: ThreadBackgroundTerminalsListParams
                                  ) -> BackgroundTerminals:
    return BackgroundTerminals(reply, "list", limit=params.limit, cursor=params.cursor)

def rpc_background_terminals_clean(self: Connection, reply: Reply, params: ThreadIdParams) -> BackgroundTerminals:
    return BackgroundTerminals(reply, "clean")

def rpc_background_terminals_terminate(self: Connection, reply: Reply, params: ThreadBackgroundTerminalsTerminateParams
                                       ) -> BackgroundTerminals:
    return BackgroundTerminals(reply, "terminate", process_id=params.process_id)

def rpc_inject_items(self: Connection, reply: Reply, params: ThreadInjectItemsParams) -> InjectItems:
    return InjectItems(reply, tuple(msgspec.Raw(msgspec.json.encode(item)) for item in params.items))

def rpc_review_start(self: Connection, reply: Reply, params: ReviewStartParams) -> ReviewThread:
    target = msgspec.to_builtins(params.target)
    try:
        review.prompt(target, None)
    except review.ReviewTargetError as exc:
        raise invalid_request(str(exc)) from None
    return ReviewThread(reply, params.target)

def rpc_goal_get(self: Connection, reply: Reply, params: ThreadIdParams) -> GoalRequest:
    return GoalRequest(reply, params)

def rpc_goal_set(self: Connection, reply: Reply, params: ThreadGoalSetParams) -> GoalRequest:
    return GoalRequest(reply, params)

def rpc_goal_clear(self: Connection, reply: Reply, params: ThreadGoalClearParams) -> GoalRequest:
    return GoalRequest(reply, params)


def _older_than_0171(version: str) -> bool:
    """Whether a client's version reads as a codex release before 0.171
    (``0.169.0``); other version schemes are taken as current."""
    parts = version.split("-")[0].split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return False
    return (int(parts[0]), int(parts[1])) < (0, 171)
