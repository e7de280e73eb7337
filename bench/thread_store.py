"""The thread store at scale: listing, resuming a long thread, idle threads.

Questions, through the real server process over stdio (ours, and the
original where it finishes in reasonable time):

1. ``thread/list`` over 10,000 and 100,000 stored threads: how long from
   spawn to the first page (any index build or backfill included), and then
   how fast is a warm first page (default limit, and ``limit: 50``), a page
   with a filter (``cwd``, ``searchTerm``) and the next page by cursor?
   Target: under 50 ms (the original reportedly took 30-45 s at 49 k).
2. ``thread/resume`` of a thread with 10,000 items: time to the response
   and its size, against the paginated way: ``thread/resume`` with
   ``excludeTurns: true``, then the first page of ``thread/turns/list``
   (``limit`` 20, ``sortDirection`` desc) and of ``thread/items/list``
   (``limit`` 20, desc); and ``thread/read`` with ``includeTurns``.
3. RSS per loaded idle thread at 1,000 loaded threads (target under 50 KB).

    /work/venv/bin/python bench/thread_store.py                     # ours, and the original at 10k
    /work/venv/bin/python bench/thread_store.py --vs none --counts 10000,100000
    /work/venv/bin/python bench/thread_store.py --parts list --orig-counts 10000 --orig-timeout 180

The store is written by this script, as files in the original's 0.169
layout and format (``sessions/YYYY/MM/DD/rollout-<local time>-<uuid7>.jsonl``,
``history_mode: "paginated"``: session_meta, task_started, turn_context, the
user message as a ``response_item`` and an ``item_completed`` UserMessage
event, the agent message likewise, token_count, task_complete; see
``tests/fixtures/original/``). Listed threads are one turn each, created one
minute apart, ten working directories in turn (``cwd`` filter: a tenth of
them); the first message of thread ``i`` holds ``needle-7`` when
``i % 1000 == 7`` (``searchTerm``: one match in a thousand, a scan of every
preview), ``needle-x<i % 100>`` otherwise. The store for the
larger count is the smaller one plus the missing threads; before each of
our runs our index file (``trio_codex_threads.sqlite``) is deleted, so the
first start is a full build; a second start over the built index is timed
too. The long thread is 2,500 turns of 4 items (userMessage, reasoning,
agentMessage commentary, agentMessage final), each turn with its
turn_context and history ``response_item`` lines, as 0.169 writes them.

Timings are client wall clock from sending the request to reading its
response line; bytes are the response's ``result`` re-encoded as compact
JSON (the wire size within a few bytes). Every wait is bounded; a server
that does not answer in time is reported as timed out and killed. The
warm figures of the original stop after ``--orig-budget`` seconds each (the
"calls measured" row). The generated CODEX_HOMEs are removed at exit unless
``BENCH_KEEP_HOMES=1``.

Caveat: 0.169 answers ``thread/read`` of a paginated thread it has not
loaded with no turns when its own history database has none for it (true
of any copied-in rollout, so of these), hence its tiny figure there.
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec
import trio

from benchlib import (
    RUN_ROOT,
    AppClient,
    RpcFailed,
    ScriptedProcess,
    fmt,
    gather_limited,
    label,
    labels,
    log_path,
    make_home,
    median,
    parser,
    pct,
    print_table,
    progress,
    run_vs,
    server_argv,
    server_env,
    servers,
    tree_mem,
    workspace,
)

_enc = msgspec.json.Encoder()
#: Working directories of the listed threads; the cwd filter asks for the first.
CWDS = 10
OUR_INDEX = "trio_codex_threads.sqlite"
SEARCH = "needle-7"


class TimedOut(Exception):
    pass


# --- writing the store ------------------------------------------------------------------


def uuid7(ms: int, rng: random.Random) -> str:
    """A UUIDv7 (what the original uses for thread and turn ids) at ``ms``."""
    rand = rng.getrandbits(74)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (rand >> 62) << 64 | 0b10 << 62 | (rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


def iso(ms: int) -> str:
    """The lines' ``timestamp``: UTC with milliseconds, as the original."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def rollout_file(home: Path, tid: str, created_ms: int) -> Path:
    """Where the original puts it: dated folders and name in local time."""
    t = time.localtime(created_ms // 1000)
    return (home / "sessions" / time.strftime("%Y/%m/%d", t)
            / f"rollout-{time.strftime('%Y-%m-%dT%H-%M-%S', t)}-{tid}.jsonl")


class Lines:
    """One rollout's lines, with the running ordinal."""

    def __init__(self) -> None:
        self.out: list[bytes] = []

    def add(self, ms: int, kind: str, payload: dict) -> None:
        self.out.append(_enc.encode({"timestamp": iso(ms), "ordinal": len(self.out), "type": kind,
                                     "payload": payload}))

    def data(self) -> bytes:
        return b"\n".join(self.out) + b"\n"


def _usage(n: int) -> dict:
    return {"input_tokens": n, "cached_input_tokens": 0, "cache_write_input_tokens": 0, "output_tokens": 8,
            "reasoning_output_tokens": 0, "total_tokens": n + 8}


def session_meta(lines: Lines, tid: str, ms: int, cwd: str) -> None:
    lines.add(ms, "session_meta", {
        "account_scoped": True, "session_id": tid, "id": tid, "timestamp": iso(ms), "cwd": cwd,
        "runtime_workspace_roots": [cwd], "originator": "codex_python_sdk", "cli_version": "0.169.0",
        "source": "vscode", "model_provider": "mock",
        "base_instructions": {"text": "You are a coding agent running in the Codex CLI (bench store)."},
        "history_mode": "paginated"})


def turn(lines: Lines, tid: str, ms: int, cwd: str, rng: random.Random, user_text: str,
         items: list[tuple[str, str]], tokens: int) -> int:
    """One completed turn: ``items`` are (kind, text) with kind ``reasoning``
    or ``agent``, after the user message. Returns the time after it."""
    turn_id = uuid7(ms, rng)
    sec = ms // 1000
    lines.add(ms, "event_msg", {
        "type": "task_started", "turn_id": turn_id, "root_turn_id": turn_id, "started_at": sec,
        "model_context_window": 258400, "collaboration_mode_kind": "default"})
    lines.add(ms, "turn_context", {
        "turn_id": turn_id, "root_turn_id": turn_id, "disabled_plugin_ids": [], "cwd": cwd,
        "approval_policy": "on-request", "approvals_reviewer": "user",
        "permission_profile": {"type": "managed", "file_system": {"type": "restricted", "entries": [
            {"path": {"type": "special", "value": {"kind": "root"}}, "access": "read"}]}, "network": "restricted"},
        "active_permission_profile": {"id": ":read-only"}, "model": "mock-model",
        "collaboration_mode": {"mode": "default", "settings": {"model": "mock-model", "reasoning_effort": None,
                                                               "developer_instructions": None}},
        "multi_agent_version": "v1", "realtime_active": False, "summary": "none",
        "sandbox_policy": {"type": "read-only"}})
    ms += 5
    msg_id = uuid7(ms, rng)
    lines.add(ms, "response_item", {
        "type": "message", "id": f"msg_{msg_id}", "role": "user",
        "content": [{"type": "input_text", "text": user_text}],
        "internal_chat_message_metadata_passthrough": {"turn_id": turn_id}})
    lines.add(ms, "event_msg", {
        "type": "item_completed", "thread_id": tid, "turn_id": turn_id,
        "item": {"type": "UserMessage", "id": uuid7(ms, rng),
                 "content": [{"type": "text", "text": user_text, "text_elements": []}]},
        "started_at_ms": ms, "completed_at_ms": ms})
    last = ""
    for kind, text in items:
        ms += 20
        item_id = uuid7(ms, rng).replace("-", "")[:24]
        if kind == "reasoning":
            lines.add(ms, "event_msg", {
                "type": "item_completed", "thread_id": tid, "turn_id": turn_id,
                "item": {"type": "Reasoning", "id": f"rs_{item_id}", "summary_text": [text], "raw_content": []},
                "started_at_ms": ms, "completed_at_ms": ms})
            lines.add(ms, "response_item", {
                "type": "reasoning", "id": f"rs_{item_id}", "summary": [{"type": "summary_text", "text": text}],
                "content": None, "encrypted_content": None,
                "internal_chat_message_metadata_passthrough": {"turn_id": turn_id}})
        else:
            lines.add(ms, "event_msg", {
                "type": "item_completed", "thread_id": tid, "turn_id": turn_id,
                "item": {"type": "AgentMessage", "id": f"msg_{item_id}", "content": [{"type": "Text", "text": text}]},
                "started_at_ms": ms, "completed_at_ms": ms})
            lines.add(ms, "response_item", {
                "type": "message", "status": "completed", "id": f"msg_{item_id}", "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
                "internal_chat_message_metadata_passthrough": {"turn_id": turn_id}})
            last = text
    ms += 5
    lines.add(ms, "event_msg", {
        "type": "token_count",
        "info": {"total_token_usage": _usage(tokens), "last_token_usage": _usage(1000),
                 "last_usage_includes_reasoning": False, "model_context_window": 258400},
        "rate_limits": None})
    lines.add(ms, "event_msg", {
        "type": "task_complete", "turn_id": turn_id, "root_turn_id": turn_id, "last_agent_message": last,
        "started_at": sec, "completed_at": ms // 1000, "duration_ms": 30 + 20 * len(items)})
    return ms


def cwd_of(i: int) -> str:
    return str(RUN_ROOT / "ws" / f"proj{i % CWDS}")


def write_listed(home: Path, start: int, stop: int, base_ms: int) -> list[str]:
    """Threads ``start`` .. ``stop``-1 of the listing store, thread ``i``
    created at ``base_ms + i`` minutes. Returns their ids, oldest first."""
    rng = random.Random(start)
    made_dirs: set[Path] = set()
    ids = []
    for i in range(start, stop):
        ms = base_ms + i * 60_000
        tid = uuid7(ms, rng)
        cwd = cwd_of(i)
        needle = f" {SEARCH} " if i % 1000 == 7 else f" needle-x{i % 100} "
        user = f"Thread {i}: please look at module_{i % 997}.py and fix the flaky test{needle}in it."
        lines = Lines()
        session_meta(lines, tid, ms, cwd)
        turn(lines, tid, ms + 300, cwd, rng, user, [("agent", f"Done: module_{i % 997}.py fixed for thread {i}.")],
             11_000)
        path = rollout_file(home, tid, ms)
        if path.parent not in made_dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
            made_dirs.add(path.parent)
        with open(path, "wb") as f:
            f.write(lines.data())
        ids.append(tid)
    return ids


def write_long_thread(home: Path, turns: int, base_ms: int) -> tuple[str, int, int]:
    """One thread of ``turns`` turns x 4 items. Returns (id, items, file bytes)."""
    rng = random.Random(42)
    tid = uuid7(base_ms, rng)
    cwd = str(workspace())
    lines = Lines()
    session_meta(lines, tid, base_ms, cwd)
    ms = base_ms + 300
    filler = "lorem ipsum dolor sit amet " * 4
    for t in range(turns):
        ms = turn(lines, tid, ms, cwd, rng, f"Question {t}: what about step {t} of the migration? {filler}", [
            ("reasoning", f"Thinking about step {t}: {filler}"),
            ("agent", f"Looking at step {t} now. {filler}"),
            ("agent", f"Step {t} is done: {filler}{filler}"),
        ], 11_000 + 1000 * t) + 10_000
    path = rollout_file(home, tid, base_ms)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = lines.data()
    path.write_bytes(data)
    return tid, turns * 4, len(data)


# --- driving a server ---------------------------------------------------------------------


class Server:
    """An :class:`AppClient` in its own nursery, killed (not waited for)
    when a wait timed out."""

    def __init__(self, spec: str, home: Path, log: str) -> None:
        self.client = AppClient(server_argv(spec), server_env(home), workspace(), stderr_path=log_path(log))
        self.timed_out = False

    async def __aenter__(self) -> AppClient:
        self._nursery_cm = trio.open_nursery()
        nursery = await self._nursery_cm.__aenter__()
        await self.client.start(nursery)
        return self.client

    async def __aexit__(self, *exc: Any) -> Any:
        if self.timed_out or exc[0] is not None:
            self.client.proc.kill()
        await self.client.close(timeout=10)
        return await self._nursery_cm.__aexit__(*exc)


async def timed(client: AppClient, method: str, params: Any, timeout: float) -> tuple[float, Any, int]:
    """(ms, result, bytes) of one request; raises TimedOut, RpcFailed."""
    t0 = time.monotonic()
    try:
        result = await client.request(method, params, timeout=timeout)
    except trio.TooSlowError:
        raise TimedOut(f"{method}: timed out after {timeout:.0f} s") from None
    ms = (time.monotonic() - t0) * 1000
    return ms, result, len(_enc.encode(result))


async def repeat(client: AppClient, method: str, params: Any, calls: int, timeout: float,
                 budget: float) -> tuple[list[float], Any, int]:
    """Up to ``calls`` calls, stopping once ``budget`` seconds have gone."""
    times: list[float] = []
    result: Any = None
    size = 0
    t_end = time.monotonic() + budget
    for _ in range(calls):
        ms, result, size = await timed(client, method, params, timeout)
        times.append(ms)
        if time.monotonic() > t_end:
            break
    return times, result, size


async def init(client: AppClient, timeout: float) -> None:
    try:
        with trio.fail_after(timeout):
            await client.initialize()
    except trio.TooSlowError:
        raise TimedOut(f"initialize: timed out after {timeout:.0f} s") from None


def note(out: dict, text: str) -> None:
    out.setdefault("notes", []).append(text)
    progress(f"  {text}")


# --- 1. thread/list -------------------------------------------------------------------------


async def list_run(spec: str, home: Path, n: int, ids: list[str], args: argparse.Namespace, *,
                   second_start: bool) -> dict:
    """Spawn over the store, first list, then the warm figures."""
    is_orig = spec == "orig"
    timeout = args.orig_timeout if is_orig else args.timeout
    budget = args.orig_budget if is_orig else 60.0
    out: dict = {}
    newest = ids[-1]
    srv = Server(spec, home, f"thread-store-list-{label(spec)}-{n}")
    async with srv as client:
        try:
            await init(client, timeout)
            out["init_ms"] = (time.monotonic() - client.spawned_at) * 1000
            ms, page, size = await timed(client, "thread/list", {}, timeout)
            out["first_ms"] = (time.monotonic() - client.spawned_at) * 1000
            out["first_call_ms"] = ms
            data = page["data"]
            if not data or data[0]["id"] != newest:
                note(out, f"{label(spec)} {n}: first page's first row is {data[0]['id'] if data else None}, "
                          f"expected the newest thread {newest}")
            if second_start:
                return out
            # warm: the default page, limit 50
            t, page, size = await repeat(client, "thread/list", {}, args.calls, timeout, budget)
            out.update(def_p50=median(t), def_p99=pct(t, 99), def_rows=len(page["data"]), def_bytes=size,
                       def_calls=len(t))
            t, page50, size = await repeat(client, "thread/list", {"limit": 50}, args.calls, timeout, budget)
            out.update(l50_p50=median(t), l50_p99=pct(t, 99), l50_rows=len(page50["data"]), l50_bytes=size)
            if [r["id"] for r in page50["data"]] != ids[::-1][:len(page50["data"])]:
                note(out, f"{label(spec)} {n}: limit 50 page is not the newest threads, newest first")
            # cursor: the page after the limit-50 page
            cursor = page50.get("nextCursor")
            if cursor:
                t, nxt, size = await repeat(client, "thread/list", {"limit": 50, "cursor": cursor}, args.calls,
                                            timeout, budget)
                out.update(next_p50=median(t), next_p99=pct(t, 99), next_rows=len(nxt["data"]))
                if [r["id"] for r in nxt["data"]] != ids[::-1][50:50 + len(nxt["data"])]:
                    note(out, f"{label(spec)} {n}: the next page (cursor) is not threads 51.. newest first")
            else:
                note(out, f"{label(spec)} {n}: no nextCursor on the limit-50 page")
            # filters
            cwd = cwd_of(0)
            t, pc, _ = await repeat(client, "thread/list", {"limit": 50, "cwd": cwd}, args.calls, timeout, budget)
            out.update(cwd_p50=median(t), cwd_p99=pct(t, 99), cwd_rows=len(pc["data"]))
            bad = [r["id"] for r in pc["data"] if r.get("cwd") != cwd]
            if bad or len(pc["data"]) != min(50, (n + CWDS - 1) // CWDS):
                note(out, f"{label(spec)} {n}: cwd filter gave {len(pc['data'])} rows, {len(bad)} with another cwd")
            t, ps, _ = await repeat(client, "thread/list", {"limit": 50, "searchTerm": SEARCH}, args.calls,
                                    timeout, budget)
            expected = sum(1 for i in range(n) if i % 1000 == 7)
            out.update(search_p50=median(t), search_p99=pct(t, 99), search_rows=len(ps["data"]))
            if len(ps["data"]) != min(50, expected):
                note(out, f"{label(spec)} {n}: searchTerm {SEARCH!r} gave {len(ps['data'])} rows, "
                          f"expected {min(50, expected)}")
            out["rss_mb"] = tree_mem(client.pid)[0] / 1024
        except (TimedOut, RpcFailed) as exc:
            srv.timed_out = True
            note(out, f"{label(spec)} {n}: {exc}")
    return out


async def part_list(specs: list[str], args: argparse.Namespace) -> dict[str, dict[int, dict]]:
    home = make_home("http://127.0.0.1:9/v1", "thread-store-list")
    base_ms = int(time.time() * 1000) - max(args.counts) * 60_000 - 86_400_000
    ids: list[str] = []
    results: dict[str, dict[int, dict]] = {s: {} for s in specs}
    for n in sorted(args.counts):
        t0 = time.monotonic()
        ids += write_listed(home, len(ids), n, base_ms)
        progress(f"store at {n} rollouts (written in {time.monotonic() - t0:.1f} s)")
        for spec in specs:
            if spec == "orig" and n not in args.orig_counts:
                continue
            if spec != "orig":
                (home / OUR_INDEX).unlink(missing_ok=True)
                for suffix in ("-wal", "-shm"):
                    (home / (OUR_INDEX + suffix)).unlink(missing_ok=True)
            progress(f"thread/list over {n} threads: {label(spec)} ...")
            r = await list_run(spec, home, n, ids, args, second_start=False)
            if "first_ms" in r:
                again = await list_run(spec, home, n, ids, args, second_start=True)
                r["restart_ms"] = again.get("first_ms")
                r.setdefault("notes", []).extend(again.get("notes", []))
            results[spec][n] = r
    return results


# --- 2. the long thread -----------------------------------------------------------------------


async def resume_run(spec: str, home: Path, tid: str, args: argparse.Namespace) -> dict:
    is_orig = spec == "orig"
    timeout = args.orig_timeout if is_orig else args.timeout
    out: dict = {}

    def shape(result: dict) -> tuple[int, int]:
        turns = result["thread"].get("turns") or []
        return len(turns), sum(len(t.get("items") or []) for t in turns)

    async def step(key: str, method: str, params: dict, client: AppClient) -> Any:
        try:
            ms, result, size = await timed(client, method, params, timeout)
        except RpcFailed as exc:
            note(out, f"{label(spec)} {method} {params.get('excludeTurns', '')}: {exc}")
            return None
        out[f"{key}_ms"], out[f"{key}_bytes"] = ms, size
        return result

    srv = Server(spec, home, f"thread-store-resume-{label(spec)}")
    # A: thread/read (not loaded), then the full resume, then resume again (loaded)
    async with srv as client:
        try:
            await init(client, timeout)
            r = await step("read_cold", "thread/read", {"threadId": tid, "includeTurns": True}, client)
            if r is not None:
                out["read_cold_turns"], out["read_cold_items"] = shape(r)
            rss0 = tree_mem(client.pid)[0]
            r = await step("resume", "thread/resume", {"threadId": tid}, client)
            if r is not None:
                out["resume_turns"], out["resume_items"] = shape(r)
                out["resume_rss_mb"] = (tree_mem(client.pid)[0] - rss0) / 1024
            await step("resume_again", "thread/resume", {"threadId": tid}, client)
            # The first pages of the loaded thread once the process has
            # settled (our resume starts loading the model SDK in the
            # background, start-up work that B's first page competes with).
            await trio.sleep(args.settle)
            await step("turns_settled", "thread/turns/list",
                       {"threadId": tid, "limit": 20, "sortDirection": "desc"}, client)
            await step("items_settled", "thread/items/list",
                       {"threadId": tid, "limit": 20, "sortDirection": "desc"}, client)
        except TimedOut as exc:
            srv.timed_out = True
            note(out, f"{label(spec)}: {exc}")
    # B: resume excludeTurns, then the pages
    srv = Server(spec, home, f"thread-store-resume2-{label(spec)}")
    async with srv as client:
        try:
            await init(client, timeout)
            r = await step("resume_ex", "thread/resume", {"threadId": tid, "excludeTurns": True}, client)
            if r is not None and r["thread"].get("turns"):
                note(out, f"{label(spec)}: excludeTurns resume still carried {len(r['thread']['turns'])} turns")
            r = await step("turns_page", "thread/turns/list",
                           {"threadId": tid, "limit": 20, "sortDirection": "desc"}, client)
            if r is not None:
                out["turns_page_rows"] = len(r["data"])
                times, _, _ = await repeat(client, "thread/turns/list",
                                           {"threadId": tid, "limit": 20, "sortDirection": "desc"}, 10,
                                           timeout, 30.0)
                out["turns_page_p50"] = median(times)
                if r.get("nextCursor"):
                    ms, r2, _ = await timed(client, "thread/turns/list", {
                        "threadId": tid, "limit": 20, "sortDirection": "desc", "cursor": r["nextCursor"]},
                        timeout)
                    out["turns_next_ms"] = ms
            r = await step("items_page", "thread/items/list",
                           {"threadId": tid, "limit": 20, "sortDirection": "desc"}, client)
            if r is not None:
                out["items_page_rows"] = len(r["data"])
                times, _, _ = await repeat(client, "thread/items/list",
                                           {"threadId": tid, "limit": 20, "sortDirection": "desc"}, 10,
                                           timeout, 30.0)
                out["items_page_p50"] = median(times)
            r = await step("read_warm", "thread/read", {"threadId": tid, "includeTurns": True}, client)
            if r is not None:
                out["read_warm_turns"], out["read_warm_items"] = shape(r)
        except TimedOut as exc:
            srv.timed_out = True
            note(out, f"{label(spec)}: {exc}")
    return out


async def part_resume(specs: list[str], args: argparse.Namespace) -> tuple[dict[str, dict], dict]:
    home = make_home("http://127.0.0.1:9/v1", "thread-store-resume")
    t0 = time.monotonic()
    tid, items, size = write_long_thread(home, args.turns, int(time.time() * 1000) - 86_400_000 * 30)
    info = {"items": items, "turns": args.turns, "file_mb": size / 1e6}
    progress(f"wrote a {args.turns}-turn thread ({items} items, {size / 1e6:.1f} MB) in {time.monotonic() - t0:.1f} s")
    results = {}
    for spec in specs:
        progress(f"resume of the long thread: {label(spec)} ...")
        results[spec] = await resume_run(spec, home, tid, args)
    return results, info


# --- 2b. the searchTerm query alone --------------------------------------------------------------

def part_query(args: argparse.Namespace) -> list[list[str]]:
    """``searchTerm``'s query alone, in this process, over our index holding
    the listing's rows (their previews, ``--counts``): through the trigram
    index as ``thread/list`` runs it, and the LIKE scan it replaced (the same
    filters and order, straight SQL), interleaved over ``4 x --calls``
    calls; no process, pipe or scheduler of a server in the figures."""
    from trio_codex.runtime.persistence import rollout, thread_index

    base_ms = int(time.time() * 1000) - max(args.counts) * 60_000
    scan_sql = (f"SELECT {thread_index.SELECT_COLUMNS} FROM threads WHERE archived = 0 "
                "AND source_kind IN ('cli', 'vscode') AND (name LIKE ? ESCAPE '\\' OR preview LIKE ? ESCAPE '\\') "
                "ORDER BY created_at DESC, id DESC LIMIT 51")
    pattern = thread_index.like_pattern(SEARCH)
    rows: list[list[str]] = []
    for n in sorted(args.counts):
        path = RUN_ROOT / f"thread-store-query-{n}.sqlite"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        rng = random.Random(n)
        metas = (rollout.ThreadMeta(
            id=uuid7(base_ms + i * 60_000, rng), rollout_path=f"/nowhere/{i}.jsonl", created_at=base_ms + i * 60_000,
            updated_at=base_ms + i * 60_000, recency_at=base_ms + i * 60_000, source="vscode",
            model_provider="mock", cwd=cwd_of(i), cli_version="0.169.0",
            preview=f"Thread {i}: please look at module_{i % 997}.py and fix the flaky test"
                    f"{f' {SEARCH} ' if i % 1000 == 7 else f' needle-x{i % 100} '}in it.") for i in range(n))
        progress(f"searchTerm query over {n} indexed rows ...")
        with thread_index.ThreadIndex(path) as index:
            t0 = time.process_time()
            index.upsert_many(metas)
            build_s = time.process_time() - t0
            conn = index._connect()
            indexed: list[float] = []
            scanned: list[float] = []
            same = True
            for k in range(args.calls * 4):
                t0 = time.perf_counter()
                page = index.list_threads(search_term=SEARCH, limit=50)
                t1 = time.perf_counter()
                scan = conn.execute(scan_sql, (pattern, pattern)).fetchall()
                t2 = time.perf_counter()
                indexed.append((t1 - t0) * 1000)
                scanned.append((t2 - t1) * 1000)
                same = same and [m.id for m in page.rows] == [row[0] for row in scan[:50]]
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        rows += [[f"{n:,} rows: index build (rows and title index), CPU s", f"{build_s:.1f}"],
                 [f"  searchTerm {SEARCH!r} through the trigram index: p50 / p99 ms",
                  f"{median(indexed):.2f} / {pct(indexed, 99):.2f}"],
                 ["  the LIKE scan it replaced: p50 / p99 ms", f"{median(scanned):.2f} / {pct(scanned, 99):.2f}"],
                 ["  same rows", "yes" if same else "NO"]]
    return rows


# --- 3. loaded idle threads ----------------------------------------------------------------------


async def rss_run(spec: str, base_url: str, args: argparse.Namespace) -> dict:
    """As bench/startup.py's loaded_threads, after a warm-up of ``--warmup``
    threads; 16 thread/start in flight on one connection."""
    home = make_home(base_url, f"thread-store-rss-{label(spec)}")
    out: dict = {}
    srv = Server(spec, home, f"thread-store-rss-{label(spec)}")
    async with srv as client:
        try:
            await init(client, args.timeout)
            with trio.fail_after(args.timeout):
                await gather_limited([client.thread_start] * args.warmup, 16)
            await trio.sleep(args.settle)
            rss0 = tree_mem(client.pid)[0]
            t0 = time.monotonic()
            with trio.fail_after(args.timeout * 3):
                tids = await gather_limited([client.thread_start] * args.loaded, 16)
            out["start_ms"] = (time.monotonic() - t0) * 1000 / args.loaded
            await trio.sleep(args.settle)
            rss1 = tree_mem(client.pid)[0]
            out.update(rss0_mb=rss0 / 1024, rss1_mb=rss1 / 1024, per_thread_kb=(rss1 - rss0) / args.loaded,
                       started=len(set(tids)))
        except (trio.TooSlowError, TimedOut, RpcFailed) as exc:
            srv.timed_out = True
            note(out, f"{label(spec)} loaded threads: {exc!r}")
    return out


# --- the report ----------------------------------------------------------------------------------


def rows_for(results: list[dict], spec: list[tuple[str, str, str]]) -> list[list[str]]:
    rows = []
    for key, title, form in spec:
        vals = [r.get(key) for r in results]
        row = [title, *[fmt(v, form) for v in vals]]
        if len(vals) == 2:
            a, b = vals
            row.append(f"{a / b:.3f}" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else "-")
        rows.append(row)
    return rows


LIST_ROWS = [
    ("init_ms", "spawn -> initialize response, ms", ".0f"),
    ("first_ms", "spawn -> first thread/list page (index build), ms", ".0f"),
    ("first_call_ms", "  that first thread/list call alone, ms", ".0f"),
    ("restart_ms", "restart over the built store: spawn -> first page, ms", ".0f"),
    ("def_p50", "warm first page, default limit: p50 ms", ".2f"),
    ("def_p99", "  p99 ms", ".2f"),
    ("def_rows", "  rows", "d"),
    ("def_bytes", "  bytes", "d"),
    ("def_calls", "  calls measured", "d"),
    ("l50_p50", "warm first page, limit 50: p50 ms", ".2f"),
    ("l50_p99", "  p99 ms", ".2f"),
    ("l50_bytes", "  bytes", "d"),
    ("next_p50", "next page by cursor (limit 50): p50 ms", ".2f"),
    ("next_p99", "  p99 ms", ".2f"),
    ("cwd_p50", "cwd filter (1/10 of threads, limit 50): p50 ms", ".2f"),
    ("cwd_p99", "  p99 ms", ".2f"),
    ("search_p50", f"searchTerm {SEARCH!r} (1 in 1000, limit 50): p50 ms", ".2f"),
    ("search_p99", "  p99 ms", ".2f"),
    ("search_rows", "  rows", "d"),
    ("rss_mb", "RSS after the listing, MB", ".1f"),
]

RESUME_ROWS = [
    ("read_cold_ms", "thread/read includeTurns (not loaded), ms", ".0f"),
    ("read_cold_bytes", "  bytes", ",d"),
    ("read_cold_items", "  items returned", "d"),
    ("resume_ms", "thread/resume (full turns), ms", ".0f"),
    ("resume_bytes", "  bytes", ",d"),
    ("resume_items", "  items returned", "d"),
    ("resume_rss_mb", "  RSS added by the loaded thread, MB", ".1f"),
    ("resume_again_ms", "thread/resume again (loaded), ms", ".0f"),
    ("turns_settled_ms", "  then, settled: thread/turns/list first page (20, desc), ms", ".1f"),
    ("items_settled_ms", "  then, settled: thread/items/list first page (20, desc), ms", ".1f"),
    ("resume_ex_ms", "thread/resume excludeTurns (fresh process), ms", ".0f"),
    ("resume_ex_bytes", "  bytes", ",d"),
    ("turns_page_ms", "thread/turns/list first page (20, desc), ms", ".1f"),
    ("turns_page_bytes", "  bytes", ",d"),
    ("turns_page_rows", "  turns", "d"),
    ("turns_page_p50", "  p50 over 10 more calls, ms", ".1f"),
    ("turns_next_ms", "  next page by cursor, ms", ".1f"),
    ("items_page_ms", "thread/items/list first page (20, desc), ms", ".1f"),
    ("items_page_bytes", "  bytes", ",d"),
    ("items_page_rows", "  items", "d"),
    ("items_page_p50", "  p50 over 10 more calls, ms", ".1f"),
    ("read_warm_ms", "thread/read includeTurns (loaded), ms", ".0f"),
    ("read_warm_bytes", "  bytes", ",d"),
    ("read_warm_items", "  items returned", "d"),
]

RSS_ROWS = [
    ("rss0_mb", "RSS after warm-up threads, MB", ".1f"),
    ("rss1_mb", "RSS after the loaded threads, MB", ".1f"),
    ("per_thread_kb", "RSS per loaded idle thread, KB", ".1f"),
    ("start_ms", "wall per thread/start (16 in flight), ms", ".2f"),
    ("started", "threads started", "d"),
]


async def main_async(args: argparse.Namespace) -> None:
    specs = servers(args)
    names = labels(specs)
    header = ["figure", *names] + (["ours/orig"] if len(names) == 2 else [])
    t_start = time.monotonic()
    notes: list[str] = []
    sections: list[tuple[Any, ...]] = []
    if "list" in args.parts:
        lists = await part_list(specs, args)
        for n in sorted(args.counts):
            res = [lists[s].get(n, {}) for s in specs]
            for r in res:
                notes += r.get("notes", [])
            sections.append((f"== thread/list over {n:,} stored threads ({args.calls} warm calls each)",
                             rows_for(res, LIST_ROWS)))
    if "resume" in args.parts:
        res, info = await part_resume(specs, args)
        for s in specs:
            notes += res[s].get("notes", [])
        sections.append((f"== a thread of {info['items']:,} items ({info['turns']:,} turns x userMessage, reasoning, "
                         f"2 agentMessage; rollout {info['file_mb']:.1f} MB)",
                         rows_for([res[s] for s in specs], RESUME_ROWS)))
    if "query" in args.parts:
        sections.append(("== the searchTerm query alone, in this process", part_query(args), ["figure", "ours"]))
    if "rss" in args.parts:
        with ScriptedProcess() as scripted:
            res = []
            for s in specs:
                progress(f"{args.loaded} loaded idle threads: {label(s)} ...")
                res.append(await rss_run(s, scripted.base_url, args))
        for r in res:
            notes += r.get("notes", [])
        sections.append((f"== {args.loaded:,} loaded idle threads (after {args.warmup} warm-up threads)",
                         rows_for(res, RSS_ROWS)))
    for title, rows, *own_header in sections:
        print(title)
        print_table(rows, own_header[0] if own_header else header)
        print()
    for n in notes:
        print(f"  note: {n}")
    print(f"(bench wall {time.monotonic() - t_start:.0f} s)")


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--parts", default="list,resume,rss", type=lambda s: s.split(","),
                   help="which of list,resume,query,rss (default list,resume,rss)")
    p.add_argument("--counts", default="10000,100000", type=lambda s: [int(x) for x in s.split(",")],
                   help="stored thread counts for thread/list")
    p.add_argument("--orig-counts", default="10000", type=lambda s: [int(x) for x in s.split(",") if x],
                   help="the counts the original is run at (default 10000)")
    p.add_argument("--calls", type=int, default=50, help="warm calls per thread/list figure")
    p.add_argument("--turns", type=int, default=2500, help="turns of the long thread (4 items each)")
    p.add_argument("--loaded", type=int, default=1000, help="loaded idle threads")
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--settle", type=float, default=1.0)
    p.add_argument("--timeout", type=float, default=120.0, help="bound on one request to ours, s")
    p.add_argument("--orig-timeout", type=float, default=120.0, help="bound on one request to the original, s")
    p.add_argument("--orig-budget", type=float, default=20.0,
                   help="seconds of warm calls per figure for the original (it may be slow)")
    run_vs(p, main_async)


if __name__ == "__main__":
    main()
