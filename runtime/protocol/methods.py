"""THE method table: every client request the server serves, with its params
type, who answers it and the handler that does, like the original's
``client_request_definitions!``. Dispatch, the unknown-method error and the
conformance tests all read it.

A method whose ``params`` is None takes no params. A method the original
has (:mod:`.original`) but :data:`METHODS` lacks is part of the 0.171.0
protocol that we do not serve yet: it gets -32601 naming it, while a method
the original does not know gets the original's -32600 "unknown variant".

Serving a new method is one row here and one handler: a method named
``rpc_<handler>`` on the class that serves the row's :class:`Route` (see
:func:`dispatches`), which checks at import that the two agree.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

from .original import EXPERIMENTAL_REQUESTS, STABLE_REQUESTS
from .v2.account import (
    ExternalAgentConfigDetectParams,
    FeedbackSaveParams,
    LoginAccountParams,
    PluginListParams,
    PluginReadParams,
    ThreadReadStateUpdateParams,
)
from .v2.command import (
    CommandExecParams,
    CommandExecResizeParams,
    CommandExecTerminateParams,
    CommandExecWriteParams,
)
from .v2.config import (
    ConfigBatchWriteParams,
    ConfigValueWriteParams,
    ExperimentalFeatureEnablementSetParams,
    ModelProviderDefaultSetParams,
)
from .v2.discovery import CwdsParams, EmptyParams, PagedParams, PluginInstalledParams
from .v2.fs import (
    FsCopyParams,
    FsCreateDirectoryParams,
    FsPathParams,
    FsRemoveParams,
    FsUnwatchParams,
    FsWatchParams,
    FsWriteFileParams,
    FuzzyFileSearchParams,
    FuzzySessionStartParams,
    FuzzySessionStopParams,
    FuzzySessionUpdateParams,
)
from .v2.initialize import InitializeParams
from .v2.mcp import McpServerResourceReadParams, McpServerStatusListParams, McpServerToolCallParams
from .v2.models import AccountReadParams, ConfigReadParams, ModelListParams
from .v2.thread import (
    PermissionProfileListParams,
    ThreadBackgroundTerminalsListParams,
    ThreadBackgroundTerminalsTerminateParams,
    ThreadForkParams,
    ThreadGoalClearParams,
    ThreadGoalSetParams,
    ThreadIdParams,
    ThreadInjectItemsParams,
    ThreadItemsListParams,
    ThreadListParams,
    ThreadLoadedListParams,
    ThreadMetadataUpdateParams,
    ThreadNameSetParams,
    ThreadReadParams,
    ThreadResumeParams,
    ThreadRevertParams,
    ReviewStartParams,
    ThreadRollbackParams,
    ThreadSearchCancelParams,
    ThreadSearchParams,
    ThreadShellCommandParams,
    ThreadStartParams,
    ThreadTurnsListParams,
)
from .v2.turn import ThreadSettingsUpdateParams, TurnInterruptParams, TurnStartParams, TurnSteerParams


class Route(enum.Enum):
    """Who answers a request, and so which class holds its handler."""

    #: The connection answers it itself (server info, config files, fs,
    #: command/exec, login): ``Connection.rpc_<handler>(request_id, params)``.
    CONNECTION = "connection"
    #: The thread registry answers it, or hands it to the store, the MCP pool
    #: or the loaded thread it names (a method about any thread, loaded or
    #: not): ``ThreadRegistry.rpc_<handler>(request)``, a ThreadRequest.
    REGISTRY = "registry"
    #: The loaded thread ``params.thread_id`` names answers it (-32600 "thread
    #: not found" when none is loaded): the connection builds the thread's
    #: message, ``Connection.rpc_<handler>(reply, params) -> message``, and
    #: sends it through the registry.
    THREAD = "thread"


CONNECTION, REGISTRY, THREAD = Route.CONNECTION, Route.REGISTRY, Route.THREAD
#: What a handler's name is prefixed with on the class that binds it.
HANDLER_PREFIX = "rpc_"


class MethodSpec(NamedTuple):
    #: The params Struct, or None for a method that takes none.
    params: Any
    route: Route
    #: Its handler's name, without :data:`HANDLER_PREFIX`.
    handler: str


METHODS: dict[str, MethodSpec] = {
    "initialize": MethodSpec(InitializeParams, CONNECTION, "initialize"),
    "thread/start": MethodSpec(ThreadStartParams, REGISTRY, "thread_start"),
    "thread/resume": MethodSpec(ThreadResumeParams, REGISTRY, "thread_resume"),
    "thread/list": MethodSpec(ThreadListParams, REGISTRY, "thread_list"),
    "thread/loaded/list": MethodSpec(ThreadLoadedListParams, REGISTRY, "thread_loaded_list"),
    "thread/read": MethodSpec(ThreadReadParams, REGISTRY, "thread_read"),
    "thread/name/set": MethodSpec(ThreadNameSetParams, REGISTRY, "thread_name_set"),
    "thread/archive": MethodSpec(ThreadIdParams, REGISTRY, "thread_archive"),
    "thread/unarchive": MethodSpec(ThreadIdParams, REGISTRY, "thread_unarchive"),
    "thread/unsubscribe": MethodSpec(ThreadIdParams, REGISTRY, "thread_unsubscribe"),
    "thread/fork": MethodSpec(ThreadForkParams, REGISTRY, "thread_fork"),
    "thread/delete": MethodSpec(ThreadIdParams, REGISTRY, "thread_delete"),
    "thread/turns/list": MethodSpec(ThreadTurnsListParams, REGISTRY, "thread_turns_list"),
    "thread/items/list": MethodSpec(ThreadItemsListParams, REGISTRY, "thread_items_list"),
    "thread/metadata/update": MethodSpec(ThreadMetadataUpdateParams, REGISTRY, "thread_metadata_update"),
    "thread/compact/start": MethodSpec(ThreadIdParams, THREAD, "thread_compact"),
    "thread/revert": MethodSpec(ThreadRevertParams, THREAD, "thread_revert"),
    "thread/rollback": MethodSpec(ThreadRollbackParams, THREAD, "thread_rollback"),
    "thread/shellCommand": MethodSpec(ThreadShellCommandParams, THREAD, "shell_command"),
    "thread/backgroundTerminals/list": MethodSpec(ThreadBackgroundTerminalsListParams, THREAD,
                                                  "background_terminals_list"),
    "thread/backgroundTerminals/clean": MethodSpec(ThreadIdParams, THREAD, "background_terminals_clean"),
    "thread/backgroundTerminals/terminate": MethodSpec(ThreadBackgroundTerminalsTerminateParams, THREAD,
                                                       "background_terminals_terminate"),
    "thread/inject_items": MethodSpec(ThreadInjectItemsParams, THREAD, "inject_items"),
    "review/start": MethodSpec(ReviewStartParams, THREAD, "review_start"),
    "thread/search": MethodSpec(ThreadSearchParams, REGISTRY, "thread_search"),
    "thread/search/stream": MethodSpec(ThreadSearchParams, REGISTRY, "thread_search_stream"),
    "thread/search/cancel": MethodSpec(ThreadSearchCancelParams, CONNECTION, "thread_search_cancel"),
    "thread/search/stream/cancel": MethodSpec(ThreadSearchCancelParams, CONNECTION, "thread_search_stream_cancel"),
    "thread/goal/get": MethodSpec(ThreadIdParams, THREAD, "goal_get"),
    "thread/goal/set": MethodSpec(ThreadGoalSetParams, THREAD, "goal_set"),
    "thread/goal/clear": MethodSpec(ThreadGoalClearParams, THREAD, "goal_clear"),
    "turn/start": MethodSpec(TurnStartParams, THREAD, "turn_start"),
    "turn/interrupt": MethodSpec(TurnInterruptParams, THREAD, "turn_interrupt"),
    "turn/steer": MethodSpec(TurnSteerParams, THREAD, "turn_steer"),
    "model/list": MethodSpec(ModelListParams, CONNECTION, "model_list"),
    "account/read": MethodSpec(AccountReadParams, CONNECTION, "account_read"),
    "config/read": MethodSpec(ConfigReadParams, CONNECTION, "config_read"),
    "configRequirements/read": MethodSpec(None, CONNECTION, "config_requirements_read"),
    "skills/list": MethodSpec(CwdsParams, CONNECTION, "skills_list"),
    "hooks/list": MethodSpec(CwdsParams, CONNECTION, "hooks_list"),
    "plugin/installed": MethodSpec(PluginInstalledParams, CONNECTION, "plugin_installed"),
    "app/list": MethodSpec(PagedParams, CONNECTION, "app_list"),
    "experimentalFeature/list": MethodSpec(PagedParams, CONNECTION, "experimental_feature_list"),
    "collaborationMode/list": MethodSpec(EmptyParams, CONNECTION, "collaboration_mode_list"),
    "permissionProfile/list": MethodSpec(PermissionProfileListParams, CONNECTION, "permission_profile_list"),
    "mcpServerStatus/list": MethodSpec(McpServerStatusListParams, REGISTRY, "mcp_server_status_list"),
    "mcpServer/tool/call": MethodSpec(McpServerToolCallParams, REGISTRY, "mcp_tool_call"),
    "mcpServer/resource/read": MethodSpec(McpServerResourceReadParams, REGISTRY, "mcp_resource_read"),
    "config/mcpServer/reload": MethodSpec(None, REGISTRY, "mcp_reload"),
    "account/bedrock/checkGovCloudRequirements": MethodSpec(EmptyParams, CONNECTION, "gov_cloud_check"),
    "command/exec": MethodSpec(CommandExecParams, CONNECTION, "command_exec"),
    "command/exec/write": MethodSpec(CommandExecWriteParams, CONNECTION, "command_exec_write"),
    "command/exec/resize": MethodSpec(CommandExecResizeParams, CONNECTION, "command_exec_resize"),
    "command/exec/terminate": MethodSpec(CommandExecTerminateParams, CONNECTION, "command_exec_terminate"),
    "fs/readFile": MethodSpec(FsPathParams, CONNECTION, "fs_read_file"),
    "fs/writeFile": MethodSpec(FsWriteFileParams, CONNECTION, "fs_write_file"),
    "fs/getMetadata": MethodSpec(FsPathParams, CONNECTION, "fs_get_metadata"),
    "fs/readDirectory": MethodSpec(FsPathParams, CONNECTION, "fs_read_directory"),
    "fs/createDirectory": MethodSpec(FsCreateDirectoryParams, CONNECTION, "fs_create_directory"),
    "fs/remove": MethodSpec(FsRemoveParams, CONNECTION, "fs_remove"),
    "fs/copy": MethodSpec(FsCopyParams, CONNECTION, "fs_copy"),
    "fs/watch": MethodSpec(FsWatchParams, CONNECTION, "fs_watch"),
    "fs/unwatch": MethodSpec(FsUnwatchParams, CONNECTION, "fs_unwatch"),
    "fuzzyFileSearch": MethodSpec(FuzzyFileSearchParams, CONNECTION, "fuzzy_file_search"),
    "fuzzyFileSearch/sessionStart": MethodSpec(FuzzySessionStartParams, CONNECTION, "fuzzy_session_start"),
    "fuzzyFileSearch/sessionUpdate": MethodSpec(FuzzySessionUpdateParams, CONNECTION, "fuzzy_session_update"),
    "fuzzyFileSearch/sessionStop": MethodSpec(FuzzySessionStopParams, CONNECTION, "fuzzy_session_stop"),
    "config/value/write": MethodSpec(ConfigValueWriteParams, CONNECTION, "config_value_write"),
    "config/batchWrite": MethodSpec(ConfigBatchWriteParams, CONNECTION, "config_batch_write"),
    "modelProvider/list": MethodSpec(EmptyParams, CONNECTION, "model_provider_list"),
    "modelProvider/default/set": MethodSpec(ModelProviderDefaultSetParams, CONNECTION, "model_provider_default_set"),
    "experimentalFeature/enablement/set": MethodSpec(ExperimentalFeatureEnablementSetParams, CONNECTION,
                                                     "feature_enablement_set"),
    "account/login/start": MethodSpec(LoginAccountParams, CONNECTION, "login"),
    "account/logout": MethodSpec(None, CONNECTION, "logout"),
    "account/rateLimits/read": MethodSpec(None, CONNECTION, "rate_limits_read"),
    "feedback/save": MethodSpec(FeedbackSaveParams, CONNECTION, "feedback_save"),
    "plugin/list": MethodSpec(PluginListParams, CONNECTION, "plugin_list"),
    "plugin/read": MethodSpec(PluginReadParams, CONNECTION, "plugin_read"),
    "externalAgentConfig/detect": MethodSpec(ExternalAgentConfigDetectParams, CONNECTION, "external_agent_detect"),
    "thread/readState/update": MethodSpec(ThreadReadStateUpdateParams, REGISTRY, "read_state_update"),
    "thread/settings/update": MethodSpec(ThreadSettingsUpdateParams, THREAD, "settings_update"),
}

#: Every client request of the original, served or not.
ORIGINAL_METHODS = STABLE_REQUESTS | EXPERIMENTAL_REQUESTS


def is_experimental(method: str) -> bool:
    """Whether ``method`` needs ``capabilities.experimentalApi``."""
    return method in EXPERIMENTAL_REQUESTS


_Cls = TypeVar("_Cls", bound=type)


def dispatches(*routes: Route) -> Callable[[_Cls], _Cls]:
    """Class decorator of the class that serves ``routes``: binds the
    handler of each of their rows, by name, into ``cls.HANDLERS`` (method ->
    function, called with the instance first).

    Raises:
      TypeError: at import, when a row of ``routes`` has no handler on the
        class, or the class has a handler no row of ``routes`` names.
    """
    def bind(cls: _Cls) -> _Cls:
        rows = {method: spec for method, spec in METHODS.items() if spec.route in routes}
        named = {HANDLER_PREFIX + spec.handler for spec in rows.values()}
        missing = sorted(n for n in named if not callable(getattr(cls, n, None)))
        stray = sorted(n for n in dir(cls) if n.startswith(HANDLER_PREFIX) and n not in named)
        if missing or stray:
            raise TypeError(f"{cls.__name__} serves {', '.join(r.value for r in routes)}: "
                            f"handlers missing for rows of the method table: {missing}; "
                            f"handlers no row names: {stray} (runtime/protocol/methods.py)")
        setattr(cls, "HANDLERS", {method: getattr(cls, HANDLER_PREFIX + spec.handler) for method, spec in rows.items()})
        return cls
    return bind
