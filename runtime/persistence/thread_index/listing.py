"""One page of ``thread/list`` as SQL (:func:`listing_query`), for the
SQLite index and for the cluster's PostgreSQL listing alike, its cursors,
and the params and answers of ``thread/list`` and ``thread/search`` around
a page (:func:`page_filters`, :func:`list_answer`, :func:`search_answer`).

* **Keyset pagination.** Rows are ordered by ``(sort key, id)``; a cursor is
  the ``(value, id)`` of the row it was cut at, the sort it belongs to, and a
  side (after/before), base64url-encoded JSON. A cursor stays valid while
  rows are added and removed, and never skips or repeats a row that exists
  throughout. ``next_cursor`` continues past a page; ``backwards_cursor``
  fetches the rows just before it (for a newest-first list: newer threads,
  so a client can poll for new ones).
* **Pages bounded by bytes.** A page stops before the row that would take
  the encoded size of its rows past ``max_bytes`` (default 256 KiB), and the
  stored preview is cut to :data:`~.schema.PREVIEW_MAX_BYTES`, so no page is
  ever megabytes. A page always holds at least one row when one matches, so
  a listing always progresses.
"""

from __future__ import annotations

import base64
from collections.abc import Container, Sequence
from typing import Any, Final, Literal

import msgspec

from ...protocol.v2.thread import (
    ThreadListParams,
    ThreadListResponse,
    ThreadSearchParams,
    ThreadSearchResponse,
    ThreadSearchResult,
)
from ..rollout import ThreadMeta, thread_from_meta

DEFAULT_LIMIT: Final = 25
MAX_LIMIT: Final = 500
DEFAULT_MAX_BYTES: Final = 256 * 1024
#: What an empty ``sourceKinds`` means, as in the original: interactive threads.
INTERACTIVE_SOURCE_KINDS: Final = ("cli", "vscode")
_SUB_AGENT_KINDS: Final = ("subAgentReview", "subAgentCompact", "subAgentThreadSpawn", "subAgentOther")

SortKey = Literal["created_at", "updated_at", "recency_at"]
SortDirection = Literal["asc", "desc"]


class Page(msgspec.Struct):
    rows: list[ThreadMeta]
    #: Continues after the last row; None when this is the last page.
    next_cursor: str | None = None
    #: Fetches the rows just before the first row (for newest-first lists,
    #: threads newer than this page).
    backwards_cursor: str | None = None


class _Cursor(msgspec.Struct, array_like=True):
    sort_key: str
    direction: str
    value: int
    id: str
    before: bool


_cursor_encoder = msgspec.json.Encoder()
_cursor_decoder = msgspec.json.Decoder(_Cursor)
_size_encoder = msgspec.json.Encoder()


def _encode_cursor(c: _Cursor) -> str:
    return base64.urlsafe_b64encode(_cursor_encoder.encode(c)).rstrip(b"=").decode()


def _decode_cursor(text: str) -> _Cursor:
    try:
        return _cursor_decoder.decode(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, msgspec.DecodeError):
        raise ValueError(f"invalid cursor {text!r}: pass a cursor from a previous thread/list page, "
                         "or none to start from the first page") from None


class ListingQuery:
    """One ``thread/list`` page as SQL: the filters, the keyset condition
    and the order, for the SQLite index and for the cluster's PostgreSQL
    listing alike (``placeholder``: ``?`` or ``%s``). Its table has the
    columns ``id, archived, cwd, model_provider, source_kind, name,
    preview`` and the sort keys."""

    def __init__(self, *, placeholder: str, limit: int, sort_key: str, sort_direction: str,
                 anchor: _Cursor | None, cursor: str | None) -> None:
        self.ph = placeholder
        self.limit = limit
        self.sort_key = sort_key
        self.sort_direction = sort_direction
        self.anchor = anchor
        self.cursor = cursor
        self.where: list[str] = []
        self.args: list[Any] = []
        self.backward = anchor is not None and anchor.before
        # Rows come out nearest the anchor first: in display order going
        # forward, in reverse display order going backward.
        self.ascending = (sort_direction == "asc") != self.backward
        #: ``+`` when the order must not drive the plan (see :func:`listing_query`).
        self.plus = ""

    def any_of(self, column: str, values: Sequence[Any]) -> None:
        self.where.append(f"{column} IN ({', '.join([self.ph] * len(values))})")
        self.args += list(values)

    def sql(self, select: str) -> str:
        """``select`` (``SELECT ... FROM table``) with the conditions, the
        order and the limit (one row more than the page, to know if more follow)."""
        order = "ASC" if self.ascending else "DESC"
        return (f"{select} WHERE {' AND '.join(self.where)} "
                f"ORDER BY {self.plus}{self.sort_key} {order}, {self.plus}id {order} LIMIT {self.limit + 1}")

    def page(self, fetched: list[ThreadMeta], max_bytes: int = DEFAULT_MAX_BYTES) -> Page:
        """The page and its cursors from the rows the query fetched."""
        rows: list[ThreadMeta] = []
        used = 0
        for meta in fetched[:self.limit]:
            size = len(_size_encoder.encode(meta))
            if rows and used + size > max_bytes:
                break
            rows.append(meta)
            used += size
        more = len(fetched) > len(rows)
        if self.backward:
            rows.reverse()

        def at(meta: ThreadMeta, before: bool) -> str:
            return _encode_cursor(_Cursor(self.sort_key, self.sort_direction, getattr(meta, self.sort_key),
                                          meta.id, before))

        if not rows:
            # Nothing there (yet): a backwards cursor stays the way to poll.
            return Page([], None, self.cursor if self.backward else None)
        first = at(rows[0], True)
        if self.backward:
            # The anchor row itself lies after this page.
            return Page(rows, at(rows[-1], False), first)
        return Page(rows, at(rows[-1], False) if more else None, first)


def listing_query(*, cursor: str | None = None, limit: int = DEFAULT_LIMIT, sort_key: str = "created_at",
                  sort_direction: str = "desc", archived: bool = False, cwd: str | Sequence[str] | None = None,
                  model_providers: Sequence[str] | None = None, source_kinds: Sequence[str] | None = None,
                  search_term: str | None = None, thread_ids: Sequence[str] | None = None,
                  placeholder: str = "?", candidates: Sequence[int] | None = None) -> ListingQuery | None:
    """The query of one ``thread/list`` page (filters as
    :meth:`ThreadIndex.list_threads`); None when nothing can match.
    ``candidates``: the SQLite rowids that hold one of the search term's
    rare trigrams (a superset of the matches; LIKE still decides).
    Raises ``ValueError`` for a bad argument or a cursor from another sort."""
    if sort_key not in ("created_at", "updated_at", "recency_at"):
        raise ValueError(f"unknown sortKey {sort_key!r}: use created_at, updated_at or recency_at")
    if sort_direction not in ("asc", "desc"):
        raise ValueError(f"unknown sortDirection {sort_direction!r}: use asc or desc")
    anchor = None
    if cursor:
        anchor = _decode_cursor(cursor)
        if (anchor.sort_key, anchor.direction) != (sort_key, sort_direction):
            raise ValueError(
                f"this cursor belongs to a listing sorted by {anchor.sort_key} {anchor.direction}, "
                f"not {sort_key} {sort_direction}: keep the sort, or start again without a cursor")
    q = ListingQuery(placeholder=placeholder, limit=max(1, min(int(limit), MAX_LIMIT)), sort_key=sort_key,
                     sort_direction=sort_direction, anchor=anchor, cursor=cursor)
    if candidates is not None:
        # A search with a rare trigram starts from the few rows that hold it
        # (a unary + keeps SQLite from walking an index of every row instead).
        q.plus = "+"
    q.where.append(f"{q.plus}archived = {q.ph}")
    q.args.append(archived if placeholder != "?" else int(archived))
    if cwd is not None:
        paths = [cwd] if isinstance(cwd, str) else list(cwd)
        if not paths:
            return None
        q.any_of("cwd", paths)
    if thread_ids is not None:
        if not thread_ids:
            return None
        q.any_of("id", thread_ids)
    if model_providers:
        q.any_of("model_provider", model_providers)
    kinds: list[str] = []
    for kind in source_kinds or INTERACTIVE_SOURCE_KINDS:
        kinds += _SUB_AGENT_KINDS if kind == "subAgent" else [kind]
    q.any_of("source_kind", kinds)
    if search_term:
        if candidates is not None:
            q.any_of("rowid", candidates)
        pattern = like_pattern(search_term)
        like = "LIKE" if placeholder == "?" else "ILIKE"  # SQLite's LIKE ignores ASCII case already
        q.where.append(f"(name {like} {q.ph} ESCAPE '\\' OR preview {like} {q.ph} ESCAPE '\\')")
        q.args += [pattern, pattern]
    if anchor is not None:
        q.where.append(f"({sort_key}, id) {'>' if q.ascending else '<'} ({q.ph}, {q.ph})")
        q.args += [anchor.value, anchor.id]
    return q


def like_pattern(term: str) -> str:
    """``term`` as a LIKE pattern that matches it anywhere, literally."""
    return "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def page_filters(p: ThreadListParams | ThreadSearchParams) -> dict[str, Any]:
    """The ``list_threads`` arguments for ``thread/list`` or ``thread/search``
    params, with the original's defaults: what the store actor and the
    cluster's gateway both ask their listing for."""
    common: dict[str, Any] = dict(cursor=p.cursor, limit=p.limit or DEFAULT_LIMIT, sort_key=p.sort_key or "created_at",
                                  sort_direction=p.sort_direction or "desc", archived=bool(p.archived),
                                  source_kinds=p.source_kinds)
    if isinstance(p, ThreadSearchParams):
        return {**common, "full_text": p.search_term}
    return {**common, "cwd": p.cwd, "model_providers": p.model_providers, "search_term": p.search_term,
            "thread_ids": p.included_thread_ids}


def list_answer(page: Page, loaded: Container[str]) -> ThreadListResponse:
    """A page as the ``thread/list`` answer (``loaded``: the threads served here)."""
    return ThreadListResponse([thread_from_meta(m, m.id in loaded) for m in page.rows],
                              page.next_cursor, page.backwards_cursor)


def search_answer(page: Page, snippets: dict[str, str], loaded: Container[str]) -> ThreadSearchResponse:
    """A page as the ``thread/search`` answer: each thread with the text that
    matched (``snippets``), else its preview."""
    return ThreadSearchResponse([ThreadSearchResult(thread_from_meta(m, m.id in loaded), snippets.get(m.id, m.preview))
                                 for m in page.rows], page.next_cursor, page.backwards_cursor)
