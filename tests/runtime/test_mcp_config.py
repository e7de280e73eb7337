"""``[mcp_servers.NAME]`` typed as the original, and the tools the model sees."""

from __future__ import annotations

import json

import pytest

from trio_codex.runtime.config import ConfigError
from trio_codex.runtime.config.mcp import mcp_servers, parse_server
from trio_codex.runtime.mcp.tools import failure_output, model_tools, needs_approval, result_output


def test_a_stdio_server_takes_the_originals_defaults() -> None:
    s = parse_server("docs", {"command": "uvx", "args": ["docs"]})
    assert (s.command, s.args, s.enabled, s.required) == ("uvx", ("docs",), True, False)
    assert (s.startup_timeout_sec, s.tool_timeout_sec) == (30.0, 120.0)


def test_a_stdio_child_gets_the_whitelist_then_env_vars_then_env() -> None:
    s = parse_server("x", {"command": "x", "env_vars": ["EXTRA"], "env": {"MINE": "1", "PATH": "/p"}})
    parent = {"HOME": "/h", "PATH": "/bin", "OPENAI_API_KEY": "secret", "EXTRA": "e", "TZ": "UTC"}
    assert s.child_env(parent) == {"HOME": "/h", "PATH": "/p", "TZ": "UTC", "EXTRA": "e", "MINE": "1"}


def test_an_http_server_builds_its_headers_from_the_environment() -> None:
    s = parse_server("h", {"url": "http://127.0.0.1:1/mcp", "bearer_token_env_var": "TOK",
                           "http_headers": {"X-A": "a"}, "env_http_headers": {"X-B": "B", "X-C": "UNSET"}})
    assert s.headers({"TOK": "t", "B": "b"}) == {"X-A": "a", "X-B": "b", "Authorization": "Bearer t"}
    with pytest.raises(ConfigError, match="TOK"):
        s.headers({})


@pytest.mark.parametrize(("table", "message"), [
    ({"command": "x", "url": "http://h"}, "`url` is not supported for stdio"),
    ({"url": "http://h", "args": ["a"]}, "`args` is not supported for streamable_http"),
    ({"command": "x", "bearer_token_env_var": "T"}, "`bearer_token_env_var` is not supported for stdio"),
    ({"args": ["a"]}, "set `command` (stdio) or `url` (streamable HTTP)"),
    ({"command": "x", "tool_timeout_sec": "slow"}, "invalid `mcp_servers.bad`"),
])
def test_a_bad_table_is_refused_naming_it(table: dict, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        mcp_servers({"bad": table})
    assert message in str(exc.value) and exc.value.key == "mcp_servers.bad"


def test_enabled_and_disabled_tools_filter_what_the_model_sees() -> None:
    s = parse_server("x", {"command": "x", "enabled_tools": ["a", "b"], "disabled_tools": ["b"]})
    assert [t for t in ("a", "b", "c") if s.allows(t)] == ["a"]


def test_each_server_is_one_sorted_namespace_and_schemas_lose_their_titles() -> None:
    tools = [json.loads(bytes(raw)) for raw in model_tools({
        "zeta": [{"name": "b", "inputSchema": {"type": "object", "title": "T", "properties": {
            "y": {"type": "string", "title": "Y"}, "x": {"type": "integer"}}, "required": ["y", "x"]}},
                 {"name": "a", "description": "first", "inputSchema": {"type": "object"}}],
        "alpha": [{"name": "only", "inputSchema": {"type": "object", "properties": {}}}]})]
    assert [t["name"] for t in tools] == ["mcp__alpha", "mcp__zeta", "list_mcp_resources",
                                          "list_mcp_resource_templates", "read_mcp_resource"]
    zeta = tools[1]
    assert zeta["description"] == "Tools in the mcp__zeta namespace." and zeta["type"] == "namespace"
    assert [t["name"] for t in zeta["tools"]] == ["a", "b"]
    b = zeta["tools"][1]
    assert b["parameters"] == {"type": "object", "required": ["y", "x"],
                               "properties": {"x": {"type": "integer"}, "y": {"type": "string"}}}
    assert list(b["parameters"]["properties"]) == ["x", "y"] and b["strict"] is False
    assert zeta["tools"][0]["parameters"] == {"type": "object", "properties": {}}
    assert model_tools({}) == []


def test_results_read_as_the_originals_output() -> None:
    assert result_output({"content": [{"type": "text", "text": "t"}], "structuredContent": {"a": 1}},
                         0.00451) == 'Wall time: 0.0045 seconds\nOutput:\n{"a":1}'
    assert result_output({"content": [{"type": "text", "text": "t"}]}, 1) == "Wall time: 1.0000 seconds\nOutput:\nt"
    assert failure_output("boom", 0.5) == [{"type": "input_text", "text": "Wall time: 0.5000 seconds\nOutput:"},
                                           {"type": "input_text", "text": "boom"}]


@pytest.mark.parametrize(("annotations", "asks"), [
    (None, True), ({}, True), ({"readOnlyHint": True}, False), ({"readOnlyHint": False}, True),
    ({"readOnlyHint": True, "destructiveHint": True}, True)])
def test_annotations_decide_whether_a_call_is_asked_about(annotations: dict | None, asks: bool) -> None:
    assert needs_approval(annotations) is asks


def test_a_bad_server_table_stops_the_config_load_naming_the_file(tmp_path) -> None:
    from trio_codex.runtime.config import load_settings

    (tmp_path / "config.toml").write_text('[mcp_servers.x]\ncommand = "a"\nurl = "http://b"\n')
    with pytest.raises(ConfigError) as exc:
        load_settings(codex_home=tmp_path)
    assert str(exc.value).startswith(f"invalid value for `mcp_servers.x` in {tmp_path / 'config.toml'}: ")
    assert "`url` is not supported for stdio" in str(exc.value)


def test_a_host_without_mcp_servers_never_imports_the_mcp_package() -> None:
    import subprocess
    import sys

    code = ("import sys, trio_codex.runtime.app; "
            "print(any(m == 'mcp' or m.startswith('mcp.') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"
