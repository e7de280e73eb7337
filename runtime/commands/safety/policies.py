"""Approval and sandbox policies in the one shape the rules read: approval
as :data:`Approval`, sandbox as the typed v2 ``SandboxPolicy`` that
:mod:`..sandbox` enforces (one model of the sandbox for the rules and the
sandbox).

Approval policies are ``"untrusted"``, ``"on-request"``, ``"never"`` or
``{"granular": {...}}`` (a dict or the config's ``GranularApproval``);
sandbox policies are the wire objects (``{"type": "workspaceWrite", ...}``, as
dicts or as the v2 Structs) or the config's mode strings (``"read-only"``,
``"workspace-write"``, ``"danger-full-access"``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

import msgspec

from ...protocol.v2.thread import DangerFullAccess, ExternalSandbox, ReadOnly, SandboxPolicy, WorkspaceWrite


class Granular(NamedTuple):
    sandbox_approval: bool
    rules: bool


Approval = Literal["untrusted", "on-request", "never"] | Granular


def approval_of(policy: Any) -> Approval:
    """``"untrusted" | "on-request" | "never" | {"granular": {...}}`` (a
    dict or a Struct that encodes to one). Missing granular switches are off,
    which auto-rejects the prompts they guard."""
    if isinstance(policy, msgspec.Struct):
        policy = msgspec.to_builtins(policy)
    if policy in ("untrusted", "on-request", "never"):
        return policy
    if isinstance(policy, Mapping) and isinstance(policy.get("granular"), Mapping):
        granular = policy["granular"]
        return Granular(bool(granular.get("sandbox_approval")), bool(granular.get("rules")))
    raise ValueError(f"unknown approval policy: {policy!r}")


_SANDBOX_MODES: dict[str, SandboxPolicy] = {
    "read-only": ReadOnly(),
    "workspace-write": WorkspaceWrite(),
    "danger-full-access": DangerFullAccess(),
    "external-sandbox": ExternalSandbox(),
}


def sandbox_of(policy: Any) -> SandboxPolicy:
    """A sandbox policy as the typed v2 ``SandboxPolicy`` the sandbox itself
    reads (:mod:`..sandbox`), from the Struct, the wire object as a dict, or
    a mode string. A ``workspace-write`` mode string has no extra roots
    (the config's ``[sandbox_workspace_write]`` is applied by
    ``Settings.sandbox_policy``)."""
    if isinstance(policy, DangerFullAccess | ReadOnly | WorkspaceWrite | ExternalSandbox):
        return policy
    if isinstance(policy, str) and policy in _SANDBOX_MODES:
        return _SANDBOX_MODES[policy]
    if isinstance(policy, msgspec.Struct):
        policy = msgspec.to_builtins(policy)
    if isinstance(policy, Mapping):
        try:
            return msgspec.convert(policy, SandboxPolicy)
        except msgspec.ValidationError:
            pass
    raise ValueError(f"unknown sandbox policy: {policy!r}")
