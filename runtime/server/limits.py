"""The limits that keep one client (or many) from taking the server down,
configured in one place: every field has a default and a ``TRIO_CODEX_*``
environment variable that overrides it (:meth:`Limits.from_env`).

- Connections: at most ``max_connections`` websocket connections at once
  (upgraded or not); at most ``max_half_open`` of them not yet upgraded,
  the oldest such one dropped first when a new one comes.
- Keepalive: a websocket peer is pinged every ``keepalive_interval`` s and
  closed when it has not answered (any frame counts) ``keepalive_timeout``
  s after a ping.
- Slow clients, one policy for every transport that can be closed: a
  connection is closed (1008, the reason logged) only when the bytes queued
  for it exceed ``outbox_byte_budget`` or a write makes no progress for
  ``write_timeout`` s; nothing is dropped before that.
- Per connection: at most ``request_rate`` requests a second (bursts of
  ``request_burst``) and ``max_pending_requests`` unanswered; a request over
  either is answered -32001, and a client refused ``abuse_limit`` times in a
  row is closed. One message is at most ``max_message_bytes``.
"""

from __future__ import annotations

import os
from typing import Any

import msgspec

__all__ = ["Limits", "RateLimiter"]


class Limits(msgspec.Struct, frozen=True):
    max_connections: int = 16384
    max_half_open: int = 256
    keepalive_interval: float = 30.0
    keepalive_timeout: float = 30.0
    outbox_byte_budget: int = 64 * 1024 * 1024
    write_timeout: float = 30.0
    request_rate: float = 200.0
    request_burst: int = 1000
    max_pending_requests: int = 1000
    abuse_limit: int = 1000
    #: One inbound message (transports.framing.DEFAULT_MAX_LINE); a bigger
    #: one is dropped as it arrives and its request answered -32600.
    max_message_bytes: int = 64 * 1024 * 1024

    @classmethod
    def from_env(cls, environ: dict[str, str] | os._Environ[str] = os.environ) -> Limits:
        """The defaults, each overridden by ``TRIO_CODEX_<FIELD IN CAPITALS>``.

        Raises:
          ValueError: a variable is not a positive number.
        """
        values: dict[str, Any] = {}  # each converted to its field's kind
        for name in cls.__struct_fields__:
            raw = environ.get(env_name(name))
            if raw is None or raw == "":
                continue
            kind = int if isinstance(cls.__struct_defaults__[cls.__struct_fields__.index(name)], int) else float
            try:
                value = kind(raw)
            except ValueError:
                value = 0
            if value <= 0:
                raise ValueError(f"{env_name(name)}={raw!r}: expected a positive "
                                 f"{'whole number' if kind is int else 'number'}")
            values[name] = value
        return cls(**values)


def env_name(field: str) -> str:
    return f"TRIO_CODEX_{field.upper()}"


class RateLimiter:
    """A token bucket: ``rate`` a second, up to ``burst`` at once. Sans-I/O:
    the caller passes the clock."""

    __slots__ = ("rate", "burst", "_tokens", "_at")

    def __init__(self, rate: float, burst: int, now: float | None = None) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._at = now

    def take(self, now: float) -> bool:
        """One token if there is one (True), else False. The bucket starts
        full at the first call when no start time was given."""
        elapsed = 0.0 if self._at is None else now - self._at
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False
