"""Rewriting rollouts: ``thread/revert`` cuts a file before a turn
(:func:`revert_rollout`), ``thread/fork`` copies one under a new id
(:func:`fork_lines`), and :func:`write_whole` puts a file in place whole or
not at all. The writes block: call them off the trio thread.

Appending to a live thread's file is not here: that belongs to its writer
actor (``actors/rollout_writer.py``), which uses :func:`~.paths.rollout_path`
and :func:`~.codec.encode_line`.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from ...kernel.errors import StorageFailure
from .codec import Rollout, encode_line, parse_rollout, read_rollout
from .paths import format_timestamp, parse_timestamp
from .records import SessionMeta, TurnAbortedEvent, TurnCompleteEvent, TurnStartedEvent
from .replay import Replay, replay


def revert_rollout(path: str | os.PathLike[str], before_turn_id: str) -> Replay:
    """thread/revert: cut a thread's rollout just before the turn
    ``before_turn_id`` started, and replay what is left. The cut file is
    written beside the rollout, fsynced, and put in its place at once, so a
    crash leaves the old file or the new one, never half of either. Raises
    ``ValueError("turn not found: …")`` when no turn of that id started in
    it (a legacy rollout records no turn starts)."""
    rollout = read_rollout(path)
    kept: list[bytes] = []
    for line in rollout.lines:
        if isinstance(line.payload, TurnStartedEvent) and line.payload.turn_id == before_turn_id:
            break
        kept.append(encode_line(line.payload, timestamp_ms=parse_timestamp(line.timestamp) or 0,
                                ordinal=len(kept)))
    else:
        raise ValueError(f"turn not found: {before_turn_id}")
    data = b"".join(kept)
    write_whole(path, data)
    return replay(parse_rollout(data, os.fspath(path)))


def write_whole(path: str | os.PathLike[str], data: bytes) -> None:
    """Put ``data`` at ``path`` whole or not at all (blocking): written
    beside it, fsynced, then renamed into place, so a crash or a full disk
    leaves the old file (or none), never part of the new one.

    Raises:
      StorageFailure: it could not be written; nothing was left behind.
    """
    tmp = f"{os.fspath(path)}.tmp-{os.getpid()}"
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise StorageFailure.writing(os.fspath(path), exc) from None


def fork_lines(rollout: Rollout, new_id: str, forked_at_ms: int, last_turn_id: str | None = None) -> bytes:
    """A fork's rollout: the source's lines through the end of
    ``last_turn_id`` (all of them when None), under a new session meta that
    names the source in ``forked_from_id``, numbered from 0 again."""
    meta = rollout.session_meta
    if meta is None:
        raise ValueError(f"{rollout.path} has no session meta: it is not a thread's rollout")
    out = [encode_line(msgspec.structs.replace(meta, id=new_id, session_id=new_id, forked_from_id=meta.id,
                                               timestamp=format_timestamp(forked_at_ms)),
                       timestamp_ms=forked_at_ms, ordinal=0)]
    for line in rollout.lines:
        if isinstance(line.payload, SessionMeta):
            continue
        at = parse_timestamp(line.timestamp) or forked_at_ms
        out.append(encode_line(line.payload, timestamp_ms=at, ordinal=len(out)))
        if last_turn_id is not None and isinstance(line.payload, (TurnCompleteEvent, TurnAbortedEvent)) \
                and line.payload.turn_id == last_turn_id:
            break
    else:
        if last_turn_id is not None:
            raise ValueError(f"turn {last_turn_id} is not in {rollout.path}")
    return b"".join(out)
