"""The thread registry and thread actors, driven through their mailboxes."""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import trio

from trio_codex.actors import store as store_actor
from trio_codex.actors.thread import actor as thread_actor
from trio_codex.actors.analytics.facts import Recorder
from trio_codex.actors.analytics.reducer import Reducer, TurnEvent
from trio_codex.actors.approvals import run_approvals
from trio_codex.actors.hub import run_hub
from trio_codex.actors.messages import (
    ConnectionGone,
    ConnectionRef,
    EvictThread,
    InterruptTurn,
    ReadThread,
    Register,
    Reply,
    StartTurn,
    SteerTurn,
    Subscribe,
    ThreadRequest,
    ToThread,
    TurnEnded,
    UnloadThread,
    Unsubscribe,
)
from trio_codex.actors.model.pool import ModelPool
from trio_codex.actors.store import run_store
from trio_codex.actors.threads import ThreadRegistry
from trio_codex.runtime.kernel.ask import ask
from trio_codex.runtime.config import load_settings
from trio_codex.runtime.kernel.mailbox import Inbox, Mailbox, open_mailbox
from trio_codex.runtime.protocol.jsonrpc import ErrorResponse, Notification, Response
from trio_codex.runtime.protocol.v2.item import TextInput
from trio_codex.runtime.commands.permissions import Permissions
from trio_codex.runtime.protocol.v2.thread import (
    ActivePermissionProfile,
    ReadOnly,
    ThreadIdParams,
    ThreadLoadedListParams,
    ThreadResumeParams,
    ThreadStartParams,
)
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
    #: The registry actor itself, to reach a thread's mailbox and supervisor.
    threads: ThreadRegistry


@pytest.fixture
async def host(codex_home: Path, scripted: ScriptedResponses, nursery: trio.Nursery) -> AsyncIterator[Host]:
    settings = load_settings(codex_home=codex_home)
    models = ModelPool(settings, nursery)
    facts_out, facts = open_mailbox(256, name="test-facts")
    hub = await nursery.start(run_hub)
    approvals = await nursery.start(run_approvals)
    store = await nursery.start(run_store, settings.codex_home)
    threads = ThreadRegistry(settings, models, hub, approvals, store, Recorder(facts_out))
    registry = await nursery.start(threads.run)
    outbox, inbox = open_mailbox(1024, name="test-conn")
    yield Host(hub, registry, ConnectionRef(1, outbox), inbox, facts, threads)
    await models.aclose()


#: A message of a class no thread takes is a bug in its sender: the thread
#: crashes (a stale message, e.g. a TurnEnded for no running turn, does not).
CRASH = ConnectionGone(0)


async def test_a_crashed_thread_restarts_from_its_checkpoint_and_keeps_serving(
        host: Host, scripted: ScriptedResponses) -> None:
    await host.registry.send(ThreadRequest(Reply(host.conn, 1), "thread/start", ThreadStartParams(), "tests"))
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


async def test_a_sandbox_a_turn_narrowed_stays_narrow_after_a_crash(host: Host) -> None:
    await host.registry.send(ThreadRequest(Reply(host.conn, 1), "thread/start",
                                           ThreadStartParams(sandbox="workspace-write"), "tests"))
    thread_id = (await until(host.inbox, is_method("thread/started")))[0].result.thread.id
    read_only = Permissions(ReadOnly(), ActivePermissionProfile(":read-only"))
    await host.registry.send(ToThread(thread_id, StartTurn(Reply(host.conn, 2), TurnStartParams(
        thread_id, [TextInput("narrow it")]), read_only), None))
    await until(host.inbox, is_method("turn/completed"))
    await host.registry.send(ToThread(thread_id, CRASH, None))
    await host.registry.send(ThreadRequest(Reply(host.conn, 3), "thread/resume", ThreadResumeParams(
        thread_id=thread_id)))
    [resumed] = [m for m in await until(host.inbox, lambda m: isinstance(m, Response) and m.id == 3)
                 if isinstance(m, Response)]
    assert (resumed.result.sandbox, resumed.result.active_permission_profile) == (read_only.sandbox,
                                                                                  read_only.profile)


async def test_a_turn_lost_to_a_crash_is_reported_failed_to_its_client_and_to_analytics(host: Host) -> None:
    await host.registry.send(ThreadRequest(Reply(host.conn, 1), "thread/start", ThreadStartParams(), "tests"))
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
        await host.registry.send(ThreadRequest(Reply(host.conn, rid), "thread/start", ThreadStartParams(), "tests"))
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


# --- the thread's lifecycle: messages at every phase of a turn ------------------------


class Gate:
    """Holds a thread's loop inside a thread/read with turns (its rollout
    followed, in a worker thread) while closed, so messages queue behind it."""

    def __init__(self, read: Callable[..., Any]) -> None:
        self.read = read
        self.closed = False
        self.entered = threading.Event()
        self.opened = threading.Event()

    def __call__(self, *args: Any) -> Any:
        if self.closed:
            self.entered.set()
            self.opened.wait(10)
        return self.read(*args)

    def close(self) -> None:
        self.closed = True
        self.entered.clear()
        self.opened.clear()

    def open(self) -> None:
        self.closed = False
        self.opened.set()


async def eventually(done: Callable[[], bool]) -> None:
    with trio.fail_after(10):
        while not done():
            await trio.sleep(0.002)


#: What reaches the thread during a turn, and when: right behind the turn's
#: start, while it streams, and once it has ended but before the thread
#: handled its TurnEnded (the loop held by the gate meanwhile).
KINDS = ("steer", "start", "interrupt", "subscribe", "unsubscribe", "resume")
PHASES = ("started", "streaming", "ended")
ROUNDS = 4


async def test_a_message_at_any_phase_of_a_turn_neither_crashes_the_thread_nor_loses_a_turn_or_input(
        host: Host, scripted: ScriptedResponses, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = Gate(thread_actor.follow_rollout)
    monkeypatch.setattr(thread_actor, "follow_rollout", gate)
    outbox2, inbox2 = open_mailbox(4096, name="test-conn2")
    other = ConnectionRef(2, outbox2)
    to_other: list[Any] = []

    async def read_other() -> None:  # the second client reads all the time
        async for msg in inbox2:
            to_other.append(msg)

    nursery.start_soon(read_other)
    await host.registry.send(ThreadRequest(Reply(host.conn, 1), "thread/start", ThreadStartParams(), "tests"))
    tid = (await until(host.inbox, is_method("thread/started")))[0].result.thread.id
    thread = host.threads.threads[tid]
    rids = itertools.count(2)
    await thread.send(StartTurn(Reply(host.conn, next(rids)), TurnStartParams(tid, [TextInput("a rollout first")])))
    await until(host.inbox, is_method("turn/completed"))
    accepted: list[str] = []  # input the thread took: the model must see it
    for n in range(ROUNDS):
        for phase in PHASES:
            for kind in KINDS:
                if kind == "unsubscribe":
                    await thread.send(Subscribe(other))
                start_rid, rid, text = next(rids), next(rids), f"{kind} {phase} {n}"
                await thread.send(StartTurn(Reply(host.conn, start_rid), TurnStartParams(
                    tid, [TextInput(f"[[deltas=20 delay_ms=5]] turn {text}")])))
                seen = await until(host.inbox, lambda m: isinstance(m, Response) and m.id == start_rid)
                turn_id = seen[-1].result.turn.id
                if phase != "started":
                    seen += await until(host.inbox, is_method("item/agentMessage/delta"))
                if phase == "ended":
                    gate.close()
                    await thread.send(ReadThread(Reply(host.conn, next(rids)), True, False))
                    await eventually(gate.entered.is_set)
                message = {
                    "steer": SteerTurn(Reply(host.conn, rid), (TextInput(text),), turn_id),
                    "start": StartTurn(Reply(host.conn, rid), TurnStartParams(tid, [TextInput(text)])),
                    "interrupt": InterruptTurn(Reply(host.conn, rid), turn_id),
                    "subscribe": Subscribe(other),
                    "unsubscribe": Unsubscribe(other.id, Reply(host.conn, rid)),
                    "resume": ReadThread(Reply(other, rid), False, True),
                }[kind]
                await thread.send(message)
                if phase == "ended":
                    # The turn ended: its TurnEnded waits behind the message.
                    await eventually(lambda: thread.statistics().depth == 2)
                    gate.open()
                seen += await until(host.inbox, lambda m: is_method("turn/completed")(m)
                                    and m.params.turn.id == turn_id)
                # Every request answered; every turn that started completed.
                if kind in ("steer", "start", "interrupt", "unsubscribe"):
                    answers = [m for m in seen if isinstance(m, Response | ErrorResponse) and m.id == rid]
                    if kind == "start" and isinstance(answers[0], Response) and answers[0].result.turn.id != turn_id:
                        seen += await until(host.inbox, is_method("turn/completed"))  # it started a turn of its own
                    assert len(answers) == 1, (kind, phase, seen)
                    if kind in ("steer", "start") and isinstance(answers[0], Response):
                        accepted.append(text)
                if kind == "resume":
                    await eventually(lambda: any(isinstance(m, Response) and m.id == rid for m in to_other))
                started = [m.params.turn.id for m in seen if is_method("turn/started")(m)]
                completed = [m.params.turn for m in seen if is_method("turn/completed")(m)]
                assert sorted(started) == sorted(t.id for t in completed), (kind, phase)
                interrupted = kind == "interrupt" and phase != "ended"
                assert {t.status for t in completed} <= ({"completed", "interrupted"} if interrupted
                                                         else {"completed"}), (kind, phase, completed)
                assert not [m for m in seen if is_method("error")(m)], (kind, phase)
                if kind in ("subscribe", "resume"):
                    await thread.send(Unsubscribe(other.id))
    assert host.threads.sup.child(f"thread:{tid}").restarts == 0
    # Input steered in too late for its turn's model joined the history.
    await thread.send(StartTurn(Reply(host.conn, next(rids)), TurnStartParams(tid, [TextInput("last")])))
    await until(host.inbox, is_method("turn/completed"))
    history = str(scripted.requests[-1].body["input"])
    assert [text for text in accepted if text not in history] == []


async def test_a_stale_turn_ended_is_dropped_and_the_thread_serves_on(
        host: Host, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logging.getLogger("trio_codex"), "propagate", True)  # whatever configured logging before
    await host.registry.send(ThreadRequest(Reply(host.conn, 1), "thread/start", ThreadStartParams(), "tests"))
    tid = (await until(host.inbox, is_method("thread/started")))[0].result.thread.id
    await host.registry.send(ToThread(tid, TurnEnded("a-predecessors-turn", "completed", None, (), (), None), None))
    await host.registry.send(ToThread(tid, StartTurn(Reply(host.conn, 2), TurnStartParams(
        tid, [TextInput("still here")])), None))
    assert (await until(host.inbox, is_method("turn/completed")))[-1].params.turn.status == "completed"
    assert host.threads.sup.child(f"thread:{tid}").restarts == 0
    assert "the end of turn a-predecessors-turn, which is not its turn" in caplog.text


async def test_the_registry_unloads_a_thread_only_if_nothing_reached_it_since_it_asked(host: Host) -> None:
    await host.registry.send(ThreadRequest(Reply(host.conn, 1), "thread/start", ThreadStartParams(), "tests"))
    tid = (await until(host.inbox, is_method("thread/started")))[0].result.thread.id
    thread = host.threads.threads[tid]

    async def loaded(rid: int) -> list[str]:
        await host.registry.send(ThreadRequest(Reply(host.conn, rid), "thread/loaded/list", ThreadLoadedListParams()))
        return (await until(host.inbox, lambda m: isinstance(m, Response) and m.id == rid))[-1].result.data

    received = thread.statistics().sent
    await host.registry.send(ToThread(tid, Unsubscribe(host.conn.id), None))  # reaches it after it asked
    await host.registry.send(UnloadThread(tid, thread, received))
    assert await loaded(2) == [tid]
    await eventually(lambda: thread.statistics().depth == 0)
    await host.registry.send(UnloadThread(tid, thread, thread.statistics().sent))
    assert await loaded(3) == []


async def test_an_evicted_thread_stops_mid_turn_unloaded_silently_with_nothing_more_written(
        host: Host, codex_home: Path) -> None:
    from trio_codex.runtime.kernel.errors import MailboxClosed

    await host.registry.send(ThreadRequest(Reply(host.conn, 1), "thread/start", ThreadStartParams(), "tests"))
    tid = (await until(host.inbox, is_method("thread/started")))[0].result.thread.id
    thread = host.threads.threads[tid]
    await host.registry.send(ToThread(tid, StartTurn(Reply(host.conn, 2), TurnStartParams(
        tid, [TextInput("[[hang=1]] taken over mid-turn")])), None))
    await until(host.inbox, is_method("item/agentMessage/delta"))
    await host.registry.send(EvictThread(tid))
    await host.registry.send(ThreadRequest(Reply(host.conn, 3), "thread/loaded/list", ThreadLoadedListParams()))
    seen = await until(host.inbox, lambda m: isinstance(m, Response) and m.id == 3)
    assert seen[-1].result.data == []
    # No thread/closed, no turn/completed: the cluster layer tells the clients.
    assert not [m for m in seen if isinstance(m, Notification) and m.method in ("thread/closed", "turn/completed")]
    with pytest.raises(MailboxClosed):
        thread.send_nowait(Unsubscribe(host.conn.id))
    await eventually(lambda: host.threads.sup.child(f"thread:{tid}").state == "finished")
    [rollout] = (codex_home / "sessions").rglob(f"*{tid}.jsonl")
    assert b"turn_aborted" not in rollout.read_bytes() and b"taken over mid-turn" in rollout.read_bytes()


@pytest.fixture
def slow_store(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """The store's index opens (and every store request waits) until the
    event is set; request it before ``host``."""
    opened = threading.Event()
    real_open = store_actor.open_index

    def slow_open(home: Path) -> Any:
        opened.wait(10)
        return real_open(home)

    monkeypatch.setattr(store_actor, "open_index", slow_open)
    yield opened
    opened.set()


async def test_thread_loaded_list_is_answered_while_the_store_is_slow(
        slow_store: threading.Event, host: Host) -> None:
    await host.registry.send(ThreadRequest(Reply(host.conn, 1), "thread/archive", ThreadIdParams("nope")))
    await host.registry.send(ThreadRequest(Reply(host.conn, 2), "thread/loaded/list", ThreadLoadedListParams()))
    first = await until(host.inbox, lambda m: isinstance(m, Response | ErrorResponse))
    assert first[-1].id == 2 and first[-1].result.data == []
    slow_store.set()
    archived = await until(host.inbox, lambda m: isinstance(m, Response | ErrorResponse))
    assert (archived[-1].id, archived[-1].error.message) == (1, "no rollout found for thread id nope")


async def test_a_turn_start_while_a_turn_is_interrupted_starts_a_new_turn_once_that_one_ended(host: Host) -> None:
    await host.registry.send(ThreadRequest(Reply(host.conn, 1), "thread/start", ThreadStartParams(), "tests"))
    tid = (await until(host.inbox, is_method("thread/started")))[0].result.thread.id
    thread = host.threads.threads[tid]
    await thread.send(StartTurn(Reply(host.conn, 2), TurnStartParams(tid, [TextInput("[[deltas=100 delay_ms=20]] a")])))
    first = (await until(host.inbox, lambda m: isinstance(m, Response) and m.id == 2))[-1].result.turn.id
    await thread.send(InterruptTurn(Reply(host.conn, 3), first))
    await thread.send(StartTurn(Reply(host.conn, 4), TurnStartParams(tid, [TextInput("b")])))
    seen = await until(host.inbox, lambda m: isinstance(m, Response) and m.id == 4)
    ended = [m.params.turn for m in seen if is_method("turn/completed")(m)]
    assert [(t.id, t.status) for t in ended] == [(first, "interrupted")]  # before the new turn is answered
    second = seen[-1].result.turn.id
    assert second != first
    done = (await until(host.inbox, is_method("turn/completed")))[-1].params.turn
    assert (done.id, done.status) == (second, "completed")
