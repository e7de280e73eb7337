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
