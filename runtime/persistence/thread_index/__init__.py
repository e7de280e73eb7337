"""The thread listing index: SQLite beside the rollouts, for ``thread/list``
and ``thread/search``.

The rollout files are the truth (:mod:`..rollout`); this index is derived
data that answers ``thread/list`` without opening them. The original rescans
session files when it lists (30-45 s at 49 k threads) and bounds pages by
count only (megabytes for ``limit=20``); here a page is one indexed query,
bounded by count *and* bytes.

=============  ==============================================================
``schema``     the SQLite file: tables, triggers, rows <-> ``ThreadMeta``,
               transactions
``listing``    one ``thread/list`` page as SQL (SQLite and PostgreSQL), keyset
               cursors, pages bounded by bytes; the params and answers
               around a page
``search``     ``searchTerm`` and ``thread/search`` on trigram indexes
``index``      :class:`ThreadIndex` (blocking; one connection per OS
               thread), its sync with the rollouts, :func:`open_index`
=============  ==============================================================

One file, ``$CODEX_HOME/trio_codex_threads.sqlite`` (WAL); every method
blocks, so call it through ``trio.to_thread.run_sync``. The rules each part
keeps are in its module's docstring.
"""

from __future__ import annotations

from ..rollout import ThreadMeta
from .index import Stopped, SyncStats, ThreadIndex, open_index
from .listing import (
    DEFAULT_LIMIT,
    DEFAULT_MAX_BYTES,
    INTERACTIVE_SOURCE_KINDS,
    MAX_LIMIT,
    ListingQuery,
    Page,
    SortDirection,
    SortKey,
    like_pattern,
    list_answer,
    listing_query,
    page_filters,
    search_answer,
)
from .schema import INDEX_FILE, PREVIEW_MAX_BYTES, SCHEMA_VERSION, SELECT_COLUMNS, cut_preview
from .search import RARE_TRIGRAM_ROWS, snippet

__all__ = [
    "DEFAULT_LIMIT",
    "DEFAULT_MAX_BYTES",
    "INDEX_FILE",
    "INTERACTIVE_SOURCE_KINDS",
    "MAX_LIMIT",
    "PREVIEW_MAX_BYTES",
    "RARE_TRIGRAM_ROWS",
    "SCHEMA_VERSION",
    "SELECT_COLUMNS",
    "ListingQuery",
    "Page",
    "SortDirection",
    "SortKey",
    "Stopped",
    "SyncStats",
    "ThreadIndex",
    "ThreadMeta",
    "cut_preview",
    "like_pattern",
    "list_answer",
    "listing_query",
    "open_index",
    "page_filters",
    "search_answer",
    "snippet",
]
