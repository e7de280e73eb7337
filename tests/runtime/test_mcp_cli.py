"""``trio-codex mcp list|get|add|remove`` as a real subprocess: the
original's output, messages and exit codes, and a config.toml whose
comments and formatting survive the edits."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import trio

from harness import OURS, TIMEOUT, server_env

USER_CONFIG = '''# my settings
model = "x"  # trailing comment

[mcp_servers.keep]
# why keep is here
command = "foo"
'''


async def mcp(home: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(TIMEOUT):
        return await trio.run_process([*OURS, "mcp", *args], env=server_env(home), capture_stdout=True,
                                      capture_stderr=True, check=False)


def home_with(tmp_path: Path, text: str = USER_CONFIG) -> Path:
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text(text)
    return home


async def test_add_list_get_remove_keep_the_users_comments(tmp_path: Path) -> None:
    home = home_with(tmp_path)
    added = await mcp(home, "add", "time", "--env", "A=1", "--env", "B=2", "--", "uvx", "mcp-server-time",
                      "--local-timezone", "UTC")
    assert (added.returncode, added.stdout) == (0, b"Added global MCP server 'time'.\n")
    web = await mcp(home, "add", "web", "--url", "http://x/mcp", "--bearer-token-env-var", "TOK")
    assert web.returncode == 0
    text = (home / "config.toml").read_text()
    assert text.startswith(USER_CONFIG)
    assert '[mcp_servers.time]\ncommand = "uvx"\nargs = ["mcp-server-time", "--local-timezone", "UTC"]' in text
    assert '[mcp_servers.web]\nurl = "http://x/mcp"\nbearer_token_env_var = "TOK"' in text
    listed = (await mcp(home, "list")).stdout.decode().splitlines()
    assert listed[0].split() == ["Name", "Command", "Args", "Env", "Cwd", "Status", "Auth"]
    assert listed[2].split() == ["time", "uvx", "mcp-server-time", "--local-timezone", "UTC", "A=*****,",
                                 "B=*****", "-", "enabled", "Unsupported"]
    assert listed[4].split() == ["Name", "Url", "Bearer", "Token", "Env", "Var", "Status", "Auth"]
    assert listed[5].split() == ["web", "http://x/mcp", "TOK", "enabled", "Bearer", "token"]
    as_json = json.loads((await mcp(home, "list", "--json")).stdout)
    assert [e["name"] for e in as_json] == ["keep", "time", "web"]
    assert as_json[1]["transport"] == {"type": "stdio", "command": "uvx", "args": [
        "mcp-server-time", "--local-timezone", "UTC"], "env": {"A": "1", "B": "2"}, "env_vars": [], "cwd": None}
    got = (await mcp(home, "get", "time")).stdout.decode()
    assert got == ("time\n  enabled: true\n  transport: stdio\n  command: uvx\n"
                   "  args: mcp-server-time --local-timezone UTC\n  cwd: -\n  env: A=*****, B=*****\n"
                   "  remove: codex mcp remove time\n")
    assert json.loads((await mcp(home, "get", "web", "--json")).stdout)["transport"]["bearer_token_env_var"] == "TOK"
    for name in ("time", "web"):
        removed = await mcp(home, "remove", name)
        assert removed.stdout == f"Removed global MCP server '{name}'.\n".encode()
    assert (home / "config.toml").read_text() == USER_CONFIG


async def test_bad_input_gets_the_originals_messages_and_exit_codes(tmp_path: Path) -> None:
    home = home_with(tmp_path)
    cases = [
        (("get", "nope"), 1, b"", b"Error: No MCP server named 'nope' found.\n"),
        (("remove", "nope"), 0, b"No MCP server named 'nope' found.\n", b""),
        (("add", "bad name", "--", "x"), 1, b"",
         b"Error: invalid server name 'bad name' (use letters, numbers, '-', '_', ':', '@', '/', '.')\n"),
        (("add", "x", "--env", "FOO", "--", "cmd"), 2, b"",
         b"error: invalid value 'FOO' for '--env <KEY=VALUE>': environment entries must be in KEY=VALUE form\n"),
        (("add", "x"), 2, b"", b"error: the following required arguments were not provided:\n"),
        (("add", "x", "--url", "http://a", "--", "cmd"), 2, b"",
         b"error: the argument '--url <URL>' cannot be used with '[COMMAND]...'\n"),
    ]
    for args, status, out, err in cases:
        done = await mcp(home, *args)
        assert (done.returncode, done.stdout) == (status, out), args
        assert done.stderr.startswith(err), (args, done.stderr)
    assert (home / "config.toml").read_text() == USER_CONFIG


async def test_an_empty_home_lists_nothing_yet(tmp_path: Path) -> None:
    home = home_with(tmp_path, "")
    assert (await mcp(home, "list")).stdout == \
        b"No MCP servers configured yet. Try `codex mcp add my-tool -- my-command`.\n"
    assert (await mcp(home, "list", "--json")).stdout == b"[]\n"


async def test_an_inline_servers_table_gets_an_inline_entry_and_a_bad_one_a_clear_error(tmp_path: Path) -> None:
    home = home_with(tmp_path, 'mcp_servers = { a = { command = "x" } }  # inline\n')
    assert (await mcp(home, "add", "b", "--env", "K=V", "--", "y", "z")).returncode == 0
    text = (home / "config.toml").read_text()
    assert text.startswith("mcp_servers = {") and text.rstrip().endswith("# inline")
    assert [e["name"] for e in json.loads((await mcp(home, "list", "--json")).stdout)] == ["a", "b"]
    (home / "config.toml").write_text("mcp_servers = 5\n")
    refused = await mcp(home, "list")
    assert (refused.returncode, refused.stderr) == (
        1, b"Error: failed to load configuration: `mcp_servers` in config.toml must be a table\n")
