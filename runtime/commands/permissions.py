"""Permissions profiles, sans-I/O: the sandbox a profile id stands for.

The original names a thread's permissions by profile: a built-in
(``:read-only``, ``:workspace``, ``:danger-full-access``) or a
``[permissions.<id>]`` table of config.toml. ``thread/start``,
``thread/resume``, ``thread/fork`` and ``turn/start`` take an id as
``permissions``; responses report it as ``activePermissionProfile`` beside
the ``sandbox`` policy it produced. A legacy sandbox mode (the request's
``sandbox``, config's ``sandbox_mode``) produces no profile: null, as in the
original. Neither configured: the original's implicit built-in for a project
it does not trust, ``:read-only``.

trio-codex enforces a v2 ``SandboxPolicy`` (read-only, workspace-write with
writable roots, full access) with bubblewrap, so a user profile is taken
when it maps onto one exactly: it ``extends`` ``:read-only`` or
``:workspace`` (or reads ``:root``), may turn ``network.enabled`` on, and
its ``filesystem`` entries are ``read`` (reads are never narrowed) or
``write`` on ``:workspace_roots`` and on absolute paths of a workspace
profile. Any other entry would be enforced wider than asked, so the profile
is refused with a message saying so, rather than run with more.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import msgspec

from ..config import Settings
from ..protocol.v2.thread import (
    ActivePermissionProfile,
    DangerFullAccess,
    PermissionProfileListParams,
    PermissionProfileListResponse,
    PermissionProfileSummary,
    ReadOnly,
    SandboxPolicy,
    WorkspaceWrite,
)

__all__ = ["BUILT_INS", "DANGER_FULL_ACCESS", "READ_ONLY", "WORKSPACE", "Permissions", "PermissionsError",
           "configured", "for_mode", "list_profiles", "resolve"]

READ_ONLY = ":read-only"
WORKSPACE = ":workspace"
DANGER_FULL_ACCESS = ":danger-full-access"
#: In the order ``permissionProfile/list`` gives them.
BUILT_INS = (READ_ONLY, WORKSPACE, DANGER_FULL_ACCESS)
#: The built-ins a user profile may extend.
_EXTENSIBLE = (READ_ONLY, WORKSPACE)


class PermissionsError(ValueError):
    """A profile the original refuses too (in its words), or one trio-codex
    cannot enforce as asked."""


class Permissions(msgspec.Struct, frozen=True):
    """What a thread runs under: the policy, and the profile it came from
    (None for a legacy sandbox mode)."""

    sandbox: SandboxPolicy
    profile: ActivePermissionProfile | None = None


def resolve(settings: Settings, profile_id: str) -> Permissions:
    """The permissions of a profile id.

    Raises:
      PermissionsError: an unknown id, a bad ``[permissions]`` table, or a
        profile trio-codex cannot enforce.
    """
    for name in settings.permissions:
        if name.startswith(":"):
            raise PermissionsError(f"permissions profile `{name}` uses a reserved built-in profile prefix")
    if profile_id == READ_ONLY:
        return Permissions(ReadOnly(), ActivePermissionProfile(READ_ONLY))
    if profile_id == WORKSPACE:
        # As the original: [sandbox_workspace_write] lends its network and tmp
        # switches, not its writable roots.
        w = settings.sandbox_workspace_write
        return Permissions(WorkspaceWrite([], w.network_access, w.exclude_tmpdir_env_var, w.exclude_slash_tmp),
                           ActivePermissionProfile(WORKSPACE))
    if profile_id == DANGER_FULL_ACCESS:
        return Permissions(DangerFullAccess(), ActivePermissionProfile(DANGER_FULL_ACCESS))
    if profile_id.startswith(":"):
        raise PermissionsError(f"default_permissions refers to unknown built-in profile `{profile_id}`")
    if not settings.permissions:
        raise PermissionsError("default_permissions requires a `[permissions]` table")
    profile, base = _flatten(settings.permissions, profile_id, ())
    extends = settings.permissions[profile_id].get("extends")
    return Permissions(_compile(profile_id, profile, base), ActivePermissionProfile(profile_id, extends))


def for_mode(settings: Settings, mode: str | None) -> Permissions:
    """A legacy sandbox mode (None: config's ``sandbox_mode``): no profile."""
    return Permissions(settings.sandbox_policy(mode))


def configured(settings: Settings) -> Permissions:
    """What a thread runs under when its request names nothing."""
    if settings.default_permissions is not None:
        return resolve(settings, settings.default_permissions)
    if "sandbox_mode" in settings.effective:
        return for_mode(settings, None)
    return resolve(settings, READ_ONLY)


def list_profiles(settings: Settings, params: PermissionProfileListParams) -> PermissionProfileListResponse:
    """``permissionProfile/list``: the built-ins, then the user's profiles by
    id, paged as the original pages them.

    Raises:
      ValueError: a cursor that is no offset of this list (the original's words).
    """
    profiles = [PermissionProfileSummary(name) for name in BUILT_INS] + [
        PermissionProfileSummary(name, description=table.get("description")
                                 if isinstance(table.get("description"), str) else None)
        for name, table in sorted(settings.permissions.items())]
    total = len(profiles)
    limit = min(max(total if params.limit is None else params.limit, 1), total)
    try:
        start = int(params.cursor) if params.cursor is not None else 0
    except ValueError:
        raise ValueError(f"invalid cursor: {params.cursor}") from None
    if not 0 <= start <= total:
        raise ValueError(f"cursor {start} exceeds total permission profiles {total}")
    end = min(start + limit, total)
    return PermissionProfileListResponse(profiles[start:end], str(end) if end < total else None)


def _flatten(permissions: Mapping[str, dict[str, Any]], name: str,
             stack: tuple[str, ...]) -> tuple[dict[str, Any], str | None]:
    """A profile with what it ``extends`` merged under it, and the built-in
    its chain ends in (None: none)."""
    if name in stack:
        raise PermissionsError(f"permissions profile inheritance cycle detected: {' -> '.join((*stack, name))}")
    if name in _EXTENSIBLE:
        return {}, name
    if name.startswith(":"):
        raise PermissionsError(f"permissions profile `{stack[-1]}` cannot extend unsupported built-in profile "
                               f"`{name}`")
    if name not in permissions:
        if stack:
            raise PermissionsError(f"permissions profile `{stack[-1]}` extends undefined profile `{name}`")
        raise PermissionsError(f"permissions profile `{name}` is not defined")
    table = permissions[name]
    parent = table.get("extends")
    if parent is None:
        return dict(table), None
    if not isinstance(parent, str):
        raise PermissionsError(f"permissions profile `{name}`: `extends` must be a profile id")
    merged, base = _flatten(permissions, parent, (*stack, name))
    for key, value in table.items():
        below = merged.get(key)
        merged[key] = ({**below, **value} if key in ("filesystem", "network")
                       and isinstance(below, dict) and isinstance(value, dict) else value)
    return merged, base


def _compile(name: str, profile: Mapping[str, Any], base: str | None) -> SandboxPolicy:
    """The policy of a flattened user profile, or PermissionsError when no
    policy we can enforce is exactly it."""
    reads_all, workspace, roots = base is not None, base == WORKSPACE, []
    filesystem = profile.get("filesystem") or {}
    if not isinstance(filesystem, dict):
        raise PermissionsError(f"permissions profile `{name}`: `filesystem` must be a table")
    for path, access in filesystem.items():
        if path == "glob_scan_max_depth":
            continue
        for subpath, mode in (access.items() if isinstance(access, dict) else [(None, access)]):
            if mode == "read":
                reads_all = reads_all or (path == ":root" and subpath is None)
            elif mode == "write" and path == ":workspace_roots" and subpath in (None, "."):
                workspace = True
            elif mode == "write" and subpath is None and isinstance(path, str) and path.startswith(("/", "~/")):
                roots.append(os.path.expanduser(path))
            else:
                shown = path if subpath is None else f"{path}` / `{subpath}"
                raise _unenforceable(name, f"the filesystem entry `{shown}` = {mode!r}")
    if not reads_all:
        raise _unenforceable(name, "reads narrower than the whole disk (it neither extends a built-in nor "
                                   "reads `:root`)")
    if roots and not workspace:
        raise _unenforceable(name, "`write` entries without the workspace writable (extend `:workspace`)")
    network = profile.get("network")
    network_access = isinstance(network, dict) and network.get("enabled") is True
    if workspace:
        return WorkspaceWrite(roots, network_access)
    return ReadOnly(network_access)


def _unenforceable(name: str, what: str) -> PermissionsError:
    return PermissionsError(
        f"permissions profile `{name}`: trio-codex cannot enforce {what}; use `read`, or `write` on "
        f"`:workspace_roots` and absolute paths, in a profile that extends `:read-only` or `:workspace`")
