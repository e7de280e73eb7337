"""Configuration read the way the original ``codex`` (0.169) reads it.

The package's face: callers import from here. Inside, one concern a module:

* :mod:`.settings`: the typed settings (:class:`Settings`) and their loading
  and validation, the design of it all in its docstring;
* :mod:`.layers`: the layers (``config.toml``, a ``--profile`` file, ``-c``
  overrides, ``thread/start`` flags), their merge and their versions;
* :mod:`.providers`: the model-provider catalog and :func:`resolve_provider`;
* :mod:`.errors`: :class:`ConfigError`, which names the key and the layer.

The wording of bad values is serde's, shared with the JSON-RPC codec in
:mod:`..protocol.serde_wording`.

The other modules:

=====================  =======================================================
``auth``               the stored API-key login
``home``               ``CODEX_HOME`` checked at start-up
``mcp``                ``[mcp_servers.NAME]``, typed
``write``              ``config/value/write`` and ``config/batchWrite``
=====================  =======================================================
"""

from __future__ import annotations

from .errors import ConfigError
from .layers import parse_override
from .providers import SCRIPTED_PROVIDER_ID, ModelProviderInfo, ResolvedProvider, resolve_provider
from .settings import (
    DEFAULT_MODEL,
    AnalyticsConfig,
    ClusterConfig,
    ApprovalMode,
    GranularApproval,
    GranularApprovalConfig,
    ReasoningSummary,
    SandboxMode,
    SandboxWorkspaceWrite,
    Settings,
    check_config_table,
    config_version,
    find_codex_home,
    load_settings,
)

__all__ = [
    "DEFAULT_MODEL",
    "SCRIPTED_PROVIDER_ID",
    "AnalyticsConfig",
    "ClusterConfig",
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
    "check_config_table",
    "config_version",
    "find_codex_home",
    "load_settings",
    "parse_override",
    "resolve_provider",
]
