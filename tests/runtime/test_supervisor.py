import logging
import re

import pytest
import trio
import trio.testing

from trio_codex.runtime.kernel.errors import (
    ActorCrashed,
    RuntimeFailure,
    ShutdownTimeout,
    SupervisorEscalation,
)
from trio_codex.runtime.kernel.supervisor import ChildInfo, RestartPolicy, open_supervisor

# Deterministic backoff: 1 s, 2 s, 4 s, capped at 4 s; budget 3 restarts in 60 s.
POLICY = RestartPolicy(intensity=3, period=60, backoff_initial=1, backoff_max=4, jitter=0)


class Script:
    """A child whose incarnations follow a script: each entry is "crash",
    "return" or "run" (started, then wait forever). Records each start as
    (time, args)."""

    def __init__(self, *steps):
        self.steps = list(steps)
        self.starts = []

    async def __call__(self, *args, task_status=trio.TASK_STATUS_IGNORED):
        self.starts.append((trio.current_time(), args))
        step = self.steps.pop(0) if self.steps else "run"
        task_status.started(args)
        if step == "crash":
            raise ValueError(f"crash {len(self.starts)}")
        if step == "run":
            await trio.sleep_forever()


async def test_start_child_returns_what_the_child_passed_to_started():
    with trio.fail_after(5):
        async with open_supervisor("sup") as sup:
            assert await sup.start_child("echo", Script(), "inbox", 7) == ("inbox", 7)
            assert sup.children == ("echo",)
            assert sup.child("echo").state == "running"


async def test_a_crashing_child_is_restarted_after_backoff_with_fresh_args(autojump_clock):
    child = Script("crash", "crash")
    checkpoints = iter(["checkpoint-1", "checkpoint-2"])
    with trio.fail_after(60):
        async with open_supervisor("sup", policy=POLICY) as sup:
            await sup.start_child("thread", child, "fresh", restart_args=lambda: (next(checkpoints),))
            await trio.sleep(10)
            info = sup.child("thread")
    assert child.starts == [(0, ("fresh",)), (1, ("checkpoint-1",)), (3, ("checkpoint-2",))]
    assert (info.state, info.restarts, repr(info.last_failure)) == ("running", 2, "ValueError('crash 2')")


async def test_a_child_restarted_without_backoff_still_gets_fresh_args():
    child = Script("crash")
    policy = RestartPolicy(backoff_initial=0, backoff_max=0)
    with trio.fail_after(5):
        async with open_supervisor("sup", policy=policy) as sup:
            await sup.start_child("thread", child, "fresh", restart_args=lambda: ["checkpoint"])
            await trio.testing.wait_all_tasks_blocked()
    assert [args for _, args in child.starts] == [("fresh",), ("checkpoint",)]


async def test_a_restarted_child_gets_its_original_args_without_restart_args(autojump_clock):
    child = Script("crash")
    with trio.fail_after(60):
        async with open_supervisor("sup", policy=POLICY) as sup:
            await sup.start_child("thread", child, "a", "b")
            await trio.sleep(10)
    assert [args for _, args in child.starts] == [("a", "b"), ("a", "b")]


async def test_backoff_doubles_per_restart_up_to_the_cap(autojump_clock):
    policy = RestartPolicy(intensity=10, period=60, backoff_initial=1, backoff_max=4, jitter=0)
    child = Script(*["crash"] * 5)
    with trio.fail_after(60):
        async with open_supervisor("sup", policy=policy) as sup:
            await sup.start_child("flaky", child)
            await trio.sleep(30)
    assert [t for t, _ in child.starts] == [0, 1, 3, 7, 11, 15]


async def test_jitter_scales_each_delay_within_its_bounds(autojump_clock):
    policy = RestartPolicy(intensity=10, period=60, backoff_initial=1, backoff_max=1, jitter=0.5)
    child = Script(*["crash"] * 5)
    with trio.fail_after(60):
        async with open_supervisor("sup", policy=policy) as sup:
            await sup.start_child("flaky", child)
            await trio.sleep(30)
    times = [t for t, _ in child.starts]
    assert all(0.5 <= later - earlier <= 1.5 for earlier, later in zip(times, times[1:]))


async def test_the_restart_budget_is_counted_per_child(autojump_clock):
    first, second = Script(*["crash"] * 3), Script(*["crash"] * 3)
    with trio.fail_after(60):
        async with open_supervisor("sup", policy=POLICY) as sup:
            await sup.start_child("first", first)
            await sup.start_child("second", second)
            await trio.sleep(20)  # six crashes in all, three each: nobody escalates
            assert (sup.child("first").restarts, sup.child("second").restarts) == (3, 3)
            assert sup.child("first").state == sup.child("second").state == "running"


async def test_the_budget_refills_once_failures_fall_out_of_the_period(autojump_clock):
    policy = RestartPolicy(intensity=1, period=5, backoff_initial=10, backoff_max=10, jitter=0)
    child = Script(*["crash"] * 4)
    with trio.fail_after(120):
        async with open_supervisor("sup", policy=policy) as sup:
            await sup.start_child("slow-flaky", child)
            await trio.sleep(60)
            assert sup.child("slow-flaky").restarts == 4


async def test_a_child_that_exceeds_its_budget_escalates_and_cancels_its_siblings(autojump_clock):
    sibling_saw = []

    async def sibling(*, task_status=trio.TASK_STATUS_IGNORED):
        task_status.started()
        try:
            await trio.sleep_forever()
        except trio.Cancelled as exc:
            sibling_saw.append(exc.reason)
            raise

    with trio.fail_after(60):
        with pytest.raises(SupervisorEscalation) as caught:
            async with open_supervisor("threads", policy=POLICY) as sup:
                await sup.start_child("steady", sibling)
                await sup.start_child("doomed", Script(*["crash"] * 10))
                await trio.sleep_forever()

    escalation = caught.value
    assert str(escalation) == (
        "supervisor 'threads' gave up: child 'doomed' failed 4 times within 60 s, more than the "
        "3 restarts its policy allows; last cause: ValueError('crash 4'). Fix the child, or "
        "raise RestartPolicy.intensity or shorten RestartPolicy.period"
    )
    assert (escalation.supervisor, escalation.child, escalation.restarts, escalation.period) == (
        "threads", "doomed", 4, 60,
    )
    assert escalation.__cause__ is escalation.cause
    assert repr(escalation.cause) == "ValueError('crash 4')"
    assert sibling_saw == [
        "supervisor 'threads' is escalating: child 'doomed' exceeded its restart budget"
    ]


async def test_an_expendable_child_past_its_budget_is_dropped_and_its_siblings_go_on(autojump_clock):
    given_up = []
    with trio.fail_after(60):
        async with open_supervisor("threads", policy=POLICY) as sup:
            await sup.start_child("steady", Script())
            await sup.start_child("doomed", Script(*["crash"] * 10), on_give_up=given_up.append)
            await trio.sleep(30)
            assert sup.children == ("steady",)
            assert sup.child("doomed").state == "finished"
    assert [repr(f) for f in given_up] == ["ValueError('crash 4')"]


async def test_a_transient_child_is_restarted_after_a_crash_but_not_after_returning(autojump_clock):
    child = Script("crash", "return")
    with trio.fail_after(60):
        async with open_supervisor("sup", policy=POLICY) as sup:
            await sup.start_child("job", child, restart="transient")
            info = await sup.wait_child("job")
    assert len(child.starts) == 2
    assert (info.state, info.restarts, info.cancel_reason) == ("finished", 1, None)


async def test_a_temporary_child_is_never_restarted(autojump_clock):
    child = Script("crash")
    with trio.fail_after(60):
        async with open_supervisor("sup", policy=POLICY) as sup:
            await sup.start_child("once", child, restart="temporary")
            info = await sup.wait_child("once")
            await trio.sleep(10)
    assert len(child.starts) == 1
    assert (info.state, info.restarts, repr(info.last_failure)) == ("finished", 0, "ValueError('crash 1')")


async def test_a_permanent_child_is_restarted_even_after_returning(autojump_clock):
    child = Script("return")
    with trio.fail_after(60):
        async with open_supervisor("sup", policy=POLICY) as sup:
            await sup.start_child("forever", child)
            await trio.sleep(10)
    assert [t for t, _ in child.starts] == [0, 1]


async def test_stop_child_cancels_it_with_the_reason_and_records_it():
    saw = []

    async def actor(*, task_status=trio.TASK_STATUS_IGNORED):
        task_status.started()
        try:
            await trio.sleep_forever()
        except trio.Cancelled as exc:
            saw.append((exc.source, exc.reason))
            raise

    with trio.fail_after(5):
        async with open_supervisor("threads") as sup:
            await sup.start_child("thread:1", actor)
            assert sup.stop_child("thread:1", "thread unloaded: idle for 30 min") is True
            info = await sup.wait_child("thread:1")
            assert sup.stop_child("thread:1", "again") is False
            assert sup.children == ()
    assert saw == [("explicit", "thread unloaded: idle for 30 min")]
    assert info == ChildInfo(
        name="thread:1",
        restart="permanent",
        state="finished",
        restarts=0,
        last_failure=None,
        cancel_reason="thread unloaded: idle for 30 min",
    )
    assert sup.child("thread:1") == info
    with pytest.raises(LookupError, match=r"^supervisor 'threads' has no child named 'thread:2'$"):
        sup.child("thread:2")


async def test_a_child_stopped_during_its_backoff_is_not_restarted(autojump_clock):
    child = Script("crash")
    with trio.fail_after(60):
        async with open_supervisor("sup", policy=POLICY) as sup:
            await sup.start_child("flaky", child)
            await trio.testing.wait_all_tasks_blocked()
            assert sup.child("flaky").state == "backoff"
            sup.stop_child("flaky", "not needed")
            info = await sup.wait_child("flaky")
    assert len(child.starts) == 1
    assert (info.state, info.cancel_reason) == ("finished", "not needed")


async def test_a_child_that_fails_before_it_is_ready_makes_start_child_raise_actor_crashed():
    async def broken(*, task_status=trio.TASK_STATUS_IGNORED):
        raise OSError("config file missing")

    async def lazy(*, task_status=trio.TASK_STATUS_IGNORED):
        return

    with trio.fail_after(5):
        async with open_supervisor("sup") as sup:
            with pytest.raises(
                ActorCrashed,
                match=r"^child 'mcp' of supervisor 'sup' failed to start: OSError\('config file missing'\)$",
            ) as caught:
                await sup.start_child("mcp", broken)
            assert caught.value.actor == "mcp"
            assert caught.value.cause is caught.value.__cause__
            with pytest.raises(
                ActorCrashed,
                match=r"^child 'lazy' of supervisor 'sup' returned without calling task_status.started\(\)$",
            ):
                await sup.start_child("lazy", lazy)
            assert sup.children == ()


async def test_start_child_rejects_a_taken_name_and_an_unknown_restart_type():
    with trio.fail_after(5):
        async with open_supervisor("sup") as sup:
            await sup.start_child("a", Script())
            with pytest.raises(
                ValueError,
                match=r"^supervisor 'sup' already has a child named 'a'; stop it first or pick a unique name$",
            ):
                await sup.start_child("a", Script())
            with pytest.raises(
                ValueError,
                match=r"^restart must be 'permanent', 'transient' or 'temporary', got 'always'$",
            ):
                await sup.start_child("b", Script(), restart="always")


async def test_shutdown_cancels_every_child_with_the_reason_within_the_deadline():
    reasons = []

    async def actor(*, task_status=trio.TASK_STATUS_IGNORED):
        task_status.started()
        try:
            await trio.sleep_forever()
        except trio.Cancelled as exc:
            reasons.append(exc.reason)
            raise

    with trio.fail_after(5):
        async with open_supervisor("root") as sup:
            await sup.start_child("a", actor)
            await sup.start_child("b", actor)
            await sup.shutdown("server shutting down", timeout=1)
            assert sup.children == ()
            assert sup.child("a").cancel_reason == "server shutting down"
            with pytest.raises(
                RuntimeFailure,
                match=r"^supervisor 'root' is shutting down and starts no new children \(asked to start 'c'\)$",
            ):
                await sup.start_child("c", actor)
    assert reasons == ["server shutting down"] * 2


async def stubborn(*, task_status=trio.TASK_STATUS_IGNORED):
    task_status.started()
    try:
        await trio.sleep_forever()
    finally:
        with trio.CancelScope(shield=True):
            await trio.sleep(30)


async def test_shutdown_raises_shutdown_timeout_when_a_child_ignores_cancellation(autojump_clock):
    with trio.fail_after(120):
        async with open_supervisor("root", shutdown_timeout=60) as sup:
            await sup.start_child("stubborn", stubborn)
            await sup.start_child("polite", Script())
            with pytest.raises(
                ShutdownTimeout,
                match=(
                    r"^supervisor 'root': 'stubborn' did not stop within 2 s of shutdown "
                    r"\('deploy'\); something in them is shielded from cancellation or ignores it$"
                ),
            ) as caught:
                await sup.shutdown("deploy", timeout=2)
            assert caught.value.children == ("stubborn",)
            assert trio.current_time() == 2
    assert trio.current_time() == 30  # trio still waited for it


async def test_leaving_the_block_shuts_the_children_down():
    reasons = []

    async def actor(*, task_status=trio.TASK_STATUS_IGNORED):
        task_status.started()
        try:
            await trio.sleep_forever()
        except trio.Cancelled as exc:
            reasons.append(exc.reason)
            raise

    with trio.fail_after(5):
        async with open_supervisor("session") as sup:
            await sup.start_child("a", actor)
    assert reasons == ["supervisor 'session' is closing"]


async def test_leaving_the_block_late_raises_shutdown_timeout(autojump_clock):
    with trio.fail_after(120):
        with pytest.raises(ShutdownTimeout, match=r"^supervisor 'session': 'stubborn' did not stop within 5 s"):
            async with open_supervisor("session") as sup:
                await sup.start_child("stubborn", stubborn)


async def test_an_exception_in_the_block_cancels_the_children_and_comes_out_unwrapped():
    reasons = []

    async def actor(*, task_status=trio.TASK_STATUS_IGNORED):
        task_status.started()
        try:
            await trio.sleep_forever()
        except trio.Cancelled as exc:
            reasons.append(exc.reason)
            raise

    with trio.fail_after(5):
        with pytest.raises(KeyError, match=r"^'oops'$"):
            async with open_supervisor("session") as sup:
                await sup.start_child("a", actor)
                raise KeyError("oops")
    assert reasons == ["supervisor 'session' is exiting on KeyError('oops')"]


async def test_cancelling_the_parent_records_the_reason_on_each_child():
    with trio.fail_after(5):
        with trio.CancelScope() as scope:
            async with open_supervisor("session") as sup:
                await sup.start_child("a", Script())
                scope.cancel("client disconnected")
                await trio.sleep_forever()
    assert sup.child("a").cancel_reason == "client disconnected"


async def test_child_failures_are_logged_with_the_child_name_and_cause(autojump_clock, caplog):
    caplog.set_level(logging.INFO, logger="trio_codex.supervisor")
    with trio.fail_after(60):
        async with open_supervisor("threads", policy=POLICY) as sup:
            await sup.start_child("thread:7", Script("crash"))
            await trio.sleep(5)
    crash = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in crash] == [
        "supervisor 'threads': child 'thread:7' crashed: ValueError('crash 1'); "
        "restart 1 of 3 allowed within 60 s, in 1.000 s"
    ]
    assert crash[0].name == "trio_codex.supervisor"
    assert repr(crash[0].exc_info[1]) == "ValueError('crash 1')"
    assert any(
        re.fullmatch(r"supervisor 'threads': child 'thread:7' stopped: supervisor 'threads' is closing", r.getMessage())
        for r in caplog.records
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"intensity": -1}, r"^intensity must be >= 0, got -1$"),
        ({"period": 0}, r"^period must be > 0 seconds, got 0$"),
        ({"backoff_initial": 3, "backoff_max": 2}, r"^need 0 <= backoff_initial <= backoff_max < inf, got 3 and 2$"),
        ({"jitter": 1}, r"^jitter must be in \[0, 1\), got 1$"),
    ],
)
def test_a_restart_policy_rejects_values_that_make_no_sense(fields, message):
    with pytest.raises(ValueError, match=message):
        RestartPolicy(**fields)
