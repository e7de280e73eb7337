"""One node of a cluster: the Bus and Directory on NATS, the ThreadStore on
PostgreSQL. The only module that imports nats-py and psycopg (through
:mod:`.nats_bus`, :mod:`.nats_directory`, :mod:`.pg_store`); the CLI
imports it only for ``--cluster``, so the single-process server never
loads them (they are the ``cluster`` extra)."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from .ports import Bus, Directory, ThreadStore


def node_id() -> str:
    """A name for this process, unique in the cluster and usable as a
    subject token (no dots)."""
    return f"n{os.getpid()}-{secrets.token_hex(3)}"


@asynccontextmanager
async def open_cluster_node(nats_url: str, store_dsn: str | None, *, node: str | None = None,
                            lease_ttl: float | None = None) -> AsyncIterator[tuple[Bus, Directory, ThreadStore | None]]:
    try:
        from .nats_bus import open_nats_bus
        from .nats_directory import LEASE_TTL, open_nats_directory
        from .pg_store import open_pg_store
    except ImportError as exc:
        raise SystemExit(f"trio-codex: --cluster needs the cluster extra "
                         f"(pip install 'trio-codex[cluster]'): {exc}") from None
    # TRIO_CODEX_LEASE_TTL: seconds; shorter leases fail over sooner and
    # risk false takeovers of a node that is merely starved of CPU.
    ttl = lease_ttl or float(os.environ.get("TRIO_CODEX_LEASE_TTL") or LEASE_TTL)
    async with open_nats_bus(nats_url, node or node_id()) as bus, \
            open_nats_directory(bus, lease_ttl=ttl) as directory:
        if store_dsn is None:
            yield bus, directory, None
            return
        store, pool = await open_pg_store(store_dsn)
        try:
            yield bus, directory, store
        finally:
            with trio.move_on_after(5, shield=True):
                await trio.to_thread.run_sync(pool.close)
