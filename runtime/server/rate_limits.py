"""Usage limits as the provider reports them in response headers
(``x-codex-primary-used-percent``, ``-window-minutes``, ``-reset-at``, and
the ``secondary`` window), as the original reads them, for
``account/rateLimits/read``.

:class:`RateLimits` is a latest-value register: model clients write it when
a response carries the headers, ``account/rateLimits/read`` reads it. Both
run on the one trio thread and neither awaits in between, so a read sees a
whole snapshot.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_WINDOWS = ("primary", "secondary")


def parse(headers: Mapping[str, str]) -> dict[str, Any] | None:
    """The v2 ``RateLimitSnapshot`` the headers describe, or None when they
    carry none (most providers: the API's own ``x-ratelimit-*`` headers are
    per-minute request budgets, not the usage windows clients show)."""
    windows = {name: _window(headers, name) for name in _WINDOWS}
    if not any(windows.values()):
        return None
    return {"limitId": "codex", "limitName": None, **windows, "credits": None, "planType": None,
            "rateLimitReachedType": None}


def _window(headers: Mapping[str, str], name: str) -> dict[str, Any] | None:
    used = _number(headers.get(f"x-codex-{name}-used-percent"))
    if used is None:
        return None
    minutes = _number(headers.get(f"x-codex-{name}-window-minutes"))
    resets = _number(headers.get(f"x-codex-{name}-reset-at"))
    return {"usedPercent": round(used), "windowDurationMins": None if minutes is None else int(minutes),
            "resetsAt": None if resets is None else int(resets)}


def _number(raw: str | None) -> float | None:
    try:
        value = float(raw) if raw is not None else None
    except ValueError:
        return None
    return value if value is not None and value == value and abs(value) < 2**62 else None


class RateLimits:
    """The latest snapshot any model response carried (None: none yet)."""

    def __init__(self) -> None:
        self.latest: dict[str, Any] | None = None

    def observe(self, headers: Mapping[str, str]) -> None:
        snapshot = parse(headers)
        if snapshot is not None:
            self.latest = snapshot
