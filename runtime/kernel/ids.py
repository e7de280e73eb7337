"""Identifiers: RFC 9562 UUIDv7 strings.

- Thread, turn and item ids are strings: actors mint them with :func:`uuid7`
  where they create the thing (the original's thread and user-message ids
  are UUIDv7 too).
- Counters are plain ``itertools.count`` next to what they number: the
  connection ids in the host (``runtime/app.py``), the server-to-client
  request ids (one counter in ``actors/approvals.py``, from 0, as in the
  original), tool sessions and internal process ids.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

__all__ = ["uuid7"]

_lock = threading.Lock()
_last_ms = 0
_last_rand = 0

_RAND_BITS = 74  # rand_a (12 bits) and rand_b (62 bits)


def uuid7() -> str:
    """Return a new RFC 9562 UUIDv7 as a lowercase hyphenated string.

    48 bits of Unix milliseconds, then 74 random bits. Within one process the
    ids strictly increase: in the same millisecond (or if the clock steps
    back) the random part of the previous id is incremented instead of
    redrawn (RFC 9562 §6.2, method 2).
    """
    global _last_ms, _last_rand
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            rand = int.from_bytes(os.urandom(10)) >> (80 - _RAND_BITS)
        else:
            ms, rand = _last_ms, _last_rand + 1
            if rand >> _RAND_BITS:
                ms, rand = ms + 1, 0
        _last_ms, _last_rand = ms, rand
    value = (
        ms << 80
        | 0x7 << 76
        | (rand >> 62) << 64
        | 0b10 << 62
        | rand & ((1 << 62) - 1)
    )
    return str(uuid.UUID(int=value))

