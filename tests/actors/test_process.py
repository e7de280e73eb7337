"""The process runner with real subprocesses: policies enforced by the
sandbox, timeouts, bounded output, cancellation, terminals, stdin, and that
no process outlives its owner.

"Gone" is checked through /proc: a process is alive while it has an entry
that is not a zombie. Commands that must die carry a unique marker in their
argv (``sleep 987.xxx``) so they can be found even inside a pid namespace.
Sandboxed cases are skipped (with the probe's reason) where bubblewrap is
unusable; CI installs it.
"""

from __future__ import annotations

import os
import socket
import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from trio_codex.runtime.commands.process import (
    ExecOutcome,
    ProcessIdInUse,
    StdinClosed,
    UnknownProcess,
    open_process_table,
    run_command,
)
from trio_codex.runtime.commands import sandbox
from trio_codex.runtime.protocol.v2.thread import (
    DangerFullAccess,
    ExternalSandbox,
    ReadOnly,
    SandboxPolicy,
    WorkspaceWrite,
)
from trio_codex.runtime.commands.sandbox import SandboxUnavailable

STATUS = sandbox.probe()
needs_bwrap = pytest.mark.skipif(not STATUS.available, reason=f"no usable sandbox: {STATUS.message}")
FULL = DangerFullAccess()
ISOLATED = WorkspaceWrite(exclude_slash_tmp=True, exclude_tmpdir_env_var=True)
LIMIT = 30  # seconds; a bound on every wait, never an expectation of speed


def sandboxed(policy: SandboxPolicy) -> object:
    return pytest.param(policy, marks=needs_bwrap, id=type(policy).__name__)


def plain(policy: SandboxPolicy) -> object:
    return pytest.param(policy, id=type(policy).__name__)


def alive(marker: str) -> list[int]:
    """Pids of live (non-zombie) processes whose command line holds `marker`."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ")
            state = Path(f"/proc/{name}/stat").read_bytes().rpartition(b")")[2].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state not in (b"Z", b"X"):
            found.append(int(name))
    return found


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes().rpartition(b")")[2].split()[0]
    except OSError:
        return False
    return state not in (b"Z", b"X")


async def until_gone(marker: str) -> None:
    # A pid namespace is torn down just after its bwrap dies: allow for that.
    with trio.fail_after(LIMIT):
        while alive(marker):
            await trio.sleep(0.02)


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Path]:
    ws = tmp_path / "ws"
    ws.mkdir()
    yield ws


async def run(argv: list[str], cwd: Path, policy: SandboxPolicy, **kw: object) -> ExecOutcome:
    with trio.fail_after(LIMIT):
        return await run_command(argv, cwd=cwd, sandbox_policy=policy, **kw)  # type: ignore[arg-type]


# --- run_command ------------------------------------------------------------------------


@pytest.mark.parametrize("policy", [plain(FULL), plain(ExternalSandbox()), sandboxed(ReadOnly()),
                                    sandboxed(WorkspaceWrite())])
async def test_echo_under_each_policy(policy: SandboxPolicy, workspace: Path) -> None:
    out = await run(["sh", "-c", 'echo hi; echo oops >&2; echo "net=$CODEX_SANDBOX_NETWORK_DISABLED"'],
                    workspace, policy)
    network_off = not sandbox.has_full_network_access(policy)
    assert out.stdout == f"hi\nnet={'1' if network_off else ''}\n".encode()
    assert out.stderr == b"oops\n"
    assert out.aggregated_output == out.stdout + out.stderr
    assert (out.exit_code, out.timed_out, out.truncated, out.sandbox_denied) == (0, False, False, False)


@needs_bwrap
async def test_workspace_write_denies_writes_outside_the_workspace(tmp_path: Path,
                                                                   workspace: Path) -> None:
    outside = tmp_path / "outside.txt"
    out = await run(["sh", "-c", f"echo x > {outside}"], workspace, ISOLATED)
    assert out.exit_code != 0 and out.sandbox_denied
    assert b"Read-only file system" in out.stderr
    assert not outside.exists()


@needs_bwrap
async def test_workspace_write_allows_the_cwd_and_tmp(tmp_path: Path, workspace: Path) -> None:
    in_tmp = tmp_path / "in-tmp.txt"  # pytest's tmp_path lives under /tmp
    assert str(in_tmp).startswith("/tmp/")
    out = await run(["sh", "-c", f"echo a > a.txt && echo b > {in_tmp}"], workspace, WorkspaceWrite())
    assert (out.exit_code, out.stderr) == (0, b"")
    assert (workspace / "a.txt").read_text() == "a\n" and in_tmp.read_text() == "b\n"


@needs_bwrap
async def test_read_only_denies_the_cwd(workspace: Path) -> None:
    out = await run(["sh", "-c", "echo a > a.txt"], workspace, ReadOnly())
    assert out.exit_code != 0 and out.sandbox_denied
    assert not (workspace / "a.txt").exists()


@needs_bwrap
async def test_git_and_codex_stay_read_only_and_leave_no_trace(workspace: Path) -> None:
    (workspace / ".git").mkdir()
    for command in ("echo x > .git/hook", "echo x > .codex", "mkdir .codex"):
        out = await run(["sh", "-c", command], workspace, ISOLATED)
        assert out.exit_code != 0, (command, out.stderr)
    assert list((workspace / ".git").iterdir()) == []
    assert not (workspace / ".codex").exists()  # bubblewrap's mount point was removed


@needs_bwrap
async def test_a_symlinked_carve_out_still_runs_and_its_target_is_read_only(
        workspace: Path) -> None:
    (workspace / "decoy").mkdir()
    (workspace / ".codex").symlink_to("decoy")
    out = await run(["sh", "-c", "echo x > .codex/config.toml"], workspace, ISOLATED)
    assert out.exit_code != 0 and out.sandbox_denied, out.stderr
    assert list((workspace / "decoy").iterdir()) == []


@pytest.mark.parametrize(("policy", "reachable"), [
    pytest.param(ReadOnly(), False, marks=needs_bwrap, id="off"),
    pytest.param(WorkspaceWrite(network_access=False), False, marks=needs_bwrap, id="ws-off"),
    pytest.param(ReadOnly(network_access=True), True, marks=needs_bwrap, id="on"),
    pytest.param(FULL, True, id="full"),
])
async def test_network_follows_the_policy(policy: SandboxPolicy, reachable: bool,
                                          workspace: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        probe = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=5)"
        out = await run([sys.executable, "-c", probe], workspace, policy)
    assert (out.exit_code == 0) == reachable, out.stderr


@pytest.mark.parametrize("policy", [plain(FULL), sandboxed(ReadOnly())])
async def test_a_timeout_kills_the_command_and_its_children(policy: SandboxPolicy,
                                                            workspace: Path) -> None:
    marker = "987.101"
    out = await run(["sh", "-c", f"echo started; sleep {marker} & sleep {marker}"], workspace,
                    policy, timeout_ms=300)
    assert (out.timed_out, out.exit_code, out.stdout) == (True, 124, b"started\n")
    await until_gone(marker)


async def test_background_children_end_with_the_command(workspace: Path) -> None:
    marker = "987.102"
    out = await run(["sh", "-c", f"sleep {marker} >/dev/null 2>&1 & echo bye"], workspace, FULL)
    assert (out.exit_code, out.stdout) == (0, b"bye\n")
    await until_gone(marker)


async def test_exit_by_signal_is_128_plus_n(workspace: Path) -> None:
    out = await run(["sh", "-c", "kill -9 $$"], workspace, FULL)
    assert out.exit_code == 137


async def test_ten_megabytes_of_output_are_bounded(workspace: Path) -> None:
    cap = 1024 * 1024
    chunks: list[bytes] = []

    async def on_output(data: bytes, stream: str) -> None:
        if stream == "stdout" and len(chunks) < 4:
            chunks.append(data)

    tracemalloc.start()
    try:
        out = await run(["sh", "-c", "head -c 10000000 /dev/zero; echo tail >&2"], workspace,
                        FULL, output_cap_bytes=cap, on_output=on_output)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.exit_code == 0 and out.truncated
    assert out.stdout == bytes(cap) and out.stderr == b"tail\n"
    assert len(out.aggregated_output) == cap and out.aggregated_output.endswith(b"tail\n")
    assert b"".join(chunks) == bytes(len(b"".join(chunks)))
    # stdout and the aggregate are each up to `cap`, plus a read or two.
    assert peak < 3 * cap, f"held {peak} bytes for a {cap}-byte cap"


async def test_output_is_streamed_in_order(workspace: Path) -> None:
    seen: list[tuple[str, bytes]] = []

    async def on_output(data: bytes, stream: str) -> None:
        seen.append((stream, data))

    out = await run(["sh", "-c", "for i in 1 2 3; do echo $i; done; echo e >&2"], workspace, FULL,
                    on_output=on_output)
    assert b"".join(d for s, d in seen if s == "stdout") == out.stdout == b"1\n2\n3\n"
    assert b"".join(d for s, d in seen if s == "stderr") == out.stderr == b"e\n"


@pytest.mark.parametrize("policy", [plain(FULL), sandboxed(ReadOnly())])
async def test_cancellation_kills_and_reaps_before_it_propagates(policy: SandboxPolicy,
                                                                 workspace: Path) -> None:
    marker = "987.103"
    pids: list[int] = []
    started = trio.Event()

    async def on_output(data: bytes, stream: str) -> None:
        pids.extend(int(p) for p in data.split())
        if len(pids) == 2:
            started.set()

    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: run_command(
                ["sh", "-c", f"echo $$; sleep {marker} & echo $!; wait"], cwd=workspace,
                sandbox_policy=policy, timeout_ms=None, on_output=on_output))
            await started.wait()
            nursery.cancel_scope.cancel()
    if not sandbox.needs_sandbox(policy):  # host pids; a sandbox's are its namespace's
        assert not any(pid_alive(pid) for pid in pids)
        assert not os.path.exists(f"/proc/{pids[0]}")  # reaped, not a zombie
    await until_gone(marker)


async def test_an_empty_command_and_a_missing_program(workspace: Path) -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        await run([], workspace, FULL)
    with pytest.raises(FileNotFoundError):
        await run(["/nonexistent/program"], workspace, FULL)


async def test_no_bwrap_means_no_command(workspace: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap"):
        await run(["true"], workspace, ReadOnly(), bwrap="/nonexistent/bwrap")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SandboxUnavailable, match="not found on PATH"):
        await run(["true"], workspace, WorkspaceWrite())
    async with open_process_table() as table:
        with pytest.raises(SandboxUnavailable):
            await table.spawn("p", ["true"], cwd=workspace, sandbox_policy=ReadOnly())
        assert "p" not in table


# --- ProcessTable ---------------------------------------------------------------------------


async def poll_until(table, process_id: str, want: bytes) -> bytes:  # type: ignore[no-untyped-def]
    got = b""
    with trio.fail_after(LIMIT):
        while want not in got:
            poll = await table.poll(process_id, 100)
            got += poll.output
            assert poll.exit_code is None, got
    return got


async def test_pty_echo_and_resize(workspace: Path) -> None:
    async with open_process_table() as table:
        await table.spawn("sh", ["sh"], cwd=workspace, sandbox_policy=FULL, tty=True,
                          size=(30, 90))
        await table.write("sh", b"echo hi-$((40+2)); stty size\n")
        out = await poll_until(table, "sh", b"30 90")
        assert b"hi-42\r\n" in out  # a terminal: echo and CRLF
        table.resize("sh", 40, 100)
        await table.write("sh", b"stty size\n")
        await poll_until(table, "sh", b"40 100")
        await table.write("sh", b"exit 5\n")
        with trio.fail_after(LIMIT):
            poll = await table.poll("sh", LIMIT * 1000)
        assert poll.exit_code == 5
        assert "sh" not in table


@needs_bwrap
async def test_pty_under_the_sandbox(workspace: Path) -> None:
    async with open_process_table() as table:
        await table.spawn("sh", ["sh"], cwd=workspace, sandbox_policy=ReadOnly(), tty=True)
        await table.write("sh", b"echo x > f; echo done\n")
        out = await poll_until(table, "sh", b"done")
        assert b"Read-only file system" in out


async def test_write_stdin_round_trip_and_close_stdin(workspace: Path) -> None:
    async with open_process_table() as table:
        await table.spawn("cat", ["cat"], cwd=workspace, sandbox_policy=FULL, stdin=True)
        await table.write("cat", b"hello\n")
        assert await poll_until(table, "cat", b"hello\n") == b"hello\n"
        await table.close_stdin("cat")
        with pytest.raises(StdinClosed):
            await table.write("cat", b"more")
        with trio.fail_after(LIMIT):
            poll = await table.poll("cat", LIMIT * 1000)
        assert (poll.output, poll.exit_code) == (b"", 0)
        with pytest.raises(UnknownProcess):
            await table.poll("cat", 0)


async def test_stdin_is_dev_null_unless_asked_for(workspace: Path) -> None:
    async with open_process_table() as table:
        await table.spawn("p", ["cat"], cwd=workspace, sandbox_policy=FULL)
        with pytest.raises(StdinClosed):
            await table.write("p", b"x")
        with trio.fail_after(LIMIT):
            assert await table.wait("p") == 0


async def test_streamed_output_then_exit_code(workspace: Path) -> None:
    seen: list[tuple[str, bytes]] = []

    async def on_output(data: bytes, stream: str) -> None:
        seen.append((stream, data))

    async with open_process_table() as table:
        await table.spawn("x", ["sh", "-c", "echo out; echo err >&2; exit 2"], cwd=workspace,
                          sandbox_policy=FULL, on_output=on_output)
        with trio.fail_after(LIMIT):
            assert await table.wait("x") == 2
    assert sorted(seen) == [("stderr", b"err\n"), ("stdout", b"out\n")]


async def test_terminate_reports_137(workspace: Path) -> None:
    async with open_process_table() as table:
        await table.spawn("s", ["sleep", "987.104"], cwd=workspace, sandbox_policy=FULL)
        table.terminate("s")
        with trio.fail_after(LIMIT):
            assert await table.wait("s") == 137
    await until_gone("987.104")


async def test_unread_output_keeps_head_and_tail(workspace: Path) -> None:
    async with open_process_table() as table:
        await table.spawn("p", ["sh", "-c", "printf a%.0s $(seq 1000); printf b%.0s $(seq 1000)"],
                          cwd=workspace, sandbox_policy=FULL, output_cap_bytes=100)
        with trio.fail_after(LIMIT):
            poll = await table.poll("p", LIMIT * 1000)
    assert (poll.output, poll.exit_code, poll.dropped_bytes) == (b"a" * 50 + b"b" * 50, 0, 1900)


async def test_ids_are_checked(workspace: Path) -> None:
    async with open_process_table() as table:
        await table.spawn("a", ["sleep", "987.105"], cwd=workspace, sandbox_policy=FULL)
        with pytest.raises(ProcessIdInUse):
            await table.spawn("a", ["true"], cwd=workspace, sandbox_policy=FULL)
        with pytest.raises(UnknownProcess):
            await table.write("b", b"")
        with pytest.raises(ValueError, match="tty"):
            table.resize("a", 10, 10)
        with pytest.raises(ValueError, match="tty"):
            await table.spawn("c", ["true"], cwd=workspace, sandbox_policy=FULL, size=(1, 1))
    await until_gone("987.105")


async def test_a_full_table_stops_its_least_recently_used(workspace: Path) -> None:
    async with open_process_table(max_processes=2) as table:
        for pid in ("old", "new"):
            await table.spawn(pid, ["sleep", "987.106"], cwd=workspace, sandbox_policy=FULL)
        await table.poll("new", 0)
        await table.spawn("newest", ["sleep", "987.106"], cwd=workspace, sandbox_policy=FULL)
        assert ("old" in table, "new" in table, "newest" in table) == (False, True, True)
    await until_gone("987.106")


async def test_close_all_leaves_no_process(workspace: Path) -> None:
    marker = "987.107"
    policies = [FULL, ReadOnly()] if STATUS.available else [FULL]
    async with open_process_table() as table:
        for i, policy in enumerate(policies):
            await table.spawn(f"pipe{i}", ["sh", "-c", f"sleep {marker} & sleep {marker}"],
                              cwd=workspace, sandbox_policy=policy)
            await table.spawn(f"tty{i}", ["sh", "-i"], cwd=workspace, sandbox_policy=policy,
                              tty=True)
            # An interactive shell puts its background job in a process group of its own.
            await table.write(f"tty{i}", f"sleep {marker} &\necho spawned\n".encode())
            await poll_until(table, f"tty{i}", b"spawned")
        with trio.fail_after(LIMIT):
            while len(alive(marker)) < 3 * len(policies):
                await trio.sleep(0.02)
        await table.close_all()
        assert len(table) == 0
        await until_gone(marker)
        await table.spawn("again", ["true"], cwd=workspace, sandbox_policy=FULL)
        with trio.fail_after(LIMIT):
            assert await table.wait("again") == 0


async def test_leaving_the_table_block_kills_everything(workspace: Path) -> None:
    marker = "987.108"
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            async def owner() -> None:
                async with open_process_table() as table:
                    await table.spawn("p", ["sleep", marker], cwd=workspace, sandbox_policy=FULL)
                    await trio.sleep_forever()
            nursery.start_soon(owner)
            while not alive(marker):
                await trio.sleep(0.02)
            nursery.cancel_scope.cancel()
    await until_gone(marker)


@needs_bwrap
async def test_a_sandbox_outlives_idle_trio_worker_threads(workspace: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # bwrap --die-with-parent follows the thread that forked it. Spawned from
    # a trio worker thread (as trio.run_process does), the sandbox would die
    # when that thread retires after IDLE_TIMEOUT.
    monkeypatch.setattr("trio._core._thread_cache.IDLE_TIMEOUT", 0.05)
    await trio.to_thread.run_sync(lambda: None)
    async with open_process_table() as table:
        await table.spawn("s", ["sleep", "987.109"], cwd=workspace, sandbox_policy=ReadOnly())
        with trio.fail_after(LIMIT):
            poll = await table.poll("s", 500)
        assert poll.exit_code is None
    await until_gone("987.109")
