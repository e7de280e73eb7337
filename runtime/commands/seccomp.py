"""The seccomp filter of a sandboxed command, as the original's Linux
sandbox installs it (``codex-rs/linux-sandbox/src/seccomp.rs``,
``install_network_seccomp_filter_on_current_thread``; checked against the
0.169.0 binary), compiled by libseccomp into the BPF program bubblewrap
loads with ``--seccomp FD``.

Every rule answers EPERM (the original's ``SeccompAction::Errno(EPERM)``);
everything else is allowed. Which rules, by the policy's network access:

- **Network off** (the original's ``Restricted`` mode): ``ptrace``,
  ``process_vm_readv``/``writev``, the three ``io_uring_*`` calls, and the
  socket calls ``connect accept accept4 bind listen getpeername
  getsockname shutdown sendto sendmmsg recvmmsg getsockopt setsockopt``;
  ``socket`` and ``socketpair`` only for ``AF_UNIX``. So a command can use
  pipes and ``socketpair(AF_UNIX)`` (with ``read``/``write``, ``sendmsg``,
  ``recvmsg`` and ``recvfrom``, which the original leaves open for tools
  such as ``cargo clippy``), but cannot reach any socket, a unix one on the
  host included.
- **Network on** (``VmSocketRestricted``: the filesystem is still
  restricted): only ``io_uring_*`` (it can make sockets without a
  ``socket`` call) and ``AF_VSOCK`` sockets, which reach host services
  past the sandbox.

A syscall of another ABI (32-bit, x32) kills the process, as the original's
architecture check does. One departure: the original compares the socket
family's low 32 bits; libseccomp's "not equal" compares all 64, so a family
with junk in the upper half is refused too (never allowed where the
original refuses).

:func:`denials` is the policy as data; :func:`bpf_program` compiles it with
pyseccomp (a ctypes binding to the system's ``libseccomp.so.2``), imported
on first use so the server does not load it until a sandbox is built.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import socket
import threading
from typing import NamedTuple

from ..kernel.errors import RuntimeFailure, out_of_descriptors

__all__ = ["Denial", "SeccompUnavailable", "bpf_program", "denials"]

#: Denied in both modes: io_uring can create sockets (AF_VSOCK among them)
#: without a socket() call.
IO_URING = ("io_uring_setup", "io_uring_enter", "io_uring_register")
#: Denied without network access, besides IO_URING and non-AF_UNIX sockets.
NO_NETWORK = ("ptrace", "process_vm_readv", "process_vm_writev",
              "connect", "accept", "accept4", "bind", "listen", "getpeername", "getsockname",
              "shutdown", "sendto", "sendmmsg", "recvmmsg", "getsockopt", "setsockopt")
AF_VSOCK = 40  # socket.AF_VSOCK exists only where Python was built with it

_FIX_HINT = (
    "Install libseccomp (Debian/Ubuntu: `apt-get install libseccomp2`; Fedora: "
    "`dnf install libseccomp`; Arch: `pacman -S libseccomp`) and the Python package "
    "pyseccomp (`pip install pyseccomp`), or choose the danger-full-access sandbox mode "
    "to run commands without a sandbox."
)


class SeccompUnavailable(RuntimeFailure):
    """The filter cannot be built here (no libseccomp, or a syscall it does
    not know on this architecture). The message says how to fix the host."""


class Denial(NamedTuple):
    """Deny ``syscall`` with EPERM: always, or, for the socket calls, only
    when the family (argument 0) is not ``unless_family`` / is
    ``only_family``."""

    syscall: str
    unless_family: int | None = None
    only_family: int | None = None


def denials(network: bool) -> tuple[Denial, ...]:
    """The filter for a command with (``network``) or without network access."""
    if network:
        return (*map(Denial, IO_URING),
                Denial("socket", only_family=AF_VSOCK),
                Denial("socketpair", only_family=AF_VSOCK))
    return (*map(Denial, NO_NETWORK + IO_URING),
            Denial("socket", unless_family=socket.AF_UNIX),
            Denial("socketpair", unless_family=socket.AF_UNIX))


def preload() -> None:
    """Build both filters now (the server does at start-up, in a worker
    thread): loading libseccomp runs ldconfig and exporting a filter needs
    a descriptor, both of which fail while the process is out of file
    descriptors, and a sandboxed command must not fail then for a library
    that is there. Nothing happens if they cannot be built: the first
    sandboxed command says why."""
    for network in (False, True):
        with contextlib.suppress(SeccompUnavailable, OSError):
            bpf_program(network)


def _out_of_descriptors_now() -> bool:
    """Whether this process cannot open one more descriptor right now."""
    try:
        os.close(os.dup(2))
    except OSError as exc:
        return exc.errno in (errno.EMFILE, errno.ENFILE)
    return False


def bpf_program(network: bool) -> bytes:
    """The compiled filter for this machine's architecture, ready for
    bubblewrap's ``--seccomp``. Raises :class:`SeccompUnavailable`.

    One build at a time: the start-up preload and a first sandboxed command
    run in worker threads, and a second thread must not see the other's
    half-imported libseccomp binding."""
    with _building:
        return _build(network)


_building = threading.Lock()


@functools.cache
def _build(network: bool) -> bytes:
    try:
        import pyseccomp as sc
    except (ImportError, OSError, RuntimeError) as exc:  # RuntimeError: no libseccomp.so
        # Out of descriptors, finding the library fails too (ctypes runs
        # ldconfig): that passes, it is no missing library.
        if out_of_descriptors(exc):
            raise
        if _out_of_descriptors_now():
            raise OSError(errno.EMFILE, f"out of file descriptors while loading libseccomp ({exc})") from exc
        raise SeccompUnavailable(f"the sandbox's seccomp filter cannot be built: {exc}. "
                                 f"{_FIX_HINT}") from None
    try:
        flt = sc.SyscallFilter(sc.ALLOW)
        flt.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)
        for rule in denials(network):
            if rule.unless_family is not None:
                args = [sc.Arg(0, sc.NE, rule.unless_family)]
            elif rule.only_family is not None:
                args = [sc.Arg(0, sc.MASKED_EQ, 0xFFFF_FFFF, rule.only_family)]
            else:
                args = []
            flt.add_rule(sc.ERRNO(errno.EPERM), rule.syscall, *args)
        with open(os.memfd_create("codex-seccomp-export"), "r+b", buffering=0) as out:
            flt.export_bpf(out)
            out.seek(0)
            return out.readall()
    except OSError as exc:
        if out_of_descriptors(exc):
            raise
        raise SeccompUnavailable(f"libseccomp could not build the sandbox's seccomp filter: "
                                 f"{exc}. {_FIX_HINT}") from None
