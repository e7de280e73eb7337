"""Searching the index: ``thread/list``'s ``searchTerm`` (a substring of a
thread's name or preview) and ``thread/search`` (a substring of one of its
messages), both on SQLite's FTS5 trigram tokenizer, which matches any
substring of 3 characters or more, case-insensitively.

A search term goes through the trigram index of names and previews only
when one of its trigrams is rare (:func:`rare_trigram_rows`); when all are
common, a scan in list order finds a page's matches sooner. Either way the
LIKE condition of :mod:`.listing` decides.
"""

from __future__ import annotations

import sqlite3
from typing import Final

from ...conversation.history import message_texts
from ..rollout import ResponseItem, read_rollout
from .listing import like_pattern

#: searchTerm goes through the trigram index when one of its trigrams is
#: held by at most this many rows (each is then looked up and checked).
RARE_TRIGRAM_ROWS: Final = 4096
#: The first pass over the term's trigrams looks for one this rare.
FIRST_PROBE_ROWS: Final = 256
#: How many of a long search term's trigrams are weighed.
MAX_TRIGRAMS: Final = 32
#: A snippet shows this many characters of a long message, around the match.
SNIPPET_CHARS: Final = 200


def text_match(term: str) -> tuple[str, str]:
    """The ``thread_text`` condition for a substring: a phrase query on the
    trigram index from 3 characters on, a LIKE scan below that."""
    if len(term) >= 3:
        return "thread_text MATCH ?", phrase(term)
    return "text LIKE ? ESCAPE '\\'", like_pattern(term)


def phrase(term: str) -> str:
    """An FTS5 phrase query for ``term`` as a substring (trigram tokens)."""
    return '"' + term.replace('"', '""') + '"'


def snippet(text: str, term: str) -> str:
    """The message, or for a long one the part around the first match."""
    if len(text) <= SNIPPET_CHARS:
        return text
    at = max(0, text.lower().find(term.lower()) - SNIPPET_CHARS // 4)
    return text[at:at + SNIPPET_CHARS]


def rare_trigram_rows(conn: sqlite3.Connection, term: str) -> list[int] | None:
    """The rows (rowids) holding the first trigram of ``term`` that at
    most :data:`RARE_TRIGRAM_ROWS` rows hold; each probe reads at most
    that many entries of the index. None when every trigram is common
    (or the term is under 3 characters): then many rows hold each part
    of the term, and a scan in list order finds a page's matches sooner
    than the index would hand over all the rows of one trigram."""
    grams = list(dict.fromkeys(term[i:i + 3] for i in range(len(term) - 2)))[:MAX_TRIGRAMS]
    # A cheap pass for a very rare trigram first, then the full bound.
    for bound in sorted({min(FIRST_PROBE_ROWS, RARE_TRIGRAM_ROWS), RARE_TRIGRAM_ROWS}):
        for gram in grams:
            (count,) = conn.execute("SELECT count(*) FROM (SELECT 1 FROM thread_title WHERE thread_title MATCH ? "
                                    "LIMIT ?)", (phrase(gram), bound + 1)).fetchone()
            if count <= bound:
                return [row for (row,) in conn.execute(
                    "SELECT rowid FROM thread_title WHERE thread_title MATCH ?", (phrase(gram),))]
    return None


def rollout_message_texts(path: str) -> list[str]:
    """The user and assistant message texts of a rollout file (its whole
    history, read once when the file is indexed)."""
    lines = read_rollout(path).lines
    return message_texts(line.payload.raw for line in lines if isinstance(line.payload, ResponseItem))
