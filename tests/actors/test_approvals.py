"""The approvals actor, through its mailbox: fan-out, first answer wins."""

from __future__ import annotations

from typing import Any

import msgspec
import trio
import trio.testing

from trio_codex.actors.approvals import run_approvals
from trio_codex.actors.messages import (
    ApprovalAnswer,
    ClearApprovals,
    ClientAnswer,
    ConnectionRef,
    RequestApproval,
)
from trio_codex.runtime.kernel.ask import ReplySlot
from trio_codex.runtime.kernel.mailbox import Inbox, open_mailbox
from trio_codex.runtime.protocol.jsonrpc import ErrorObject, Notification, ServerRequest


def connection(conn_id: int) -> tuple[ConnectionRef, Inbox]:
    outbox, inbox = open_mailbox(64, name=f"conn{conn_id}")
    return ConnectionRef(conn_id, outbox), inbox


async def ask(approvals: Any, conns: tuple[ConnectionRef, ...], turn: str = "u") -> ReplySlot:
    slot: ReplySlot = ReplySlot()
    await approvals.send(RequestApproval("t", turn, "item/commandExecution/requestApproval", {"x": 1}, conns, slot))
    return slot


def resolved(inbox: Inbox) -> list[int]:
    return [m.params.request_id for m in inbox.drain_nowait(64)
            if isinstance(m, Notification) and m.method == "serverRequest/resolved"]


async def test_one_request_goes_to_every_subscriber_and_the_first_answer_wins(nursery: trio.Nursery) -> None:
    approvals = await nursery.start(run_approvals)
    (a, a_in), (b, b_in) = connection(1), connection(2)
    slot = await ask(approvals, (a, b))
    with trio.fail_after(5):
        to_a, to_b = await a_in.receive(), await b_in.receive()
    assert isinstance(to_a, ServerRequest) and to_a == to_b and to_a.id == 0
    await approvals.send(ClientAnswer(2, 0, msgspec.Raw(b'{"decision":"acceptForSession"}'), None))
    await approvals.send(ClientAnswer(1, 0, msgspec.Raw(b'{"decision":"decline"}'), None))  # late: ignored
    with trio.fail_after(5):
        assert await slot.wait() == ApprovalAnswer(0, "acceptForSession", 2)
    await trio.testing.wait_all_tasks_blocked()
    assert resolved(a_in) == [0] and resolved(b_in) == [0]


async def test_request_ids_count_up_server_wide(nursery: trio.Nursery) -> None:
    approvals = await nursery.start(run_approvals)
    (a, a_in), (b, b_in) = connection(1), connection(2)
    await ask(approvals, (a,))
    await ask(approvals, (b,))
    with trio.fail_after(5):
        assert ((await a_in.receive()).id, (await b_in.receive()).id) == (0, 1)


async def test_a_malformed_or_error_answer_counts_as_decline(nursery: trio.Nursery) -> None:
    approvals = await nursery.start(run_approvals)
    a, _ = connection(1)
    first, second = await ask(approvals, (a,)), await ask(approvals, (a,))
    await approvals.send(ClientAnswer(1, 0, msgspec.Raw(b'{"decision": 42}'), None))
    await approvals.send(ClientAnswer(1, 1, None, ErrorObject(-32603, "handler crashed")))
    with trio.fail_after(5):
        assert (await first.wait()).decision == "decline"
        assert (await second.wait()).decision == "decline"


async def test_clearing_a_turn_resolves_its_pending_requests_only(nursery: trio.Nursery) -> None:
    approvals = await nursery.start(run_approvals)
    a, a_in = connection(1)
    await ask(approvals, (a,), turn="u1")
    kept = await ask(approvals, (a,), turn="u2")
    await approvals.send(ClearApprovals("t", "u1"))
    await trio.testing.wait_all_tasks_blocked()
    assert resolved(a_in) == [0]
    await approvals.send(ClientAnswer(1, 1, msgspec.Raw(b'{"decision":"accept"}'), None))
    with trio.fail_after(5):
        assert (await kept.wait()).decision == "accept"
