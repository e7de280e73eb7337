"""Speaking 0.171.0 while 0.169 clients keep working: the version we report,
and ``bioPolicy``, which 0.171 added to ``CodexErrorInfo`` and which a 0.169
TUI (a closed serde enum) cannot parse, so it is sent ``other`` there, the
value a 0.169 server sends."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import jsonschema

from harness import RpcClient, mock_config, open_app_server
from trio_codex.transports.scripted_responses import ScriptedResponses

SCHEMAS = Path(__file__).parent.parent / "fixtures" / "original" / "schema"


def error_info_schema(version: str) -> dict[str, Any]:
    folder = SCHEMAS if version == "0.171.0" else SCHEMAS / version
    defs = json.loads(gzip.decompress((folder / "codex_app_server_protocol.schemas.json.gz").read_bytes()))
    return {"$ref": "#/definitions/v2/CodexErrorInfo", "definitions": defs["definitions"]}


async def failed_turn(client: RpcClient, version: str, cwd: Path) -> tuple[str, dict[str, Any]]:
    init = await client.request("initialize", {"clientInfo": {"name": "codex-tui", "version": version}})
    tid = (await client.request("thread/start", {"cwd": str(cwd)}))["thread"]["id"]
    await client.request("turn/start", {"threadId": tid, "input": [
        {"type": "text", "text": '[[status=400 code=bio_policy message="flagged"]] hi'}]})
    done = (await client.until(lambda m: m.get("method") == "turn/completed"))[-1]
    return init["userAgent"], done["params"]["turn"]["error"]


async def test_a_0171_client_sees_bio_policy_and_a_0169_client_sees_other(
        tmp_path: Path, scripted: ScriptedResponses) -> None:
    home = tmp_path / "codex"
    home.mkdir()
    (home / "config.toml").write_text(mock_config(scripted.base_url))
    for version, expected in (("0.171.0", "bioPolicy"), ("0.169.0", "other")):
        async with open_app_server(home) as client:
            agent, error = await failed_turn(client, version, tmp_path)
        assert "/0.171.0 (" in agent
        assert error["message"] == "flagged" and error["codexErrorInfo"] == expected
        jsonschema.validate(error["codexErrorInfo"], error_info_schema(version))


async def test_a_request_new_in_0171_that_we_do_not_serve_is_method_not_found_not_unknown(tmp_path: Path) -> None:
    async with open_app_server(tmp_path) as client:
        await client.request("initialize", {"clientInfo": {"name": "ide", "version": "0.171.0"},
                                            "capabilities": {"experimentalApi": True}})
        new = await client.call("thread/realtime/list", {})
        gone = await client.call("currentTime/read", {})  # a server request, never a client's
    assert new["error"]["code"] == -32601 and "thread/realtime/list" in new["error"]["message"]
    assert gone["error"]["code"] == -32600 and "unknown variant `currentTime/read`" in gone["error"]["message"]
