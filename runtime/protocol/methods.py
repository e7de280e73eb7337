"""THE method table: every client request the server serves, with its params
type, like the original's
``client_request_definitions!``. Dispatch, the unknown-method error and the
conformance tests all read it.

A method whose ``params`` is None takes no params. A method the original
has (:mod:`.original`) but :data:`METHODS` lacks is part of the 0.171.0
protocol that we do not serve yet: it gets -32601 naming it, while a method
the original does not know gets the original's -32600 "unknown variant".
"""

from __future__ import annotations

from typing import Any, NamedTuple

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


class MethodSpec(NamedTuple):
    #: The params Struct, or None for a method that takes none.
    params: Any


METHODS: dict[str, MethodSpec] = {
    "initialize": MethodSpec(InitializeParams),
    "thread/start": MethodSpec(ThreadStartParams),
    "thread/resume": MethodSpec(ThreadResumeParams),
    "thread/list": MethodSpec(ThreadListParams),
    "thread/loaded/list": MethodSpec(ThreadLoadedListParams),
    "thread/read": MethodSpec(ThreadReadParams),
    "thread/name/set": MethodSpec(ThreadNameSetParams),
    "thread/archive": MethodSpec(ThreadIdParams),
    "thread/unarchive": MethodSpec(ThreadIdParams),
    "thread/unsubscribe": MethodSpec(ThreadIdParams),
    "thread/fork": MethodSpec(ThreadForkParams),
    "thread/delete": MethodSpec(ThreadIdParams),
    "thread/turns/list": MethodSpec(ThreadTurnsListParams),
    "thread/items/list": MethodSpec(ThreadItemsListParams),
    "thread/metadata/update": MethodSpec(ThreadMetadataUpdateParams),
    "thread/compact/start": MethodSpec(ThreadIdParams),
    "thread/revert": MethodSpec(ThreadRevertParams),
    "thread/rollback": MethodSpec(ThreadRollbackParams),
    "thread/shellCommand": MethodSpec(ThreadShellCommandParams),
    "thread/backgroundTerminals/list": MethodSpec(ThreadBackgroundTerminalsListParams),
    "thread/backgroundTerminals/clean": MethodSpec(ThreadIdParams),
    "thread/backgroundTerminals/terminate": MethodSpec(ThreadBackgroundTerminalsTerminateParams),
    "thread/inject_items": MethodSpec(ThreadInjectItemsParams),
    "review/start": MethodSpec(ReviewStartParams),
    "thread/search": MethodSpec(ThreadSearchParams),
    "thread/search/stream": MethodSpec(ThreadSearchParams),
    "thread/search/cancel": MethodSpec(ThreadSearchCancelParams),
    "thread/search/stream/cancel": MethodSpec(ThreadSearchCancelParams),
    "thread/goal/get": MethodSpec(ThreadIdParams),
    "thread/goal/set": MethodSpec(ThreadGoalSetParams),
    "thread/goal/clear": MethodSpec(ThreadGoalClearParams),
    "turn/start": MethodSpec(TurnStartParams),
    "turn/interrupt": MethodSpec(TurnInterruptParams),
    "turn/steer": MethodSpec(TurnSteerParams),
    "model/list": MethodSpec(ModelListParams),
    "account/read": MethodSpec(AccountReadParams),
    "config/read": MethodSpec(ConfigReadParams),
    "configRequirements/read": MethodSpec(None),
    "skills/list": MethodSpec(CwdsParams),
    "hooks/list": MethodSpec(CwdsParams),
    "plugin/installed": MethodSpec(PluginInstalledParams),
    "app/list": MethodSpec(PagedParams),
    "experimentalFeature/list": MethodSpec(PagedParams),
    "collaborationMode/list": MethodSpec(EmptyParams),
    "permissionProfile/list": MethodSpec(PermissionProfileListParams),
    "mcpServerStatus/list": MethodSpec(McpServerStatusListParams),
    "mcpServer/tool/call": MethodSpec(McpServerToolCallParams),
    "mcpServer/resource/read": MethodSpec(McpServerResourceReadParams),
    "config/mcpServer/reload": MethodSpec(None),
    "account/bedrock/checkGovCloudRequirements": MethodSpec(EmptyParams),
    "command/exec": MethodSpec(CommandExecParams),
    "command/exec/write": MethodSpec(CommandExecWriteParams),
    "command/exec/resize": MethodSpec(CommandExecResizeParams),
    "command/exec/terminate": MethodSpec(CommandExecTerminateParams),
    "fs/readFile": MethodSpec(FsPathParams),
    "fs/writeFile": MethodSpec(FsWriteFileParams),
    "fs/getMetadata": MethodSpec(FsPathParams),
    "fs/readDirectory": MethodSpec(FsPathParams),
    "fs/createDirectory": MethodSpec(FsCreateDirectoryParams),
    "fs/remove": MethodSpec(FsRemoveParams),
    "fs/copy": MethodSpec(FsCopyParams),
    "fs/watch": MethodSpec(FsWatchParams),
    "fs/unwatch": MethodSpec(FsUnwatchParams),
    "fuzzyFileSearch": MethodSpec(FuzzyFileSearchParams),
    "fuzzyFileSearch/sessionStart": MethodSpec(FuzzySessionStartParams),
    "fuzzyFileSearch/sessionUpdate": MethodSpec(FuzzySessionUpdateParams),
    "fuzzyFileSearch/sessionStop": MethodSpec(FuzzySessionStopParams),
    "config/value/write": MethodSpec(ConfigValueWriteParams),
    "config/batchWrite": MethodSpec(ConfigBatchWriteParams),
    "modelProvider/list": MethodSpec(EmptyParams),
    "modelProvider/default/set": MethodSpec(ModelProviderDefaultSetParams),
    "experimentalFeature/enablement/set": MethodSpec(ExperimentalFeatureEnablementSetParams),
    "account/login/start": MethodSpec(LoginAccountParams),
    "account/logout": MethodSpec(None),
    "account/rateLimits/read": MethodSpec(None),
    "feedback/save": MethodSpec(FeedbackSaveParams),
    "plugin/list": MethodSpec(PluginListParams),
    "plugin/read": MethodSpec(PluginReadParams),
    "externalAgentConfig/detect": MethodSpec(ExternalAgentConfigDetectParams),
    "thread/readState/update": MethodSpec(ThreadReadStateUpdateParams),
    "thread/settings/update": MethodSpec(ThreadSettingsUpdateParams),
}

#: Every client request of the original, served or not.
ORIGINAL_METHODS = STABLE_REQUESTS | EXPERIMENTAL_REQUESTS


def is_experimental(method: str) -> bool:
    """Whether ``method`` needs ``capabilities.experimentalApi``."""
    return method in EXPERIMENTAL_REQUESTS
