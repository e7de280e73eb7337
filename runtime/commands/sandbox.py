"""The Linux sandbox: bubblewrap, as the original's ``codex-linux-sandbox``
builds it (the environment a command is spawned with is :mod:`.environment`).

A :data:`SandboxPolicy` (the wire's ``sandboxPolicy`` object) says what a
command may touch:

- ``dangerFullAccess``: everything; the command runs unwrapped.
- ``externalSandbox``: the host is already sandboxed; runs unwrapped.
- ``readOnly``: read the whole disk, write nothing (``/dev`` aside), and
  reach the network only when ``networkAccess`` is set.
- ``workspaceWrite``: as ``readOnly``, plus writes under the *writable
  roots*: the cwd, every ``writableRoots`` entry, ``$TMPDIR`` and ``/tmp``
  (each of the last two unless excluded). Under each root, the
  :data:`PROTECTED_NAMES` (``.git`` and the gitdir a ``.git`` file points
  to, ``.agents``, ``.codex``, ``.aws``) stay read-only, so a command cannot
  plant hooks or config that would run later with more rights; one that is
  missing appears as an empty read-only directory, so it cannot be created
  either (as the 0.169.0 original does).

Every sandboxed command also gets the original's seccomp filter
(:mod:`.seccomp`: no sockets but ``AF_UNIX`` ones, and no ``connect`` even
on those, no ``ptrace``, no ``io_uring``; with network access only
``io_uring`` and ``AF_VSOCK`` are refused), which bubblewrap loads with
``--seccomp FD`` after setting ``no_new_privs``.

:func:`bwrap_argv` turns a policy into a bubblewrap command line with the
original's mounts (``codex-rs/linux-sandbox/src/bwrap.rs``): the root
read-only, a fresh ``/dev``, each writable root bound read-write, the
carve-outs re-bound read-only on top (a missing one as an empty tmpfs,
``--perms 555 --tmpfs P --remount-ro P``), then new user, pid (and, with the
network off, net) namespaces, a fresh ``/proc``, ``--new-session`` and
``--die-with-parent``. Departures, each checked against bubblewrap 0.8:

- We always pass ``--unshare-user`` and ``--cap-drop ALL``: bubblewrap run
  by root otherwise keeps every capability in the sandbox, and the command
  can remount ``/`` read-write.
- We ``--chdir`` to the cwd.
- A carve-out that is a symlink has its target re-bound read-only (or, if
  the target is missing, masked as an empty read-only directory). The
  original mounts ``/dev/null`` on the link, which bubblewrap refuses when
  the target is a directory (every command in that workspace would fail);
  the link itself stays replaceable.
- The seccomp filter is loaded by bubblewrap itself (``--seccomp``), not by
  a helper inside the sandbox as the original's ``codex-linux-sandbox``.

Rules:

- Never run unsandboxed silently. A policy that needs the sandbox on a host
  where :func:`probe` finds bubblewrap unusable, or the seccomp filter
  cannot be built or loaded, raises :class:`SandboxUnavailable`, whose
  message says how to fix the host.
- ``--die-with-parent`` ties the sandbox to the *thread* that forked
  bubblewrap. Spawn it from the thread running trio (``trio.run_process``
  forks from a worker thread, which exits after 10 s idle and takes the
  sandbox down with it); :mod:`trio_codex.runtime.commands.process` does.
- Mount points bubblewrap must create for missing carve-outs appear on the
  host as empty directories. :func:`sandboxed_argv` removes them once the
  last sandbox of this process that uses them is gone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Literal, NamedTuple

import msgspec

from . import seccomp
from .environment import create_env
from ..kernel.errors import RuntimeFailure, out_of_descriptors
from ..protocol.v2.thread import (
    DangerFullAccess,
    ExternalSandbox,
    ReadOnly,
    SandboxPolicy,
    WorkspaceWrite,
)

__all__ = [
    "NETWORK_DISABLED_ENV_VAR",
    "PROTECTED_METADATA_NAMES",
    "PROTECTED_NAMES",
    "SandboxError",
    "SandboxStatus",
    "SandboxUnavailable",
    "SandboxedCommand",
    "bwrap_argv",
    "has_full_network_access",
    "implied_roots",
    "is_likely_sandbox_denied",
    "is_path_writable",
    "needs_sandbox",
    "probe",
    "read_only_subpaths",
    "run_sandboxed_cli",
    "sandbox_env",
    "sandboxed_argv",
    "writable_roots",
]

#: Set to ``1`` in the environment of every command spawned without full
#: network access (``core/src/spawn.rs``), sandboxed or not.
NETWORK_DISABLED_ENV_VAR = "CODEX_SANDBOX_NETWORK_DISABLED"

#: How long :func:`probe` lets its trial sandbox run.
PROBE_TIMEOUT = 10.0
#: How long :func:`probe` trusts a failed probe before trying again: a
#: failure can pass (no file descriptors left, a loaded host), a success is
#: kept for the life of the process.
PROBE_RETRY_INTERVAL = 5.0

#: The top-level folders of a writable root that stay read-only (the
#: original's ``PROTECTED_METADATA_PATH_NAMES`` in ``codex-rs/protocol``);
#: patch safety judges a patch by these.
PROTECTED_METADATA_NAMES = (".git", ".agents", ".codex")
#: The names the sandbox mounts read-only under every writable root: the
#: metadata folders plus ``.aws``, which the 0.169.0 binary protects too.
PROTECTED_NAMES = (*PROTECTED_METADATA_NAMES, ".aws")


class SandboxError(RuntimeFailure):
    """A command could not be placed in the sandbox its policy asks for."""


class SandboxUnavailable(SandboxError):
    """Bubblewrap is missing or cannot create its namespaces on this host.
    ``status`` is the :class:`SandboxStatus` that said so."""

    def __init__(self, status: SandboxStatus) -> None:
        super().__init__(status.message)
        self.status = status


# --- policy ----------------------------------------------------------------------


def needs_sandbox(policy: SandboxPolicy) -> bool:
    """Whether commands under ``policy`` run in bubblewrap (every policy but
    ``dangerFullAccess`` and ``externalSandbox``)."""
    return not isinstance(policy, DangerFullAccess | ExternalSandbox)


def has_full_network_access(policy: SandboxPolicy) -> bool:
    match policy:
        case DangerFullAccess():
            return True
        case ExternalSandbox(network_access=access):
            return access == "enabled"
        case ReadOnly(network_access=on) | WorkspaceWrite(network_access=on):
            return on
    raise TypeError(f"not a sandbox policy: {policy!r}")


def implied_roots(policy: WorkspaceWrite, cwd: str, tmpdir: str | None) -> list[str]:
    """The roots a ``workspaceWrite`` policy grants beside its
    ``writableRoots``, as given (neither resolved nor normalized): the cwd,
    ``/tmp`` unless excluded (and only if it is a directory, as the
    original), and ``tmpdir`` (the command's ``$TMPDIR``) unless excluded.
    Both views of the writable roots start here: the sandbox's
    (:func:`writable_roots`, resolved, to mount) and patch safety's
    (:func:`..command_safety.writable_roots`, normalized as written, to
    judge)."""
    roots = [cwd]
    if not policy.exclude_slash_tmp and os.path.isdir("/tmp"):
        roots.append("/tmp")
    if not policy.exclude_tmpdir_env_var and tmpdir:
        roots.append(tmpdir)
    return roots


def writable_roots(policy: SandboxPolicy, cwd: str | os.PathLike[str],
                   env: Mapping[str, str]) -> list[Path]:
    """The directories a command may write under ``policy``, resolved: the
    ``writableRoots``, then the :func:`implied_roots` (the cwd, ``/tmp``
    and ``$TMPDIR`` taken from the command's ``env``), in that order (the
    original's) and without repeats. Empty for every policy but
    ``workspaceWrite`` (the others can write everywhere or nowhere)."""
    if not isinstance(policy, WorkspaceWrite):
        return []
    cwd = os.fspath(cwd)
    roots = [*(os.path.join(cwd, root) for root in policy.writable_roots),
             *implied_roots(policy, cwd, env.get("TMPDIR"))]
    return list(dict.fromkeys(Path(os.path.realpath(root)) for root in roots))


def read_only_subpaths(root: str | os.PathLike[str]) -> list[Path]:
    """The carve-outs that stay read-only under the writable ``root``: the
    gitdir a ``.git`` file points to, then each of :data:`PROTECTED_NAMES`,
    whether it exists or not (a missing one must not be created)."""
    root = Path(root)
    git = root / ".git"
    gitdir = _gitdir(git) if git.is_file() else None
    return [*([gitdir] if gitdir is not None else []), *(root / name for name in PROTECTED_NAMES)]


def is_path_writable(path: str | os.PathLike[str], policy: SandboxPolicy,
                     cwd: str | os.PathLike[str], env: Mapping[str, str]) -> bool:
    """Whether a sandboxed command may write ``path`` (relative to ``cwd``):
    under a writable root and under none of its carve-outs."""
    if isinstance(policy, DangerFullAccess | ExternalSandbox):
        return True
    target = Path(os.path.realpath(Path(cwd) / path))
    for root in writable_roots(policy, cwd, env):
        if target.is_relative_to(root):
            return not any(target.is_relative_to(sub) for sub in read_only_subpaths(root))
    return False


def _gitdir(dot_git: Path) -> Path | None:
    # A worktree's or submodule's `.git` is a file: "gitdir: <path>".
    try:
        key, sep, value = dot_git.read_text().strip().partition(":")
    except (OSError, UnicodeDecodeError):
        return None
    if not sep or key.strip() != "gitdir" or not value.strip():
        return None
    gitdir = dot_git.parent / value.strip()
    return gitdir if gitdir.exists() else None


# --- bubblewrap ------------------------------------------------------------------


def bwrap_argv(argv: Sequence[str], policy: SandboxPolicy, cwd: str | os.PathLike[str],
               env: Mapping[str, str], bwrap: str = "bwrap", *,
               mount_proc: bool = True, seccomp_fd: int | None = None) -> list[str] | None:
    """The bubblewrap command line that runs ``argv`` under ``policy``, or
    ``None`` when the policy asks for no sandbox (``dangerFullAccess``,
    ``externalSandbox``). ``env`` is the command's environment (its
    ``TMPDIR`` is a writable root). ``mount_proc=False`` skips the fresh
    ``/proc`` on hosts that forbid it (see :func:`probe`). ``seccomp_fd``
    is a descriptor bubblewrap will read the seccomp program from (the
    spawn must pass it on); :func:`sandboxed_argv` always gives one.

    Raises :class:`SandboxError` if a writable root does not exist
    (bubblewrap cannot bind it)."""
    return _plan(argv, policy, cwd, env, bwrap, mount_proc, seccomp_fd)[0]


def _plan(argv: Sequence[str], policy: SandboxPolicy, cwd: str | os.PathLike[str],
          env: Mapping[str, str], bwrap: str, mount_proc: bool,
          seccomp_fd: int | None) -> tuple[list[str] | None, list[Path]]:
    # (the bwrap argv, the directories bwrap will create as mount points)
    if not needs_sandbox(policy):
        return None, []
    roots = writable_roots(policy, cwd, env)
    for root in roots:
        if not root.is_dir():
            raise SandboxError(f"the sandbox's writable root {root} does not exist; "
                               "create it, or remove it from the workspace-write policy")
    args = [bwrap, "--new-session", "--die-with-parent", "--ro-bind", "/", "/", "--dev", "/dev"]
    # Parents before children, so a root never hides one nested in it.
    for root in sorted(roots, key=lambda p: len(p.parts)):
        args += ["--bind", str(root), str(root)]
    placeholders: list[Path] = []
    # Mount on real paths: bubblewrap follows a symlinked destination.
    subpaths = sorted({Path(os.path.realpath(sub))
                       for root in roots for sub in read_only_subpaths(root)})
    for sub in subpaths:
        missing = _first_missing(sub)
        if missing is None:
            if _under(sub, roots):
                args += ["--ro-bind", str(sub), str(sub)]
        elif _under(missing, roots) and missing not in placeholders:
            # An empty read-only directory: git and friends see nothing odd.
            args += ["--perms", "555", "--tmpfs", str(missing), "--remount-ro", str(missing)]
            placeholders.append(missing)
    args += ["--unshare-user", "--unshare-pid", "--cap-drop", "ALL"]
    if not has_full_network_access(policy):
        args.append("--unshare-net")
    if mount_proc:
        args += ["--proc", "/proc"]
    if seccomp_fd is not None:
        args += ["--seccomp", str(seccomp_fd)]
    args += ["--chdir", os.fspath(cwd), "--", *argv]
    return args, placeholders


def _under(path: Path, roots: Sequence[Path]) -> bool:
    return any(path.is_relative_to(root) for root in roots)


def _first_missing(path: Path) -> Path | None:
    # The first component of `path` that does not exist, or None. A
    # placeholder another live sandbox of ours made counts as missing:
    # binding it as a source would break when that sandbox removes it.
    current = Path(path.anchor)
    for part in path.parts[1:]:
        current /= part
        if current in _placeholder_users or not os.path.lexists(current):
            return current
    return None


# Empty directories bwrap created as mount points, by the number of live
# sandboxes of this process that mount on them.
_placeholder_users: Counter[Path] = Counter()


class SandboxedCommand(NamedTuple):
    """What to spawn for a command: ``argv``, with the descriptors in
    ``pass_fds`` left open in the child (bubblewrap reads its seccomp
    program from one)."""

    argv: tuple[str, ...]
    pass_fds: tuple[int, ...] = ()


@contextlib.contextmanager
def sandboxed_argv(argv: Sequence[str], policy: SandboxPolicy, cwd: str | os.PathLike[str],
                   env: Mapping[str, str], *, bwrap: str = "bwrap") -> Iterator[SandboxedCommand]:
    """Yield what to spawn for ``argv`` under ``policy``: the bubblewrap
    command line (after :func:`probe` found it usable) and the descriptor of
    its seccomp program, or ``argv`` alone when the policy needs no sandbox.
    Spawn it once, and keep the block open until the process has exited: on
    the way out it closes the descriptor and removes the empty mount points
    bubblewrap left in the writable roots (the missing carve-outs) unless
    another sandbox of this process still mounts on them.

    Raises :class:`SandboxUnavailable` when the policy needs a sandbox this
    host cannot make, :class:`SandboxError` when a writable root is missing.
    """
    if not needs_sandbox(policy):
        yield SandboxedCommand(tuple(argv))
        return
    status = probe(bwrap)
    if not status.available:
        raise SandboxUnavailable(status)
    assert status.bwrap is not None
    try:
        program = seccomp.bpf_program(has_full_network_access(policy))
    except seccomp.SeccompUnavailable as exc:
        raise SandboxUnavailable(SandboxStatus(available=False, bwrap=status.bwrap,
                                               message=str(exc))) from None
    with _program_fd(program) as fd:
        wrapped, placeholders = _plan(argv, policy, cwd, env, status.bwrap, status.mount_proc, fd)
        assert wrapped is not None
        _placeholder_users.update(placeholders)
        try:
            yield SandboxedCommand(tuple(wrapped), (fd,))
        finally:
            _placeholder_users.subtract(placeholders)
            for path in placeholders:
                if _placeholder_users[path] <= 0:
                    del _placeholder_users[path]
                    with contextlib.suppress(OSError):  # gone, replaced or filled: leave it
                        path.rmdir()


@contextlib.contextmanager
def _program_fd(program: bytes) -> Iterator[int]:
    # A memfd holding `program` at offset 0, for bwrap's --seccomp (it reads
    # to the end, then closes its copy; the command never sees it).
    fd = os.memfd_create("codex-seccomp")
    try:
        with open(fd, "wb", closefd=False) as out:
            out.write(program)
        os.lseek(fd, 0, os.SEEK_SET)
        yield fd
    finally:
        os.close(fd)


class SandboxStatus(msgspec.Struct, frozen=True, kw_only=True):
    """What :func:`probe` found. ``bwrap`` is the resolved executable (or
    ``None`` if there is none); ``mount_proc`` is ``False`` on hosts that let
    bubblewrap create namespaces but not mount a fresh ``/proc`` (some
    containers); ``message`` says why the sandbox is unavailable and how to
    fix that."""

    available: bool
    bwrap: str | None
    mount_proc: bool = True
    message: str = ""


# Per resolved executable: what the last probe found, and when.
_probed: dict[str, tuple[SandboxStatus, float]] = {}

_INSTALL_HINT = (
    "Install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`; Fedora: "
    "`dnf install bubblewrap`; Arch: `pacman -S bubblewrap`), or choose the "
    "danger-full-access sandbox mode to run commands without a sandbox."
)
_USERNS_HINT = (
    "Allow unprivileged user namespaces (`sysctl -w kernel.unprivileged_userns_clone=1`; "
    "on Ubuntu 23.10+ also `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`); "
    "in a container, start it with user namespaces allowed (Docker: "
    "`--security-opt seccomp=unconfined --security-opt apparmor=unconfined`). "
    "Or choose the danger-full-access sandbox mode to run commands without a sandbox."
)


def probe(bwrap: str = "bwrap") -> SandboxStatus:
    """Find ``bwrap`` (on ``$PATH`` unless it is a path) and check that it can
    build this module's sandbox here, seccomp filter included, by running
    ``true`` in one with the network off. A success is cached per resolved
    executable for the life of the process, a failure for
    :data:`PROBE_RETRY_INTERVAL` seconds; a probe blocks its caller for the
    few milliseconds a sandbox takes.

    Raises:
      OSError: the process is out of file descriptors (nothing is cached).
    """
    if sys.platform != "linux":
        return SandboxStatus(available=False, bwrap=None,
                             message="the bubblewrap sandbox is Linux-only; choose the "
                                     "danger-full-access sandbox mode on this platform.")
    path = shutil.which(bwrap)
    if path is None:
        return SandboxStatus(available=False, bwrap=None,
                             message=f"bubblewrap (`{bwrap}`) was not found on PATH, and the "
                                     f"sandbox policy needs it. {_INSTALL_HINT}")
    path = os.path.realpath(path)
    cached = _probed.get(path)
    now = time.monotonic()
    if cached is None or (not cached[0].available and now - cached[1] >= PROBE_RETRY_INTERVAL):
        cached = _probed[path] = (_run_probe(path), now)
    return cached[0]


def _run_probe(bwrap: str) -> SandboxStatus:
    try:
        program = seccomp.bpf_program(network=False)
        seccomp.bpf_program(network=True)
    except seccomp.SeccompUnavailable as exc:
        return SandboxStatus(available=False, bwrap=bwrap, message=str(exc))
    true = shutil.which("true") or "/bin/true"
    base = [bwrap, "--new-session", "--die-with-parent", "--ro-bind", "/", "/", "--dev", "/dev",
            "--unshare-user", "--unshare-pid", "--cap-drop", "ALL", "--unshare-net"]
    try:
        error = _trial(base + ["--proc", "/proc"], program, true)
        # Restricted containers may refuse a fresh /proc but allow the namespaces.
        if error is not None and "Can't mount proc" in error and _trial(base, program, true) is None:
            return SandboxStatus(available=True, bwrap=bwrap, mount_proc=False)
    except (OSError, subprocess.TimeoutExpired) as exc:  # out of descriptors, a stuck host
        if out_of_descriptors(exc):
            # Passing, and nothing to say about the sandbox: not cached, the
            # caller's spawn would have failed alike.
            raise
        return SandboxStatus(available=False, bwrap=bwrap,
                             message=f"bubblewrap ({bwrap}) could not be run to check the "
                                     f"sandbox: {exc}. This is tried again in "
                                     f"{PROBE_RETRY_INTERVAL:g} s.")
    if error is None:
        return SandboxStatus(available=True, bwrap=bwrap)
    if "seccomp" in error.lower():
        return SandboxStatus(available=False, bwrap=bwrap,
                             message=f"bubblewrap ({bwrap}) cannot load the sandbox's seccomp "
                                     f"filter on this host: {error}. Use a kernel built with "
                                     "CONFIG_SECCOMP_FILTER and bubblewrap 0.3 or later, or "
                                     "choose the danger-full-access sandbox mode to run "
                                     "commands without a sandbox.")
    return SandboxStatus(available=False, bwrap=bwrap,
                         message=f"bubblewrap ({bwrap}) cannot create the sandbox's namespaces "
                                 f"on this host: {error}. {_USERNS_HINT}")


def _trial(argv: list[str], program: bytes, true: str) -> str | None:
    # Run `true` in the sandbox argv describes, under the seccomp program:
    # None if it ran, else bubblewrap's complaint.
    with _program_fd(program) as fd:
        done = subprocess.run([*argv, "--seccomp", str(fd), "--", true],
                              stdin=subprocess.DEVNULL, capture_output=True, pass_fds=(fd,),
                              timeout=PROBE_TIMEOUT, check=False)
    if done.returncode == 0:
        return None
    stderr = done.stderr.decode(errors="replace").strip()
    return stderr or f"exit status {done.returncode}"


# --- denial ----------------------------------------------------------------------

_DENIAL_WORDS = ("operation not permitted", "permission denied", "read-only file system",
                 "seccomp", "sandbox", "landlock", "failed to write file")
_SIGSYS = 31  # Linux


def is_likely_sandbox_denied(
    exit_code: int,
    *outputs: str | bytes,
    sandbox: Literal["none", "linux_seccomp", "macos_seatbelt", "windows_restricted_token"] = "linux_seccomp",
) -> bool:
    """The original's heuristic (``is_likely_sandbox_denied``,
    ``core/src/exec.rs``) for "the sandbox stopped this command", so it may
    be retried without: a nonzero exit and a tell-tale phrase in any output
    (stdout, stderr, aggregated; text or bytes), or, failing that, death by
    SIGSYS under seccomp. Exit codes 2, 126 and 127 alone are ordinary
    failures. ``sandbox`` is the sandbox the command ran in (ours is
    ``linux_seccomp``); ``none`` never counts as a denial."""
    if sandbox == "none" or exit_code == 0:
        return False
    texts = (out.decode(errors="replace") if isinstance(out, bytes) else out for out in outputs)
    if any(word in text.lower() for text in texts for word in _DENIAL_WORDS):
        return True
    if exit_code in (2, 126, 127):
        return False
    return sandbox == "linux_seccomp" and exit_code == 128 + _SIGSYS


# --- environment -----------------------------------------------------------------


def sandbox_env(env: Mapping[str, str], policy: SandboxPolicy) -> dict[str, str]:
    """``env`` plus the marker the original sets for a command without full
    network access."""
    out = dict(env)
    if not has_full_network_access(policy):
        out[NETWORK_DISABLED_ENV_VAR] = "1"
    return out


# --- `trio-codex sandbox linux` -----------------------------------------------------


def run_sandboxed_cli(argv: Sequence[str], full_auto: bool) -> int:
    """``trio-codex sandbox linux [--full-auto] COMMAND...``: run one command
    in the sandbox the agent's commands get (read-only, or workspace-write on
    the current directory with ``--full-auto``; network off), with the
    terminal's stdio, and return its exit status (128 + N for signal N). A
    host without a usable sandbox gets the fix-it message and status 1."""
    if not argv:
        print("trio-codex sandbox linux: give the command to run, e.g. "
              "`trio-codex sandbox linux -- ls -la`", file=sys.stderr)
        return 2
    policy: SandboxPolicy = WorkspaceWrite() if full_auto else ReadOnly()
    cwd = os.getcwd()
    env = sandbox_env(create_env(os.environ), policy)
    try:
        with sandboxed_argv(argv, policy, cwd, env) as command:
            returncode = subprocess.run(command.argv, cwd=cwd, env=env, pass_fds=command.pass_fds,
                                        check=False).returncode
    except SandboxError as exc:
        print(f"trio-codex sandbox linux: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # subprocess.run has killed and reaped the sandbox
        return 128 + 2
    return 128 - returncode if returncode < 0 else returncode
