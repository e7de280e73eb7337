"""The sandbox's policy arithmetic, its bubblewrap command line, the probe
and its error messages, the spawn environment, and `sandbox linux`.

Tests that run bubblewrap are skipped (with the probe's reason) on a host
where it is unusable; CI installs it.
"""

from __future__ import annotations

import errno
import math
import os
import resource
import stat
import subprocess
from pathlib import Path

import pytest
import trio

from trio_codex.runtime.commands.process import run_command
from trio_codex.runtime.commands import sandbox
from trio_codex.runtime.protocol.v2.thread import (
    DangerFullAccess,
    ExternalSandbox,
    ReadOnly,
    WorkspaceWrite,
)
from trio_codex.runtime.commands.environment import ShellEnvironmentPolicy, create_env
from trio_codex.runtime.commands.sandbox import (
    SandboxError,
    SandboxUnavailable,
    bwrap_argv,
    read_only_subpaths,
    writable_roots,
)

STATUS = sandbox.probe()
needs_bwrap = pytest.mark.skipif(not STATUS.available, reason=f"no usable sandbox: {STATUS.message}")

ISOLATED = WorkspaceWrite(exclude_slash_tmp=True, exclude_tmpdir_env_var=True)


def fake_bwrap(tmp_path: Path, script: str) -> str:
    path = tmp_path / "bwrap"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


# --- writable roots and carve-outs ------------------------------------------------------


def test_only_workspace_write_has_writable_roots(tmp_path: Path) -> None:
    for policy in (DangerFullAccess(), ReadOnly(), ReadOnly(network_access=True), ExternalSandbox()):
        assert writable_roots(policy, tmp_path, {"TMPDIR": str(tmp_path)}) == []


def test_workspace_write_roots_are_the_extra_roots_cwd_tmp_and_tmpdir(tmp_path: Path) -> None:
    extra, cwd, tmpdir = (tmp_path / n for n in ("extra", "cwd", "tmpdir"))
    policy = WorkspaceWrite(writable_roots=[str(extra)])
    roots = writable_roots(policy, cwd, {"TMPDIR": str(tmpdir)})
    assert roots == [extra, cwd, Path("/tmp"), tmpdir]


def test_tmp_and_tmpdir_can_be_excluded_and_roots_are_resolved_once(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    policy = WorkspaceWrite(writable_roots=[str(tmp_path / "real")], exclude_slash_tmp=True,
                            exclude_tmpdir_env_var=True)
    assert writable_roots(policy, tmp_path / "link", {"TMPDIR": "/somewhere"}) == [tmp_path / "real"]


def test_git_agents_codex_and_aws_stay_read_only_whether_they_exist_or_not(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / ".agents").mkdir()
    assert read_only_subpaths(tmp_path) == [
        tmp_path / ".git", tmp_path / ".agents", tmp_path / ".codex", tmp_path / ".aws"]


def test_a_git_file_protects_the_gitdir_it_points_to(tmp_path: Path) -> None:
    gitdir = tmp_path / "main" / ".git" / "worktrees" / "wt"
    gitdir.mkdir(parents=True)
    worktree = tmp_path / "wt"
    worktree.mkdir()
    (worktree / ".git").write_text("gitdir: ../main/.git/worktrees/wt\n")
    subpaths = read_only_subpaths(worktree)
    assert worktree / ".git" in subpaths
    assert [p.resolve() for p in subpaths if p.name == "wt"] == [gitdir]


def test_is_path_writable_follows_roots_and_carve_outs(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    env: dict[str, str] = {}
    assert sandbox.is_path_writable("a.txt", ISOLATED, tmp_path, env)
    assert not sandbox.is_path_writable(".git/config", ISOLATED, tmp_path, env)
    assert not sandbox.is_path_writable(".codex/config.toml", ISOLATED, tmp_path, env)
    assert not sandbox.is_path_writable(".agents/x", ISOLATED, tmp_path, env)
    assert not sandbox.is_path_writable(tmp_path.parent / "x", ISOLATED, tmp_path, env)
    assert not sandbox.is_path_writable("a.txt", ReadOnly(), tmp_path, env)
    assert sandbox.is_path_writable("/etc/passwd", DangerFullAccess(), tmp_path, env)


# --- the bubblewrap command line ----------------------------------------------------


def test_no_wrapping_for_full_access_and_external_sandbox(tmp_path: Path) -> None:
    for policy in (DangerFullAccess(), ExternalSandbox(), ExternalSandbox(network_access="enabled")):
        assert bwrap_argv(["true"], policy, tmp_path, {}) is None
        assert not sandbox.needs_sandbox(policy)


def test_read_only_command_line(tmp_path: Path) -> None:
    assert bwrap_argv(["ls", "-l"], ReadOnly(), tmp_path, {}, "/usr/bin/bwrap") == [
        "/usr/bin/bwrap", "--new-session", "--die-with-parent",
        "--ro-bind", "/", "/", "--dev", "/dev",
        "--unshare-user", "--unshare-pid", "--cap-drop", "ALL", "--unshare-net",
        "--proc", "/proc", "--chdir", str(tmp_path), "--", "ls", "-l"]


def test_network_on_keeps_the_host_network_and_no_proc_skips_proc(tmp_path: Path) -> None:
    argv = bwrap_argv(["true"], ReadOnly(network_access=True), tmp_path, {}, mount_proc=False)
    assert argv is not None
    assert "--unshare-net" not in argv and "--proc" not in argv


def test_workspace_write_binds_roots_then_carve_outs(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / ".git").mkdir(parents=True)
    policy = WorkspaceWrite(writable_roots=[str(tmp_path)], exclude_slash_tmp=True,
                            exclude_tmpdir_env_var=True)
    argv = bwrap_argv(["true"], policy, ws, {})
    assert argv is not None
    parent, root = str(tmp_path), str(ws)
    binds = [(argv[i], argv[i + 1], argv[i + 2]) for i, a in enumerate(argv)
             if a in ("--bind", "--ro-bind")]
    assert binds == [
        ("--ro-bind", "/", "/"),
        ("--bind", parent, parent),  # the parent first, so it cannot hide the cwd
        ("--bind", root, root),
        ("--ro-bind", f"{root}/.git", f"{root}/.git"),
    ]
    # Missing carve-outs, in every root: empty read-only directories.
    masks = [argv[i + 3] for i, a in enumerate(argv) if a == "--perms"]
    assert masks == [f"{parent}/{name}" for name in (".agents", ".aws", ".codex", ".git")] + [
        f"{root}/{name}" for name in (".agents", ".aws", ".codex")]
    i = argv.index(f"{root}/.codex")
    assert argv[i - 3: i + 3] == ["--perms", "555", "--tmpfs", f"{root}/.codex",
                                  "--remount-ro", f"{root}/.codex"]
    assert argv.index("--dev") < argv.index("--bind")
    assert argv[-4:] == ["--chdir", root, "--", "true"]


def test_a_symlinked_carve_out_protects_its_target(tmp_path: Path) -> None:
    (tmp_path / "decoy").mkdir()
    (tmp_path / ".codex").symlink_to(tmp_path / "decoy")
    argv = bwrap_argv(["true"], ISOLATED, tmp_path, {})
    assert argv is not None
    decoy = str(tmp_path / "decoy")
    i = argv.index(decoy)
    assert argv[i - 1: i + 2] == ["--ro-bind", decoy, decoy]
    assert f"{tmp_path}/.codex" not in argv


def test_a_missing_writable_root_is_an_error_that_names_it(tmp_path: Path) -> None:
    policy = WorkspaceWrite(writable_roots=[str(tmp_path / "gone")])
    with pytest.raises(SandboxError, match="gone.* does not exist"):
        bwrap_argv(["true"], policy, tmp_path, {})


# --- probe ------------------------------------------------------------------------------


def test_probe_without_bwrap_on_path_says_how_to_install_it(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    status = sandbox.probe()
    assert not status.available and status.bwrap is None
    assert "apt-get install bubblewrap" in status.message
    assert not sandbox.probe("/nonexistent/bwrap").available


def test_probe_reports_a_bwrap_that_cannot_make_namespaces(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "PROBE_RETRY_INTERVAL", math.inf)
    bwrap = fake_bwrap(tmp_path, "echo 'bwrap: No permissions to creating new namespace' >&2\nexit 1\n")
    status = sandbox.probe(bwrap)
    assert not status.available and status.bwrap == bwrap
    assert "No permissions to creating new namespace" in status.message
    assert "unprivileged_userns_clone" in status.message
    assert sandbox.probe(bwrap) is status  # cached for the retry interval


@needs_bwrap
def test_a_probe_that_failed_for_want_of_descriptors_is_retried(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Issue 12: after the process ran out of file descriptors once, every
    # sandboxed command kept failing. Now running out is raised as what it
    # is (the caller answers "overloaded") and nothing is cached.
    monkeypatch.setattr(sandbox, "_probed", {})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (3, hard))  # no descriptor above stdio
    try:
        with pytest.raises(OSError) as failed:
            sandbox.probe()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert failed.value.errno == errno.EMFILE
    assert sandbox._probed == {}
    status = sandbox.probe()
    assert status.available
    resource.setrlimit(resource.RLIMIT_NOFILE, (3, hard))
    try:
        assert sandbox.probe() is status  # a success is not probed again
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_probe_falls_back_to_no_proc_where_proc_cannot_be_mounted(tmp_path: Path) -> None:
    bwrap = fake_bwrap(tmp_path, 'case "$*" in *--proc*) echo "bwrap: Can\'t mount proc on '
                                 '/newroot/proc: Operation not permitted" >&2; exit 1;; esac\n')
    status = sandbox.probe(bwrap)
    assert status.available and not status.mount_proc


def test_sandboxed_argv_refuses_to_run_unsandboxed(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SandboxUnavailable, match="bubblewrap") as caught:
        with sandbox.sandboxed_argv(["true"], ReadOnly(), tmp_path, {}):
            pass
    assert not caught.value.status.available
    with sandbox.sandboxed_argv(["true"], DangerFullAccess(), tmp_path, {}) as command:
        assert command == sandbox.SandboxedCommand(("true",), ())


@needs_bwrap
def test_the_blocked_codex_placeholder_goes_with_the_last_sandbox(tmp_path: Path) -> None:
    placeholder = tmp_path / ".codex"
    with sandbox.sandboxed_argv(["true"], ISOLATED, tmp_path, {}):
        with sandbox.sandboxed_argv(["true"], ISOLATED, tmp_path, {}):
            placeholder.mkdir()  # what bubblewrap leaves as the mount point
        assert placeholder.is_dir()
    assert not placeholder.exists()


@needs_bwrap
async def test_missing_carve_outs_are_empty_read_only_folders_and_git_works(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True, timeout=30)
    (repo / "tracked").write_text("a\n")
    subprocess.run([*git, "add", "tracked"], check=True, timeout=30)
    subprocess.run([*git, "commit", "-qm", "x"], check=True, timeout=30)
    (repo / "tracked").write_text("b\n")
    (repo / "untracked").write_text("new\n")
    script = ("stat -c '%n %F %a' .agents .aws .codex; find .agents .aws .codex -mindepth 1 | wc -l; "
              "touch .codex/config.toml 2>&1; mkdir .agents/x 2>&1; "
              "git ls-files --others; git diff --stat; git status --porcelain")
    with trio.fail_after(30):
        out = await run_command(["sh", "-c", script], cwd=repo, sandbox_policy=ISOLATED)
    assert out.exit_code == 0, out.stderr
    lines = out.stdout.decode().splitlines()
    assert lines[:3] == [".agents directory 555", ".aws directory 555", ".codex directory 555"]
    assert lines[3] == "0"  # empty
    assert "Read-only file system" in lines[4] and "Read-only file system" in lines[5]
    assert lines[6:] == ["untracked", " tracked | 2 +-", " 1 file changed, 1 insertion(+), 1 deletion(-)",
                          " M tracked", "?? untracked"]
    assert sorted(os.listdir(repo)) == [".git", "tracked", "untracked"]  # the host tree is clean


@needs_bwrap
async def test_a_missing_git_cannot_be_created_in_a_writable_root(tmp_path: Path) -> None:
    # As the original: `git init` in a writable root without .git is refused.
    with trio.fail_after(30):
        out = await run_command(["git", "init", "-q"], cwd=tmp_path, sandbox_policy=ISOLATED)
    assert out.exit_code != 0 and b"Read-only file system" in out.stderr
    assert os.listdir(tmp_path) == []


@needs_bwrap
def test_a_placeholder_someone_filled_is_left_alone(tmp_path: Path) -> None:
    placeholder = tmp_path / ".agents"
    with sandbox.sandboxed_argv(["true"], ISOLATED, tmp_path, {}):
        placeholder.mkdir()
        (placeholder / "skill.md").write_text("mine")
    assert (placeholder / "skill.md").read_text() == "mine"


# --- denial heuristic ----------------------------------------------------------------------


def test_denial_needs_a_failure_and_a_tell_tale_phrase() -> None:
    assert sandbox.is_likely_sandbox_denied(1, b"", b"touch: x: Read-only file system\n")
    assert sandbox.is_likely_sandbox_denied(2, b"Permission denied", b"")
    assert not sandbox.is_likely_sandbox_denied(0, b"", b"permission denied")
    assert not sandbox.is_likely_sandbox_denied(1, b"", b"no such file")


# --- environment -------------------------------------------------------------------------

BASE = {"PATH": "/usr/bin", "HOME": "/home/u", "OPENAI_API_KEY": "k", "GH_TOKEN": "t",
        "my_secret": "s", "FOO": "bar", "NODE_REPL_AUTH_TOKEN": "x"}


def test_default_env_inherits_all_and_keeps_keys_as_the_original() -> None:
    env = create_env(BASE)
    assert env == {k: v for k, v in BASE.items() if k != "NODE_REPL_AUTH_TOKEN"}


def test_default_excludes_drop_key_secret_token_case_insensitively() -> None:
    env = create_env(BASE, ShellEnvironmentPolicy(ignore_default_excludes=False))
    assert env == {"PATH": "/usr/bin", "HOME": "/home/u", "FOO": "bar"}


def test_core_none_set_exclude_include_only_and_thread_id() -> None:
    assert create_env(BASE, ShellEnvironmentPolicy(inherit="core")) == {
        "PATH": "/usr/bin", "HOME": "/home/u"}
    assert create_env(BASE, ShellEnvironmentPolicy(inherit="none", set={"A": "1"}),
                      thread_id="th") == {"A": "1", "CODEX_THREAD_ID": "th"}
    assert "FOO" not in create_env(BASE, ShellEnvironmentPolicy(exclude=("f?o",)))
    assert create_env(BASE, ShellEnvironmentPolicy(include_only=("*PATH", "HO*"))) == {
        "PATH": "/usr/bin", "HOME": "/home/u"}
    assert "NODE_REPL_AUTH_TOKEN" not in create_env(
        BASE, ShellEnvironmentPolicy(set={"NODE_REPL_AUTH_TOKEN": "y"}))


def test_network_marker_only_without_full_network() -> None:
    marker = sandbox.NETWORK_DISABLED_ENV_VAR
    assert sandbox.sandbox_env({}, ReadOnly()) == {marker: "1"}
    assert sandbox.sandbox_env({}, WorkspaceWrite(network_access=True)) == {}
    assert sandbox.sandbox_env({}, ExternalSandbox()) == {marker: "1"}
    assert sandbox.sandbox_env({}, DangerFullAccess()) == {}


# --- `trio-codex sandbox linux` --------------------------------------------------------


@needs_bwrap
def test_sandbox_cli_read_only_and_full_auto(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert sandbox.run_sandboxed_cli(["sh", "-c", "echo x > f"], full_auto=False) != 0
    assert "Read-only file system" in capfd.readouterr().err
    assert sandbox.run_sandboxed_cli(["sh", "-c", "echo x > f; exit 7"], full_auto=True) == 7
    assert (tmp_path / "f").read_text() == "x\n"
    assert sandbox.run_sandboxed_cli(["sh", "-c", "kill -9 $$"], full_auto=True) == 137
    assert sorted(os.listdir(tmp_path)) == ["f"]  # no mount point left behind


def test_sandbox_cli_without_a_sandbox_explains_and_fails(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert sandbox.run_sandboxed_cli(["true"], full_auto=False) == 1
    assert "apt-get install bubblewrap" in capfd.readouterr().err
    assert sandbox.run_sandboxed_cli([], full_auto=False) == 2


def test_exports_are_defined() -> None:
    assert all(hasattr(sandbox, name) for name in sandbox.__all__)


def test_a_placeholder_of_a_live_sandbox_is_not_bound_as_a_source_by_the_next(tmp_path: Path) -> None:
    # Regression: concurrent sandboxes in one workspace failed with
    # "bwrap: Can't find source path <ws>/.codex" once the first one ended.
    from trio_codex.runtime.commands.sandbox import _placeholder_users, _plan

    ws = tmp_path / "ws"
    ws.mkdir()
    policy = WorkspaceWrite()
    codex = Path(os.path.realpath(ws)) / ".codex"
    first, placeholders = _plan(["true"], policy, ws, {}, "bwrap", True, None)
    assert codex in placeholders
    _placeholder_users.update(placeholders)
    try:
        codex.mkdir()  # what bwrap leaves behind while the first sandbox lives
        second, again = _plan(["true"], policy, ws, {}, "bwrap", True, None)
    finally:
        _placeholder_users.subtract(placeholders)
        for path in placeholders:
            del _placeholder_users[path]
    assert again == placeholders
    assert second is not None
    i = second.index(str(codex))
    assert second[i - 1: i + 1] == ["--tmpfs", str(codex)]


@needs_bwrap
async def test_a_sandboxed_command_killed_by_sigsys_counts_as_a_sandbox_denial(tmp_path: Path) -> None:
    # The original's heuristic: silent output, but death by SIGSYS under seccomp.
    with trio.fail_after(30):
        out = await run_command(["sh", "-c", "kill -SYS $$"], cwd=tmp_path, sandbox_policy=ISOLATED)
        plain = await run_command(["sh", "-c", "exit 3"], cwd=tmp_path, sandbox_policy=ISOLATED)
    assert (out.exit_code, out.sandbox_denied) == (128 + 31, True)
    assert (plain.exit_code, plain.sandbox_denied) == (3, False)
