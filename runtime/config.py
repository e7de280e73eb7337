"""Configuration read the way the original ``codex`` (0.169) reads it.

A ``config.toml`` that points the original at a provider points us at the same
one. The rules come from codex-rs (the ``config`` crate's loader and merge, the
``-c`` parser in ``utils/cli``, ``model-provider-info``) and were checked
against the 0.169.0 binary. Where the two differed, the binary won.

Design:

* Loading happens once, at start, in three steps. First the *layers* are read.
  From lowest to highest precedence they are ``$CODEX_HOME/config.toml``, then
  ``$CODEX_HOME/<profile>.config.toml`` when a profile is selected (the
  original's ``--profile``), then the ``-c key=value`` overrides in order.
  Second, the layers are merged: tables merge key by key, and any other value
  replaces what is below it. Third, the merged table goes through
  ``msgspec.convert`` once, into frozen Structs. Nothing is re-read later.
* The merged table is kept whole in :attr:`Settings.effective`, unknown keys
  included. ``config/read`` returns it, and a newer config must not break an
  older server. The typed fields are only the subset we act on.
* A bad value raises :class:`ConfigError`, which names the key and the layer
  that set it (a file, or ``-c``). The key comes from msgspec's error path.
  msgspec writes ``[...]`` for a table key it does not name, so each ``[...]``
  becomes the first entry that fails the same way. The layer is the highest
  one that holds the key.
* Providers. The built-ins (``openai``, ``amazon-bedrock``, ``ollama``,
  ``lmstudio``, and our ``scripted``) cannot be redefined, and defining one is
  an error, as in the original. ``[model_providers.<id>]`` adds others.
  :func:`resolve_provider` turns a provider into what an HTTP client needs. It
  reads API keys from the environment when it is called, not at load time.
  As in 0.169, ``openai`` takes its URL from ``openai_base_url`` alone (the
  ``OPENAI_BASE_URL`` variable is no longer read) and its key from the stored
  login, not from ``OPENAI_API_KEY``.
"""

from __future__ import annotations

import hashlib
import json
import operator
import os
import re
import stat
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import msgspec

from . import auth

__all__ = [
    "DEFAULT_MODEL",
    "SCRIPTED_PROVIDER_ID",
    "AnalyticsConfig",
    "ApprovalMode",
    "ConfigError",
    "GranularApproval",
    "GranularApprovalConfig",
    "ModelProviderInfo",
    "ReasoningSummary",
    "ResolvedProvider",
    "SandboxMode",
    "SandboxWorkspaceWrite",
    "Settings",
    "find_codex_home",
    "load_settings",
    "parse_override",
    "resolve_provider",
]

#: The model when config names none. In 0.169 this is the bundled catalog's
#: default (``codex-rs/models-manager/models.json``, lowest ``priority``),
#: for every provider, as ``model/list`` and ``codex exec`` report.
DEFAULT_MODEL = "gpt-6.1-sol"

_CONFIG_TOML_FILE = "config.toml"
_PROFILE_CONFIG_SUFFIX = ".config.toml"

_OPENAI_PROVIDER_ID = "openai"
_AMAZON_BEDROCK_PROVIDER_ID = "amazon-bedrock"
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

_CHAT_WIRE_API_REMOVED = (
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


class ConfigError(Exception):
    """The configuration cannot be used. The message says where and why.

    ``key`` is the dotted key path at fault. ``file`` is the file that set it,
    or None when a ``-c`` override set it or no file is involved.
    """

    def __init__(
        self, message: str, *, key: str | None = None, file: Path | None = None
    ) -> None:
        super().__init__(message)
        self.key = key
        self.file = file


# --- typed settings ------------------------------------------------------------

_U64 = Annotated[int, msgspec.Meta(ge=0)]
ApprovalMode = Literal["untrusted", "on-request", "never"]
SandboxMode = Literal["read-only", "workspace-write", "danger-full-access"]
ReasoningSummary = Literal["auto", "concise", "detailed", "none"]


class GranularApprovalConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Per-flow approval switches. ``True`` lets a flow ask the user, and
    ``False`` rejects its requests automatically."""

    sandbox_approval: bool
    rules: bool
    skill_approval: bool = False
    request_permissions: bool = False
    mcp_elicitations: bool


class GranularApproval(msgspec.Struct, frozen=True):
    """``approval_policy = { granular = {...} }``. It encodes to the shape the
    app-server protocol uses for the same policy."""

    granular: GranularApprovalConfig


class SandboxWorkspaceWrite(msgspec.Struct, frozen=True, kw_only=True):
    """``[sandbox_workspace_write]``, used when the sandbox mode is
    ``workspace-write``. Relative ``writable_roots`` are made absolute against
    the directory of the file that lists them (``-c``: ``$CODEX_HOME``)."""

    writable_roots: tuple[str, ...] = ()
    network_access: bool = False
    exclude_tmpdir_env_var: bool = False
    exclude_slash_tmp: bool = False


class ClusterConfig(msgspec.Struct, frozen=True, kw_only=True):
    """``[cluster]`` (trio-codex): run the app server as one node of a
    cluster (README "Cluster"); ``--cluster``/``--store`` and
    ``$TRIO_CODEX_CLUSTER``/``$TRIO_CODEX_STORE`` take precedence."""

    #: ``nats://HOST:PORT`` of a NATS server with JetStream.
    url: str | None = None
    #: ``postgresql://...``: the cluster's ThreadStore.
    store: str | None = None
    #: Seconds a node's lease lasts without renewal (``$TRIO_CODEX_LEASE_TTL`` wins).
    lease_ttl_secs: float | None = None


class AnalyticsConfig(msgspec.Struct, frozen=True, kw_only=True):
    """``[analytics]``. ``enabled = None`` leaves the choice to the surface
    (app-server: off, unless started with ``--analytics-default-enabled``).

    Events go to the exporters configured here; with none, analytics still
    runs (facts are reduced, nothing leaves the process).
    """

    enabled: bool | None = None
    #: Append every event to this file, one JSON object per line; a relative
    #: path is taken from the server's working directory.
    export_jsonl: str | None = None
    #: POST events in batches, ``{"events": [...]}``, to this ``http://`` URL.
    export_url: str | None = None
    #: How long one POST may take, connect to response headers.
    export_timeout_ms: Annotated[int, msgspec.Meta(ge=1)] = 10_000
    #: Tries per batch (the first included) before it is given up and counted.
    export_max_attempts: Annotated[int, msgspec.Meta(ge=1)] = 3
    #: Wait before the second try; it doubles for each try after that.
    export_backoff_ms: _U64 = 500


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


class _ConfigToml(msgspec.Struct, frozen=True, kw_only=True):
    # The config.toml keys we act on, with the original's defaults.
    model: str = DEFAULT_MODEL
    model_provider: str = _OPENAI_PROVIDER_ID
    model_providers: dict[str, ModelProviderInfo] = {}
    openai_base_url: str | None = None
    approval_policy: ApprovalMode | GranularApproval = "on-request"
    sandbox_mode: SandboxMode = "read-only"
    sandbox_workspace_write: SandboxWorkspaceWrite = msgspec.field(
        default_factory=SandboxWorkspaceWrite
    )
    #: The permissions profile threads run under unless a request names one
    #: (runtime/permissions.py); ``[permissions.<id>]`` are the user's own.
    default_permissions: str | None = None
    permissions: dict[str, dict[str, Any]] = {}
    model_reasoning_effort: str | None = None
    model_reasoning_summary: ReasoningSummary | None = None
    model_context_window: _U64 | None = None
    #: Compact the history once the context holds this many tokens (at
    #: most 90 % of the context window, the default).
    model_auto_compact_token_limit: _U64 | None = None
    #: trio-codex: when rollouts are fsynced. Every completed item reaches
    #: the OS before it is reported (kill -9 loses nothing); "turn" also
    #: fsyncs at each turn end (power loss), "always" after every append.
    rollout_fsync: Literal["always", "turn", "never"] = "turn"
    instructions: str | None = None
    developer_instructions: str | None = None
    thread_unload_delay_secs: _U64 = 1800
    analytics: AnalyticsConfig = msgspec.field(default_factory=AnalyticsConfig)
    cluster: ClusterConfig = msgspec.field(default_factory=ClusterConfig)
    mcp_servers: dict[str, dict[str, Any]] = {}
    #: A program (and its first arguments) run after each completed turn
    #: with a JSON payload as its last argument (runtime/notify.py).
    notify: list[str] | None = None


class Settings(_ConfigToml, frozen=True, kw_only=True):
    """The validated configuration.

    Typed keys (from the merged layers, defaults as in the original):
    ``model``, ``model_provider`` (``"openai"``), ``openai_base_url``,
    ``approval_policy`` (``"on-request"``; the legacy ``"on-failure"`` reads
    as ``"on-request"``, as in the original), ``sandbox_mode``
    (``"read-only"``), ``sandbox_workspace_write``, ``default_permissions``
    and ``permissions`` (profiles), ``model_reasoning_effort``
    (any string), ``model_reasoning_summary``, ``instructions``,
    ``developer_instructions``, ``thread_unload_delay_secs`` (1800),
    ``notify``, ``analytics``, ``cluster`` (ours) and ``mcp_servers`` (raw tables).

    ``model_providers`` is the whole catalog: the built-ins plus the
    configured entries.

    Where it came from: ``codex_home``, ``config_file`` (the base
    ``config.toml``), ``profile`` (the selected profile name, if any) and
    ``overrides`` (the ``-c`` values).

    For ``config/read``: ``effective`` (the merged table, snake_case, unknown
    keys included), ``origins`` (``{dotted.key: {name, version}}`` for every
    leaf; array items are keyed by index) and ``layers`` (highest precedence
    first). :meth:`config_read` assembles the response.
    """

    codex_home: Path
    config_file: Path
    profile: str | None
    overrides: tuple[str, ...]
    effective: dict[str, Any]
    origins: dict[str, dict[str, Any]]
    layers: tuple[dict[str, Any], ...]

    def sandbox_policy(self, mode: str | None = None) -> Any:
        """The v2 ``SandboxPolicy`` object for ``mode`` (default: this
        config's ``sandbox_mode``), with ``[sandbox_workspace_write]``."""
        from .protocol.v2.thread import DangerFullAccess, ReadOnly, WorkspaceWrite

        mode = mode or self.sandbox_mode
        if mode == "danger-full-access":
            return DangerFullAccess()
        if mode == "workspace-write":
            w = self.sandbox_workspace_write
            return WorkspaceWrite(list(w.writable_roots), w.network_access,
                                  w.exclude_tmpdir_env_var, w.exclude_slash_tmp)
        return ReadOnly()

    def with_session_flags(self, flags: Mapping[str, object]) -> Settings:
        """These settings with ``thread/start.config`` flags applied on top
        (the files are read again, as the original does per thread)."""
        return load_settings(codex_home=self.codex_home, overrides=self.overrides,
                             profile=self.profile, session_flags=flags)

    def config_read(self, *, include_layers: bool = False) -> dict[str, Any]:
        """The ``config/read`` result. It is ``{config, origins}``, plus
        ``layers`` when *include_layers* is true. Without it the original
        leaves ``layers`` out rather than sending null."""
        result: dict[str, Any] = {"config": self.effective, "origins": self.origins}
        if include_layers:
            result["layers"] = list(self.layers)
        return result


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


# --- public API ----------------------------------------------------------------


def find_codex_home(env: Mapping[str, str] = os.environ) -> Path:
    """``$CODEX_HOME`` when it is set and not empty, else ``~/.codex``.

    As in the original, a set ``CODEX_HOME`` must name an existing directory.
    The directory is returned canonicalized. ``~/.codex`` need not exist.
    """
    value = env.get("CODEX_HOME", "")
    if not value:
        return Path(env.get("HOME") or Path.home()) / ".codex"
    shown = json.dumps(value, ensure_ascii=False)
    path = Path(value)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(
            f"CODEX_HOME points to {shown}, but that path does not exist"
        ) from None
    except OSError as exc:
        raise ConfigError(f"failed to read CODEX_HOME {shown}: {exc}") from None
    if not stat.S_ISDIR(mode):
        raise ConfigError(
            f"CODEX_HOME points to {shown}, but that path is not a directory"
        )
    return path.resolve(strict=True)


def parse_override(text: str) -> tuple[tuple[str, ...], object]:
    """Parse one ``-c key=value`` as the original does.

    The key is a dotted path, split on every ``.``. The value is read as a
    TOML value. If it is not valid TOML, it is kept as a plain string with
    surrounding quotes stripped, so ``-c model=o3`` gives ``"o3"``. Only the
    first ``=`` splits, so values may contain ``=``.
    """
    key, sep, raw = text.partition("=")
    if not sep:
        raise ConfigError(f"Invalid override (missing '='): {text}")
    key, raw = key.strip(), raw.strip()
    if not key:
        raise ConfigError(f"Empty key in override: {text}")
    try:
        value = tomllib.loads(f"_x_ = {raw}")["_x_"]
    except tomllib.TOMLDecodeError:
        value = raw.strip("\"'")
    if key == "use_legacy_landlock":  # the original's one key alias
        key = "features.use_legacy_landlock"
    return tuple(key.split(".")), value


def load_settings(
    *,
    codex_home: Path | None = None,
    overrides: Sequence[str] = (),
    profile: str | None = None,
    session_flags: Mapping[str, object] | None = None,
    env: Mapping[str, str] = os.environ,
) -> Settings:
    """Read, merge and validate the configuration. Call it once, at start.

    *codex_home* defaults to :func:`find_codex_home`. *overrides* are
    ``-c``/``--config`` values, applied in order over the files. *profile*
    is the original's ``--profile NAME``: it layers
    ``$CODEX_HOME/NAME.config.toml`` over ``config.toml``. A missing file is
    an empty layer. *session_flags* (``{"dotted.key": value}``, as
    ``thread/start.config`` sends them) apply after *overrides*. *env* supplies ``CODEX_HOME``, ``HOME`` and the
    ``CODEX_OSS_*`` variables for the built-in local providers.

    Raises :class:`ConfigError` when a layer is unreadable or a value is
    invalid.
    """
    home = find_codex_home(env) if codex_home is None else Path(codex_home).resolve()
    layers = _read_layers(home, profile, overrides, session_flags or {}, env)
    merged: dict[str, Any] = {}
    for layer in layers:
        _merge(merged, layer.config)

    def fail(path: Sequence[str], detail: str) -> ConfigError:
        return _blame(layers, path, detail)

    legacy = merged.get("profile")
    if legacy is not None:
        raise fail(
            ("profile",),
            f'legacy `profile = "{legacy}"` config is no longer supported; '
            f"use `--profile {legacy}` with `{legacy}{_PROFILE_CONFIG_SUFFIX}` instead",
        )
    config = _convert(merged, fail)
    _check_providers(config.model_providers, fail)
    _check_mcp_servers(config.mcp_servers, fail)
    providers = _built_in_providers(config, env)
    providers.update(
        (key, info)
        for key, info in config.model_providers.items()
        if key != _AMAZON_BEDROCK_PROVIDER_ID
    )
    if config.model_provider not in providers:
        raise fail(("model_provider",), _unknown_provider(config.model_provider, providers))
    fields = msgspec.structs.asdict(config) | {"model_providers": providers}
    return Settings(
        **fields,
        codex_home=home,
        config_file=home / _CONFIG_TOML_FILE,
        profile=profile,
        overrides=tuple(overrides),
        effective=merged,
        origins=_origins(layers),
        layers=tuple(layer.as_json() for layer in reversed(layers)),
    )


def _check_mcp_servers(servers: Mapping[str, Mapping[str, Any]], fail: Callable[..., ConfigError]) -> None:
    """A bad ``[mcp_servers.NAME]`` stops the load, as the original's does."""
    from .mcp_config import mcp_servers  # it builds on this module

    try:
        mcp_servers(servers)
    except ConfigError as exc:
        raise fail(tuple((exc.key or "mcp_servers").split(".")), str(exc)) from None


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
        raise ConfigError(_unknown_provider(pid, settings.model_providers))
    if pid == _AMAZON_BEDROCK_PROVIDER_ID:
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


# --- layers --------------------------------------------------------------------


class _Layer(msgspec.Struct, frozen=True):
    name: dict[str, Any]  # the protocol's ConfigLayerSource
    config: dict[str, Any]
    file: Path | None  # None for the -c and thread/start config layers
    #: For a layer with no file: where its values came from, for errors.
    source: str = "-c"

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": _version(self.config), "config": self.config}


def _read_layers(
    home: Path,
    profile: str | None,
    overrides: Sequence[str],
    session_flags: Mapping[str, object],
    env: Mapping[str, str],
) -> list[_Layer]:
    if profile is not None and not re.fullmatch(r"[A-Za-z0-9_-]+", profile):
        raise ConfigError(f"invalid --profile value `{profile}`; pass a plain name such as `work`")
    user_file = home / _CONFIG_TOML_FILE
    base = _Layer(
        {"type": "user", "file": str(user_file), "profile": None},
        _read_toml(user_file, env),
        user_file,
    )
    layers = [base]
    if profile is not None:
        profile_file = home / f"{profile}{_PROFILE_CONFIG_SUFFIX}"
        legacy_tables = base.config.get("profiles")
        if base.config.get("profile") == profile or (
            isinstance(legacy_tables, dict) and profile in legacy_tables
        ):
            raise ConfigError(
                f"--profile `{profile}` cannot be used while {user_file} contains legacy "
                f'`profile = "{profile}"` or `[profiles.{profile}]` config; move those '
                f"settings into {profile_file} and remove the legacy profile "
                "selector/table. See https://developers.openai.com/codex/config-advanced"
                "#profiles for more information.",
                key="profile",
                file=user_file,
            )
        layers.append(
            _Layer(
                {"type": "user", "file": str(profile_file), "profile": profile},
                _read_toml(profile_file, env),
                profile_file,
            )
        )
    if overrides:
        flags: dict[str, Any] = {}
        for text in overrides:
            path, value = parse_override(text)
            _set_path(flags, path, value)
        _absolutize_paths(flags, home, env)
        layers.append(_Layer({"type": "sessionFlags"}, flags, None))
    if session_flags:
        request: dict[str, Any] = {}
        for key, value in session_flags.items():
            _set_path(request, key.split("."), _copy_tables(value))
        _absolutize_paths(request, home, env)
        layers.append(_Layer({"type": "sessionFlags"}, request, None, "thread/start config"))
    return layers


def _read_toml(file: Path, env: Mapping[str, str]) -> dict[str, Any]:
    try:
        text = file.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Failed to read config file {file}: {exc}", file=file) from None
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        detail, line, column = _toml_error_position(str(exc), text)
        raise ConfigError(f"{file}:{line}:{column}: {detail}", file=file) from None
    _absolutize_paths(table, file.parent, env)
    return table


def _toml_error_position(message: str, text: str) -> tuple[str, int, int]:
    # tomllib ends its messages with "(at line L, column C)" or
    # "(at end of document)".
    found = re.fullmatch(r"(.*) \(at line (\d+), column (\d+)\)", message, re.DOTALL)
    if found:
        return found[1], int(found[2]), int(found[3])
    last_line = text.rsplit("\n", 1)[-1]
    return message.removesuffix(" (at end of document)"), text.count("\n") + 1, len(last_line) + 1


def _absolutize_paths(table: dict[str, Any], base: Path, env: Mapping[str, str]) -> None:
    # The original reads path-typed keys as absolute paths, resolved against
    # the layer's directory. Of those keys, we type only writable_roots.
    section = table.get("sandbox_workspace_write")
    if not isinstance(section, dict) or not isinstance(roots := section.get("writable_roots"), list):
        return
    home = env.get("HOME")
    resolved: list[Any] = []
    for root in roots:
        if isinstance(root, str):
            if home and root.startswith("~/"):
                root = home + root[1:]
            root = os.path.normpath(os.path.join(base, root))
        resolved.append(root)
    section["writable_roots"] = resolved


def _set_path(root: dict[str, Any], path: Sequence[str], value: object) -> None:
    # Intermediate keys that are missing, or hold a non-table, become tables.
    node = root
    for segment in path[:-1]:
        child = node.get(segment)
        if not isinstance(child, dict):
            child = node[segment] = {}
        node = child
    node[path[-1]] = value


def _merge(base: dict[str, Any], overlay: dict[str, Any]) -> None:
    for key, value in overlay.items():
        below = base.get(key)
        if isinstance(below, dict) and isinstance(value, dict):
            _merge(below, value)
        else:
            base[key] = _copy_tables(value)


def _copy_tables(value: Any) -> Any:
    # The merged table must not share dicts with the layers that config/read
    # returns beside it.
    if isinstance(value, dict):
        return {key: _copy_tables(item) for key, item in value.items()}
    return value


def _version(table: dict[str, Any]) -> str:
    # The original hashes compact JSON of the table with keys sorted at
    # every level. Goldens from the 0.169.0 binary are in the tests.
    canonical = json.dumps(
        table, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _origins(layers: Sequence[_Layer]) -> dict[str, dict[str, Any]]:
    origins: dict[str, dict[str, Any]] = {}
    for layer in layers:
        origin = {"name": layer.name, "version": _version(layer.config)}
        for key in _leaf_keys(layer.config, ()):
            origins[key] = origin
    return origins


def _leaf_keys(value: Any, prefix: tuple[str, ...]) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaf_keys(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaf_keys(item, (*prefix, str(index)))
    elif prefix:
        yield ".".join(prefix)


# --- validation ----------------------------------------------------------------


def _blame(layers: Sequence[_Layer], path: Sequence[str], detail: str) -> ConfigError:
    key = ".".join(path)
    for layer in reversed(layers):
        if _lookup(layer.config, path) is not _MISSING:
            if layer.file is None and layer.source == "-c":
                return ConfigError(f"-c {key}: {detail}", key=key)
            return ConfigError(
                f"invalid value for `{key}` in {layer.file or layer.source}: {detail}",
                key=key,
                file=layer.file,
            )
    return ConfigError(f"invalid value for `{key}`: {detail}", key=key)


_MISSING = object()


def _lookup(node: Any, path: Sequence[str]) -> Any:
    for segment in path:
        if isinstance(node, dict) and segment in node:
            node = node[segment]
        elif isinstance(node, list) and segment.isdigit() and int(segment) < len(node):
            node = node[int(segment)]
        else:
            return _MISSING
    return node


def _convert(
    merged: dict[str, Any], fail: Callable[[Sequence[str], str], ConfigError]
) -> _ConfigToml:
    typed = merged
    if merged.get("approval_policy") == "on-failure":  # a serde alias in the original
        typed = merged | {"approval_policy": "on-request"}
    try:
        return msgspec.convert(typed, _ConfigToml)
    except msgspec.ValidationError as exc:
        reason, _, where = str(exc).partition(" - at `$")
        tokens = re.findall(r"\.([^.\[`]+)|\[(\d+|\.\.\.)\]", where.removesuffix("`"))
        steps = [name or index for name, index in tokens]
        fails_alike = _matcher(reason)
        path = _find(merged, steps, fails_alike) or _find(merged, steps, lambda _: True)
        path = path or steps
        raise fail(path, _describe(reason, path, _lookup(merged, path))) from None


def _matcher(reason: str) -> Callable[[Any], bool]:
    """Whether a value fails the way msgspec's *reason* says. It is used to
    find which table entry a ``[...]`` in msgspec's path stands for."""
    if found := re.fullmatch(r"Expected `.+`, got `(\w+)`", reason):
        kind = found[1]
        return lambda value: _kind(value) == kind
    if found := re.fullmatch(r"Expected `.+` (>=|<=|>|<) (-?\d+)", reason):
        holds, bound = _COMPARISONS[found[1]], int(found[2])
        return lambda value: _kind(value) == "int" and not holds(value, bound)
    if found := re.fullmatch(r"Invalid enum value (.+)", reason):
        shown = found[1]
        return lambda value: repr(value) == shown
    if found := re.fullmatch(r"Object missing required field `(\w+)`", reason):
        field = found[1]
        return lambda value: isinstance(value, dict) and field not in value
    return lambda _: True


_COMPARISONS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}


def _find(node: Any, steps: Sequence[str], matches: Callable[[Any], bool]) -> list[str] | None:
    if not steps:
        return [] if matches(node) else None
    step, rest = steps[0], steps[1:]
    if step == "...":
        children = list(node.items()) if isinstance(node, dict) else []
    else:
        child = _lookup(node, (step,))
        children = [] if child is _MISSING else [(step, child)]
    for key, child in children:
        found = _find(child, rest, matches)
        if found is not None:
            return [key, *found]
    return None


# Variants as the original lists them in "unknown variant" errors. The
# original accepts "on-failure" as an alias of "on-request", and lists both.
_VARIANTS: dict[str, tuple[str, ...]] = {
    "approval_policy": ("untrusted", "on-failure", "on-request", "granular", "never"),
    "sandbox_mode": get_args(SandboxMode),
    "model_reasoning_summary": get_args(ReasoningSummary),
    "wire_api": ("responses",),
}


def _describe(reason: str, path: Sequence[str], value: Any) -> str:
    """Turn msgspec's *reason* into the message the original would give."""
    if found := re.fullmatch(r"Expected `(.+)`, got `\w+`", reason):
        return f"expected {_kinds(found[1])}, got {_show(value)}"
    if found := re.fullmatch(r"Expected `(.+)` (>=|<=|>|<) (-?\d+)", reason):
        return f"expected {_kinds(found[1])} {found[2]} {found[3]}, got {_show(value)}"
    if re.fullmatch(r"Invalid enum value .+", reason):
        if path[-1] == "wire_api" and value == "chat":
            return _CHAT_WIRE_API_REMOVED
        return _unknown_variant(str(value), _VARIANTS.get(path[-1], ()))
    if found := re.fullmatch(r"Object missing required field `(\w+)`", reason):
        if tuple(path) == ("approval_policy",) and value and "granular" not in value:
            return _unknown_variant(next(iter(value)), _VARIANTS["approval_policy"])
        return f"missing field `{found[1]}`"
    return reason[:1].lower() + reason[1:]


def _unknown_variant(value: str, variants: Sequence[str]) -> str:
    # serde's wording, which the original's messages use.
    names = [f"`{variant}`" for variant in variants]
    if len(names) == 1:
        expected = f"expected {names[0]}"
    elif len(names) == 2:
        expected = f"expected {names[0]} or {names[1]}"
    else:
        expected = "expected one of " + ", ".join(names)
    return f"unknown variant `{value}`, {expected}"


_KIND_NAMES = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "bool": "a boolean",
    "array": "an array",
    "object": "a table",
    "datetime": "a date-time",
    "date": "a date",
    "time": "a time",
}


def _kinds(expected: str) -> str:
    # msgspec's "str | null": a missing key is fine, so null is not news.
    kinds = [kind for kind in expected.split(" | ") if kind != "null"]
    return " or ".join(_KIND_NAMES.get(kind, f"`{kind}`") for kind in kinds)


def _kind(value: Any) -> str:
    # msgspec's name for the type of a value that came from TOML.
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return type(value).__name__


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (dict, list)):
        return _KIND_NAMES[_kind(value)]
    return str(value)


def _check_providers(
    configured: Mapping[str, ModelProviderInfo],
    fail: Callable[[Sequence[str], str], ConfigError],
) -> None:
    # The original's validate_model_providers, in a stable order.
    reserved = sorted(
        key
        for key in configured
        if key in _BUILT_IN_PROVIDER_IDS and key != _AMAZON_BEDROCK_PROVIDER_ID
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
        if key == _AMAZON_BEDROCK_PROVIDER_ID:
            continue
        if info.aws is not None:
            raise fail(
                ("model_providers", key, "aws"),
                f"provider aws is only supported for `{_AMAZON_BEDROCK_PROVIDER_ID}`",
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
    _OPENAI_PROVIDER_ID,
    _AMAZON_BEDROCK_PROVIDER_ID,
    _OLLAMA_PROVIDER_ID,
    _LMSTUDIO_PROVIDER_ID,
    SCRIPTED_PROVIDER_ID,
)


def _built_in_providers(
    config: _ConfigToml, env: Mapping[str, str]
) -> dict[str, ModelProviderInfo]:
    bedrock = config.model_providers.get(_AMAZON_BEDROCK_PROVIDER_ID)
    aws_profile = (bedrock.aws or {}).get("profile") if bedrock is not None else None
    providers = {
        _OPENAI_PROVIDER_ID: ModelProviderInfo(
            name="OpenAI",
            base_url=config.openai_base_url,
            env_http_headers={
                "OpenAI-Organization": "OPENAI_ORGANIZATION",
                "OpenAI-Project": "OPENAI_PROJECT",
            },
            requires_openai_auth=True,
            supports_websockets=True,
        ),
        _AMAZON_BEDROCK_PROVIDER_ID: ModelProviderInfo(
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


def _unknown_provider(pid: str, known: Mapping[str, ModelProviderInfo]) -> str:
    if pid == "ollama-chat":
        return _OLLAMA_CHAT_REMOVED
    names = ", ".join(f"`{key}`" for key in sorted(known))
    return (
        f"model provider `{pid}` not found; known providers: {names}. "
        "Define it under [model_providers] or pick a known one."
    )


def _default(value: int | None, default: int) -> int:
    return default if value is None else value


def check_config_table(table: dict[str, Any]) -> None:
    """Validate one layer's table as the original validates a config write.

    Raises :class:`ConfigError` (the detail, and ``key``) for a value the
    typed settings refuse or a ``model_providers`` entry that is unusable.
    """

    def fail(path: Sequence[str], detail: str) -> ConfigError:
        return ConfigError(detail, key=".".join(path))

    config = _convert(table, fail)
    _check_providers(config.model_providers, fail)


def config_version(table: dict[str, Any]) -> str:
    """The ``version`` the original gives a config layer (config/read's
    origins, the writes' ``expectedVersion``)."""
    return _version(table)
