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
  that fails, re-reads the arguments the way serde_json does
  (:mod:`.serde_reader`) to find the first error and its position.
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar, Literal, TypeVar

import msgspec

from .rust import I32 as _I32, U64 as _U64, USIZE as _USIZE
from .serde_reader import SerdeReader

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


def decode_arguments(type_: type[T], arguments: str | bytes) -> T:
    """Decode a function call's ``arguments`` (a JSON text) into ``type_``.

    Raises :class:`ToolArgumentsError` worded as the original:
    ``failed to parse function arguments: <serde_json's message>``.
    """
    data = arguments.encode() if isinstance(arguments, str) else arguments
    message: str | None
    try:
        return _decode(type_, data)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
        message = SerdeReader(data).explain(type_) or str(exc)
    except RecursionError:
        # Deeper than msgspec goes. serde_json refuses such nesting only where
        # the type looks inside (its recursion limit) and skips deep values of
        # unknown fields: decode again without those.
        reader = SerdeReader(data)
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
