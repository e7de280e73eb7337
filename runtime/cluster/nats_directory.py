"""The Directory in JetStream KV (scale-out.md §4.3).

Bucket ``codex_nodes`` holds node leases: each node puts its key every
``ttl / 4`` and the bucket's TTL removes a node that stopped. Bucket
``codex_threads`` maps a thread id to its owner node; claims are
compare-and-set (``create``, or ``update`` at the revision read, once the
recorded owner's lease is gone), and the revision is the epoch.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import nats.errors
import nats.js.errors
import trio

from .nats_bus import NatsBus
from .ports import Claim

log = logging.getLogger("trio_codex.cluster")

NODES, THREADS = "codex_nodes", "codex_threads"
#: A node that has not renewed its lease for this long is gone.
LEASE_TTL = 5.0


class NatsDirectory:
    def __init__(self, bus: NatsBus, threads: Any, nodes: Any) -> None:
        self.bus = bus
        self.node = bus.node
        self.threads = threads
        self.nodes = nodes

    async def claim(self, thread_id: str) -> Claim:
        while True:
            try:
                epoch = await self.bus.call(self.threads.create, thread_id, self.node.encode())
                return Claim(thread_id, self.node, epoch)
            except nats.js.errors.KeyWrongLastSequenceError:
                pass
            held = await self.lookup(thread_id)
            if held is None:
                continue
            if held.node == self.node or await self.alive(held.node):
                return held
            try:
                epoch = await self.bus.call(self.threads.update, thread_id, self.node.encode(), last=held.epoch)
                log.info("cluster: thread %s taken over from %s (its lease is gone)", thread_id, held.node)
                return Claim(thread_id, self.node, epoch)
            except nats.js.errors.KeyWrongLastSequenceError:
                continue  # another node took it first: read again

    async def lookup(self, thread_id: str) -> Claim | None:
        try:
            entry = await self.bus.call(self.threads.get, thread_id)
        except nats.js.errors.KeyNotFoundError:
            return None
        return Claim(thread_id, entry.value.decode(), entry.revision)

    async def release(self, thread_id: str, epoch: int) -> bool:
        try:
            await self.bus.call(self.threads.delete, thread_id, last=epoch)
        except nats.js.errors.KeyWrongLastSequenceError:
            return False
        return True

    async def alive(self, node: str) -> bool:
        try:
            await self.bus.call(self.nodes.get, node)
        except nats.js.errors.KeyNotFoundError:
            return False
        return True

    async def _renew(self, ttl: float, *, task_status: trio.TaskStatus[None]) -> None:
        await self.bus.call(self.nodes.put, self.node, b"{}")
        task_status.started()
        while True:
            await trio.sleep(ttl / 4)
            try:
                await self.bus.call(self.nodes.put, self.node, b"{}")
            except nats.errors.Error as exc:
                log.warning("cluster: the lease of node %s was not renewed: %s", self.node, exc)


@asynccontextmanager
async def open_nats_directory(bus: NatsBus, *, lease_ttl: float = LEASE_TTL) -> AsyncIterator[NatsDirectory]:
    """Make the buckets if need be, hold this node's lease while open, and
    drop it on exit (so its threads can be claimed at once)."""
    js = bus.nc.jetstream()
    threads = await bus.call(js.create_key_value, bucket=THREADS, history=1)
    nodes = await bus.call(js.create_key_value, bucket=NODES, history=1, ttl=lease_ttl)
    directory = NatsDirectory(bus, threads, nodes)
    async with trio.open_nursery() as nursery:
        await nursery.start(directory._renew, lease_ttl)
        try:
            yield directory
        finally:
            nursery.cancel_scope.cancel()
            with trio.move_on_after(2, shield=True):
                try:
                    await bus.call(nodes.delete, bus.node)
                except nats.errors.Error:
                    pass
