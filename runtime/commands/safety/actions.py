"""Command actions (codex-rs ``shell-command/src/parse_command.rs``): what a
command does, for the ``commandActions`` of ``commandExecution`` items and
approval requests."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import msgspec

from .bash import parse_shell_script_into_commands, shell_script
from .safe import is_sed_range
from .words import shlex_join, shlex_split


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
            ReadAction(a.command, a.name, join_normalized(cwd, a.path)) if isinstance(a, ReadAction) else a
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
    return (shlex_split(action.command) or [])[:1] == [word]


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
            has_range = has_range or is_sed_range(args[i + 1] if i + 1 < len(args) else None)
            i += 2
        elif args[i] in ("-f", "--file"):
            i += 2
        else:
            i += 1
    has_range = has_range or any(not a.startswith("-") and is_sed_range(a) for a in args)
    if not has_range:
        return None
    operands = [a for a in _skip_flag_values(args, ("-e", "-f", "--expression", "--file")) if not a.startswith("-")]
    if not operands:
        return None
    if is_sed_range(operands[0]):
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


def join_normalized(base: str, path: str) -> str:
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
