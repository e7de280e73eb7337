"""0.171's streaming thread search and the search cancel requests
(experimental), through the real server beside the original 0.171.0 where
it is installed: ``thread/search/stream`` answers as ``thread/search``
does, each cancel answers ``{}`` and stops only a search of its own kind,
which is then answered ``-32600 "thread search cancelled"``; responses are
validated against the vendored schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio

from harness import ORIGINAL_0171_BIN, TIMEOUT, RpcClient, open_app_server
from conformance.test_escapes import OURS
from conformance.test_schema import violations
from conformance.test_thread_actions import start

#: Rounds of searches and cancels tried until each kind of cancel has won its race.
ROUNDS = 20
SERVERS = {"ours": OURS, "original": (str(ORIGINAL_0171_BIN),)}
SERVER_PARAMS = ["ours", pytest.param("original", marks=pytest.mark.skipif(
    not ORIGINAL_0171_BIN.exists(), reason="the original codex 0.171.0 binary is not installed"))]


async def responses(client: RpcClient, since: int, ids: set[Any]) -> dict[Any, dict[str, Any]]:
    """The responses to ``ids`` after ``client.log[since]``, by id, once
    all have come (each round trip of another request lets them arrive)."""
    with trio.fail_after(TIMEOUT):
        while True:
            got = {m["id"]: m for m in client.log[since:] if m.get("id") in ids and "method" not in m}
            if got.keys() == ids:
                return got
            await client.request("thread/loaded/list", {})


def found(result: dict[str, Any]) -> list[tuple[str, str]]:
    return [(r["thread"]["id"], r["snippet"]) for r in result["data"]]


@pytest.mark.parametrize("server", SERVER_PARAMS)
async def test_a_streamed_search_answers_as_thread_search_and_checks_its_term(
        server: str, codex_home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    async with open_app_server(codex_home, program=SERVERS[server], cwd=ws) as client:
        session, first = await start(client, ws)
        await session.turn(first, "the quick brown fox jumps")
        second = (await session.request("thread/start", {"cwd": str(ws)}))["thread"]["id"]
        await session.turn(second, "another brown thing")
        plain = await session.request("thread/search", {"searchTerm": "brown"})
        streamed = await session.request("thread/search/stream", {"searchTerm": "brown"})
        assert found(streamed) == found(plain) == [(second, "another brown thing"),
                                                   (first, "the quick brown fox jumps")]
        assert found(await session.request("thread/search/stream", {"searchTerm": "nomatch"})) == []
        for method in ("thread/search", "thread/search/stream"):
            blank = await client.call(method, {"searchTerm": "  "})
            assert blank["error"] == {"code": -32600, "message": "thread/search requires a non-empty searchTerm"}
        # The stream's limit is on the trimmed term, in UTF-8 bytes.
        assert found(await session.request("thread/search/stream", {"searchTerm": f" {'x' * 65_536} "})) == []
        for term in ("x" * 65_537, "\u00e9" * 32_769):
            long = await client.call("thread/search/stream", {"searchTerm": term})
            assert long["error"] == {"code": -32602,
                                     "message": "thread/search/stream searchTerm exceeds 65536 UTF-8 bytes"}
        assert found(await session.request("thread/search", {"searchTerm": "x" * 65_537})) == []
        assert violations(client, session.sent) == []


@pytest.mark.parametrize("server", SERVER_PARAMS)
async def test_a_search_cancel_stops_only_a_search_of_its_own_kind(
        server: str, codex_home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    async with open_app_server(codex_home, program=SERVERS[server], cwd=ws) as client:
        session, tid = await start(client, ws)
        await session.turn(tid, "the quick brown fox jumps")
        # Unknown ids: acknowledged all the same.
        for method, rid in (("thread/search/cancel", 999), ("thread/search/stream/cancel", "nope")):
            assert await session.request(method, {"requestId": rid}) == {}
        cancelled = {"code": -32600, "message": "thread search cancelled"}
        hit = [(tid, "the quick brown fox jumps")]
        # Each cancel follows its search in the same write; still, a search
        # may be done before its cancel is read (more often on a busy
        # machine), and is then answered as usual. Rounds go on (a bounded
        # number) until each kind has been seen stopped by its own cancel.
        stopped: set[str] = set()
        for attempt in range(ROUNDS):
            n = len(client.log)
            s1, c1, s2, c2, s3, c3 = ids = [f"{name}-{attempt}" for name in ("s1", "c1", "s2", "c2", "s3", "c3")]
            await client.send_raw(b"".join(json.dumps(msg).encode() + b"\n" for msg in (
                {"id": s1, "method": "thread/search/stream", "params": {"searchTerm": "brown"}},
                {"id": c1, "method": "thread/search/stream/cancel", "params": {"requestId": s1}},
                {"id": s2, "method": "thread/search", "params": {"searchTerm": "brown"}},
                {"id": c2, "method": "thread/search/cancel", "params": {"requestId": s2}},
                {"id": s3, "method": "thread/search", "params": {"searchTerm": "brown"}},
                {"id": c3, "method": "thread/search/stream/cancel", "params": {"requestId": s3}})))
            got = await responses(client, n, set(ids))
            assert [got[c]["result"] for c in (c1, c2, c3)] == [{}, {}, {}]
            # A cancel of the other kind never stops a search.
            assert found(got[s3]["result"]) == hit
            order = [m["id"] for m in client.log[n:] if m.get("id") in got]
            for kind, search, cancel in (("stream", s1, c1), ("plain", s2, c2)):
                if "error" in got[search]:
                    assert got[search]["error"] == cancelled
                    # A cancel comes before the error of the search it stopped.
                    assert order.index(cancel) < order.index(search)
                    stopped.add(kind)
                else:  # done before its cancel was read
                    assert found(got[search]["result"]) == hit
            if stopped == {"stream", "plain"}:
                break
        assert stopped == {"stream", "plain"}
        # A search already answered is left alone.
        assert await session.request("thread/search/cancel", {"requestId": s3}) == {}
        assert violations(client, session.sent) == []
