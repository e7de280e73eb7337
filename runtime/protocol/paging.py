"""The cursors of in-memory listings, parsed as the original parses them.

A cursor is the client's to echo back, never to be trusted: whatever it
holds is answered -32600 ``invalid cursor: <cursor>`` (the original's text),
never a ``ValueError`` in an actor.

- ``model/list`` pages by offset: the cursor is a ``usize`` as Rust's
  ``str::parse`` reads it (ASCII digits, an optional ``+``).
- ``thread/loaded/list`` pages by key: the cursor is the last thread id of
  the previous page, a UUID.
"""

from __future__ import annotations

import re
import uuid

from .jsonrpc import invalid_request

_USIZE = re.compile(r"\+?[0-9]+")
_USIZE_MAX = 2**64 - 1


def offset_cursor(cursor: str | None) -> int:
    """The offset an offset cursor names (0 for none)."""
    if cursor is None:
        return 0
    if not _USIZE.fullmatch(cursor) or int(cursor) > _USIZE_MAX:
        raise invalid_request(f"invalid cursor: {cursor}")
    return int(cursor)


def thread_id_cursor(cursor: str) -> str:
    """The thread id a key cursor names, in canonical form."""
    try:
        return str(uuid.UUID(cursor))
    except ValueError:
        raise invalid_request(f"invalid cursor: {cursor}") from None


def page_size(limit: int | None, total: int) -> int:
    """How many entries a page holds: ``limit``, or all; at least one."""
    return max(limit if limit is not None else total, 1)
