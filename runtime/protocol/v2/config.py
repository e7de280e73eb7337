"""Config writes and model providers: ``config/value/write``,
``config/batchWrite``, ``modelProvider/list``, ``modelProvider/default/set``
and ``experimentalFeature/enablement/set`` (codex-cli 0.171.0)."""

from __future__ import annotations

from typing import Any, Literal

from ._base import Wire

MergeStrategy = Literal["replace", "upsert"]


class ConfigEdit(Wire, frozen=True):
    key_path: str
    value: Any
    merge_strategy: MergeStrategy


class ConfigValueWriteParams(Wire, frozen=True):
    key_path: str
    value: Any
    merge_strategy: MergeStrategy
    expected_version: str | None = None
    file_path: str | None = None


class ConfigBatchWriteParams(Wire, frozen=True):
    edits: list[ConfigEdit]
    expected_version: str | None = None
    file_path: str | None = None
    #: Hot-reload into loaded threads: their settings are fixed at start here.
    reload_user_config: bool = False


class ConfigWriteResponse(Wire, frozen=True):
    status: Literal["ok", "okOverridden"]
    version: str
    file_path: str
    overridden_metadata: dict[str, Any] | None = None


class ModelProviderDefaultSetParams(Wire, frozen=True):
    provider_id: str


class ModelProviderSummary(Wire, frozen=True):
    id: str
    name: str
    can_edit: bool
    base_url: str | None
    settings: dict[str, Any]


class ModelProviderListResponse(Wire, frozen=True):
    data: list[ModelProviderSummary]
    default_provider_id: str
    can_change_default: bool = True


class ExperimentalFeatureEnablementSetParams(Wire, frozen=True):
    enablement: dict[str, bool]


class ExperimentalFeatureEnablementSetResponse(Wire, frozen=True):
    #: The entries this request changed: none, as 0.171.0 answers for any
    #: feature with nothing installed that reads them at run time.
    enablement: dict[str, bool] = {}
