"""Fuzzed request frames for every method the server serves, shared by
tests/conformance/test_fuzz.py and bench/fuzz_frames.py.

Each frame is a request for a method of :data:`~trio_codex.runtime.protocol.
methods.METHODS` (now and then another method, or no message at all), with
params generated from the original's own JSON schema (hypothesis-jsonschema,
from the vendored ``codex_app_server_protocol.schemas.json.gz``) and then,
for most frames, mutated: a wrong type, a huge or negative number, a bad
cursor, a NUL in a string, deep nesting, invalid UTF-8, a request id the
original would not take, params that are not an object, bytes that are not
JSON. Every frame has its own request id, so a double answer shows.

Safe to send to a real server with side effects, run with a scratch
CODEX_HOME and cwd:

- ``command/exec`` runs only a command of :data:`SAFE_COMMANDS`, which end
  at once whatever their arguments, environment and stdin, and write
  nothing; everything else about the request is fuzzed (cwd, env, tty, size,
  timeouts, caps, sandbox policy). A command that waits (``sleep``, ``cat``)
  would be a legitimate request that is answered only when it exits, so it
  is left out rather than waited for.
- ``fs/*`` paths and ``fuzzyFileSearch`` roots lead into the scratch cwd
  (:data:`SCRATCH`): the original lets a client reach any absolute path, so
  a fuzzed ``fs/remove "/"`` must never reach the server as such.
- ``feedback/save`` gets a relative ``savePath``, which is refused: an
  absolute one would write a ZIP wherever the generator pointed. Config
  writes and the API-key login touch only the scratch CODEX_HOME.
- Thread requests reach the one real thread the driver started, through
  :data:`THREAD` in the frame, now and then; a turn there talks to the
  scripted model, which runs no tool unless the prompt asks for one in its
  own ``[[...]]`` syntax, which generated text does not hit.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import cache
from pathlib import Path
from typing import Any

import trio
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from trio_codex.runtime.protocol import codec
from trio_codex.runtime.protocol.codec import Invalid, Request
from trio_codex.runtime.protocol.jsonrpc import RequestId
from trio_codex.runtime.protocol.methods import METHODS

from . import TIMEOUT, RpcClient, open_app_server
from .ws import ws_client, ws_server

SCHEMA = Path(__file__).parent.parent / "fixtures" / "original" / "schema" / "codex_app_server_protocol.schemas.json.gz"

#: Stand for the request id and the real thread's id in a frame template
#: until it is sent (see :func:`fill`).
ID = "@REQUEST-ID@"
THREAD = "@THREAD-ID@"
#: argv[0] of what ``command/exec`` may run (see the module docstring); a
#: missing program, an empty one and one with a NUL test the spawn errors.
SAFE_COMMANDS = ["true", "false", "echo", "printf", "pwd", "/nonexistent/program", "", "tr\x00ue"]

_MARK = "\u2603MARK\u2603"
_BAD_UTF8 = [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\xe2\x82"]
_BAD_CURSORS = ["abc", "-1", "", "+5", "1.5", "9" * 30, "n:-1", "p:x", "n:99999999999999999999", "\x00",
                "00000000-0000-0000-0000-000000000000", " 1", "١"]
_NUMBERS = [-1, 0, 2**16, 2**31, 2**32, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30, 1e308, -0.0, 0.5]
_DEPTHS = [100, 125, 126, 127, 128, 500, 1000, 5000]


@cache
def _schema() -> dict[str, Any]:
    return json.loads(gzip.decompress(SCHEMA.read_bytes()))


def _resolve(ref: str) -> Any:
    node: Any = _schema()
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def _inline(node: Any, seen: tuple[str, ...] = ()) -> Any:
    """``node`` with its ``$ref``s inlined (a recursive one becomes "any
    JSON") and without prose: hypothesis-jsonschema then builds its strategy
    in milliseconds instead of resolving the whole schema."""
    if isinstance(node, dict):
        if "$ref" in node:
            ref = node["$ref"]
            return {} if ref in seen else _inline(_resolve(ref), (*seen, ref))
        return {k: _inline(v, seen) for k, v in node.items() if k not in ("$schema", "description", "title")}
    if isinstance(node, list):
        return [_inline(v, seen) for v in node]
    return node


@cache
def params_schemas() -> dict[str, Any]:
    """Method -> the JSON schema of its params in the original (``{}``, any
    JSON, for a method whose schema names no params type)."""
    refs = {v["properties"]["method"]["enum"][0]: v["properties"].get("params", {}).get("$ref")
            for v in _schema()["definitions"]["ClientRequest"]["oneOf"]}
    return {m: _inline({"$ref": refs[m]}) if refs.get(m) else {} for m in METHODS}


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


@cache
def _params(method: str) -> st.SearchStrategy[Any]:
    return from_schema(params_schemas()[method])


def _nested(depth: int) -> bytes:
    """JSON text nested ``depth`` deep, arrays and objects in turn (made as
    text: no JSON library of ours encodes thousands of levels)."""
    opens, closes = [], []
    for i in range(depth):
        opens.append(b"[" if i % 2 else b'{"a":')
        closes.append(b"]" if i % 2 else b"}")
    return b"".join(opens) + b"0" + b"".join(reversed(closes))


def _deep_nulls(value: Any) -> Any:
    """``value`` with a NUL in every string."""
    if isinstance(value, str):
        return value[: len(value) // 2] + "\x00" + value[len(value) // 2:]
    if isinstance(value, list):
        return [_deep_nulls(v) for v in value]
    if isinstance(value, dict):
        return {k: _deep_nulls(v) for k, v in value.items()}
    return value


@st.composite
def _mutated(draw: Any, params: Any) -> tuple[Any, bytes | None]:
    """(params, the JSON text that replaces :data:`_MARK` in the frame)
    after one mutation, or none."""
    kind = draw(st.sampled_from(["none", "none", "type", "number", "cursor", "nul", "deep", "utf8",
                                 "shape", "thread"]))
    if kind == "shape":
        return draw(st.sampled_from([None, [], "params", 7, True, [params]])), None
    if not isinstance(params, dict):
        return params, None
    params = dict(params)
    key = draw(st.sampled_from(sorted(params))) if params and draw(st.booleans()) else draw(
        st.sampled_from(["cursor", "limit", "threadId", "cwd", "timeoutMs", "outputBytesCap", "size", "x"]))
    if kind == "type":
        params[key] = draw(_json)
    elif kind == "number":
        params[key] = draw(st.sampled_from(_NUMBERS) | st.integers())
    elif kind == "cursor":
        params["cursor"] = draw(st.sampled_from(_BAD_CURSORS) | st.text(max_size=10))
    elif kind == "nul":
        params = _deep_nulls(params)
    elif kind == "deep":
        params[key] = _MARK
        return params, _nested(draw(st.sampled_from(_DEPTHS)))
    elif kind == "utf8":
        params[key] = _MARK
        return params, b'"' + draw(st.sampled_from(_BAD_UTF8)) + b'"'
    elif kind == "thread":
        params["threadId"] = THREAD
    return params, None


#: Where fuzzed fs/* paths and search roots lead: the server's own cwd,
#: the scratch directory (see :func:`_scratch`).
SCRATCH = "/proc/self/cwd"
_PATH_KEYS = frozenset({"path", "sourcePath", "destinationPath"})


def _scratch(value: Any) -> Any:
    """An absolute path string moved under :data:`SCRATCH`, each component
    kept but ``.``/``..`` dropped, so a fuzzed fs/* request can touch only
    the scratch cwd; anything else (a relative path, a wrong type) is left
    for the server to refuse."""
    if not isinstance(value, str) or not value.startswith("/"):
        return value
    parts = [p for p in value.split("/") if p not in ("", ".", "..")]
    return "/".join([SCRATCH, *parts])


def _safe(method: str, params: Any, draw: Any) -> Any:
    """Keep ``command/exec`` to :data:`SAFE_COMMANDS`, fs/* and the file
    search inside the scratch cwd, and ``feedback/save`` off the host's
    files (see the module docstring)."""
    if (method.startswith("fs/") or method.startswith("fuzzyFileSearch")) and isinstance(params, dict):
        for key in _PATH_KEYS & params.keys():
            params[key] = _scratch(params[key])
        if isinstance(params.get("roots"), list):
            params["roots"] = [SCRATCH if isinstance(r, str) else r for r in params["roots"]]
    if method == "feedback/save" and isinstance(params, dict) and "savePath" in params:
        params["savePath"] = "feedback.zip"  # relative: refused, never written
    if method == "command/exec" and isinstance(params, dict):
        args = params.get("command") if isinstance(params.get("command"), list) else []
        params["command"] = [draw(st.sampled_from(SAFE_COMMANDS)), *args[1:4]] if draw(
            st.integers(0, 9)) else []
    return params


@st.composite
def frame(draw: Any) -> bytes:
    """One frame template: its request id is :data:`ID` unless the id is
    the mutation."""
    method = draw(st.sampled_from([*sorted(METHODS), "nope/x", "account/gatewayOAuth/read"]))
    params = draw(_params(method)) if method in METHODS else draw(_json)
    params, patch = draw(_mutated(params))
    params = _safe(method, params, draw)
    rid: Any = ID
    if draw(st.integers(0, 19)) == 19:
        rid = draw(st.sampled_from([2**63, -(2**63) - 1, 1.5, True, None, {}, [0], 2**64]))
    msg: dict[str, Any] = {"id": rid, "method": method}
    if params is not None or draw(st.booleans()):
        msg["params"] = params
    data = json.dumps(msg).encode()
    if patch is not None:
        data = data.replace(json.dumps(_MARK).encode(), patch)
    if draw(st.integers(0, 49)) == 49:
        data = data[: draw(st.integers(0, len(data) - 1))] or b"{"
    return data


def generate(count: int, *, seed_value: int = 0) -> list[bytes]:
    """``count`` frame templates, the same for the same seed."""
    out: list[bytes] = []

    @seed(seed_value)
    @settings(max_examples=count, phases=[Phase.generate], database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def collect(data: Any) -> None:
        out.append(data.draw(frame()))

    collect()
    return out[:count]


def fill(template: bytes, request_id: int, thread_id: str) -> bytes:
    """The frame to send: ``template`` with request id ``request_id`` (each
    frame its own, so that a double answer shows) and the real thread."""
    return template.replace(json.dumps(ID).encode(), str(request_id).encode()).replace(
        THREAD.encode(), thread_id.encode())


def owed(frame: bytes) -> RequestId | None:
    """The id the server owes an answer to, as the codec reads ``frame``:
    a request's, or that of a message with a usable id that is not one."""
    msg = codec.decode(frame)
    return msg.id if isinstance(msg, (Request, Invalid)) else None


class Tally:
    """What came back: the answers per request id, and the frames still
    owed one."""

    def __init__(self) -> None:
        self.answers: Counter[str] = Counter()
        self.owed: dict[str, bytes] = {}
        #: The answers to string ids: the driver's own requests (the
        #: frames' ids are integers).
        self.replies: dict[str, dict[str, Any]] = {}
        self.messages = 0

    def sent(self, frame: bytes) -> None:
        rid = owed(frame)
        if rid is not None:
            self.owed[json.dumps(rid)] = frame

    def received(self, msg: dict[str, Any]) -> None:
        self.messages += 1
        if "id" in msg and "method" not in msg:
            key = json.dumps(msg["id"])
            self.answers[key] += 1
            self.owed.pop(key, None)
            if isinstance(msg["id"], str):
                self.replies[msg["id"]] = msg

    def doubles(self) -> list[str]:
        return [rid for rid, n in self.answers.items() if n > 1]


async def drive(send: Callable[[bytes], Awaitable[None]], tally: Tally, templates: list[bytes], thread_id: str,
                *, first_id: int = 1000, window: int = 64, timeout: float = 60.0) -> None:
    """Send the frames, ``window`` at a time, each window once the previous
    one is answered. Raises ``trio.TooSlowError`` if an answer owed takes
    longer than ``timeout``."""
    for start in range(0, len(templates), window):
        for n, template in enumerate(templates[start:start + window], first_id + start):
            data = fill(template, n, thread_id)
            tally.sent(data)
            await send(data)
        with trio.fail_after(timeout):
            while tally.owed:
                await trio.sleep(0.005)


def rss_kb(pid: int) -> int:
    """The resident set of process ``pid``, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise LookupError(f"no VmRSS for process {pid}")


class Session:
    """The real server over one transport: raw frames out, every message
    back into :attr:`tally`."""

    def __init__(self, send: Callable[[bytes], Awaitable[None]], pid: int,
                 returncode: Callable[[], int | None]) -> None:
        self.send = send
        self.pid = pid
        self.returncode = returncode
        self.tally = Tally()

    async def call(self, rid: str, method: str, params: Any = None) -> dict[str, Any]:
        """Send a request with string id ``rid``; its answer."""
        msg: dict[str, Any] = {"id": rid, "method": method}
        if params is not None:
            msg["params"] = params
        await self.send(json.dumps(msg).encode())
        with trio.fail_after(TIMEOUT):
            while rid not in self.tally.replies:
                await trio.sleep(0.005)
        return self.tally.replies[rid]

    async def start(self) -> str:
        """Initialize and start a thread; its id."""
        await self.call("init", "initialize", {"clientInfo": {"name": "fuzz", "version": "1"}})
        return (await self.call("thread", "thread/start", {}))["result"]["thread"]["id"]


@asynccontextmanager
async def session(transport: str, codex_home: Path, cwd: Path) -> AsyncIterator[Session]:
    """The server with ``codex_home``, in ``cwd``, over ``transport``
    (``stdio`` or ``ws``)."""
    opening = _over_stdio(codex_home, cwd) if transport == "stdio" else _over_ws(codex_home, cwd)
    async with opening as (client, proc):
        # Every frame goes as is (a JSONL line, or a websocket message:
        # binary when it is not UTF-8), malformed ones included.
        out = Session(lambda data: client.send_raw(data + b"\n"), proc.pid, lambda: proc.returncode)
        client.queued = False
        client.listeners.append(out.tally.received)
        yield out


@asynccontextmanager
async def _over_stdio(codex_home: Path, cwd: Path) -> AsyncIterator[tuple[RpcClient, trio.Process]]:
    async with open_app_server(codex_home, cwd=cwd) as client:
        assert client.proc is not None
        yield client, client.proc


@asynccontextmanager
async def _over_ws(codex_home: Path, cwd: Path) -> AsyncIterator[tuple[RpcClient, trio.Process]]:
    async with ws_server(codex_home, cwd=cwd) as server, ws_client(server.url) as client:
        yield client, server.proc
