"""Everything the server writes in a broad session validates against the
original's own JSON schema (0.171.0, ``codex app-server generate-json-schema
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
        # Usage windows in the provider's response headers: account/rateLimits/read reports them.
        await s.turn(tid, "[[used_percent=42]] how much is left?")
        limits = await s.request("account/rateLimits/read")
        assert limits["rateLimits"]["primary"]["usedPercent"] == 42
        assert limits["rateLimits"]["primary"]["windowDurationMins"] == 300
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
    if prop is True:  # any value (a config write's ``value``), null included
        return True
    if prop is False:
        return False
    kind = prop.get("type")
    return (kind == "null" or (isinstance(kind, list) and "null" in kind)
            or any(nullable(p) for p in prop.get("anyOf", []) + prop.get("oneOf", [])))


def accepts_none(kind: msgspec.inspect.Type) -> bool:
    if isinstance(kind, (msgspec.inspect.NoneType, msgspec.inspect.AnyType)):
        return True
    return isinstance(kind, msgspec.inspect.UnionType) and any(accepts_none(k) for k in kind.types)


#: The config.toml the original's config writes were traced with.
TRACED_CONFIG = ('# my comment\nmodel = "gpt-5.4"  # inline\n\n[tui]\n# keep me\nanimations = false\n\n'
                 '[model_providers.mock]\nname = "Mock"\nbase_url = "http://127.0.0.1:9/v1"\nwire_api = "responses"\n')


async def test_a_config_write_a_session_flag_shadows_is_answered_ok_overridden_as_0171_does(tmp_path: Path) -> None:
    home = tmp_path / "codex"
    home.mkdir()
    (home / "config.toml").write_text(TRACED_CONFIG)
    async with open_app_server(home, 'model="forced"') as client:
        await client.request("initialize", {"clientInfo": {"name": "schema", "version": "1"}})
        shadowed = await client.request("config/value/write", {"keyPath": "model", "value": "gpt-5.5",
                                                               "mergeStrategy": "replace"})
        free = await client.request("config/value/write", {"keyPath": "tui.animations", "value": True,
                                                           "mergeStrategy": "replace"})
    # As traced against 0.171.0 run with the same -c flag.
    assert shadowed == {
        "status": "okOverridden", "filePath": str(home / "config.toml"),
        "version": "sha256:fb1dcf72e8ed384352780c684915a8e71729d22b651edc39e0fdab59a2ad68f9",
        "overriddenMetadata": {"message": "Overridden by session flags", "overridingLayer": {
            "name": {"type": "sessionFlags"},
            "version": "sha256:67acdb6ffceec690f501ab3b1391005893dd0b1f20c8d51bdf58c8c8bb3cc102"},
            "effectiveValue": "forced"}}
    assert (free["status"], free["overriddenMetadata"]) == ("ok", None)
    assert free["version"] == "sha256:9b0ffcb73e7a27d546f70aa74c0b1585870a69f3bd7997ef421912a843dd9257"


async def test_the_requests_new_in_this_work_answer_as_0171_does_and_fit_its_schema(tmp_path: Path) -> None:
    """Config writes (comments kept, the version conflict), the provider
    catalog, the API-key login and logout with their notifications, feedback,
    plugins and imports, each answered as codex-cli 0.171.0 answered them
    (traced against a scratch CODEX_HOME) and valid against its schema."""
    home = tmp_path / "codex"
    home.mkdir()
    config = home / "config.toml"
    config.write_text(TRACED_CONFIG)
    async with open_app_server(home) as client:
        s = Session(client)
        await s.request("initialize", {"clientInfo": {"name": "schema", "version": "1"},
                                       "capabilities": {"experimentalApi": True}})
        first = await s.request("config/value/write", {"keyPath": "model", "value": "gpt-5.5",
                                                       "mergeStrategy": "replace"})
        assert first["status"] == "ok" and first["filePath"] == str(config)
        assert first["overriddenMetadata"] is None
        # The original's version of this table (traced).
        assert first["version"] == "sha256:fb1dcf72e8ed384352780c684915a8e71729d22b651edc39e0fdab59a2ad68f9"
        stale = await client.call("config/value/write", {"keyPath": "model", "value": "x",
                                                         "mergeStrategy": "replace", "expectedVersion": "sha256:0"})
        assert stale["error"] == {"code": -32600, "data": {"config_write_error_code": "configVersionConflict"},
                                  "message": "Configuration was modified since last read. Fetch latest version "
                                             "and retry."}
        await s.request("config/batchWrite", {"expectedVersion": first["version"], "edits": [
            {"keyPath": "tui.animations", "value": True, "mergeStrategy": "replace"},
            {"keyPath": "tui", "value": {"notifications": True}, "mergeStrategy": "upsert"},
            {"keyPath": "model_reasoning_effort", "value": "high", "mergeStrategy": "replace"}]})
        text = config.read_text()
        assert "# my comment" in text and "# inline" in text and "# keep me" in text
        assert 'model = "gpt-5.5"' in text and "animations = true" in text and "notifications = true" in text
        bad = await client.call("config/value/write", {"keyPath": "model", "value": 5, "mergeStrategy": "replace"})
        assert bad["error"]["data"] == {"config_write_error_code": "configValidationError"}
        assert bad["error"]["message"].endswith("\nin `model`\n")
        other = await client.call("config/value/write", {"keyPath": "model", "value": "a", "mergeStrategy": "replace",
                                                         "filePath": str(tmp_path / "other.toml")})
        assert other["error"]["message"] == "Only writes to the user config are allowed"
        assert "# keep me" in config.read_text()  # refused writes change nothing
        providers = await s.request("modelProvider/list", {})
        assert [p["id"] for p in providers["data"]] == ["mock", "openai"]
        assert providers["defaultProviderId"] == "openai"
        await s.request("modelProvider/default/set", {"providerId": "mock"})
        assert (await s.request("modelProvider/list", {}))["defaultProviderId"] == "mock"
        unknown = await client.call("modelProvider/default/set", {"providerId": "nope"})
        assert unknown["error"]["message"] == "Model provider `nope` is not configured."
        assert (await s.request("experimentalFeature/enablement/set", {"enablement": {"x": True}})) == {
            "enablement": {}}
        no_login = await client.call("account/rateLimits/read")
        assert no_login["error"]["message"] == "codex account authentication required to read rate limits"
        assert await s.request("account/login/start", {"type": "apiKey", "apiKey": "sk-test"}) == {"type": "apiKey"}
        await client.until(lambda m: m.get("method") == "account/updated")
        assert (home / "auth.json").stat().st_mode & 0o777 == 0o600
        assert json.loads((home / "auth.json").read_text()) == {"auth_mode": "apikey", "OPENAI_API_KEY": "sk-test"}
        assert (await s.request("account/read", {}))["account"] == {"type": "apiKey"}
        assert await s.request("account/logout") == {}
        await client.until(lambda m: m.get("method") == "account/updated" and m["params"]["authMode"] is None)
        assert not (home / "auth.json").exists()
        saved = await s.request("feedback/save", {"classification": "bug", "reason": "r",
                                                  "savePath": str(tmp_path / "fb.zip")})
        assert saved["savedPath"] == str(tmp_path / "fb.zip") and saved["threadId"].startswith("no-active-thread-")
        assert await s.request("plugin/list", {}) == {"marketplaces": [], "marketplaceLoadErrors": [],
                                                      "featuredPluginIds": []}
        assert await s.request("externalAgentConfig/detect", {"includeHome": True}) == {"items": [], "connectors": []}
        ids = [(await s.request("thread/start", {"cwd": str(tmp_path)}))["thread"]["id"] for _ in range(2)]
        only = await s.request("thread/list", {"includedThreadIds": ids[:1], "sourceKinds": []})
        assert [t["id"] for t in only["data"]] in ([], ids[:1])  # a thread is listed once it has a turn
        assert (await s.request("thread/list", {"includedThreadIds": []}))["data"] == []
        many = await client.call("thread/list", {"includedThreadIds": ["a"] * 101})
        assert many["error"] == {"code": -32602, "message": "includedThreadIds accepts at most 100 entries"}
        state = await client.call("thread/readState/update", {"threadId": ids[0], "operation": {"type": "read"},
                                                              "expectedRevision": "x"})
        assert state["error"]["message"] == "thread read state unavailable"
        # /model in the TUI: the thread's next turns use the new model.
        assert await s.request("thread/settings/update", {"threadId": ids[0], "model": "gpt-5.4",
                                                          "effort": "low"}) == {}
        updated = (await client.until(lambda m: m.get("method") == "thread/settings/updated"))[-1]["params"]
        assert updated["threadId"] == ids[0]
        assert (updated["threadSettings"]["model"], updated["threadSettings"]["effort"]) == ("gpt-5.4", "low")
        gone = await client.call("thread/settings/update", {"threadId": "00000000-0000-0000-0000-000000000000"})
        assert gone["error"]["message"] == "thread not found: 00000000-0000-0000-0000-000000000000"
        problems = violations(client, s.sent)
    assert not problems, "\n".join(problems)
