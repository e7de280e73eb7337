"""Exec approval requirements (codex-rs ``core/src/exec_policy.rs``,
``core/src/tools/sandboxing.rs``, ``orchestrator.rs``,
``protocol/src/approvals.rs``): whether a command runs, asks or is refused,
the decisions offered and how an approval is remembered.

Policies are read through :mod:`.policies`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import msgspec

from .bash import heredoc_command_prefix, plain_commands, shell_script
from .dangerous import command_might_be_dangerous, dangerous_match
from ...protocol.v2.thread import SandboxPolicy
from ..sandbox import needs_sandbox
from .policies import Approval, Granular, approval_of, sandbox_of
from .safe import is_known_safe_command
from .words import render_command

SandboxPermissions = Literal["use_default", "require_escalated", "with_additional_permissions"]


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
    prefix = heredoc_command_prefix(argv)
    if prefix is not None:
        return [prefix], True
    return [list(argv)], False


def _unmatched_decision(
    argv: Sequence[str],
    approval: Approval,
    sandbox: SandboxPolicy,
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
    if not needs_sandbox(sandbox):
        return "allow"
    return "prompt" if sandbox_permissions != "use_default" else "allow"


def _prompt_rejection(approval: Approval) -> str | None:
    """``prompt_is_rejected_by_policy`` for a prompt no rule asked for."""
    if approval == "never":
        return _PROMPT_CONFLICT_REASON
    if isinstance(approval, Granular) and not approval.sandbox_approval:
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
    approval = approval_of(approval_policy)
    sandbox = sandbox_of(sandbox_policy)
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
        return any(d == decision and dangerous_match(c) == "forced_rm" for c, d in decisions)

    if overall == "forbidden":
        reason = _FORCED_RM_REASON if forced_rm("forbidden") else "blocked by policy"
        return Forbidden(f"`{render_command(argv)}` rejected: {reason}")
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
    approval = approval_of(approval_policy)
    restricted = needs_sandbox(sandbox_of(sandbox_policy))
    needs = approval == "untrusted" or (approval != "never" and restricted)
    if needs and isinstance(approval, Granular) and not approval.sandbox_approval:
        return Forbidden("approval policy disallowed sandbox approval prompt")
    return NeedsApproval() if needs else Skip()


def escalation_refusal(approval_policy: Any, sandbox_permissions: SandboxPermissions, *,
                       unified_exec: bool) -> str | None:
    """The original's answer to a call asking to run outside (or beyond) the
    sandbox under any approval policy but ``on-request``: refused before it
    runs, since only ``on-request`` lets the model ask. None: no such ask.
    ``exec_command`` words it "cannot", ``shell_command`` "should not"."""
    if sandbox_permissions == "use_default" or approval_of(approval_policy) == "on-request":
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
    approval = approval_of(approval_policy)
    return approval == "untrusted" or (isinstance(approval, Granular) and approval.sandbox_approval)


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
