"""The runtime's one exception tree.

Every failure the kernel reports derives from :class:`RuntimeFailure`, so a
caller can catch the whole family in one clause and still match on the exact
kind. Messages say who failed, what was being done, and what to do about it.

Rules:
- The kernel never lets a trio channel exception (``BrokenResourceError``,
  ``ClosedResourceError``) escape its API: they become :class:`MailboxClosed`
  at the mailbox boundary.
- Exceptions that carry structured facts (``actor``, ``cause``, ...) expose
  them as attributes; the message is for humans and logs.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = [
    "McpCallFailed",
    "ActorCrashed",
    "descriptor_error",
    "out_of_descriptors",
    "ActorGone",
    "AskTimeout",
    "MailboxClosed",
    "RuntimeFailure",
    "ShutdownTimeout",
    "StorageFailure",
    "SupervisorEscalation",
    "unwrapped",
]


@contextmanager
def unwrapped() -> Iterator[None]:
    """Around a nursery that a public ``async with`` opens for its own
    tasks: an exception from the caller's block (or one task) comes out as
    itself, not as a group of one, as the supervisor's do."""
    group: BaseExceptionGroup | None = None
    try:
        yield
    except BaseExceptionGroup as exc:
        group = exc
    if group is not None:
        raise group.exceptions[0] if len(group.exceptions) == 1 else group


class RuntimeFailure(Exception):
    """Base of every failure reported by the actor runtime."""


class MailboxClosed(RuntimeFailure):
    """A send could not be delivered because the mailbox's receiver is gone
    (its inbox was closed), or because the sending handle itself was closed."""


class AskTimeout(RuntimeFailure):
    """An :func:`~.ask.ask` got no reply within its timeout."""


class ActorGone(RuntimeFailure):
    """An :func:`~.ask.ask` found the target actor's mailbox closed: the actor
    stopped or crashed before the request could be delivered."""


class ActorCrashed(RuntimeFailure):
    """An actor failed: ``actor`` names it, ``cause`` is what it raised
    (``None`` if it did not raise, e.g. it returned before it was ready)."""

    def __init__(self, message: str, *, actor: str, cause: BaseException | None) -> None:
        super().__init__(message)
        self.actor = actor
        self.cause = cause


class SupervisorEscalation(RuntimeFailure):
    """A supervisor gave up: ``child`` failed more than its restart budget
    allows (``restarts`` failures within ``period`` seconds). The supervisor
    cancelled all its children and raised this out of itself; ``cause`` is
    the child's last failure (also chained as ``__cause__``)."""

    def __init__(
        self,
        message: str,
        *,
        supervisor: str,
        child: str,
        restarts: int,
        period: float,
        cause: BaseException | None,
    ) -> None:
        super().__init__(message)
        self.supervisor = supervisor
        self.child = child
        self.restarts = restarts
        self.period = period
        self.cause = cause


class ShutdownTimeout(RuntimeFailure):
    """Children were told to stop but had not finished by the shutdown
    deadline; ``children`` names them.

    trio never abandons a task, so the enclosing nursery still waits for
    them; this exception reports the overrun at the deadline.
    """

    def __init__(self, message: str, *, children: tuple[str, ...]) -> None:
        super().__init__(message)
        self.children = children


class StorageFailure(RuntimeFailure):
    """A write to the disk failed (the disk is full, the file system is
    read-only, a file-size limit was hit, ...): ``path`` names the file,
    ``cause`` is the ``OSError`` (or the database error). What was being
    written is not on disk, and nothing half-written is left behind."""

    def __init__(self, message: str, *, path: str, cause: Exception) -> None:
        super().__init__(message)
        self.path = path
        self.cause = cause

    @classmethod
    def writing(cls, path: str, cause: Exception, advice: str = "") -> StorageFailure:
        """"cannot write PATH: No space left on device (os error 28)",
        worded as the original words an OS error, then ``advice``."""
        errno = getattr(cause, "errno", None)
        reason = f"{getattr(cause, 'strerror', None) or cause} (os error {errno})" if errno else str(cause)
        return cls(f"cannot write {path}: {reason}{advice}", path=path, cause=cause)


def out_of_descriptors(exc: BaseException) -> bool:
    """Whether ``exc`` comes from the process running out of file
    descriptors (EMFILE, ENFILE), anywhere in its causes or groups: a
    passing overload, answered as such (-32001), never a crash."""
    return descriptor_error(exc) is not None


def descriptor_error(exc: BaseException) -> OSError | None:
    """The EMFILE or ENFILE ``OSError`` anywhere in ``exc``'s causes or
    groups (libraries wrap it: httpx three times, trio's connect in a
    group under an errno-less ``OSError``), or None."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.EMFILE, errno.ENFILE):
            return e
        if isinstance(e, BaseExceptionGroup):
            stack.extend(e.exceptions)
        stack += [e.__cause__, e.__context__]
    return None


class McpCallFailed(RuntimeFailure):
    """An MCP request did not produce a result: the server failed to start,
    the connection closed, the call timed out, or the server answered with a
    JSON-RPC error (``code``/``data`` then hold it). The message is what the
    model or the client is shown."""

    def __init__(self, message: str, *, code: int | None = None, data: object = None) -> None:
        super().__init__(message)
        self.code = code
        self.data = data
