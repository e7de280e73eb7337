"""Each of these single requests used to take the whole server down (issue
12); now each gets the original's answer, or none where the original gives
none, and the server goes on. Over stdio and websocket, against the real
server in a subprocess."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.fuzz import Session, session

FULL_ACCESS = {"type": "dangerFullAccess"}


def exec_params(**params: Any) -> dict[str, Any]:
    return {"command": ["true"], "sandboxPolicy": FULL_ACCESS, **params}


#: (what, method, params, the error the original answers: its code, and its
#: message or the start of it).
ANSWERED = [
    ("model/list with a cursor that is no offset", "model/list", {"cursor": "abc"},
     (-32600, "invalid cursor: abc")),
    ("thread/loaded/list with a cursor that is no thread id", "thread/loaded/list", {"cursor": "abc"},
     (-32600, "invalid cursor: abc")),
    ("command/exec in a cwd that does not exist", "command/exec", exec_params(cwd="/nonexistent/dir"),
     (-32603, "failed to spawn command: ")),
    ("command/exec with a relative writable root that does not exist", "command/exec",
     {"command": ["true"], "sandboxPolicy": {"type": "workspaceWrite", "writableRoots": ["nope/rel"]}},
     (-32603, "exec failed: ")),
    ("command/exec with a negative timeoutMs", "command/exec", exec_params(timeoutMs=-5),
     (-32602, "command/exec timeoutMs must be non-negative, got -5")),
    ("command/exec with a NUL in the command", "command/exec", exec_params(command=["tr\x00ue"]),
     (-32603, "failed to spawn command: embedded null byte")),
    ("command/exec with an environment name holding =", "command/exec", exec_params(env={"A=B": "x"}),
     (-32603, "failed to spawn command: illegal environment variable name")),
    ("command/exec with a terminal taller than a u16", "command/exec",
     exec_params(processId="p", tty=True, size={"rows": 70000, "cols": 80}),
     (-32600, "Invalid request: invalid value: integer `70000`, expected u16 at `size.rows`")),
    ("command/exec/write with bad base64", "command/exec/write", {"processId": "p", "deltaBase64": "abc"},
     (-32602, "invalid deltaBase64: Incorrect padding")),
    ("command/exec/write with base64 that is not ASCII", "command/exec/write",
     {"processId": "p", "deltaBase64": "été"}, (-32602, "invalid deltaBase64: ")),
]


@pytest.fixture(params=["stdio", "ws"])
async def server(request: pytest.FixtureRequest, codex_home: Path, tmp_path: Path) -> Any:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    async with session(request.param, codex_home, cwd) as s:
        await s.start()  # a loaded thread, so that thread/loaded/list has a page to cut
        yield s


async def still_serving(server: Session) -> None:
    assert "result" in await server.call("after", "model/list", {})
    assert server.returncode() is None


async def test_each_hostile_request_gets_the_originals_error_and_the_server_goes_on(server: Session) -> None:
    for n, (name, method, params, (code, message)) in enumerate(ANSWERED):
        answer = await server.call(f"hostile{n}", method, params)
        assert answer["error"]["code"] == code, (name, answer)
        assert answer["error"]["message"].startswith(message), (name, answer)
    await still_serving(server)


async def test_invalid_utf8_inside_params_is_an_invalid_request(server: Session) -> None:
    await server.send(b'{"id":"hostile","method":"thread/start","params":{"cwd":"\xff\xfe"}}')
    await still_serving(server)
    assert server.tally.replies["hostile"]["error"] == {
        "code": -32600, "message": "Invalid request: params are not valid JSON: Invalid UTF-8 encoded string"}


async def test_frames_the_original_cannot_read_are_dropped_unanswered(server: Session) -> None:
    for frame in (b'{"id":"deep","method":"model/list","params":' + b"[" * 1000 + b"]" * 1000 + b"}",
                  b'{"id":99999999999999999999,"method":"model/list","params":{}}',
                  b'{"id":-9223372036854775809,"method":"model/list","params":{}}'):
        await server.send(frame)
    await still_serving(server)
    assert list(server.tally.answers) == [json.dumps(rid) for rid in ("init", "thread", "after")]


async def test_an_output_cap_of_zero_keeps_no_output(server: Session) -> None:
    capped = await server.call("capped", "command/exec", exec_params(command=["echo", "hello"], outputBytesCap=0))
    assert capped["result"] == {"exitCode": 0, "stdout": "", "stderr": ""}
    full = await server.call("full", "command/exec", exec_params(command=["echo", "hello"]))
    assert full["result"] == {"exitCode": 0, "stdout": "hello\n", "stderr": ""}
