"""A shell command that is an ``apply_patch`` invocation (``invocation.rs``):
``apply_patch '<patch>'``, or the heredoc form with an optional ``cd DIR &&``
in a ``bash -lc`` script."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import PurePosixPath

import msgspec

from .parse import parse_patch
from .patch import APPLY_PATCH_COMMANDS, ImplicitInvocationError, ParseError, Patch


class ApplyPatchInvocation(msgspec.Struct, frozen=True):
    """A shell command that is really an ``apply_patch`` call.

    ``workdir`` is the directory of a ``cd <dir> &&`` prefix: the patch's
    paths resolve against it (see :meth:`cwd`)."""

    patch: Patch
    workdir: str | None = None

    def cwd(self, cwd: str) -> str:
        """The directory the patch applies in, for a command run in ``cwd``."""
        return os.path.join(cwd, self.workdir) if self.workdir else cwd


def maybe_parse_apply_patch_invocation(argv: Sequence[str]) -> ApplyPatchInvocation | None:
    """Recognise the shell commands the original intercepts as
    ``apply_patch`` calls (from ``shell``, ``shell_command`` and
    ``exec_command``):

    * ``["apply_patch" | "applypatch", PATCH]``;
    * ``[SHELL, FLAG, SCRIPT]`` with ``bash``/``zsh``/``sh`` and ``-lc``/``-c``
      (``pwsh``/``powershell`` with ``-Command``, optionally after
      ``-NoProfile``; ``cmd`` with ``/c``), where SCRIPT is exactly
      ``apply_patch <<'EOF'`` … ``EOF`` (any delimiter, quoted or not),
      optionally after ``cd DIR &&``.

    Returns None for any other command (including a script with anything
    before or after that statement). Raises :class:`ParseError` when the
    patch in an invocation does not parse, and
    :class:`ImplicitInvocationError` for a bare patch body run as a
    command or script.
    """
    argv = list(argv)
    script = _shell_script(argv)
    bare = argv[0] if len(argv) == 1 else script
    if bare is not None and _is_patch(bare):
        raise ImplicitInvocationError()
    if len(argv) == 2 and argv[0] in APPLY_PATCH_COMMANDS:
        return ApplyPatchInvocation(parse_patch(argv[1]))
    if script is None:
        return None
    match = _HEREDOC_INVOCATION.fullmatch(script)
    if match is None:
        return None
    workdir = next((g for g in match.group("word", "dq", "sq") if g is not None), None)
    return ApplyPatchInvocation(parse_patch(match.group("body").rstrip("\n")), workdir)


def _is_patch(text: str) -> bool:
    try:
        parse_patch(text)
    except ParseError:
        return False
    return True


def _shell_name(shell: str) -> str:
    return PurePosixPath(shell).stem.lower()


def _shell_flag_ok(shell: str, flag: str) -> bool:
    name = _shell_name(shell)
    if name in ("bash", "zsh", "sh"):
        return flag in ("-lc", "-c")
    if name in ("pwsh", "powershell"):
        return flag.lower() == "-command"
    return name == "cmd" and flag.lower() == "/c"


def _shell_script(argv: list[str]) -> str | None:
    if len(argv) == 3 and _shell_flag_ok(argv[0], argv[1]):
        return argv[2]
    if (
        len(argv) == 4
        and _shell_name(argv[0]) in ("pwsh", "powershell")
        and argv[1].lower() == "-noprofile"
        and _shell_flag_ok(argv[0], argv[2])
    ):
        return argv[3]
    return None


# The one statement the original's tree-sitter query accepts: an optional
# `cd DIR &&` (DIR one word or quoted string), then `apply_patch` with no
# argument and a closed heredoc, and nothing else. Bash ends the heredoc at
# the first line that is its delimiter, hence the lookahead in the body.
_HEREDOC_INVOCATION = re.compile(
    r"""
    \s*
    (?: cd [ \t]+
        (?: (?P<word>[^\s;&|<>()'"`$\\]+) | "(?P<dq>[^"$`\\]*)" | '(?P<sq>[^']*)' )
        [ \t]* && [ \t]* )?
    (?:apply_patch|applypatch) [ \t]* << [ \t]*
    (?P<q>['"]?) (?P<delim>[A-Za-z0-9_.][A-Za-z0-9_.-]*) (?P=q) [ \t]* \n
    (?P<body>(?: (?!(?P=delim)(?:\n|\Z)) .*\n )*)
    (?P=delim) \s*
    """,
    re.VERBOSE,
)
