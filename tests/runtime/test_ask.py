import msgspec
import pytest
import trio
import trio.testing

from trio_codex.runtime.kernel.ask import ReplySlot, ask
from trio_codex.runtime.kernel.errors import ActorGone, AskTimeout, MailboxClosed
from trio_codex.runtime.kernel.mailbox import DROP, open_mailbox


class Double(msgspec.Struct, frozen=True):
    n: int
    reply: ReplySlot[int]


class Boom(msgspec.Struct, frozen=True):
    reply: ReplySlot[int]


async def doubler(inbox):
    async for msg in inbox:
        match msg:
            case Double(n=n, reply=reply):
                reply.set(2 * n)
            case Boom(reply=reply):
                reply.fail(KeyError("no such thread"))


async def test_ask_returns_what_the_actor_sets_on_the_slot():
    mailbox, inbox = open_mailbox(4, name="doubler")
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(doubler, inbox)
            assert await ask(mailbox, lambda slot: Double(21, slot), timeout=1) == 42
            nursery.cancel_scope.cancel()


async def test_ask_reraises_the_exception_the_actor_failed_the_slot_with():
    mailbox, inbox = open_mailbox(4, name="doubler")
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(doubler, inbox)
            with pytest.raises(KeyError, match=r"^'no such thread'$"):
                await ask(mailbox, Boom, timeout=1)
            nursery.cancel_scope.cancel()


async def test_ask_raises_ask_timeout_naming_the_mailbox_and_the_timeout(autojump_clock):
    mailbox, inbox = open_mailbox(4, name="silent")
    with trio.fail_after(60):
        with pytest.raises(
            AskTimeout,
            match=(
                r"^ask Double to mailbox 'silent' got no reply within 2.5 s; the actor is stuck "
                r"or overloaded, or dropped the request without answering it$"
            ),
        ):
            await ask(mailbox, lambda slot: Double(1, slot), timeout=2.5)
    assert trio.current_time() == 2.5


async def test_the_ask_timeout_covers_waiting_for_room_in_a_full_mailbox(autojump_clock):
    mailbox, inbox = open_mailbox(1, name="busy")
    mailbox.send_nowait(Double(0, ReplySlot()))
    with trio.fail_after(60):
        with pytest.raises(AskTimeout, match=r"^ask Double to mailbox 'busy' got no reply within 1 s"):
            await ask(mailbox, lambda slot: Double(1, slot), timeout=1)
    assert inbox.statistics().depth == 1


async def test_ask_sends_losslessly_even_when_the_request_class_is_best_effort():
    mailbox, inbox = open_mailbox(1, name="doubler", policies={Double: DROP})
    mailbox.send_nowait(Double(0, ReplySlot()))
    assert mailbox.send_nowait(Double(0, ReplySlot())) is False  # would be dropped
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(doubler, inbox)
            assert await ask(mailbox, lambda slot: Double(5, slot), timeout=1) == 10
            nursery.cancel_scope.cancel()


async def test_ask_to_a_mailbox_whose_actor_is_gone_raises_actor_gone():
    mailbox, inbox = open_mailbox(1, name="dead")
    inbox.close()
    with trio.fail_after(5):
        with pytest.raises(
            ActorGone,
            match=(
                r"^ask Double to mailbox 'dead': the actor is gone \(its inbox is closed\); "
                r"it stopped or crashed$"
            ),
        ) as caught:
            await ask(mailbox, lambda slot: Double(1, slot), timeout=1)
    assert isinstance(caught.value.__cause__, MailboxClosed)


async def test_an_inbox_closed_while_an_ask_waits_for_room_makes_it_actor_gone():
    mailbox, inbox = open_mailbox(1, name="dying")
    mailbox.send_nowait(Double(0, ReplySlot()))
    caught = None
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_close_when_blocked, inbox)
            try:
                await ask(mailbox, lambda slot: Double(1, slot), timeout=1)
            except ActorGone as exc:
                caught = exc
    assert isinstance(caught, ActorGone)


async def _close_when_blocked(inbox):
    await trio.testing.wait_all_tasks_blocked()
    inbox.close()


def test_a_reply_slot_answers_once():
    slot: ReplySlot[int] = ReplySlot()
    assert not slot.is_set
    assert slot.set(1) is True
    assert slot.set(2) is False
    assert slot.fail(ValueError("late")) is False
    assert slot.is_set
    assert repr(slot) == "<ReplySlot set 1>"


async def test_a_failed_slot_raises_on_wait_and_ignores_a_later_set():
    slot: ReplySlot[int] = ReplySlot()
    assert repr(slot) == "<ReplySlot pending>"
    assert slot.fail(ValueError("bad params")) is True
    assert slot.set(3) is False
    with trio.fail_after(5):
        with pytest.raises(ValueError, match=r"^bad params$"):
            await slot.wait()
