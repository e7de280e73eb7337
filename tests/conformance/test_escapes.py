"""The sandbox holds: an attacker who controls the model (or a client asking
for a sandboxed ``command/exec``) tries every way out of ``read-only`` and
``workspace-write`` with approval policy ``never``, through every path a
command has: ``shell_command``, ``exec_command``, ``write_stdin`` into a
running process, and ``command/exec``.

One bash script tries them all: absolute paths, ``../``, a symlinked
directory and file that already exist, a symlink made earlier in the same
script, a hard link, ``.git``/``.codex``/``.agents`` inside the writable
root, ``$HOME``, ``$CODEX_HOME``, ``/proc/self/root``, and ``connect()`` to
a unix socket (our own ``unix://`` listener) and to a TCP listener on
loopback. Afterwards nothing outside the workspace has changed, and no
connection was made. The same script runs against the original when its
binary is installed (``CODEX_ORIGINAL_BIN``), which holds on every case.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import ORIGINAL_BIN, OURS, open_app_server, server_env
from trio_codex.runtime.commands.sandbox import probe
from trio_codex.transports.scripted_responses import ScriptedResponses

pytestmark = pytest.mark.skipif(not probe().available, reason=probe().message or "bubblewrap unavailable")

SERVERS = {"ours": OURS, "original": (str(ORIGINAL_BIN),)}
SERVER_PARAMS = ["ours", pytest.param("original", marks=pytest.mark.skipif(
    not ORIGINAL_BIN.exists(), reason="the original codex binary is not installed"))]

#: The thread's sandbox, and the same as a ``command/exec`` policy. The tests
#: live under /tmp, so /tmp and $TMPDIR are no writable roots here.
POLICIES: dict[str, tuple[str, dict[str, Any]]] = {
    "read-only": ("read-only", {"type": "readOnly"}),
    "workspace-write": ("workspace-write", {"type": "workspaceWrite", "excludeSlashTmp": True,
                                            "excludeTmpdirEnvVar": True}),
}
NO_TMP = ("sandbox_workspace_write.exclude_slash_tmp=true",
          "sandbox_workspace_write.exclude_tmpdir_env_var=true")

CONNECT = """import socket, sys
family, address = (socket.AF_UNIX, sys.argv[2]) if sys.argv[1] == "unix" else (socket.AF_INET, ("127.0.0.1", int(sys.argv[2])))
try:
    s = socket.socket(family)
    s.settimeout(2)
    s.connect(address)
    print(sys.argv[1], "CONNECTED")
except OSError as exc:
    print(sys.argv[1], type(exc).__name__, exc.errno)
"""


class Arena:
    """A workspace with the bait of every escape, and what must not change."""

    def __init__(self, root: Path, codex_home: Path, unix_socket: Path, tcp_port: int) -> None:
        self.ws = root / "ws"
        self.outside = root / "outside"
        self.home = codex_home.parent / "home"  # the server's $HOME (harness.server_env)
        self.codex_home = codex_home
        for d in (self.ws, self.outside, self.home):
            d.mkdir(exist_ok=True)
        subprocess.run(["git", "init", "-q", str(self.ws)], check=True)
        (self.ws / ".agents").mkdir()
        (self.outside / "victim").write_text("original")
        (self.ws / "outlink").symlink_to(self.outside)
        (self.ws / "victim-link").symlink_to(self.outside / "victim")
        self.git_config = (self.ws / ".git" / "config").read_text()
        connect = root / "connect.py"
        connect.write_text(CONNECT)
        o = self.outside
        self.script = "\n".join(f"{line} 2>/dev/null" for line in (
            f"cd {self.ws}",
            f"echo x > {o}/abs",
            "echo x > ../outside/rel",
            "echo x > outlink/viadir",
            "echo x > victim-link",
            f"ln -s {o} madelink; echo x > madelink/late",
            f"ln {o}/victim hardlink; echo x >> hardlink",
            "echo x >> .git/config; echo x > .git/hooks/pre-commit",
            "mkdir .codex; echo x > .codex/config.toml",
            "echo x > .agents/skill",
            f"echo x > {self.home}/home-file; echo x > \"$HOME/home-env\"",
            f"echo x > {codex_home}/pwned",
            f"echo x > /proc/self/root{o}/viaproc",
            f"{sys.executable} -I -S {connect} unix {unix_socket}",
            f"{sys.executable} -I -S {connect} tcp {tcp_port}",
            "echo escape-script-done",
        ))

    def assert_held(self, output: str) -> None:
        assert "escape-script-done" in output, output
        assert sorted(p.name for p in self.outside.iterdir()) == ["victim"]
        assert (self.outside / "victim").read_text() == "original"
        assert (self.ws / ".git" / "config").read_text() == self.git_config
        assert not (self.ws / ".git" / "hooks" / "pre-commit").exists()
        assert not (self.ws / ".codex" / "config.toml").exists()
        assert not (self.ws / ".agents" / "skill").exists()
        assert not any(self.home.iterdir())
        assert not (self.codex_home / "pwned").exists()
        assert "CONNECTED" not in output, output
        assert "unix PermissionError 1" in output, output  # EPERM, from the seccomp filter


@pytest.fixture(scope="module")
def own_listener(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Our own app-server on a ``unix://`` socket: the socket a sandboxed
    command must not reach (through it, ``command/exec`` runs unsandboxed)."""
    home = tmp_path_factory.mktemp("listener") / "codex-home"
    home.mkdir()
    sock = home / "control.sock"
    proc = subprocess.Popen([*OURS, "app-server", "--listen", f"unix://{sock}"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=server_env(home))
    try:
        deadline = time.monotonic() + 20
        while not sock.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the unix listener did not start"
            time.sleep(0.05)
        yield sock
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def tcp_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


@pytest.fixture
def arena(tmp_path: Path, codex_home: Path, own_listener: Path, tcp_port: int) -> Arena:
    return Arena(tmp_path, codex_home, own_listener, tcp_port)


def server_extra_env(server: str, root: Path) -> dict[str, str]:
    """The original's sandbox runs its own binary as ``codex-linux-sandbox``
    from PATH, as its npm launcher arranges; do the same here."""
    if server != "original":
        return {}
    arg0 = root / "arg0"
    arg0.mkdir(exist_ok=True)
    (arg0 / "codex-linux-sandbox").symlink_to(ORIGINAL_BIN)
    return {"PATH": f"{arg0}:{ORIGINAL_BIN.parents[1] / 'codex-path'}:{os.environ['PATH']}"}


def call(name: str, **args: Any) -> str:
    return f"[[call={name} {json.dumps(args)}]]"


def tool_outputs(scripted: ScriptedResponses) -> str:
    return "\n".join(i["output"] for r in scripted.requests for i in r.body["input"]
                     if isinstance(i, dict) and i.get("type", "").endswith("_call_output"))


async def model_turns(arena: Arena, scripted: ScriptedResponses, server: str, policy: str,
                      *prompts: str) -> str:
    """Start a thread under ``policy`` and run one turn per prompt; what the
    model was told of its tool calls."""
    sandbox, _ = POLICIES[policy]
    async with open_app_server(arena.codex_home, *NO_TMP, program=SERVERS[server],
                               env_extra=server_extra_env(server, arena.ws.parent)) as client:
        await client.initialize()
        started = await client.request("thread/start", {"cwd": str(arena.ws), "approvalPolicy": "never",
                                                        "sandbox": sandbox})
        for prompt in prompts:
            await client.turn(started["thread"]["id"], prompt)
    return tool_outputs(scripted)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("server", ["ours"])  # the original offers mock models no shell_command
async def test_shell_command_cannot_escape(arena: Arena, scripted: ScriptedResponses, server: str,
                                           policy: str) -> None:
    arena.assert_held(await model_turns(arena, scripted, server, policy,
                                        call("shell_command", command=arena.script, timeout_ms=30_000)))


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("server", SERVER_PARAMS)
async def test_exec_command_cannot_escape(arena: Arena, scripted: ScriptedResponses, server: str,
                                          policy: str) -> None:
    arena.assert_held(await model_turns(arena, scripted, server, policy,
                                        call("exec_command", cmd=arena.script, yield_time_ms=20_000)))


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("server", SERVER_PARAMS)
async def test_write_stdin_into_a_running_shell_cannot_escape(
        arena: Arena, scripted: ScriptedResponses, server: str, policy: str) -> None:
    sandbox, _ = POLICIES[policy]
    async with open_app_server(arena.codex_home, *NO_TMP, program=SERVERS[server],
                               env_extra=server_extra_env(server, arena.ws.parent)) as client:
        await client.initialize()
        started = await client.request("thread/start", {"cwd": str(arena.ws), "approvalPolicy": "never",
                                                        "sandbox": sandbox})
        tid = started["thread"]["id"]
        await client.turn(tid, call("exec_command", cmd="bash", tty=True, yield_time_ms=300))
        session = int(tool_outputs(scripted).split("session ID ")[1].split("\n")[0])
        await client.turn(tid, call("write_stdin", session_id=session, chars=arena.script + "\nexit\n",
                                    yield_time_ms=20_000))
    arena.assert_held(tool_outputs(scripted))


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("server", SERVER_PARAMS)
async def test_command_exec_from_a_client_cannot_escape(arena: Arena, server: str, policy: str) -> None:
    _, wire_policy = POLICIES[policy]
    async with open_app_server(arena.codex_home, program=SERVERS[server],
                               env_extra=server_extra_env(server, arena.ws.parent)) as client:
        await client.initialize()
        result = await client.request("command/exec", {
            "command": ["bash", "-c", arena.script], "cwd": str(arena.ws), "sandboxPolicy": wire_policy,
            "timeoutMs": 30_000})
    arena.assert_held(result["stdout"])
