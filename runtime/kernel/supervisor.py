"""One-for-one supervision of actor tasks.

A supervisor is opened by its parent around the code that uses it::

    async with open_supervisor("threads", policy=RestartPolicy(), shutdown_timeout=5) as sup:
        outbox = await sup.start_child("thread:1", thread_actor, inbox, restart="permanent")
        ...
    # Leaving the block shuts the children down: each is cancelled with a
    # reason, and the supervisor waits at most shutdown_timeout for them.

A child is ``async def fn(*args, task_status)`` that calls
``task_status.started(value)`` once it is ready (trio's ``nursery.start``
handshake); ``start_child`` returns that value, typically the child's
Mailbox. Children are in-process trio tasks in the supervisor's nursery.

Rules:
1. A child that fails before it is ready is not restarted: ``start_child``
   raises ActorCrashed, so a broken child never lingers half-started.
2. Restart types, as in OTP: ``permanent`` is restarted whenever it exits,
   ``transient`` only when it raises, ``temporary`` never.
3. The restart budget is per child: more than ``policy.intensity`` restarts
   within ``policy.period`` seconds escalates. The supervisor then cancels
   every child and raises SupervisorEscalation out of its ``async with``.
   One child's failures never spend another child's budget. A child started
   with ``on_give_up`` is expendable instead: past its budget it is dropped
   and ``on_give_up(failure)`` is called, and its siblings go on.
4. Restarts wait a jittered exponential backoff, ``backoff_initial * 2**(n-1)``
   capped at ``backoff_max``, where n counts the child's restarts in the
   current period: a child that stayed up for a period starts over from
   ``backoff_initial``.
5. A restarted child gets its original args again, or fresh ones from its
   ``restart_args()`` callable (for example a checkpoint to resume from).
6. Every cancellation carries a reason (``CancelScope.cancel(reason=...)``):
   the child sees it on its ``trio.Cancelled``, and the supervisor records it
   per child (:attr:`ChildInfo.cancel_reason`) and logs it.
7. trio never abandons a task: a child that ignores cancellation still holds
   up its supervisor's exit. ``shutdown`` reports it at the deadline with
   ShutdownTimeout.

Failures and restarts are logged on the ``trio_codex.supervisor`` logger.
"""

from __future__ import annotations

import logging
import math
import random
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any, Literal

import msgspec
import trio

from .errors import ActorCrashed, RuntimeFailure, ShutdownTimeout, SupervisorEscalation

__all__ = [
    "ChildInfo",
    "Restart",
    "RestartPolicy",
    "Supervisor",
    "open_supervisor",
]

log = logging.getLogger("trio_codex.supervisor")

Restart = Literal["permanent", "transient", "temporary"]
_RESTARTS = ("permanent", "transient", "temporary")

# Finished children whose ChildInfo stays queryable, most recent last.
_FINISHED_KEPT = 128


class RestartPolicy(msgspec.Struct, frozen=True):
    """How hard a supervisor tries before it gives up (the budget is per
    child)."""

    #: Restarts allowed within ``period``; one more escalates.
    intensity: int = 3
    #: The sliding window, in seconds, that restarts are counted over.
    period: float = 5.0
    #: The first restart's delay, in seconds; it doubles per restart.
    backoff_initial: float = 0.05
    #: The longest delay, in seconds.
    backoff_max: float = 2.0
    #: Each delay is scaled by a random factor in [1 - jitter, 1 + jitter].
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.intensity < 0:
            raise ValueError(f"intensity must be >= 0, got {self.intensity!r}")
        if not self.period > 0:
            raise ValueError(f"period must be > 0 seconds, got {self.period!r}")
        if not 0 <= self.backoff_initial <= self.backoff_max < math.inf:
            raise ValueError(
                "need 0 <= backoff_initial <= backoff_max < inf, got "
                f"{self.backoff_initial!r} and {self.backoff_max!r}"
            )
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter!r}")


class ChildInfo(msgspec.Struct, frozen=True):
    """A snapshot of one child."""

    name: str
    restart: Restart
    #: ``starting`` (until it calls started), ``running``, ``backoff``
    #: (waiting to restart), ``stopping`` (cancelled, not yet exited) or
    #: ``finished`` (for good).
    state: Literal["starting", "running", "backoff", "stopping", "finished"]
    #: How many times it was restarted.
    restarts: int
    #: What its last failed incarnation raised.
    last_failure: BaseException | None
    #: Why it was cancelled, as the child saw it (``None`` if it never was).
    cancel_reason: str | None


class _Child:
    __slots__ = (
        "args",
        "cancel_reason",
        "done",
        "failures",
        "fn",
        "last_failure",
        "name",
        "restart",
        "on_give_up",
        "restart_args",
        "restarts",
        "scope",
        "state",
    )

    def __init__(
        self,
        name: str,
        fn: Callable[..., Awaitable[object]],
        args: tuple[object, ...],
        restart: Restart,
        restart_args: Callable[[], Iterable[object]] | None,
        on_give_up: Callable[[Exception | None], object] | None = None,
    ) -> None:
        self.name = name
        self.on_give_up = on_give_up
        self.fn = fn
        self.args = args
        self.restart = restart
        self.restart_args = restart_args
        self.state: Literal["starting", "running", "backoff", "stopping", "finished"] = "starting"
        self.scope: trio.CancelScope | None = None
        self.cancel_reason: str | None = None
        self.last_failure: BaseException | None = None
        self.restarts = 0
        # When each failure inside the current period happened.
        self.failures: deque[float] = deque()
        self.done = trio.Event()

    def cancel(self, reason: str) -> None:
        if self.cancel_reason is None:
            self.cancel_reason = reason
        if self.state != "finished":
            self.state = "stopping"
        if self.scope is not None:
            self.scope.cancel(reason)

    def info(self) -> ChildInfo:
        return ChildInfo(
            name=self.name,
            restart=self.restart,
            state=self.state,
            restarts=self.restarts,
            last_failure=self.last_failure,
            cancel_reason=self.cancel_reason,
        )


class _Handshake:
    """The ``task_status`` a child sees: the first ``started()`` completes
    ``start_child``; every call records that the incarnation is running."""

    __slots__ = ("_child", "_task_status")

    def __init__(self, child: _Child, task_status: trio.TaskStatus[Any]) -> None:
        self._child = child
        self._task_status: trio.TaskStatus[Any] | None = task_status

    @property
    def ready(self) -> bool:
        return self._task_status is None

    def started(self, value: object = None) -> None:
        if self._child.state == "starting":
            self._child.state = "running"
        if self._task_status is not None:
            task_status, self._task_status = self._task_status, None
            task_status.started(value)


class Supervisor:
    """Supervises children in one nursery. Open with :func:`open_supervisor`."""

    def __init__(self, name: str, nursery: trio.Nursery, policy: RestartPolicy, shutdown_timeout: float) -> None:
        self._name = name
        self._nursery = nursery
        self._policy = policy
        self._shutdown_timeout = shutdown_timeout
        self._children: dict[str, _Child] = {}
        self._finished: dict[str, ChildInfo] = {}
        self._closing = False
        self._escalation: SupervisorEscalation | None = None
        self._random = random.Random()

    @property
    def name(self) -> str:
        return self._name

    @property
    def children(self) -> tuple[str, ...]:
        """The names of the children that have not finished, in start order."""
        return tuple(self._children)

    async def start_child(
        self,
        name: str,
        fn: Callable[..., Awaitable[object]],
        *args: object,
        restart: Restart = "permanent",
        restart_args: Callable[[], Iterable[object]] | None = None,
        on_give_up: Callable[[Exception | None], object] | None = None,
    ) -> Any:
        """Start ``fn(*args, task_status=...)`` as a supervised child and
        return the value it passes to ``task_status.started()``.

        ``restart_args``, if given, is called before each restart for the
        args to restart with; otherwise the original ``args`` are reused.
        ``on_give_up``, if given, makes the child expendable: when it spends
        its restart budget it is dropped and ``on_give_up(last_failure)`` is
        called (synchronously, so it must not block), instead of escalating.

        Raises:
          ActorCrashed: the child raised, or returned, before calling
            ``task_status.started()``; it is not restarted.
          ValueError: the name is taken by a live child, or ``restart`` is
            not one of "permanent", "transient", "temporary".
          RuntimeFailure: the supervisor is shutting down.
        """
        if restart not in _RESTARTS:
            raise ValueError(
                f"restart must be 'permanent', 'transient' or 'temporary', got {restart!r}"
            )
        if self._closing:
            raise RuntimeFailure(
                f"supervisor {self._name!r} is shutting down and starts no new children "
                f"(asked to start {name!r})"
            )
        if name in self._children:
            raise ValueError(
                f"supervisor {self._name!r} already has a child named {name!r}; "
                "stop it first or pick a unique name"
            )
        child = _Child(name, fn, args, restart, restart_args, on_give_up)
        self._children[name] = child
        return await self._nursery.start(self._supervise, child)

    def stop_child(self, name: str, reason: str) -> bool:
        """Cancel the child with ``reason``; it is not restarted. Returns
        False if there is no such live child. Does not wait: use
        :meth:`wait_child` for that."""
        child = self._children.get(name)
        if child is None:
            return False
        log.info("supervisor %r: stopping child %r: %s", self._name, name, reason)
        child.cancel(reason)
        return True

    async def wait_child(self, name: str) -> ChildInfo:
        """Wait until the child has finished for good and return its final
        snapshot.

        Raises:
          LookupError: no child of that name is live or recently finished.
        """
        child = self._children.get(name)
        if child is not None:
            await child.done.wait()
        return self.child(name)

    def child(self, name: str) -> ChildInfo:
        """A snapshot of a live or recently finished child.

        Raises:
          LookupError: no child of that name is live or recently finished.
        """
        child = self._children.get(name)
        if child is not None:
            return child.info()
        info = self._finished.get(name)
        if info is None:
            raise LookupError(f"supervisor {self._name!r} has no child named {name!r}")
        return info

    async def shutdown(self, reason: str, *, timeout: float | None = None) -> None:
        """Cancel every child with ``reason`` and wait until they have all
        finished, at most ``timeout`` seconds (default: the supervisor's
        ``shutdown_timeout``). No child is restarted or started afterwards.

        Raises:
          ShutdownTimeout: some children were still running at the deadline.
        """
        deadline = self._shutdown_timeout if timeout is None else timeout
        self._closing = True
        self._cancel_children(reason)
        with trio.move_on_after(deadline):
            for child in list(self._children.values()):
                await child.done.wait()
            return
        stragglers = tuple(self._children)
        if not stragglers:  # the last one finished right at the deadline
            return
        message = (
            f"supervisor {self._name!r}: {', '.join(map(repr, stragglers))} did not stop "
            f"within {deadline:g} s of shutdown ({reason!r}); something in them is "
            "shielded from cancellation or ignores it"
        )
        log.error("%s", message)
        raise ShutdownTimeout(message, children=stragglers)

    def _cancel_children(self, reason: str) -> None:
        for child in self._children.values():
            child.cancel(reason)

    async def _supervise(self, child: _Child, *, task_status: trio.TaskStatus[Any]) -> None:
        """Run one child, incarnation after incarnation, until it finishes
        for good, it is stopped, or its budget is spent."""
        handshake = _Handshake(child, task_status)
        args = child.args
        delay: float | None = None  # None until the first restart
        try:
            while True:
                failure: Exception | None = None
                try:
                    with trio.CancelScope() as scope:
                        child.scope = scope
                        if child.cancel_reason is not None:
                            scope.cancel(child.cancel_reason)
                        if delay is not None:
                            child.state = "backoff"
                            await trio.sleep(delay)
                            child.state = "starting"
                            if child.restart_args is not None:
                                args = tuple(child.restart_args())
                        await child.fn(*args, task_status=handshake)
                except Exception as exc:
                    failure = exc
                if not handshake.ready:
                    raise self._not_ready(child, failure)
                if failure is not None:
                    child.last_failure = failure
                delay = self._restart_delay(child, failure)
                if delay is None:
                    return
        except trio.Cancelled as exc:
            if child.cancel_reason is None:
                child.cancel_reason = _reason(exc)
            raise
        finally:
            child.state = "finished"
            child.scope = None
            if self._children.get(child.name) is child:
                del self._children[child.name]
            self._finished.pop(child.name, None)
            self._finished[child.name] = child.info()
            if len(self._finished) > _FINISHED_KEPT:
                del self._finished[next(iter(self._finished))]
            child.done.set()

    def _not_ready(self, child: _Child, failure: Exception | None) -> ActorCrashed:
        where = f"child {child.name!r} of supervisor {self._name!r}"
        if failure is not None:
            message = f"{where} failed to start: {failure!r}"
        elif child.cancel_reason is not None:
            message = f"{where} was cancelled before it was ready: {child.cancel_reason}"
        else:
            message = f"{where} returned without calling task_status.started()"
        crashed = ActorCrashed(message, actor=child.name, cause=failure)
        crashed.__cause__ = failure
        return crashed

    def _restart_delay(self, child: _Child, failure: Exception | None) -> float | None:
        """Decide what follows an incarnation's exit: the backoff before the
        restart, or None when the child is finished (stopped, done, or the
        supervisor escalated)."""
        name = self._name
        if child.cancel_reason is not None:
            if failure is not None:
                log.warning(
                    "supervisor %r: child %r raised while stopping (%s): %r",
                    name, child.name, child.cancel_reason, failure, exc_info=failure,
                )
            else:
                log.info("supervisor %r: child %r stopped: %s", name, child.name, child.cancel_reason)
            return None
        if failure is None and child.restart != "permanent":
            log.info("supervisor %r: child %r finished", name, child.name)
            return None
        if child.restart == "temporary":
            log.error(
                "supervisor %r: temporary child %r crashed and is not restarted: %r",
                name, child.name, failure, exc_info=failure,
            )
            return None
        policy = self._policy
        now = trio.current_time()
        failures = child.failures
        failures.append(now)
        while failures[0] < now - policy.period:
            failures.popleft()
        if len(failures) > policy.intensity:
            if child.on_give_up is None:
                self._escalate(child, failure, len(failures))
            else:
                log.error("supervisor %r: dropped child %r: it failed %d times within %g s; last cause: %r",
                          name, child.name, len(failures), policy.period, failure, exc_info=failure)
                child.on_give_up(failure)
            return None
        delay = min(policy.backoff_max, policy.backoff_initial * 2 ** min(len(failures) - 1, 64))
        if policy.jitter:
            delay *= self._random.uniform(1 - policy.jitter, 1 + policy.jitter)
        child.restarts += 1
        what = "exited" if failure is None else f"crashed: {failure!r}"
        log.error(
            "supervisor %r: child %r %s; restart %d of %d allowed within %g s, in %.3f s",
            name, child.name, what, len(failures), policy.intensity, policy.period, delay,
            exc_info=failure,
        )
        return delay

    def _escalate(self, child: _Child, failure: Exception | None, count: int) -> None:
        policy = self._policy
        message = (
            f"supervisor {self._name!r} gave up: child {child.name!r} failed {count} times "
            f"within {policy.period:g} s, more than the {policy.intensity} restarts its "
            f"policy allows; last cause: {failure!r}. Fix the child, or raise "
            "RestartPolicy.intensity or shorten RestartPolicy.period"
        )
        log.error("%s", message, exc_info=failure)
        self._escalation = SupervisorEscalation(
            message,
            supervisor=self._name,
            child=child.name,
            restarts=count,
            period=policy.period,
            cause=failure,
        )
        self._closing = True
        reason = f"supervisor {self._name!r} is escalating: child {child.name!r} exceeded its restart budget"
        self._cancel_children(reason)
        self._nursery.cancel_scope.cancel(reason)


def _reason(cancelled: trio.Cancelled) -> str:
    """The reason a cancellation from outside the supervisor carries."""
    if cancelled.reason is not None:
        return cancelled.reason
    return f"cancelled ({cancelled.source})"


@asynccontextmanager
async def open_supervisor(
    name: str,
    *,
    policy: RestartPolicy = RestartPolicy(),
    shutdown_timeout: float = 5.0,
) -> AsyncIterator[Supervisor]:
    """Open a supervisor for the duration of an ``async with`` block.

    Leaving the block normally shuts the children down (:meth:`Supervisor.
    shutdown` with ``shutdown_timeout``). Leaving it with an exception cancels
    them and lets the exception through. An escalation cancels the block
    too, and raises SupervisorEscalation from the ``async with``.

    Exceptions come out unwrapped when there is just one (the children never
    raise into the nursery; failures are the supervisor's to handle).
    """
    supervisor: Supervisor | None = None
    group: BaseExceptionGroup | None = None
    try:
        async with trio.open_nursery() as nursery:
            supervisor = Supervisor(name, nursery, policy, shutdown_timeout)
            try:
                yield supervisor
            except BaseException as exc:
                supervisor._closing = True
                if isinstance(exc, trio.Cancelled):
                    supervisor._cancel_children(_reason(exc))
                else:
                    supervisor._cancel_children(f"supervisor {name!r} is exiting on {exc!r}")
                raise
            await supervisor.shutdown(f"supervisor {name!r} is closing")
    except BaseExceptionGroup as exc:
        group = exc
    assert supervisor is not None
    if supervisor._escalation is not None:
        raise supervisor._escalation from supervisor._escalation.cause
    if group is not None:
        raise group.exceptions[0] if len(group.exceptions) == 1 else group
