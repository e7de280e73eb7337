"""Shell scripts as the original reads them: a tree-sitter-bash parse.

A port of codex-rs ``shell-command/src/bash.rs`` on the same grammar
(``tree-sitter-bash`` from PyPI, the grammar crate the original links). From
one syntax tree come the three views the rules take:

* the *plain* commands (:func:`parse_shell_script_into_commands`): only words,
  numbers and quoted strings joined by ``&&``, ``||``, ``;``, ``|`` and
  newlines; anything else (a redirection, a substitution, a subshell, a
  heredoc, an assignment, a comment) makes the script *complex*;
* the *literal* commands (:func:`literal_commands`): every command anywhere
  in a valid script, dynamic words dropped; enough to spot a ``rm -rf``
  hidden in a loop, never enough to call a script safe;
* the argv of a lone command fed by a heredoc (:func:`heredoc_command_prefix`).

A tree with an error or a missing node is no script at all (``None``).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator, Sequence

import tree_sitter
import tree_sitter_bash

_BASH = tree_sitter.Language(tree_sitter_bash.language())
_SHELLS = frozenset({"bash", "zsh", "sh"})
#: Named nodes a word-only command sequence may hold (``ALLOWED_KINDS``).
_PLAIN_KINDS = frozenset({"program", "list", "pipeline", "command", "command_name", "word", "string",
                          "string_content", "raw_string", "number", "concatenation"})
#: Anonymous tokens it may hold besides whitespace (``ALLOWED_PUNCT_TOKENS``).
_PLAIN_TOKENS = frozenset({"&&", "||", ";", "|", '"', "'"})
#: What may sit beside the command of a heredoc script (``is_allowed_heredoc_attachment_kind``).
_HEREDOC_ATTACHMENTS = frozenset({"heredoc_body", "simple_heredoc_body", "heredoc_redirect",
                                  "herestring_redirect", "redirected_statement", "comment"})


def _shell_type(path: str) -> str | None:
    """``detect_shell_type`` for the POSIX shells: ``/bin/bash`` → ``bash``."""
    name = path
    while name not in _SHELLS:
        stem = posixpath.splitext(posixpath.basename(name))[0]
        if not stem or stem == name:
            return None
        name = stem
    return name


def shell_argv(command: str, *, shell: str = "/bin/bash", login: bool = True) -> list[str]:
    """The argv the ``shell_command`` tool runs for ``command``
    (``Shell::derive_exec_args`` for bash, zsh and sh)."""
    return [shell, "-lc" if login else "-c", command]


def shell_script(argv: Sequence[str]) -> str | None:
    """The script of ``[bash|zsh|sh, -c|-lc, script]`` (any path to the
    shell), else ``None`` (``extract_bash_command``)."""
    if len(argv) != 3 or argv[1] not in ("-lc", "-c") or _shell_type(argv[0]) is None:
        return None
    return argv[2]


def _parse(script: str) -> tree_sitter.Node | None:
    """The root of the script's tree, ``None`` when it has an error
    (``try_parse_shell`` plus the callers' ``has_error`` check). A parser is
    made per call, as the original does: parsers are not shareable between
    threads. A lone surrogate (a Python string may hold one; the original's
    cannot) is passed through as bytes rather than failing the parse."""
    root = tree_sitter.Parser(_BASH).parse(script.encode(errors="surrogatepass")).root_node
    return None if root.has_error else root


def _text(node: tree_sitter.Node) -> str:
    # A lone surrogate (see _parse) may be cut by a node boundary: it comes
    # back as U+FFFD, which no rule mistakes for a safe word.
    return (node.text or b"").decode(errors="replace")


def _descendants(root: tree_sitter.Node, *, named: bool) -> Iterator[tree_sitter.Node]:
    """Every node under ``root`` (itself included), named ones only when
    ``named``; iterative, since a deep script must not exhaust the stack."""
    stack = [root]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(node.named_children if named else node.children)


def _commands(root: tree_sitter.Node) -> list[tree_sitter.Node]:
    """The ``command`` nodes in the order their text ends: a substitution's
    commands before the command it is an argument of. (The original's order
    is its stack's; only the plain commands' order matters, and for those
    both are source order.)"""
    commands = (n for n in _descendants(root, named=True) if n.type == "command")
    return sorted(commands, key=lambda n: (n.end_byte, n.start_byte))


def _double_quoted(node: tree_sitter.Node) -> str | None:
    """A ``"…"`` string with no expansion in it, unquoted (``parse_double_quoted_string``)."""
    if node.type != "string" or any(p.type != "string_content" for p in node.named_children):
        return None
    raw = _text(node)
    return raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] == '"' else None


def _single_quoted(node: tree_sitter.Node) -> str | None:
    """A ``'…'`` string, unquoted (``parse_raw_string``)."""
    raw = _text(node)
    return raw[1:-1] if node.type == "raw_string" and len(raw) >= 2 and raw[0] == raw[-1] == "'" else None


def _literal_word(node: tree_sitter.Node) -> str | None:
    """The static value of a word, number, string or concatenation of them
    (``parse_literal_shell_word``); a concatenation must not be empty."""
    if node.type in ("word", "number"):
        return None if node.named_child_count else _text(node)
    if node.type == "string":
        return _double_quoted(node)
    if node.type == "raw_string":
        return _single_quoted(node)
    if node.type == "concatenation":
        parts = [_literal_word(p) for p in node.named_children]
        words = [p for p in parts if p is not None]
        if len(words) < len(parts) or not any(words):
            return None
        return "".join(words)
    return None


def _plain_command(command: tree_sitter.Node) -> list[str] | None:
    """The words of a plain command (``parse_plain_command_from_node``): its
    name one ``word`` node, every argument a literal word."""
    words = []
    for child in command.named_children:
        if child.type == "command_name":
            # named_child returns None past the end; its stub says Node.
            name: tree_sitter.Node | None = child.named_child(0)
            if name is None or name.type != "word":
                return None
            words.append(_text(name))
            continue
        word = _literal_word(child) if child.type in ("word", "number", "string", "raw_string",
                                                      "concatenation") else None
        if word is None:
            return None
        words.append(word)
    return words


def parse_shell_script_into_commands(script: str) -> list[list[str]] | None:
    """The script's commands when it is *plain*: only static words joined
    by ``&&``, ``||``, ``;``, ``|`` or newlines (``parse_shell_script_into_
    commands``); ``None`` when it is complex or does not parse."""
    root = _parse(script)
    if root is None:
        return None
    for node in _descendants(root, named=False):
        if node.is_named:
            if node.type not in _PLAIN_KINDS:
                return None
        elif node.type not in _PLAIN_TOKENS and node.type.strip():
            return None
    commands = [_plain_command(c) for c in _commands(root)]
    plain = [c for c in commands if c is not None]
    return plain if len(plain) == len(commands) else None


def plain_commands(argv: Sequence[str]) -> list[list[str]] | None:
    """``parse_shell_lc_plain_commands``: the plain commands of a
    ``bash -lc`` script, ``None`` for anything else."""
    script = shell_script(argv)
    return None if script is None else parse_shell_script_into_commands(script)


def literal_commands(argv: Sequence[str]) -> list[list[str]] | None:
    """``parse_shell_lc_literal_commands``: every command of a valid
    ``bash -lc`` script, in loops, conditions and substitutions too, with its
    dynamic words left out (a command whose name is dynamic is left out).
    Good for finding a dangerous command, never for calling a script safe."""
    script = shell_script(argv)
    root = None if script is None else _parse(script)
    if root is None:
        return None
    out = []
    for command in _commands(root):
        words: list[str] = []
        for child in command.named_children:
            if child.type == "command_name":
                first: tree_sitter.Node | None = child.named_child(0)  # see _plain_command
                name = None if first is None else _literal_word(first)
                if name is None:
                    break
                words.append(name)
            elif words and (word := _literal_word(child)) is not None:
                words.append(word)
        if words:
            out.append(words)
    return out


def heredoc_command_prefix(argv: Sequence[str]) -> list[str] | None:
    """``parse_shell_lc_single_command_prefix``: the argv of the one command
    of a script that feeds it a heredoc (``python3 <<'PY' … PY``), when no
    other redirection and no variable assignment is involved."""
    script = shell_script(argv)
    root = None if script is None else _parse(script)
    if root is None:
        return None
    kinds = {n.type for n in _descendants(root, named=True)}
    commands = [n for n in _descendants(root, named=True) if n.type == "command"]
    if "heredoc_redirect" not in kinds or "file_redirect" in kinds or len(commands) != 1:
        return None
    words = []
    for child in commands[0].named_children:
        node: tree_sitter.Node | None = child.named_child(0) if child.type == "command_name" else child
        if node is not None and node.type in ("word", "number"):  # named_child: see _plain_command
            if node.named_child_count:
                return None
            words.append(_text(node))
        elif child.type not in _HEREDOC_ATTACHMENTS:
            return None
    return words or None
