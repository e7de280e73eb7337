"""The sandbox's seccomp filter: the rules as data, the compiled program,
and what a real sandboxed command (spawned by the process runner, piped and
on a terminal) can and cannot do under it, as the original 0.169.0 allows
and refuses.

Commands that need bubblewrap are skipped (with the probe's reason) on a
host where it is unusable; CI installs it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from trio_codex.runtime.commands.process import open_process_table, run_command
from trio_codex.runtime.commands import sandbox, seccomp
from trio_codex.runtime.protocol.v2.thread import (
    DangerFullAccess,
    ReadOnly,
    SandboxPolicy,
    WorkspaceWrite,
)

STATUS = sandbox.probe()
needs_bwrap = pytest.mark.skipif(not STATUS.available, reason=f"no usable sandbox: {STATUS.message}")
ISOLATED = WorkspaceWrite(exclude_slash_tmp=True, exclude_tmpdir_env_var=True)
NO_NETWORK = [pytest.param(ReadOnly(), marks=needs_bwrap, id="read-only"),
              pytest.param(ISOLATED, marks=needs_bwrap, id="workspace-write")]
LIMIT = 30  # seconds; a bound on every wait, never an expectation of speed

# Runs inside the sandbox: tries each operation and prints {name: "ok" | errno name}.
PROBE = r"""
import ctypes, errno, json, os, socket, sys
unix_path, tcp_port, ptrace_nr, io_uring_setup_nr = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
libc = ctypes.CDLL(None, use_errno=True)

def syscall(nr, *args):
    if libc.syscall(nr, *map(ctypes.c_long, args)) < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))

def unix_pair():
    a, b = socket.socketpair(socket.AF_UNIX)
    os.write(a.fileno(), b"x")
    a.sendmsg([b"y"])
    assert os.read(b.fileno(), 1) + b.recvmsg(1)[0] == b"xy"

def pipe():
    r, w = os.pipe()
    os.write(w, b"x")
    assert os.read(r, 1) == b"x"

checks = {
    "unix_connect": lambda: socket.socket(socket.AF_UNIX).connect(unix_path),
    "inet_connect": lambda: socket.create_connection(("127.0.0.1", tcp_port), timeout=5),
    "inet_socket": lambda: socket.socket(socket.AF_INET),
    "inet6_socket": lambda: socket.socket(socket.AF_INET6),
    "vsock_socket": lambda: socket.socket(40, socket.SOCK_STREAM),
    "inet_socketpair": lambda: socket.socketpair(socket.AF_INET),
    "unix_socket": lambda: socket.socket(socket.AF_UNIX),
    "unix_socketpair": unix_pair,
    "pipe": pipe,
    "ptrace": lambda: syscall(ptrace_nr, 0, 0, 0, 0),  # PTRACE_TRACEME
    "io_uring_setup": lambda: syscall(io_uring_setup_nr, 1, 0),
}
def open_files():
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            out.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:  # the listing's own descriptor, closed by now
            pass
    return out

result = {"fds": open_files()}
for name, check in checks.items():
    try:
        check()
        result[name] = "ok"
    except OSError as exc:
        result[name] = errno.errorcode.get(exc.errno, str(exc.errno))
status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\t" in line)
result["Seccomp"], result["NoNewPrivs"] = status.get("Seccomp"), status.get("NoNewPrivs")
print(json.dumps(result))
"""


def syscall_number(name: str) -> int:
    import pyseccomp

    return pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name)


class Listeners:
    """A unix socket (in a directory of /tmp made for it) and a TCP socket
    on loopback, both listening on the host."""

    def __init__(self, directory: Path) -> None:
        self.unix_path = str(directory / "s")
        self.unix = socket.socket(socket.AF_UNIX)
        self.unix.bind(self.unix_path)
        self.unix.listen()
        self.tcp = socket.create_server(("127.0.0.1", 0))
        self.port = self.tcp.getsockname()[1]

    def connected(self) -> list[str]:
        """Which of the two accepted a connection since they were made."""
        out = []
        for name, listener in (("unix", self.unix), ("tcp", self.tcp)):
            listener.setblocking(False)
            try:
                listener.accept()[0].close()
                out.append(name)
            except BlockingIOError:
                pass
        return out

    def close(self) -> None:
        self.unix.close()
        self.tcp.close()


@pytest.fixture
def listeners() -> Iterator[Listeners]:
    with tempfile.TemporaryDirectory(dir="/tmp") as directory:  # short: AF_UNIX paths are
        made = Listeners(Path(directory))                       # limited to 107 bytes
        try:
            yield made
        finally:
            made.close()


async def probe_in(policy: SandboxPolicy, cwd: Path, listeners: Listeners) -> dict[str, object]:
    argv = [sys.executable, "-I", "-S", "-c", PROBE, listeners.unix_path, str(listeners.port),
            str(syscall_number("ptrace")), str(syscall_number("io_uring_setup"))]
    with trio.fail_after(LIMIT):
        out = await run_command(argv, cwd=cwd, sandbox_policy=policy)
    assert out.exit_code == 0, out.stderr
    return json.loads(out.stdout)


# --- the rules and the program ---------------------------------------------------------


def test_without_network_the_original_denials_and_only_unix_sockets() -> None:
    rules = seccomp.denials(network=False)
    assert {r.syscall for r in rules if r == seccomp.Denial(r.syscall)} == {
        "connect", "accept", "accept4", "bind", "listen", "getpeername", "getsockname",
        "shutdown", "sendto", "sendmmsg", "recvmmsg", "getsockopt", "setsockopt",
        "ptrace", "process_vm_readv", "process_vm_writev",
        "io_uring_setup", "io_uring_enter", "io_uring_register"}
    assert [r for r in rules if r.unless_family is not None] == [
        seccomp.Denial("socket", unless_family=socket.AF_UNIX),
        seccomp.Denial("socketpair", unless_family=socket.AF_UNIX)]
    assert not any(r.syscall in ("recvfrom", "sendmsg", "recvmsg") for r in rules)


def test_with_network_only_io_uring_and_vm_sockets_are_denied() -> None:
    assert seccomp.denials(network=True) == (
        seccomp.Denial("io_uring_setup"), seccomp.Denial("io_uring_enter"),
        seccomp.Denial("io_uring_register"),
        seccomp.Denial("socket", only_family=seccomp.AF_VSOCK),
        seccomp.Denial("socketpair", only_family=seccomp.AF_VSOCK))


@needs_bwrap
def test_the_program_is_compiled_bpf_built_once_per_mode() -> None:
    restricted, vsock = seccomp.bpf_program(False), seccomp.bpf_program(True)
    assert len(restricted) % 8 == 0 and len(vsock) % 8 == 0  # struct sock_filter
    assert restricted != vsock
    assert seccomp.bpf_program(False) is restricted


def test_importing_the_sandbox_does_not_load_libseccomp() -> None:
    code = ("import sys, trio_codex.runtime.commands.sandbox, trio_codex.runtime.commands.process; "
            "print('pyseccomp' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=LIMIT,
                          check=True)
    assert done.stdout == b"False\n"


def test_without_libseccomp_the_sandbox_refuses_and_says_how_to_fix_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyseccomp", None)  # as if it were not installed
    seccomp._build.cache_clear()
    try:
        with pytest.raises(seccomp.SeccompUnavailable, match="pip install pyseccomp"):
            seccomp.bpf_program(False)
        assert "libseccomp2" in sandbox._run_probe(STATUS.bwrap or "bwrap").message
        if STATUS.available:
            with pytest.raises(sandbox.SandboxUnavailable, match="seccomp filter cannot be built"):
                with sandbox.sandboxed_argv(["true"], ReadOnly(), tmp_path, {}):
                    pass
    finally:
        seccomp._build.cache_clear()


# --- a sandboxed command ---------------------------------------------------------------


@pytest.mark.parametrize("policy", NO_NETWORK)
async def test_a_sandboxed_command_shows_a_seccomp_filter(policy: SandboxPolicy, tmp_path: Path,
                                                          listeners: Listeners) -> None:
    seen = await probe_in(policy, tmp_path, listeners)
    assert (seen["Seccomp"], seen["NoNewPrivs"]) == ("2", "1")
    assert not [fd for fd in seen["fds"] if "seccomp" in fd]  # bwrap closed its program


@pytest.mark.parametrize("policy", NO_NETWORK)
async def test_no_socket_reaches_the_host_but_pipes_and_unix_pairs_work(
        policy: SandboxPolicy, tmp_path: Path, listeners: Listeners) -> None:
    seen = await probe_in(policy, tmp_path, listeners)
    assert {k: seen[k] for k in ("unix_connect", "inet_connect", "inet_socket", "inet6_socket",
                                 "vsock_socket", "inet_socketpair", "ptrace",
                                 "io_uring_setup")} == dict.fromkeys(
        ("unix_connect", "inet_connect", "inet_socket", "inet6_socket", "vsock_socket",
         "inet_socketpair", "ptrace", "io_uring_setup"), "EPERM")
    assert (seen["unix_socket"], seen["unix_socketpair"], seen["pipe"]) == ("ok", "ok", "ok")
    assert listeners.connected() == []


async def test_unsandboxed_the_same_probe_connects(tmp_path: Path, listeners: Listeners) -> None:
    # The control: the listeners are live, and the refusals above are the filter's.
    seen = await probe_in(DangerFullAccess(), tmp_path, listeners)
    assert (seen["unix_connect"], seen["inet_connect"], seen["ptrace"]) == ("ok", "ok", "ok")
    assert seen["Seccomp"] == "0"
    assert listeners.connected() == ["unix", "tcp"]


@pytest.mark.parametrize("policy", [
    pytest.param(ReadOnly(network_access=True), marks=needs_bwrap, id="read-only"),
    pytest.param(WorkspaceWrite(network_access=True, exclude_slash_tmp=True,
                                exclude_tmpdir_env_var=True), marks=needs_bwrap,
                 id="workspace-write")])
async def test_with_network_access_only_io_uring_and_vm_sockets_are_refused(
        policy: SandboxPolicy, tmp_path: Path, listeners: Listeners) -> None:
    seen = await probe_in(policy, tmp_path, listeners)
    assert seen["Seccomp"] == "2"
    assert (seen["vsock_socket"], seen["io_uring_setup"]) == ("EPERM", "EPERM")
    assert {k: seen[k] for k in ("unix_connect", "inet_connect", "inet_socket", "ptrace",
                                 "unix_socketpair")} == dict.fromkeys(
        ("unix_connect", "inet_connect", "inet_socket", "ptrace", "unix_socketpair"), "ok")
    assert listeners.connected() == ["unix", "tcp"]


@needs_bwrap
async def test_ordinary_commands_run_under_the_filter(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True, timeout=LIMIT)
    (repo / "a").write_text("a\n")
    script = ("git status --porcelain && ls && "
              f"{sys.executable} -c 'import subprocess; print(subprocess.run([\"echo\", \"hi\"], "
              "capture_output=True, check=True).stdout.decode().strip())'")
    with trio.fail_after(LIMIT):
        out = await run_command(["sh", "-c", script], cwd=repo, sandbox_policy=ISOLATED)
    assert (out.exit_code, out.stdout, out.stderr) == (0, b"?? a\na\nhi\n", b"")


@needs_bwrap
async def test_a_command_on_a_terminal_gets_the_filter_too(tmp_path: Path) -> None:
    async with open_process_table() as table:
        chunks: list[bytes] = []

        async def keep(data: bytes, stream: str) -> None:
            chunks.append(data)

        with trio.fail_after(LIMIT):
            await table.spawn("p", ["grep", "^Seccomp:", "/proc/self/status"], cwd=tmp_path,
                              env={"PATH": "/usr/bin:/bin"}, sandbox_policy=ReadOnly(), tty=True,
                              on_output=keep)
            assert await table.wait("p") == 0
    assert b"".join(chunks).split() == [b"Seccomp:", b"2"]
