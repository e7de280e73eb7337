"""One tool call: started by its turn as soon as the model's
``output_item.done`` names it, while the stream is still open.

A call runs in its turn's nursery and reports back through a
:class:`ToolOutcome`; the turn feeds the outputs to the model in call order.
What each tool does, as the original:

- ``shell_command``: judge the command (runtime/commands/safety/), ask the client
  when policy says so, run it through the process runner under the sandbox,
  stream ``item/commandExecution/outputDelta``, and answer the model in the
  original's format. A run the sandbox denied is offered again unsandboxed
  when the approval policy allows asking.
- ``exec_command`` / ``write_stdin``: the same, as a process that lives in
  the thread's process table across calls (unified exec).
- ``apply_patch``: parse and plan the whole patch first (nothing is written
  if a hunk does not apply), judge its paths, ask when needed, then write:
  inside the command sandbox, so a symlink cannot lead the server's own
  writes out of the writable roots (see :func:`_write_patch`).
- ``update_plan``: a ``plan`` item and ``turn/plan/updated``.

Rules:
- A bad call (unknown tool, bad arguments, a refused command) is an output
  for the model, never an exception.
- Approvals go through the thread (session cache, ``waitingOnApproval``)
  and the approvals actor (the server request itself); a ``cancel`` answer
  ends the turn as interrupted.
"""

from __future__ import annotations

import itertools
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Literal

import msgspec
import trio

from ...runtime.files import apply_patch as patching
from ...runtime.commands import safety
from ...runtime.mcp import tools as mcp_tools
from ...runtime.files import patch_writer
from ...runtime.commands import output as tool_output
from ...runtime.kernel.ask import ReplySlot, ask
from ...runtime.kernel.clock import now_ms
from ...runtime.conversation.history import user_message
from ...runtime.kernel.mailbox import Mailbox
from ...runtime.protocol import responses as rs
from ...runtime.protocol import tools as specs
from ...runtime.protocol.v2.approval import (
    CommandExecutionRequestApprovalParams,
    FileChangeRequestApprovalParams,
    McpElicitationParams,
)
from ...runtime.protocol.v2.item import (
    CommandExecutionItem,
    CommandExecutionOutputDelta,
    FileChangeItem,
    FileChangePatchUpdated,
    ItemCompleted,
    ItemStarted,
    PlanItem,
)
from ...runtime.protocol.v2.thread import DangerFullAccess, SandboxPolicy, WorkspaceWrite
from ...runtime.protocol.v2.turn import TurnPlanStep, TurnPlanUpdated
from ...runtime.commands.environment import create_env
from ...runtime.commands.sandbox import (
    SandboxError,
    SandboxUnavailable,
    is_path_writable,
    needs_sandbox,
    sandbox_env,
)
from . import mcp_calls
from ..analytics.facts import ApprovalFromSessionCache, Recorder
from ..messages import ApprovalDone, ApprovalGate, ConnectionRef, GoalTool, RequestApproval, ApprovalsInbox, ThreadInbox
from ...runtime.commands.process import ExecOutcome, ProcessError, ProcessTable, run_command

#: How long the thread may take to answer an approval gate (it answers at once).
GATE_TIMEOUT = 10.0

_ACCEPT = {"accept", "acceptForSession"}


class ToolContext(msgspec.Struct, frozen=True):
    """What a turn gives each of its calls."""

    thread_id: str
    turn_id: str
    cwd: str
    approval_policy: Any
    sandbox_policy: Any
    thread: Mailbox[ThreadInbox]
    approvals: Mailbox[ApprovalsInbox]
    processes: ProcessTable
    notify: Callable[[str, object], Awaitable[None]]
    subscribers: Callable[[], tuple[ConnectionRef, ...]]
    recorder: Recorder
    #: The tokens the turn has used so far (a goal tool counts them first).
    turn_tokens: Callable[[], int] = int
    #: The thread's MCP servers: name -> (McpServerRef, its inventory or None).
    mcp: dict[str, tuple[Any, Any]] = {}


class ToolOutcome(msgspec.Struct, frozen=True):
    """The output item for the model; ``cancel`` when the client answered an
    approval with ``cancel`` (the turn then ends interrupted); ``diff`` for
    ``turn/diff/updated``."""

    output: msgspec.Raw
    cancel: bool = False
    diff: str | None = None


def output_item(call: rs.FunctionCallItem | rs.CustomToolCallItem, text: str) -> msgspec.Raw:
    kind = "custom_tool_call_output" if isinstance(call, rs.CustomToolCallItem) else "function_call_output"
    return msgspec.Raw(msgspec.json.encode({"type": kind, "call_id": call.call_id, "output": text}))


def is_parallel(call: rs.FunctionCallItem | rs.CustomToolCallItem) -> bool:
    """Whether the call may run beside others (the original's read lock)."""
    return call.name in specs.PARALLEL_TOOLS


async def run_tool_call(ctx: ToolContext, call: rs.FunctionCallItem | rs.CustomToolCallItem) -> ToolOutcome:
    try:
        if call.name == "apply_patch":
            text = call.input if isinstance(call, rs.CustomToolCallItem) else specs.decode_arguments(
                specs.ApplyPatchArgs, call.arguments).input
            return await _apply_patch(ctx, call, text)
        if isinstance(call, rs.CustomToolCallItem):
            return ToolOutcome(output_item(call, f"unsupported custom tool call: {call.name}"))
        if call.namespace is not None and call.namespace.removeprefix(mcp_tools.NAMESPACE_PREFIX) in ctx.mcp:
            return ToolOutcome(*await mcp_calls.call_tool(ctx, call, _approve, _verdict))
        if ctx.mcp and call.namespace is None and call.name in mcp_tools.RESOURCE_TOOLS:
            return ToolOutcome(await mcp_calls.resource_tool(ctx, call))
        entry = _HANDLERS.get(call.name)
        if entry is None:
            return ToolOutcome(output_item(call, f"unsupported call: {call.name}"))
        args_type, handler = entry
        return await handler(ctx, call, specs.decode_arguments(args_type, call.arguments))
    except specs.ToolArgumentsError as exc:
        return ToolOutcome(output_item(call, str(exc)))
    except SandboxUnavailable as exc:
        return ToolOutcome(output_item(call, str(exc)))


def aborted_output(call: rs.FunctionCallItem | rs.CustomToolCallItem, seconds: float) -> msgspec.Raw:
    """The output of a call an interrupt cut short."""
    name = "shell_command" if call.name in ("shell_command", "exec_command") else call.name
    return output_item(call, tool_output.abort_message(name, seconds))


# --- approvals -------------------------------------------------------------------


async def _approve(ctx: ToolContext, method: str,
                   params: CommandExecutionRequestApprovalParams | FileChangeRequestApprovalParams | McpElicitationParams,
                   keys: tuple[str, ...],
                   item_id: str | None = None) -> str | dict:
    """The client's decision; "acceptForSession" without a prompt when every
    key was accepted for the session before. ``item_id``: the call an MCP
    tool's approval (whose params name none) is about."""
    cached: bool = await ask(ctx.thread, lambda slot: ApprovalGate(ctx.turn_id, keys, slot), timeout=GATE_TIMEOUT)
    if cached:
        ctx.recorder.record(ApprovalFromSessionCache(
            thread_id=ctx.thread_id, turn_id=ctx.turn_id, item_id=item_id or ("" if isinstance(params, McpElicitationParams) else params.item_id),
            request_method=method))
        return "acceptForSession"
    slot: ReplySlot = ReplySlot()
    await ctx.approvals.send(RequestApproval(ctx.thread_id, ctx.turn_id, method, params, ctx.subscribers(), slot))
    answer = await slot.wait()
    decision = answer.decision
    accepted_for_session = decision == "acceptForSession" or (
        isinstance(decision, dict) and "acceptWithExecpolicyAmendment" in decision)
    await ctx.thread.send(ApprovalDone(ctx.turn_id, keys, accepted_for_session))
    return decision


def _verdict(decision: str | dict) -> str:
    """"accept", "decline" or "cancel" for any decision form."""
    if decision in _ACCEPT or (isinstance(decision, dict) and (
            "acceptWithExecpolicyAmendment" in decision or "applyNetworkPolicyAmendment" in decision)):
        return "accept"
    return "cancel" if decision == "cancel" else "decline"


# --- shell -------------------------------------------------------------------------


async def _begin_command(ctx: ToolContext, call: rs.FunctionCallItem, argv: list[str], args: Any,
                         **item_fields: Any) -> tuple[CommandExecutionItem, Any, dict[str, str]] | ToolOutcome:
    """Announce a command's item and clear it to run (policy, approvals):
    the item, the sandbox policy to run under and the environment; or, when
    it may not run, the refusal for the model."""
    refusal = safety.escalation_refusal(ctx.approval_policy, args.sandbox_permissions or "use_default",
                                        unified_exec=isinstance(args, specs.ExecCommandArgs))
    if refusal is not None:
        return ToolOutcome(output_item(call, refusal))  # before any item, as the original
    cwd = _resolve(ctx.cwd, args.workdir)
    item = CommandExecutionItem(call.call_id, safety.shlex_join(argv), cwd,
                                safety.parse_command_actions(argv, cwd=cwd), "inProgress", **item_fields)
    await ctx.notify("item/started", ItemStarted(item, ctx.thread_id, ctx.turn_id, now_ms()))
    verdict, sandbox = await _clear_to_run(ctx, item, argv, cwd, args)
    if verdict != "accept":
        return await _refused(ctx, call, item, verdict)
    return item, sandbox, sandbox_env(create_env(os.environ, thread_id=ctx.thread_id), sandbox)


async def _shell_command(ctx: ToolContext, call: rs.FunctionCallItem, args: Any) -> ToolOutcome:
    argv = safety.shell_argv(args.command, login=args.login is not False)
    begun = await _begin_command(ctx, call, argv, args)
    if isinstance(begun, ToolOutcome):
        return begun
    item, sandbox, env = begun
    cwd = item.cwd

    async def stream(chunk: bytes, _stream: str) -> None:
        await ctx.notify("item/commandExecution/outputDelta", CommandExecutionOutputDelta(
            ctx.thread_id, ctx.turn_id, call.call_id, chunk.decode("utf-8", "replace")))

    outcome = await run_command(argv, cwd=cwd, env=env, sandbox_policy=sandbox,
                                timeout_ms=args.timeout_ms or 10_000, on_output=stream)
    if outcome.sandbox_denied and sandbox is not _UNSANDBOXED and safety.wants_no_sandbox_approval(
            ctx.approval_policy):
        decision = _verdict(await _approve(ctx, "item/commandExecution/requestApproval", _command_params(
            ctx, item, reason=safety.RETRY_WITHOUT_SANDBOX_REASON), _keys(argv, cwd, args)))
        if decision != "accept":
            return await _refused(ctx, call, item, decision)
        outcome = await run_command(argv, cwd=cwd, env=env, sandbox_policy=_UNSANDBOXED,
                                    timeout_ms=args.timeout_ms or 10_000, on_output=stream)
    text = outcome.aggregated_output.decode("utf-8", "replace")
    done = msgspec.structs.replace(
        item, status="completed" if outcome.exit_code == 0 else "failed", aggregated_output=text or None,
        exit_code=outcome.exit_code, duration_ms=outcome.duration_ms)
    await ctx.notify("item/completed", ItemCompleted(done, ctx.thread_id, ctx.turn_id, now_ms()))
    return ToolOutcome(output_item(call, tool_output.format_exec_output(
        text, exit_code=outcome.exit_code, duration=outcome.duration_ms / 1000, timed_out=outcome.timed_out)))


_UNSANDBOXED = DangerFullAccess()


async def _clear_to_run(ctx: ToolContext, item: CommandExecutionItem, argv: list[str], cwd: str,
                        args: Any) -> tuple[str, Any]:
    """("accept", the sandbox policy to run under) or (the refusal, None)."""
    requirement = safety.assess_command(
        argv, approval_policy=ctx.approval_policy, sandbox_policy=ctx.sandbox_policy,
        sandbox_permissions=args.sandbox_permissions or "use_default", prefix_rule=args.prefix_rule)
    match requirement:
        case safety.Forbidden(reason=reason):
            return reason, None
        case safety.NeedsApproval(reason=reason, proposed_execpolicy_amendment=amendment):
            params = _command_params(ctx, item, reason=reason or args.justification, amendment=amendment)
            decision = _verdict(await _approve(
                ctx, "item/commandExecution/requestApproval", params, _keys(argv, cwd, args)))
            escalated = args.sandbox_permissions == "require_escalated"
            return decision, (_UNSANDBOXED if escalated else ctx.sandbox_policy)
        case safety.Skip(bypass_sandbox=bypass):
            return "accept", (_UNSANDBOXED if bypass else ctx.sandbox_policy)
    raise AssertionError(requirement)


def _keys(argv: list[str], cwd: str, args: Any) -> tuple[str, ...]:
    return (safety.approval_cache_key(argv, cwd=cwd, sandbox_permissions=args.sandbox_permissions
                                      or "use_default"),)


def _command_params(ctx: ToolContext, item: CommandExecutionItem, *, reason: str | None,
                    amendment: list[str] | None = None) -> CommandExecutionRequestApprovalParams:
    return CommandExecutionRequestApprovalParams(
        thread_id=ctx.thread_id, turn_id=ctx.turn_id, item_id=item.id, started_at_ms=now_ms(),
        command=item.command, cwd=item.cwd, command_actions=item.command_actions, reason=reason,
        proposed_execpolicy_amendment=amendment,
        available_decisions=safety.available_decisions(proposed_execpolicy_amendment=amendment),
    )


async def _refused(ctx: ToolContext, call: Any, item: Any, verdict: str) -> ToolOutcome:
    """A call that will not run: its item ends declined, the model is told."""
    done = msgspec.structs.replace(item, status="declined")
    await ctx.notify("item/completed", ItemCompleted(done, ctx.thread_id, ctx.turn_id, now_ms()))
    tool: Literal["apply_patch", "exec"] = "apply_patch" if isinstance(item, FileChangeItem) else "exec"
    message = "rejected by user" if verdict in ("decline", "cancel") else verdict
    return ToolOutcome(output_item(call, tool_output.rejection_message(message, tool=tool)),
                       cancel=verdict == "cancel")


def _resolve(cwd: str, workdir: str | None) -> str:
    return os.path.normpath(os.path.join(cwd, workdir)) if workdir else cwd


# --- unified exec --------------------------------------------------------------------

_session_ids = itertools.count(1)


async def _exec_command(ctx: ToolContext, call: rs.FunctionCallItem, args: Any) -> ToolOutcome:
    argv = safety.shell_argv(args.cmd, shell=args.shell or "/bin/bash", login=args.login is not False)
    session = next(_session_ids)
    begun = await _begin_command(ctx, call, argv, args, source="unifiedExecStartup", process_id=str(session))
    if isinstance(begun, ToolOutcome):
        return begun
    item, sandbox, env = begun
    started = time.monotonic()
    await ctx.processes.spawn(str(session), argv, cwd=item.cwd, env=env, sandbox_policy=sandbox,
                              tty=bool(args.tty), stdin=True,
                              label={"command": item.command, "cwd": item.cwd, "item_id": item.id})
    poll = await ctx.processes.poll(str(session), _yield_ms(args.yield_time_ms))
    text = poll.output.decode("utf-8", "replace")
    status = "inProgress" if poll.exit_code is None else ("completed" if poll.exit_code == 0 else "failed")
    done = msgspec.structs.replace(item, status=status, aggregated_output=text or None, exit_code=poll.exit_code,
                                   duration_ms=int((time.monotonic() - started) * 1000))
    await ctx.notify("item/completed", ItemCompleted(done, ctx.thread_id, ctx.turn_id, now_ms()))
    return _polled(call, poll, session, started, args)


async def _write_stdin(ctx: ToolContext, call: rs.FunctionCallItem, args: Any) -> ToolOutcome:
    started = time.monotonic()
    process_id = str(args.session_id)
    try:
        if args.chars:
            await ctx.processes.write(process_id, args.chars.encode())
        poll = await ctx.processes.poll(process_id, _yield_ms(args.yield_time_ms))
    except ProcessError as exc:
        return ToolOutcome(output_item(call, f"write_stdin failed: {exc}"))
    return _polled(call, poll, args.session_id, started, args)


def _polled(call: rs.FunctionCallItem, poll: Any, session: int, started: float, args: Any) -> ToolOutcome:
    """A unified exec call's answer: what the poll gathered, and either the
    exit code or the session to write to next."""
    return ToolOutcome(output_item(call, tool_output.format_unified_exec_output(
        poll.output, wall_time=time.monotonic() - started, chunk_id=tool_output.new_chunk_id(),
        exit_code=poll.exit_code, session_id=session if poll.exit_code is None else None,
        omitted_bytes=poll.dropped_bytes, max_output_tokens=args.max_output_tokens)))


def _yield_ms(requested: int) -> int:
    """How long a unified exec call waits for output, clamped as the original."""
    return min(max(requested, 250), 30_000)


# --- apply_patch ---------------------------------------------------------------------


async def _apply_patch(ctx: ToolContext, call: Any, text: str) -> ToolOutcome:
    started = time.monotonic()
    try:
        plan = await trio.to_thread.run_sync(_plan_patch, text, ctx.cwd)
    except patching.ApplyPatchError as exc:
        return ToolOutcome(output_item(call, f"apply_patch verification failed: {exc}"))
    if plan.is_empty():
        return ToolOutcome(output_item(call, tool_output.patch_rejected("empty patch")))
    changes = plan.file_changes()
    item = FileChangeItem(call.call_id, changes, "inProgress")
    await ctx.notify("item/started", ItemStarted(item, ctx.thread_id, ctx.turn_id, now_ms()))
    await ctx.notify("item/fileChange/patchUpdated",
                     FileChangePatchUpdated(ctx.thread_id, ctx.turn_id, call.call_id, changes))
    paths = tuple(sorted(plan.paths))
    approved = False
    match safety.assess_patch(paths, approval_policy=ctx.approval_policy, sandbox_policy=ctx.sandbox_policy,
                              cwd=ctx.cwd):
        case safety.Reject(reason=reason):
            done = msgspec.structs.replace(item, status="declined")
            await ctx.notify("item/completed", ItemCompleted(done, ctx.thread_id, ctx.turn_id, now_ms()))
            return ToolOutcome(output_item(call, tool_output.patch_rejected(reason)))
        case safety.AskUser():
            params = FileChangeRequestApprovalParams(ctx.thread_id, ctx.turn_id, call.call_id, now_ms())
            keys = tuple(safety.patch_approval_cache_keys(paths, cwd=ctx.cwd))
            verdict = _verdict(await _approve(ctx, "item/fileChange/requestApproval", params, keys))
            if verdict != "accept":
                return await _refused(ctx, call, item, verdict)
            approved = True
    written = await _write_patch(ctx, call, plan, approved)
    if isinstance(written, str):
        return await _refused(ctx, call, item, written)
    output, code, plan = written
    done = msgspec.structs.replace(item, status="completed" if code == 0 else "failed")
    await ctx.notify("item/completed", ItemCompleted(done, ctx.thread_id, ctx.turn_id, now_ms()))
    # The original reports a patch as a command that ran.
    return ToolOutcome(output_item(call, tool_output.format_exec_output(
        output, exit_code=code, duration=time.monotonic() - started)), diff=plan.diff if code == 0 else None)


def _plan_patch(text: str, cwd: str) -> patching.PatchPlan:
    return patching.plan_patch(patching.parse_patch(text), cwd)


#: Bound on the sandboxed writer of one patch (it only writes files).
PATCH_WRITE_TIMEOUT_MS = 60_000

_WRITER = [sys.executable, "-I", "-S", patch_writer.__file__]


async def _write_patch(ctx: ToolContext, call: Any, plan: patching.PatchPlan,
                       approved: bool) -> tuple[str, int, patching.PatchPlan] | str:
    """Write a cleared patch as the original does: (its output, exit code,
    the plan written), or the refusal of the retry prompt.

    Under a sandboxed policy the writes run in the command sandbox (after
    an approval, with the folder of each path outside the writable roots
    added), so they resolve paths as a command would. If the sandbox denied
    them and the approval policy allows asking, the user is asked (unless
    they approved this patch already) and the patch is written here, with
    no symlink followed anywhere in its paths. Full access and external
    sandboxes write here, as the original."""
    try:
        plan = await trio.to_thread.run_sync(patching.refresh_plan, plan)
    except patching.ApplyPatchError as exc:
        return f"{exc}\n", 1, plan
    if not needs_sandbox(ctx.sandbox_policy):
        return (*await trio.to_thread.run_sync(_write_here, plan, True), plan)
    policy, cwd = _patch_sandbox(ctx, plan.paths, approved)
    env = create_env(os.environ, thread_id=ctx.thread_id)
    try:
        outcome = await _write_sandboxed(plan, policy, cwd, env)
    except SandboxError as exc:
        return f"{exc}\n", 1, plan
    if outcome.exit_code == 0:
        return plan.summary, 0, plan
    if outcome.sandbox_denied and safety.patch_wants_no_sandbox_approval(ctx.approval_policy):
        if not approved:
            params = FileChangeRequestApprovalParams(ctx.thread_id, ctx.turn_id, call.call_id, now_ms(),
                                                     reason=safety.RETRY_WITHOUT_SANDBOX_REASON)
            # No session cache: the original asks this one every time.
            verdict = _verdict(await _approve(ctx, "item/fileChange/requestApproval", params, ()))
            if verdict != "accept":
                return verdict
        return (*await trio.to_thread.run_sync(_write_here, plan, False), plan)
    return outcome.aggregated_output.decode("utf-8", "replace"), outcome.exit_code, plan


def _write_here(plan: patching.PatchPlan, follow_symlinks: bool) -> tuple[str, int]:
    try:
        return patching.write_plan(plan, follow_symlinks=follow_symlinks), 0
    except patching.PatchWriteError as exc:
        return f"{exc}\n", 1


def _patch_sandbox(ctx: ToolContext, paths: Iterable[str], approved: bool) -> tuple[SandboxPolicy, str]:
    """The sandbox policy and cwd a patch is written with: the turn's; for
    a patch the user approved, plus the existing folder (resolved) of every
    path the policy does not let it write, and nothing else (for
    ``readOnly``, those folders alone), as the original grants."""
    policy = ctx.sandbox_policy
    if not approved:
        return policy, ctx.cwd
    folders = [os.path.dirname(p) for p in safety.unwritable_paths(paths, sandbox_policy=policy, cwd=ctx.cwd)]
    extra = list(dict.fromkeys(os.path.realpath(f) for f in folders if os.path.isdir(f)))
    if not extra:
        return policy, ctx.cwd
    if isinstance(policy, WorkspaceWrite):
        return msgspec.structs.replace(policy, writable_roots=[*policy.writable_roots, *extra]), ctx.cwd
    # The sandbox's cwd is always writable: make it the first granted folder.
    return WorkspaceWrite(writable_roots=extra[1:], network_access=policy.network_access,
                          exclude_tmpdir_env_var=True, exclude_slash_tmp=True), extra[0]


async def _write_sandboxed(plan: patching.PatchPlan, policy: SandboxPolicy, cwd: str,
                           env: dict[str, str]) -> ExecOutcome:
    """Run :mod:`patch_writer` on ``plan`` in the sandbox. The plan goes
    by a file in a private folder the sandbox cannot write, so a command
    running beside it cannot swap in another plan."""
    folder = await trio.to_thread.run_sync(_plan_file, plan, _private_parent(policy, cwd, env))
    try:
        return await run_command([*_WRITER, os.path.join(folder, "plan.json")], cwd=cwd, env=env,
                                 sandbox_policy=policy, timeout_ms=PATCH_WRITE_TIMEOUT_MS)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _plan_file(plan: patching.PatchPlan, parent: str | None) -> str:
    folder = tempfile.mkdtemp(prefix="trio-codex-patch-", dir=parent)  # mode 0700
    with open(os.path.join(folder, "plan.json"), "wb") as f:
        f.write(patching.writer_input(plan))
    return folder


def _private_parent(policy: SandboxPolicy, cwd: str, env: dict[str, str]) -> str | None:
    """The first temporary folder the sandbox may not write (None: the
    default one)."""
    for folder in (tempfile.gettempdir(), "/var/tmp", os.path.expanduser("~")):
        if os.path.isdir(folder) and not is_path_writable(os.path.join(folder, "x"), policy, cwd, env):
            return folder
    return None


# --- update_plan ---------------------------------------------------------------------


async def _update_plan(ctx: ToolContext, call: rs.FunctionCallItem, args: Any) -> ToolOutcome:
    steps = [TurnPlanStep(s.step, _PLAN_STATUS.get(s.status, s.status)) for s in args.plan]
    text = "\n".join(f"- [{'x' if s.status == 'completed' else ' '}] {s.step}" for s in steps)
    item = PlanItem(call.call_id, text)
    await ctx.notify("item/started", ItemStarted(item, ctx.thread_id, ctx.turn_id, now_ms()))
    await ctx.notify("turn/plan/updated", TurnPlanUpdated(ctx.thread_id, ctx.turn_id, steps, args.explanation))
    await ctx.notify("item/completed", ItemCompleted(item, ctx.thread_id, ctx.turn_id, now_ms()))
    return ToolOutcome(output_item(call, "Plan updated"))


_PLAN_STATUS = {"in_progress": "inProgress"}


# --- goal tools --------------------------------------------------------------------


async def _goal_tool(ctx: ToolContext, call: rs.FunctionCallItem, args: Any) -> ToolOutcome:
    """``get_goal``, ``create_goal``, ``update_goal``: the thread owns the
    goal and answers the output (a refusal is the output too, as the
    original's)."""
    text: str = await ask(ctx.thread, lambda slot: GoalTool(
        ctx.turn_id, call.name, getattr(args, "objective", None), getattr(args, "token_budget", None),
        getattr(args, "status", None), ctx.turn_tokens(), slot), timeout=GATE_TIMEOUT)
    return ToolOutcome(output_item(call, text))

_HANDLERS: dict[str, tuple[type, Callable[[ToolContext, Any, Any], Awaitable[ToolOutcome]]]] = {
    "shell_command": (specs.ShellCommandArgs, _shell_command),
    "exec_command": (specs.ExecCommandArgs, _exec_command),
    "write_stdin": (specs.WriteStdinArgs, _write_stdin),
    "update_plan": (specs.UpdatePlanArgs, _update_plan),
    "get_goal": (specs.GetGoalArgs, _goal_tool),
    "create_goal": (specs.CreateGoalArgs, _goal_tool),
    "update_goal": (specs.UpdateGoalArgs, _goal_tool),
}


# --- the user's own shell command (thread/shellCommand) ------------------------------

#: thread/shellCommand's default timeout: one hour, as the original's.
USER_SHELL_TIMEOUT_MS = 3_600_000


async def run_user_shell(ctx: ToolContext, command: str, timeout_ms: int | None) -> msgspec.Raw:
    """Run the user's ``!cmd`` as the original does: in the thread's cwd,
    unsandboxed (the user typed it; the schema says it runs with full
    access), as a ``commandExecution`` item with ``source: userShell`` and
    output deltas; return the user message that records it in the history,
    so the model sees it next turn (``<user_shell_command>``)."""
    argv = safety.shell_argv(command)
    item_id = str(uuid.uuid4())
    item = CommandExecutionItem(item_id, safety.shlex_join(argv), ctx.cwd,
                                safety.parse_command_actions(argv, cwd=ctx.cwd), "inProgress", source="userShell")
    await ctx.notify("item/started", ItemStarted(item, ctx.thread_id, ctx.turn_id, now_ms()))

    async def stream(chunk: bytes, _stream: str) -> None:
        await ctx.notify("item/commandExecution/outputDelta", CommandExecutionOutputDelta(
            ctx.thread_id, ctx.turn_id, item_id, chunk.decode("utf-8", "replace")))

    try:
        outcome = await run_command(argv, cwd=ctx.cwd, env=create_env(os.environ, thread_id=ctx.thread_id),
                                    sandbox_policy=_UNSANDBOXED, on_output=stream,
                                    timeout_ms=USER_SHELL_TIMEOUT_MS if timeout_ms is None else timeout_ms)
        text, exit_code = outcome.aggregated_output.decode("utf-8", "replace"), outcome.exit_code
        duration_ms, timed_out = outcome.duration_ms, outcome.timed_out
    except OSError as exc:  # the shell itself could not start
        text, exit_code, duration_ms, timed_out = f"failed to run the command: {exc}", -1, 0, False
    done = msgspec.structs.replace(
        item, status="completed" if exit_code == 0 else "failed", aggregated_output=text or None,
        exit_code=exit_code, duration_ms=duration_ms)
    await ctx.notify("item/completed", ItemCompleted(done, ctx.thread_id, ctx.turn_id, now_ms()))
    record = tool_output.user_shell_record(command, text, exit_code=exit_code, duration=duration_ms / 1000,
                                           timed_out=timed_out)
    return user_message(record)
