"""The bug barrier: a bug met while handling one message costs that
message, never the actor that handles it (nor, through the host's nursery,
the whole server).

Each actor loop handles every message inside ``async with contained(msg,
log, actor)``; whatever the handler raises stops there:

- a client request's (its ``reply`` is a :class:`~.messages.Reply`): a
  :class:`~..runtime.protocol.jsonrpc.JsonRpcError` is its answer; anything
  else is answered -32603 and logged with the connection and request id,
  with the traceback;
- an ask's (its ``reply`` is a :class:`~..runtime.kernel.ask.ReplySlot`): the slot
  fails with it, so the asker raises now rather than at its timeout;
- any other message's: logged and dropped.

Cancellation is not a bug and goes through. The barrier is for bugs;
expected failures keep their own, more precise, answers in the handlers.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ...runtime.kernel.ask import ReplySlot
from ...runtime.kernel.errors import out_of_descriptors
from ...runtime.protocol.jsonrpc import (
    ErrorObject,
    ErrorResponse,
    JsonRpcError,
    RequestId,
    internal_error,
    overloaded,
)
from .fanout import deliver
from . import Reply


def innermost(exc: BaseException) -> BaseException:
    """``exc`` out of the exception groups of nurseries it crossed, when it
    is the only one in them: what to name in a message."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def bug_error(exc: Exception, what: str) -> ErrorObject:
    """The -32603 answer to a request whose handler hit ``exc``; -32001
    (overloaded: retry later) when it is the process out of file
    descriptors, which passes."""
    if out_of_descriptors(exc):
        return overloaded().error
    return internal_error(f"internal error in {what}: {innermost(exc)!r}; the server goes on, but this "
                          "is a bug: please report it").error


def log_bug(log: logging.Logger, exc: Exception, what: str, conn_id: int, request_id: RequestId) -> None:
    if out_of_descriptors(exc):
        log.warning("%s: out of file descriptors on request %r of connection %d; answered -32001", what,
                    request_id, conn_id)
        return
    log.error("%s failed on request %r of connection %d; answered -32603", what, request_id, conn_id,
              exc_info=exc)


@asynccontextmanager
async def contained(msg: Any, log: logging.Logger, actor: str) -> AsyncIterator[None]:
    """Handle ``msg`` in the block; see the module docstring."""
    try:
        yield
    except Exception as exc:
        reply = getattr(msg, "reply", None)
        what = f"{actor} ({type(msg).__name__})"
        if isinstance(reply, Reply):
            if isinstance(exc, JsonRpcError):
                error = exc.error
            else:
                log_bug(log, exc, what, reply.conn.id, reply.request_id)
                error = bug_error(exc, what)
            await deliver((reply.conn,), ErrorResponse(reply.request_id, error))
        elif isinstance(reply, ReplySlot):
            log.error("%s failed; the asker gets the error", what, exc_info=exc)
            reply.fail(exc)
        else:
            log.error("%s failed; the message is dropped", what, exc_info=exc)
