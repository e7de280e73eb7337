"""Where rollouts live, what they are called, and how their times are
written: the original's layout, so that either program finds the other's
files.

The date in a rollout's folders and name is local time, as the original
writes it; the timestamps inside are UTC with milliseconds.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Final

SESSIONS_SUBDIR: Final = "sessions"
ARCHIVED_SESSIONS_SUBDIR: Final = "archived_sessions"
SESSION_INDEX_FILE: Final = "session_index.jsonl"

_FILENAME = re.compile(
    r"^rollout-(\d{4})-(\d{2})-(\d{2})T(\d{2})-(\d{2})-(\d{2})-"
    r"([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\.jsonl$"
)


def rollout_path(codex_home: str | os.PathLike[str], thread_id: str, created_at_ms: int) -> Path:
    """Where the original puts a new thread's rollout: dated folders and a
    dated name, both in local time."""
    t = _dt.datetime.fromtimestamp(created_at_ms / 1000).astimezone()
    stamp = t.strftime("%Y-%m-%dT%H-%M-%S")
    return (Path(codex_home) / SESSIONS_SUBDIR / t.strftime("%Y") / t.strftime("%m")
            / t.strftime("%d") / f"rollout-{stamp}-{thread_id}.jsonl")


def archived_rollout_path(codex_home: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """Where ``thread/archive`` moves a rollout: the archive folder, flat."""
    return Path(codex_home) / ARCHIVED_SESSIONS_SUBDIR / Path(path).name


def parse_rollout_filename(name: str) -> tuple[int, str] | None:
    """``(created_at_ms, thread_id)`` from a rollout file name (local time,
    whole seconds), or None if the name is not a rollout's."""
    m = _FILENAME.match(name)
    if m is None:
        return None
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    try:
        t = _dt.datetime(y, mo, d, h, mi, s).astimezone()
    except ValueError:
        return None
    return int(t.timestamp()) * 1000, m.group(7).lower()


def iter_rollout_files(codex_home: str | os.PathLike[str]) -> Iterator[tuple[os.DirEntry[str], bool]]:
    """Every rollout file under ``sessions/`` (archived False) and
    ``archived_sessions/`` (archived True), as directory entries, so a caller
    can use their cached ``stat()``. Other files are ignored."""
    root = Path(codex_home)
    for sub, archived in ((SESSIONS_SUBDIR, False), (ARCHIVED_SESSIONS_SUBDIR, True)):
        stack = [root / sub]
        while stack:
            try:
                entries = os.scandir(stack.pop())
            except (FileNotFoundError, NotADirectoryError):
                continue
            with entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        if not archived:  # the archive is flat
                            stack.append(Path(entry.path))
                    elif entry.name.startswith("rollout-") and entry.name.endswith(".jsonl"):
                        yield entry, archived


def format_timestamp(ms: int) -> str:
    """UTC, millisecond precision, ``Z``: the original's line timestamps."""
    t = _dt.datetime.fromtimestamp(ms / 1000, _dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_timestamp(text: str) -> int | None:
    """Milliseconds since the epoch from an RFC 3339 timestamp (any number
    of fractional digits), or None if it does not parse."""
    try:
        t = _dt.datetime.fromisoformat(text)
    except ValueError:
        # Python 3.11 takes at most 6 fractional digits; the original may
        # write 9 (``11:53:00.468252653Z`` in session_index.jsonl).
        m = re.match(r"^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$", text)
        if m is None:
            return None
        try:
            t = _dt.datetime.fromisoformat(m.group(1) + "." + (m.group(2) or "0")[:6].ljust(6, "0")
                                          + (m.group(3) or "Z"))
        except ValueError:
            return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.UTC)
    return int(t.timestamp() * 1000)
