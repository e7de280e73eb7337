"""MCP tools as the model sees them, and their results as it reads them
(sans-I/O).

As the original 0.169: each server is one Responses tool of type
``namespace`` named ``mcp__<server>``, servers sorted by name and tools by
name; a tool's ``parameters`` is its input schema without ``title`` keys,
its properties sorted. With any server configured, three flat functions
come too: ``list_mcp_resources``, ``list_mcp_resource_templates`` and
``read_mcp_resource``. A result goes back as ``Wall time: …\\nOutput:\\n``
and the structured content as compact JSON (else the content's text); a
failure as two ``input_text`` parts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

NAMESPACE_PREFIX = "mcp__"
RESOURCE_TOOLS = ("list_mcp_resources", "list_mcp_resource_templates", "read_mcp_resource")



def _listing_tool(name: str, what: str, description: str) -> dict[str, Any]:
    """A paged listing tool (``cursor``, ``server``), as the original declares both."""
    return {"type": "function", "name": name, "strict": False, "description": description,
            "parameters": {"type": "object", "properties": {
                "cursor": {"type": "string", "description": (
                    f"Opaque cursor from a previous {name} call; omit for the first page.")},
                "server": {"type": "string", "description": (
                    f"MCP server name. Omit to list {what} from every configured server.")}},
                "additionalProperties": False}}


_RESOURCE_SPECS = [
    _listing_tool("list_mcp_resources", "resources", (
        "Lists resources provided by MCP servers. Resources allow servers to share data that provides context "
        "to language models, such as files, database schemas, or application-specific information. Prefer "
        "resources over web search when possible.")),
    _listing_tool("list_mcp_resource_templates", "resource templates", (
        "Lists resource templates provided by MCP servers. Parameterized resource templates allow servers to "
        "share data that takes parameters and provides context to language models, such as files, database "
        "schemas, or application-specific information. Prefer resource templates over web search when "
        "possible.")),
    {"type": "function", "name": "read_mcp_resource", "strict": False, "description": (
        "Read a specific resource from an MCP server given the server name and resource URI."),
     "parameters": {"type": "object", "properties": {
         "server": {"type": "string", "description": (
             "MCP server name exactly as configured. Must match the 'server' field returned by "
             "list_mcp_resources.")},
         "uri": {"type": "string", "description": (
             "Resource URI to read. Must be one of the URIs returned by list_mcp_resources.")}},
        "required": ["server", "uri"], "additionalProperties": False}},
]


def model_tools(servers: Mapping[str, Iterable[dict[str, Any]]]) -> list[msgspec.Raw]:
    """The tools of ``{server: its MCP tools}`` for the model's request
    (empty without servers)."""
    if not servers:
        return []
    out: list[dict[str, Any]] = []
    for name in sorted(servers):
        tools = sorted(servers[name], key=lambda t: t["name"])
        if not tools:
            continue
        out.append({"type": "namespace", "name": NAMESPACE_PREFIX + name,
                    "description": f"Tools in the {NAMESPACE_PREFIX}{name} namespace.",
                    "tools": [{"type": "function", "name": t["name"], "description": t.get("description") or "",
                               "strict": False, "parameters": parameters(t.get("inputSchema") or {})}
                              for t in tools]})
    out += _RESOURCE_SPECS
    return [msgspec.Raw(msgspec.json.encode(spec)) for spec in out]


def parameters(schema: Any) -> Any:
    """A tool's input schema for the model: ``title`` keys dropped,
    properties sorted, ``properties`` present on an object."""
    if isinstance(schema, list):
        return [parameters(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: parameters(v) for k, v in schema.items() if k != "title" and k != "properties"}
    if "properties" in schema and isinstance(schema["properties"], dict):
        out["properties"] = {k: parameters(schema["properties"][k]) for k in sorted(schema["properties"])}
    elif schema.get("type") == "object":
        out["properties"] = {}
    return out


def wall_time(seconds: float) -> str:
    return f"Wall time: {seconds:.4f} seconds\nOutput:"


def result_output(result: Mapping[str, Any], seconds: float) -> str:
    """A successful call's output string for the model."""
    structured = result.get("structuredContent")
    if structured is not None:
        body = json.dumps(structured, separators=(",", ":"), ensure_ascii=False)
    else:
        body = "\n".join(c.get("text", "") for c in result.get("content") or () if c.get("type") == "text")
    return f"{wall_time(seconds)}\n{body}"


def failure_output(error: str, seconds: float) -> list[dict[str, str]]:
    """A failed call's output parts for the model."""
    return [{"type": "input_text", "text": wall_time(seconds)}, {"type": "input_text", "text": error}]


def needs_approval(annotations: Mapping[str, Any] | None) -> bool:
    """Whether a call must be approved: unless the server says the tool
    only reads (and does not say it is destructive), as the original."""
    annotations = annotations or {}
    if annotations.get("destructiveHint") is True:
        return True
    return annotations.get("readOnlyHint") is not True
