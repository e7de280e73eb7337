"""The tools the model is offered, as the original sends them in a Responses
request, and the types their arguments decode into.

Design:

* Specs are data: one dict per tool with the original's field names, order
  and descriptions (codex-cli 0.169.0; Linux texts), encoded once at import.
  :func:`turn_tools` picks the ones a turn offers, in the original's order
  (shell tools, ``update_plan``, ``apply_patch``), as ``msgspec.Raw`` ready
  for :class:`~.responses.ResponsesRequest`.
* Argument types are frozen ``msgspec.Struct`` with the original's serde
  defaults (``yield_time_ms`` 10000 for ``exec_command``, 250 for
  ``write_stdin``, ``tty`` false, ...). Unknown fields are ignored except
  where the original denies them (``update_plan``).
* Bad arguments go back to the model as text, worded as serde_json words them
  (``failed to parse function arguments: missing field `cmd` at line 1
  column 2``): :func:`decode_arguments` decodes with msgspec and, only when
  that fails, re-reads the arguments the way serde_json does to find the
  first error and its position.
"""

from __future__ import annotations

import enum
import re
from decimal import Decimal
from typing import Any, ClassVar, Literal, TypeVar

import msgspec
import msgspec.inspect as mi

from .rust import I32 as _I32, RUST_INTS as _RUST_INTS, U64 as _U64, USIZE as _USIZE

__all__ = [
    "APPLY_PATCH_FREEFORM_TOOL",
    "APPLY_PATCH_FUNCTION_TOOL",
    "APPLY_PATCH_LARK_GRAMMAR",
    "EXEC_COMMAND_TOOL",
    "PARALLEL_TOOLS",
    "SHELL_COMMAND_TOOL",
    "UPDATE_PLAN_TOOL",
    "WRITE_STDIN_TOOL",
    "ApplyPatchArgs",
    "ExecCommandArgs",
    "PlanItemArg",
    "SandboxPermissions",
    "ShellCommandArgs",
    "StepStatus",
    "ToolArgumentsError",
    "UpdatePlanArgs",
    "WriteStdinArgs",
    "decode_arguments",
    "turn_tools",
]


# --- specs --------------------------------------------------------------------------


def _str(description: str | None = None, **extra: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if description is not None:
        schema["description"] = description
    return schema | extra


def _num(description: str) -> dict[str, Any]:
    return {"type": "number", "description": description}


def _bool(description: str) -> dict[str, Any]:
    return {"type": "boolean", "description": description}


def _object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """An object schema as the original serializes its BTreeMap: properties
    sorted by name, no extra properties."""
    return {
        "type": "object",
        "properties": dict(sorted(properties.items())),
        "required": required,
        "additionalProperties": False,
    }


def _function(name: str, description: str, parameters: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", "name": name, "description": description, "strict": False, "parameters": parameters}


_SANDBOX_PERMISSIONS = _str(
    "Per-command sandbox override. Defaults to `use_default`; use `require_escalated` for unsandboxed execution.",
    enum=["use_default", "require_escalated"],
)
_JUSTIFICATION = _str("User-facing approval question for `require_escalated`; omit otherwise.")
_MAX_OUTPUT_TOKENS = _num("Output token budget. Defaults to 10000 tokens; larger requests may be capped by policy.")
_WORKDIR = _str("Working directory for the command. Defaults to the turn cwd.")

EXEC_COMMAND_TOOL = _function(
    "exec_command",
    "Runs a command in a PTY, returning output or a session ID for ongoing interaction.",
    _object(
        {
            "cmd": _str("Shell command to execute."),
            "workdir": _WORKDIR,
            "tty": _bool("True allocates a PTY for the command; false or omitted uses plain pipes."),
            "yield_time_ms": _num("Wait before yielding output. Defaults to 10000 ms; effective range is 250-30000 ms."),
            "max_output_tokens": _MAX_OUTPUT_TOKENS,
            "shell": _str("Shell binary to launch. Defaults to the user's default shell."),
            "login": _bool("True runs the shell with -l/-i semantics; false disables them. Defaults to true."),
            "sandbox_permissions": _SANDBOX_PERMISSIONS,
            "justification": _JUSTIFICATION,
            "prefix_rule": {
                "type": "array",
                "description": 'Reusable approval prefix for `cmd`, only with `sandbox_permissions: "require_escalated"`; for example ["git", "pull"].',
                "items": {"type": "string"},
            },
        },
        ["cmd"],
    ),
)

WRITE_STDIN_TOOL = _function(
    "write_stdin",
    "Writes characters to an existing unified exec session and returns recent output.",
    _object(
        {
            "session_id": _num("Identifier of the running unified exec session."),
            "chars": _str("Bytes to write to stdin. Defaults to empty, which polls without writing."),
            "yield_time_ms": _num(
                "Wait before yielding output. Non-empty writes default to 250 ms and cap at 30000 ms; "
                "empty polls wait 5000-300000 ms by default."
            ),
            "max_output_tokens": _MAX_OUTPUT_TOKENS,
        },
        ["session_id"],
    ),
)

SHELL_COMMAND_TOOL = _function(
    "shell_command",
    "Runs a shell command and returns its output.\n"
    "- Always set the `workdir` param when using the shell_command function. "
    "Do not use `cd` unless absolutely necessary.",
    _object(
        {
            "command": _str("Shell script to run in the user's default shell."),
            "workdir": _WORKDIR,
            "timeout_ms": _num("Maximum command runtime. Defaults to 10000 ms."),
            "login": _bool("True runs with login shell semantics; false disables them. Defaults to true."),
            "sandbox_permissions": _SANDBOX_PERMISSIONS,
            "justification": _JUSTIFICATION,
        },
        ["command"],
    ),
)

UPDATE_PLAN_TOOL = _function(
    "update_plan",
    "Updates the task plan.\n"
    "Provide an optional explanation and a list of plan items, each with a step and status.\n"
    "At most one step can be in_progress at a time.\n",
    _object(
        {
            "explanation": _str("Optional explanation for this plan update."),
            "plan": {
                "type": "array",
                "description": "The list of steps",
                "items": _object(
                    {"step": _str(), "status": _str(enum=["pending", "in_progress", "completed"])},
                    ["step", "status"],
                ),
            },
        },
        ["plan"],
    ),
)

APPLY_PATCH_LARK_GRAMMAR = r"""start: begin_patch hunk+ end_patch
begin_patch: "*** Begin Patch" LF
end_patch: "*** End Patch" LF?

hunk: add_hunk | delete_hunk | update_hunk
add_hunk: "*** Add File: " filename LF add_line+
delete_hunk: "*** Delete File: " filename LF
update_hunk: "*** Update File: " filename LF change_move? change?

filename: /(.+)/
add_line: "+" /(.*)/ LF -> line

change_move: "*** Move to: " filename LF
change: (change_context | change_line)+ eof_line?
change_context: ("@@" | "@@ " /(.+)/) LF
change_line: ("+" | "-" | " ") /(.*)/ LF
eof_line: "*** End of File" LF

%import common.LF
"""

APPLY_PATCH_FREEFORM_TOOL = {
    "type": "custom",
    "name": "apply_patch",
    "description": "The `apply_patch` tool can be used to edit files. This is a FREEFORM tool, so do not wrap the patch in JSON.",
    "format": {"type": "grammar", "syntax": "lark", "definition": APPLY_PATCH_LARK_GRAMMAR},
}

_APPLY_PATCH_JSON_DESCRIPTION = """Use the `apply_patch` tool to edit files.
Your patch language is a stripped\u2011down, file\u2011oriented diff format designed to be easy to parse and safe to apply. You can think of it as a high\u2011level envelope:

*** Begin Patch
[ one or more file sections ]
*** End Patch

Within that envelope, you get a sequence of file operations.
You MUST include a header to specify the action you are taking.
Each operation starts with one of three headers:

*** Add File: <path> - create a new file. Every following line is a + line (the initial contents).
*** Delete File: <path> - remove an existing file. Nothing follows.
*** Update File: <path> - patch an existing file in place (optionally with a rename).

May be immediately followed by *** Move to: <new path> if you want to rename the file.
Then one or more \u201chunks\u201d, each introduced by @@ (optionally followed by a hunk header).
Within a hunk each line starts with:

For instructions on [context_before] and [context_after]:
- By default, show 3 lines of code immediately above and 3 lines immediately below each change. If a change is within 3 lines of a previous change, do NOT duplicate the first change\u2019s [context_after] lines in the second change\u2019s [context_before] lines.
- If 3 lines of context is insufficient to uniquely identify the snippet of code within the file, use the @@ operator to indicate the class or function to which the snippet belongs. For instance, we might have:
@@ class BaseClass
[3 lines of pre-context]
- [old_code]
+ [new_code]
[3 lines of post-context]

- If a code block is repeated so many times in a class or function such that even a single `@@` statement and 3 lines of context cannot uniquely identify the snippet of code, you can use multiple `@@` statements to jump to the right context. For instance:

@@ class BaseClass
@@ \t def method():
[3 lines of pre-context]
- [old_code]
+ [new_code]
[3 lines of post-context]

The full grammar definition is below:
Patch := Begin { FileOp } End
Begin := "*** Begin Patch" NEWLINE
End := "*** End Patch" NEWLINE
FileOp := AddFile | DeleteFile | UpdateFile
AddFile := "*** Add File: " path NEWLINE { "+" line NEWLINE }
DeleteFile := "*** Delete File: " path NEWLINE
UpdateFile := "*** Update File: " path NEWLINE [ MoveTo ] { Hunk }
MoveTo := "*** Move to: " newPath NEWLINE
Hunk := "@@" [ header ] NEWLINE { HunkLine } [ "*** End of File" NEWLINE ]
HunkLine := (" " | "-" | "+") text NEWLINE

A full patch can combine several operations:

*** Begin Patch
*** Add File: hello.txt
+Hello world
*** Update File: src/app.py
*** Move to: src/main.py
@@ def greet():
-print("Hi")
+print("Hello, world!")
*** Delete File: obsolete.txt
*** End Patch

It is important to remember:

- You must include a header with your intended action (Add/Delete/Update)
- You must prefix new lines with `+` even when creating a new file
- File references can only be relative, NEVER ABSOLUTE.
"""

APPLY_PATCH_FUNCTION_TOOL = _function(
    "apply_patch",
    _APPLY_PATCH_JSON_DESCRIPTION,
    _object({"input": _str("The entire contents of the apply_patch command")}, ["input"]),
)

GET_GOAL_TOOL = _function(
    "get_goal",
    "Get this thread's goal: its objective, status, token budget, the tokens and time used so far and the "
    "tokens remaining.",
    _object({}, []),
)

CREATE_GOAL_TOOL = _function(
    "create_goal",
    "Create a goal, only when the user or the system/developer instructions explicitly ask for one; never "
    "infer a goal from an ordinary task. Set token_budget only when a budget is explicitly requested. Fails "
    "while an unfinished goal exists (use update_goal for its status).",
    _object({
        "objective": _str("Required. The concrete objective to pursue. Starts a new active goal when there is "
                          "none, or replaces the current one when it is complete."),
        "token_budget": {"type": "integer",
                         "description": "A positive token budget for the new goal. Omit unless explicitly requested."},
    }, ["objective"]),
)

UPDATE_GOAL_TOOL = _function(
    "update_goal",
    "Update the existing goal's status. `complete` only when the objective is achieved and verified, with no "
    "required work left; `blocked` only when the same blocker has recurred for at least three consecutive goal "
    "turns and no progress is possible without the user or an external change; `paused` only at the user's "
    "explicit request. Resuming, budget and usage limits are the user's or the system's, not this tool's. "
    "When completing a goal with a token budget, report the final token usage from the result.",
    _object({"status": _str("Required. The goal's new status.", enum=["complete", "blocked", "paused"])},
            ["status"]),
)

#: The goal tools, in the original's order.
GOAL_TOOLS = ("get_goal", "create_goal", "update_goal")

#: Tools whose calls may run concurrently with other calls of the turn.
PARALLEL_TOOLS = frozenset({"exec_command", "shell_command"})

_RAW = {
    key: msgspec.Raw(msgspec.json.encode(spec))
    for key, spec in {
        "exec_command": EXEC_COMMAND_TOOL,
        "write_stdin": WRITE_STDIN_TOOL,
        "shell_command": SHELL_COMMAND_TOOL,
        "update_plan": UPDATE_PLAN_TOOL,
        "get_goal": GET_GOAL_TOOL,
        "create_goal": CREATE_GOAL_TOOL,
        "update_goal": UPDATE_GOAL_TOOL,
        "freeform": APPLY_PATCH_FREEFORM_TOOL,
        "function": APPLY_PATCH_FUNCTION_TOOL,
    }.items()
}


def turn_tools(
    *,
    shell: Literal["unified_exec", "shell_command"] | None = "unified_exec",
    apply_patch: Literal["freeform", "function"] | None = "freeform",
    plan: bool = True,
    goals: bool = False,
) -> list[msgspec.Raw]:
    """The ``tools`` of a turn's request, in the original's order.

    ``shell`` is the model's shell tool: ``unified_exec`` (``exec_command``
    and ``write_stdin``, the original's default), ``shell_command``, or None
    for none. ``apply_patch`` is the catalogue's ``apply_patch_tool_type``
    (None when the model has no patch tool); ``plan`` offers ``update_plan``;
    ``goals`` the goal tools (``get_goal``, ``create_goal``, ``update_goal``).
    """
    keys = {"unified_exec": ["exec_command", "write_stdin"], "shell_command": ["shell_command"], None: []}[shell]
    if plan:
        keys.append("update_plan")
    if apply_patch is not None:
        keys.append(apply_patch)
    if goals:
        keys += GOAL_TOOLS
    return [_RAW[key] for key in keys]


# --- arguments ------------------------------------------------------------------------



class SandboxPermissions(enum.StrEnum):
    """How a command asks to run relative to the sandbox."""

    USE_DEFAULT = "use_default"
    REQUIRE_ESCALATED = "require_escalated"
    WITH_ADDITIONAL_PERMISSIONS = "with_additional_permissions"


class StepStatus(enum.StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"


class ShellCommandArgs(msgspec.Struct, frozen=True):
    """``shell_command``; ``timeout`` is accepted for ``timeout_ms``."""

    rust_name: ClassVar[str] = "ShellCommandToolCallParams"
    aliases: ClassVar[dict[str, str]] = {"timeout": "timeout_ms"}

    command: str
    workdir: str | None = None
    login: bool | None = None
    timeout_ms: _U64 | None = None
    sandbox_permissions: SandboxPermissions | None = None
    prefix_rule: list[str] | None = None
    additional_permissions: dict[str, Any] | None = None
    justification: str | None = None


class ExecCommandArgs(msgspec.Struct, frozen=True):
    """``exec_command``. ``login`` None means the configured default."""

    rust_name: ClassVar[str] = "ExecCommandArgs"

    cmd: str
    workdir: str | None = None
    shell: str | None = None
    login: bool | None = None
    tty: bool = False
    yield_time_ms: _U64 = 10_000
    max_output_tokens: _USIZE | None = None
    sandbox_permissions: SandboxPermissions = SandboxPermissions.USE_DEFAULT
    additional_permissions: dict[str, Any] | None = None
    justification: str | None = None
    prefix_rule: list[str] | None = None


class WriteStdinArgs(msgspec.Struct, frozen=True):
    """``write_stdin``; empty ``chars`` polls."""

    rust_name: ClassVar[str] = "WriteStdinArgs"

    session_id: _I32
    chars: str = ""
    yield_time_ms: _U64 = 250
    max_output_tokens: _USIZE | None = None


class PlanItemArg(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    rust_name: ClassVar[str] = "PlanItemArg"

    step: str
    status: StepStatus


class UpdatePlanArgs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``update_plan``: the model's whole plan, replacing the previous one."""

    rust_name: ClassVar[str] = "UpdatePlanArgs"

    explanation: str | None = None
    plan: list[PlanItemArg]


class GetGoalArgs(msgspec.Struct, frozen=True):
    """``get_goal``: no arguments."""

    rust_name: ClassVar[str] = "GetGoalArgs"


class CreateGoalArgs(msgspec.Struct, frozen=True):
    """``create_goal``."""

    rust_name: ClassVar[str] = "CreateGoalRequest"

    objective: str
    token_budget: int | None = None


class UpdateGoalArgs(msgspec.Struct, frozen=True):
    """``update_goal``: any status is decoded, so that one the tool may not
    set is refused in the original's words."""

    rust_name: ClassVar[str] = "UpdateGoalArgs"

    status: str


class ApplyPatchArgs(msgspec.Struct, frozen=True):
    """The JSON-function ``apply_patch``: ``input`` is the patch text."""

    rust_name: ClassVar[str] = "ApplyPatchToolArgs"

    input: str


class ToolArgumentsError(ValueError):
    """Arguments the tool cannot take. ``str(error)`` is the text the
    original sends back to the model as the call's output."""


T = TypeVar("T")
_any_json = msgspec.json.Decoder()
#: serde_json's: the 128th nested container the type looks inside fails.
_RECURSION_LIMIT = 128


def decode_arguments(type_: type[T], arguments: str | bytes) -> T:
    """Decode a function call's ``arguments`` (a JSON text) into ``type_``.

    Raises :class:`ToolArgumentsError` worded as the original:
    ``failed to parse function arguments: <serde_json's message>``.
    """
    data = arguments.encode() if isinstance(arguments, str) else arguments
    try:
        return _decode(type_, data)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
        message = _SerdeReader(data).explain(type_) or str(exc)
    except RecursionError:
        # Deeper than msgspec goes. serde_json refuses such nesting only where
        # the type looks inside (its recursion limit) and skips deep values of
        # unknown fields: decode again without those.
        reader = _SerdeReader(data)
        message = reader.explain(type_)
        if message is None:
            try:
                return _decode(type_, reader.without_ignored())
            except (msgspec.DecodeError, ValueError, RecursionError):
                message = "recursion limit exceeded"
    raise ToolArgumentsError(f"failed to parse function arguments: {message}")


def _decode(type_: type[T], data: bytes) -> T:
    obj = _any_json.decode(data)
    aliases: dict[str, str] = getattr(type_, "aliases", {})
    if isinstance(obj, dict):
        for alias, name in aliases.items():
            if alias in obj:
                if name in obj:
                    raise ValueError("duplicate")
                obj[name] = obj.pop(alias)
    return msgspec.convert(obj, type_, strict=True)


# --- serde_json's wording ------------------------------------------------------------------


class _SerdeError(Exception):
    pass


_NUMBER = re.compile(rb"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_PLAIN = re.compile(rb'[^"\\\x00-\x1f]*')
_ESCAPES = {ord(c): c for c in '"\\/bfnrtu'}


class _SerdeReader:
    """Reads JSON the way serde_json deserializes it into a Rust type, to
    report the first error as serde_json does: its message, then ``at line
    L column C`` (C counts the bytes of the line read so far).

    Types come from ``msgspec.inspect``; Rust integer names from the
    ``extra={"rust": ...}`` of their ``Meta``. Values the type looks inside
    nest at most serde_json's recursion limit deep; values of unknown fields
    are skipped at any depth, without recursion, and :attr:`ignored` keeps
    where they are.
    """

    def __init__(self, data: bytes) -> None:
        self.s = data
        self.i = 0
        self.depth = _RECURSION_LIMIT
        self.ignored: list[tuple[int, int]] = []

    def without_ignored(self) -> bytes:
        """The JSON read, with ``null`` for each value :meth:`explain` skipped."""
        parts, last = [], 0
        for start, end in self.ignored:
            parts += (self.s[last:start], b"null")
            last = end
        parts.append(self.s[last:])
        return b"".join(parts)

    def explain(self, type_: type) -> str | None:
        """serde_json's message for ``type_`` from these bytes, or None if
        serde_json would accept them."""
        try:
            self.value(mi.type_info(type_))
            if self.ws() is not None:
                self.peek_fail("trailing characters")
        except _SerdeError as exc:
            return str(exc)
        return None

    # positions
    def fail(self, message: str, at: int | None = None) -> None:
        i = self.i if at is None else at
        line_start = self.s.rfind(b"\n", 0, i) + 1
        line = self.s.count(b"\n", 0, line_start) + 1
        raise _SerdeError(f"{message} at line {line} column {i - line_start}")

    def peek_fail(self, message: str) -> None:
        self.fail(message, min(len(self.s), self.i + 1))

    def enter(self) -> None:
        """Open a container the type looks inside, as serde_json counts them."""
        self.depth -= 1
        if self.depth == 0:
            self.peek_fail("recursion limit exceeded")

    def ws(self) -> int | None:
        while self.i < len(self.s) and self.s[self.i] in b" \t\n\r":
            self.i += 1
        return self.s[self.i] if self.i < len(self.s) else None

    # scalars
    def ident(self, word: bytes) -> None:
        for expected in word:
            self.i += 1
            if self.i > len(self.s) or self.s[self.i - 1] != expected:
                self.fail("EOF while parsing a value" if self.i > len(self.s) else "expected ident")

    def string(self) -> str:
        self.i += 1  # the opening quote
        out = bytearray()
        while True:
            plain = _PLAIN.match(self.s, self.i)
            out += plain.group()  # type: ignore[union-attr]
            self.i = plain.end()  # type: ignore[union-attr]
            if self.i >= len(self.s):
                self.fail("EOF while parsing a string")
            ch = self.s[self.i]
            self.i += 1
            if ch == ord('"'):
                return out.decode("utf-8", "replace")
            if ch != ord("\\"):
                self.fail("control character (\\u0000-\\u001F) found while parsing a string")
            if self.i >= len(self.s):
                self.fail("EOF while parsing a string")
            esc = self.s[self.i]
            self.i += 1
            if esc not in _ESCAPES:
                self.fail("invalid escape")
            if esc == ord("u"):
                digits = self.s[self.i:self.i + 4]
                if len(digits) < 4 or not re.fullmatch(rb"[0-9a-fA-F]{4}", digits):
                    self.fail("EOF while parsing a string" if len(digits) < 4 else "invalid escape")
                out += chr(int(digits, 16)).encode("utf-8", "surrogatepass")
                self.i += 4
            else:
                out += {"b": b"\b", "f": b"\f", "n": b"\n", "r": b"\r", "t": b"\t"}.get(chr(esc), bytes([esc]))

    def number(self) -> int | float:
        match = _NUMBER.match(self.s, self.i)
        if match is None:
            self.i += 1
            self.fail("EOF while parsing a value" if self.i >= len(self.s) else "invalid number")
        self.i = match.end()  # type: ignore[union-attr]
        text = match.group()  # type: ignore[union-attr]
        if match.group(1) is None and match.group(2) is None:  # type: ignore[union-attr]
            value = int(text)
            if -(2**63) <= value < 2**64:
                return value
        return float(text)

    def unexpected(self, expected: str) -> None:
        """serde's ``invalid type`` error for whatever value comes next."""
        b = self.ws()
        if b == ord("n"):
            self.ident(b"null")
            got = "null"
        elif b in (ord("t"), ord("f")):
            self.ident(b"true" if b == ord("t") else b"false")
            got = f"boolean `{'true' if b == ord('t') else 'false'}`"
        elif b is not None and (b == ord("-") or ord("0") <= b <= ord("9")):
            got = _unexpected_number(self.number())
        elif b == ord('"'):
            got = f"string {_rust_debug(self.string())}"
        elif b == ord("["):
            got = "sequence"
        elif b == ord("{"):
            got = "map"
        else:
            self.peek_fail("EOF while parsing a value" if b is None else "expected value")
        self.fail(f"invalid type: {got}, expected {expected}")

    # typed values
    def value(self, t: Any) -> None:
        extra = {}
        if isinstance(t, mi.Metadata):
            extra, t = t.extra or {}, t.type
        if isinstance(t, mi.UnionType):  # Option<T>
            if self.ws() == ord("n"):
                self.ident(b"null")
                return
            t = next(member for member in t.types if not isinstance(member, mi.NoneType))
            if isinstance(t, mi.Metadata):
                extra, t = t.extra or {}, t.type
        if isinstance(t, mi.StructType):
            self.struct(t)
        elif isinstance(t, mi.ListType):
            self.sequence(t.item_type)
        elif isinstance(t, mi.StrType):
            if self.ws() != ord('"'):
                self.unexpected("a string")
            self.string()
        elif isinstance(t, mi.BoolType):
            b = self.ws()
            if b not in (ord("t"), ord("f")):
                self.unexpected("a boolean")
            self.ident(b"true" if b == ord("t") else b"false")
        elif isinstance(t, mi.IntType):
            self.integer(extra.get("rust", "i64"))
        elif isinstance(t, mi.EnumType):
            self.variant([member.value for member in t.cls])
        else:
            self.skip()

    def integer(self, rust: str) -> None:
        b = self.ws()
        if b is None or not (b == ord("-") or ord("0") <= b <= ord("9")):
            self.unexpected(rust)
        value = self.number()
        if isinstance(value, float):
            self.fail(f"invalid type: {_unexpected_number(value)}, expected {rust}")
        low, high = _RUST_INTS.get(rust, (-(2**63), 2**63 - 1))
        if not low <= value <= high:
            self.fail(f"invalid value: integer `{value}`, expected {rust}")

    def variant(self, names: list[str]) -> None:
        b = self.ws()
        if b != ord('"'):
            self.peek_fail("EOF while parsing a value" if b is None else "expected value")
        name = self.string()
        if name not in names:
            self.fail(f"unknown variant `{name}`, expected {_one_of(names)}")

    def sequence(self, item: Any) -> None:
        if self.ws() != ord("["):
            self.unexpected("a sequence")
        self.enter()
        self.i += 1
        first = True
        while True:
            b = self.ws()
            if b == ord("]"):
                self.i += 1
                self.depth += 1
                return
            if not first:
                if b == ord(","):
                    self.i += 1
                    if self.ws() == ord("]"):
                        self.peek_fail("trailing comma")
                elif b is None:
                    self.peek_fail("EOF while parsing a list")
                else:
                    self.peek_fail("expected `,` or `]`")
            elif b is None:
                self.peek_fail("EOF while parsing a list")
            first = False
            self.value(item)

    def struct(self, t: Any) -> None:
        name = f"struct {getattr(t.cls, 'rust_name', t.cls.__name__)}"
        b = self.ws()
        if b != ord("{"):
            self.unexpected(name)
        self.enter()
        self.i += 1
        fields = {f.encode_name: f for f in t.fields}
        aliases: dict[str, str] = getattr(t.cls, "aliases", {})
        seen: set[str] = set()
        first = True
        while True:
            b = self.ws()
            if b == ord("}"):
                break
            if b is None:
                self.peek_fail("EOF while parsing an object")
            if not first:
                if b != ord(","):
                    self.peek_fail("expected `,` or `}`")
                self.i += 1
                b = self.ws()
            first = False
            if b != ord('"'):
                if b == ord("}"):
                    self.peek_fail("trailing comma")
                self.peek_fail("EOF while parsing a value" if b is None else "key must be a string")
            key = self.string()
            key = aliases.get(key, key)
            if key not in fields and t.forbid_unknown_fields:
                self.fail(f"unknown field `{key}`, {_expected_fields(list(fields))}")
            if key in seen:
                self.fail(f"duplicate field `{key}`")
            seen.add(key)
            b = self.ws()
            if b != ord(":"):
                self.peek_fail("EOF while parsing an object" if b is None else "expected `:`")
            self.i += 1
            if key in fields:
                self.value(fields[key].type)
            else:
                start = self.i
                self.ignore()
                self.ignored.append((start, self.i))
        self.i += 1  # the closing brace: serde reports a missing field after it
        self.depth += 1
        for field in t.fields:
            if field.required and field.encode_name not in seen and not _optional(field.type):
                self.fail(f"missing field `{field.encode_name}`")

    def skip(self) -> None:
        """Any value, checked for syntax only."""
        b = self.ws()
        if b == ord("{"):
            self.enter()
            self.i += 1
            first = True
            while True:
                b = self.ws()
                if b == ord("}"):
                    self.i += 1
                    self.depth += 1
                    return
                if not first:
                    if b != ord(","):
                        self.peek_fail("EOF while parsing an object" if b is None else "expected `,` or `}`")
                    self.i += 1
                    b = self.ws()
                first = False
                if b != ord('"'):
                    if b == ord("}"):
                        self.peek_fail("trailing comma")
                    self.peek_fail("EOF while parsing a value" if b is None else "key must be a string")
                self.string()
                b = self.ws()
                if b != ord(":"):
                    self.peek_fail("EOF while parsing an object" if b is None else "expected `:`")
                self.i += 1
                self.skip()
        elif b == ord("["):
            self.sequence(mi.AnyType())
        else:
            self.scalar(b)

    def scalar(self, b: int | None) -> None:
        """A string, number, boolean or null starting with byte ``b``."""
        if b == ord('"'):
            self.string()
        elif b == ord("n"):
            self.ident(b"null")
        elif b in (ord("t"), ord("f")):
            self.ident(b"true" if b == ord("t") else b"false")
        elif b is not None and (b == ord("-") or ord("0") <= b <= ord("9")):
            self.number()
        else:
            self.peek_fail("EOF while parsing a value" if b is None else "expected value")

    def ignore(self) -> None:
        """An unknown field's value, checked for syntax only at any depth
        with a stack of open containers, as serde_json's ``ignore_value``."""
        stack: list[int] = []
        while True:
            b = self.ws()
            if b is not None and b in b"[{":
                self.i += 1
                frame, accept_comma = b, False
            else:
                self.scalar(b)
                if not stack:
                    return
                frame, accept_comma = stack.pop(), True
            list_frame = frame == ord("[")
            while True:
                b = self.ws()
                if b == ord(",") and accept_comma:
                    self.i += 1
                    break
                if b == (ord("]") if list_frame else ord("}")):
                    self.i += 1
                    if not stack:
                        return
                    frame, accept_comma = stack.pop(), True
                    list_frame = frame == ord("[")
                    continue
                if b is None:
                    self.peek_fail("EOF while parsing a list" if list_frame else "EOF while parsing an object")
                if accept_comma:
                    self.peek_fail("expected `,` or `]`" if list_frame else "expected `,` or `}`")
                break
            if not list_frame:
                b = self.ws()
                if b != ord('"'):
                    self.peek_fail("EOF while parsing an object" if b is None else "key must be a string")
                self.string()
                b = self.ws()
                if b != ord(":"):
                    self.peek_fail("EOF while parsing an object" if b is None else "expected `:`")
                self.i += 1
            stack.append(frame)


def _optional(t: Any) -> bool:
    """serde fills a missing ``Option`` field with None."""
    if isinstance(t, mi.Metadata):
        t = t.type
    return isinstance(t, mi.UnionType) and any(isinstance(m, mi.NoneType) for m in t.types)


def _one_of(names: list[str]) -> str:
    quoted = [f"`{n}`" for n in names]
    if len(quoted) == 1:
        return quoted[0]
    if len(quoted) == 2:
        return f"{quoted[0]} or {quoted[1]}"
    return "one of " + ", ".join(quoted)


def _expected_fields(names: list[str]) -> str:
    return f"expected {_one_of(names)}" if names else "there are no fields"


def _unexpected_number(value: int | float) -> str:
    if isinstance(value, int):
        return f"integer `{value}`"
    text = format(Decimal(repr(value)), "f")
    return f"floating point `{text if '.' in text else text + '.0'}`"


def _rust_debug(s: str) -> str:
    """A string as Rust's ``{:?}`` prints it."""
    out = ['"']
    for ch in s:
        if ch in "\"\\":
            out.append("\\" + ch)
        elif ch in "\n\r\t":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch])
        elif ch == "\0":
            out.append("\\0")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{{{ord(ch):x}}}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)
