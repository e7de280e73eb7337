"""The model-provider catalog, read the way the original ``codex`` (0.169) reads it.

The built-ins (``openai``, ``amazon-bedrock``, ``ollama``, ``lmstudio``, and
our ``scripted``) cannot be redefined, and defining one is an error, as in
the original. ``[model_providers.<id>]`` adds others. :func:`catalog` builds
the whole catalog when the settings load; :func:`resolve_provider` turns one
entry into what an HTTP client needs. It reads API keys from the environment
when it is called, not at load time. As in 0.169, ``openai`` takes its URL
from ``openai_base_url`` alone (the ``OPENAI_BASE_URL`` variable is no longer
read) and its key from the stored login, not from ``OPENAI_API_KEY``.

The rules come from codex-rs ``model-provider-info``, checked against the
0.169.0 binary.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec

from . import auth
from .errors import ConfigError

if TYPE_CHECKING:
    from .settings import Settings

__all__ = [
    "SCRIPTED_PROVIDER_ID",
    "ModelProviderInfo",
    "ResolvedProvider",
    "catalog",
    "check_providers",
    "resolve_provider",
    "unknown_provider",
]

OPENAI_PROVIDER_ID = "openai"
AMAZON_BEDROCK_PROVIDER_ID = "amazon-bedrock"
_OLLAMA_PROVIDER_ID = "ollama"
_LMSTUDIO_PROVIDER_ID = "lmstudio"
#: Our built-in provider: the embedded, offline, scripted Responses server.
SCRIPTED_PROVIDER_ID = "scripted"

_OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
_AMAZON_BEDROCK_DEFAULT_BASE_URL = "https://bedrock-mantle.us-east-1.api.aws/v1"
_OSS_DEFAULT_PORTS = {_OLLAMA_PROVIDER_ID: 11434, _LMSTUDIO_PROVIDER_ID: 1234}

_DEFAULT_REQUEST_MAX_RETRIES = 4
_DEFAULT_STREAM_MAX_RETRIES = 5
_MAX_RETRIES = 100
_DEFAULT_STREAM_IDLE_TIMEOUT_MS = 300_000
_DEFAULT_WEBSOCKET_CONNECT_TIMEOUT_MS = 15_000

CHAT_WIRE_API_REMOVED = (
    '`wire_api = "chat"` is no longer supported.\n'
    'How to fix: set `wire_api = "responses"` in your provider config.\n'
    "More info: https://github.com/openai/codex/discussions/7782"
)
_OLLAMA_CHAT_REMOVED = (
    "`ollama-chat` is no longer supported.\n"
    "How to fix: replace `ollama-chat` with `ollama` in `model_provider`, "
    "`oss_provider`, or `--local-provider`.\n"
    "More info: https://github.com/openai/codex/discussions/7782"
)

_U64 = Annotated[int, msgspec.Meta(ge=0)]


class ModelProviderInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One ``[model_providers.<id>]`` entry, as written (the original's
    ``ModelProviderInfo``). Unset numbers mean the defaults, which
    :func:`resolve_provider` applies."""

    name: str = ""
    base_url: str | None = None
    env_key: str | None = None
    env_key_instructions: str | None = None
    experimental_bearer_token: str | None = None
    # Command-backed token (``{command, args, ...}``) and AWS SigV4 settings.
    # Both are validated as the original does. resolve_provider refuses them,
    # because we cannot yet honour them.
    auth: dict[str, Any] | None = None
    aws: dict[str, Any] | None = None
    wire_api: Literal["responses"] = "responses"
    query_params: dict[str, str] | None = None
    http_headers: dict[str, str] | None = None
    env_http_headers: dict[str, str] | None = None
    request_max_retries: _U64 | None = None
    stream_max_retries: _U64 | None = None
    stream_idle_timeout_ms: _U64 | None = None
    websocket_connect_timeout_ms: _U64 | None = None
    requires_openai_auth: bool = False
    supports_websockets: bool = False


class ResolvedProvider(msgspec.Struct, frozen=True, kw_only=True):
    """What a Responses client needs to talk to one provider.

    ``base_url`` is None only for ``scripted``, where the host starts the
    embedded server. ``api_key`` goes in ``Authorization: Bearer``. It comes
    from ``env_key``, else from ``experimental_bearer_token``. When it is None
    and ``requires_openai_auth`` is true, the credential comes from the
    user's stored login, as in the original, which ignores
    ``OPENAI_API_KEY``.
    """

    id: str
    name: str
    base_url: str | None
    api_key: str | None
    requires_openai_auth: bool
    headers: dict[str, str]
    query_params: dict[str, str]
    request_max_retries: int
    stream_max_retries: int
    stream_idle_timeout_ms: int
    websocket_connect_timeout_ms: int
    supports_websockets: bool


def resolve_provider(
    settings: Settings,
    provider_id: str | None = None,
    *,
    env: Mapping[str, str] = os.environ,
) -> ResolvedProvider:
    """Resolve *provider_id* (default: ``settings.model_provider``).

    The API key is read from ``env_key`` now. As in the original, a set
    ``env_key`` whose variable is missing or blank is an error, and
    ``env_key_instructions`` is added to it. Retry counts are capped at 100.
    ``env_http_headers`` whose variables are missing or blank are left out.
    """
    pid = settings.model_provider if provider_id is None else provider_id
    info = settings.model_providers.get(pid)
    if info is None:
        raise ConfigError(unknown_provider(pid, settings.model_providers))
    if pid == AMAZON_BEDROCK_PROVIDER_ID:
        raise ConfigError(
            f"model provider `{pid}` needs AWS SigV4 signing, which trio-codex does "
            "not support; define a provider that takes an API key under another id"
        )
    if info.auth is not None:
        raise ConfigError(
            f"model provider `{pid}` uses `auth.command`, which trio-codex does not "
            "support yet; use `env_key` or `experimental_bearer_token` instead"
        )
    api_key = info.experimental_bearer_token
    if api_key is None and info.requires_openai_auth:
        api_key = auth.read_api_key(settings.codex_home)
    if info.env_key is not None:
        api_key = env.get(info.env_key, "")
        if not api_key.strip():
            hint = f" {info.env_key_instructions}" if info.env_key_instructions else ""
            raise ConfigError(f"Missing environment variable: `{info.env_key}`.{hint}")
    headers = dict(info.http_headers or {})
    for header, var in (info.env_http_headers or {}).items():
        value = env.get(var, "")
        if value.strip():
            headers[header] = value
    if pid == SCRIPTED_PROVIDER_ID:
        base_url = None
    else:
        base_url = info.base_url or _OPENAI_DEFAULT_BASE_URL
    return ResolvedProvider(
        id=pid,
        name=info.name,
        base_url=base_url,
        api_key=api_key,
        requires_openai_auth=info.requires_openai_auth,
        headers=headers,
        query_params=dict(info.query_params or {}),
        request_max_retries=min(
            _default(info.request_max_retries, _DEFAULT_REQUEST_MAX_RETRIES), _MAX_RETRIES
        ),
        stream_max_retries=min(
            _default(info.stream_max_retries, _DEFAULT_STREAM_MAX_RETRIES), _MAX_RETRIES
        ),
        stream_idle_timeout_ms=_default(
            info.stream_idle_timeout_ms, _DEFAULT_STREAM_IDLE_TIMEOUT_MS
        ),
        websocket_connect_timeout_ms=_default(
            info.websocket_connect_timeout_ms, _DEFAULT_WEBSOCKET_CONNECT_TIMEOUT_MS
        ),
        supports_websockets=info.supports_websockets,
    )


def check_providers(
    configured: Mapping[str, ModelProviderInfo],
    fail: Callable[[Sequence[str], str], ConfigError],
) -> None:
    # The original's validate_model_providers, in a stable order.
    reserved = sorted(
        key
        for key in configured
        if key in _BUILT_IN_PROVIDER_IDS and key != AMAZON_BEDROCK_PROVIDER_ID
    )
    if reserved:
        raise fail(
            ("model_providers", reserved[0]),
            "model_providers contains reserved built-in provider IDs: "
            + ", ".join(f"`{key}`" for key in reserved)
            + ". Built-in providers cannot be overridden. Rename your custom provider "
            "(for example, `openai-custom`).",
        )
    for key, info in sorted(configured.items()):
        if key == AMAZON_BEDROCK_PROVIDER_ID:
            continue
        if info.aws is not None:
            raise fail(
                ("model_providers", key, "aws"),
                f"provider aws is only supported for `{AMAZON_BEDROCK_PROVIDER_ID}`",
            )
        if not info.name.strip():
            raise fail(("model_providers", key), "provider name must not be empty")
        if info.auth is None:
            continue
        command = info.auth.get("command")
        if not isinstance(command, str) or not command.strip():
            raise fail(
                ("model_providers", key, "auth"), "provider auth.command must not be empty"
            )
        conflicts = [
            name
            for name, present in (
                ("env_key", info.env_key is not None),
                ("experimental_bearer_token", info.experimental_bearer_token is not None),
                ("requires_openai_auth", info.requires_openai_auth),
            )
            if present
        ]
        if conflicts:
            raise fail(
                ("model_providers", key, "auth"),
                "provider auth cannot be combined with " + ", ".join(conflicts),
            )


_BUILT_IN_PROVIDER_IDS = (
    OPENAI_PROVIDER_ID,
    AMAZON_BEDROCK_PROVIDER_ID,
    _OLLAMA_PROVIDER_ID,
    _LMSTUDIO_PROVIDER_ID,
    SCRIPTED_PROVIDER_ID,
)


def catalog(
    configured: Mapping[str, ModelProviderInfo], openai_base_url: str | None, env: Mapping[str, str]
) -> dict[str, ModelProviderInfo]:
    """The built-ins, then the *configured* entries (checked first by
    :func:`check_providers`). A configured ``amazon-bedrock`` only sets the
    built-in's AWS profile."""
    providers = _built_in_providers(configured, openai_base_url, env)
    providers.update((key, info) for key, info in configured.items() if key != AMAZON_BEDROCK_PROVIDER_ID)
    return providers


def _built_in_providers(
    configured: Mapping[str, ModelProviderInfo], openai_base_url: str | None, env: Mapping[str, str]
) -> dict[str, ModelProviderInfo]:
    bedrock = configured.get(AMAZON_BEDROCK_PROVIDER_ID)
    aws_profile = (bedrock.aws or {}).get("profile") if bedrock is not None else None
    providers = {
        OPENAI_PROVIDER_ID: ModelProviderInfo(
            name="OpenAI",
            base_url=openai_base_url,
            env_http_headers={
                "OpenAI-Organization": "OPENAI_ORGANIZATION",
                "OpenAI-Project": "OPENAI_PROJECT",
            },
            requires_openai_auth=True,
            supports_websockets=True,
        ),
        AMAZON_BEDROCK_PROVIDER_ID: ModelProviderInfo(
            name="Amazon Bedrock",
            base_url=_AMAZON_BEDROCK_DEFAULT_BASE_URL,
            aws={"profile": aws_profile},
        ),
    }
    for pid, default_port in _OSS_DEFAULT_PORTS.items():
        providers[pid] = ModelProviderInfo(name="gpt-oss", base_url=_oss_base_url(default_port, env))
    providers[SCRIPTED_PROVIDER_ID] = ModelProviderInfo(name="Scripted")
    return providers


def _oss_base_url(default_port: int, env: Mapping[str, str]) -> str:
    # The original's experimental CODEX_OSS_BASE_URL / CODEX_OSS_PORT.
    base_url = env.get("CODEX_OSS_BASE_URL", "")
    if base_url.strip():
        return base_url
    port = env.get("CODEX_OSS_PORT", "")
    if not (re.fullmatch(r"\+?\d+", port) and int(port) <= 0xFFFF):
        port = str(default_port)
    return f"http://localhost:{int(port)}/v1"


def unknown_provider(pid: str, known: Mapping[str, ModelProviderInfo]) -> str:
    if pid == "ollama-chat":
        return _OLLAMA_CHAT_REMOVED
    names = ", ".join(f"`{key}`" for key in sorted(known))
    return (
        f"model provider `{pid}` not found; known providers: {names}. "
        "Define it under [model_providers] or pick a known one."
    )


def _default(value: int | None, default: int) -> int:
    return default if value is None else value
