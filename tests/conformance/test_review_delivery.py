"""``review/start`` delivery, beside the original 0.171.0 where it is
installed: 0.169 and 0.171 removed detached reviews (``ReviewDelivery`` is
``inline`` only; "to review on a separate thread, start a thread first and
use its id"), so ``delivery: "detached"`` is refused in serde's words and
the thread is left untouched: no review thread, no turn."""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.test_schema import violations
from conformance.test_thread_actions import start
from conformance.test_thread_search_stream import SERVER_PARAMS, SERVERS
from harness import open_app_server


@pytest.mark.parametrize("server", SERVER_PARAMS)
async def test_a_detached_review_is_refused_as_the_original_refuses_it_and_the_thread_is_untouched(
        server: str, codex_home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    async with open_app_server(codex_home, program=SERVERS[server], cwd=ws) as client:
        session, tid = await start(client, ws)
        n = len(client.log)
        for delivery, target in (("detached", {"type": "uncommittedChanges"}),
                                 ("bogus", {"type": "custom", "instructions": "look"})):
            refused = await client.call("review/start", {"threadId": tid, "target": target, "delivery": delivery})
            assert refused["error"]["code"] == -32600
            # The original's text, to which ours adds where in the params.
            assert refused["error"]["message"].startswith(
                f"Invalid request: unknown variant `{delivery}`, expected `inline`")
        await session.request("thread/loaded/list", {})
        assert [m for m in client.log[n:] if "method" in m and m["method"] in (
            "thread/started", "turn/started", "item/started")] == []
        assert violations(client, session.sent) == []
