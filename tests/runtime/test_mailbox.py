import math
import re

import msgspec
import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from trio_codex.runtime.kernel.errors import MailboxClosed
from trio_codex.runtime.kernel.mailbox import (
    DROP,
    Coalesce,
    Lossless,
    MailboxStatistics,
    open_mailbox,
)


class Msg(msgspec.Struct, frozen=True):
    n: int


class Note(Msg, frozen=True):
    """Best-effort in these tests."""


class Delta(msgspec.Struct, frozen=True):
    key: str
    text: str


def merge(old: Delta, new: Delta) -> Delta:
    return Delta(old.key, old.text + new.text)


COALESCE_DELTAS = {Delta: Coalesce(key=lambda d: d.key, merge=merge)}


@pytest.mark.parametrize("capacity", [0, -1, 1.5, math.inf, True, None])
def test_capacity_must_be_a_positive_int(capacity):
    with pytest.raises(
        ValueError,
        match=(
            rf"^mailbox 'm': capacity must be a positive int, got {capacity!r}; mailboxes are "
            r"never unbounded, so pick how far this actor may fall behind$"
        ),
    ):
        open_mailbox(capacity, name="m")


def test_a_policy_must_be_lossless_drop_or_coalesce():
    with pytest.raises(
        TypeError,
        match=r"^mailbox 'm': a policy must be LOSSLESS, DROP or Coalesce\(key, merge\), got 'drop'$",
    ):
        open_mailbox(1, name="m", policies={Msg: "drop"})


async def test_lossless_send_waits_for_room_and_loses_nothing():
    mailbox, inbox = open_mailbox(2, name="m")
    received = []

    async def consume():
        async for msg in inbox:
            received.append(msg.n)
            await trio.sleep(0)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            with mailbox:
                for n in range(20):
                    await mailbox.send(Msg(n))

    assert received == list(range(20))
    stats = inbox.statistics()
    assert (stats.sent, stats.dropped, stats.coalesced, stats.depth, stats.peak) == (20, 0, 0, 0, 2)


async def test_a_sender_blocked_on_a_full_mailbox_is_counted_as_waiting():
    mailbox, inbox = open_mailbox(1, name="m")
    await mailbox.send(Msg(0))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(mailbox.send, Msg(1))
            await trio.testing.wait_all_tasks_blocked()
            assert mailbox.statistics().waiting_senders == 1
            assert [(await inbox.receive()).n, (await inbox.receive()).n] == [0, 1]
    assert mailbox.statistics().waiting_senders == 0


def test_send_nowait_on_a_full_lossless_mailbox_returns_false_and_queues_nothing():
    mailbox, inbox = open_mailbox(1, name="m")
    assert mailbox.send_nowait(Msg(0)) is True
    assert mailbox.send_nowait(Msg(1)) is False
    assert inbox.drain_nowait(10) == [Msg(0)]
    stats = mailbox.statistics()
    assert (stats.sent, stats.dropped, stats.depth) == (1, 0, 0)


async def test_drop_discards_the_new_message_when_full_and_counts_it():
    mailbox, inbox = open_mailbox(2, name="m", default=DROP)
    assert [mailbox.send_nowait(Msg(n)) for n in range(4)] == [True, True, False, False]
    await mailbox.send(Msg(4))
    assert inbox.drain_nowait(10) == [Msg(0), Msg(1)]
    stats = mailbox.statistics()
    assert (stats.sent, stats.dropped) == (2, 3)


def test_a_policy_for_a_class_covers_its_subclasses_unless_they_have_their_own():
    mailbox, inbox = open_mailbox(1, name="m", policies={Msg: DROP, Note: Lossless()})
    mailbox.send_nowait(Msg(0))
    assert mailbox.send_nowait(Msg(1)) is False  # DROP: dropped
    assert mailbox.send_nowait(Note(2)) is False  # Lossless: refused, not dropped
    assert mailbox.statistics().dropped == 1


def test_coalesce_merges_into_one_overflow_slot_per_key_delivered_after_the_queue():
    mailbox, inbox = open_mailbox(2, name="m", policies=COALESCE_DELTAS)
    mailbox.send_nowait(Msg(0))
    mailbox.send_nowait(Msg(1))
    for key, text in [("a", "1"), ("b", "x"), ("a", "2"), ("a", "3"), ("b", "y")]:
        assert mailbox.send_nowait(Delta(key, text)) is True

    stats = mailbox.statistics()
    assert (stats.depth, stats.peak, stats.sent, stats.coalesced) == (4, 4, 4, 3)
    assert inbox.drain_nowait(10) == [Msg(0), Msg(1), Delta("a", "123"), Delta("b", "xy")]


def test_a_message_queued_behind_a_slot_seals_it_so_nothing_merges_past_it():
    mailbox, inbox = open_mailbox(2, name="m", policies=COALESCE_DELTAS)
    mailbox.send_nowait(Msg(0))
    mailbox.send_nowait(Msg(1))
    mailbox.send_nowait(Delta("a", "1"))  # overflow slot for "a"
    assert inbox.drain_nowait(2) == [Msg(0), Msg(1)]  # the slot is pending; there is room
    assert mailbox.send_nowait(Msg(2)) is True  # queued behind the slot
    mailbox.send_nowait(Delta("a", "2"))  # a new slot: it must follow Msg(2)
    mailbox.send_nowait(Delta("a", "3"))

    assert inbox.drain_nowait(10) == [Delta("a", "1"), Msg(2), Delta("a", "23")]
    assert mailbox.statistics().coalesced == 1


def test_behind_a_slot_a_full_mailbox_refuses_lossless_and_drops_drop_messages():
    mailbox, inbox = open_mailbox(
        1, name="m", policies={**COALESCE_DELTAS, Note: DROP}
    )
    mailbox.send_nowait(Msg(0))
    mailbox.send_nowait(Delta("a", "1"))
    assert mailbox.send_nowait(Msg(1)) is False
    assert mailbox.send_nowait(Note(2)) is False
    assert mailbox.statistics().dropped == 1
    assert inbox.drain_nowait(10) == [Msg(0), Delta("a", "1")]


async def test_a_lossless_sender_waits_behind_the_overflow_until_there_is_room():
    mailbox, inbox = open_mailbox(1, name="m", policies=COALESCE_DELTAS)
    await mailbox.send(Msg(0))
    await mailbox.send(Delta("a", "1"))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(mailbox.send, Msg(1))
            await trio.testing.wait_all_tasks_blocked()
            assert mailbox.statistics().waiting_senders == 1
            await mailbox.send(Delta("a", "2"))  # merges: it was sent before Msg(1) got in
            received = [await inbox.receive() for _ in range(3)]
    assert received == [Msg(0), Delta("a", "12"), Msg(1)]


async def test_overflow_is_still_delivered_after_every_sender_closed():
    mailbox, inbox = open_mailbox(1, name="m", policies=COALESCE_DELTAS)
    with mailbox:
        mailbox.send_nowait(Msg(0))
        mailbox.send_nowait(Delta("a", "1"))
        mailbox.send_nowait(Delta("a", "2"))
    with trio.fail_after(5):
        assert [msg async for msg in inbox] == [Msg(0), Delta("a", "12")]


async def test_statistics_report_depth_and_peak():
    mailbox, inbox = open_mailbox(4, name="stats")
    for n in range(3):
        await mailbox.send(Msg(n))
    inbox.drain_nowait(2)
    assert inbox.statistics() == MailboxStatistics(
        name="stats", depth=1, peak=3, capacity=4, sent=3, dropped=0, coalesced=0, waiting_senders=0
    )


async def test_receive_batch_waits_for_one_message_then_takes_what_is_queued():
    mailbox, inbox = open_mailbox(8, name="m")
    batches = []

    async def consume(*, task_status=trio.TASK_STATUS_IGNORED):
        task_status.started()
        batches.append(await inbox.receive_batch())

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(consume)
            await trio.testing.wait_all_tasks_blocked()
            for n in range(5):
                mailbox.send_nowait(Msg(n))
    assert batches == [[Msg(n) for n in range(5)]]


async def test_receive_batch_takes_at_most_limit_messages_in_order():
    mailbox, inbox = open_mailbox(8, name="m")
    for n in range(6):
        mailbox.send_nowait(Msg(n))
    with trio.fail_after(5):
        assert await inbox.receive_batch(4) == [Msg(0), Msg(1), Msg(2), Msg(3)]
        assert await inbox.receive_batch(4) == [Msg(4), Msg(5)]


async def test_receive_batch_raises_end_of_channel_once_the_mailbox_is_closed_and_empty():
    mailbox, inbox = open_mailbox(4, name="m")
    mailbox.send_nowait(Msg(0))
    mailbox.send_nowait(Msg(1))
    await mailbox.aclose()
    with trio.fail_after(5):
        assert await inbox.receive_batch() == [Msg(0), Msg(1)]
        with pytest.raises(trio.EndOfChannel):
            await inbox.receive_batch()


def test_drain_nowait_returns_an_empty_list_when_nothing_is_queued():
    mailbox, inbox = open_mailbox(4, name="m")
    assert inbox.drain_nowait(4) == []
    with pytest.raises(trio.WouldBlock):
        inbox.receive_nowait()
    with pytest.raises(ValueError, match=r"^inbox 'm': limit must be >= 1, got 0$"):
        inbox.drain_nowait(0)


GONE_TEXT = "mailbox 'm' is closed: its receiver is gone (the actor stopped or crashed)"
GONE = f"^{re.escape(GONE_TEXT)}$"


@pytest.mark.parametrize("policies", [None, {Msg: DROP}, {Msg: Coalesce(key=lambda m: 0, merge=max)}])
async def test_sending_to_a_closed_inbox_raises_mailbox_closed(policies):
    mailbox, inbox = open_mailbox(1, name="m", policies=policies)
    inbox.close()
    with pytest.raises(MailboxClosed, match=GONE):
        await mailbox.send(Msg(0))
    with pytest.raises(MailboxClosed, match=GONE):
        mailbox.send_nowait(Msg(0))


async def test_sending_behind_the_overflow_of_a_closed_inbox_raises_mailbox_closed():
    mailbox, inbox = open_mailbox(1, name="m", policies=COALESCE_DELTAS)
    mailbox.send_nowait(Msg(0))
    mailbox.send_nowait(Delta("a", "1"))
    await inbox.aclose()
    with pytest.raises(MailboxClosed, match=GONE):
        mailbox.send_nowait(Delta("a", "2"))
    assert inbox.statistics().depth == 0


async def test_closing_the_inbox_wakes_blocked_senders_with_mailbox_closed():
    mailbox, inbox = open_mailbox(1, name="m", policies=COALESCE_DELTAS)
    errors = []

    async def send(msg):
        try:
            await mailbox.send(msg)
        except MailboxClosed as exc:
            errors.append(str(exc))

    mailbox.send_nowait(Msg(0))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send, Msg(1))  # blocked in the channel
            await trio.testing.wait_all_tasks_blocked()
            mailbox.send_nowait(Delta("a", "1"))
            nursery.start_soon(send, Msg(2))  # parked behind the overflow
            await trio.testing.wait_all_tasks_blocked()
            assert mailbox.statistics().waiting_senders == 2
            inbox.close()
    assert errors == [GONE_TEXT, GONE_TEXT]


async def test_sending_through_a_closed_mailbox_raises_mailbox_closed_and_the_inbox_ends():
    mailbox, inbox = open_mailbox(2, name="m")
    await mailbox.send(Msg(1))
    mailbox.close()
    closed = r"^mailbox 'm' is closed; it cannot send after close\(\)$"
    with pytest.raises(MailboxClosed, match=closed):
        await mailbox.send(Msg(0))
    with pytest.raises(MailboxClosed, match=closed):
        mailbox.send_nowait(Msg(0))
    assert inbox.receive_nowait() == Msg(1)
    with pytest.raises(trio.EndOfChannel):
        inbox.receive_nowait()


async def test_receiving_from_a_closed_inbox_raises_mailbox_closed():
    mailbox, inbox = open_mailbox(2, name="m")
    inbox.close()
    message = r"^inbox 'm' is closed; it cannot receive after close\(\)$"
    with pytest.raises(MailboxClosed, match=message):
        inbox.receive_nowait()
    with pytest.raises(MailboxClosed, match=message):
        await inbox.receive_batch()
    with pytest.raises(MailboxClosed, match=message):
        await inbox.receive()


# One operation of the model-based test: send a message of some class, or
# receive up to n messages.
_ops = st.lists(
    st.one_of(
        st.tuples(st.just("lossless"), st.just(None)),
        st.tuples(st.just("drop"), st.just(None)),
        st.tuples(st.just("coalesce"), st.sampled_from("abc")),
        st.tuples(st.just("receive"), st.integers(1, 4)),
    ),
    max_size=80,
)


class Plain(msgspec.Struct, frozen=True):
    seq: int


class BestEffort(Plain, frozen=True):
    pass


class Part(msgspec.Struct, frozen=True):
    key: str
    seqs: tuple[int, ...]


@given(capacity=st.integers(1, 4), ops=_ops)
def test_overflow_keeps_send_order_and_loses_no_accepted_message(capacity, ops):
    mailbox, inbox = open_mailbox(
        capacity,
        name="model",
        policies={
            BestEffort: DROP,
            Part: Coalesce(key=lambda p: p.key, merge=lambda a, b: Part(a.key, a.seqs + b.seqs)),
        },
    )
    accepted, delivered = [], []
    for seq, (op, arg) in enumerate(ops):
        if op == "receive":
            delivered += inbox.drain_nowait(arg)
            continue
        msg = {"lossless": Plain(seq), "drop": BestEffort(seq), "coalesce": Part(arg, (seq,))}[op]
        if mailbox.send_nowait(msg):
            accepted.append(seq)
        assert mailbox.statistics().depth <= capacity + 3  # one open slot per key at most
    delivered += inbox.drain_nowait(len(ops) + 1)

    # Every accepted message arrives exactly once; a refused one never does.
    position = {}
    for index, msg in enumerate(delivered):
        for seq in msg.seqs if isinstance(msg, Part) else (msg.seq,):
            assert seq not in position
            position[seq] = index
    assert sorted(position) == accepted
    # Non-coalesced messages keep their order; so does each key's text.
    plain = [m.seq for m in delivered if isinstance(m, Plain)]
    assert plain == sorted(plain)
    for key in "abc":
        seqs = [s for m in delivered if isinstance(m, Part) and m.key == key for s in m.seqs]
        assert seqs == sorted(seqs)
    # No coalesced part overtakes, or is overtaken by, a non-coalesced message.
    for part in (s for m in delivered if isinstance(m, Part) for s in m.seqs):
        for other in plain:
            assert (other < part) == (position[other] < position[part])
    stats = mailbox.statistics()
    assert stats.sent + stats.coalesced == len(accepted)
    assert stats.dropped == sum(1 for seq, (op, _) in enumerate(ops) if op == "drop" and seq not in position)
