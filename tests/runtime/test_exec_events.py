"""runtime/exec/events.py: app-server notifications in, exec's JSONL out."""

from __future__ import annotations

from typing import Any

from trio_codex.runtime.exec.events import JsonlEvents

COMMAND = {"type": "commandExecution", "id": "call_1", "command": "sleep 9", "cwd": "/w", "commandActions": [],
           "status": "inProgress"}


def run(*notes: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    view = JsonlEvents()
    return [event for method, params in notes for event in view.process(method, params)]


def test_an_item_still_open_when_the_turn_fails_is_closed_before_turn_failed() -> None:
    events = run(("turn/started", {}), ("item/started", {"item": COMMAND}),
                 ("turn/completed", {"turn": {"id": "t", "status": "failed", "items": [],
                                              "error": {"message": "boom", "additionalDetails": "upstream"}}}))
    assert events == [
        {"type": "turn.started"},
        {"type": "item.started", "item": {"id": "item_0", "type": "command_execution", "command": "sleep 9",
                                          "aggregated_output": "", "exit_code": None, "status": "in_progress"}},
        {"type": "item.completed", "item": {"id": "item_0", "type": "command_execution", "command": "sleep 9",
                                            "aggregated_output": "", "exit_code": None, "status": "failed"}},
        {"type": "turn.failed", "error": {"message": "boom (upstream)"}},
    ]


def test_an_open_item_the_turn_reports_is_closed_with_the_state_it_reports() -> None:
    done = {**COMMAND, "status": "completed", "aggregatedOutput": "ok\n", "exitCode": 0}
    events = run(("item/started", {"item": COMMAND}),
                 ("turn/completed", {"turn": {"id": "t", "status": "completed", "items": [done]}}))
    assert events[1]["item"]["status"] == "completed" and events[1]["item"]["id"] == "item_0"
    assert events[2]["type"] == "turn.completed"


def test_the_plan_is_a_todo_list_started_updated_and_completed_with_the_turn() -> None:
    step = {"step": "write it", "status": "inProgress"}
    events = run(("turn/plan/updated", {"plan": [step]}),
                 ("turn/plan/updated", {"plan": [{**step, "status": "completed"}]}),
                 ("turn/completed", {"turn": {"id": "t", "status": "completed", "items": []}}))
    assert [(e["type"], e["item"]["id"], e["item"]["items"]) for e in events[:3]] == [
        ("item.started", "item_0", [{"text": "write it", "completed": False}]),
        ("item.updated", "item_0", [{"text": "write it", "completed": True}]),
        ("item.completed", "item_0", [{"text": "write it", "completed": True}]),
    ]


def test_usage_is_the_threads_total_and_an_empty_reasoning_is_not_shown() -> None:
    total = {"totalTokens": 12, "inputTokens": 10, "cachedInputTokens": 4, "outputTokens": 2,
             "reasoningOutputTokens": 1}
    events = run(("item/completed", {"item": {"type": "reasoning", "id": "r", "summary": [" "]}}),
                 ("thread/tokenUsage/updated", {"tokenUsage": {"total": total, "last": total}}),
                 ("turn/completed", {"turn": {"id": "t", "status": "completed", "items": []}}))
    assert events == [{"type": "turn.completed", "usage": {
        "input_tokens": 10, "cached_input_tokens": 4, "cache_write_input_tokens": 0, "output_tokens": 2,
        "reasoning_output_tokens": 1}}]
