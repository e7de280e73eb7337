"""Signing in and out (``account/login/start`` with an API key,
``account/logout``, ``account/updated``, ``account/login/completed``) and
the local answers about plugins, feedback, imports and read state
(codex-cli 0.171.0)."""

from __future__ import annotations

from typing import Any, Literal

from ._base import Wire


class LoginAccountParams(Wire, frozen=True):
    """All variants (``apiKey``, ``chatgpt``, ``chatgptDeviceCode``,
    ``chatgptAuthTokens``) decode here; only ``apiKey`` is served."""

    type: str
    api_key: str | None = None


class ApiKeyLoginResponse(Wire, frozen=True, tag_field="type", tag="apiKey"):
    pass


class LoginCompletedNotification(Wire, frozen=True):
    success: bool
    login_id: str | None = None
    error: str | None = None
    onboarding_entrypoint: str | None = None


class AccountUpdatedNotification(Wire, frozen=True):
    auth_mode: Literal["apikey"] | None = None
    plan_type: str | None = None
    reason: str | None = None


class Empty(Wire, frozen=True):
    pass


class FeedbackSaveParams(Wire, frozen=True):
    classification: str
    save_path: str
    reason: str | None = None
    include_logs: bool = False
    thread_id: str | None = None
    tags: dict[str, str] | None = None
    extra_log_files: list[str] | None = None


class FeedbackSaveResponse(Wire, frozen=True):
    saved_path: str
    thread_id: str
    prompt_hash: str | None = None


class PluginListParams(Wire, frozen=True):
    cwds: list[str] | None = None
    force_refetch: bool = False
    marketplace_kinds: list[str] | None = None


class PluginListResponse(Wire, frozen=True):
    marketplaces: list[Any] = []
    marketplace_load_errors: list[Any] = []
    featured_plugin_ids: list[str] = []


class PluginReadParams(Wire, frozen=True):
    plugin_name: str
    marketplace_path: str | None = None
    remote_marketplace_name: str | None = None


class ExternalAgentConfigDetectParams(Wire, frozen=True):
    cwds: list[str] | None = None
    include_home: bool = False
    max_session_age_days: int | None = None
    max_sessions: int | None = None
    migration_source: str | None = None
    source: str | None = None


class ExternalAgentConfigDetectResponse(Wire, frozen=True):
    items: list[Any] = []
    connectors: list[Any] = []


class ReadStateOperation(Wire, frozen=True):
    type: Literal["read", "unread"]


class ThreadReadStateUpdateParams(Wire, frozen=True):
    thread_id: str
    operation: ReadStateOperation
    expected_revision: str
