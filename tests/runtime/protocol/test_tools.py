"""Tool specs and argument decoding: pure tests.

``exec_command``, ``write_stdin`` and the freeform ``apply_patch`` are what
codex-cli 0.169.0 sends in a request's ``tools``, and the ``exec_command`` /
``write_stdin`` error texts are what it answered to those arguments; the
other tools' errors follow the same serde_json rules.
"""

from __future__ import annotations

import json

import msgspec
import pytest

from trio_codex.runtime.protocol import tools
from trio_codex.runtime.protocol.responses import ResponsesRequest, encode_request
from trio_codex.runtime.protocol.tools import (
    ApplyPatchArgs,
    ExecCommandArgs,
    PlanItemArg,
    SandboxPermissions,
    ShellCommandArgs,
    StepStatus,
    ToolArgumentsError,
    UpdatePlanArgs,
    WriteStdinArgs,
    decode_arguments,
    turn_tools,
)


def specs(**options) -> list[dict]:
    return [json.loads(bytes(raw)) for raw in turn_tools(**options)]


EXEC_COMMAND = {
    "type": "function",
    "name": "exec_command",
    "description": "Runs a command in a PTY, returning output or a session ID for ongoing interaction.",
    "strict": False,
    "parameters": {
        "type": "object",
        "properties": {
            "cmd": {"type": "string", "description": "Shell command to execute."},
            "justification": {
                "type": "string",
                "description": "User-facing approval question for `require_escalated`; omit otherwise.",
            },
            "login": {
                "type": "boolean",
                "description": "True runs the shell with -l/-i semantics; false disables them. Defaults to true.",
            },
            "max_output_tokens": {
                "type": "number",
                "description": "Output token budget. Defaults to 10000 tokens; larger requests may be capped by policy.",
            },
            "prefix_rule": {
                "type": "array",
                "description": 'Reusable approval prefix for `cmd`, only with `sandbox_permissions: "require_escalated"`; for example ["git", "pull"].',
                "items": {"type": "string"},
            },
            "sandbox_permissions": {
                "type": "string",
                "description": "Per-command sandbox override. Defaults to `use_default`; use `require_escalated` for unsandboxed execution.",
                "enum": ["use_default", "require_escalated"],
            },
            "shell": {"type": "string", "description": "Shell binary to launch. Defaults to the user's default shell."},
            "tty": {
                "type": "boolean",
                "description": "True allocates a PTY for the command; false or omitted uses plain pipes.",
            },
            "workdir": {"type": "string", "description": "Working directory for the command. Defaults to the turn cwd."},
            "yield_time_ms": {
                "type": "number",
                "description": "Wait before yielding output. Defaults to 10000 ms; effective range is 250-30000 ms.",
            },
        },
        "required": ["cmd"],
        "additionalProperties": False,
    },
}

WRITE_STDIN = {
    "type": "function",
    "name": "write_stdin",
    "description": "Writes characters to an existing unified exec session and returns recent output.",
    "strict": False,
    "parameters": {
        "type": "object",
        "properties": {
            "chars": {"type": "string", "description": "Bytes to write to stdin. Defaults to empty, which polls without writing."},
            "max_output_tokens": {
                "type": "number",
                "description": "Output token budget. Defaults to 10000 tokens; larger requests may be capped by policy.",
            },
            "session_id": {"type": "number", "description": "Identifier of the running unified exec session."},
            "yield_time_ms": {
                "type": "number",
                "description": "Wait before yielding output. Non-empty writes default to 250 ms and cap at 30000 ms; empty polls wait 5000-300000 ms by default.",
            },
        },
        "required": ["session_id"],
        "additionalProperties": False,
    },
}

APPLY_PATCH_FREEFORM = {
    "type": "custom",
    "name": "apply_patch",
    "description": "The `apply_patch` tool can be used to edit files. This is a FREEFORM tool, so do not wrap the patch in JSON.",
    "format": {
        "type": "grammar",
        "syntax": "lark",
        "definition": 'start: begin_patch hunk+ end_patch\nbegin_patch: "*** Begin Patch" LF\nend_patch: "*** End Patch" LF?\n\nhunk: add_hunk | delete_hunk | update_hunk\nadd_hunk: "*** Add File: " filename LF add_line+\ndelete_hunk: "*** Delete File: " filename LF\nupdate_hunk: "*** Update File: " filename LF change_move? change?\n\nfilename: /(.+)/\nadd_line: "+" /(.*)/ LF -> line\n\nchange_move: "*** Move to: " filename LF\nchange: (change_context | change_line)+ eof_line?\nchange_context: ("@@" | "@@ " /(.+)/) LF\nchange_line: ("+" | "-" | " ") /(.*)/ LF\neof_line: "*** End of File" LF\n\n%import common.LF\n',
    },
}


def test_the_default_tools_are_the_originals_byte_for_byte():
    raws = turn_tools(plan=False)
    expected = [EXEC_COMMAND, WRITE_STDIN, APPLY_PATCH_FREEFORM]
    # Same objects, same key order: compare the encoded texts, not just values.
    assert [bytes(raw) for raw in raws] == [msgspec.json.encode(spec) for spec in expected]


def test_tool_choice_and_order():
    names = lambda **o: [s["name"] for s in specs(**o)]  # noqa: E731
    assert names() == ["exec_command", "write_stdin", "update_plan", "apply_patch"]
    assert names(shell="shell_command", apply_patch="function") == ["shell_command", "update_plan", "apply_patch"]
    assert names(shell=None, apply_patch=None, plan=False) == []
    assert specs(apply_patch="function")[-1]["type"] == "function"
    assert specs(apply_patch="freeform")[-1]["type"] == "custom"


def test_specs_are_encoded_once():
    assert all(a is b for a, b in zip(turn_tools(), turn_tools()))


def test_specs_go_into_a_request_verbatim():
    body = json.loads(encode_request(ResponsesRequest(model="m", input=[], tools=turn_tools())))
    assert body["tools"] == specs()


def test_shell_command_spec():
    (spec,) = specs(shell="shell_command", apply_patch=None, plan=False)
    assert spec["name"] == "shell_command" and spec["type"] == "function" and spec["strict"] is False
    assert spec["description"].startswith("Runs a shell command and returns its output.\n")
    params = spec["parameters"]
    assert list(params["properties"]) == ["command", "justification", "login", "sandbox_permissions", "timeout_ms", "workdir"]
    assert params["required"] == ["command"] and params["additionalProperties"] is False
    assert params["properties"]["timeout_ms"] == {"type": "number", "description": "Maximum command runtime. Defaults to 10000 ms."}


def test_update_plan_spec():
    spec = specs(shell=None, apply_patch=None)[0]
    assert spec["name"] == "update_plan"
    assert spec["description"] == (
        "Updates the task plan.\nProvide an optional explanation and a list of plan items, "
        "each with a step and status.\nAt most one step can be in_progress at a time.\n"
    )
    params = spec["parameters"]
    assert params["required"] == ["plan"]
    assert params["properties"]["explanation"] == {"type": "string", "description": "Optional explanation for this plan update."}
    plan = params["properties"]["plan"]
    assert plan["type"] == "array" and plan["description"] == "The list of steps"
    assert plan["items"]["required"] == ["step", "status"]
    assert plan["items"]["properties"]["status"]["enum"] == ["pending", "in_progress", "completed"]


def test_apply_patch_function_spec():
    spec = specs(shell=None, plan=False, apply_patch="function")[0]
    assert spec["description"].startswith("Use the `apply_patch` tool to edit files.\nYour patch language is a stripped\u2011down")
    assert spec["parameters"] == {
        "type": "object",
        "properties": {"input": {"type": "string", "description": "The entire contents of the apply_patch command"}},
        "required": ["input"],
        "additionalProperties": False,
    }


# --- arguments ------------------------------------------------------------------------


def test_arguments_take_the_originals_defaults():
    assert decode_arguments(ExecCommandArgs, '{"cmd": "ls"}') == ExecCommandArgs(
        cmd="ls", tty=False, yield_time_ms=10_000, sandbox_permissions=SandboxPermissions.USE_DEFAULT
    )
    assert decode_arguments(WriteStdinArgs, b'{"session_id": 3}') == WriteStdinArgs(3, "", 250, None)
    assert decode_arguments(ShellCommandArgs, '{"command": "ls", "timeout": 5}').timeout_ms == 5
    assert decode_arguments(ApplyPatchArgs, '{"input": "*** Begin Patch"}').input == "*** Begin Patch"
    args = decode_arguments(
        UpdatePlanArgs, '{"explanation": "why", "plan": [{"step": "a", "status": "in_progress"}]}'
    )
    assert args == UpdatePlanArgs(explanation="why", plan=[PlanItemArg("a", StepStatus.IN_PROGRESS)])
    assert args.plan[0].status == "in_progress"


def test_unknown_fields_are_ignored_except_by_update_plan():
    assert decode_arguments(ExecCommandArgs, '{"cmd": "ls", "environment_id": "x"}').cmd == "ls"


@pytest.mark.parametrize(
    ("type_", "arguments", "error"),
    [
        (ExecCommandArgs, "", "EOF while parsing a value at line 1 column 0"),
        (ExecCommandArgs, "abc", "expected value at line 1 column 1"),
        (ExecCommandArgs, "{}", "missing field `cmd` at line 1 column 2"),
        (ExecCommandArgs, '{"cmd": 5}', "invalid type: integer `5`, expected a string at line 1 column 9"),
        (ExecCommandArgs, '{"cmd": "ls"', "EOF while parsing an object at line 1 column 12"),
        (ExecCommandArgs, '{"cmd": "ls', "EOF while parsing a string at line 1 column 11"),
        (ExecCommandArgs, '{"cmd" "ls"}', "expected `:` at line 1 column 8"),
        (ExecCommandArgs, '{"cmd": "ls",}', "trailing comma at line 1 column 14"),
        (ExecCommandArgs, '{"cmd": "ls"} x', "trailing characters at line 1 column 15"),
        (ExecCommandArgs, "{cmd: 1}", "key must be a string at line 1 column 2"),
        (ExecCommandArgs, '{"cmd": "ls", "yield_time_ms": 1.5}', "invalid type: floating point `1.5`, expected u64 at line 1 column 34"),
        (ExecCommandArgs, '{"cmd": "ls", "yield_time_ms": 10000.0}', "invalid type: floating point `10000.0`, expected u64 at line 1 column 38"),
        (ExecCommandArgs, '{"cmd": "ls", "yield_time_ms": -5}', "invalid value: integer `-5`, expected u64 at line 1 column 33"),
        (ExecCommandArgs, '{"cmd": "ls", "tty": "yes"}', 'invalid type: string "yes", expected a boolean at line 1 column 26'),
        (ExecCommandArgs, '{"cmd": []}', "invalid type: sequence, expected a string at line 1 column 8"),
        (ExecCommandArgs, '{"cmd": "ls", "prefix_rule": "git"}', 'invalid type: string "git", expected a sequence at line 1 column 34'),
        (ExecCommandArgs, '{"cmd": "a\\nb", "login": 1}', "invalid type: integer `1`, expected a boolean at line 1 column 26"),
        (ExecCommandArgs, '{\n  "cmd": "ls",\n  "tty": null\n}', "invalid type: null, expected a boolean at line 3 column 13"),
        (
            ExecCommandArgs,
            '{"cmd": "ls", "sandbox_permissions": "root"}',
            "unknown variant `root`, expected one of `use_default`, `require_escalated`, `with_additional_permissions` at line 1 column 43",
        ),
        (WriteStdinArgs, '{"session_id": 3000000000}', "invalid value: integer `3000000000`, expected i32 at line 1 column 25"),
        (WriteStdinArgs, '{"chars": "x"}', "missing field `session_id` at line 1 column 14"),
        (UpdatePlanArgs, '{"explanation": "x"}', "missing field `plan` at line 1 column 20"),
        (UpdatePlanArgs, '{"plan": [{"step": "a"}]}', "missing field `status` at line 1 column 23"),
        (
            UpdatePlanArgs,
            '{"plan": [{"step": "a", "status": "done"}]}',
            "unknown variant `done`, expected one of `pending`, `in_progress`, `completed` at line 1 column 40",
        ),
        (UpdatePlanArgs, '{"plan": [], "extra": 1}', "unknown field `extra`, expected `explanation` or `plan` at line 1 column 20"),
        (UpdatePlanArgs, '{"plan": ["a"]}', 'invalid type: string "a", expected struct PlanItemArg at line 1 column 13'),
        (ShellCommandArgs, '{"command": "ls", "timeout": 5, "timeout_ms": 6}', "duplicate field `timeout_ms` at line 1 column 44"),
        (ApplyPatchArgs, '{"input": null}', "invalid type: null, expected a string at line 1 column 14"),
    ],
)
def test_bad_arguments_are_worded_as_the_original(type_, arguments, error):
    with pytest.raises(ToolArgumentsError) as err:
        decode_arguments(type_, arguments)
    assert str(err.value) == f"failed to parse function arguments: {error}"


DEEP = "[" * 1000 + "]" * 1000


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        # Traced against the original 0.169.
        ('{"cmd":' + DEEP + "}", "invalid type: sequence, expected a string at line 1 column 7"),
        ('{"cmd":"echo hi","yield_time_ms":' + DEEP + "}", "invalid type: sequence, expected u64 at line 1 column 33"),
        ('{"cmd":"echo hi","x":' + DEEP[:-1] + "}", "expected `,` or `]` at line 1 column 2021"),
        ('{"cmd":"echo hi","x":[1,]}', "expected value at line 1 column 25"),
        ('{"cmd":"echo hi","x":{"a" 1}}', "expected `:` at line 1 column 27"),
        ('{"cmd":"echo hi","x":{"a":1,}}', "key must be a string at line 1 column 29"),
        # Where the type looks inside, serde_json's recursion limit.
        ('{"cmd":"ls","additional_permissions":{"a":' + DEEP + "}}", "recursion limit exceeded at line 1 column 168"),
    ],
)
def test_deeply_nested_arguments_are_worded_as_the_original(arguments, error):
    with pytest.raises(ToolArgumentsError) as err:
        decode_arguments(ExecCommandArgs, arguments)
    assert str(err.value) == f"failed to parse function arguments: {error}"


def test_a_deep_value_of_an_unknown_field_is_skipped_as_the_original_does():
    args = decode_arguments(ExecCommandArgs, '{"cmd": "echo hi", "x": [' + ",".join([DEEP] * 3) + '], "tty": true}')
    assert (args.cmd, args.tty) == ("echo hi", True)


def test_parallel_tools():
    assert tools.PARALLEL_TOOLS == {"exec_command", "shell_command"}
