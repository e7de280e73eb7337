"""The connection's write side: it drains the outbox as messages come into
a backlog counted in bytes, drops the notifications its client opted out
of, merges runs of deltas when a backlog built up (no text is lost; fewer,
larger messages), encodes and writes each batch with one call (functions of
:class:`~.session.Connection`, bound as its methods, and the backlog)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec
import trio

from ...runtime.kernel.mailbox import Inbox
from ...runtime.protocol import codec
from ...runtime.protocol.jsonrpc import (
    ErrorResponse,
    Notification,
    Outbound,
    Response,
)
from ...runtime.kernel.stream import TransportClosed, WriteStalled
from ..analytics import facts

if TYPE_CHECKING:
    from .session import Connection

#: Most messages encoded into one write.
WRITE_BATCH = 1024
#: A backlog this long is worth merging deltas for.
COALESCE_BACKLOG = 64

log = logging.getLogger("trio_codex.connection")

#: Websocket close codes (RFC 6455): a normal close; a client closed for
#: not reading (policy violation); a connection ended by a bug of ours.
NORMAL_CLOSE = 1000
GOING_AWAY_CLOSE_CODE = 1001
SLOW_CLIENT_CLOSE_CODE = 1008
INTERNAL_ERROR_CLOSE_CODE = 1011
#: Queued behind the last message owed to a closing client.
CLOSE = object()

_DELTA_METHODS = frozenset({"item/agentMessage/delta", "item/reasoning/summaryTextDelta",
                            "item/reasoning/textDelta", "item/commandExecution/outputDelta"})


def _record_answers(self: Connection, batch: list[Outbound]) -> None:
    """Analytics facts for the answers going out (the outbound path)."""
    for msg in batch:
        if type(msg) is Response and msg.id in self.unanswered:
            method, thread_id = self.unanswered.pop(msg.id)
            self.recorder.record(facts.ClientResponse(
                connection_id=self.id, request_id=msg.id, method=method,
                thread_id=thread_id or getattr(getattr(msg.result, "thread", None), "id", None),
                turn_id=_turn_id(msg.result)))
        elif type(msg) is ErrorResponse and msg.id in self.unanswered:
            method, _ = self.unanswered.pop(msg.id)
            self.recorder.record(facts.ErrorResponse(
                connection_id=self.id, request_id=msg.id, method=method,
                code=msg.error.code, message=msg.error.message))

async def _write_loop(self: Connection, inbox: Inbox[Outbound], scope: trio.CancelScope) -> None:
    """Move what is queued for the client from the outbox into the
    backlog (see :class:`_Backlog`) and write the backlog out, both at
    once: the outbox never stays full while the client is within its
    byte budget, so no sender waits on a slow client."""
    backlog = _Backlog()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._drain, inbox, backlog)
            await self._write_backlog(backlog)
            nursery.cancel_scope.cancel()
    except TransportClosed as exc:
        # A write that stalled is the slow-client policy at work: say so.
        log.log(logging.WARNING if isinstance(exc, WriteStalled) else logging.INFO,
                "connection %d: closed while writing: %s", self.id, exc)
        scope.cancel(reason=f"connection {self.id}: the peer is gone")

async def _drain(self: Connection, inbox: Inbox[Outbound], backlog: _Backlog) -> None:
    budget = self.limits.outbox_byte_budget
    while True:
        batch = await inbox.receive_batch(WRITE_BATCH)
        closing = next((i for i, m in enumerate(batch) if m is CLOSE), None)
        if closing is not None:
            batch = batch[:closing]
        if self.opt_out:
            batch = [m for m in batch if type(m) is not Notification or m.method not in self.opt_out]
        if self.unanswered:
            self._record_answers(batch)
        self.pending -= sum(1 for m in batch if type(m) is Response or type(m) is ErrorResponse)
        backlog.add(batch)
        if closing is not None:
            backlog.close()
            return
        if backlog.size > budget:
            if self.can_disconnect:
                self._close(f"{backlog.size} bytes were queued for the client, over its budget of {budget} "
                            f"(TRIO_CODEX_OUTBOX_BYTE_BUDGET): it does not read fast enough",
                            SLOW_CLIENT_CLOSE_CODE)
                backlog.close()
                # Its senders learn at once that it is gone, rather than
                # waiting for room while it closes.
                inbox.close()
                return
            # Stdio cannot be closed: hold its senders back instead.
            await backlog.shrunk(budget)

async def _write_backlog(self: Connection, backlog: _Backlog) -> None:
    encode = codec.encode
    # A client closed for being slow gets none of its backlog.
    while (taken := await backlog.take()) is not None and not self._drop_backlog:
        batch, size = taken
        if len(batch) > COALESCE_BACKLOG:
            batch = coalesce_deltas(batch)
        frames = [m if isinstance(m, bytes) else encode(m) for m in batch]
        if self.legacy_error_info:
            frames = [_downgrade_error_info(f) for f in frames]
        await self.stream.send_frames(frames)
        backlog.sent(size)
    self._written.set()


class _Backlog:
    """What the writer has yet to write, with its size in bytes (what is
    being written included): messages are encoded as they come in, except
    deltas, kept as messages (sized by their text) so that a run of them
    can still be merged into one."""

    #: What a delta notification costs beyond its text, roughly.
    DELTA_OVERHEAD = 160

    def __init__(self) -> None:
        self.items: list[Outbound | bytes] = []
        self.size = 0
        self.closed = False
        self._changed = trio.Event()

    def add(self, batch: list[Outbound]) -> None:
        encode = codec.encode
        for msg in batch:
            if (delta := _as_delta(msg)) is not None:
                self.items.append(delta)
                self.size += len(delta.params.delta) + self.DELTA_OVERHEAD
            else:
                data = encode(msg)
                self.items.append(data)
                self.size += len(data)
        self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    async def take(self) -> tuple[list[Outbound | bytes], int] | None:
        """All that is queued and its size (waiting for something), or None
        once closed and empty. The size counts until :meth:`sent`."""
        while not self.items:
            if self.closed:
                return None
            await self._changed.wait()
        items, self.items = self.items, []
        return items, self.size  # the previous batch is sent: all of it is this one

    def sent(self, size: int) -> None:
        self.size -= size
        self._wake()

    async def shrunk(self, budget: int) -> None:
        while self.size > budget:
            await self._changed.wait()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()


def _downgrade_error_info(frame: bytes) -> bytes:
    if b'"bioPolicy"' not in frame:
        return frame
    return frame.replace(b'"codexErrorInfo":"bioPolicy"', b'"codexErrorInfo":"other"')


def _turn_id(result: Any) -> str | None:
    turn = getattr(result, "turn", None)
    return getattr(turn, "id", None)


def coalesce_deltas(batch: Sequence[Outbound | bytes]) -> list[Outbound | bytes]:
    """Merge runs of delta notifications for the same stream (method, item,
    index) into one each. Lossless: the merged delta carries all the text, in
    order. Linear: each run is joined once."""
    out: list[Outbound | bytes] = []
    run: list[Notification] = []  # the deltas of the stream out[-1] begins
    key: tuple | None = None

    def close_run() -> None:
        if len(run) > 1:
            first = run[0]
            text = "".join(n.params.delta for n in run)
            out[-1] = Notification(first.method, msgspec.structs.replace(first.params, delta=text), first.emitted_at_ms)
        run.clear()

    for msg in batch:
        delta = _as_delta(msg)
        k = _stream_key(delta) if delta is not None else None
        if delta is not None and k == key:
            run.append(delta)
            continue
        close_run()
        out.append(msg)
        key = k
        if delta is not None:
            run.append(delta)
    close_run()
    return out


def _as_delta(msg: Outbound | bytes) -> Notification | None:
    """``msg`` if it is a delta notification (one a run can merge), else None."""
    return msg if type(msg) is Notification and msg.method in _DELTA_METHODS else None


def _stream_key(delta: Notification) -> tuple:
    p = delta.params
    return (delta.method, p.item_id, p.turn_id, getattr(p, "summary_index", None), getattr(p, "content_index", None))
