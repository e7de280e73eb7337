"""The handshake and protocol errors, over the real server's stdio."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import trio

from harness import TIMEOUT, RpcError, open_app_server, server_argv, server_env


async def test_initialize_reports_a_real_version_and_where_codex_home_is(codex_home: Path) -> None:
    async with open_app_server(codex_home) as client:
        result = await client.initialize("codex_python_sdk")
    assert set(result) == {"userAgent", "codexHome", "platformFamily", "platformOs"}
    assert re.match(r"^codex_python_sdk/0\.171\.0 \(\S.* \d+\.\d+\.\d+; \S+\) \S+ \(codex_python_sdk; 1\.0\)$", result["userAgent"])
    assert result["codexHome"] == str(codex_home)
    assert (result["platformFamily"], result["platformOs"]) == ("unix", "linux")


async def test_requests_before_initialize_are_refused(codex_home: Path) -> None:
    async with open_app_server(codex_home) as client:
        with pytest.raises(RpcError) as exc:
            await client.request("thread/start", {})
        assert (exc.value.code, exc.value.message) == (-32600, "Not initialized")
        await client.initialize()
        assert "thread" in await client.request("thread/start", {})


async def test_initialize_twice_is_refused(codex_home: Path) -> None:
    async with open_app_server(codex_home) as client:
        await client.initialize()
        with pytest.raises(RpcError) as exc:
            await client.initialize()
        assert (exc.value.code, exc.value.message) == (-32600, "Already initialized")


async def test_initialize_rejects_a_client_name_that_is_no_header_value(codex_home: Path) -> None:
    async with open_app_server(codex_home) as client:
        with pytest.raises(RpcError) as exc:
            await client.initialize("bad\rname")
        assert exc.value.message == "Invalid clientInfo.name: 'bad\rname'. Must be a valid HTTP header value."


async def test_unknown_and_unserved_methods_get_errors_not_silence(codex_home: Path) -> None:
    async with open_app_server(codex_home) as client:
        await client.initialize()
        with pytest.raises(RpcError) as exc:
            await client.request("no/such/method", {})
        assert exc.value.code == -32600
        assert exc.value.message.startswith("Invalid request: unknown variant `no/such/method`, expected one of ")
        with pytest.raises(RpcError) as exc:
            await client.request("account/gatewayOAuth/read", {})
        assert exc.value.code == -32601
        assert "`account/gatewayOAuth/read`" in exc.value.message


async def test_mcp_server_status_is_empty_without_servers_and_lists_the_configured_ones(
        codex_home: Path) -> None:
    async with open_app_server(codex_home) as client:
        await client.initialize()
        assert await client.request("mcpServerStatus/list", {}) == {"data": [], "nextCursor": None}
    async with open_app_server(codex_home, 'mcp_servers.broken.command="/nonexistent/mcp"') as client:
        await client.initialize()
        listed = await client.request("mcpServerStatus/list", {})
    assert [(e["name"], e["toolsError"]) for e in listed["data"]] == [
        ("broken", "MCP startup failed: No such file or directory (os error 2)")]


async def test_wrong_param_types_and_missing_params_are_invalid_requests(codex_home: Path) -> None:
    async with open_app_server(codex_home) as client:
        await client.initialize()
        with pytest.raises(RpcError) as exc:
            await client.request("turn/start", {"threadId": 123, "input": []})
        assert (exc.value.code, exc.value.message) == (
            -32600, "Invalid request: invalid type: integer, expected a string at `threadId`")
        with pytest.raises(RpcError) as exc:
            await client.request("thread/start")
        assert exc.value.message == "Invalid request: missing field `params`"
        with pytest.raises(RpcError) as exc:
            await client.request("turn/start", {"threadId": "nope", "input": []})
        assert exc.value.message == "thread not found: nope"


async def test_malformed_lines_get_no_reply_and_lose_nothing(codex_home: Path) -> None:
    async with open_app_server(codex_home) as client:
        await client.send_raw(b'not json at all\n{"id":\n[1,2,3]\n\xff\xfe\n')
        await client.initialize()
        response = await client.call("model/list", {}, id="after-garbage")
        assert response["id"] == "after-garbage" and response["result"]["data"]
        # Only replies to the two requests: the garbage got none.
        assert [m.get("id") for m in client.log] == [1, "after-garbage"]


async def test_string_and_integer_ids_are_echoed_verbatim(codex_home: Path) -> None:
    async with open_app_server(codex_home) as client:
        assert (await client.call("initialize", {"clientInfo": {"name": "t", "version": "1"}},
                                  id="initialize"))["id"] == "initialize"
        assert (await client.call("model/list", {}, id=2**53))["id"] == 2**53


async def test_an_oversized_message_is_refused_by_id_and_the_connection_lives(codex_home: Path) -> None:
    async with open_app_server(codex_home, env_extra={"TRIO_CODEX_MAX_MESSAGE_BYTES": "4096"}) as client:
        await client.initialize()
        big = {"threadId": "t", "input": [{"type": "text", "text": "x" * 100_000}]}
        response = await client.call("turn/start", big, id="big")
        assert response["error"]["code"] == -32600
        assert response["error"]["message"].startswith("Invalid request: message of ")
        assert (await client.call("model/list", {}))["result"]["data"]


async def test_the_server_exits_when_stdin_closes(codex_home: Path) -> None:
    async with open_app_server(codex_home) as client:
        await client.initialize()
        assert client.proc.stdin is not None
        await client.proc.stdin.aclose()
        with trio.fail_after(TIMEOUT):
            assert await client.proc.wait() == 0


async def test_read_only_requests_answer_with_every_required_field(codex_home: Path) -> None:
    async with open_app_server(codex_home) as client:
        await client.initialize()
        models = await client.request("model/list", {})
        assert models["data"][0]["model"] == "mock-model" and models["data"][0]["isDefault"] is True
        assert {"id", "model", "displayName", "description", "hidden", "isDefault",
                "defaultReasoningEffort", "supportedReasoningEfforts"} <= set(models["data"][0])
        assert await client.request("account/read", {}) == {"account": None, "requiresOpenaiAuth": False}
        config = await client.request("config/read", {})
        assert config["config"]["model_provider"] == "mock"
        origin = config["origins"]["model"]["name"]
        assert (origin["type"], origin["file"]) == ("user", str(codex_home / "config.toml"))


async def test_sigterm_mid_turn_stops_the_server_cleanly(codex_home: Path) -> None:
    async with open_app_server(codex_home) as client:
        await client.initialize()
        tid = (await client.request("thread/start", {}))["thread"]["id"]
        await client.request("turn/start", {"threadId": tid, "input": [
            {"type": "text", "text": "[[deltas=100000 delay_ms=1]] forever"}]})
        await client.until(lambda m: m.get("method") == "item/agentMessage/delta")
        client.proc.terminate()
        with trio.fail_after(TIMEOUT):
            assert await client.proc.wait() == 0


async def test_a_bad_config_file_stops_start_up_with_the_key_and_file(codex_home: Path) -> None:
    (codex_home / "config.toml").write_text('approval_policy = "sometimes"\n')
    done = await trio.run_process(server_argv(), env=server_env(codex_home), capture_stderr=True,
                                  stdin=b"", check=False)
    assert done.returncode == 2
    assert f"invalid value for `approval_policy` in {codex_home / 'config.toml'}" in done.stderr.decode()


async def test_replies_are_written_even_when_stdin_closes_right_behind_the_requests(codex_home: Path) -> None:
    lines = [{"id": 1, "method": "initialize", "params": {"clientInfo": {"name": "t", "version": "1"}}},
             {"id": 2, "method": "thread/start", "params": {"approvalPolicy": "on-failure"}},
             {"id": 3, "method": "model/list", "params": {}}]
    stdin = "".join(json.dumps(line) + "\n" for line in lines).encode()
    with trio.fail_after(TIMEOUT):
        done = await trio.run_process(server_argv(), env=server_env(codex_home), stdin=stdin,
                                      capture_stdout=True, capture_stderr=True, check=False)
    replies = {m["id"]: m for m in map(json.loads, done.stdout.splitlines())}
    assert done.returncode == 0 and set(replies) == {1, 2, 3}
    # "on-failure" was removed from the protocol, as the original refuses it.
    assert replies[2]["error"]["code"] == -32600 and "on-failure" in replies[2]["error"]["message"]


async def test_stdio_can_also_be_asked_for_with_the_original_s_stdio_flag(codex_home: Path) -> None:
    hello = b'{"id":1,"method":"initialize","params":{"clientInfo":{"name":"flag","version":"1"}}}\n'
    with trio.fail_after(TIMEOUT):
        result = await trio.run_process([sys.executable, "-m", "trio_codex.runtime", "app-server", "--stdio"],
                                        stdin=hello, capture_stdout=True, capture_stderr=True,
                                        env=server_env(codex_home))
    assert json.loads(result.stdout.splitlines()[0])["result"]["userAgent"].startswith("flag/")
