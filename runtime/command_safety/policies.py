"""Approval and sandbox policies in the one shape the rules read.

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


class Sandbox(NamedTuple):
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


def sandbox_of(policy: Any) -> Sandbox:
    """A sandbox policy: the wire object (dict or Struct) or a mode string."""
    if isinstance(policy, Sandbox):
        return policy
    if isinstance(policy, msgspec.Struct):
        policy = msgspec.to_builtins(policy)
    if isinstance(policy, str) and policy in _SANDBOX_MODES:
        return Sandbox(_SANDBOX_MODES[policy])  # type: ignore[arg-type]
    if isinstance(policy, Mapping) and policy.get("type") in _SANDBOX_MODES.values():
        return Sandbox(
            policy["type"],
            tuple(policy.get("writableRoots") or ()),
            bool(policy.get("excludeTmpdirEnvVar")),
            bool(policy.get("excludeSlashTmp")),
        )
    raise ValueError(f"unknown sandbox policy: {policy!r}")
