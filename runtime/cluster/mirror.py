"""The rollouts of the threads a node owns, copied into the cluster's
ThreadStore at the node's epoch, and copied out of it when a node
activates a thread it has no rollout of (a takeover after the owner died).

The thread actors keep writing their JSONL rollout as in one process (the
fast path, untouched); a follower per owned thread appends each new whole
line to the cluster store, fenced by the epoch of this node's claim, every
:data:`MIRROR_INTERVAL`. A refused append means another node took the
thread over: the follower stops and the owner stops serving the thread
(``on_fenced``). Stage 1 keeps the JSONL as the node's working copy; the
store is what survives the node.

The periodic copy leaves a window in which an item the rollout writer has
acknowledged is not in the store yet; so before a notification that
reports something completed leaves the node, the owner copies the
thread's new lines at once (:meth:`Mirror.sync`, called by the tunnels):
an item a client saw completed survives a ``kill -9`` of its owner. The
writer acknowledges an append only once its lines reached the OS, so they
are in the file by the time the notification is sent.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import trio

from ..persistence.rollout import SESSIONS_SUBDIR, decode_line, parse_timestamp, rollout_path, write_whole
from .ports import Fenced, ThreadListing, ThreadStore

log = logging.getLogger("trio_codex.cluster")

#: How often a follower looks for new rollout lines.
MIRROR_INTERVAL = 0.1


class LocalRollouts(Protocol):
    """What the mirror needs of the node's own store (``actors/store.py``'s
    LocalThreadStore)."""

    codex_home: Path | None

    async def read_thread(self, thread_id: str) -> Any: ...

    async def index_file(self, path: Path) -> None: ...


def _tail(path: str, offset: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read()


def _offset_after(path: str, lines: int) -> int:
    """The byte offset just after the first ``lines`` lines of the file."""
    offset = 0
    with open(path, "rb") as f:
        for _ in range(lines):
            line = f.readline()
            if not line.endswith(b"\n"):
                break
            offset += len(line)
    return offset


def _find_rollout(codex_home: Path, thread_id: str) -> str | None:
    found = next(iter((codex_home / SESSIONS_SUBDIR).rglob(f"rollout-*-{thread_id}.jsonl")), None)
    return str(found) if found is not None else None


def _materialize(codex_home: Path, thread_id: str, lines: list[bytes]) -> Path:
    head = decode_line(lines[0])
    created = parse_timestamp(head.timestamp) or 0
    path = rollout_path(codex_home, thread_id, created)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_whole(path, b"".join(line + b"\n" for line in lines))
    return path


class Mirror:
    def __init__(self, local: LocalRollouts, remote: ThreadStore, nursery: trio.Nursery,
                 on_fenced: Callable[[str], None]) -> None:
        self.local = local
        self.remote = remote
        self.nursery = nursery
        self.on_fenced = on_fenced
        self.followers: dict[str, _Follower] = {}

    async def activate(self, thread_id: str, epoch: int) -> None:
        """Raise the thread's epoch in the store (fencing out its previous
        owner), make sure the node has its rollout, and follow it."""
        stored = await self.remote.activate(thread_id, epoch) - 1
        meta = await self.local.read_thread(thread_id)
        path = meta.rollout_path if meta is not None and meta.rollout_path else None
        if path is not None and not await trio.to_thread.run_sync(os.path.exists, path):
            path = None
        offset = 0
        if path is None and stored and self.local.codex_home is not None:
            lines = await self.remote.load_history(thread_id)
            made = await trio.to_thread.run_sync(_materialize, self.local.codex_home, thread_id, lines)
            await self.local.index_file(made)
            path, offset = str(made), (await trio.to_thread.run_sync(os.stat, made)).st_size
            log.info("cluster: thread %s: %d items copied from the store", thread_id, len(lines))
        elif path is not None:
            offset = await trio.to_thread.run_sync(_offset_after, path, stored)
        follower = self.followers[thread_id] = _Follower(thread_id, epoch, path, offset)
        self.nursery.start_soon(self._follow, follower)

    async def _follow(self, follower: _Follower) -> None:
        while True:
            async with follower.lock:
                if not await self._pass(follower, listing=True):
                    return
            await trio.sleep(MIRROR_INTERVAL)

    async def sync(self, thread_id: str, *, listing: bool = False) -> None:
        """Copy the thread's new lines now (before its client is told an
        item completed; with ``listing``, its listing row too: a hand-off);
        nothing when this node does not follow it."""
        follower = self.followers.get(thread_id)
        if follower is None:
            return
        async with follower.lock:
            await self._locate(follower)
            # Until the store takes the lines (it may be failing over); the
            # caller bounds the wait.
            while await self._pass(follower, listing) and follower.failing:
                await trio.sleep(MIRROR_INTERVAL)

    def stop(self, thread_id: str) -> None:
        """Stop following a thread this node handed off."""
        follower = self.followers.pop(thread_id, None)
        if follower is not None:
            follower.fenced = True  # its loop ends at its next pass

    async def _locate(self, follower: _Follower) -> None:
        """Look for a rollout not located yet on disk (the store actor may
        not have indexed it yet, or be gone)."""
        if follower.path is None and self.local.codex_home is not None:
            follower.path = await trio.to_thread.run_sync(_find_rollout, self.local.codex_home,
                                                          follower.thread_id)

    async def flush(self) -> None:
        """One last pass for every thread followed (a node shutting down:
        its store actor may be gone, so a rollout not located yet is looked
        for on disk, and the listing rows wait for the next owner)."""
        for follower in list(self.followers.values()):
            async with follower.lock:
                await self._locate(follower)
                if follower.path is not None:
                    await self._pass(follower)

    async def _pass(self, f: _Follower, listing: bool = False) -> bool:
        """Copy the rollout's new whole lines; False once fenced. With
        ``listing``, also put the thread's row in the cluster's listing when
        lines were copied since it was last put (a sync leaves that to the
        next periodic pass: it holds a client's notification back)."""
        if f.fenced:
            return False
        if f.path is None:
            meta = await self.local.read_thread(f.thread_id)
            f.path = meta.rollout_path if meta is not None and meta.rollout_path else None
            if f.path is None:
                return True
        try:
            # Nothing new (most periodic passes, and the second sync of one
            # completion: the event tail's and a connection's): one stat,
            # no thread hop.
            new = os.stat(f.path).st_size != f.offset
            data = await trio.to_thread.run_sync(_tail, f.path, f.offset) if new else b""
        except OSError:
            return True  # moved (archived) or not written yet
        whole = data[:data.rfind(b"\n") + 1]
        if whole:
            try:
                await self.remote.append_items(f.thread_id, f.epoch, whole.splitlines())
            except Fenced as exc:
                log.error("cluster: FENCED: %s", exc)
                f.fenced = True
                self.followers.pop(f.thread_id, None)
                self.on_fenced(f.thread_id)
                return False
            except Exception as exc:  # the store is down or failing over: the next pass tries again
                log.warning("cluster: thread %s: copying %d bytes to the store failed: %s", f.thread_id,
                            len(whole), exc)
                f.failing = True
                return True
            f.failing = False
            f.offset += len(whole)
            f.unlisted = True
        if listing and f.unlisted and isinstance(self.remote, ThreadListing):
            meta = await self.local.read_thread(f.thread_id)
            if meta is not None:
                try:
                    await self.remote.put_listing(meta)
                    f.unlisted = False
                except Exception as exc:  # as above: the next pass tries again
                    log.warning("cluster: thread %s: its listing row was not stored: %s", f.thread_id, exc)
        return True


class _Follower:
    __slots__ = ("thread_id", "epoch", "path", "offset", "fenced", "lock", "unlisted", "failing")

    def __init__(self, thread_id: str, epoch: int, path: str | None, offset: int) -> None:
        self.thread_id = thread_id
        self.epoch = epoch
        self.path = path
        self.offset = offset
        self.fenced = False
        #: Lines were copied since the thread's listing row was last put.
        self.unlisted = False
        #: The last copy failed (the store is down).
        self.failing = False
        #: One copy at a time: the periodic one, a sync, the last flush.
        self.lock = trio.Lock()
