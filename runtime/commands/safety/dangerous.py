"""Dangerous commands (codex-rs ``shell-command/src/command_safety/
is_dangerous_command.rs``): ``rm`` with a force flag, directly, through
``sudo``, ``env`` or ``trap``, or anywhere in a shell script."""

from __future__ import annotations

from collections.abc import Sequence

from .bash import literal_commands
from .safe import executable_name

_MAX_WRAPPER_DEPTH = 8


def dangerous_match(argv: Sequence[str], depth: int = 0) -> str | None:
    """``dangerous_command_match``: ``"forced_rm"`` for ``rm`` with a force
    flag (directly, through ``sudo``/``env``/``trap``, or anywhere in a
    shell script), else ``None``."""
    if depth > _MAX_WRAPPER_DEPTH:
        return None
    found = _dangerous_exec_match(argv, depth)
    if found is not None:
        return found
    for command in literal_commands(argv) or ():
        found = dangerous_match(command, depth + 1)
        if found is not None:
            return found
    return None


def _dangerous_exec_match(argv: Sequence[str], depth: int) -> str | None:
    if not argv:
        return None
    name = executable_name(argv[0])
    if name == "rm":
        for arg in argv[1:]:
            if arg == "--":
                break
            if arg == "--force" or (arg.startswith("-") and not arg.startswith("--") and "f" in arg):
                return "forced_rm"
        return None
    if name == "sudo":
        return dangerous_match(argv[1:], depth + 1)
    if name == "env":
        # skip -i and NAME=value assignments to reach the command env runs
        i = 1
        while i < len(argv):
            arg = argv[i]
            if arg == "--":
                i += 1
                break
            name_part, eq, _ = arg.partition("=")
            if arg in ("-i", "--ignore-environment") or (eq and name_part and not name_part.startswith("-")):
                i += 1
                continue
            break
        return dangerous_match(argv[i:], depth + 1)
    if name == "trap":
        # a trap's action is shell source
        i = 2 if argv[1:2] == ["--"] else 1
        if i < len(argv) and not argv[i].startswith("-"):
            return dangerous_match(["sh", "-c", argv[i]], depth + 1)
    return None


def command_might_be_dangerous(argv: Sequence[str]) -> bool:
    """True for commands that must never run without asking (``rm -f`` and
    ``rm -rf`` in any form the original recognises)."""
    return dangerous_match(argv) is not None
