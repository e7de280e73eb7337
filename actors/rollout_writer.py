"""One rollout writer per thread: the only code that writes the thread's
rollout file (``$CODEX_HOME/sessions/YYYY/MM/DD/rollout-…-<id>.jsonl``, the
original's format, see :mod:`trio_codex.runtime.persistence.rollout`).

Rules:
- The file is created lazily, by the first append (the original creates it
  at the first turn), with the ``session_meta`` line the thread gives.
- An append is acknowledged only once its lines reached the operating
  system, so a turn that waits for the ack before sending ``item/completed``
  loses nothing that was reported completed, even to ``kill -9``.
- ``fsync`` per the policy: ``"turn"`` (default) at every turn end,
  ``"always"`` with every append, ``"never"``; fsync runs off the trio
  thread.
- An ephemeral thread has no writer at all.

When the disk fails us (full, read-only, a file-size limit, an I/O error):
- An append is all or nothing: the file is cut back to the end of the last
  whole append, so no torn line is left behind (a torn line a killed
  process left is cut off before the first append too).
- The writer then refuses every append, each waiting sender getting a
  :class:`~trio_codex.runtime.kernel.errors.StorageFailure` that says which file
  and why (so the turn fails with it), until the next turn starts: that
  append tries again, behind the end line of the turn that failed, so the
  file stays a sequence of whole turns. The writer itself never crashes on
  a disk error.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal

import trio

from ..runtime.kernel.ask import ReplySlot, ask
from ..runtime.kernel.clock import now_ms
from ..runtime.kernel.errors import StorageFailure
from ..runtime.kernel.mailbox import Mailbox, open_mailbox
from ..runtime.persistence.rollout import Payload, SessionMeta, TurnAbortedEvent, TurnCompleteEvent, TurnStartedEvent, encode_line
from .messages import AppendRollout

log = logging.getLogger("trio_codex.rollout_writer")

FsyncPolicy = Literal["always", "turn", "never"]

#: Appends waiting for the writer; a turn waits for each ack anyway.
WRITER_CAPACITY = 64
#: How long an append may take to reach the OS before its sender gives up.
PERSIST_TIMEOUT = 30.0
#: How far back a torn tail is looked for, in chunks of this size.
_TAIL_CHUNK = 64 * 1024


async def append(writer: Mailbox[AppendRollout] | None, *payloads: Payload, wait: bool = True,
                 turn_end: bool = False) -> None:
    """Append to a rollout through its writer (None: the thread writes
    none); with ``wait``, return once the lines reached the OS.

    Raises:
      StorageFailure: (with ``wait``) the lines could not be written.
    """
    if writer is None:
        return
    if wait:
        await ask(writer, lambda slot: AppendRollout(payloads, slot, turn_end), timeout=PERSIST_TIMEOUT)
    else:
        await writer.send(AppendRollout(payloads, None, turn_end))


async def run_rollout_writer(path: Path, meta: SessionMeta, next_ordinal: int = 0, fsync: FsyncPolicy = "turn",
                             *,
                             task_status: trio.TaskStatus[Mailbox[AppendRollout]] = trio.TASK_STATUS_IGNORED) -> None:
    """``meta`` opens a new file; a file that exists already (a resumed
    thread) is appended to, its lines numbered on from ``next_ordinal``."""
    mailbox, inbox = open_mailbox(WRITER_CAPACITY, name=f"rollout:{path.name}")
    task_status.started(mailbox)
    writer = _Writer(path, meta, next_ordinal, fsync)
    try:
        msg: AppendRollout
        async for msg in inbox:
            await writer.handle(msg)
    finally:
        writer.close()


class _Writer:
    def __init__(self, path: Path, meta: SessionMeta, ordinal: int, fsync: FsyncPolicy) -> None:
        self.path = path
        self.meta = meta
        self.ordinal = ordinal
        self.fsync = fsync
        self.fd: int | None = None
        #: The file's size after the last whole append: where a failed
        #: append is cut back to.
        self.good_size = 0
        #: Bytes past ``good_size`` that could not be cut off yet.
        self.dirty = False
        #: Why appends are refused; None while the disk works.
        self.broken: StorageFailure | None = None
        #: The turn whose start is on disk and whose end is not.
        self.open_turn: str | None = None
        #: That turn's end, refused while broken: written first on recovery.
        self.pending_end: tuple[Any, ...] = ()

    async def handle(self, msg: AppendRollout) -> None:
        payloads = msg.payloads
        if self.broken is not None:
            if not any(isinstance(p, TurnStartedEvent) for p in payloads):
                self._keep_end(msg)
                _fail(msg.reply, self.broken)
                return
            payloads = (*self.pending_end, *payloads)
        try:
            await self._write(payloads, sync=self.fsync == "always" or (self.fsync == "turn" and msg.turn_end))
        except OSError as exc:
            failure = StorageFailure.writing(
                f"the thread's rollout {self.path}", exc, "; nothing of it was kept. Free some disk space (or "
                "make CODEX_HOME writable), then start a new turn")
            if self.broken is None:
                log.error("%s", failure)
            self.broken = failure
            self._keep_end(msg)
            _fail(msg.reply, failure)
            return
        if self.broken is not None:
            log.warning("rollout %s: writing again", self.path)
            self.broken, self.pending_end = None, ()
        for p in payloads:
            if isinstance(p, TurnStartedEvent):
                self.open_turn = p.turn_id
            elif isinstance(p, (TurnCompleteEvent, TurnAbortedEvent)):
                self.open_turn = None
        if msg.reply is not None:
            msg.reply.set(str(self.path))

    def _keep_end(self, msg: AppendRollout) -> None:
        """Keep a refused turn end for the recovery, if it ends the turn
        whose start is on disk (a turn whose start was refused too has no
        business ending in the file)."""
        if msg.turn_end and not self.pending_end and self.open_turn is not None and any(
                isinstance(p, (TurnCompleteEvent, TurnAbortedEvent)) and p.turn_id == self.open_turn
                for p in msg.payloads):
            self.pending_end = msg.payloads

    async def _write(self, payloads: tuple[Any, ...], *, sync: bool) -> None:
        """Append whole lines or nothing (raises ``OSError``)."""
        fd = self.fd if self.fd is not None else self._open()
        if self.dirty:
            os.ftruncate(fd, self.good_size)
            self.dirty = False
        if self.good_size == 0:
            payloads = (self.meta, *payloads)
        ms = now_ms()
        ordinal = self.ordinal
        lines = []
        for payload in payloads:
            lines.append(encode_line(payload, timestamp_ms=ms, ordinal=ordinal))
            ordinal += 1
        data = b"".join(lines)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if sync:
                await trio.to_thread.run_sync(os.fsync, fd)
        except OSError:
            self._cut_back(fd)
            raise
        self.good_size += len(data)
        self.ordinal = ordinal

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            self.good_size = _whole_lines_end(fd, size)
            if self.good_size < size:
                log.warning("rollout %s: cutting off a torn last line (%d bytes) a crash left",
                            self.path, size - self.good_size)
                os.ftruncate(fd, self.good_size)
        except OSError:
            os.close(fd)
            raise
        self.fd = fd
        return fd

    def _cut_back(self, fd: int) -> None:
        try:
            os.ftruncate(fd, self.good_size)
        except OSError as exc:
            self.dirty = True
            log.error("rollout %s: cannot cut back a failed append (%s); will retry before the next one",
                      self.path, exc)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _whole_lines_end(fd: int, size: int) -> int:
    """The end of the file's last whole line (0 if it has none)."""
    end = size
    while end > 0:
        start = max(0, end - _TAIL_CHUNK)
        chunk = os.pread(fd, end - start, start)
        if end == size and chunk.endswith(b"\n"):
            return size
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            return start + cut + 1
        end = start
    return 0


def _fail(reply: ReplySlot | None, failure: StorageFailure) -> None:
    if reply is not None:
        reply.fail(failure)
