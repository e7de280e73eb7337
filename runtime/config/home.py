"""CODEX_HOME at start-up, checked before anything runs, as the original
checks it.

Everything the server keeps goes under CODEX_HOME: the thread index
(``trio_codex_threads.sqlite``), ``sessions/``, ``archived_sessions/``,
``session_index.jsonl`` and the default control socket
(``app-server-control/``). So every entry point first makes sure it can
write there, and otherwise stops with one line saying which path and why:

* ``CODEX_HOME`` unset: ``~/.codex`` is created when missing (with the
  default permissions, as the original's ``create_dir_all``);
* ``CODEX_HOME`` set: it must name an existing directory, which is not
  created (the original's "CODEX_HOME points to …" errors);
* either way the directory must be writable: a read-only or unwritable one
  is refused with the original's words, rather than accepted and then
  failing at the first turn.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from . import ConfigError, find_codex_home

__all__ = ["HomeError", "prepare_codex_home"]


class HomeError(Exception):
    """CODEX_HOME cannot be used; the message is the one line to show."""


def prepare_codex_home(env: Mapping[str, str] = os.environ) -> Path:
    """The CODEX_HOME to use, made if it is the default and missing, and
    known to be writable.

    Raises:
      HomeError: it cannot be found, made or written.
    """
    try:
        home = find_codex_home(env)
    except ConfigError as exc:
        raise HomeError(str(exc)) from None
    probe = home / f".trio-codex-write-check-{os.getpid()}"
    try:
        home.mkdir(parents=True, exist_ok=True)
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(probe)
    except OSError as exc:
        reason = f"{exc.strerror} (os error {exc.errno})" if exc.errno else str(exc)
        raise HomeError(f"failed to initialize sqlite state runtime under {home}: failed to initialize state "
                        f"runtime at {home}: {reason}") from None
    return home
