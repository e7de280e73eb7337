"""The mailboxes' vocabulary is typed: no message field is ``Any`` (the MCP
JSON objects excepted, whose shape is the MCP server's), each handler of the registry names its
method-table row's params type, and the MCP pool takes one message type per
client method."""

from __future__ import annotations

import inspect
import types
import typing
from typing import Any

import msgspec

from trio_codex.actors import messages
from trio_codex.actors.threads import ThreadRegistry
from trio_codex.runtime.protocol.methods import HANDLER_PREFIX, METHODS, REGISTRY

#: The fields that hold MCP JSON (``messages.McpJson``, ``dict[str, Any]``).
MCP_JSON_FIELDS = {
    ("McpInventoryResult", "tools"), ("McpInventoryResult", "resources"), ("McpInventoryResult", "templates"),
    ("McpInventoryResult", "server_info"), ("McpInventoryResult", "capabilities"),
    ("McpCallTool", "arguments"), ("McpCallTool", "elicit"), ("McpCallTool", "reply"),
    ("McpReadResource", "reply"), ("McpListResources", "reply"),
}


def _mentions_any(hint: object) -> bool:
    if hint is Any:
        return True
    return any(_mentions_any(arg) for arg in typing.get_args(hint) if not isinstance(arg, list))


def _structs() -> list[type[msgspec.Struct]]:
    return [obj for obj in vars(messages).values()
            if isinstance(obj, type) and issubclass(obj, msgspec.Struct)]


def test_no_message_field_is_typed_any_but_the_mcp_json_ones() -> None:
    found = set()
    for cls in _structs():
        for name, hint in typing.get_type_hints(cls).items():
            if _mentions_any(hint):
                found.add((cls.__name__, name))
    assert found == MCP_JSON_FIELDS


def test_each_registry_handler_takes_the_thread_request_of_its_rows_params_type() -> None:
    rows = {m: s for m, s in METHODS.items() if s.route is REGISTRY}
    assert rows
    for method, spec in rows.items():
        handler = getattr(ThreadRegistry, HANDLER_PREFIX + spec.handler)
        req = typing.get_type_hints(handler)[list(inspect.signature(handler).parameters)[1]]
        assert typing.get_origin(req) is messages.ThreadRequest, method
        (params,) = typing.get_args(req)
        assert params is (types.NoneType if spec.params is None else spec.params), method


def test_the_mcp_pool_takes_one_message_type_per_client_method() -> None:
    kinds = typing.get_args(messages.McpRequest)
    assert len(kinds) == len({m for m, s in METHODS.items() if s.route is REGISTRY and "mcp" in m.lower()})
    assert set(kinds) <= set(typing.get_args(messages.McpPoolInbox))
    tags = {k.__struct_config__.tag for k in kinds}
    assert len(tags) == len(kinds)
