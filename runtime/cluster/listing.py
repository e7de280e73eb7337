"""A gateway's answers from the cluster's listing (functions of
:class:`~.gateway.Gateway`, bound as its methods; README "Cluster",
"thread/list"): ``thread/list``, ``thread/search`` and
``thread/search/stream`` over every node's threads in the store, as the
single process answers them, and the search cancel requests that stop
them.

A search runs beside the client's other requests (so that its cancel can
be read while it queries); the cancel answers ``{}`` and then the search
``-32600 "thread search cancelled"``, as the single process's
(``actors/store.py``). A cancel of a search the gateway does not answer
goes on to the local Connection, which answers it as always.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
import trio

from ..persistence.thread_index import list_answer, page_filters, search_answer
from ..protocol.codec import decode_params, encode
from ..protocol.jsonrpc import (ErrorResponse, JsonRpcError, Response, internal_error, invalid_request,
                                overloaded)
from ..protocol.v2.thread import (
    MAX_STREAM_SEARCH_BYTES,
    ThreadListParams,
    ThreadListResponse,
    ThreadSearchParams,
    ThreadSearchResponse,
)
from ..kernel.stream import TransportClosed
from .wire import decode_frame, log

if TYPE_CHECKING:
    from .gateway import Gateway

#: The search each cancel request stops (a cancel stops only its own kind).
CANCELS = {"thread/search/cancel": "thread/search", "thread/search/stream/cancel": "thread/search/stream"}
#: Searches one connection may have running at once; one more is answered
#: -32001 (overloaded), as a full mailbox is in one process.
MAX_SEARCHES = 16
#: The error of a search its cancel request stopped, as the original's.
SEARCH_CANCELLED = "thread search cancelled"


class Search:
    """One search the gateway is answering: its kind, and the scope its
    cancel request cancels."""

    __slots__ = ("method", "scope")

    def __init__(self, method: str) -> None:
        self.method = method
        self.scope = trio.CancelScope()


P = TypeVar("P", ThreadListParams, ThreadSearchParams)


def _params(msg: dict[str, Any], kind: type[P]) -> P | None:
    """A listing request's params, or None when the local actors should
    answer it (they refuse it with the original's error)."""
    try:
        return decode_params(msgspec.Raw(msgspec.json.encode(msg.get("params"))), kind)
    except JsonRpcError:
        return None


async def _list(self: Gateway, msg: dict[str, Any]) -> bool:
    """Answer ``thread/list`` from the cluster's listing (every node's
    threads, in keyset pages), once the client is initialized; False
    leaves it to the local actors (params they refuse, and the
    experimental sections)."""
    p = _params(msg, ThreadListParams)
    if p is None or p.section_id is not None or p.sort_key == "section_position" \
            or (p.included_thread_ids is not None and len(p.included_thread_ids) > 100):
        return False
    listing = self.host.listing
    assert listing is not None

    async def page() -> ThreadListResponse:
        return list_answer(await listing.list_threads(**page_filters(p)), self.host.owned)
    await _send(self, await _answer_listing(msg["id"], page))
    return True


def _experimental(self: Gateway) -> bool:
    """Whether the client's ``initialize`` opted in to the experimental
    API (the searches are; without it the Connection refuses them)."""
    params = (decode_frame(self.init[0]) or {}).get("params") if self.init else None
    caps = params.get("capabilities") if isinstance(params, dict) else None
    return isinstance(caps, dict) and caps.get("experimentalApi") is True


async def _search(self: Gateway, msg: dict[str, Any]) -> bool:
    """Start answering ``thread/search`` or ``thread/search/stream`` (the
    same answer, as in one process) from the cluster's listing and message
    texts; False leaves params the local actors refuse to them."""
    p = _params(msg, ThreadSearchParams)
    if p is None:
        return False
    term = p.search_term.strip()
    if not term or (msg["method"] == "thread/search/stream" and len(term.encode()) > MAX_STREAM_SEARCH_BYTES):
        return False  # refused by the registry, as in one process
    rid = msg["id"]
    if len(self.searches) >= MAX_SEARCHES:
        await _send(self, ErrorResponse(rid, overloaded().error))
        return True
    search = self.searches[rid] = Search(msg["method"])
    self.nursery.start_soon(_run_search, self, rid, p, search)
    return True


async def _run_search(self: Gateway, rid: Any, p: ThreadSearchParams, search: Search) -> None:
    """Query the listing, then answer, unless a cancel request stopped the
    search (its cancel answered it) meanwhile."""
    listing = self.host.listing
    assert listing is not None

    async def page() -> ThreadSearchResponse:
        page = await listing.list_threads(**page_filters(p))
        snippets = await listing.snippets([m.id for m in page.rows], p.search_term)
        return search_answer(page, snippets, self.host.owned)
    answer: Response | ErrorResponse | None = None
    with search.scope:
        answer = await _answer_listing(rid, page)
    if answer is None or search.scope.cancel_called:
        return  # cancelled: the cancel request answered it
    if self.searches.get(rid) is search:
        del self.searches[rid]
    await _send(self, answer)


async def _cancel_search(self: Gateway, msg: dict[str, Any]) -> bool:
    """Stop a search of the request's kind this gateway is answering: the
    cancel is answered ``{}``, then the search its error; False leaves any
    other cancel (of a search the local actors answer, one already
    answered, an unknown id) to the local Connection."""
    params = msg.get("params")
    rid = params.get("requestId") if isinstance(params, dict) else None
    search = self.searches.get(rid) if isinstance(rid, (int, str)) else None
    if search is None or search.method != CANCELS[msg["method"]]:
        return False
    del self.searches[rid]
    search.scope.cancel()
    await _send(self, Response(msg["id"], {}), ErrorResponse(rid, invalid_request(SEARCH_CANCELLED).error))
    return True


async def _answer_listing(rid: Any, page: Callable[[], Awaitable[Any]]) -> Response | ErrorResponse:
    """The answer to a listing request: ``page()``; a bad cursor or sort is
    the client's error, a failing store this request's alone."""
    try:
        return Response(rid, await page())
    except ValueError as exc:
        return ErrorResponse(rid, invalid_request(str(exc)).error)
    except Exception as exc:  # the store failed: this request fails, not the connection
        log.error("cluster: a thread listing failed: %s", exc, exc_info=True)
        return ErrorResponse(rid, internal_error(
            f"the cluster's thread list is unavailable ({exc}); retry the request").error)


async def _send(self: Gateway, *answers: Response | ErrorResponse) -> None:
    try:
        async with self.lock:
            await self.inner.send_frames([encode(a) for a in answers])
    except TransportClosed:
        pass  # the client is gone: its reader ends the connection
