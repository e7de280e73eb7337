"""Sandbox denials (codex-rs ``sandboxing/src/denial.rs``): whether a failed
command looks like the sandbox refused it and may be retried without."""

from __future__ import annotations

from typing import Literal

_SANDBOX_DENIED_KEYWORDS = (
    "operation not permitted",
    "permission denied",
    "read-only file system",
    "seccomp",
    "sandbox",
    "landlock",
    "failed to write file",
)
_SIGSYS = 31  # Linux


def is_likely_sandbox_denied(
    exit_code: int,
    *outputs: str,
    sandbox: Literal["none", "linux_seccomp", "macos_seatbelt", "windows_restricted_token"] = "linux_seccomp",
) -> bool:
    """Whether a failed sandboxed command was probably stopped by the
    sandbox: a nonzero exit and a telltale phrase in any output (stdout,
    stderr, aggregated), or death by SIGSYS under seccomp. Exit codes 2, 126
    and 127 alone are ordinary failures."""
    if sandbox == "none" or exit_code == 0:
        return False
    if any(keyword in text.lower() for text in outputs for keyword in _SANDBOX_DENIED_KEYWORDS):
        return True
    if exit_code in (2, 126, 127):
        return False
    return sandbox == "linux_seccomp" and exit_code == 128 + _SIGSYS
