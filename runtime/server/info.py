"""What the server says about itself: the handshake facts and the answers to
the read-only requests a client makes before it starts a thread
(``model/list``, ``account/read``, ``config/read``, and the discovery
requests of ``protocol/v2/discovery.py``). Built once from the settings at
start-up; pure.
"""

from __future__ import annotations

import os
from typing import Any

import trio

from ..config import Settings, resolve_provider
from ..protocol.v2.discovery import (
    BedrockCheckGovCloudRequirementsResponse,
    CollaborationModeListResponse,
    ConfigRequirementsReadResponse,
    CwdsParams,
    EmptyPage,
    EmptyParams,
    HooksListEntry,
    HooksListResponse,
    PagedParams,
    PluginInstalledParams,
    PluginInstalledResponse,
    SkillsListEntry,
    SkillsListResponse,
)
from .. import handshake
from ..commands import permissions
from ..handshake import PROTOCOL_VERSION
from .local_requests import LocalRequests
from .rate_limits import RateLimits
from ..protocol.jsonrpc import invalid_request
from ..protocol.paging import offset_cursor, page_size
from ..protocol.v2.thread import PermissionProfileListParams, PermissionProfileListResponse
from ..protocol.v2.turn import ThreadSettingsUpdateParams, TurnStartParams
from ..protocol.v2.initialize import ClientInfo
from ..protocol.v2.models import (
    AccountReadParams,
    AccountReadResponse,
    ConfigReadParams,
    Model,
    ModelListParams,
    ModelListResponse,
    ReasoningEffortOption,
)

_EFFORTS = [
    ReasoningEffortOption("low", "Fast responses with lighter reasoning"),
    ReasoningEffortOption("medium", "Balances speed and reasoning depth for everyday tasks"),
    ReasoningEffortOption("high", "Greater reasoning depth for complex problems"),
    ReasoningEffortOption("xhigh", "Extra high reasoning depth for complex problems"),
]


class ServerInfo:
    def __init__(self, settings: Settings, rate_limits: RateLimits | None = None) -> None:
        self.settings = settings
        self.codex_home = str(settings.codex_home)
        self.platform_family = handshake.PLATFORM_FAMILY
        self.platform_os = handshake.PLATFORM_OS
        #: The requests answered from CODEX_HOME (config writes, login, ...).
        self.local = LocalRequests(settings, PROTOCOL_VERSION, rate_limits or RateLimits())
        self._ua_middle = handshake.user_agent_middle()
        #: Set once a connection's `initialize` is answered: start-up's
        #: background work waits for it (runtime/app.py).
        self.answered_initialize = trio.Event()

    def user_agent(self, originator: str, client: ClientInfo) -> str:
        return handshake.user_agent(originator, self._ua_middle, client)

    def model_list(self, params: ModelListParams) -> ModelListResponse:
        default = self.settings.model
        models = [Model(
            id=default, model=default, display_name=default,
            description="The model this server is configured with",
            hidden=False, is_default=True, default_reasoning_effort="medium",
            supported_reasoning_efforts=_EFFORTS,
        )]
        total = len(models)
        start = offset_cursor(params.cursor)
        if start > total:
            raise invalid_request(f"cursor {start} exceeds total models {total}")
        end = min(start + page_size(params.limit, total), total)
        return ModelListResponse(models[start:end], str(end) if end < total else None)

    def account_read(self, params: AccountReadParams) -> AccountReadResponse:
        provider = resolve_provider(self.settings)
        account: dict[str, Any] | None = None
        if provider.requires_openai_auth and provider.api_key:
            account = {"type": "apiKey"}
        return AccountReadResponse(account, requires_openai_auth=provider.requires_openai_auth and account is None)

    def config_read(self, params: ConfigReadParams) -> dict[str, Any]:
        return self.settings.config_read(include_layers=bool(params.include_layers))

    # --- discovery: nothing of these is configurable here, so empty answers

    def config_requirements(self, params: None) -> ConfigRequirementsReadResponse:
        return ConfigRequirementsReadResponse()

    def skills_list(self, params: CwdsParams) -> SkillsListResponse:
        return SkillsListResponse([SkillsListEntry(cwd) for cwd in self._cwds(params)])

    def hooks_list(self, params: CwdsParams) -> HooksListResponse:
        return HooksListResponse([HooksListEntry(cwd) for cwd in self._cwds(params)])

    def plugins_installed(self, params: PluginInstalledParams) -> PluginInstalledResponse:
        return PluginInstalledResponse()

    def empty_page(self, params: PagedParams) -> EmptyPage:
        return EmptyPage()

    def permission_profiles(self, params: PermissionProfileListParams) -> PermissionProfileListResponse:
        try:
            return permissions.list_profiles(self.settings, params)
        except ValueError as exc:
            raise invalid_request(str(exc)) from None

    def turn_permissions(self, params: TurnStartParams | ThreadSettingsUpdateParams) -> permissions.Permissions | None:
        """A turn/start's ``permissions`` profile, resolved (None: none named).

        Raises:
          JsonRpcError: it comes with ``sandboxPolicy``, or is unknown or unusable.
        """
        if params.permissions is None:
            return None
        if params.sandbox_policy is not None:
            raise invalid_request("`permissions` cannot be combined with `sandboxPolicy`")
        try:
            return permissions.resolve(self.settings, params.permissions)
        except permissions.PermissionsError as exc:
            raise invalid_request(str(exc)) from None

    def collaboration_modes(self, params: EmptyParams) -> CollaborationModeListResponse:
        return CollaborationModeListResponse()

    def gov_cloud_check(self, params: EmptyParams) -> BedrockCheckGovCloudRequirementsResponse:
        return BedrockCheckGovCloudRequirementsResponse()

    def _cwds(self, params: CwdsParams) -> list[str]:
        return params.cwds or [os.getcwd()]
