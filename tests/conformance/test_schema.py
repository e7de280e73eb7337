"""Everything the server writes in a broad session validates against the
original's own JSON schema (0.169.0, ``codex app-server generate-json-schema
--experimental``, vendored in tests/fixtures/original/schema): each
response against its method's ``*Response`` type, each notification and
server request against its variant of ``ServerNotification`` and
``ServerRequest``. Clients generate their types from that schema (the Python
SDK validates every answer with pydantic models built from it), so a missing
required field or a wrong type breaks them even where our own tests pass."""

from __future__ import annotations

import gzip
import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import msgspec.inspect
import pytest
import trio

from harness import RpcClient, mock_config, open_app_server
from trio_codex.runtime.protocol.methods import METHODS
from trio_codex.transports.scripted_responses import ScriptedResponses

SCHEMA = Path(__file__).parent.parent / "fixtures" / "original" / "schema" / "codex_app_server_protocol.schemas.json.gz"


@cache
def schema() -> dict[str, Any]:
    return json.loads(gzip.decompress(SCHEMA.read_bytes()))


def validator(ref: str) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator({"$ref": ref, "definitions": schema()["definitions"]})


#: The response types of methods without params (no params type to derive them from).
PARAMLESS_RESPONSES = {"configRequirements/read": "#/definitions/v2/ConfigRequirementsReadResponse"}


@cache
def variants(union: str) -> dict[str, str]:
    """method -> $ref of its params (``ServerNotification``, ``ServerRequest``)
    or of its response (``ClientRequest``: the params type renamed, as the
    schema names every pair ``XParams`` / ``XResponse``)."""
    out = {}
    for variant in schema()["definitions"][union]["oneOf"]:
        [method] = variant["properties"]["method"]["enum"]
        ref = variant["properties"].get("params", {}).get("$ref")
        if ref is None:
            if union == "ClientRequest" and method in PARAMLESS_RESPONSES:
                out[method] = PARAMLESS_RESPONSES[method]
            continue
        if union == "ClientRequest":
            ref = ref.removesuffix("Params") + "Response"
        out[method] = ref
    return out


def resolvable(ref: str) -> bool:
    node: Any = schema()
    for part in ref.removeprefix("#/").split("/"):
        if part not in node:
            return False
        node = node[part]
    return True


def violations(client: RpcClient, sent: dict[Any, str]) -> list[str]:
    """What in the server's output does not fit the schema, one line each."""
    problems = []
    checked = set()
    for msg in client.log:
        if "method" in msg:
            union = "ServerRequest" if "id" in msg else "ServerNotification"
            ref = variants(union).get(msg["method"])
            if ref is None:
                problems.append(f"{union} has no method {msg['method']!r}")
                continue
            payload = msg.get("params")
            what = msg["method"]
        elif "result" in msg and msg.get("id") in sent:
            ref = variants("ClientRequest").get(sent[msg["id"]], "")
            if not resolvable(ref):
                continue  # a param-less method, or one without a response type
            payload = msg["result"]
            what = f"{sent[msg['id']]} response"
        else:
            continue
        checked.add(what)
        for error in validator(ref).iter_errors(payload):
            path = "/".join(str(p) for p in error.absolute_path)
            problems.append(f"{what}: at {path or '(top)'}: {error.message[:300]}")
    assert checked, "nothing was checked"
    return problems


class Session:
    """Requests sent, by id, so that responses can be matched to methods."""

    def __init__(self, client: RpcClient) -> None:
        self.client = client
        self.sent: dict[Any, str] = {}

    async def request(self, method: str, params: Any = None) -> Any:
        msg = await self.client.call(method, params)
        self.sent[msg["id"]] = method
        assert "result" in msg, msg
        return msg["result"]

    async def turn(self, tid: str, text: str, decision: str = "accept") -> list[dict[str, Any]]:
        turn = await self.request("turn/start", {"threadId": tid, "input": [{"type": "text", "text": text}]})
        seen = []
        while True:
            with trio.fail_after(20):
                msg = await self.client.next_message()
            seen.append(msg)
            if "id" in msg and "method" in msg:
                await self.client.send({"id": msg["id"], "result": {"decision": decision}})
            if msg.get("method") == "turn/completed" and msg["params"]["turn"]["id"] == turn["turn"]["id"]:
                return seen


def call(name: str, **args: object) -> str:
    return f"[[call={name} {json.dumps(args)}]]"


async def test_a_broad_session_fits_the_original_schema(tmp_path: Path, scripted: ScriptedResponses) -> None:
    home = tmp_path / "codex"
    home.mkdir()
    (home / "config.toml").write_text(mock_config(scripted.base_url))
    workspace = tmp_path / "ws"
    workspace.mkdir()
    patch = "*** Begin Patch\n*** Add File: hello.txt\n+hello\n*** End Patch\n"
    async with open_app_server(home) as client:
        s = Session(client)
        await s.request("initialize", {"clientInfo": {"name": "schema", "version": "1"},
                                       "capabilities": {"experimentalApi": True}})
        for method in ("model/list", "account/read", "config/read", "thread/loaded/list", "skills/list",
                       "hooks/list", "plugin/installed", "app/list", "experimentalFeature/list",
                       "mcpServerStatus/list"):
            await s.request(method, {})
        await s.request("configRequirements/read")
        for method in ("collaborationMode/list", "account/bedrock/checkGovCloudRequirements"):
            await s.request(method, {})  # experimental: the TUI asks for both
        tid = (await s.request("thread/start", {"cwd": str(workspace), "approvalPolicy": "untrusted",
                                                "sandbox": "danger-full-access"}))["thread"]["id"]
        await s.turn(tid, "[[reasoning=2 deltas=5]] think, then answer")
        await s.turn(tid, call("shell_command", command="echo approved"))
        await s.turn(tid, call("shell_command", command="touch declined"), decision="decline")
        await s.turn(tid, f"[[custom=apply_patch {json.dumps(patch)}]]")
        await s.turn(tid, call("update_plan", plan=[{"step": "check the schema", "status": "in_progress"}]))
        await s.turn(tid, "[[status=500 times=1]] retried once")  # error {willRetry: true}
        await s.turn(tid, "[[status=400]] refused")  # error, turn failed
        slow = await s.request("turn/start", {"threadId": tid, "input": [
            {"type": "text", "text": "[[deltas=100 delay_ms=50]] interrupted"}]})
        await client.until(lambda m: m.get("method") == "item/agentMessage/delta")
        await s.request("turn/interrupt", {"threadId": tid, "turnId": slow["turn"]["id"]})
        await client.until(lambda m: m.get("method") == "turn/completed")
        await s.request("thread/name/set", {"threadId": tid, "name": "schema thread"})
        await s.request("thread/metadata/update", {"threadId": tid, "gitInfo": {"branch": "main"}})
        await s.request("thread/list", {})
        await s.request("thread/read", {"threadId": tid, "includeTurns": True})
        await s.request("thread/turns/list", {"threadId": tid})
        # As the TUI sends them: every optional param present and null.
        await s.request("thread/turns/list", {"threadId": tid, "cursor": None, "limit": 1, "sortDirection": None,
                                              "itemsView": None})
        assert (await s.request("thread/list", {"sortKey": "section_position", "sectionId": "s1"}))["data"] == []
        refused = await client.call("thread/list", {"sortKey": "section_position"})
        assert refused["error"]["message"] == "section-position sorting requires a section filter"
        await s.request("thread/items/list", {"threadId": tid})
        fork = (await s.request("thread/fork", {"threadId": tid}))["thread"]["id"]
        await s.request("thread/compact/start", {"threadId": tid})
        await client.until(lambda m: m.get("method") == "turn/completed")
        # Unsandboxed, so that the session runs where bubblewrap is absent too.
        await s.request("command/exec", {"command": ["echo", "hi"], "cwd": str(workspace),
                                         "sandboxPolicy": {"type": "dangerFullAccess"}})
        await s.request("thread/archive", {"threadId": fork})
        await s.request("thread/unarchive", {"threadId": fork})
        await s.request("thread/unsubscribe", {"threadId": tid})
        await s.request("thread/resume", {"threadId": tid})
        await s.request("permissionProfile/list", {})
        # A helper thread as the 0.171 TUI starts it, then a turn that names another profile.
        helper = (await s.request("thread/start", {"cwd": str(workspace), "permissions": ":read-only",
                                                   "sandbox": None, "ephemeral": True}))["thread"]["id"]
        await s.request("turn/start", {"threadId": helper, "permissions": ":workspace",
                                       "input": [{"type": "text", "text": "hi"}]})
        await client.until(lambda m: m.get("method") == "turn/completed" and m["params"]["threadId"] == helper)
        problems = violations(client, s.sent)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("union", ["ServerNotification", "ServerRequest", "ClientRequest"])
def test_the_vendored_schema_is_whole(union: str) -> None:
    assert all(resolvable(ref) for ref in variants(union).values() if not ref.endswith("Response"))


def test_every_param_the_schema_lets_be_null_may_be_null() -> None:
    """Clients send optional params as explicit nulls (the TUI sends
    ``sortDirection: null``); a params field the schema allows null for must
    decode None, not answer "invalid type: null"."""
    strict = []
    for method, spec in METHODS.items():
        ref = variants("ClientRequest").get(method, "").removesuffix("Response") + "Params"
        if spec.params is None or not resolvable(ref):
            continue
        fields = {f.encode_name: f.type for f in msgspec.inspect.type_info(spec.params).fields}
        node: Any = schema()
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        for name, prop in node.get("properties", {}).items():
            if name in fields and nullable(prop) and not accepts_none(fields[name]):
                strict.append(f"{method}: {name}")
    assert not strict


def nullable(prop: dict[str, Any] | bool) -> bool:
    if isinstance(prop, bool):  # the schema `true` takes anything, null too
        return prop
    kind = prop.get("type")
    return (kind == "null" or (isinstance(kind, list) and "null" in kind)
            or any(nullable(p) for p in prop.get("anyOf", []) + prop.get("oneOf", [])))


def accepts_none(kind: msgspec.inspect.Type) -> bool:
    if isinstance(kind, (msgspec.inspect.NoneType, msgspec.inspect.AnyType)):
        return True
    return isinstance(kind, msgspec.inspect.UnionType) and any(accepts_none(k) for k in kind.types)
