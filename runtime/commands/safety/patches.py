"""Patch safety (codex-rs ``core/src/safety.rs``): ``assess_patch_safety``
over the writable roots of the sandbox policy, and how a patch approval is
remembered."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from ...protocol.v2.thread import WorkspaceWrite
from ..sandbox import PROTECTED_METADATA_NAMES, implied_roots, needs_sandbox
from .actions import join_normalized
from .policies import Granular, approval_of, sandbox_of


class AutoApprove(msgspec.Struct, frozen=True, tag="autoApprove"):
    """Apply without asking; in the platform sandbox unless ``sandboxed`` is
    false (full access or an external sandbox)."""

    sandboxed: bool


class AskUser(msgspec.Struct, frozen=True, tag="askUser"):
    """Send ``item/fileChange/requestApproval`` first."""


class Reject(msgspec.Struct, frozen=True, tag="reject"):
    """Refuse; the model sees ``patch rejected: <reason>``."""

    reason: str


PatchSafety = AutoApprove | AskUser | Reject

_PATCH_OUTSIDE_PROJECT = "writing outside of the project; rejected by user approval settings"
_PATCH_READ_ONLY = "writing is blocked by read-only sandbox; rejected by user approval settings"


def writable_roots(sandbox_policy: Any, cwd: str, *, tmpdir: str | None = None) -> list[str]:
    """The folders a restricted sandbox lets a patch write, as patch safety
    judges them: the sandbox's :func:`~..sandbox.implied_roots` (the cwd,
    ``/tmp`` and ``tmpdir``, ``$TMPDIR``, unless excluded) and the extra
    ``writableRoots``, made absolute against ``cwd`` and normalized without
    resolving symlinks; none for ``readOnly``. An unrestricted policy has no
    roots because it has no limit."""
    sandbox = sandbox_of(sandbox_policy)
    if not isinstance(sandbox, WorkspaceWrite):
        return []
    roots = [*implied_roots(sandbox, cwd, tmpdir), *sandbox.writable_roots]
    return list(dict.fromkeys(join_normalized(cwd, root) for root in roots))


def _is_under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _can_write(path: str, roots: Sequence[str]) -> bool:
    """Under a writable root, and not inside a root's ``.git``, ``.agents``
    or ``.codex`` unless that folder is itself (under) a writable root."""
    if not any(_is_under(path, root) for root in roots):
        return False
    for root in roots:
        for name in PROTECTED_METADATA_NAMES:
            protected = join_normalized(root, name)
            if _is_under(path, protected) and not any(
                _is_under(r, protected) and _is_under(path, r) for r in roots
            ):
                return False
    return True


def assess_patch(
    paths: Iterable[str],
    *,
    approval_policy: Any,
    sandbox_policy: Any,
    cwd: str,
    tmpdir: str | None = None,
    platform_sandbox: bool = True,
) -> PatchSafety:
    """Whether an ``apply_patch`` runs, asks or is refused
    (``assess_patch_safety``).

    ``paths`` are every path the patch writes: added, deleted and updated
    files and move destinations, relative to ``cwd`` or absolute.
    ``platform_sandbox`` says whether a sandbox can enforce the writable
    roots here (Linux has one)."""
    paths = list(paths)
    if not paths:
        return Reject("empty patch")
    approval = approval_of(approval_policy)
    if approval == "untrusted":
        return AskUser()
    sandbox = sandbox_of(sandbox_policy)
    rejects_prompts = approval == "never" or (isinstance(approval, Granular) and not approval.sandbox_approval)
    roots = writable_roots(sandbox, cwd, tmpdir=tmpdir)
    if not needs_sandbox(sandbox) or not unwritable_paths(paths, sandbox_policy=sandbox, cwd=cwd, tmpdir=tmpdir):
        if not needs_sandbox(sandbox):
            return AutoApprove(sandboxed=False)
        if platform_sandbox:
            return AutoApprove(sandboxed=True)
    if not rejects_prompts:
        return AskUser()
    return Reject(_PATCH_READ_ONLY if not roots else _PATCH_OUTSIDE_PROJECT)


def unwritable_paths(paths: Iterable[str], *, sandbox_policy: Any, cwd: str, tmpdir: str | None = None) -> list[str]:
    """The ``paths`` (made absolute against ``cwd`` and normalized, without
    resolving symlinks, as the original judges them) that a restricted
    policy does not let a patch write: outside every writable root, or in
    a root's ``.git``, ``.agents`` or ``.codex``."""
    roots = writable_roots(sandbox_policy, cwd, tmpdir=tmpdir)
    return [p for p in (join_normalized(cwd, p) for p in paths) if not _can_write(p, roots)]


def patch_wants_no_sandbox_approval(approval_policy: Any) -> bool:
    """After the sandbox denied a patch's writes, whether to ask to write it
    outside the sandbox (the apply_patch runtime's own rule, wider than the
    commands' :func:`wants_no_sandbox_approval`): every policy but ``never``
    and granular without ``sandbox_approval``."""
    approval = approval_of(approval_policy)
    return approval != "never" and (not isinstance(approval, Granular) or approval.sandbox_approval)


def patch_approval_cache_keys(paths: Iterable[str], *, cwd: str, environment_id: str = "local") -> list[str]:
    """The keys under which ``acceptForSession`` remembers a patch: one per
    file it writes (the apply_patch runtime's ``ApplyPatchApprovalKey``, the
    path as a ``file://`` URI). A later patch asks again unless every one of
    its keys is remembered."""
    return [
        msgspec.json.encode(
            {"environment_id": environment_id, "path": "file://" + urllib.parse.quote(join_normalized(cwd, p))}
        ).decode()
        for p in paths
    ]
