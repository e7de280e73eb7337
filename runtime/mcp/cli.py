"""``trio-codex mcp list|get|add|remove``: manage ``[mcp_servers.*]`` in
$CODEX_HOME/config.toml, with the original's ``codex mcp`` output, messages
and exit codes (observed on 0.169.0).

Unlike the original, which re-serialises the whole file, edits go through
tomlkit so that the user's comments and formatting survive; only the one
server's table is added, replaced or removed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

_NAME = re.compile(r"[A-Za-z0-9_\-:@/.]+")


class _Parser(argparse.ArgumentParser):
    """argparse with clap's usage-error shape: ``error: …`` and status 2."""

    def error(self, message: str) -> Any:
        message = message.removeprefix("argument --env: ")
        sys.stderr.write(f"error: {message}\n\nFor more information, try '--help'.\n")
        raise SystemExit(2)


def _env_pair(raw: str) -> tuple[str, str]:
    key, sep, value = raw.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(
            f"invalid value '{raw}' for '--env <KEY=VALUE>': environment entries must be in KEY=VALUE form")
    return key.strip(), value


def _parser() -> _Parser:
    p = _Parser(prog="trio-codex mcp", description="Manage external MCP servers for Codex")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", required=True, parser_class=_Parser)
    for name in ("list", "get"):
        cmd = sub.add_parser(name)
        if name == "get":
            cmd.add_argument("name")
        cmd.add_argument("--json", action="store_true")
    add = sub.add_parser("add", usage="trio-codex mcp add [OPTIONS] <NAME> (--url <URL> | -- <COMMAND>...)")
    add.add_argument("name")
    add.add_argument("--env", action="append", type=_env_pair, default=[], metavar="KEY=VALUE",
                     help="Environment variables to set when launching the server. Only valid with stdio servers")
    add.add_argument("--url", help="URL for a streamable HTTP MCP server")
    add.add_argument("--bearer-token-env-var", metavar="ENV_VAR",
                     help="Optional environment variable to read for a bearer token. Only valid with streamable "
                          "HTTP servers")
    add.add_argument("command", nargs="*", metavar="COMMAND",
                     help="Command to launch the MCP server. Use --url for a streamable HTTP server")
    sub.add_parser("remove").add_argument("name")
    return p


class McpCliError(Exception):
    """A refusal in the original's words (``Error: …``, status 1)."""


def main(argv: list[str], codex_home: Path) -> int:
    """Run one ``mcp`` subcommand; returns the exit status."""
    # What follows `--` is the server's command line, its options included.
    split = argv.index("--") if "--" in argv else len(argv)
    args = _parser().parse_args(argv[:split])
    if args.cmd == "add":
        args.command = [*args.command, *argv[split + 1:]]
    try:
        if args.cmd == "add":
            _add(args, codex_home)
        elif args.cmd == "remove":
            _remove(args.name, codex_home)
        else:
            servers = _servers(codex_home)
            if args.cmd == "list":
                _list(servers, args.json)
            else:
                _get(servers, args.name, args.json)
    except McpCliError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    return 0


def _config_path(codex_home: Path) -> Path:
    return codex_home / "config.toml"


def _load(codex_home: Path) -> Any:
    import tomlkit

    path = _config_path(codex_home)
    try:
        return tomlkit.parse(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return tomlkit.document()
    except (OSError, tomlkit.exceptions.ParseError) as exc:
        raise McpCliError(f"failed to load configuration: {path}: {exc}") from None


def _save(codex_home: Path, doc: Any) -> None:
    import tomlkit

    path = _config_path(codex_home)
    tmp = path.with_name(path.name + ".tmp")
    try:
        text = tomlkit.dumps(doc)
        # A removed table leaves its blank separator line behind: one newline ends the file.
        tmp.write_text(text.rstrip("\n") + "\n" if text.strip() else "", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise McpCliError(f"failed to write MCP servers to {codex_home}: {exc.strerror}") from None


def _servers_table(doc: Any) -> Any:
    """``[mcp_servers]`` of a document, None when absent.

    Raises:
      McpCliError: it is there but no table.
    """
    servers = doc.get("mcp_servers")
    if servers is not None and not isinstance(servers, dict):
        raise McpCliError("failed to load configuration: `mcp_servers` in config.toml must be a table")
    return servers


def _servers(codex_home: Path) -> dict[str, dict[str, Any]]:
    servers = _servers_table(_load(codex_home).unwrap()) or {}
    return {name: cfg for name, cfg in sorted(servers.items()) if isinstance(cfg, dict)}


def _validate_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise McpCliError(f"invalid server name '{name}' (use letters, numbers, '-', '_', ':', '@', '/', '.')")


def _add(args: argparse.Namespace, codex_home: Path) -> None:
    import tomlkit

    command = args.command
    if args.url is not None and command:
        _parser().error("the argument '--url <URL>' cannot be used with '[COMMAND]...'")
    if args.url is None and args.bearer_token_env_var is not None:
        _parser().error("the following required argument was not provided: url")
    if args.url is None and not command:
        _parser().error("the following required arguments were not provided:\n  <COMMAND|--url <URL>>")
    _validate_name(args.name)
    if args.url is not None and args.env:
        raise McpCliError("command is required")
    doc = _load(codex_home)
    servers = _servers_table(doc)
    if servers is None:
        servers = doc["mcp_servers"] = tomlkit.table(is_super_table=True)
    # A user who wrote `mcp_servers = { ... }` inline gets an inline entry.
    make = tomlkit.inline_table if isinstance(servers, tomlkit.items.InlineTable) else tomlkit.table
    entry = make()
    if args.url is not None:
        entry["url"] = args.url
        if args.bearer_token_env_var is not None:
            entry["bearer_token_env_var"] = args.bearer_token_env_var
    else:
        entry["command"] = command[0]
        if command[1:]:
            entry["args"] = command[1:]
        if args.env:
            env = make()
            for key, value in args.env:
                env[key] = value
            entry["env"] = env
    if args.name in servers:
        del servers[args.name]
    servers[args.name] = entry
    _save(codex_home, doc)
    print(f"Added global MCP server '{args.name}'.")


def _remove(name: str, codex_home: Path) -> None:
    _validate_name(name)
    doc = _load(codex_home)
    servers = _servers_table(doc)
    if servers is None or name not in servers:
        print(f"No MCP server named '{name}' found.")
        return
    del servers[name]
    if not servers:
        del doc["mcp_servers"]
    _save(codex_home, doc)
    print(f"Removed global MCP server '{name}'.")


def _transport(cfg: dict[str, Any]) -> dict[str, Any]:
    if "url" in cfg:
        return {"type": "streamable_http", "url": cfg["url"], "bearer_token_env_var": cfg.get("bearer_token_env_var"),
                "http_headers": cfg.get("http_headers"), "env_http_headers": cfg.get("env_http_headers"),
                "http_headers_helper": cfg.get("http_headers_helper")}
    return {"type": "stdio", "command": cfg.get("command", ""), "args": list(cfg.get("args") or []),
            "env": cfg.get("env"), "env_vars": list(cfg.get("env_vars") or []), "cwd": cfg.get("cwd")}


def _seconds(value: Any) -> float | None:
    return None if value is None else float(value)


def _auth(cfg: dict[str, Any]) -> tuple[str, str]:
    """The auth status (JSON word, table word). We have no OAuth login."""
    if "url" in cfg and cfg.get("bearer_token_env_var"):
        return "bearer_token", "Bearer token"
    return "unsupported", "Unsupported"


def _entry(name: str, cfg: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "enabled": cfg.get("enabled", True), "disabled_reason": None,
            "transport": _transport(cfg)}


def _masked_env(cfg: dict[str, Any]) -> str:
    keys = sorted((cfg.get("env") or {})) + list(cfg.get("env_vars") or [])
    return ", ".join(f"{k}=*****" for k in keys) or "-"


def _table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))


def _list(servers: dict[str, dict[str, Any]], as_json: bool) -> None:
    if as_json:
        out = [{**_entry(name, cfg), "startup_timeout_sec": _seconds(cfg.get("startup_timeout_sec")),
                "tool_timeout_sec": _seconds(cfg.get("tool_timeout_sec")), "auth_status": _auth(cfg)[0]}
               for name, cfg in servers.items()]
        print(json.dumps(out, indent=2))
        return
    if not servers:
        print("No MCP servers configured yet. Try `codex mcp add my-tool -- my-command`.")
        return
    status = {True: "enabled", False: "disabled"}
    stdio = [[name, cfg.get("command", ""), " ".join(cfg.get("args") or []) or "-", _masked_env(cfg),
              cfg.get("cwd") or "-", status[cfg.get("enabled", True)], _auth(cfg)[1]]
             for name, cfg in servers.items() if "url" not in cfg]
    http = [[name, cfg["url"], cfg.get("bearer_token_env_var") or "-", status[cfg.get("enabled", True)],
             _auth(cfg)[1]] for name, cfg in servers.items() if "url" in cfg]
    if stdio:
        _table(["Name", "Command", "Args", "Env", "Cwd", "Status", "Auth"], stdio)
    if stdio and http:
        print()
    if http:
        _table(["Name", "Url", "Bearer Token Env Var", "Status", "Auth"], http)


def _pairs(table: dict[str, Any] | None, *, masked: bool) -> str:
    if not table:
        return "-"
    return ", ".join(f"{k}={'*****' if masked else v}" for k, v in sorted(table.items()))


def _get(servers: dict[str, dict[str, Any]], name: str, as_json: bool) -> None:
    cfg = servers.get(name)
    if cfg is None:
        raise McpCliError(f"No MCP server named '{name}' found.")
    if as_json:
        print(json.dumps({**_entry(name, cfg), "enabled_tools": cfg.get("enabled_tools"),
                          "disabled_tools": cfg.get("disabled_tools"),
                          "startup_timeout_sec": _seconds(cfg.get("startup_timeout_sec")),
                          "tool_timeout_sec": _seconds(cfg.get("tool_timeout_sec"))}, indent=2))
        return
    if not cfg.get("enabled", True):
        print(f"{name} (disabled)")
        return
    lines = [name, "  enabled: true"]
    for key in ("enabled_tools", "disabled_tools"):
        if cfg.get(key) is not None:
            lines.append(f"  {key}: {', '.join(cfg[key]) or '-'}")
    if "url" in cfg:
        lines += ["  transport: streamable_http", f"  url: {cfg['url']}",
                  f"  bearer_token_env_var: {cfg.get('bearer_token_env_var') or '-'}",
                  f"  http_headers: {_pairs(cfg.get('http_headers'), masked=True)}",
                  f"  env_http_headers: {_pairs(cfg.get('env_http_headers'), masked=False)}",
                  f"  http_headers_helper: {cfg.get('http_headers_helper') or '-'}"]
    else:
        lines += ["  transport: stdio", f"  command: {cfg.get('command', '')}",
                  f"  args: {' '.join(cfg.get('args') or []) or '-'}", f"  cwd: {cfg.get('cwd') or '-'}",
                  f"  env: {_masked_env(cfg)}"]
    for key in ("startup_timeout_sec", "tool_timeout_sec"):
        if cfg.get(key) is not None:
            lines.append(f"  {key}: {cfg[key]}")
    lines.append(f"  remove: codex mcp remove {name}")
    print("\n".join(lines))
