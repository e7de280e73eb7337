"""``trio-codex store export|import``: rollouts between the cluster's
PostgreSQL store and the original's JSONL format.

The store keeps each rollout line as it was written, so an export is the
rollout file byte for byte, readable by the original and by a
single-process trio-codex (put it under ``$CODEX_HOME/sessions``), and an
import of a rollout from either makes the thread available to the cluster:
the next node that activates it copies it into its own CODEX_HOME.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# The parser is built on every start of the CLI: what the verbs need is
# imported when they run.


def add_parser(sub: argparse._SubParsersAction) -> None:
    store = sub.add_parser("store", help="export or import rollouts of the cluster's PostgreSQL store")
    verbs = store.add_subparsers(dest="store_command", required=True)
    export = verbs.add_parser("export", help="write a thread's rollout as JSONL (the original's format)")
    export.add_argument("thread_id")
    export.add_argument("-o", "--output", metavar="FILE", help="the file to write (default: stdout)")
    imp = verbs.add_parser("import", help="add rollout files (JSONL) to the store")
    imp.add_argument("files", nargs="+", metavar="FILE")
    for verb in (export, imp):
        verb.add_argument("--store", metavar="postgresql://...", required=False,
                          help="the database (default: $TRIO_CODEX_STORE)")


async def _export(dsn: str, thread_id: str, output: str | None) -> int:
    import trio

    from .pg_store import open_pg_store

    store, pool = await open_pg_store(dsn)
    try:
        lines = await store.load_history(thread_id)
    finally:
        await trio.to_thread.run_sync(pool.close)
    if not lines:
        print(f"trio-codex: thread {thread_id} is not in the store", file=sys.stderr)
        return 1
    data = b"".join(line + b"\n" for line in lines)
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        await trio.to_thread.run_sync(Path(output).write_bytes, data)
    return 0


async def _import(dsn: str, files: list[str]) -> int:
    import trio

    from ..persistence.rollout import scan_rollout
    from .pg_store import open_pg_store
    from .ports import Fenced

    store, pool = await open_pg_store(dsn)
    status = 0
    try:
        for name in files:
            meta = await trio.to_thread.run_sync(scan_rollout, name)
            if meta is None:
                print(f"trio-codex: {name}: not a rollout (no session_meta line)", file=sys.stderr)
                status = 1
                continue
            data = await trio.to_thread.run_sync(Path(name).read_bytes)
            lines = [line for line in data.split(b"\n") if line.strip()]
            try:
                # Epoch 0: below any node's claim, so the first activation
                # fences out nothing but this import.
                if await store.activate(meta.id, 0) != 1:
                    raise Fenced(meta.id, 0, None)
                await store.append_items(meta.id, 0, lines)
            except Fenced:
                print(f"trio-codex: {name}: thread {meta.id} is already in the store; not imported",
                      file=sys.stderr)
                status = 1
                continue
            print(f"{meta.id}\t{len(lines)} lines")
    finally:
        await trio.to_thread.run_sync(pool.close)
    return status


def main(args: argparse.Namespace, default_dsn: str | None) -> int:
    dsn = args.store or default_dsn
    if not dsn:
        print("trio-codex: store: give --store postgresql://... (or set TRIO_CODEX_STORE)", file=sys.stderr)
        return 2
    import trio

    if args.store_command == "export":
        return trio.run(_export, dsn, args.thread_id, args.output)
    return trio.run(_import, dsn, args.files)
