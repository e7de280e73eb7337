"""The approvals actor: every server request that waits on a client.

It numbers server requests from one server-wide counter starting at 0 (the
client request ids of each connection are a separate space), sends each one
to every subscriber of its thread with the same id, and resolves it with the
first answer; a late or duplicate answer is ignored, a malformed one counts
as ``decline`` (and is logged). Every subscriber then gets
``serverRequest/resolved``, also when a request is cleared because its turn
ended or was interrupted. A connection that joins the thread later
(``thread/resume``) is sent the requests still pending, with their ids.

Rules:
- It never waits on another actor: deliveries are best-effort per
  connection (a connection that is gone simply will not answer).
- Its state is the table of pending requests, nothing else; the session
  cache and the thread's ``waitingOnApproval`` flag belong to the thread.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

import msgspec
import trio

from ..runtime.kernel.mailbox import Inbox, Mailbox, open_mailbox
from ..runtime.protocol import codec
from ..runtime.protocol.jsonrpc import ServerRequest
from ..runtime.protocol.v2.approval import ApprovalResponse, ElicitationResponse, ServerRequestResolved
from .analytics import facts
from .analytics.facts import DISABLED, Recorder
from .messages.barrier import contained
from .messages.fanout import EventNumbers, notification, post
from .messages import (
    ApprovalAnswer,
    ClearApprovals,
    ClientAnswer,
    ConnectionRef,
    ReplayApprovals,
    RequestApproval,
    ApprovalsInbox,
)

log = logging.getLogger("trio_codex.approvals")

#: Requests and answers waiting for the approvals actor. Answers are tiny and
#: rare (one per human decision), so this is never the bottleneck.
APPROVALS_CAPACITY = 1024


class _Pending(msgspec.Struct):
    thread_id: str
    turn_id: str
    conns: tuple[ConnectionRef, ...]
    reply: Any
    request: ServerRequest


async def run_approvals(recorder: Recorder = DISABLED, box: tuple[Mailbox, Inbox] | None = None,
                        numbers: EventNumbers | None = None, *,
                        task_status: trio.TaskStatus[Mailbox[ApprovalsInbox]] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``box`` (a mailbox the parent opened, so that a restarted actor
    serves the same one), or a mailbox of its own."""
    mailbox, inbox = box or open_mailbox(APPROVALS_CAPACITY, name="approvals")
    # A request and its resolution are events of their thread: numbered.
    numbers = numbers or EventNumbers()
    ids = itertools.count()
    pending: dict[int, _Pending] = {}
    task_status.started(mailbox)

    def resolve(request_id: int) -> _Pending:
        """Tell every subscriber the request is settled; forget it."""
        p = pending.pop(request_id)
        note = notification("serverRequest/resolved", ServerRequestResolved(p.thread_id, request_id))
        numbers.stamp(p.thread_id, note)
        post(p.conns, note)
        return p

    async for msg in inbox:
        async with contained(msg, log, "the approvals actor"):
            match msg:
                case RequestApproval(thread_id=tid, turn_id=uid, method=method, params=params, conns=conns, reply=reply):
                    rid = next(ids)
                    request = ServerRequest(rid, method, params)
                    pending[rid] = _Pending(tid, uid, conns, reply, request)
                    numbers.stamp(tid, request)
                    post(conns, request)
                    # One fact per logical request, however many got it.
                    recorder.record(facts.ServerRequest(
                        request_id=rid, method=method, params=params, thread_id=tid, turn_id=uid,
                        item_id=getattr(params, "item_id", ""), sent_to=tuple(c.id for c in conns)))
                case ClientAnswer(conn_id=conn_id, request_id=answered, result=result, error=error):
                    if not isinstance(answered, int) or answered not in pending:
                        log.info("connection %d answered server request %r, which is not pending; ignored",
                                 conn_id, answered)
                        continue
                    rid = answered
                    decision = _decision(conn_id, rid, result, error, pending[rid].request.method)
                    recorder.record(facts.ServerResponse(request_id=rid, answered_by=conn_id, result=result, error=error))
                    resolve(rid).reply.set(ApprovalAnswer(rid, decision, conn_id, _content(result, decision)))
                case ReplayApprovals(thread_id=tid, conn=conn):
                    for rid, p in pending.items():
                        if p.thread_id == tid and all(c.id != conn.id for c in p.conns):
                            p.conns = (*p.conns, conn)
                            post((conn,), p.request)
                            recorder.record(facts.ServerRequest(
                                request_id=rid, method=p.request.method, params=p.request.params, thread_id=tid,
                                turn_id=p.turn_id, item_id=getattr(p.request.params, "item_id", ""),
                                sent_to=(conn.id,), replayed=True))
                case ClearApprovals(thread_id=tid, turn_id=uid):
                    for rid in [r for r, p in pending.items() if p.thread_id == tid and p.turn_id == uid]:
                        recorder.record(facts.ServerRequestAborted(request_id=rid))
                        resolve(rid)


def _content(result: msgspec.Raw | None, decision: str | dict) -> Any:
    """An accepted elicitation's form content (None for any other answer)."""
    if decision != "accept" or result is None:
        return None
    try:
        return codec.decode_result(result, ElicitationResponse).content
    except msgspec.ValidationError:
        return None


def _decision(conn_id: int, rid: int, result: msgspec.Raw | None, error: Any, method: str) -> str | dict:
    """The answer as a decision; an elicitation's ``action`` reads as the
    decision of the same name."""
    if error is None:
        try:
            if method == "mcpServer/elicitation/request":
                return codec.decode_result(result, ElicitationResponse).action
            return codec.decode_result(result, ApprovalResponse).decision
        except msgspec.ValidationError as exc:
            reason = f"malformed answer ({exc})"
    else:
        reason = f"error answer ({error.code}: {error.message})"
    log.warning("connection %d: %s to server request %d; treated as decline", conn_id, reason, rid)
    return "decline"
