"""``kill -9`` at a random moment, then what survives: one round.

A round runs the real server with two threads turning at once (one never
asks, the other asks approval for every command and gets random answers),
turns drawn at random from streamed replies, shell and unified exec
commands, patches, plans and parallel calls, and kills the server with
SIGKILL at a random moment. It then starts a new server on the same
CODEX_HOME and checks, as a client would:

* every item the client saw in ``item/completed`` comes back from
  ``thread/resume`` in its turn, field for field (but its times), except a
  declined command, which the original does not record either;
* every turn the client saw completed comes back with the same status; every
  turn the rollout left open comes back ``interrupted`` with no
  ``completedAt``, as the original marks it;
* every rollout reads (no bad line; a torn last line is counted, and must
  be gone once the thread writes again);
* each thread takes a new turn, whose model request answers every call.

``tests/conformance/test_kill9.py`` runs a few rounds; ``bench/kill9.py``
runs a hundred and more.
"""

from __future__ import annotations

import itertools
import json
import random
import signal
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from trio_codex.runtime.persistence import rollout as r

from trio_codex.runtime.client import ClientClosed

from . import TIMEOUT, RpcClient, open_app_server

TIMES = ("startedAtMs", "completedAtMs")


def _call(name: str, **args: Any) -> str:
    return f"[[call={name} {json.dumps(args)}]]"


def _prompts(n: int) -> list[str]:
    """The turns a thread draws from; ``n`` makes names unique."""
    patch = f"*** Begin Patch\n*** Add File: f{n}.txt\n+line {n}\n*** End Patch\n"
    return [
        f"[[deltas=40 delay_ms=4]] a streamed reply {n}",
        _call("shell_command", command=f"echo shell {n}; sleep 0.05") + f" a command {n}",
        _call("exec_command", cmd=f"echo unified {n}; sleep 0.05; echo done") + f" unified exec {n}",
        f"[[custom=apply_patch {json.dumps(patch)}]] a patch {n}",
        _call("update_plan", plan=[{"step": f"step {n}", "status": "in_progress"}]) + f" a plan {n}",
        _call("shell_command", command=f"echo a{n}") + _call("shell_command", command=f"echo b{n}")
        + f" two calls {n}",
    ]


def untimed(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k not in TIMES}


@dataclass
class Seen:
    """What the client saw before the kill."""

    #: (thread id, turn id, item id) -> the item, without its times
    items: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    #: (thread id, turn id) -> the status turn/completed gave
    turn_status: dict[tuple[str, str], str] = field(default_factory=dict)
    #: thread id -> the last method seen for it: where the kill fell
    last: dict[str, str] = field(default_factory=dict)


@dataclass
class RoundResult:
    kill_after: float
    phases: Counter[str]
    items_seen: int = 0
    declined_unrecorded: int = 0
    lost: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    turns_seen_done: int = 0
    turns_left_open: int = 0
    misreported: list[str] = field(default_factory=list)
    rollouts: int = 0
    unreadable: list[str] = field(default_factory=list)
    torn_tails: int = 0
    torn_after_recovery: int = 0
    failed_after: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.changed or self.misreported or self.unreadable or self.failed_after
                    or self.torn_after_recovery)


async def run_round(codex_home: Path, workspace: Path, rng: random.Random, *, kill_within: float = 1.5,
                    requests: Any = None) -> RoundResult:
    """One round (see the module docstring). ``requests``: the scripted
    server's recorded requests, to check the model's history after the
    crash."""
    seen = Seen()
    kill_after = rng.uniform(0.05, kill_within)
    tids = await _run_until_killed(codex_home, workspace, rng, seen, kill_after)
    result = RoundResult(kill_after, Counter(seen.last.get(t, "before any turn") for t in tids))
    before = {id(req) for req in requests} if requests is not None else set()
    async with open_app_server(codex_home) as client:
        await client.initialize()
        resumed = [tid for tid in tids if await _check_thread(client, tid, seen, result)]
        _check_rollouts(codex_home, result)
        for tid in resumed:
            _, msgs = await client.turn(tid, "after the crash")
            status = msgs[-1]["params"]["turn"]["status"]
            if status != "completed":
                result.failed_after.append(f"{tid}: the turn after the crash ended {status}")
    if requests is not None:
        for req in list(requests):
            if id(req) not in before:
                _check_pairs(req.body, result)
    result.torn_after_recovery = sum(
        r.read_rollout(entry.path).torn_tail for entry, _ in r.iter_rollout_files(codex_home))
    return result


async def _run_until_killed(codex_home: Path, workspace: Path, rng: random.Random, seen: Seen,
                            kill_after: float) -> list[str]:
    async with open_app_server(codex_home) as client, trio.open_nursery() as nursery:
        proc = client.proc
        assert proc is not None
        await client.initialize()
        tids = []
        for approval in ("never", "untrusted"):
            started = await client.request("thread/start", {
                "cwd": str(workspace), "approvalPolicy": approval, "sandbox": "danger-full-access"})
            tids.append(started["thread"]["id"])
        done: dict[str, trio.Event] = {}
        drained = trio.Event()
        names = itertools.count(rng.randrange(1 << 30))
        nursery.start_soon(_dispatch, client, rng, seen, done, drained)
        async with trio.open_nursery() as driving:
            for tid in tids:
                driving.start_soon(_turns, client, tid, rng, done, names)
            await trio.sleep(kill_after)
            proc.send_signal(signal.SIGKILL)
            driving.cancel_scope.cancel()
        with trio.fail_after(TIMEOUT):
            await proc.wait()
            await drained.wait()
        nursery.cancel_scope.cancel()
    return tids


async def _turns(client: RpcClient, tid: str, rng: random.Random, done: dict[str, trio.Event], names: Any) -> None:
    while True:
        text = rng.choice(_prompts(next(names)))
        result = await client.request("turn/start", {"threadId": tid, "input": [{"type": "text", "text": text}]})
        await done.setdefault(result["turn"]["id"], trio.Event()).wait()


async def _dispatch(client: RpcClient, rng: random.Random, seen: Seen, done: dict[str, trio.Event],
                    drained: trio.Event) -> None:
    """Record what the server reports, answer approvals, until its output
    ends: what it wrote before it died counts as seen."""
    while True:
        try:
            msg = await client.next_message()
        except trio.EndOfChannel:
            drained.set()
            return
        method = msg.get("method", "")
        params = msg.get("params") or {}
        if "threadId" in params:
            seen.last[params["threadId"]] = method
        if "id" in msg:
            try:
                await client.send({"id": msg["id"], "result": {
                    "decision": rng.choice(["accept", "accept", "acceptForSession", "decline"])}})
            except ClientClosed:
                pass
        elif method == "item/completed":
            seen.items[(params["threadId"], params["turnId"], params["item"]["id"])] = untimed(params["item"])
        elif method == "turn/completed":
            turn = params["turn"]
            seen.turn_status[(params["threadId"], turn["id"])] = turn["status"]
            done.setdefault(turn["id"], trio.Event()).set()


async def _check_thread(client: RpcClient, tid: str, seen: Seen, result: RoundResult) -> bool:
    """Compare the resumed thread with what was seen; False if it has no
    rollout to resume (killed before its first turn reached the disk)."""
    response = await client.call("thread/resume", {"threadId": tid})
    turns = response.get("result", {}).get("thread", {}).get("turns", [])
    by_turn = {t["id"]: t for t in turns}
    for (thread_id, turn_id, item_id), item in seen.items.items():
        if thread_id != tid:
            continue
        result.items_seen += 1
        if item["type"] == "commandExecution" and item["status"] == "declined":
            result.declined_unrecorded += 1
            continue
        found = [i for i in by_turn.get(turn_id, {}).get("items", []) if i["id"] == item_id]
        if not found:
            result.lost.append(f"{tid}/{turn_id}: {item['type']} {item_id}")
        elif untimed(found[0]) != item:
            result.changed.append(f"{tid}/{turn_id}: {item['type']} {item_id}: {untimed(found[0])} != {item}")
    for (thread_id, turn_id), status in seen.turn_status.items():
        if thread_id != tid:
            continue
        result.turns_seen_done += 1
        got = by_turn.get(turn_id, {}).get("status")
        if got != status:
            result.misreported.append(f"{tid}/{turn_id}: seen {status}, resumed {got}")
    for turn in turns:
        if turn["status"] == "interrupted":
            result.turns_left_open += 1
            if turn.get("completedAt") is not None:
                result.misreported.append(f"{tid}/{turn['id']}: interrupted with a completedAt")
    return "result" in response


def _check_rollouts(codex_home: Path, result: RoundResult) -> None:
    for entry, _ in r.iter_rollout_files(codex_home):
        result.rollouts += 1
        try:
            rollout = r.read_rollout(entry.path)
            r.replay(rollout)
        except (OSError, ValueError) as exc:
            result.unreadable.append(f"{entry.path}: {exc}")
            continue
        if rollout.bad_lines:
            result.unreadable.append(f"{entry.path}: {rollout.bad_lines} bad lines")
        result.torn_tails += rollout.torn_tail


def _check_pairs(body: Any, result: RoundResult) -> None:
    """Every call in a model request is answered, and every answer called."""
    items = body.get("input", []) if isinstance(body, dict) else []
    calls = {i.get("call_id") for i in items if isinstance(i, dict) and i.get("type", "").endswith("_call")}
    outputs = {i.get("call_id") for i in items if isinstance(i, dict) and i.get("type", "").endswith("_call_output")}
    if calls != outputs:
        result.failed_after.append(f"a model request after the crash pairs calls {sorted(calls - outputs)} "
                                   f"and outputs {sorted(outputs - calls)} with nothing")
