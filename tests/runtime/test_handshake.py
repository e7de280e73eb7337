"""The start-up handshake (runtime/handshake.py): a stdio client's
``initialize`` answered before the server is imported gets the answer the
connection would give, the connection adopts it as if it had handled it,
and every other first frame is left to the connection unchanged."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness import open_app_server
from harness.fuzz import frame as fuzzed_frame
from harness.fuzz import params_schemas
from hypothesis_jsonschema import from_schema
from trio_codex.actors.analytics.facts import Recorder
from trio_codex.actors.approvals import run_approvals
from trio_codex.actors.connection import Connection
from trio_codex.actors.hub import run_hub
from trio_codex.runtime import handshake
from trio_codex.runtime.config import load_settings
from trio_codex.runtime.kernel.mailbox import open_mailbox
from trio_codex.runtime.protocol.methods import METHODS
from trio_codex.runtime.protocol.v2.initialize import InitializeParams
from trio_codex.runtime.server.info import ServerInfo
from trio_codex.transports.framing import DEFAULT_MAX_LINE
from trio_codex.transports.memory import memory_frame_pair

#: Params the fast path must answer, each as the connection does.
WELL_FORMED: list[dict[str, Any]] = [
    {"clientInfo": {"name": "codex_python_sdk", "version": "0.163.0"}},
    {"clientInfo": {"name": "t", "title": "A title", "version": "0.169.0"}, "capabilities": None},
    {"clientInfo": {"name": "vscode", "version": "1.2.3-beta"},
     "capabilities": {"experimentalApi": True, "optOutNotificationMethods": ["thread/started", "item/agentMessage/delta"]}},
    {"clientInfo": {"name": "tab\tand é", "version": ""}, "capabilities": {"requestAttestation": True}},
    {"clientInfo": {"name": "x", "version": "1", "extra": 1}, "capabilities": {"optOutNotificationMethods": None},
     "unknownField": [1, 2]},
]


def line(params: Any, rid: Any = 1, method: str = "initialize") -> bytes:
    return json.dumps({"id": rid, "method": method, "params": params}).encode()


async def normal_answer(home: Path, frame: bytes, recorder: Recorder | None = None,
                        accepted: handshake.Accepted | None = None) -> tuple[dict[str, Any] | None, Connection]:
    """What a fresh server's connection answers to ``frame`` as its first
    frame (None: no answer within a short wait), or, with ``accepted``,
    the connection that adopted it."""
    settings_ = load_settings(codex_home=home)
    recorder = recorder or Recorder(None)
    async with trio.open_nursery() as nursery:
        hub = await nursery.start(run_hub)
        approvals = await nursery.start(run_approvals)
        threads, _unread = open_mailbox(8, name="threads")
        server_end, client = memory_frame_pair()
        conn = Connection(1, server_end, ServerInfo(settings_), hub, threads, approvals, recorder,
                          handshake=accepted)
        nursery.start_soon(conn.run)
        reply = None
        if accepted is None:
            await client.send_frames([frame])
            with trio.move_on_after(2):
                got = await client.receive_frame()
                assert isinstance(got, bytes)
                reply = json.loads(got)
        else:
            with trio.fail_after(10):
                while not conn.initialized:
                    await trio.sleep(0.01)
        await client.aclose()
        nursery.cancel_scope.cancel()
    return reply, conn


def fast(home: Path, frame: bytes) -> handshake.Accepted | None:
    return handshake.answer(frame, codex_home=str(home), max_line=DEFAULT_MAX_LINE)


def test_the_handshake_decodes_the_params_type_the_method_table_names() -> None:
    assert METHODS["initialize"].params is InitializeParams


async def test_the_fast_answer_is_the_connections_for_well_formed_initialize_params(tmp_path: Path) -> None:
    for n, params in enumerate(WELL_FORMED):
        frame = line(params, rid=n if n % 2 else f"req-{n}")
        accepted = fast(tmp_path, frame)
        assert accepted is not None, params
        reply, _ = await normal_answer(tmp_path, frame)
        assert json.loads(accepted.line) == reply
        assert accepted.line.endswith(b"\n") and accepted.line.count(b"\n") == 1


@st.composite
def _initialize_frames(draw: Any) -> bytes:
    """An initialize request from the original's schema, now and then
    mutated (a fuzzed frame of any method with its method swapped)."""
    if draw(st.booleans()):
        params = draw(from_schema(params_schemas()["initialize"]))
        if draw(st.booleans()):
            # A name the connection takes (the schema's are mostly refused).
            params["clientInfo"]["name"] = draw(st.text(st.characters(min_codepoint=0x20, max_codepoint=0xff),
                                                        min_size=1, max_size=12))
        return line(params, rid=draw(st.integers(-5, 5) | st.text(max_size=4)))
    raw = draw(fuzzed_frame())
    return raw.replace(b'"method": "', b'"method": "initialize", "was": "', 1) if draw(st.booleans()) else raw


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(frame=_initialize_frames())
async def test_a_fuzzed_first_frame_is_answered_as_the_connection_would_or_left_to_it(
        tmp_path_factory: Any, frame: bytes) -> None:
    home = tmp_path_factory.mktemp("home")
    accepted = fast(home, frame)
    if accepted is None:
        return  # left to the connection, byte for byte (see serve_first_line's tests)
    reply, _ = await normal_answer(home, frame)
    assert json.loads(accepted.line) == reply


async def test_every_unusual_first_frame_is_left_to_the_connection(tmp_path: Path) -> None:
    ok = WELL_FORMED[0]
    unusual = [
        b"", b"   ", b"not json", b"{", b"[]", b"null", json.dumps(ok).encode(),
        line(ok, method="model/list"), line(ok, method="Initialize"),
        json.dumps({"method": "initialize", "params": ok}).encode(),  # a notification
        json.dumps({"id": 1, "method": "initialize"}).encode(),  # no params
        line(None), line([ok]), line({"clientInfo": {"name": "t"}}),  # version missing
        line({"clientInfo": {"name": "", "version": "1"}}),  # refused name
        line({"clientInfo": {"name": "new\nline", "version": "1"}}),
        line({"clientInfo": {"name": 7, "version": "1"}}),
        line({"clientInfo": {"name": "t", "version": "1"}, "capabilities": {"experimentalApi": "yes"}}),
        line(ok, rid=2**63), line(ok, rid=1.5), line(ok, rid=None), line(ok, rid=True),
        b'{"id":1,"method":"initialize","params":{"clientInfo":{"name":"\xff","version":"1"}}}',
        line(ok) + b"x",
        b"[" * 200 + b"]" * 200,
    ]
    for frame in unusual:
        assert fast(tmp_path, frame) is None, frame
    assert fast(tmp_path, line(ok)) is not None
    assert handshake.answer(line(ok), codex_home=str(tmp_path), max_line=len(line(ok)) - 1) is None


def _pipe_with(data: bytes) -> int:
    read, write = os.pipe()
    os.write(write, data)
    os.close(write)
    return read


def test_bytes_after_the_first_line_are_handed_over_and_the_answer_written(tmp_path: Path) -> None:
    rest = b'{"id":2,"method":"model/list","params":{}}\n{"id":3,'
    stdin = _pipe_with(line(WELL_FORMED[2]) + b"\r\n" + rest)
    out_read, out_write = os.pipe()
    handover = handshake.serve_first_line(str(tmp_path), DEFAULT_MAX_LINE, stdin=stdin, stdout=out_write)
    os.close(out_write)
    assert handover.accepted is not None and handover.buffered == rest
    assert os.read(out_read, 65536) == handover.accepted.line
    caps = handover.accepted.params.capabilities
    assert caps is not None and caps.experimental_api
    os.close(stdin)
    os.close(out_read)


def test_an_unusual_first_line_is_handed_over_whole_and_nothing_written(tmp_path: Path) -> None:
    for data in [b"\n" + line(WELL_FORMED[0]) + b"\n", line(WELL_FORMED[0], method="thread/start") + b"\nmore",
                 line(WELL_FORMED[0]), b""]:
        stdin = _pipe_with(data)
        out_read, out_write = os.pipe()
        os.set_blocking(out_read, False)
        handover = handshake.serve_first_line(str(tmp_path), DEFAULT_MAX_LINE, stdin=stdin, stdout=out_write)
        assert handover == handshake.Handover(None, data)
        assert _empty(out_read)
        for fd in (stdin, out_read, out_write):
            os.close(fd)


def _empty(fd: int) -> bool:
    try:
        return os.read(fd, 10) == b""
    except BlockingIOError:
        return True


async def test_an_adopted_initialize_leaves_the_connection_as_handling_it_would(tmp_path: Path) -> None:
    frame = line(WELL_FORMED[2], rid="a")
    accepted = fast(tmp_path, frame)
    assert accepted is not None
    runs = []
    for adopt in (None, accepted):
        facts_box, facts = open_mailbox(64, name="facts")
        _, conn = await normal_answer(tmp_path, frame, Recorder(facts_box), accepted=adopt)
        recorded = []
        while True:
            try:
                fact = facts.receive_nowait()
            except trio.WouldBlock:
                break
            recorded.append({k: v for k, v in msgspec.structs.asdict(fact).items() if k != "at_ms"} | {
                "kind": type(fact).__name__})
        runs.append(((conn.initialized, conn.experimental_api, conn.opt_out, conn.originator,
                      conn.legacy_error_info, conn.info.answered_initialize.is_set()), recorded))
    assert runs[0] == runs[1]
    assert runs[0][0] == (True, True, frozenset({"thread/started", "item/agentMessage/delta"}), "vscode", False, True)
    assert [f["kind"] for f in runs[0][1]][:3] == ["ClientRequest", "Initialize", "ClientResponse"]


async def _first_answers(home: Path, data: bytes, count: int) -> tuple[list[dict[str, Any]], str]:
    """A real server's first ``count`` messages after ``data`` (one write),
    and its debug log."""
    home.mkdir(parents=True)
    log = home.parent / "stderr.log"
    with log.open("wb") as err:
        async with open_app_server(home, env_extra={"TRIO_CODEX_LOG": "debug"}, stderr=err.fileno()) as client:
            await client.send_raw(data)
            got = [await client.next_message() for _ in range(count)]
    return got, log.read_text()


async def test_a_real_server_answers_initialize_at_start_up_as_it_would_after(tmp_path: Path) -> None:
    params = WELL_FORMED[2]
    then = line({"clientInfo": {"name": "x", "version": "1"}}, rid=3)
    data = line(params) + b"\n" + b'{"id":2,"method":"model/list","params":{}}\n' + then + b"\n"
    early, early_log = await _first_answers(tmp_path / "a" / "home", data, 3)
    late, late_log = await _first_answers(tmp_path / "b" / "home", b"\n" + data, 3)
    assert "answered at start-up" in early_log and "answered at start-up" not in late_log
    for msgs in (early, late):
        msgs[0]["result"]["codexHome"] = msgs[0]["result"]["codexHome"].rsplit("/", 2)[-1]
    assert early == late
    assert [m["id"] for m in early] == [1, 2, 3]
    assert early[2]["error"]["message"] == "Already initialized"


async def test_opted_out_notifications_stay_opted_out_and_experimental_methods_open_after_an_early_initialize(
        tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    seen = {}
    for capabilities in ({"experimentalApi": True, "optOutNotificationMethods": ["thread/started"]}, None):
        async with open_app_server(home) as client:
            result = await client.request("initialize", {"clientInfo": {"name": "t", "version": "1"},
                                                          "capabilities": capabilities})
            assert result["userAgent"].startswith("t/")
            tid = (await client.request("thread/start", {}))["thread"]["id"]
            # The thread's own requests are answered after its thread/started.
            await client.request("thread/name/set", {"threadId": tid, "name": "n"})
            seen[bool(capabilities)] = [m.get("method") for m in client.log if "method" in m]
            answer = await client.call("thread/backgroundTerminals/list", {"threadId": tid})
            assert ("requires experimentalApi capability" in json.dumps(answer)) is (capabilities is None)
    assert "thread/started" not in seen[True]
    assert "thread/started" in seen[False]


async def test_a_server_with_no_client_ends_on_sigterm_while_waiting_for_the_first_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, CODEX_HOME=str(home), TRIO_CODEX_LOG="debug")
    async with trio.open_nursery() as nursery:
        proc = await nursery.start(partial(trio.run_process, [sys.executable, "-m", "trio_codex.runtime", "app-server"],
                                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                           env=env, check=False))
        err = b""
        with trio.fail_after(30):
            while b"reading the first line" not in err:
                err += await proc.stderr.receive_some()
            proc.send_signal(signal.SIGTERM)
            assert await proc.wait() == 0
            assert await proc.stdout.receive_some() == b""
