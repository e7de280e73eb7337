"""Which commands and patches run without asking, and what the client is asked.

A port of the original's command-safety rules (codex-rs ``shell-command``,
``core/src/exec_policy.rs``, ``core/src/safety.rs``, ``core/src/tools/
sandboxing.rs`` and ``orchestrator.rs``, ``protocol/src/approvals.rs``): the
lists, the conditions, the reasons and the wire shapes are the original's.
Everything here is a pure function of its arguments: no I/O, no clock, no
environment (the caller passes ``$TMPDIR`` and the cwd), save one look, as
the original's: ``/tmp`` is a writable root only if it is a directory.

The modules, in the order a shell call meets them:

* :mod:`.words`: shell words as the Rust ``shlex`` crate splits and quotes
  them (the original renders commands with it; clients see that text).
* :mod:`.bash`: ``bash -lc``/``zsh -lc`` scripts parsed with tree-sitter-bash,
  the original's parser; the *plain* commands (word-only commands joined by
  ``&&``, ``||``, ``;``, ``|``), the *literal* commands (every command of a
  valid script, dynamic words dropped) and the argv of a heredoc-fed command.
* :mod:`.safe`: :func:`is_known_safe_command` (read-only commands, and
  scripts made only of them).
* :mod:`.dangerous`: :func:`command_might_be_dangerous` (``rm`` with a force
  flag, also through ``sudo``, ``env``, ``trap`` or a nested ``sh -c``).
* :mod:`.actions`: :func:`parse_command_actions`, the ``commandActions`` of
  ``commandExecution`` items and approval requests.
* :mod:`.decisions`: :func:`assess_command` (the original's
  ``create_exec_approval_requirement_for_command`` with no execpolicy rules
  loaded: every segment of a script is judged and the strictest wins),
  :func:`available_decisions`, :func:`wants_no_sandbox_approval` and
  :func:`approval_cache_key`.
* :mod:`.policies`: approval policies in the one shape the rules read, and
  sandbox policies (dicts, Structs or mode strings) as the typed v2
  ``SandboxPolicy`` that :mod:`..sandbox` enforces.
* :mod:`.patches`: :func:`assess_patch`, ``assess_patch_safety`` over the
  writable roots of the sandbox policy (the sandbox's
  :func:`~..sandbox.implied_roots` and :data:`PROTECTED_METADATA_NAMES`).

:func:`is_likely_sandbox_denied` (whether a failed command may be retried
without the sandbox) is the sandbox's own, :mod:`..sandbox`, re-exported
here beside the other approval rules.
"""

from __future__ import annotations

from .words import shlex_join, shlex_split
from .bash import (
    literal_commands,
    parse_shell_script_into_commands,
    plain_commands,
    shell_argv,
    shell_script,
)
from .safe import is_known_safe_command
from .dangerous import command_might_be_dangerous
from .actions import (
    CommandAction,
    ListFilesAction,
    ReadAction,
    SearchAction,
    UnknownAction,
    parse_command_actions,
)
from .decisions import (
    BANNED_PREFIX_SUGGESTIONS,
    ExecApprovalRequirement,
    Forbidden,
    NeedsApproval,
    RETRY_WITHOUT_SANDBOX_REASON,
    Skip,
    approval_cache_key,
    assess_command,
    available_decisions,
    canonicalize_command_for_approval,
    default_exec_approval_requirement,
    escalation_refusal,
    wants_no_sandbox_approval,
)
from .patches import (
    AskUser,
    AutoApprove,
    PatchSafety,
    Reject,
    assess_patch,
    patch_approval_cache_keys,
    patch_wants_no_sandbox_approval,
    unwritable_paths,
    writable_roots,
)
from ..sandbox import PROTECTED_METADATA_NAMES, is_likely_sandbox_denied

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
    "escalation_refusal",
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
