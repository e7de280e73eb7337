"""Requests answered from CODEX_HOME alone, as codex-cli 0.171.0 answers them:
config writes, the model-provider catalog, the stored API-key login,
feedback saved to a local ZIP, and the plugin, import and feature requests
with nothing installed.

The config writes run in a worker thread (a write ends with an fsync, which
must not hold up the event loop), one at a time behind a lock, so each
read-modify-write is whole against other clients' writes. The rest are
small reads and writes done in place.
"""

from __future__ import annotations

import json
import os
import time
import tomllib
import uuid
import zipfile
from functools import partial
from pathlib import Path
from typing import Any

import trio

from ..config import auth
from ..config import Settings
from ..protocol.jsonrpc import invalid_request
from ..protocol.v2.account import (
    ExternalAgentConfigDetectParams,
    ExternalAgentConfigDetectResponse,
    FeedbackSaveParams,
    FeedbackSaveResponse,
    LoginAccountParams,
    PluginListParams,
    PluginListResponse,
    PluginReadParams,
)
from ..protocol.v2.config import (
    ConfigBatchWriteParams,
    ConfigEdit,
    ConfigValueWriteParams,
    ConfigWriteResponse,
    ExperimentalFeatureEnablementSetParams,
    ExperimentalFeatureEnablementSetResponse,
    ModelProviderDefaultSetParams,
    ModelProviderListResponse,
    ModelProviderSummary,
)
from ..protocol.v2.discovery import EmptyParams
from .rate_limits import RateLimits

#: The built-in provider the catalog always lists (the others appear only
#: when configured, as in 0.171.0).
OPENAI = "openai"


class LocalRequests:
    """The handlers; each takes the decoded params and returns the result."""

    def __init__(self, settings: Settings, cli_version: str, rate_limits: RateLimits) -> None:
        self.settings = settings
        self.rate_limits = rate_limits
        self.home = settings.codex_home
        self.config_file = settings.config_file
        self.cli_version = cli_version
        self._writing = trio.Lock()
        #: The layers over the user's config.toml (a --profile file, -c
        #: flags), highest first: the writes say when one shadows them.
        self._above = [layer for layer in settings.layers
                       if layer["name"] != {"type": "user", "file": str(settings.config_file), "profile": None}]

    # --- config writes ---------------------------------------------------

    async def config_value_write(self, params: ConfigValueWriteParams) -> ConfigWriteResponse:
        edit = ConfigEdit(params.key_path, params.value, params.merge_strategy)
        return await self._write([edit], params.expected_version, params.file_path)

    async def config_batch_write(self, params: ConfigBatchWriteParams) -> ConfigWriteResponse:
        return await self._write(params.edits, params.expected_version, params.file_path)

    async def _write(self, edits: list[ConfigEdit], expected_version: str | None = None,
                     file_path: str | None = None) -> ConfigWriteResponse:
        # config_write (tomlkit) is loaded on the first write, off start-up.
        from ..config.write import apply_edits

        async with self._writing:
            return await trio.to_thread.run_sync(partial(
                apply_edits, self.config_file, edits, expected_version=expected_version, file_path=file_path,
                above=self._above))

    def model_provider_list(self, params: EmptyParams) -> ModelProviderListResponse:
        user = self._user_config()
        configured = user.get("model_providers") or {}
        data = [_summary(pid, entry) for pid, entry in configured.items() if isinstance(entry, dict)]
        data.append(ModelProviderSummary(id=OPENAI, name="OpenAI", can_edit=False, base_url=None,
                                         settings={"type": "openai"}))
        default = user.get("model_provider")
        return ModelProviderListResponse(data, default if isinstance(default, str) else OPENAI)

    async def model_provider_default_set(self, params: ModelProviderDefaultSetParams) -> ConfigWriteResponse:
        known = {OPENAI, *(self._user_config().get("model_providers") or {}), *self.settings.model_providers}
        if params.provider_id not in known:
            from ..config.write import write_error

            raise write_error("configValidationError", f"Model provider `{params.provider_id}` is not configured.")
        return await self._write([ConfigEdit("model_provider", params.provider_id, "replace")])

    def feature_enablement_set(self, params: ExperimentalFeatureEnablementSetParams
                               ) -> ExperimentalFeatureEnablementSetResponse:
        return ExperimentalFeatureEnablementSetResponse()

    def _user_config(self) -> dict[str, Any]:
        try:
            return tomllib.loads(self.config_file.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError):
            return {}

    # --- account ---------------------------------------------------------

    def login_api_key(self, params: LoginAccountParams) -> None:
        """Store the key (raises for what is not an API-key login)."""
        if params.type != "apiKey":
            raise invalid_request(f"login type `{params.type}` needs OpenAI's sign-in service, which trio-codex "
                                  "does not reach: log in with an API key (type \"apiKey\")")
        if params.api_key is None:
            raise invalid_request("Invalid request: missing field `apiKey`")
        auth.store_api_key(self.home, params.api_key)

    def logout(self) -> None:
        auth.remove(self.home)

    def rate_limits_read(self, params: None) -> Any:
        """The usage windows the provider last reported in its response
        headers; without any, the original's answer for an API-key or no
        login (an error: it reads them from ChatGPT's backend)."""
        if (snapshot := self.rate_limits.latest) is not None:
            return {"rateLimits": snapshot, "rateLimitsByLimitId": {snapshot["limitId"]: snapshot}}
        if auth.read_api_key(self.home) is None:
            raise invalid_request("codex account authentication required to read rate limits")
        raise invalid_request("chatgpt authentication required to read rate limits")

    # --- feedback, plugins, imports --------------------------------------

    def feedback_save(self, params: FeedbackSaveParams) -> FeedbackSaveResponse:
        """A ZIP as the original writes it (``report.json`` and an empty
        ``manifest.json``; no logs are kept here to include)."""
        path = Path(params.save_path)
        if not path.is_absolute():
            raise invalid_request("feedback savePath must be an absolute host path")
        thread_id = params.thread_id or f"no-active-thread-{uuid.uuid4()}"
        title = f"[{params.classification.capitalize()}]: Codex session {thread_id}"
        tags = {**(params.tags or {}), "classification": params.classification, "cli_version": self.cli_version,
                "session_source": "vscode", "thread_id": thread_id}
        if params.reason is not None:
            tags["reason"] = params.reason
        report = {"event_id": uuid.uuid4().hex, "message": title, "timestamp": time.time(),
                  "exception": {"values": [{"type": title, "value": params.reason or ""}]}, "tags": tags}
        try:
            with open(path, "xb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
                z.writestr("report.json", json.dumps(report, separators=(",", ":")))
                z.writestr("manifest.json", "[]")
        except FileExistsError:
            raise invalid_request("failed to save feedback: feedback save path already exists") from None
        except OSError as exc:
            raise invalid_request(f"failed to save feedback: {exc.strerror}: {path}") from None
        return FeedbackSaveResponse(saved_path=str(path), thread_id=thread_id)

    def plugin_list(self, params: PluginListParams) -> PluginListResponse:
        return PluginListResponse()

    def plugin_read(self, params: PluginReadParams) -> Any:
        if (params.marketplace_path is None) == (params.remote_marketplace_name is None):
            raise invalid_request("plugin/read requires exactly one of marketplacePath or remoteMarketplaceName")
        if params.remote_marketplace_name is not None:
            raise invalid_request("read remote plugin details: chatgpt authentication required for remote plugin "
                                  "catalog; api key auth is not supported")
        if not os.path.exists(params.marketplace_path or ""):
            raise invalid_request(f"marketplace file `{params.marketplace_path}` does not exist")
        raise invalid_request(f"plugin `{params.plugin_name}` was not found in marketplace "
                              f"`{params.marketplace_path}`: trio-codex installs no plugins")

    def external_agent_detect(self, params: ExternalAgentConfigDetectParams) -> ExternalAgentConfigDetectResponse:
        return ExternalAgentConfigDetectResponse()


def _summary(pid: str, entry: dict[str, Any]) -> ModelProviderSummary:
    if isinstance(entry.get("env_key"), str):
        gateway_auth: dict[str, Any] = {"mode": "environmentVariable", "envKey": entry["env_key"]}
    elif entry.get("auth") is not None or entry.get("experimental_bearer_token") is not None:
        gateway_auth = {"mode": "externallyConfigured", "envKey": None}
    else:
        gateway_auth = {"mode": "none"}
    base_url = entry.get("base_url")
    return ModelProviderSummary(id=pid, name=str(entry.get("name") or pid), can_edit=True,
                                base_url=base_url if isinstance(base_url, str) else None,
                                settings={"type": "customGateway", "auth": gateway_auth})
