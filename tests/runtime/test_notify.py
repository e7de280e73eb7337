"""runtime/commands/notify.py: the payload, and the watcher's bound."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import pytest
import trio

from trio_codex.runtime.commands.notify import notify_payload, run_notifier

NOTIFIER = Path(__file__).parent.parent / "fixtures" / "notifier.py"


def test_the_payload_is_the_originals_compact_json_in_its_key_order() -> None:
    payload = notify_payload(thread_id="t", turn_id="u", cwd="/w", client="codex-tui",
                             input_messages=["Rename `foo` to `bar`"], last_assistant_message="Done ✓")
    assert payload == ('{"type":"agent-turn-complete","thread-id":"t","turn-id":"u","cwd":"/w",'
                       '"client":"codex-tui","input-messages":["Rename `foo` to `bar`"],'
                       '"last-assistant-message":"Done ✓"}')
    no_client = json.loads(notify_payload(thread_id="t", turn_id="u", cwd="/w", client=None, input_messages=[],
                                          last_assistant_message=None))
    assert "client" not in no_client and no_client["last-assistant-message"] is None


async def test_a_notifier_past_its_bound_is_killed_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                            ) -> None:
    caplog.set_level(logging.WARNING, "trio_codex.notify")
    with trio.fail_after(20):
        await run_notifier([sys.executable, str(NOTIFIER), str(tmp_path), "hold"], "{}", timeout=0.5)
    (payload,) = tmp_path.glob("payload-*.json")
    pid = int(payload.stem.removeprefix("payload-"))
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not list(tmp_path.glob("done-*"))
    assert "killed" in caplog.text


async def test_a_notifier_that_cannot_start_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "trio_codex.notify")
    with trio.fail_after(20):
        await run_notifier([str(tmp_path / "no-such-program")], "{}")
    assert "cannot run" in caplog.text
