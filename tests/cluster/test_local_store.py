"""The single-process ThreadStore: today's JSONL rollouts and SQLite index
behind the port, with appends fenced by the activation epoch."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from trio_codex.actors.messages import IndexThread
from trio_codex.actors.store import LocalThreadStore, run_store
from trio_codex.runtime.cluster.ports import Fenced
from trio_codex.runtime.persistence.rollout import ThreadMeta


async def test_the_local_store_appends_at_the_current_epoch_and_refuses_a_stale_one(
        tmp_path: Path, nursery: trio.Nursery) -> None:
    rollout = tmp_path / "rollout-t1.jsonl"
    rollout.write_bytes(b'{"type":"session_meta"}\n')
    mailbox = await nursery.start(run_store, tmp_path)
    mailbox.send_nowait(IndexThread(ThreadMeta(id="t1", rollout_path=str(rollout), created_at=1, updated_at=1,
                                               recency_at=1)))
    store = LocalThreadStore(mailbox)
    assert (await store.read_thread("t1")).id == "t1"
    assert await store.activate("t1", 1) == 1
    assert await store.append_items("t1", 1, [b'{"n":1}', b'{"n":2}']) == 3
    assert await store.activate("t1", 2) == 3
    with pytest.raises(Fenced, match="epoch 1 refused, the thread is at epoch 2"):
        await store.append_items("t1", 1, [b'{"n":3}'])
    assert await store.load_history("t1") == [b'{"type":"session_meta"}', b'{"n":1}', b'{"n":2}']
    assert await store.set_name("t1", "named")
    assert (await store.read_thread("t1")).name == "named"
