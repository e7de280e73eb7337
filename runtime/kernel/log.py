"""Logging goes to stderr only: stdout belongs to the stdio transport.

``RUST_LOG``-style levels are honoured through ``TRIO_CODEX_LOG`` (or
``RUST_LOG`` when that is unset, so a host tuned for the original keeps its
setting); ``LOG_FORMAT=json`` prints one JSON object per line.
"""

from __future__ import annotations

import logging
import os
import sys

import msgspec

_LEVELS = {"trace": logging.DEBUG, "debug": logging.DEBUG, "info": logging.INFO,
           "warn": logging.WARNING, "warning": logging.WARNING, "error": logging.ERROR}


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return msgspec.json.encode({
            "ts": record.created, "level": record.levelname.lower(),
            "target": record.name, "message": record.getMessage(),
        }).decode()


def setup_logging(env: dict[str, str] | None = None) -> None:
    env = dict(os.environ) if env is None else env
    spec = env.get("TRIO_CODEX_LOG") or env.get("RUST_LOG") or "warn"
    # "info" or "trio_codex=debug,other=warn": the last bare or trio_codex level wins.
    level = logging.WARNING
    for part in spec.split(","):
        name, _, lvl = part.rpartition("=")
        if name in ("", "trio_codex") and lvl.strip().lower() in _LEVELS:
            level = _LEVELS[lvl.strip().lower()]
    handler = logging.StreamHandler(sys.stderr)
    if env.get("LOG_FORMAT") == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("trio_codex")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
