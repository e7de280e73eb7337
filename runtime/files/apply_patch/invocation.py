"""A shell command that is an ``apply_patch`` invocation (``invocation.rs``):
``apply_patch '<patch>'``, or the heredoc form with an optional ``cd DIR &&``
in a ``bash -lc`` script, recognised as the original does: the original's
tree-sitter query over a tree-sitter-bash parse."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import PurePosixPath

import msgspec
import tree_sitter
import tree_sitter_bash

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
    found = _heredoc_invocation(script)
    if found is None:
        return None
    body, workdir = found
    return ApplyPatchInvocation(parse_patch(body), workdir)


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


_BASH = tree_sitter.Language(tree_sitter_bash.language())
#: The original's query (``extract_apply_patch_from_bash``): one top-level
#: statement, ``apply_patch``/``applypatch`` fed a heredoc, optionally after
#: ``cd DIR &&`` with DIR one word, one double-quoted string or one raw string.
_INVOCATION = tree_sitter.Query(_BASH, r"""
(
  program
    . (redirected_statement
        body: (command
                name: (command_name (word) @apply_name) .)
        (#any-of? @apply_name "apply_patch" "applypatch")
        redirect: (heredoc_redirect
                    . (heredoc_start)
                    . (heredoc_body) @heredoc
                    . (heredoc_end)
                    .))
    .)

(
  program
    . (redirected_statement
        body: (list
                . (command
                    name: (command_name (word) @cd_name) .
                    argument: [
                      (word) @cd_path
                      (string (string_content) @cd_path)
                      (raw_string) @cd_raw_string
                    ] .)
                "&&"
                . (command
                    name: (command_name (word) @apply_name))
                .)
        (#eq? @cd_name "cd")
        (#any-of? @apply_name "apply_patch" "applypatch")
        redirect: (heredoc_redirect
                    . (heredoc_start)
                    . (heredoc_body) @heredoc
                    . (heredoc_end)
                    .))
    .)
""")


def _text(node: tree_sitter.Node) -> str:
    return (node.text or b"").decode(errors="replace")


def _heredoc_invocation(script: str) -> tuple[str, str | None] | None:
    """The heredoc body (without its trailing newlines) and the ``cd``
    directory of the first match of :data:`_INVOCATION`, else ``None``."""
    root = tree_sitter.Parser(_BASH).parse(script.encode(errors="surrogatepass")).root_node
    for _, captures in tree_sitter.QueryCursor(_INVOCATION).matches(root):
        if "heredoc" not in captures:
            continue
        workdir = None
        if "cd_path" in captures:
            workdir = _text(captures["cd_path"][0])
        elif "cd_raw_string" in captures:
            raw = _text(captures["cd_raw_string"][0])
            workdir = raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] == "'" else raw
        return _text(captures["heredoc"][0]).rstrip("\n"), workdir
    return None
