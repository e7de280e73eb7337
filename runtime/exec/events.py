"""``exec --json``: app-server notifications in, the original's JSONL
thread events out (``codex-rs/exec/src/exec_events.rs`` and
``event_processor_with_jsonl_output.rs``). Sans-I/O: :class:`JsonlEvents`
takes decoded notifications and returns the events to print.

Events: ``thread.started {thread_id}``, ``turn.started {}``,
``turn.completed {usage}``, ``turn.failed {error{message}}``,
``item.started|item.updated|item.completed {item}`` and ``error {message}``.
Items get ids ``item_0``, ``item_1``… in order of first sight; a tool item
keeps its id from ``item.started`` to ``item.completed``. Types:
``agent_message``, ``reasoning``, ``command_execution``, ``file_change``,
``mcp_tool_call``, ``web_search``, ``todo_list`` (the turn's plan: started at
the first ``turn/plan/updated``, updated at the next, completed at turn end)
and ``error`` (warnings). Items still open when the turn ends are closed
then: with the state the turn reports, else their last known state.
"""

from __future__ import annotations

import itertools
from typing import Any

Event = dict[str, Any]

_COMMAND_STATUS = {"inProgress": "in_progress", "completed": "completed", "failed": "failed",
                   "declined": "declined"}
_PATCH_STATUS = {"inProgress": "in_progress", "completed": "completed", "failed": "failed", "declined": "failed"}
_MCP_STATUS = {"inProgress": "in_progress", "completed": "completed", "failed": "failed"}


def with_details(message: str, details: str | None) -> str:
    """``message (details)``, as the original joins an error's parts."""
    return f"{message} ({details})" if details else message


def final_message(turn_items: list[dict[str, Any]]) -> str | None:
    """A completed turn's answer: its last agent message, else its last plan."""
    for kind in ("agentMessage", "plan"):
        for item in reversed(turn_items):
            if item.get("type") == kind:
                return item.get("text", "")
    return None


class JsonlEvents:
    """The JSONL view of one exec run."""

    def __init__(self) -> None:
        self._ids = itertools.count()
        #: Open tool items: app-server item id -> (exec id, last mapped item).
        self._open: dict[str, tuple[str, Event]] = {}
        self._todo: tuple[str, list[Event]] | None = None
        self._usage: dict[str, Any] | None = None
        self._last_error: str | None = None
        #: The turn's answer once it completed (for ``-o``), and whether it did.
        self.final_message: str | None = None
        self.completed = False

    def _next_id(self) -> str:
        return f"item_{next(self._ids)}"

    def thread_started(self, thread_id: str) -> list[Event]:
        return [{"type": "thread.started", "thread_id": thread_id}]

    def warning(self, message: str) -> list[Event]:
        return [self._completed({"type": "error", "message": message})]

    def _completed(self, details: Event, item_id: str | None = None) -> Event:
        return {"type": "item.completed", "item": {"id": item_id or self._next_id(), **details}}

    def process(self, method: str, params: dict[str, Any]) -> list[Event]:
        """The events for one notification (often none)."""
        match method:
            case "turn/started":
                return [{"type": "turn.started"}]
            case "configWarning" | "deprecationNotice":
                return self.warning(with_details(params.get("summary", ""), params.get("details")))
            case "model/rerouted":
                return self.warning(f"model rerouted: {params.get('fromModel')} -> {params.get('toModel')} "
                                    f"({params.get('reason')})")
            case "error":
                error = params.get("error") or {}
                self._last_error = with_details(error.get("message", ""), error.get("additionalDetails"))
                return [{"type": "error", "message": self._last_error}]
            case "item/started":
                return self._item_started(params["item"])
            case "item/completed":
                return self._item_completed(params["item"])
            case "item/fileChange/patchUpdated":
                item = {"type": "fileChange", "id": params["itemId"], "changes": params.get("changes", []),
                        "status": "inProgress"}
                return [{"type": "item.updated", "item": self._track(item)}]
            case "thread/tokenUsage/updated":
                self._usage = params["tokenUsage"]["total"]
                return []
            case "turn/plan/updated":
                return self._plan(params.get("plan", []))
            case "turn/completed":
                return self._turn_completed(params["turn"])
        return []

    def _track(self, item: dict[str, Any]) -> Event:
        """Map a tool item under the exec id it started with."""
        exec_id = self._open[item["id"]][0] if item["id"] in self._open else self._next_id()
        mapped = {"id": exec_id, **(_details(item) or {})}
        self._open[item["id"]] = (exec_id, mapped)
        return mapped

    def _item_started(self, item: dict[str, Any]) -> list[Event]:
        if item.get("type") in ("agentMessage", "reasoning") or _details(item) is None:
            return []
        again = item.get("type") == "fileChange" and item["id"] in self._open
        return [{"type": "item.updated" if again else "item.started", "item": self._track(item)}]

    def _item_completed(self, item: dict[str, Any]) -> list[Event]:
        details = _details(item)
        if details is None:
            return []
        if details["type"] == "agent_message":
            self.final_message = details["text"]
        opened = self._open.pop(item["id"], None)
        return [self._completed(details, opened[0] if opened else None)]

    def _plan(self, plan: list[dict[str, Any]]) -> list[Event]:
        todos = [{"text": step.get("step", ""), "completed": step.get("status") == "completed"} for step in plan]
        if self._todo is None:
            self._todo = (self._next_id(), todos)
            kind = "item.started"
        else:
            self._todo = (self._todo[0], todos)
            kind = "item.updated"
        return [{"type": kind, "item": {"id": self._todo[0], "type": "todo_list", "items": todos}}]

    def _close_open_items(self, turn_items: list[dict[str, Any]]) -> list[Event]:
        events = []
        if self._todo is not None:
            todo_id, todos = self._todo
            self._todo = None
            events.append(self._completed({"type": "todo_list", "items": todos}, todo_id))
        for item in turn_items:
            if item.get("id") in self._open:
                events += self._item_completed(item)
        for _, mapped in self._open.values():
            status = mapped.get("status")
            events.append({"type": "item.completed", "item": {
                **mapped, "status": "failed" if status == "in_progress" else status}})
        self._open.clear()
        return events

    def _turn_completed(self, turn: dict[str, Any]) -> list[Event]:
        items = turn.get("items") or []
        events = self._close_open_items(items)
        status = turn.get("status")
        if status == "completed":
            answer = final_message(items)
            if answer is not None:
                self.final_message = answer
            self.completed = True
            u = self._usage or {}
            events.append({"type": "turn.completed", "usage": {
                "input_tokens": u.get("inputTokens", 0), "cached_input_tokens": u.get("cachedInputTokens", 0),
                "cache_write_input_tokens": u.get("cacheWriteInputTokens", 0),
                "output_tokens": u.get("outputTokens", 0),
                "reasoning_output_tokens": u.get("reasoningOutputTokens", 0)}})
        elif status == "failed":
            self.final_message = None
            error = turn.get("error")
            message = (with_details(error.get("message", ""), error.get("additionalDetails")) if error
                       else self._last_error or "turn failed")
            events.append({"type": "turn.failed", "error": {"message": message}})
        else:
            self.final_message = None
        return events


def _details(item: dict[str, Any]) -> Event | None:
    """An app-server item as an exec item's fields (without its id), or None
    for the kinds exec does not show."""
    match item.get("type"):
        case "agentMessage":
            return {"type": "agent_message", "text": item.get("text", "")}
        case "reasoning":
            text = "\n".join(item.get("summary") or [])
            return {"type": "reasoning", "text": text} if text.strip() else None
        case "commandExecution":
            return {"type": "command_execution", "command": item.get("command", ""),
                    "aggregated_output": item.get("aggregatedOutput") or "", "exit_code": item.get("exitCode"),
                    "status": _COMMAND_STATUS.get(item.get("status", ""), "in_progress")}
        case "fileChange":
            return {"type": "file_change",
                    "changes": [{"path": c.get("path", ""), "kind": (c.get("kind") or {}).get("type", "update")}
                                for c in item.get("changes", [])],
                    "status": _PATCH_STATUS.get(item.get("status", ""), "in_progress")}
        case "mcpToolCall":
            result, error = item.get("result"), item.get("error")
            return {"type": "mcp_tool_call", "server": item.get("server", ""), "tool": item.get("tool", ""),
                    "arguments": item.get("arguments"),
                    "result": result and {"content": result.get("content", []),
                                          "structured_content": result.get("structuredContent")},
                    "error": error and {"message": error.get("message", "")},
                    "status": _MCP_STATUS.get(item.get("status", ""), "in_progress")}
        case "webSearch":
            return {"type": "web_search", "id": item.get("id", ""), "query": item.get("query", ""),
                    "action": item.get("action") or {"type": "other"}}
    return None
