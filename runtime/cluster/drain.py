"""Draining a node (SIGTERM, a Kubernetes ``preStop``): hand every thread
it owns to the rest of the cluster with nothing lost.

An idle thread is released at once; a busy one when its turn ends, or,
past the deadline, once its turn is interrupted (the rollout then ends the
turn with ``turn_aborted``, so the next owner reads it interrupted). A
thread is released only after its rollout is in the store (the caller's
``release``). The node watches its threads as any client would: over a
connection of its own to its own actors (``thread/read``,
``turn/interrupt``), so no actor knows about draining. That connection
is made by ``pair`` (the composition root's in-memory transport).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import trio

from ..client import Client, CodexError
from ..kernel.stream import FrameStream

log = logging.getLogger("trio_codex.cluster")

#: How long a busy thread may finish its turn before it is interrupted, by
#: default (seconds; :func:`drain_deadline`); keep it under the host's grace
#: period (Kubernetes: ``terminationGracePeriodSeconds``, 30 s by default).
DRAIN_DEADLINE = 20.0
#: What a draining node answers a new connection (HTTP 503 to a websocket
#: upgrade; the connections it has carry on).
REFUSAL = "this node is draining (shutting down); connect to another node of the cluster"
#: How long an interrupted turn may take to end.
INTERRUPT_GRACE = 5.0
#: How often a busy thread is looked at.
POLL = 0.1


def drain_deadline(configured: float | None = None) -> float:
    """``$TRIO_CODEX_DRAIN_TIMEOUT``, else ``configured`` (config.toml's
    ``[cluster] drain_timeout_secs``), else :data:`DRAIN_DEADLINE`.

    Raises:
      ValueError: the variable is not a number of seconds, 0 or more.
    """
    raw = os.environ.get("TRIO_CODEX_DRAIN_TIMEOUT")
    if not raw:
        return DRAIN_DEADLINE if configured is None else configured
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 <= value < math.inf:
        raise ValueError(f"TRIO_CODEX_DRAIN_TIMEOUT={raw!r} is not a number of seconds; set it to 0 or more "
                         "(how long a draining node lets a turn run before it interrupts it), or unset it")
    return value


async def drain_threads(thread_ids: Iterable[str], serve_connection: Callable[[FrameStream], Awaitable[None]],
                        release: Callable[[str], Awaitable[None]], deadline: float,
                        pair: Callable[[], tuple[FrameStream, FrameStream]]) -> None:
    """Release each thread once it is idle (interrupting its turn after
    ``deadline`` seconds), all at once; ``release`` copies its rollout into
    the store and gives up the claim; ``pair`` makes the (server end,
    client end) of the node's own connection."""
    server_end, client_end = pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_connection, server_end)
        async with Client.over(client_end, name="trio_codex_drain", typed=False) as client, \
                trio.open_nursery() as threads:
            for thread_id in thread_ids:
                threads.start_soon(_drain_one, client, thread_id, release, trio.current_time() + deadline)
        nursery.cancel_scope.cancel()


async def _drain_one(client: Client, thread_id: str, release: Callable[[str], Awaitable[None]],
                     deadline: float) -> None:
    with trio.move_on_at(deadline):
        while await _busy(client, thread_id):
            await trio.sleep(POLL)
    if await _busy(client, thread_id):
        turn_id = await _running_turn(client, thread_id)
        log.info("cluster: drain: thread %s still busy at the deadline: interrupting turn %s", thread_id, turn_id)
        if turn_id is not None:
            try:
                await client.request("turn/interrupt", {"threadId": thread_id, "turnId": turn_id})
            except CodexError as exc:
                log.warning("cluster: drain: interrupting thread %s: %s", thread_id, exc)
        with trio.move_on_after(INTERRUPT_GRACE):
            while await _busy(client, thread_id):
                await trio.sleep(POLL)
    await release(thread_id)


async def _read(client: Client, thread_id: str, include_turns: bool = False) -> dict[str, Any] | None:
    try:
        read = await client.request("thread/read", {"threadId": thread_id, "includeTurns": include_turns})
    except CodexError:
        return None  # gone (archived, deleted): nothing to wait for
    return read["thread"]


async def _busy(client: Client, thread_id: str) -> bool:
    thread = await _read(client, thread_id)
    return thread is not None and thread["status"]["type"] == "active"


async def _running_turn(client: Client, thread_id: str) -> str | None:
    thread = await _read(client, thread_id, include_turns=True)
    turns = thread["turns"] if thread is not None else []
    return turns[-1]["id"] if turns and turns[-1]["status"] == "inProgress" else None
