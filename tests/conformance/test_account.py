"""The API-key login as a user of the original's SDK or TUI meets it: the key
given to ``account/login/start`` is what the next thread's model requests
carry, and after ``account/logout`` they carry none."""

from __future__ import annotations

from pathlib import Path

from harness import RpcClient, open_app_server
from trio_codex.transports.scripted_responses import ScriptedResponses


async def turn(client: RpcClient, cwd: Path) -> None:
    tid = (await client.request("thread/start", {"cwd": str(cwd)}))["thread"]["id"]
    await client.request("turn/start", {"threadId": tid, "input": [{"type": "text", "text": "hi"}]})
    await client.until(lambda m: m.get("method") == "turn/completed" and m["params"]["threadId"] == tid)


async def test_the_stored_api_key_is_what_the_openai_provider_sends_after_login_and_not_after_logout(
        tmp_path: Path, scripted: ScriptedResponses) -> None:
    home = tmp_path / "codex"
    home.mkdir()
    (home / "config.toml").write_text(f'model = "mock-model"\nopenai_base_url = "{scripted.base_url}"\n')
    async with open_app_server(home) as client:
        await client.request("initialize", {"clientInfo": {"name": "sdk", "version": "1"}})
        assert (await client.request("account/read", {}))["account"] is None
        await client.request("account/login/start", {"type": "apiKey", "apiKey": "sk-first"})
        assert (await client.request("account/read", {}))["account"] == {"type": "apiKey"}
        await turn(client, tmp_path)
        assert scripted.requests[-1].headers["authorization"] == "Bearer sk-first"
        await client.request("account/logout")
        await turn(client, tmp_path)
        assert "authorization" not in scripted.requests[-1].headers
