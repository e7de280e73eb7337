"""``[mcp_servers.NAME]``: the MCP servers a thread connects to, typed.

As the original's ``McpServerConfig``: a server is either a stdio child
(``command``, ``args``, ``env``, ``env_vars``, ``cwd``) or a streamable HTTP
endpoint (``url``, ``bearer_token_env_var``, ``http_headers``,
``env_http_headers``); both take ``enabled``, ``required``,
``startup_timeout_sec`` (30), ``tool_timeout_sec`` (120) and
``enabled_tools`` / ``disabled_tools``. A key of the other transport is an
error, as the original's "`url` is not supported for stdio".

A stdio child does not inherit the server's environment: it gets the
original's whitelist (:data:`DEFAULT_ENV_VARS`), the variables named in
``env_vars``, then ``env``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import msgspec

from . import ConfigError

#: The variables a stdio MCP server inherits (the original's
#: ``DEFAULT_ENV_VARS`` on unix): enough to find programs and a home, no secrets.
DEFAULT_ENV_VARS = ("HOME", "LOGNAME", "PATH", "SHELL", "USER", "__CF_USER_TEXT_ENCODING",
                    "LANG", "LC_ALL", "TERM", "TMPDIR", "TZ")

_STDIO_ONLY = ("args", "env", "env_vars", "cwd")
_HTTP_ONLY = ("bearer_token_env_var", "http_headers", "env_http_headers")


class McpServerConfig(msgspec.Struct, frozen=True, kw_only=True):
    """One configured server. ``command`` is set for stdio, ``url`` for HTTP."""

    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] | None = None
    env_vars: tuple[str, ...] = ()
    cwd: str | None = None
    url: str | None = None
    bearer_token_env_var: str | None = None
    http_headers: dict[str, str] | None = None
    env_http_headers: dict[str, str] | None = None
    enabled: bool = True
    required: bool = False
    startup_timeout_sec: float = 30.0
    tool_timeout_sec: float = 120.0
    enabled_tools: tuple[str, ...] | None = None
    disabled_tools: tuple[str, ...] = ()

    def allows(self, tool: str) -> bool:
        """Whether ``enabled_tools`` / ``disabled_tools`` let the model see ``tool``."""
        if self.enabled_tools is not None and tool not in self.enabled_tools:
            return False
        return tool not in self.disabled_tools

    def child_env(self, parent: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of a stdio child (see the module docstring)."""
        parent = os.environ if parent is None else parent
        env = {k: parent[k] for k in (*DEFAULT_ENV_VARS, *self.env_vars) if k in parent}
        env.update(self.env or {})
        return env

    def headers(self, parent: Mapping[str, str] | None = None) -> dict[str, str]:
        """The HTTP headers: ``http_headers``, those of ``env_http_headers``
        whose variable is set, and the bearer token."""
        parent = os.environ if parent is None else parent
        out = dict(self.http_headers or {})
        out.update({h: parent[v] for h, v in (self.env_http_headers or {}).items() if parent.get(v)})
        if self.bearer_token_env_var:
            token = parent.get(self.bearer_token_env_var)
            if not token:
                raise ConfigError(f"Environment variable {self.bearer_token_env_var} for MCP server "
                                  f"'{self.name}' is empty or not set")
            out["Authorization"] = f"Bearer {token}"
        return out


def mcp_servers(raw: Mapping[str, Mapping[str, Any]]) -> dict[str, McpServerConfig]:
    """The typed servers of ``Settings.mcp_servers``, sorted by name;
    ConfigError names the table at fault."""
    return {name: parse_server(name, raw[name]) for name in sorted(raw)}


def enabled_servers(raw: Mapping[str, Mapping[str, Any]]) -> dict[str, McpServerConfig]:
    return {n: s for n, s in mcp_servers(raw).items() if s.enabled}


def parse_server(name: str, table: Mapping[str, Any]) -> McpServerConfig:
    key = f"mcp_servers.{name}"
    table = dict(table)
    if "command" in table and "url" in table:
        raise ConfigError(f"invalid transport in `{key}`: `url` is not supported for stdio", key=key)
    transport, foreign = ("stdio", _HTTP_ONLY) if "command" in table else ("streamable_http", _STDIO_ONLY)
    if "command" not in table and "url" not in table:
        raise ConfigError(f"invalid transport in `{key}`: set `command` (stdio) or `url` (streamable HTTP)",
                          key=key)
    for field in foreign:
        if field in table:
            raise ConfigError(f"invalid transport in `{key}`: `{field}` is not supported for {transport}", key=key)
    for field in ("startup_timeout_sec", "tool_timeout_sec"):
        if isinstance(table.get(field), int | float) and not isinstance(table[field], bool):
            table[field] = float(table[field])
    if "startup_timeout_ms" in table and "startup_timeout_sec" not in table:
        table["startup_timeout_sec"] = float(table.pop("startup_timeout_ms")) / 1000
    table.pop("startup_timeout_ms", None)
    known = set(McpServerConfig.__struct_fields__) - {"name"}
    table = {k: v for k, v in table.items() if k in known}  # unknown keys are ignored, as serde does here
    try:
        return msgspec.convert({**table, "name": name}, McpServerConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid `{key}`: {exc}", key=key) from None
