"""Which commands and patches run without asking, and what the client is asked.

A port of the original's command-safety rules (codex-rs ``shell-command``,
``core/src/exec_policy.rs``, ``core/src/safety.rs``, ``core/src/tools/
sandboxing.rs`` and ``orchestrator.rs``, ``protocol/src/approvals.rs``): the
lists, the conditions, the reasons and the wire shapes are the original's.
Everything here is a pure function of its arguments: no I/O, no clock, no
environment (the caller passes ``$TMPDIR`` and the cwd).

The pieces, in the order a shell call meets them:

* **Shell words.** :func:`shlex_split` and :func:`shlex_join` are the Rust
  ``shlex`` crate's (1.3), whose quoting differs from :func:`shlex.quote`:
  the original renders commands with it, and clients see that text.
* **Scripts.** The original parses ``bash -lc``/``zsh -lc`` scripts with
  tree-sitter-bash. :class:`_Parser` is a small recursive-descent parser for
  the same grammar, lenient where tree-sitter is lenient (``fi`` outside an
  ``if`` is a command name, empty bodies are fine) and strict where it
  reports an error (a trailing ``&&``, an unclosed quote). From one parse
  come the three views the original takes: the *plain* commands (only words
  and quoted strings joined by ``&&``, ``||``, ``;``, ``|`` and newlines;
  anything else, a redirection, a substitution, a subshell, a heredoc, makes
  the script *complex*), the *literal* commands (every command anywhere in a
  valid script, dynamic words dropped: enough to spot a ``rm -rf`` hidden in
  a loop, never enough to call a script safe), and the argv of a lone
  command fed by a heredoc.
* **Safety.** :func:`is_known_safe_command` (read-only commands, and scripts
  made only of them), :func:`command_might_be_dangerous` (``rm`` with a force
  flag, also through ``sudo``, ``env``, ``trap`` or a nested ``sh -c``).
* **Command actions.** :func:`parse_command_actions` summarises a command for
  the ``commandActions`` of ``commandExecution`` items and approval requests.
* **Decisions.** :func:`assess_command` is the original's
  ``create_exec_approval_requirement_for_command`` with no execpolicy rules
  loaded: every segment of a script is judged by
  ``render_decision_for_unmatched_command`` and the strictest wins.
  :func:`available_decisions`, :func:`wants_no_sandbox_approval` and
  :func:`approval_cache_key` complete the approval round trip.
* **Patches.** :func:`assess_patch` is ``assess_patch_safety`` over the
  writable roots of the sandbox policy.
* **Denials.** :func:`is_likely_sandbox_denied` is the heuristic that decides
  whether a failed command may be retried without the sandbox.

Approval policies are ``"untrusted"``, ``"on-request"``, ``"never"`` or
``{"granular": {...}}`` (a dict or the config's ``GranularApproval``);
sandbox policies are the wire objects (``{"type": "workspaceWrite", ...}``, as
dicts or as the v2 Structs) or the config's mode strings (``"read-only"``,
``"workspace-write"``, ``"danger-full-access"``).
"""

from __future__ import annotations

import posixpath
import re
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

import msgspec

__all__ = [
    "BANNED_PREFIX_SUGGESTIONS",
    "PROTECTED_METADATA_NAMES",
    "RETRY_WITHOUT_SANDBOX_REASON",
    "AskUser",
    "AutoApprove",
    "CommandAction",
    "ExecApprovalRequirement",
    "Forbidden",
    "ListFilesAction",
    "NeedsApproval",
    "PatchSafety",
    "ReadAction",
    "Reject",
    "SearchAction",
    "Skip",
    "UnknownAction",
    "approval_cache_key",
    "assess_command",
    "assess_patch",
    "available_decisions",
    "canonicalize_command_for_approval",
    "command_might_be_dangerous",
    "default_exec_approval_requirement",
    "is_known_safe_command",
    "is_likely_sandbox_denied",
    "literal_commands",
    "parse_command_actions",
    "parse_shell_script_into_commands",
    "patch_approval_cache_keys",
    "patch_wants_no_sandbox_approval",
    "plain_commands",
    "shell_argv",
    "shell_script",
    "shlex_join",
    "shlex_split",
    "unwritable_paths",
    "wants_no_sandbox_approval",
    "writable_roots",
]

SandboxPermissions = Literal["use_default", "require_escalated", "with_additional_permissions"]

# ---------------------------------------------------------------------------
# Shell words: the Rust shlex crate, 1.3.0
# ---------------------------------------------------------------------------

_SPLIT_BLANKS = " \t\n"


def shlex_split(text: str) -> list[str] | None:
    """Split like ``shlex::split``: POSIX words, ``#`` comments at a word's
    start, ``None`` for an unclosed quote or a trailing backslash."""
    words: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in _SPLIT_BLANKS:
            i += 1
            continue
        if c == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
            continue
        word: list[str] = []
        while i < n and text[i] not in _SPLIT_BLANKS:
            c = text[i]
            if c == "'":
                end = text.find("'", i + 1)
                if end < 0:
                    return None
                word.append(text[i + 1 : end])
                i = end + 1
            elif c == '"':
                i += 1
                while True:
                    if i >= n:
                        return None
                    c = text[i]
                    if c == '"':
                        i += 1
                        break
                    if c == "\\":
                        if i + 1 >= n:
                            return None
                        escaped = text[i + 1]
                        if escaped in '$`"\\':
                            word.append(escaped)
                        elif escaped != "\n":
                            word.append("\\" + escaped)
                        i += 2
                    else:
                        word.append(c)
                        i += 1
            elif c == "\\":
                if i + 1 >= n:
                    return None
                if text[i + 1] != "\n":
                    word.append(text[i + 1])
                i += 2
            else:
                word.append(c)
                i += 1
        words.append("".join(word))
    return words


_UNQUOTED_OK = frozenset("+-./:@]_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_UNQUOTED, _SINGLE, _DOUBLE = 1, 2, 4


def _quote(word: str) -> str:
    """``shlex::Quoter::quote``: bare when safe, else the fewest chunks in
    single or double quotes (non-ASCII is always quoted)."""
    if not word:
        return "''"
    out: list[str] = []
    rest = word
    while rest:
        ok = _SINGLE | _DOUBLE | _UNQUOTED
        i = 0
        if rest[0] == "^":
            # bash treats ^ after a quote specially; it may only open a '…' chunk
            ok, i = _SINGLE, 1
        while i < len(rest):
            c = rest[i]
            cur = ok
            if ord(c) >= 0x80:
                cur &= ~_UNQUOTED
            else:
                if c not in _UNQUOTED_OK:
                    cur &= ~_UNQUOTED
                if c in "'^\\":
                    cur &= ~_SINGLE
                if c in "`$!^":
                    cur &= ~_DOUBLE
            if not cur:
                break
            ok = cur
            i += 1
        chunk, rest = rest[:i], rest[i:]
        if ok & _UNQUOTED:
            if not out and not rest:
                return word
            out.append(chunk)
        elif ok & _SINGLE:
            out.append(f"'{chunk}'")
        else:
            out.append('"' + re.sub(r'([$`"\\])', r"\\\1", chunk) + '"')
    return "".join(out)


def _try_join(words: Iterable[str]) -> str | None:
    """``shlex::try_join``: ``None`` when a word holds a NUL."""
    words = list(words)
    if any("\0" in w for w in words):
        return None
    return " ".join(_quote(w) for w in words)


def shlex_join(words: Iterable[str]) -> str:
    """Join words for display as the original does (``shlex_join`` in
    ``parse_command.rs``)."""
    joined = _try_join(words)
    return "<command included NUL byte>" if joined is None else joined


def _render(words: Sequence[str]) -> str:
    """``render_shlex_command``: the quoted command, or the words joined by
    spaces when one holds a NUL."""
    joined = _try_join(words)
    return " ".join(words) if joined is None else joined


# ---------------------------------------------------------------------------
# Shell scripts: the subset of tree-sitter-bash the rules depend on
# ---------------------------------------------------------------------------

_SHELLS = frozenset({"bash", "zsh", "sh"})


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


class _ScriptError(Exception):
    """The script does not parse (tree-sitter would report an ERROR node)."""


class _Part(NamedTuple):
    kind: Literal["bare", "raw", "dq", "dyn"]  # dyn: expansions, substitutions, $'…'
    text: str


class _Word(NamedTuple):
    parts: tuple[_Part, ...]

    def literal(self) -> str | None:
        """The word's value when it is static, as tree-sitter's node text:
        backslashes in bare words and double quotes are kept, quotes are not.
        A concatenation must not be empty."""
        if any(p.kind == "dyn" for p in self.parts):
            return None
        text = "".join(p.text for p in self.parts)
        return None if len(self.parts) > 1 and not text else text

    @property
    def unquoted(self) -> str | None:
        """The text of a word that is one unquoted part (a reserved word
        must be one)."""
        return self.parts[0].text if len(self.parts) == 1 and self.parts[0].kind == "bare" else None

    @property
    def lead(self) -> str:
        """The unquoted text the word starts with."""
        return self.parts[0].text if self.parts[0].kind == "bare" else ""

    def bare_word(self) -> str | None:
        """The text when tree-sitter sees one ``word`` node: unquoted, and no
        bracket or brace beside other characters (those split the word into
        a concatenation)."""
        text = self.unquoted
        return None if text is None or (len(text) > 1 and any(c in text for c in "[]{}")) else text


class _Command(NamedTuple):
    words: tuple[_Word, ...]
    has_assignment: bool


class _Token(NamedTuple):
    kind: Literal["word", "op", "redir", "arith", "eof"]
    text: str
    word: _Word | None = None

    @property
    def keyword(self) -> str | None:
        return None if self.word is None else self.word.unquoted


class _Sink:
    """What one parse found, nested substitutions included."""

    def __init__(self) -> None:
        self.commands: list[_Command] = []
        self.plain = True
        self.heredocs = 0
        self.file_redirects = 0


_NAME_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_NAME_CHARS = _NAME_START | frozenset("0123456789")
_SPECIAL_PARAMS = frozenset("@*#?-$!0123456789")
_WORD_END = frozenset(" \t\n;&|()<>")
_OPERATORS = (";;&", ";;", ";&", ";", "&&", "&>>", "&>", "&", "||", "|&", "|", "(", ")")
_REDIRECTS = ("<<<", "<<-", "<<", "<>", "<&", "<", ">>", ">&", ">|", ">")
_ASSIGNMENT = re.compile(r"(--)?[A-Za-z_][A-Za-z0-9_]*(\[[^\]]*\])?\+?=")  # tree-sitter takes --name= too


class _Lexer:
    """Tokens of a script, read lazily so that the parser can nest."""

    def __init__(self, src: str, pos: int, sink: _Sink) -> None:
        self.src = src
        self.pos = pos
        self.sink = sink
        self._heredoc_next: bool | None = None  # a heredoc delimiter comes next; strip tabs?
        self._heredocs: list[tuple[str, bool, bool]] = []  # delimiter, strip tabs, expands

    def next(self) -> _Token:
        src, n = self.src, len(self.src)
        while True:
            while self.pos < n and src[self.pos] in " \t":
                self.pos += 1
            if src.startswith("\\\n", self.pos):
                self.pos += 2
                if not src[self.pos :].strip(" \t"):
                    raise _ScriptError("line continuation at the end")
                continue
            if self.pos < n and src[self.pos] == "#":
                self.sink.plain = False
                end = src.find("\n", self.pos)
                self.pos = n if end < 0 else end
                continue
            break
        if self.pos >= n:
            return _Token("eof", "")
        c = src[self.pos]
        if c == "\n":
            self.pos += 1
            self._read_heredoc_bodies()
            return _Token("op", "\n")
        if c == "(" and src.startswith("((", self.pos):
            self.pos = _skip_arithmetic(src, self.pos + 2)
            return _Token("arith", "((")
        fd = self.pos
        while fd < n and src[fd].isdigit():
            fd += 1
        if fd < n and src[fd] in "<>" and not src.startswith("(", fd + 1):
            for op in _REDIRECTS:
                if src.startswith(op, fd):
                    start, self.pos = self.pos, fd + len(op)
                    if op in ("<<", "<<-"):
                        self._heredoc_next = op == "<<-"
                    return _Token("redir", src[start : self.pos])  # with its fd number
        for op in _OPERATORS:
            if src.startswith(op, self.pos):
                self.pos += len(op)
                return _Token("redir" if op.startswith("&>") else "op", op)
        return self._word()

    def _word(self) -> _Token:
        src, n = self.src, len(self.src)
        parts: list[_Part] = []
        bare: list[str] = []

        def flush() -> None:
            if bare:
                parts.append(_Part("bare", "".join(bare)))
                bare.clear()

        while self.pos < n:
            c = src[self.pos]
            if c in _WORD_END:
                if c in "<>" and src.startswith("(", self.pos + 1):
                    flush()
                    self.pos = self._substitution(self.pos + 2)
                    parts.append(_Part("dyn", ""))
                    continue
                if c == "(" and _ASSIGNMENT.fullmatch("".join(bare)):
                    # NAME=(a b): an array assignment, one word up to the ')'
                    end = src.find(")", self.pos)
                    if end < 0:
                        raise _ScriptError("unclosed array")
                    bare.append(src[self.pos : end + 1])
                    self.pos = end + 1
                    continue
                break
            if c == "\\":
                if self.pos + 1 >= n:
                    raise _ScriptError("trailing backslash")
                if src[self.pos + 1] == "\n":
                    break  # tree-sitter ends the word at a line continuation
                bare.append(src[self.pos : self.pos + 2])
                self.pos += 2
            elif c == "'":
                end = src.find("'", self.pos + 1)
                if end < 0:
                    raise _ScriptError("unclosed single quote")
                flush()
                parts.append(_Part("raw", src[self.pos + 1 : end]))
                self.pos = end + 1
            elif c == '"':
                flush()
                start = self.pos + 1
                self.pos, dynamic = self._double_quoted(start, '"')
                parts.append(_Part("dyn" if dynamic else "dq", src[start : self.pos - 1]))
            elif c == "`":
                flush()
                self.pos = self._backticks(self.pos + 1)
                parts.append(_Part("dyn", ""))
            elif c == "$":
                flush()
                self.pos = self._dollar(self.pos)
                parts.append(_Part("dyn", ""))
            else:
                bare.append(c)
                self.pos += 1
        flush()
        word = _Word(tuple(parts))
        if self._heredoc_next is not None:
            delimiter = "".join(
                re.sub(r"\\(.)", r"\1", p.text) if p.kind == "bare" else p.text for p in parts
            )
            expands = all(p.kind == "bare" and "\\" not in p.text for p in parts)
            self._heredocs.append((delimiter, self._heredoc_next, expands))
            self._heredoc_next = None
        return _Token("word", "", word)

    def _double_quoted(self, pos: int, end: str | None) -> tuple[int, bool]:
        """Scan a double-quoted body (or, with ``end=None``, an expanding
        heredoc body to the end, where tree-sitter leaves backquotes alone);
        return the position after it and whether it expands anything."""
        src, n = self.src, len(self.src)
        dynamic = False
        while True:
            if pos >= n:
                if end is None:
                    return pos, dynamic
                raise _ScriptError("unclosed double quote")
            c = src[pos]
            if c == end:
                return pos + 1, dynamic
            if c == "\\":
                pos += 2
            elif c == "`" and end is not None:
                pos = self._backticks(pos + 1)
                dynamic = True
            elif c == "$":
                pos = self._dollar(pos)
                dynamic = True
            else:
                pos += 1

    def _dollar(self, pos: int) -> int:
        """Skip one ``$…`` expansion; nested commands go to the sink."""
        src, n = self.src, len(self.src)
        nxt = src[pos + 1] if pos + 1 < n else ""
        if src.startswith("$((", pos):
            return _skip_arithmetic(src, pos + 3, self)
        if nxt == "(":
            return self._substitution(pos + 2)
        if nxt == "{":
            return self._braces(pos + 2)
        if nxt == "'":
            i = pos + 2
            while i < n and src[i] != "'":
                i += 2 if src[i] == "\\" else 1
            if i >= n:
                raise _ScriptError("unclosed $'")
            return i + 1
        if nxt == '"':
            return self._double_quoted(pos + 2, '"')[0]
        if nxt in _NAME_START:
            i = pos + 2
            while i < n and src[i] in _NAME_CHARS:
                i += 1
            return i
        if nxt and nxt in _SPECIAL_PARAMS:
            return pos + 2
        return pos + 1

    def _braces(self, pos: int) -> int:
        """Skip a ``${…}`` body, with its nested expansions."""
        src, n = self.src, len(self.src)
        while pos < n:
            c = src[pos]
            if c == "}":
                return pos + 1
            if c == "\\":
                pos += 2
            elif c == "'":
                end = src.find("'", pos + 1)
                if end < 0:
                    break
                pos = end + 1
            elif c == '"':
                pos = self._double_quoted(pos + 1, '"')[0]
            elif c == "`":
                pos = self._backticks(pos + 1)
            elif c == "$":
                pos = self._dollar(pos)
            else:
                pos += 1
        raise _ScriptError("unclosed ${")

    def _substitution(self, pos: int) -> int:
        """Parse a ``$(…)`` or ``<(…)`` body in place; return the position
        after its ``)``."""
        lexer = _Lexer(self.src, pos, self.sink)
        _Parser(lexer, self.sink).parse_substitution()
        return lexer.pos

    def _backticks(self, pos: int) -> int:
        src, n = self.src, len(self.src)
        i = pos
        while i < n and src[i] != "`":
            i += 2 if src[i] == "\\" else 1
        if i >= n:
            raise _ScriptError("unclosed backquote")
        body = re.sub(r"\\([`$\\])", r"\1", src[pos:i])
        _Parser(_Lexer(body, 0, self.sink), self.sink).parse_script()
        return i + 1

    def _read_heredoc_bodies(self) -> None:
        src, n = self.src, len(self.src)
        for delimiter, strip_tabs, expands in self._heredocs:
            start = self.pos
            while self.pos < n:
                end = src.find("\n", self.pos)
                line_end = n if end < 0 else end
                line = src[self.pos : line_end]
                self.pos = n if end < 0 else end + 1
                if (line.lstrip("\t") if strip_tabs else line) == delimiter:
                    body = src[start : line_end - len(line)]
                    break
            else:
                raise _ScriptError(f"heredoc without its {delimiter!r} line")
            if expands:
                _Lexer(body, 0, self.sink)._double_quoted(0, None)
        self._heredocs.clear()


def _skip_arithmetic(src: str, pos: int, lexer: _Lexer | None = None) -> int:
    """Skip an arithmetic body up to its ``))``; ``$(…)`` inside it is
    parsed when a lexer is given."""
    depth, n = 0, len(src)
    while pos < n:
        c = src[pos]
        if c == "$" and lexer is not None and src.startswith("$(", pos) and not src.startswith("$((", pos):
            pos = lexer._substitution(pos + 2)
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            if depth == 0:
                if src.startswith("))", pos):
                    return pos + 2
                raise _ScriptError("unbalanced arithmetic")
            depth -= 1
        pos += 1
    raise _ScriptError("unclosed arithmetic")


_LONE_DASH = _Word((_Part("bare", "-"),))
_BAD_NAME = re.compile(r"[\[{].|[A-Za-z_][A-Za-z0-9_]*[\[#]")
_DECLARATIONS = frozenset({"declare", "typeset", "export", "readonly", "local", "unset", "unsetenv"})
_CASE_ENDS = (";;", ";&", ";;&")


class _Parser:
    """Recursive descent over :class:`_Lexer` tokens, recording commands and
    what makes the script complex into the shared :class:`_Sink`."""

    def __init__(self, lexer: _Lexer, sink: _Sink) -> None:
        self.lexer = lexer
        self.sink = sink
        self._peeked: _Token | None = None

    def parse_script(self) -> None:
        self._list(())
        if self._peek().kind != "eof":
            raise _ScriptError(f"unexpected {self._peek().text or 'word'}")

    def parse_substitution(self) -> None:
        if not self._list((")",)):
            raise _ScriptError("empty substitution")
        self._expect_op(")")

    # -- tokens --

    def _peek(self) -> _Token:
        if self._peeked is None:
            self._peeked = self.lexer.next()
        return self._peeked

    def _advance(self) -> _Token:
        tok = self._peek()
        self._peeked = None
        return tok

    def _is_op(self, *ops: str) -> bool:
        tok = self._peek()
        return tok.kind == "op" and tok.text in ops

    def _is_keyword(self, *words: str) -> bool:
        return self._peek().keyword in words

    def _expect_op(self, op: str) -> None:
        if not self._is_op(op):
            raise _ScriptError(f"expected {op!r}")
        self._advance()

    def _expect_keyword(self, word: str) -> None:
        if not self._is_keyword(word):
            raise _ScriptError(f"expected {word!r}")
        self._advance()

    def _expect_word(self) -> _Word:
        tok = self._advance()
        if tok.word is None:
            raise _ScriptError("expected a word")
        return tok.word

    def _skip_newlines(self) -> None:
        while self._is_op("\n"):
            self._advance()

    # -- grammar --

    def _stops(self, stops: tuple[str, ...]) -> bool:
        tok = self._peek()
        return tok.kind == "eof" or (tok.text or tok.keyword) in stops

    def _list(self, stops: tuple[str, ...]) -> int:
        """Statements until a stop word or operator; returns how many."""
        count = 0
        while True:
            self._skip_newlines()
            if self._stops(stops):
                return count
            self._and_or()
            count += 1
            if self._is_op(";", "\n", "&") or (self._is_op(";;") and ";;" not in stops):
                if not self._is_op(";", "\n"):
                    self.sink.plain = False  # background job, or a stray ;; tree-sitter accepts
                self._advance()
                continue
            return count

    def _and_or(self) -> None:
        self._pipeline()
        while self._is_op("&&", "||"):
            self._advance()
            self._skip_newlines()
            self._pipeline()

    def _pipeline(self) -> None:
        if self._is_keyword("!"):
            self.sink.plain = False
            self._advance()
        self._command()
        while self._is_op("|", "|&"):
            if self._advance().text == "|&":
                self.sink.plain = False
            self._skip_newlines()
            self._command()

    def _command(self) -> None:
        tok = self._peek()
        compound = {
            "{": self._brace_group,
            "{}": self._advance,  # an empty group
            "if": self._if,
            "while": self._while,
            "until": self._while,
            "for": self._for,
            "select": self._for,
            "case": self._case,
            "function": self._function,
            "[[": self._test,
            "[": self._test,
        }.get(tok.keyword or "")
        if tok.kind == "op" and tok.text == "(":
            compound = self._subshell
        elif tok.kind == "arith":
            compound = self._advance
        if compound is None:
            self._simple_command()
            return
        self.sink.plain = False
        compound()
        self._redirects()

    def _redirects(self) -> None:
        while self._peek().kind == "redir":
            self._redirect()

    def _redirect(self, *, after_words: bool = False) -> None:
        """A redirection and its target. After a command's words, a file
        redirection takes every word that follows as a destination, as
        tree-sitter's grammar does (``cat > out foo`` runs ``cat``)."""
        op = self._advance().text.lstrip("0123456789")
        self.sink.plain = False
        if op in ("<<", "<<-"):
            self.sink.heredocs += 1
        elif op != "<<<":
            self.sink.file_redirects += 1
            if after_words:
                self._expect_word()
                while self._peek().kind == "word":
                    self._advance()
                return
        self._expect_word()

    def _simple_command(self) -> None:
        words: list[_Word] = []
        assignment = redirected = False
        while True:
            tok = self._peek()
            if tok.kind == "redir":
                if words and words[-1] == _LONE_DASH and (tok.text[0].isdigit() or tok.text in ("<<", "<<-")):
                    words.pop()  # tree-sitter loses a lone `-` before a heredoc or an fd redirect
                self._redirect(after_words=bool(words))
                redirected = True
            elif tok.kind == "word":
                self._advance()
                assert tok.word is not None  # the lexer gives every word token its _Word
                if not words and _ASSIGNMENT.match(tok.word.lead):
                    assignment = True
                    self.sink.plain = False
                    continue
                if not words and tok.keyword in _DECLARATIONS and not assignment:
                    self.sink.plain = False
                    self._declaration()
                    return
                if not words and _BAD_NAME.match(tok.word.lead):
                    raise _ScriptError("a subscript or bracket where a command name belongs")
                words.append(tok.word)
                if len(words) == 1 and self._is_op("("):
                    self._advance()
                    self._expect_op(")")
                    self.sink.plain = False
                    self._skip_newlines()
                    self._command()
                    return
            else:
                break
        if not words:
            if not (assignment or redirected):
                raise _ScriptError(f"expected a command, got {tok.text or 'end of script'!r}")
            return
        self.sink.commands.append(_Command(tuple(words), assignment))

    def _declaration(self) -> None:
        while self._peek().kind in ("word", "redir"):
            if self._peek().kind == "redir":
                self._redirect()
            else:
                self._advance()

    def _subshell(self) -> None:
        self._advance()
        if not self._list((")",)):
            raise _ScriptError("empty subshell")
        self._expect_op(")")

    def _brace_group(self) -> None:
        self._advance()
        self._list(("}",))
        self._expect_keyword("}")

    def _condition(self, stop: str) -> None:
        if not self._list((stop,)):
            raise _ScriptError("empty condition")
        self._expect_keyword(stop)

    def _if(self) -> None:
        self._advance()
        self._condition("then")
        self._list(("elif", "else", "fi"))
        while self._is_keyword("elif"):
            self._advance()
            self._condition("then")
            self._list(("elif", "else", "fi"))
        if self._is_keyword("else"):
            self._advance()
            self._list(("fi",))
        self._expect_keyword("fi")

    def _while(self) -> None:
        self._advance()
        self._condition("do")
        self._list(("done",))
        self._expect_keyword("done")

    def _for(self) -> None:
        self._advance()
        if self._peek().kind == "arith":
            self._advance()
        else:
            self._expect_word()
            self._skip_newlines()
            if self._is_keyword("in"):
                self._advance()
                while self._peek().kind == "word":
                    self._advance()
        if self._is_op(";", "\n"):
            self._advance()
        self._skip_newlines()
        self._expect_keyword("do")
        self._list(("done",))
        self._expect_keyword("done")

    def _case(self) -> None:
        self._advance()
        self._expect_word()
        self._skip_newlines()
        self._expect_keyword("in")
        while True:
            self._skip_newlines()
            if self._is_keyword("esac"):
                self._advance()
                return
            if self._is_op("("):
                self._advance()
            self._expect_word()
            while self._is_op("|"):
                self._advance()
                self._expect_word()
            self._expect_op(")")
            self._list((*_CASE_ENDS, "esac"))
            if self._is_op(*_CASE_ENDS):
                self._advance()

    def _function(self) -> None:
        self._advance()
        self._expect_word()
        if self._is_op("("):
            self._advance()
            self._expect_op(")")
        self._skip_newlines()
        self._command()

    def _test(self) -> None:
        close = "]]" if self._advance().keyword == "[[" else "]"
        while not self._is_keyword(close):
            if self._advance().kind == "eof":
                raise _ScriptError(f"unclosed test, expected {close!r}")
        self._advance()


def _parse(script: str) -> _Sink | None:
    sink = _Sink()
    try:
        _Parser(_Lexer(script, 0, sink), sink).parse_script()
    except (_ScriptError, RecursionError):
        return None
    return sink


_NUMBER = re.compile(r"-?[0-9]+")


def _plain_words(command: _Command) -> list[str] | None:
    """The words of a plain command: its name one bare word (not a number,
    which tree-sitter parses as one), no assignment, every word static."""
    name = command.words[0].bare_word()
    if command.has_assignment or name is None or _NUMBER.fullmatch(name):
        return None
    words = [w.literal() for w in command.words]
    return None if None in words else words  # type: ignore[return-value]


def parse_shell_script_into_commands(script: str) -> list[list[str]] | None:
    """The script's commands when it is *plain*: only static words joined
    by ``&&``, ``||``, ``;``, ``|`` or newlines (``parse_shell_script_into_
    commands``); ``None`` when it is complex or does not parse."""
    sink = _parse(script)
    if sink is None or not sink.plain:
        return None
    commands = [_plain_words(c) for c in sink.commands]
    return None if None in commands else commands  # type: ignore[return-value]


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
    sink = None if script is None else _parse(script)
    if sink is None:
        return None
    out = []
    for command in sink.commands:
        name = command.words[0].literal()
        if name is not None:
            out.append([name, *(w for w in (x.literal() for x in command.words[1:]) if w is not None)])
    return out


def _heredoc_command_prefix(argv: Sequence[str]) -> list[str] | None:
    """``parse_shell_lc_single_command_prefix``: the argv of the one command
    of a script that feeds it a heredoc (``python3 <<'PY' … PY``), when no
    other redirection and no variable assignment is involved."""
    script = shell_script(argv)
    sink = None if script is None else _parse(script)
    if sink is None or not sink.heredocs or sink.file_redirects or len(sink.commands) != 1:
        return None
    command = sink.commands[0]
    words = [w.bare_word() for w in command.words]
    if command.has_assignment or None in words:
        return None
    return words  # type: ignore[return-value]


# ---------------------------------------------------------------------------
# Known-safe and dangerous commands (shell-command/src/command_safety/)
# ---------------------------------------------------------------------------

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


def _executable_name(word: str) -> str:
    """``executable_name_lookup_key`` off Windows: the path's last part."""
    return word.rstrip("/").rsplit("/", 1)[-1] if word.rstrip("/") else word


def _find_git_subcommand(argv: Sequence[str], subcommands: Sequence[str]) -> int | None:
    """Index of git's subcommand if it is one of ``subcommands``: global
    options (and their values) are skipped, and the first other word is the
    subcommand."""
    if not argv or _executable_name(argv[0]) != "git":
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
    name = _executable_name(argv[0])
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
        return len(argv) <= 4 and args[:1] == ["-n"] and _is_sed_range(argv[2] if len(argv) > 2 else None)
    return False


def _is_sed_range(arg: str | None) -> bool:
    """``N p`` or ``M,N p`` with ASCII digits: ``/^(\\d+,)?\\d+p$/``."""
    return arg is not None and _SED_RANGE.fullmatch(arg) is not None


def is_known_safe_command(argv: Sequence[str]) -> bool:
    """True for read-only commands that need no approval, and for
    ``bash|zsh -lc`` scripts made only of them (``is_known_safe_command``)."""
    argv = ["bash" if word == "zsh" else word for word in argv]
    if _is_safe_to_call_with_exec(argv):
        return True
    commands = plain_commands(argv) or []
    return bool(commands) and all(_is_safe_to_call_with_exec(c) for c in commands)


_MAX_WRAPPER_DEPTH = 8


def _dangerous_match(argv: Sequence[str], depth: int = 0) -> str | None:
    """``dangerous_command_match``: ``"forced_rm"`` for ``rm`` with a force
    flag (directly, through ``sudo``/``env``/``trap``, or anywhere in a
    shell script), else ``None``."""
    if depth > _MAX_WRAPPER_DEPTH:
        return None
    found = _dangerous_exec_match(argv, depth)
    if found is not None:
        return found
    for command in literal_commands(argv) or ():
        found = _dangerous_match(command, depth + 1)
        if found is not None:
            return found
    return None


def _dangerous_exec_match(argv: Sequence[str], depth: int) -> str | None:
    if not argv:
        return None
    name = _executable_name(argv[0])
    if name == "rm":
        for arg in argv[1:]:
            if arg == "--":
                break
            if arg == "--force" or (arg.startswith("-") and not arg.startswith("--") and "f" in arg):
                return "forced_rm"
        return None
    if name == "sudo":
        return _dangerous_match(argv[1:], depth + 1)
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
        return _dangerous_match(argv[i:], depth + 1)
    if name == "trap":
        # a trap's action is shell source
        i = 2 if argv[1:2] == ["--"] else 1
        if i < len(argv) and not argv[i].startswith("-"):
            return _dangerous_match(["sh", "-c", argv[i]], depth + 1)
    return None


def command_might_be_dangerous(argv: Sequence[str]) -> bool:
    """True for commands that must never run without asking (``rm -f`` and
    ``rm -rf`` in any form the original recognises)."""
    return _dangerous_match(argv) is not None


# ---------------------------------------------------------------------------
# Command actions (shell-command/src/parse_command.rs)
# ---------------------------------------------------------------------------


class ReadAction(msgspec.Struct, frozen=True, rename="camel", tag_field="type", tag="read"):
    command: str
    name: str
    path: str


class ListFilesAction(msgspec.Struct, frozen=True, rename="camel", tag_field="type", tag="listFiles"):
    command: str
    path: str | None = None


class SearchAction(msgspec.Struct, frozen=True, rename="camel", tag_field="type", tag="search"):
    command: str
    query: str | None = None
    path: str | None = None


class UnknownAction(msgspec.Struct, frozen=True, rename="camel", tag_field="type", tag="unknown"):
    command: str


CommandAction = ReadAction | ListFilesAction | SearchAction | UnknownAction

_CONNECTORS = frozenset({"&&", "||", "|", ";"})


def parse_command_actions(command: str | Sequence[str], *, cwd: str | None = None) -> list[CommandAction]:
    """What a command does, for ``commandActions`` (``parse_command`` and
    ``CommandAction::from_core_with_cwd``).

    ``command`` is an argv, or a script string (what ``shell_command``
    receives, read as ``bash -lc <script>``). With ``cwd``, the paths of read
    actions are made absolute against it, as the app-server does.
    Consecutive duplicates collapse; if any part is unknown, the whole
    command is one unknown action."""
    argv = ["bash", "-lc", command] if isinstance(command, str) else list(command)
    parsed = _parse_command_impl(argv)
    actions: list[CommandAction] = []
    for action in parsed:
        if not actions or actions[-1] != action:
            actions.append(action)
    if any(isinstance(a, UnknownAction) for a in actions):
        script = shell_script(argv)
        return [UnknownAction(script if script is not None else shlex_join(argv))]
    if cwd is not None:
        actions = [
            ReadAction(a.command, a.name, _join_normalized(cwd, a.path)) if isinstance(a, ReadAction) else a
            for a in actions
        ]
    return actions


def _parse_command_impl(argv: list[str]) -> list[CommandAction]:
    script = shell_script(argv)
    if script is not None:
        return _parse_script_actions(script)
    tokens = _normalize_tokens(argv)
    parts = _split_on_connectors(tokens) if _CONNECTORS.intersection(tokens) else [tokens]
    commands = _summarize_with_cd(parts)
    while (simpler := _simplify_once(commands)) is not None:
        commands = simpler
    return commands


def _summarize_with_cd(parts: Iterable[list[str]]) -> list[CommandAction]:
    """Summaries of each part; ``cd`` parts are dropped but move the base
    of the read paths that follow them."""
    commands: list[CommandAction] = []
    cwd: str | None = None
    for tokens in parts:
        if tokens and tokens[0] == "cd":
            target = _cd_target(tokens[1:])
            if target is not None:
                cwd = target if cwd is None else _join_paths(cwd, target)
            continue
        action = _summarize(tokens)
        if isinstance(action, ReadAction) and cwd is not None:
            action = ReadAction(action.command, action.name, _join_paths(cwd, action.path))
        commands.append(action)
    return commands


def _parse_script_actions(script: str) -> list[CommandAction]:
    commands = parse_shell_script_into_commands(script)
    if not commands:
        return [UnknownAction(script)]
    script_tokens = shlex_split(script)
    if script_tokens is None:
        script_tokens = [script]
    had_connectors = len(commands) > 1 or bool(_CONNECTORS.intersection(script_tokens))
    # pipelines: summarise the primary command, not its formatting helpers
    commands = [c for c in commands if not _is_small_formatting_command(c)]
    if not commands:
        return [UnknownAction(script)]
    actions = _summarize_with_cd(commands)
    if len(actions) > 1:
        actions = [a for a in actions if a != UnknownAction("true")]
        while (simpler := _simplify_once(actions)) is not None:
            actions = simpler
    if len(actions) != 1:
        return actions
    # One command left: show the whole script when it was one command.
    action = actions[0]
    joined = shlex_join(script_tokens)
    if isinstance(action, ReadAction):
        if not had_connectors:
            return [ReadAction(joined, action.name, action.path)]
        has_sed_n = any(a == "sed" and b == "-n" for a, b in zip(script_tokens, script_tokens[1:]))
        if "|" in script_tokens and has_sed_n:
            return [ReadAction(script, action.name, action.path)]
    elif isinstance(action, ListFilesAction) and not had_connectors:
        return [ListFilesAction(joined, action.path)]
    elif isinstance(action, SearchAction) and not had_connectors:
        return [SearchAction(joined, action.query, action.path)]
    return [action]


def _first_word(action: CommandAction, word: str) -> bool:
    if not isinstance(action, UnknownAction):
        return False
    tokens = shlex_split(action.command) or []
    return bool(tokens) and tokens[0] == word


def _simplify_once(commands: list[CommandAction]) -> list[CommandAction] | None:
    if len(commands) <= 1:
        return None
    # echo … && rest → rest
    if _first_word(commands[0], "echo"):
        return commands[1:]
    # cd foo && cmd → cmd
    for i, c in enumerate(commands):
        if _first_word(c, "cd"):
            if i + 1 < len(commands):
                return commands[:i] + commands[i + 1 :]
            break
    # cmd || true → cmd; nl with only flags → dropped
    for i, c in enumerate(commands):
        if c == UnknownAction("true"):
            return commands[:i] + commands[i + 1 :]
    for i, c in enumerate(commands):
        tokens = shlex_split(c.command) if isinstance(c, UnknownAction) else None
        if tokens and tokens[0] == "nl" and all(t.startswith("-") for t in tokens[1:]):
            return commands[:i] + commands[i + 1 :]
    return None


def _normalize_tokens(argv: list[str]) -> list[str]:
    """Drop a leading ``yes |``/``no |`` and unwrap exactly ``bash``/``zsh
    -c|-lc`` (only reached for argvs :func:`shell_script` did not take)."""
    if len(argv) >= 2 and argv[1] == "|" and argv[0] in ("yes", "y", "no", "n"):
        return argv[2:]
    if len(argv) == 3 and argv[0] in ("bash", "zsh") and argv[1] in ("-c", "-lc"):
        return shlex_split(argv[2]) or argv
    return argv


def _split_on_connectors(tokens: list[str]) -> list[list[str]]:
    out: list[list[str]] = [[]]
    for t in tokens:
        if t in _CONNECTORS:
            if out[-1]:
                out.append([])
        else:
            out[-1].append(t)
    return [part for part in out if part]


def _trim_at_connector(tokens: Sequence[str]) -> list[str]:
    for i, t in enumerate(tokens):
        if t in _CONNECTORS:
            return list(tokens[:i])
    return list(tokens)


def _short_display_path(path: str) -> str:
    """The last useful component: ``webview/src`` → ``webview``."""
    trimmed = path.replace("\\", "/").rstrip("/")
    for part in reversed(trimmed.split("/")):
        if part and part not in ("build", "dist", "node_modules", "src"):
            return part
    return trimmed


def _skip_flag_values(args: Sequence[str], flags_with_values: Iterable[str]) -> list[str]:
    """Arguments minus ``--flag=value`` forms and the flags that take a value
    (with their values); everything after ``--`` is kept."""
    flags = frozenset(flags_with_values)
    out: list[str] = []
    skip = False
    for i, a in enumerate(args):
        if skip:
            skip = False
            continue
        if a == "--":
            out.extend(args[i + 1 :])
            break
        if a.startswith("--") and "=" in a:
            continue
        if a in flags:
            skip = i + 1 < len(args)
            continue
        out.append(a)
    return out


def _positional_operands(args: Sequence[str], flags_with_values: Iterable[str] = ()) -> list[str]:
    flags = frozenset(flags_with_values)
    out: list[str] = []
    after_dashes = skip = False
    for i, a in enumerate(args):
        if skip:
            skip = False
        elif after_dashes:
            out.append(a)
        elif a == "--":
            after_dashes = True
        elif a.startswith("--") and "=" in a:
            continue
        elif a in flags:
            skip = i + 1 < len(args)
        elif not a.startswith("-"):
            out.append(a)
    return out


def _non_flags(args: Sequence[str], flags_with_values: Iterable[str]) -> list[str]:
    return [a for a in _skip_flag_values(_trim_at_connector(args), flags_with_values) if not a.startswith("-")]


def _sed_read_path(args: Sequence[str]) -> str | None:
    args = _trim_at_connector(args)
    if "-n" not in args:
        return None
    has_range = False
    i = 0
    while i < len(args):
        if args[i] in ("-e", "--expression"):
            has_range = has_range or _is_sed_range(args[i + 1] if i + 1 < len(args) else None)
            i += 2
        elif args[i] in ("-f", "--file"):
            i += 2
        else:
            i += 1
    has_range = has_range or any(not a.startswith("-") and _is_sed_range(a) for a in args)
    if not has_range:
        return None
    operands = [a for a in _skip_flag_values(args, ("-e", "-f", "--expression", "--file")) if not a.startswith("-")]
    if not operands:
        return None
    if _is_sed_range(operands[0]):
        return operands[1] if len(operands) > 1 else None
    return operands[0]


def _awk_data_file(args: Sequence[str]) -> str | None:
    if not args:
        return None
    args = _trim_at_connector(args)
    operands = _non_flags(args, ("-F", "-v", "-f", "--field-separator", "--assign", "--file"))
    if "-f" in args or "--file" in args:
        return operands[0] if operands else None
    return operands[1] if len(operands) >= 2 else None


_DIGITS = re.compile(r"[0-9]*")


def _digits(text: str) -> bool:
    """Only ASCII digits; the empty string qualifies, as ``chars().all``."""
    return _DIGITS.fullmatch(text) is not None


def _formatting_count(text: str, *, plus: bool) -> bool:
    """A ``-n``/``-c`` count: digits, or for ``tail`` also ``+digits``."""
    return _digits(text) or (plus and text.startswith("+") and _digits(text[1:]))


def _is_small_formatting_command(tokens: Sequence[str]) -> bool:
    """Helpers that only reshape a pipeline's output (``head -n 40``,
    ``wc -l``, ``awk …``); they are dropped so that the primary command is
    summarised. Forms with a file operand are kept."""
    if not tokens:
        return False
    name, args = tokens[0], list(tokens[1:])
    if name in ("wc", "tr", "cut", "sort", "uniq", "tee", "column", "yes", "printf"):
        return True
    if name == "xargs":
        return not _is_mutating_xargs(tokens)
    if name == "awk":
        return _awk_data_file(args) is None
    if name in ("head", "tail"):
        if len(args) <= 1:
            return not args or args[0].startswith("-")
        return len(args) == 2 and args[0] in ("-n", "-c") and _formatting_count(args[1], plus=name == "tail")
    if name == "sed":
        return _sed_read_path(args) is None
    return False


def _is_mutating_xargs(tokens: Sequence[str]) -> bool:
    sub = _xargs_subcommand(tokens)
    if not sub:
        return False
    head, tail = sub[0], sub[1:]

    def in_place() -> bool:
        return any(t.startswith("-i") or t.startswith("-pi") for t in tail)

    if head in ("perl", "ruby"):
        return in_place()
    if head == "sed":
        return in_place() or "--in-place" in tail
    return head == "rg" and "--replace" in tail


def _xargs_subcommand(tokens: Sequence[str]) -> list[str] | None:
    i = 1
    while i < len(tokens):
        t = tokens[i]
        if t == "--":
            return list(tokens[i + 1 :]) or None
        if not t.startswith("-"):
            return list(tokens[i:])
        i += 2 if t in ("-E", "-e", "-I", "-L", "-n", "-P", "-s") else 1
    return None


def _cd_target(args: Sequence[str]) -> str | None:
    target = None
    for i, a in enumerate(args):
        if a == "--":
            return args[i + 1] if i + 1 < len(args) else None
        if not a.startswith("-"):
            target = a
    return target


def _is_pathish(text: str) -> bool:
    return text in (".", "..") or "/" in text or "\\" in text


def _read(main: Sequence[str], path: str) -> ReadAction:
    return ReadAction(shlex_join(main), _short_display_path(path), path)


def _read_count(text: str, plus: bool) -> bool:
    """``head -n`` takes digits (even none); ``tail -n`` one or more digits
    after an optional ``+``."""
    if plus:
        text = text[1:] if text.startswith("+") else text
        return text != "" and _digits(text)
    return _digits(text)


_LS_FLAGS = {
    "ls": ("-I", "-w", "--block-size", "--format", "--time-style", "--color", "--quoting-style"),
    "eza": ("-I", "--ignore-glob", "--color", "--sort", "--time-style", "--time"),
    "exa": ("-I", "--ignore-glob", "--color", "--sort", "--time-style", "--time"),
    "tree": ("-L", "-P", "-I", "--charset", "--filelimit", "--sort"),
    "du": ("-d", "--max-depth", "-B", "--block-size", "--exclude", "--time-style"),
}
_RG_FLAGS = (
    "-g", "--glob", "--iglob", "-t", "--type", "--type-add", "--type-not", "-m", "--max-count",
    "-A", "-B", "-C", "--context", "--max-depth",
)
_AG_FLAGS = ("-G", "-g", "--file-search-regex", "--ignore-dir", "--ignore-file", "--path-to-ignore")
_FD_FLAGS = ("-t", "--type", "-e", "--extension", "-E", "--exclude", "--search-path")
_READER_FLAGS = {
    "cat": (),
    "more": (),
    "bat": ("--theme", "--language", "--style", "--terminal-width", "--tabs", "--line-range", "--map-syntax"),
    "batcat": ("--theme", "--language", "--style", "--terminal-width", "--tabs", "--line-range", "--map-syntax"),
    "less": ("-p", "-P", "-x", "-y", "-z", "-j", "--pattern", "--prompt", "--tabs", "--shift", "--jump-target"),
}
_PYTHON_WALKS = ("os.walk", "os.listdir", "os.scandir", "glob.glob", "glob.iglob", "pathlib.Path", ".rglob(")


def _summarize(main: Sequence[str]) -> CommandAction:
    """``summarize_main_tokens``: one command's action."""
    if not main:
        return UnknownAction("")
    head, tail = main[0], list(main[1:])
    cmd = shlex_join(main)
    if head in _LS_FLAGS:
        operands = _positional_operands(tail, _LS_FLAGS[head])
        return ListFilesAction(cmd, _short_display_path(operands[0]) if operands else None)
    if head in ("rg", "rga", "ripgrep-all"):
        operands = _non_flags(tail, _RG_FLAGS)
        if "--files" in _trim_at_connector(tail):
            return ListFilesAction(cmd, _short_display_path(operands[0]) if operands else None)
        return _search(cmd, operands)
    if head == "git" and tail[:1] == ["grep"]:
        return _grep_like(main, tail[1:])
    if head == "git" and tail[:1] == ["ls-files"]:
        operands = _positional_operands(tail[1:], ("--exclude", "--exclude-from", "--pathspec-from-file"))
        return ListFilesAction(cmd, _short_display_path(operands[0]) if operands else None)
    if head == "fd":
        query, path = _fd_query_and_path(tail)
        return SearchAction(cmd, query, path) if query is not None else ListFilesAction(cmd, path)
    if head == "find":
        query, path = _find_query_and_path(tail)
        return SearchAction(cmd, query, path) if query is not None else ListFilesAction(cmd, path)
    if head in ("grep", "egrep", "fgrep"):
        return _grep_like(main, tail)
    if head in ("ag", "ack", "pt"):
        return _search(cmd, _non_flags(tail, _AG_FLAGS))
    if head in _READER_FLAGS:
        operands = _positional_operands(tail, _READER_FLAGS[head])
        return _read(main, operands[0]) if len(operands) == 1 else UnknownAction(cmd)
    if head in ("head", "tail"):
        return _head_tail(main, plus=head == "tail")
    if head == "awk":
        path = _awk_data_file(tail)
        return _read(main, path) if path is not None else UnknownAction(cmd)
    if head == "nl":
        for p in _skip_flag_values(tail, ("-s", "-w", "-v", "-i", "-b")):
            if not p.startswith("-"):
                return _read(main, p)
        return UnknownAction(cmd)
    if head == "sed":
        path = _sed_read_path(tail)
        return _read(main, path) if path is not None else UnknownAction(cmd)
    if head in ("python", "python2", "python3") or head.startswith(("python2.", "python3.")):
        args = _trim_at_connector(tail)
        if "-c" in args:
            i = args.index("-c")
            if i + 1 < len(args) and any(w in args[i + 1] for w in _PYTHON_WALKS):
                return ListFilesAction(cmd)
        return UnknownAction(cmd)
    return UnknownAction(cmd)


def _search(cmd: str, operands: Sequence[str]) -> SearchAction:
    """A search whose first operand is the query and second the path."""
    path = _short_display_path(operands[1]) if len(operands) > 1 else None
    return SearchAction(cmd, operands[0] if operands else None, path)


def _head_tail(main: Sequence[str], *, plus: bool) -> CommandAction:
    args = list(main[1:])
    first = args[0] if args else ""
    if first == "-n":
        valid = len(args) > 1 and _read_count(args[1], plus)
    elif first.startswith("-n"):
        valid = _read_count(first[2:], plus)
    else:
        valid = False
    if valid:
        candidates = args[2:] if first == "-n" else args
        for p in candidates:
            if not p.startswith("-"):
                return _read(main, p)
    if len(args) == 1 and not args[0].startswith("-"):
        return _read(main, args[0])
    return UnknownAction(shlex_join(main))


def _grep_like(main: Sequence[str], args: Sequence[str]) -> SearchAction:
    args = _trim_at_connector(args)
    operands: list[str] = []
    pattern: str | None = None
    it = iter(args)
    after_dashes = False
    for a in it:
        if after_dashes:
            operands.append(a)
        elif a == "--":
            after_dashes = True
        elif a in ("-e", "--regexp", "-f", "--file"):
            value = next(it, None)
            if pattern is None:
                pattern = value
        elif a in ("-m", "--max-count", "-C", "--context", "-A", "--after-context", "-B", "--before-context"):
            next(it, None)
        elif not a.startswith("-"):
            operands.append(a)
    has_pattern = pattern is not None
    query = pattern if has_pattern else (operands[0] if operands else None)
    index = 0 if has_pattern else 1
    path = _short_display_path(operands[index]) if len(operands) > index else None
    # the query is never shortened: patterns may hold slashes
    return SearchAction(shlex_join(main), query, path)


def _fd_query_and_path(tail: Sequence[str]) -> tuple[str | None, str | None]:
    operands = _non_flags(tail, _FD_FLAGS)
    if len(operands) == 1:
        one = operands[0]
        return (None, _short_display_path(one)) if _is_pathish(one) else (one, None)
    if len(operands) >= 2:
        return operands[0], _short_display_path(operands[1])
    return None, None


def _find_query_and_path(tail: Sequence[str]) -> tuple[str | None, str | None]:
    args = _trim_at_connector(tail)
    path = next(
        (_short_display_path(a) for a in args if not a.startswith("-") and a not in ("!", "(", ")")), None
    )
    query = None
    for i, a in enumerate(args):
        if a in ("-name", "-iname", "-path", "-regex"):
            query = args[i + 1] if i + 1 < len(args) else None
            break
    return query, path


def _join_paths(base: str, rel: str) -> str:
    """``join_paths``: ``rel`` under ``base`` unless it is absolute."""
    if rel.startswith("/") or re.match(r"[A-Za-z]:\\|\\\\", rel) or not base:
        return rel
    return base + rel if base.endswith("/") else f"{base}/{rel}"


def _join_normalized(base: str, path: str) -> str:
    """``AbsolutePathBuf::join``: ``path`` against ``base``, with ``.`` and
    ``..`` resolved lexically (``~`` is not expanded here)."""
    parts: list[str] = []
    for part in (path if path.startswith("/") else f"{base}/{path}").split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
        else:
            parts.append(part)
    return "/" + "/".join(parts)


# ---------------------------------------------------------------------------
# Policies
# ---------------------------------------------------------------------------


class _Granular(NamedTuple):
    sandbox_approval: bool
    rules: bool


_Approval = Literal["untrusted", "on-request", "never"] | _Granular


def _approval(policy: Any) -> _Approval:
    """``"untrusted" | "on-request" | "never" | {"granular": {...}}`` (a
    dict or a Struct that encodes to one). Missing granular switches are off,
    which auto-rejects the prompts they guard."""
    if isinstance(policy, msgspec.Struct):
        policy = msgspec.to_builtins(policy)
    if policy in ("untrusted", "on-request", "never"):
        return policy
    if isinstance(policy, Mapping) and isinstance(policy.get("granular"), Mapping):
        granular = policy["granular"]
        return _Granular(bool(granular.get("sandbox_approval")), bool(granular.get("rules")))
    raise ValueError(f"unknown approval policy: {policy!r}")


class _Sandbox(NamedTuple):
    type: Literal["dangerFullAccess", "readOnly", "workspaceWrite", "externalSandbox"]
    writable_roots: tuple[str, ...] = ()
    exclude_tmpdir_env_var: bool = False
    exclude_slash_tmp: bool = False

    @property
    def file_system(self) -> Literal["unrestricted", "external", "restricted"]:
        """The ``FileSystemSandboxKind`` the policy implies."""
        if self.type == "dangerFullAccess":
            return "unrestricted"
        return "external" if self.type == "externalSandbox" else "restricted"


_SANDBOX_MODES = {
    "read-only": "readOnly",
    "workspace-write": "workspaceWrite",
    "danger-full-access": "dangerFullAccess",
    "external-sandbox": "externalSandbox",
}


def _sandbox(policy: Any) -> _Sandbox:
    """A sandbox policy: the wire object (dict or Struct) or a mode string."""
    if isinstance(policy, _Sandbox):
        return policy
    if isinstance(policy, msgspec.Struct):
        policy = msgspec.to_builtins(policy)
    if isinstance(policy, str) and policy in _SANDBOX_MODES:
        return _Sandbox(_SANDBOX_MODES[policy])  # type: ignore[arg-type]
    if isinstance(policy, Mapping) and policy.get("type") in _SANDBOX_MODES.values():
        return _Sandbox(
            policy["type"],
            tuple(policy.get("writableRoots") or ()),
            bool(policy.get("excludeTmpdirEnvVar")),
            bool(policy.get("excludeSlashTmp")),
        )
    raise ValueError(f"unknown sandbox policy: {policy!r}")


# ---------------------------------------------------------------------------
# Exec approval requirements (core/src/exec_policy.rs, tools/sandboxing.rs)
# ---------------------------------------------------------------------------


class Skip(msgspec.Struct, frozen=True, tag="skip"):
    """Run without asking. ``bypass_sandbox`` is set only when execpolicy
    rules allow every segment, which never happens without rules; the
    amendment is offered if the sandboxed run fails and is retried."""

    bypass_sandbox: bool = False
    proposed_execpolicy_amendment: list[str] | None = None


class NeedsApproval(msgspec.Struct, frozen=True, tag="needsApproval"):
    """Ask the client first (``reason`` goes into the request)."""

    reason: str | None = None
    proposed_execpolicy_amendment: list[str] | None = None


class Forbidden(msgspec.Struct, frozen=True, tag="forbidden"):
    """Do not run; the model is told ``reason``."""

    reason: str


ExecApprovalRequirement = Skip | NeedsApproval | Forbidden

_PROMPT_CONFLICT_REASON = "approval required by policy, but AskForApproval is set to Never"
_REJECT_SANDBOX_APPROVAL_REASON = (
    "approval required by policy, but AskForApproval::Granular.sandbox_approval is false"
)
_FORCED_RM_REASON = "rm -f style commands are not permitted. Use a safer approach"
#: The reason of the second prompt, after a sandboxed run was denied.
RETRY_WITHOUT_SANDBOX_REASON = "command failed; retry without sandbox?"

#: Prefixes never proposed as a standing rule: they would allow anything.
BANNED_PREFIX_SUGGESTIONS: frozenset[tuple[str, ...]] = frozenset({
    ("/bin/bash",), ("/bin/bash", "-c"), ("/bin/bash", "-lc"), ("/bin/sh",), ("/bin/sh", "-c"),
    ("/bin/sh", "-lc"), ("/bin/zsh",), ("/bin/zsh", "-c"), ("/bin/zsh", "-lc"), ("Rscript",),
    ("bash",), ("bash", "-c"), ("bash", "-lc"), ("bun",), ("bun", "-e"), ("bun", "run"), ("cmd",),
    ("cmd", "/c"), ("cmd", "/k"), ("cmd.exe",), ("cmd.exe", "/c"), ("cmd.exe", "/k"), ("dash",),
    ("dash", "-c"), ("deno",), ("deno", "eval"), ("env",), ("fish",), ("fish", "-c"), ("git",),
    ("julia",), ("julia", "-e"), ("ksh",), ("ksh", "-c"), ("lua",), ("lua", "-e"), ("node",),
    ("node", "-e"), ("nodejs",), ("nodejs", "-e"), ("npm", "run"), ("osascript",), ("perl",),
    ("perl", "-e"), ("php",), ("php", "-r"), ("pnpm", "run"), ("powershell",),
    ("powershell", "-Command"), ("powershell", "-EncodedCommand"), ("powershell", "-File"),
    ("powershell", "-c"), ("powershell.exe",), ("powershell.exe", "-Command"),
    ("powershell.exe", "-EncodedCommand"), ("powershell.exe", "-File"), ("powershell.exe", "-c"),
    ("pwsh",), ("pwsh", "-Command"), ("pwsh", "-EncodedCommand"), ("pwsh", "-File"), ("pwsh", "-c"),
    ("pwsh", "-e"), ("pwsh", "-ec"), ("pwsh", "-f"), ("py",), ("py", "-3"), ("pypy",), ("pypy3",),
    ("python",), ("python", "-"), ("python", "-c"), ("python3",), ("python3", "-"),
    ("python3", "-c"), ("pythonw",), ("pyw",), ("rm",), ("ruby",), ("ruby", "-e"), ("sh",),
    ("sh", "-c"), ("sh", "-lc"), ("sudo",), ("yarn", "run"), ("zsh",), ("zsh", "-c"), ("zsh", "-lc"),
})

_Decision = Literal["allow", "prompt", "forbidden"]
_RANK = {"allow": 0, "prompt": 1, "forbidden": 2}


def _commands_for_exec_policy(argv: Sequence[str]) -> tuple[list[list[str]], bool]:
    """The segments to judge, and whether the heredoc fallback found them
    (``used_complex_parsing``: no safe-list shortcut, no amendment)."""
    commands = plain_commands(argv)
    if commands:
        return commands, False
    prefix = _heredoc_command_prefix(argv)
    if prefix is not None:
        return [prefix], True
    return [list(argv)], False


def _unmatched_decision(
    argv: Sequence[str],
    approval: _Approval,
    sandbox: _Sandbox,
    sandbox_permissions: SandboxPermissions,
    used_complex_parsing: bool,
) -> _Decision:
    """``render_decision_for_unmatched_command`` (no execpolicy rule matched)."""
    if approval == "untrusted" and not used_complex_parsing and is_known_safe_command(argv):
        return "allow"
    if command_might_be_dangerous(argv):
        # prompt rather than forbid, unless prompts are off altogether
        return "forbidden" if approval == "never" else "prompt"
    if approval == "never":
        return "allow"  # the sandbox protects
    if approval == "untrusted":
        return "prompt"
    # on-request and granular: unrestricted file systems just run; in a
    # sandbox only a request to leave it (or widen it) is asked about
    if sandbox.file_system != "restricted":
        return "allow"
    return "prompt" if sandbox_permissions != "use_default" else "allow"


def _prompt_rejection(approval: _Approval) -> str | None:
    """``prompt_is_rejected_by_policy`` for a prompt no rule asked for."""
    if approval == "never":
        return _PROMPT_CONFLICT_REASON
    if isinstance(approval, _Granular) and not approval.sandbox_approval:
        return _REJECT_SANDBOX_APPROVAL_REASON
    return None


def assess_command(
    argv: Sequence[str],
    *,
    approval_policy: Any,
    sandbox_policy: Any,
    sandbox_permissions: SandboxPermissions = "use_default",
    prefix_rule: Sequence[str] | None = None,
) -> ExecApprovalRequirement:
    """Whether a shell command runs, asks, or is refused
    (``create_exec_approval_requirement_for_command`` without rules).

    ``argv`` is what runs (``shell_argv(script)`` for ``shell_command``).
    Each segment of a plain script is judged on its own and the strictest
    decision wins. A prompt proposes an execpolicy amendment: the model's
    ``prefix_rule`` when it would approve every segment and is not too broad,
    else the first segment that prompted."""
    approval = _approval(approval_policy)
    sandbox = _sandbox(sandbox_policy)
    commands, used_complex_parsing = _commands_for_exec_policy(argv)
    decisions = [
        (command, _unmatched_decision(command, approval, sandbox, sandbox_permissions, used_complex_parsing))
        for command in commands
    ]
    overall = max((d for _, d in decisions), key=_RANK.__getitem__)

    def first(decision: _Decision) -> list[str] | None:
        if used_complex_parsing:
            return None
        return next((c for c, d in decisions if d == decision), None)

    def forced_rm(decision: _Decision) -> bool:
        return any(d == decision and _dangerous_match(c) == "forced_rm" for c, d in decisions)

    if overall == "forbidden":
        reason = _FORCED_RM_REASON if forced_rm("forbidden") else "blocked by policy"
        return Forbidden(f"`{_render(argv)}` rejected: {reason}")
    if overall == "prompt":
        rejection = _prompt_rejection(approval)
        if rejection is not None:
            return Forbidden(_FORCED_RM_REASON if forced_rm("prompt") else rejection)
        requested = None if used_complex_parsing else _requested_amendment(prefix_rule, decisions)
        return NeedsApproval(None, requested or first("prompt"))
    return Skip(False, first("allow"))


def _requested_amendment(
    prefix_rule: Sequence[str] | None, decisions: list[tuple[list[str], _Decision]]
) -> list[str] | None:
    """The model's ``prefix_rule``, if allowing it would let every segment
    run and it is not one of :data:`BANNED_PREFIX_SUGGESTIONS`."""
    if not prefix_rule or tuple(prefix_rule) in BANNED_PREFIX_SUGGESTIONS:
        return None
    prefix = list(prefix_rule)
    if all(c[: len(prefix)] == prefix or d == "allow" for c, d in decisions):
        return prefix
    return None


def default_exec_approval_requirement(*, approval_policy: Any, sandbox_policy: Any) -> ExecApprovalRequirement:
    """The requirement of runtimes that judge no command: ``never`` skips,
    ``untrusted`` asks, ``on-request`` and granular ask inside a sandbox
    (granular auto-rejects when sandbox approvals are off)."""
    approval = _approval(approval_policy)
    restricted = _sandbox(sandbox_policy).file_system == "restricted"
    needs = approval == "untrusted" or (approval != "never" and restricted)
    if needs and isinstance(approval, _Granular) and not approval.sandbox_approval:
        return Forbidden("approval policy disallowed sandbox approval prompt")
    return NeedsApproval() if needs else Skip()


def escalation_refusal(approval_policy: Any, sandbox_permissions: SandboxPermissions, *,
                       unified_exec: bool) -> str | None:
    """The original's answer to a call asking to run outside (or beyond) the
    sandbox under any approval policy but ``on-request``: refused before it
    runs, since only ``on-request`` lets the model ask. None: no such ask.
    ``exec_command`` words it "cannot", ``shell_command`` "should not"."""
    if sandbox_permissions == "use_default" or _approval(approval_policy) == "on-request":
        return None
    shown = _approval_debug(approval_policy)
    verb = "cannot" if unified_exec else "should not"
    return (f"approval policy is {shown}; reject command — you {verb} ask for escalated permissions if the "
            f"approval policy is {shown}")


def _approval_debug(policy: Any) -> str:
    """An approval policy as the original's ``{:?}`` prints it."""
    if isinstance(policy, msgspec.Struct):
        policy = msgspec.to_builtins(policy)
    if isinstance(policy, Mapping):
        granular = policy.get("granular") or {}
        fields = ", ".join(f"{name}: {str(bool(granular.get(name))).lower()}" for name in (
            "sandbox_approval", "rules", "skill_approval", "request_permissions", "mcp_elicitations"))
        return f"Granular(GranularApprovalConfig {{ {fields} }})"
    return {"untrusted": "UnlessTrusted", "never": "Never"}.get(policy, str(policy))


def wants_no_sandbox_approval(approval_policy: Any) -> bool:
    """After a sandbox denial, whether to ask to rerun unsandboxed:
    ``untrusted`` and granular with ``sandbox_approval``, not ``never`` or
    ``on-request`` (there the denial goes back to the model)."""
    approval = _approval(approval_policy)
    return approval == "untrusted" or (isinstance(approval, _Granular) and approval.sandbox_approval)


def available_decisions(
    *,
    proposed_execpolicy_amendment: Sequence[str] | None = None,
    network_host: str | None = None,
    additional_permissions: bool = False,
) -> list[str | dict[str, Any]]:
    """``availableDecisions`` of a command approval request
    (``default_available_decisions`` mapped to the v2 decisions)."""
    if network_host is not None:
        amendment = {"network_policy_amendment": {"host": network_host, "action": "allow"}}
        return ["accept", "acceptForSession", {"applyNetworkPolicyAmendment": amendment}, "cancel"]
    if additional_permissions:
        return ["accept", "cancel"]
    decisions: list[str | dict[str, Any]] = ["accept"]
    if proposed_execpolicy_amendment is not None:
        rule = list(proposed_execpolicy_amendment)
        decisions.append({"acceptWithExecpolicyAmendment": {"execpolicy_amendment": rule}})
    decisions.append("cancel")
    return decisions


def canonicalize_command_for_approval(argv: Sequence[str]) -> list[str]:
    """The command as approvals remember it: a one-command script as that
    command (so ``/bin/bash -lc ls`` and ``bash -lc ls`` match), any other
    script as ``["__codex_shell_script__", flag, script]``."""
    commands = plain_commands(argv)
    if commands is not None and len(commands) == 1:
        return commands[0]
    script = shell_script(argv)
    if script is not None:
        return ["__codex_shell_script__", argv[1], script]
    return list(argv)


def approval_cache_key(
    argv: Sequence[str],
    *,
    cwd: str,
    sandbox_permissions: SandboxPermissions = "use_default",
    additional_permissions: Any = None,
    environment_id: str = "local",
) -> str:
    """The key under which ``acceptForSession`` remembers a shell command
    (the shell runtime's ``ApprovalKey``, serialized as the original's
    ``ApprovalStore`` does)."""
    key = {
        "environment_id": environment_id,
        "command": canonicalize_command_for_approval(argv),
        "cwd": cwd,
        "sandbox_permissions": sandbox_permissions,
        "additional_permissions": additional_permissions,
    }
    return msgspec.json.encode(key).decode()


# ---------------------------------------------------------------------------
# Patches (core/src/safety.rs)
# ---------------------------------------------------------------------------


class AutoApprove(msgspec.Struct, frozen=True, tag="autoApprove"):
    """Apply without asking; in the platform sandbox unless ``sandboxed`` is
    false (full access or an external sandbox)."""

    sandboxed: bool


class AskUser(msgspec.Struct, frozen=True, tag="askUser"):
    """Send ``item/fileChange/requestApproval`` first."""


class Reject(msgspec.Struct, frozen=True, tag="reject"):
    """Refuse; the model sees ``patch rejected: <reason>``."""

    reason: str


PatchSafety = AutoApprove | AskUser | Reject

_PATCH_OUTSIDE_PROJECT = "writing outside of the project; rejected by user approval settings"
_PATCH_READ_ONLY = "writing is blocked by read-only sandbox; rejected by user approval settings"
#: Top-level folders of a writable root that stay read-only.
PROTECTED_METADATA_NAMES = (".git", ".agents", ".codex")


def writable_roots(sandbox_policy: Any, cwd: str, *, tmpdir: str | None = None) -> list[str]:
    """The folders a restricted sandbox lets commands write: for
    ``workspaceWrite`` the cwd, ``/tmp`` and ``tmpdir`` (``$TMPDIR``) unless
    excluded, and the extra ``writableRoots``; none for ``readOnly``. An
    unrestricted policy has no roots because it has no limit."""
    sandbox = _sandbox(sandbox_policy)
    if sandbox.type != "workspaceWrite":
        return []
    roots = [cwd]
    if not sandbox.exclude_slash_tmp:
        roots.append("/tmp")
    if not sandbox.exclude_tmpdir_env_var and tmpdir:
        roots.append(tmpdir)
    roots.extend(sandbox.writable_roots)
    out: list[str] = []
    for root in roots:
        root = _join_normalized(cwd, root)
        if root not in out:
            out.append(root)
    return out


def _is_under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _can_write(path: str, roots: Sequence[str]) -> bool:
    """Under a writable root, and not inside a root's ``.git``, ``.agents``
    or ``.codex`` unless that folder is itself (under) a writable root."""
    if not any(_is_under(path, root) for root in roots):
        return False
    for root in roots:
        for name in PROTECTED_METADATA_NAMES:
            protected = _join_normalized(root, name)
            if _is_under(path, protected) and not any(
                _is_under(r, protected) and _is_under(path, r) for r in roots
            ):
                return False
    return True


def assess_patch(
    paths: Iterable[str],
    *,
    approval_policy: Any,
    sandbox_policy: Any,
    cwd: str,
    tmpdir: str | None = None,
    platform_sandbox: bool = True,
) -> PatchSafety:
    """Whether an ``apply_patch`` runs, asks or is refused
    (``assess_patch_safety``).

    ``paths`` are every path the patch writes: added, deleted and updated
    files and move destinations, relative to ``cwd`` or absolute.
    ``platform_sandbox`` says whether a sandbox can enforce the writable
    roots here (Linux has one)."""
    paths = list(paths)
    if not paths:
        return Reject("empty patch")
    approval = _approval(approval_policy)
    if approval == "untrusted":
        return AskUser()
    sandbox = _sandbox(sandbox_policy)
    rejects_prompts = approval == "never" or (isinstance(approval, _Granular) and not approval.sandbox_approval)
    roots = writable_roots(sandbox, cwd, tmpdir=tmpdir)
    if sandbox.file_system != "restricted" or not unwritable_paths(paths, sandbox_policy=sandbox, cwd=cwd,
                                                                   tmpdir=tmpdir):
        if sandbox.file_system != "restricted":
            return AutoApprove(sandboxed=False)
        if platform_sandbox:
            return AutoApprove(sandboxed=True)
    if not rejects_prompts:
        return AskUser()
    return Reject(_PATCH_READ_ONLY if not roots else _PATCH_OUTSIDE_PROJECT)


def unwritable_paths(paths: Iterable[str], *, sandbox_policy: Any, cwd: str, tmpdir: str | None = None) -> list[str]:
    """The ``paths`` (made absolute against ``cwd`` and normalized, without
    resolving symlinks, as the original judges them) that a restricted
    policy does not let a patch write: outside every writable root, or in
    a root's ``.git``, ``.agents`` or ``.codex``."""
    roots = writable_roots(sandbox_policy, cwd, tmpdir=tmpdir)
    return [p for p in (_join_normalized(cwd, p) for p in paths) if not _can_write(p, roots)]


def patch_wants_no_sandbox_approval(approval_policy: Any) -> bool:
    """After the sandbox denied a patch's writes, whether to ask to write it
    outside the sandbox (the apply_patch runtime's own rule, wider than the
    commands' :func:`wants_no_sandbox_approval`): every policy but ``never``
    and granular without ``sandbox_approval``."""
    approval = _approval(approval_policy)
    return approval != "never" and (not isinstance(approval, _Granular) or approval.sandbox_approval)


def patch_approval_cache_keys(paths: Iterable[str], *, cwd: str, environment_id: str = "local") -> list[str]:
    """The keys under which ``acceptForSession`` remembers a patch: one per
    file it writes (the apply_patch runtime's ``ApplyPatchApprovalKey``, the
    path as a ``file://`` URI). A later patch asks again unless every one of
    its keys is remembered."""
    return [
        msgspec.json.encode(
            {"environment_id": environment_id, "path": "file://" + urllib.parse.quote(_join_normalized(cwd, p))}
        ).decode()
        for p in paths
    ]


# ---------------------------------------------------------------------------
# Sandbox denials (sandboxing/src/denial.rs)
# ---------------------------------------------------------------------------

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
