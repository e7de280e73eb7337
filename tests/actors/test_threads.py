"""The thread registry and thread actors, driven through their mailboxes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import trio

from trio_codex.actors.analytics_facts import Recorder
from trio_codex.actors.analytics_reducer import Reducer, TurnEvent
from trio_codex.actors.approvals import run_approvals
from trio_codex.actors.hub import run_hub
from trio_codex.actors.messages import (
    ConnectionGone,
    ConnectionRef,
    Register,
    Reply,
    StartThread,
    StartTurn,
    ToThread,
)
from trio_codex.actors.store import run_store
from trio_codex.actors.threads import ThreadRegistry
from trio_codex.runtime.app import ModelPool
from trio_codex.runtime.ask import ask
from trio_codex.runtime.config import load_settings
from trio_codex.runtime.mailbox import Inbox, Mailbox, open_mailbox
from trio_codex.runtime.protocol.jsonrpc import Notification, Response
from trio_codex.runtime.protocol.v2.item import TextInput
from trio_codex.runtime.protocol.v2.thread import ThreadStartParams
from trio_codex.runtime.protocol.v2.turn import TurnStartParams
from trio_codex.transports.scripted_responses import ScriptedResponses


async def until(inbox: Inbox, done: Any) -> list[Any]:
    seen = []
    with trio.fail_after(10):
        while True:
            msg = await inbox.receive()
            seen.append(msg)
            if done(msg):
                return seen


def is_method(name: str) -> Any:
    return lambda m: isinstance(m, Notification) and m.method == name


class Host(NamedTuple):
    """The registry's actors, one connection's mailbox, and the facts they record."""

    hub: Mailbox
    registry: Mailbox
    conn: ConnectionRef
    inbox: Inbox
    facts: Inbox


@pytest.fixture
async def host(codex_home: Path, scripted: ScriptedResponses, nursery: trio.Nursery) -> AsyncIterator[Host]:
    settings = load_settings(codex_home=codex_home)
    models = ModelPool(settings, nursery)
    facts_out, facts = open_mailbox(256, name="test-facts")
    hub = await nursery.start(run_hub)
    approvals = await nursery.start(run_approvals)
    store = await nursery.start(run_store, settings.codex_home)
    registry = await nursery.start(ThreadRegistry(settings, models, hub, approvals, store, Recorder(facts_out)).run)
    outbox, inbox = open_mailbox(1024, name="test-conn")
    yield Host(hub, registry, ConnectionRef(1, outbox), inbox, facts)
    await models.aclose()


#: A message of a class no thread takes is a bug in its sender: the thread
#: crashes (a stale message, e.g. a TurnEnded for no running turn, does not).
CRASH = ConnectionGone(0)


async def test_a_crashed_thread_restarts_from_its_checkpoint_and_keeps_serving(
        host: Host, scripted: ScriptedResponses) -> None:
    await host.registry.send(StartThread(Reply(host.conn, 1), ThreadStartParams(), "tests"))
    started = await until(host.inbox, is_method("thread/started"))
    thread_id = started[0].result.thread.id

    async def turn(rid: int, text: str) -> list[Any]:
        await host.registry.send(ToThread(thread_id, StartTurn(Reply(host.conn, rid), TurnStartParams(
            thread_id, [TextInput(text)])), None))
        return await until(host.inbox, is_method("turn/completed"))

    await turn(2, "before the crash")
    await host.registry.send(ToThread(thread_id, CRASH, None))
    after = await turn(3, "after the crash")
    assert isinstance(after[0], Response) and after[0].id == 3
    assert after[-1].params.turn.status == "completed"
    # The restarted thread kept its history: the model saw the first turn.
    history = str(scripted.requests[-1].body["input"])
    assert "before the crash" in history and "after the crash" in history


async def test_a_turn_lost_to_a_crash_is_reported_failed_to_its_client_and_to_analytics(host: Host) -> None:
    await host.registry.send(StartThread(Reply(host.conn, 1), ThreadStartParams(), "tests"))
    thread_id = (await until(host.inbox, is_method("thread/started")))[0].result.thread.id
    await host.registry.send(ToThread(thread_id, StartTurn(Reply(host.conn, 2), TurnStartParams(
        thread_id, [TextInput("[[deltas=100 delay_ms=50]] slow")])), None))
    turn_id = (await until(host.inbox, is_method("turn/started")))[-1].params.turn.id
    await host.registry.send(ToThread(thread_id, CRASH, None))
    lost = (await until(host.inbox, is_method("turn/completed")))[-1].params.turn
    assert (lost.id, lost.status, lost.error.codex_error_info) == (turn_id, "failed", "internalServerError")
    reducer = Reducer()
    events = [event for fact in host.facts.drain_nowait(256) for event in reducer.ingest(fact)]
    assert [(e.turn_id, e.status) for e in events if isinstance(e, TurnEvent)] == [(turn_id, "failed")]


async def test_a_thread_that_keeps_crashing_is_unloaded_and_the_others_go_on(host: Host) -> None:
    await ask(host.hub, lambda slot: Register(host.conn, "tests", slot), timeout=5)
    ids = []
    for rid in (1, 2):
        await host.registry.send(StartThread(Reply(host.conn, rid), ThreadStartParams(), "tests"))
        ids.append((await until(host.inbox, is_method("thread/started")))[-1].params.thread.id)
    doomed, steady = ids
    for _ in range(4):  # one more crash than THREAD_RESTARTS allows
        await host.registry.send(ToThread(doomed, CRASH, None))
    seen = await until(host.inbox, is_method("thread/closed"))
    assert seen[-1].params.thread_id == doomed
    assert type(seen[-2].params.status).__name__ == "NotLoaded"
    await host.registry.send(ToThread(steady, StartTurn(Reply(host.conn, 3), TurnStartParams(
        steady, [TextInput("still here")])), None))
    assert (await until(host.inbox, is_method("turn/completed")))[-1].params.turn.status == "completed"
