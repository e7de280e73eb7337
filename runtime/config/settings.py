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
* Providers are :mod:`.providers`' catalog; the layers are :mod:`.layers`';
  the wording of errors is serde's (:mod:`..protocol.serde_wording`).
"""

from __future__ import annotations

import json
import operator
import os
import re
import stat
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import msgspec

from ..protocol.serde_wording import toml_message, unknown_variant, value_kind
from ..protocol.v2.approval import GranularApprovalFlags
from ..protocol.v2.thread import DangerFullAccess, ReadOnly, SandboxMode, SandboxPolicy, WorkspaceWrite
from .errors import ConfigError
from .layers import (
    CONFIG_TOML_FILE,
    MISSING,
    PROFILE_CONFIG_SUFFIX,
    Layer,
    lookup,
    merge,
    origins,
    read_layers,
    version,
)
from .providers import (
    CHAT_WIRE_API_REMOVED,
    OPENAI_PROVIDER_ID,
    ModelProviderInfo,
    catalog,
    check_providers,
    unknown_provider,
)

__all__ = [
    "DEFAULT_MODEL",
    "AnalyticsConfig",
    "ApprovalMode",
    "GranularApproval",
    "GranularApprovalConfig",
    "ReasoningSummary",
    "SandboxMode",
    "SandboxWorkspaceWrite",
    "Settings",
    "check_config_table",
    "config_version",
    "find_codex_home",
    "load_settings",
]

#: The model when config names none. In 0.169 this is the bundled catalog's
#: default (``codex-rs/models-manager/models.json``, lowest ``priority``),
#: for every provider, as ``model/list`` and ``codex exec`` report.
DEFAULT_MODEL = "gpt-6.1-sol"

_U64 = Annotated[int, msgspec.Meta(ge=0)]
ApprovalMode = Literal["untrusted", "on-request", "never"]
ReasoningSummary = Literal["auto", "concise", "detailed", "none"]


#: Per-flow approval switches: the protocol's, which config.toml writes alike.
GranularApprovalConfig = GranularApprovalFlags


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
    #: Seconds a draining node lets a turn run before it interrupts it
    #: (``$TRIO_CODEX_DRAIN_TIMEOUT`` wins; default 20).
    drain_timeout_secs: Annotated[float, msgspec.Meta(ge=0)] | None = None


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

class _ConfigToml(msgspec.Struct, frozen=True, kw_only=True):
    # The config.toml keys we act on, with the original's defaults.
    model: str = DEFAULT_MODEL
    model_provider: str = OPENAI_PROVIDER_ID
    model_providers: dict[str, ModelProviderInfo] = {}
    openai_base_url: str | None = None
    approval_policy: ApprovalMode | GranularApproval = "on-request"
    sandbox_mode: SandboxMode = "read-only"
    sandbox_workspace_write: SandboxWorkspaceWrite = msgspec.field(
        default_factory=SandboxWorkspaceWrite
    )
    #: The permissions profile threads run under unless a request names one
    #: (runtime/commands/permissions.py); ``[permissions.<id>]`` are the user's own.
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
    #: with a JSON payload as its last argument (runtime/commands/notify.py).
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

    def sandbox_policy(self, mode: str | None = None) -> SandboxPolicy:
        """The v2 ``SandboxPolicy`` object for ``mode`` (default: this
        config's ``sandbox_mode``), with ``[sandbox_workspace_write]``."""
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
    layers = read_layers(home, profile, overrides, session_flags or {}, env)
    merged: dict[str, Any] = {}
    for layer in layers:
        merge(merged, layer.config)

    def fail(path: Sequence[str], detail: str) -> ConfigError:
        return _blame(layers, path, detail)

    legacy = merged.get("profile")
    if legacy is not None:
        raise fail(
            ("profile",),
            f'legacy `profile = "{legacy}"` config is no longer supported; '
            f"use `--profile {legacy}` with `{legacy}{PROFILE_CONFIG_SUFFIX}` instead",
        )
    config = _convert(merged, fail)
    check_providers(config.model_providers, fail)
    _check_mcp_servers(config.mcp_servers, fail)
    providers = catalog(config.model_providers, config.openai_base_url, env)
    if config.model_provider not in providers:
        raise fail(("model_provider",), unknown_provider(config.model_provider, providers))
    fields = msgspec.structs.asdict(config) | {"model_providers": providers}
    return Settings(
        **fields,
        codex_home=home,
        config_file=home / CONFIG_TOML_FILE,
        profile=profile,
        overrides=tuple(overrides),
        effective=merged,
        origins=origins(layers),
        layers=tuple(layer.as_json() for layer in reversed(layers)),
    )


def _check_mcp_servers(servers: Mapping[str, Mapping[str, Any]], fail: Callable[..., ConfigError]) -> None:
    """A bad ``[mcp_servers.NAME]`` stops the load, as the original's does."""
    from .mcp import mcp_servers  # it builds on this module

    try:
        mcp_servers(servers)
    except ConfigError as exc:
        raise fail(tuple((exc.key or "mcp_servers").split(".")), str(exc)) from None


# --- validation ----------------------------------------------------------------


def _blame(layers: Sequence[Layer], path: Sequence[str], detail: str) -> ConfigError:
    key = ".".join(path)
    for layer in reversed(layers):
        if lookup(layer.config, path) is not MISSING:
            if layer.file is None and layer.source == "-c":
                return ConfigError(f"-c {key}: {detail}", key=key)
            return ConfigError(
                f"invalid value for `{key}` in {layer.file or layer.source}: {detail}",
                key=key,
                file=layer.file,
            )
    return ConfigError(f"invalid value for `{key}`: {detail}", key=key)


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
        raise fail(path, _describe(reason, path, lookup(merged, path))) from None


def _matcher(reason: str) -> Callable[[Any], bool]:
    """Whether a value fails the way msgspec's *reason* says. It is used to
    find which table entry a ``[...]`` in msgspec's path stands for."""
    if found := re.fullmatch(r"Expected `.+`, got `(\w+)`", reason):
        kind = found[1]
        return lambda value: value_kind(value) == kind
    if found := re.fullmatch(r"Expected `.+` (>=|<=|>|<) (-?\d+)", reason):
        holds, bound = _COMPARISONS[found[1]], int(found[2])
        return lambda value: value_kind(value) == "int" and not holds(value, bound)
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
        child = lookup(node, (step,))
        children = [] if child is MISSING else [(step, child)]
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
    if re.fullmatch(r"Invalid enum value .+", reason):
        if path[-1] == "wire_api" and value == "chat":
            return CHAT_WIRE_API_REMOVED
        return unknown_variant(str(value), _VARIANTS.get(path[-1], ()))
    if tuple(path) == ("approval_policy",) and reason.startswith("Object missing required field"):
        if value and "granular" not in value:
            return unknown_variant(next(iter(value)), _VARIANTS["approval_policy"])
    return toml_message(reason, value)


def check_config_table(table: dict[str, Any]) -> None:
    """Validate one layer's table as the original validates a config write.

    Raises :class:`ConfigError` (the detail, and ``key``) for a value the
    typed settings refuse or a ``model_providers`` entry that is unusable.
    """

    def fail(path: Sequence[str], detail: str) -> ConfigError:
        return ConfigError(detail, key=".".join(path))

    config = _convert(table, fail)
    check_providers(config.model_providers, fail)


def config_version(table: dict[str, Any]) -> str:
    """The ``version`` the original gives a config layer (config/read's
    origins, the writes' ``expectedVersion``)."""
    return version(table)
