"""Known-safe commands (codex-rs ``shell-command/src/command_safety/
is_safe_command.rs``): read-only commands that run without asking, and
``bash -lc`` scripts made only of them."""

from __future__ import annotations

import re
from collections.abc import Sequence

from .bash import plain_commands

_SAFE_COMMANDS = frozenset({
    "cat", "cd", "cut", "echo", "expr", "false", "grep", "head", "id", "ls", "nl", "paste",
    "pwd", "rev", "seq", "stat", "tail", "tr", "true", "uname", "uniq", "wc", "which", "whoami",
})
# Safe on Linux only (the original's cfg!(target_os = "linux")); this server runs there.
_LINUX_SAFE_COMMANDS = frozenset({"numfmt", "tac"})
_UNSAFE_FIND_OPTIONS = frozenset({
    "-exec", "-execdir", "-ok", "-okdir",  # run arbitrary commands
    "-delete",  # deletes the matches
    "-fls", "-fprint", "-fprint0", "-fprintf",  # write path names to a file
})
_UNSAFE_RG_OPTIONS_WITH_ARGS = ("--pre", "--hostname-bin")  # run a command
_UNSAFE_RG_OPTIONS = frozenset({"--search-zip", "-z"})  # call decompressors
_GIT_READ_ONLY = ("status", "log", "diff", "show", "branch")
_GIT_OPTIONS_WITH_VALUE = frozenset({
    "-C", "-c", "--config-env", "--exec-path", "--git-dir", "--namespace", "--super-prefix", "--work-tree",
})
_GIT_INLINE_VALUE_PREFIXES = (
    "--config-env=", "--exec-path=", "--git-dir=", "--namespace=", "--super-prefix=", "--work-tree=",
)
# Global options that redirect config, the repository or helpers, or force a pager.
_UNSAFE_GIT_GLOBAL_OPTIONS = frozenset({
    "-C", "-c", "-p", "--config-env", "--exec-path", "--git-dir", "--namespace", "--paginate",
    "--super-prefix", "--work-tree",
})
_UNSAFE_GIT_SUBCOMMAND_OPTIONS = frozenset({"--output", "--ext-diff", "--textconv", "--exec"})
_GIT_BRANCH_READ_ONLY_FLAGS = frozenset({
    "--list", "-l", "--show-current", "-a", "--all", "-r", "--remotes", "-v", "-vv", "--verbose",
})
_SED_RANGE = re.compile(r"[0-9]+(,[0-9]+)?p")


def executable_name(word: str) -> str:
    """``executable_name_lookup_key`` off Windows: the path's last part."""
    return word.rstrip("/").rsplit("/", 1)[-1] if word.rstrip("/") else word


def _find_git_subcommand(argv: Sequence[str], subcommands: Sequence[str]) -> int | None:
    """Index of git's subcommand if it is one of ``subcommands``: global
    options (and their values) are skipped, and the first other word is the
    subcommand."""
    if not argv or executable_name(argv[0]) != "git":
        return None
    skip = False
    for i, arg in enumerate(argv[1:], 1):
        if skip:
            skip = False
            continue
        if arg.startswith(_GIT_INLINE_VALUE_PREFIXES) or (arg[:2] in ("-C", "-c") and len(arg) > 2):
            continue
        if arg in _GIT_OPTIONS_WITH_VALUE:
            skip = True
            continue
        if arg == "--" or arg.startswith("-"):
            continue
        return i if arg in subcommands else None
    return None


def _git_option_matches(arg: str, exact: frozenset[str], prefixed: Sequence[str]) -> bool:
    return arg in exact or arg.startswith(tuple(prefixed))


def _is_safe_git(argv: Sequence[str]) -> bool:
    index = _find_git_subcommand(argv, _GIT_READ_ONLY)
    if index is None:
        return False
    for arg in argv[1:index]:
        if _git_option_matches(arg, _UNSAFE_GIT_GLOBAL_OPTIONS, _GIT_INLINE_VALUE_PREFIXES) or (
            arg[:2] in ("-C", "-c") and len(arg) > 2
        ):
            return False
    args = argv[index + 1 :]
    if any(_git_option_matches(a, _UNSAFE_GIT_SUBCOMMAND_OPTIONS, ("--output=", "--exec=")) for a in args):
        return False
    if argv[index] != "branch" or not args:
        return True
    # only listing flags: anything else may create, rename or delete a branch
    return all(a in _GIT_BRANCH_READ_ONLY_FLAGS or a.startswith("--format=") for a in args)


def _is_safe_to_call_with_exec(argv: Sequence[str]) -> bool:
    if not argv:
        return False
    name = executable_name(argv[0])
    args = argv[1:]
    if name in _SAFE_COMMANDS or name in _LINUX_SAFE_COMMANDS:
        return True
    if name == "base64":
        return not any(
            a in ("-o", "--output") or a.startswith("--output=") or (a.startswith("-o") and a != "-o")
            for a in args
        )
    if name == "find":
        return not any(a in _UNSAFE_FIND_OPTIONS for a in argv)
    if name == "rg":
        return not any(
            a in _UNSAFE_RG_OPTIONS
            or any(a == opt or a.startswith(opt + "=") for opt in _UNSAFE_RG_OPTIONS_WITH_ARGS)
            for a in argv
        )
    if name == "git":
        return _is_safe_git(argv)
    if name == "sed":
        return len(argv) <= 4 and args[:1] == ["-n"] and is_sed_range(argv[2] if len(argv) > 2 else None)
    return False


def is_sed_range(arg: str | None) -> bool:
    """``N p`` or ``M,N p`` with ASCII digits: ``/^(\\d+,)?\\d+p$/``."""
    return arg is not None and _SED_RANGE.fullmatch(arg) is not None


def is_known_safe_command(argv: Sequence[str]) -> bool:
    """True for read-only commands that need no approval, and for
    ``bash|zsh -lc`` scripts made only of them (``is_known_safe_command``)."""
    argv = ["bash" if word == "zsh" else word for word in argv]
    if _is_safe_to_call_with_exec(argv):
        return True
    commands = plain_commands(argv)
    return commands is not None and bool(commands) and all(_is_safe_to_call_with_exec(c) for c in commands)
