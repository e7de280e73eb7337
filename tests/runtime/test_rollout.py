"""Rollout files: the original's fixtures replayed exactly, our files read back
identically (and resumed by the original when it is installed), and every
kind of damage a crash or another release can leave."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
from msgspec import Raw

from harness import RpcClient, mock_config
from trio_codex.runtime.persistence import rollout as r
from trio_codex.runtime.commands.safety import parse_command_actions
from trio_codex.runtime.protocol.v2 import item as v2

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "original"
#: Two turns (the first with a reasoning item) and an interrupted third,
#: named "Fixture thread": codex-cli 0.169.0 against the scripted server.
THREAD = "01a20d66-ed08-7673-88b9-a1d4a7463d58"
#: A failed turn (context window exceeded), then an automatic compaction
#: turn: from the research runs of the same binary.
COMPACTED = "01a20d47-fb27-7d40-86d8-38fda834d3cf"
from harness import ORIGINAL_BIN as ORIGINAL


def fixture_path(thread_id: str) -> Path:
    (path,) = (FIXTURES / "sessions").rglob(f"rollout-*-{thread_id}.jsonl")
    return path


def expected(thread_id: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{thread_id}.expected.json").read_text())


def wire(value: Any) -> Any:
    return msgspec.json.decode(msgspec.json.encode(value))


def usage_wire(info: r.TokenUsageInfo) -> dict[str, Any]:
    """The v2 ``tokenUsage`` object for a token count, as the original replays it."""
    def breakdown(u: r.TokenUsage) -> dict[str, int]:
        return {"totalTokens": u.total_tokens, "inputTokens": u.input_tokens,
                "cachedInputTokens": u.cached_input_tokens, "cacheWriteInputTokens": u.cache_write_input_tokens,
                "outputTokens": u.output_tokens, "reasoningOutputTokens": u.reasoning_output_tokens}
    return {"total": breakdown(info.total_token_usage), "last": breakdown(info.last_token_usage),
            "modelContextWindow": info.model_context_window}


# -- the original's files -----------------------------------------------------


@pytest.mark.parametrize("thread_id", [THREAD, COMPACTED])
def test_the_originals_rollout_replays_to_the_turns_the_original_resumed(thread_id: str) -> None:
    rollout = r.read_rollout(fixture_path(thread_id))
    assert (rollout.bad_lines, rollout.torn_tail) == (0, False)
    replay = r.replay(rollout)
    assert wire(replay.turns) == expected(thread_id)["turns"]
    assert replay.open_turn_id is None
    assert usage_wire(replay.token_usage) == expected(thread_id)["tokenUsageUpdated"]["tokenUsage"]


def test_the_originals_tool_items_replay_as_the_original_resumed_them() -> None:
    (path,) = (FIXTURES / "tools" / "sessions").rglob("rollout-*.jsonl")
    rollout = r.read_rollout(path)
    assert (rollout.bad_lines, rollout.torn_tail) == (0, False)
    thread_id = r.parse_rollout_filename(path.name)[1]  # type: ignore[index]
    expected_turns = json.loads((FIXTURES / "tools" / f"{thread_id}.expected.json").read_text())["turns"]
    assert wire(r.replay(rollout).turns) == expected_turns


def test_the_replayed_token_usage_belongs_to_the_turn_the_original_names() -> None:
    replay = r.replay(r.read_rollout(fixture_path(THREAD)))
    assert replay.token_usage_turn_id == expected(THREAD)["tokenUsageUpdated"]["turnId"]


@pytest.mark.parametrize("thread_id", [THREAD, COMPACTED])
def test_the_originals_rollout_gives_the_listing_fields_the_original_shows(thread_id: str) -> None:
    names = r.read_thread_names(FIXTURES)
    meta = r.replay(r.read_rollout(fixture_path(thread_id)), thread_names=names).meta
    shown = expected(thread_id)["thread"]
    assert meta.id == shown["id"]
    assert meta.preview == shown["preview"]
    assert meta.created_at // 1000 == shown["createdAt"]
    assert (meta.model_provider, meta.model, meta.cwd) == (shown["modelProvider"], shown["model"], shown["cwd"])
    assert (meta.cli_version, meta.originator, meta.source) == (shown["cliVersion"], shown["originator"], shown["source"])
    assert (meta.name, meta.history_mode, meta.reasoning_effort) == (shown["name"], shown["historyMode"],
                                                                     shown["reasoningEffort"])
    assert meta.forked_from_id is shown["forkedFromId"] is None
    if "recencyAt" in shown:  # the original's live value: the last turn start
        assert meta.recency_at // 1000 == shown["recencyAt"]


@pytest.mark.parametrize("thread_id", [THREAD, COMPACTED])
def test_the_head_and_tail_scan_agrees_with_the_full_replay(thread_id: str) -> None:
    path = fixture_path(thread_id)
    assert r.scan_rollout(path) == r.replay(r.read_rollout(path)).meta


def test_the_history_is_the_recorded_items_byte_for_byte() -> None:
    path = fixture_path(THREAD)
    recorded = [json.loads(line)["payload"] for line in path.read_text().splitlines()
                if json.loads(line)["type"] == "response_item"]
    history = r.replay(r.read_rollout(path)).history
    assert [msgspec.json.decode(item) for item in history] == recorded
    raw_lines = path.read_bytes()
    assert all(bytes(item) in raw_lines for item in history)
    # The interrupted turn leaves the original's marker for the next request.
    assert msgspec.json.decode(history[-1])["content"][0]["text"].startswith("<turn_aborted>")


def test_a_call_the_file_left_unanswered_is_answered_aborted_and_a_stray_output_dropped() -> None:
    """A process killed mid-call leaves a call without its output: the
    resumed history answers it ``aborted``, as the original does before it
    samples, so the next request is one the API accepts."""
    payloads = _thread_payloads()[:-4]
    payloads += [(T0 + 1100, _item({"type": "function_call", "call_id": "c1", "name": "shell_command",
                                    "arguments": "{}"})),
                 (T0 + 1101, _item({"type": "custom_tool_call", "call_id": "c2", "name": "apply_patch", "input": ""})),
                 (T0 + 1102, _item({"type": "function_call_output", "call_id": "gone", "output": "x"}))]
    history = [msgspec.json.decode(i) for i in r.replay(r.parse_rollout(b"".join(_encoded(payloads)))).history]
    assert history[-4:] == [
        {"type": "function_call", "call_id": "c1", "name": "shell_command", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "aborted"},
        {"type": "custom_tool_call", "call_id": "c2", "name": "apply_patch", "input": ""},
        {"type": "custom_tool_call_output", "call_id": "c2", "output": "aborted"}]


def test_a_compaction_replaces_the_history_with_its_replacement() -> None:
    rollout = r.read_rollout(fixture_path(COMPACTED))
    (at,) = [n for n, line in enumerate(rollout.lines) if isinstance(line.payload, r.Compacted)]
    compacted = rollout.lines[at].payload
    after = [line.payload.raw for line in rollout.lines[at + 1:] if isinstance(line.payload, r.ResponseItem)]
    history = r.replay(rollout).history
    assert [bytes(i) for i in history] == [bytes(i) for i in (*compacted.replacement_history, *after)]


# -- damage ----------------------------------------------------------------


def test_a_torn_last_line_is_skipped_with_a_warning_and_the_rest_replays(tmp_path: Path, caplog) -> None:
    path = tmp_path / fixture_path(THREAD).name
    path.write_bytes(fixture_path(THREAD).read_bytes() + b'{"timestamp":"2026-11-24T11:53:01.000Z","type":"ev')
    with caplog.at_level(logging.WARNING, "trio_codex.rollout"):
        rollout = r.read_rollout(path)
    assert rollout.torn_tail and rollout.bad_lines == 0
    assert "torn last line" in caplog.text and path.name in caplog.text
    assert wire(r.replay(rollout).turns) == expected(THREAD)["turns"]
    assert r.scan_rollout(path) == r.replay(rollout).meta


def test_bad_lines_are_skipped_and_counted(tmp_path: Path, caplog) -> None:
    lines = fixture_path(THREAD).read_bytes().split(b"\n")
    lines[5:5] = [b"not json", b"[1, 2]", b'{"payload": {}}', b"   "]
    path = tmp_path / "rollout.jsonl"
    path.write_bytes(b"\n".join(lines))
    with caplog.at_level(logging.WARNING, "trio_codex.rollout"):
        rollout = r.read_rollout(path)
    assert (rollout.bad_lines, rollout.torn_tail) == (3, False)
    assert f"{path}:6:" in caplog.text
    assert wire(r.replay(rollout).turns) == expected(THREAD)["turns"]


def test_a_turn_left_open_by_a_crash_is_replayed_interrupted(tmp_path: Path) -> None:
    # Cut after the third turn's user message, before its turn_aborted: what
    # kill -9 mid-turn leaves. The original replays that turn as interrupted
    # with no completedAt, and the token usage as of the second turn.
    lines = fixture_path(THREAD).read_bytes().splitlines(keepends=True)
    path = tmp_path / "rollout.jsonl"
    path.write_bytes(b"".join(lines[:29]))
    replay = r.replay(r.read_rollout(path))
    full = expected(THREAD)["turns"]
    last = {**full[2], "status": "interrupted", "completedAt": None, "durationMs": None}
    assert wire(replay.turns) == [*full[:2], last]
    assert replay.open_turn_id == full[2]["id"]
    assert replay.token_usage_turn_id == full[1]["id"]


def test_a_line_the_original_could_not_parse_is_ignored_as_it_is(caplog) -> None:
    # 0.169 skips a turn_aborted without its `reason`, leaving the turn open.
    data = b"".join(_encoded(_thread_payloads(interrupted=True)))
    data = data.replace(b'"reason":"interrupted",', b"")
    with caplog.at_level(logging.WARNING, "trio_codex.rollout"):
        replay = r.replay(r.parse_rollout(data))
    assert "`turn_aborted` event has an unexpected shape" in caplog.text
    assert replay.turns[-1].status == "interrupted" and replay.turns[-1].completed_at is None


def test_unknown_lines_and_events_are_kept_raw_and_ignored() -> None:
    payloads = _thread_payloads()
    world = r.UnknownLine("world_state", Raw(b'{"full":true,"state":{"x":[1,2]}}'))
    settings = r.UnknownEvent("thread_settings_applied", Raw(b'{"type":"thread_settings_applied","thread_id":"t"}'))
    data = b"".join(_encoded([*payloads[:2], (T0, world), (T0, settings), *payloads[2:]]))
    rollout = r.parse_rollout(data)
    assert [line.payload for line in rollout.lines if isinstance(line.payload, (r.UnknownLine, r.UnknownEvent))] \
        == [world, settings]
    assert [line.type for line in rollout.lines][2:4] == ["world_state", "event_msg"]
    assert r.replay(rollout).turns == r.replay(r.parse_rollout(b"".join(_encoded(payloads)))).turns
    assert b"".join(r.encode_line(line.payload, timestamp_ms=r.parse_timestamp(line.timestamp),
                                  ordinal=line.ordinal) for line in rollout.lines) == data


def test_a_file_without_session_meta_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="no session_meta line; this is not a thread rollout"):
        r.replay(r.parse_rollout(b'{"timestamp":"x","type":"event_msg","payload":{"type":"x"}}\n', "f.jsonl"))


# -- our files ---------------------------------------------------------------

T0 = 1_795_600_000_000
TID = "01a20e00-0000-7000-8000-000000000001"
TURN1, TURN2 = "01a20e00-0000-7000-8000-0000000000a1", "01a20e00-0000-7000-8000-0000000000a2"
CWD = "/work/project"


def _item(obj: dict[str, Any]) -> r.ResponseItem:
    return r.ResponseItem(Raw(msgspec.json.encode(obj)))


def _user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def _assistant(text: str, item_id: str) -> dict[str, Any]:
    return {"type": "message", "id": item_id, "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}


def _completed(turn: str, item: r.CoreTurnItem, at: int) -> r.ItemCompletedEvent:
    return r.ItemCompletedEvent.of(item, thread_id=TID, turn_id=turn, started_at_ms=at, completed_at_ms=at)


def _context(turn: str) -> r.TurnContext:
    return r.TurnContext(turn_id=turn, cwd=CWD, approval_policy="on-request",
                         sandbox_policy={"type": "read-only"}, model="mock-model", summary="auto")


def _usage(total: int, last: int) -> r.TokenCountEvent:
    return r.TokenCountEvent(info=r.TokenUsageInfo(
        total_token_usage=r.TokenUsage(input_tokens=total - 5, output_tokens=5, total_tokens=total),
        last_token_usage=r.TokenUsage(input_tokens=last - 5, output_tokens=5, total_tokens=last),
        model_context_window=258400))


def _thread_payloads(*, paginated: bool = True, interrupted: bool = False) -> list[tuple[int, r.Payload]]:
    """A thread as a writer records it: 0.169's format when ``paginated``
    (``item_completed`` events), else the legacy message events."""
    def items(turn: str, at: int, *entries: r.CoreTurnItem) -> list[tuple[int, r.Payload]]:
        out: list[tuple[int, r.Payload]] = []
        for n, entry in enumerate(entries):
            if paginated:
                out.append((at + n, _completed(turn, entry, at + n)))
            elif isinstance(entry, r.CoreUserMessage):
                out.append((at + n, r.UserMessageEvent(message=entry.content[0]["text"])))
            elif isinstance(entry, r.CoreReasoning):
                out.append((at + n, r.AgentReasoningEvent(text=entry.summary_text[0])))
            else:
                out.append((at + n, r.AgentMessageEvent(message=entry.content[0]["text"])))
        return out

    def user(item_id: str, text: str) -> r.CoreUserMessage:
        return r.CoreUserMessage(id=item_id, content=[{"type": "text", "text": text, "text_elements": []}])

    def agent(item_id: str, text: str) -> r.CoreAgentMessage:
        return r.CoreAgentMessage(id=item_id, content=[{"type": "Text", "text": text}])

    meta = r.SessionMeta(id=TID, timestamp=r.format_timestamp(T0), cwd=CWD, originator="trio_codex",
                         cli_version="0.169.0", source="vscode", model_provider="mock",
                         base_instructions=r.BaseInstructions(text="You are a coding agent."),
                         history_mode="paginated" if paginated else None)
    s1, s2 = T0 // 1000, T0 // 1000 + 1
    out: list[tuple[int, r.Payload]] = [
        (T0, meta),
        (T0 + 1, r.TurnStartedEvent(turn_id=TURN1, root_turn_id=TURN1, started_at=s1,
                                    model_context_window=258400, collaboration_mode_kind="default")),
        (T0 + 2, _context(TURN1)),
        (T0 + 3, _item(_user("hello from trio"))),
        *items(TURN1, T0 + 4, user("u-1", "hello from trio"),
               r.CoreReasoning(id="rs_1", summary_text=["Thinking."], raw_content=[])),
        (T0 + 6, _item({"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Thinking."}],
                        "content": None, "encrypted_content": None})),
        *items(TURN1, T0 + 7, agent("msg_1", "Hi there.")),
        (T0 + 8, _item(_assistant("Hi there.", "msg_1"))),
        (T0 + 9, _usage(15, 15)),
        (T0 + 10, r.TurnCompleteEvent(turn_id=TURN1, root_turn_id=TURN1, last_agent_message="Hi there.",
                                      started_at=s1, completed_at=s1, duration_ms=10)),
        (T0 + 1000, r.TurnStartedEvent(turn_id=TURN2, root_turn_id=TURN2, started_at=s2,
                                       model_context_window=258400, collaboration_mode_kind="default")),
        (T0 + 1001, _context(TURN2)),
        (T0 + 1002, _item(_user("second"))),
        *items(TURN2, T0 + 1003, user("u-2", "second")),
    ]
    if interrupted:
        out.append((T0 + 1050, r.TurnAbortedEvent(turn_id=TURN2, root_turn_id=TURN2, reason="interrupted",
                                                  started_at=s2, completed_at=s2, duration_ms=50)))
    else:
        out += [*items(TURN2, T0 + 1010, agent("msg_2", "Second answer.")),
                (T0 + 1011, _item(_assistant("Second answer.", "msg_2"))),
                (T0 + 1012, _usage(40, 25)),
                (T0 + 1013, r.TurnCompleteEvent(turn_id=TURN2, root_turn_id=TURN2, last_agent_message="Second answer.",
                                                started_at=s2, completed_at=s2, duration_ms=13))]
    return out


def _encoded(payloads: list[tuple[int, r.Payload]]) -> list[bytes]:
    return [r.encode_line(p, timestamp_ms=ts, ordinal=n) for n, (ts, p) in enumerate(payloads)]


def _write(codex_home: Path, payloads: list[tuple[int, r.Payload]]) -> Path:
    path = r.rollout_path(codex_home, TID, T0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(_encoded(payloads)))
    return path


def test_a_file_we_write_reads_back_identically(tmp_path: Path) -> None:
    payloads = _thread_payloads(interrupted=True)
    path = _write(tmp_path, payloads)
    rollout = r.read_rollout(path)
    assert [(r.parse_timestamp(line.timestamp), line.payload) for line in rollout.lines] == payloads
    assert [line.ordinal for line in rollout.lines] == list(range(len(payloads)))
    assert b"".join(r.encode_line(line.payload, timestamp_ms=r.parse_timestamp(line.timestamp),
                                  ordinal=line.ordinal) for line in rollout.lines) == path.read_bytes()
    assert r.replay(rollout).next_ordinal == len(payloads)


def test_the_scan_agrees_with_the_replay_on_long_files(tmp_path: Path) -> None:
    # A session meta line longer than a head read, and many turns, so the
    # head and the tail are separate reads.
    payloads = _thread_payloads()
    meta = payloads[0][1]
    payloads[0] = (T0, msgspec.structs.replace(meta, base_instructions=r.BaseInstructions(text="b" * 600_000)))
    for n in range(300):
        turn = f"01a20e00-0000-7000-8000-{n:012d}"
        at = T0 + 10_000 + n * 100
        payloads += [(at, r.TurnStartedEvent(turn_id=turn, started_at=at // 1000)), (at + 1, _context(turn)),
                     (at + 2, _item(_user(f"question {n} " + "q" * 2000))),
                     (at + 3, _completed(turn, r.CoreUserMessage(id=f"u{n}", content=[]), at + 3)),
                     (at + 4, _usage(100 + n, 10)), (at + 5, r.TurnCompleteEvent(turn_id=turn))]
    payloads.append((T0 + 50_000, r.ThreadNameUpdatedEvent(thread_id=TID, thread_name="late name")))
    path = _write(tmp_path, payloads)
    assert path.stat().st_size > 1_000_000
    scanned = r.scan_rollout(path)
    assert scanned == r.replay(r.read_rollout(path)).meta
    assert (scanned.preview, scanned.name, scanned.tokens_used) == ("hello from trio", "late name", 399)
    assert scanned.recency_at == T0 + 10_000 + 299 * 100


def test_a_file_we_write_has_the_originals_line_shape(tmp_path: Path) -> None:
    first, second = _write(tmp_path, _thread_payloads()).read_bytes().split(b"\n")[:2]
    assert first.startswith(b'{"timestamp":"2026-11-25T09:46:40.000Z","ordinal":0,"type":"session_meta",'
                            b'"payload":{"id":"' + TID.encode())
    assert json.loads(second)["payload"] == {
        "type": "task_started", "turn_id": TURN1, "root_turn_id": TURN1, "started_at": T0 // 1000,
        "model_context_window": 258400, "collaboration_mode_kind": "default"}


def test_our_paginated_file_replays_with_the_recorded_item_ids_and_times(tmp_path: Path) -> None:
    replay = r.replay(r.read_rollout(_write(tmp_path, _thread_payloads(interrupted=True))))
    first, second = wire(replay.turns)
    assert [(i["type"], i["id"], i["startedAtMs"]) for i in first["items"]] == [
        ("userMessage", "u-1", T0 + 4), ("reasoning", "rs_1", T0 + 5), ("agentMessage", "msg_1", T0 + 7)]
    assert (first["status"], first["rootTurnId"], first["durationMs"]) == ("completed", TURN1, 10)
    assert (second["status"], second["completedAt"], second["durationMs"]) == ("interrupted", T0 // 1000 + 1, 50)
    assert [i["content"] for i in second["items"]] == [[{"type": "text", "text": "second", "text_elements": []}]]
    assert replay.meta.preview == "hello from trio"
    assert replay.turn_context == _context(TURN2)
    assert replay.token_usage_turn_id == TURN1


def test_a_legacy_file_replays_from_its_message_events_with_positional_ids(tmp_path: Path) -> None:
    # What 0.169 returned for this very file (see the test against the
    # original below): ids item-N across the thread, no item times.
    turns = wire(r.replay(r.read_rollout(_write(tmp_path, _thread_payloads(paginated=False)))).turns)
    assert [[(i["type"], i["id"], i["startedAtMs"]) for i in t["items"]] for t in turns] == [
        [("userMessage", "item-1", None), ("reasoning", "item-2", None), ("agentMessage", "item-3", None)],
        [("userMessage", "item-4", None), ("agentMessage", "item-5", None)]]
    assert turns[0]["items"][1]["summary"] == ["Thinking."]


def test_turns_without_turn_starts_get_stable_ids() -> None:
    meta = r.SessionMeta(id=TID, timestamp=r.format_timestamp(T0), cwd=CWD, originator="o", cli_version="0.1.0")
    data = b"".join(_encoded([(T0, meta), (T0 + 1, r.UserMessageEvent(message="a")),
                              (T0 + 2, r.AgentMessageEvent(message="b")), (T0 + 3, r.UserMessageEvent(message="c"))]))
    first, again = r.replay(r.parse_rollout(data)), r.replay(r.parse_rollout(data))
    assert [len(t.items) for t in first.turns] == [2, 1]
    assert [t.id for t in first.turns] == [t.id for t in again.turns]
    assert len({t.id for t in first.turns}) == 2
    assert first.meta.preview == "a"


def test_a_rollback_drops_the_newest_user_turns_from_history_and_turns(tmp_path: Path) -> None:
    payloads = _thread_payloads()
    payloads.append((T0 + 2000, r.ThreadRolledBackEvent(num_turns=1)))
    replay = r.replay(r.read_rollout(_write(tmp_path, payloads)))
    assert [t.id for t in replay.turns] == [TURN1]
    assert [msgspec.json.decode(i).get("role") for i in replay.history] == ["user", None, "assistant"]


def test_a_rollback_also_drops_the_context_updates_just_above_the_cut() -> None:
    env = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "<environment_context>x"}]}
    history = [Raw(msgspec.json.encode(i)) for i in (
        _user("one"), _assistant("a", "m1"), env, _user("two"), _assistant("b", "m2"))]
    meta = r.SessionMeta(id=TID, timestamp=r.format_timestamp(T0), cwd=CWD, originator="o", cli_version="0.1.0")
    lines = [(T0, meta), *[(T0, r.ResponseItem(i)) for i in history], (T0, r.ThreadRolledBackEvent(num_turns=1))]
    assert r.replay(r.parse_rollout(b"".join(_encoded(lines)))).history == history[:2]


def test_an_old_style_compaction_keeps_the_user_messages_and_adds_the_summary() -> None:
    meta = r.SessionMeta(id=TID, timestamp=r.format_timestamp(T0), cwd=CWD, originator="o", cli_version="0.1.0")
    env = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "<environment_context>x"}]}
    lines = [(T0, meta), *[(T0, _item(i)) for i in (env, _user("one"), _assistant("a", "m1"), _user("two"))],
             (T0, r.Compacted(message="SUMMARY"))]
    history = [msgspec.json.decode(i) for i in r.replay(r.parse_rollout(b"".join(_encoded(lines)))).history]
    assert history == [_user("one"), _user("two"), _user("SUMMARY")]


def test_system_messages_are_not_history() -> None:
    meta = r.SessionMeta(id=TID, timestamp=r.format_timestamp(T0), cwd=CWD, originator="o", cli_version="0.1.0")
    system = {"type": "message", "role": "system", "content": [{"type": "input_text", "text": "s"}]}
    lines = [(T0, meta), (T0, _item(system)), (T0, _item(_user("u")))]
    assert [msgspec.json.decode(i) for i in r.replay(r.parse_rollout(b"".join(_encoded(lines)))).history] \
        == [_user("u")]


def test_a_failed_turn_carries_the_v2_error(tmp_path: Path) -> None:
    payloads = _thread_payloads()[:10] + [(T0 + 10, r.TurnCompleteEvent(
        turn_id=TURN1, error=r.TurnError(message="boom", codex_error_info={
            "http_connection_failed": {"http_status_code": 401}}), completed_at=T0 // 1000, duration_ms=3))]
    (turn,) = wire(r.replay(r.read_rollout(_write(tmp_path, payloads))).turns)
    assert turn["status"] == "failed"
    assert turn["error"] == {"message": "boom", "codexErrorInfo": {"httpConnectionFailed": {"httpStatusCode": 401}},
                             "additionalDetails": None, "misalignment": None}


# -- paths, timestamps, names ------------------------------------------------


def test_rollout_paths_are_the_originals_and_parse_back(tmp_path: Path) -> None:
    path = r.rollout_path(tmp_path, TID, T0)
    rel = path.relative_to(tmp_path)
    assert rel.parts[0] == "sessions" and len(rel.parts) == 5
    assert rel.name.startswith("rollout-") and rel.name.endswith(f"-{TID}.jsonl")
    assert r.parse_rollout_filename(rel.name) == (T0 // 1000 * 1000, TID)
    assert rel.parts[1:4] == tuple(rel.name[8:18].split("-"))
    assert r.archived_rollout_path(tmp_path, path) == tmp_path / "archived_sessions" / rel.name
    assert r.parse_rollout_filename("rollout-2026-13-01T00-00-00-x.jsonl") is None
    assert r.parse_rollout_filename(fixture_path(THREAD).name)[1] == THREAD


def test_timestamps_round_trip_at_millisecond_precision() -> None:
    assert r.format_timestamp(1795521179208) == "2026-11-24T11:52:59.208Z"
    assert r.parse_timestamp("2026-11-24T11:52:59.208Z") == 1795521179208
    assert r.parse_timestamp("2026-11-24T11:53:00.468252653Z") == 1795521180468
    assert r.parse_timestamp("2026-11-24T12:53:00+01:00") == 1795521180000
    assert r.parse_timestamp("yesterday") is None


def test_names_come_from_the_session_index_last_entry_winning(tmp_path: Path) -> None:
    assert r.read_thread_names(tmp_path) == {}
    (tmp_path / r.SESSION_INDEX_FILE).write_bytes(
        r.encode_session_index_entry("a", "first", updated_at_ms=T0)
        + b"torn garbage\n"
        + r.encode_session_index_entry("b", "other", updated_at_ms=T0)
        + r.encode_session_index_entry("a", "second", updated_at_ms=T0 + 1))
    assert r.read_thread_names(tmp_path) == {"a": "second", "b": "other"}
    assert r.read_thread_names(FIXTURES) == {THREAD: "Fixture thread"}


@pytest.mark.parametrize(("source", "kind"), [
    ("cli", "cli"), ("vscode", "vscode"), ("exec", "exec"), ("mcp", "appServer"), ("unknown", "unknown"),
    ({"subagent": "review"}, "subAgentReview"), ({"subagent": "compact"}, "subAgentCompact"),
    ({"subagent": {"thread_spawn": {"parent_thread_id": "p"}}}, "subAgentThreadSpawn"),
    ({"subagent": {"other": "x"}}, "subAgentOther"), ({"custom": "x"}, "unknown")])
def test_session_sources_map_to_list_source_kinds(source: Any, kind: str) -> None:
    assert r.source_kind(source) == kind


# -- the original reads what we write ----------------------------------------


@pytest.mark.original
@pytest.mark.skipif(not ORIGINAL.exists(), reason="the original codex binary is not installed")
@pytest.mark.parametrize("paginated", [True, False], ids=["paginated", "legacy"])
async def test_the_original_lists_and_resumes_a_rollout_we_wrote(tmp_path: Path, paginated: bool) -> None:
    home, codex_home = tmp_path / "home", tmp_path / "codex-home"
    home.mkdir()
    codex_home.mkdir()
    (codex_home / "config.toml").write_text(mock_config("http://127.0.0.1:9/v1"))
    _write(codex_home, _thread_payloads(paginated=paginated, interrupted=True))
    ours = r.replay(r.read_rollout(r.rollout_path(codex_home, TID, T0)))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "CODEX_HOME": str(codex_home)}
    async with trio.open_nursery() as nursery:
        proc = await nursery.start(lambda task_status: trio.run_process(
            [str(ORIGINAL), "app-server"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, env=env, cwd=home, check=False, task_status=task_status))
        client = RpcClient(proc)
        nursery.start_soon(client._read)
        try:
            await client.initialize()
            listed = await client.request("thread/list", {})
            resumed = await client.request("thread/resume", {"threadId": TID})
            usage = await client.until(lambda m: m.get("method") == "thread/tokenUsage/updated")
        finally:
            with trio.move_on_after(10, shield=True):
                await proc.stdin.aclose()
                await proc.wait()
            if proc.returncode is None:
                proc.kill()
            nursery.cancel_scope.cancel()
    (thread,) = listed["data"]
    assert (thread["id"], thread["preview"], thread["cwd"]) == (TID, "hello from trio", CWD)
    assert thread["createdAt"] == T0 // 1000
    assert resumed["thread"]["turns"] == wire(ours.turns)
    assert usage[-1]["params"]["turnId"] == ours.token_usage_turn_id
    assert usage[-1]["params"]["tokenUsage"] == usage_wire(ours.token_usage)


# -- tool items ---------------------------------------------------------------

TOOL_CWD = "/work/a project/é"


def _tool_items() -> list[Any]:
    """Tool items as a turn reports them live."""
    script = "cat notes.txt && ls src"
    return [
        v2.CommandExecutionItem("call_1", f"/bin/bash -lc '{script}'", TOOL_CWD,
                                parse_command_actions(["/bin/bash", "-lc", script], cwd=TOOL_CWD), "completed",
                                source="unifiedExecStartup", process_id="7", aggregated_output="a\nb\n",
                                exit_code=0, duration_ms=1234),
        v2.CommandExecutionItem("call_2", "/bin/bash -lc 'exit 3'", TOOL_CWD,
                                parse_command_actions(["/bin/bash", "-lc", "exit 3"]), "failed", exit_code=3,
                                duration_ms=5),
        v2.FileChangeItem("call_3", [
            v2.FileUpdateChange(f"{TOOL_CWD}/a.txt", v2.PatchChangeKind("add"), "new\n"),
            v2.FileUpdateChange(f"{TOOL_CWD}/b.txt", v2.PatchChangeKind("delete"), "old\n"),
            v2.FileUpdateChange(f"{TOOL_CWD}/c.txt", v2.PatchChangeKind("update", f"{TOOL_CWD}/d.txt"),
                                f"@@ -1 +1 @@\n-x\n+y\n\n\nMoved to: {TOOL_CWD}/d.txt"),
            v2.FileUpdateChange(f"{TOOL_CWD}/e.txt", v2.PatchChangeKind("update"), "@@ -1 +1 @@\n-p\n+q\n"),
        ], "completed"),
        v2.FileChangeItem("call_4", [v2.FileUpdateChange(f"{TOOL_CWD}/f.txt", v2.PatchChangeKind("add"), "f\n")],
                          "declined"),
        v2.PlanItem("call_5", "- [x] look"),
    ]


def _tool_thread(codex_home: Path) -> Path:
    """A paginated thread of one turn holding :func:`_tool_items`."""
    meta = r.SessionMeta(id=TID, timestamp=r.format_timestamp(T0), cwd=TOOL_CWD, originator="trio_codex",
                         cli_version="0.169.0", source="vscode", model_provider="mock", history_mode="paginated")
    user = r.CoreUserMessage(id="u-1", content=[{"type": "text", "text": "do things", "text_elements": []}])
    payloads: list[tuple[int, r.Payload]] = [
        (T0, meta),
        (T0 + 1, r.TurnStartedEvent(turn_id=TURN1, root_turn_id=TURN1, started_at=T0 // 1000)),
        (T0 + 2, _context(TURN1)),
        (T0 + 3, _item(_user("do things"))),
        (T0 + 4, _completed(TURN1, user, T0 + 4)),
        *((T0 + 10 + n, _completed(TURN1, r.core_item(item), T0 + 10 + n))  # type: ignore[arg-type]
          for n, item in enumerate(_tool_items())),
        (T0 + 20, r.TurnCompleteEvent(turn_id=TURN1, root_turn_id=TURN1, started_at=T0 // 1000,
                                      completed_at=T0 // 1000, duration_ms=20)),
    ]
    return _write(codex_home, payloads)


def test_tool_items_replay_as_they_were_reported_live(tmp_path: Path) -> None:
    (turn,) = r.replay(r.read_rollout(_tool_thread(tmp_path))).turns
    replayed = [{k: v for k, v in item.items() if k not in ("startedAtMs", "completedAtMs")}
                for item in wire(turn.items)[1:]]
    assert replayed == wire(_tool_items())
    assert [(i.started_at_ms, i.completed_at_ms) for i in turn.items[1:]] == [
        (T0 + 10 + n, T0 + 10 + n) for n in range(5)]


def test_tool_items_are_written_in_the_originals_shape(tmp_path: Path) -> None:
    lines = [json.loads(line) for line in _tool_thread(tmp_path).read_text().splitlines()]
    command, _, change, _, _ = [line["payload"]["item"] for line in lines
                                if line["payload"].get("type") == "item_completed"][1:]
    assert command == {
        "type": "CommandExecution", "id": "call_1", "process_id": "7",
        "command": ["/bin/bash", "-lc", "cat notes.txt && ls src"], "cwd": "file:///work/a%20project/%C3%A9",
        "parsed_cmd": [{"type": "read", "cmd": "cat notes.txt", "name": "notes.txt",
                        "path": f"{TOOL_CWD}/notes.txt"},
                       {"type": "list_files", "cmd": "ls src", "path": "src"}],
        "source": "unified_exec_startup", "status": "completed", "aggregated_output": "a\nb\n", "exit_code": 0,
        "duration": {"secs": 1, "nanos": 234_000_000}}
    assert change["changes"][f"{TOOL_CWD}/c.txt"] == {
        "type": "update", "unified_diff": "@@ -1 +1 @@\n-x\n+y\n", "move_path": f"{TOOL_CWD}/d.txt"}
    assert change["changes"][f"{TOOL_CWD}/b.txt"] == {"type": "delete", "content": "old\n"}


def test_a_declined_command_is_not_recorded_as_the_original() -> None:
    declined = v2.CommandExecutionItem("call_9", "/bin/bash -lc 'touch x'", TOOL_CWD, [], "declined")
    assert r.core_item(declined) is None


def test_an_item_completed_after_its_turn_joins_that_turn() -> None:
    """A process that outlived its turn: 0.169 records its item later in
    the file, under its own turn id."""
    payloads = _thread_payloads()
    late = r.core_item(_tool_items()[1])
    payloads.append((T0 + 2000, _completed(TURN1, late, T0 + 2000)))  # type: ignore[arg-type]
    first, second = r.replay(r.parse_rollout(b"".join(_encoded(payloads)))).turns
    assert [i.id for i in first.items][-1] == "call_2"
    assert "call_2" not in [i.id for i in second.items]


def test_mcp_tool_calls_and_web_searches_of_the_originals_files_replay() -> None:
    mcp = {"type": "McpToolCall", "id": "call_m", "server": "docs", "tool": "search", "arguments": {"q": "x"},
           "status": "completed", "result": {"content": [{"type": "text", "text": "hit"}],
                                             "structuredContent": {"n": 1}}, "duration": {"secs": 0, "nanos": 5_000_000}}
    web = {"type": "WebSearch", "id": "ws_1", "query": "trio", "action": {"type": "open_page", "url": "https://x"}}
    payloads = _thread_payloads()[:-1]
    for n, raw in enumerate((mcp, web)):
        payloads.append((T0 + 1500 + n, r.ItemCompletedEvent(thread_id=TID, turn_id=TURN2,
                                                             item=Raw(msgspec.json.encode(raw)))))
    turns = wire(r.replay(r.parse_rollout(b"".join(_encoded(payloads)))).turns)
    shown_mcp, shown_web = turns[1]["items"][-2:]
    assert shown_mcp | {"startedAtMs": None, "completedAtMs": None} == {
        "type": "mcpToolCall", "id": "call_m", "server": "docs", "tool": "search", "status": "completed",
        "arguments": {"q": "x"}, "result": {"content": [{"type": "text", "text": "hit"}],
                                            "structuredContent": {"n": 1}},
        "error": None, "durationMs": 5, "mcpAppResourceUri": None, "pluginId": None, "environmentId": None,
        "startedAtMs": None, "completedAtMs": None}
    assert (shown_web["query"], shown_web["action"]) == ("trio", {"type": "openPage", "url": "https://x"})


@pytest.mark.original
@pytest.mark.skipif(not ORIGINAL.exists(), reason="the original codex binary is not installed")
async def test_the_original_resumes_tool_items_we_wrote_as_we_replay_them(tmp_path: Path) -> None:
    home, codex_home = tmp_path / "home", tmp_path / "codex-home"
    home.mkdir()
    codex_home.mkdir()
    (codex_home / "config.toml").write_text(mock_config("http://127.0.0.1:9/v1"))
    ours = r.replay(r.read_rollout(_tool_thread(codex_home)))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "CODEX_HOME": str(codex_home)}
    async with trio.open_nursery() as nursery:
        proc = await nursery.start(lambda task_status: trio.run_process(
            [str(ORIGINAL), "app-server"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, env=env, cwd=home, check=False, task_status=task_status))
        client = RpcClient(proc)
        nursery.start_soon(client._read)
        try:
            await client.initialize()
            resumed = await client.request("thread/resume", {"threadId": TID})
        finally:
            with trio.move_on_after(10, shield=True):
                await proc.stdin.aclose()
                await proc.wait()
            if proc.returncode is None:
                proc.kill()
            nursery.cancel_scope.cancel()
    assert resumed["thread"]["turns"] == wire(ours.turns)


def test_the_fixture_folder_is_a_codex_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(FIXTURES, home)
    found = sorted(entry.name for entry, archived in r.iter_rollout_files(home) if not archived)
    assert found == sorted(p.name for p in (FIXTURES / "sessions").rglob("*.jsonl"))
