"""Wall-clock time as the protocol stamps it: Unix milliseconds.

Notifications (``emitted_at_ms``), analytics facts and thread timestamps
carry it. Durations are measured with ``trio.current_time()`` instead.
"""

from __future__ import annotations

import time

__all__ = ["now_ms"]


def now_ms() -> int:
    """Unix time in milliseconds."""
    return time.time_ns() // 1_000_000
