"""Planning a patch against the files and applying the plan: everything a
patch will do is computed before the first write (see the package
docstring); the writes are :mod:`..patch_writer`'s."""

from __future__ import annotations

import errno
import os
import stat
from typing import Literal

import msgspec

from .. import patch_writer
from ...protocol.v2.item import FileUpdateChange, PatchChangeKind
from .diff import git_diff, unified_diff
from .patch import (
    AddFile,
    ApplyPatchError,
    DeleteFile,
    Patch,
    PatchIOError,
    PatchWriteError,
    UpdateFile,
    os_reason,
    utf8_reason,
)
from .seek import new_contents


class FileChange(msgspec.Struct, frozen=True):
    """What one hunk does to one file, as the protocol reports it.

    ``path`` and ``move_path`` are absolute. ``diff`` is what the
    ``fileChange`` item shows: the new content for an add, the old content
    for a delete, a unified diff (1 line of context) for an update.
    ``old_content`` is the text before the hunk (None when there was no
    readable file), ``new_content`` the text after (None for a delete).
    """

    path: str
    kind: Literal["add", "delete", "update"]
    diff: str
    move_path: str | None = None
    old_content: str | None = None
    new_content: str | None = None

    def to_wire(self) -> FileUpdateChange:
        diff = moved_diff(self.diff, self.move_path) if self.kind == "update" else self.diff
        return FileUpdateChange(self.path, PatchChangeKind(self.kind, self.move_path), diff)


def moved_diff(unified_diff: str, move_path: str | None) -> str:
    """The diff a ``fileChange`` item shows for an update: a move says
    where the file went, as the original's item does."""
    return unified_diff if move_path is None else f"{unified_diff}\n\nMoved to: {move_path}"


class _Snapshot(msgspec.Struct, frozen=True):
    """A path as the plan found it: a regular file's bytes and mode, or
    nothing there (``data`` None)."""

    path: str
    data: bytes | None
    mode: int | None


class PatchPlan(msgspec.Struct, frozen=True):
    """Everything a patch will do, computed without writing.

    ``changes`` are in hunk order (:meth:`file_changes` gives them as the
    ``fileChange`` item's ``changes``). ``paths`` is every absolute path the
    patch writes or deletes, move destinations included: approval is decided
    on it. ``diff`` is the git-style diff of the whole patch for
    ``turn/diff/updated`` (paths relative to ``cwd``). ``summary`` is what
    :func:`apply_plan` returns.
    """

    patch: Patch
    cwd: str
    changes: tuple[FileChange, ...]
    paths: frozenset[str]
    diff: str
    summary: str
    before: tuple[_Snapshot, ...]
    writes: tuple[tuple[str, str], ...]
    removals: tuple[tuple[str, str], ...]

    def is_empty(self) -> bool:
        return not self.patch.hunks

    def file_changes(self) -> list[FileUpdateChange]:
        # Sorted by path, as the original lists them.
        return [change.to_wire() for change in sorted(self.changes, key=lambda c: c.path)]


def _resolve(cwd: str, path: str) -> str:
    return os.path.normpath(os.path.join(cwd, path))


def _snapshot(path: str) -> _Snapshot:
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            return _Snapshot(path, None, None)
        with open(path, "rb") as f:
            return _Snapshot(path, f.read(), stat.S_IMODE(st.st_mode))
    except OSError:
        return _Snapshot(path, None, None)


class _Tree:
    """The plan's view of the files: the disk, overlaid with what earlier
    hunks of the patch did."""

    def __init__(self) -> None:
        self.before: dict[str, _Snapshot] = {}
        self.current: dict[str, str | None] = {}
        self.removed_by: dict[str, str] = {}

    def touch(self, path: str) -> _Snapshot:
        if path not in self.before:
            self.before[path] = _snapshot(path)
        return self.before[path]

    def peek(self, path: str) -> str | None:
        """The text at ``path`` if there is a readable one, else None."""
        if path in self.current:
            return self.current[path]
        data = self.touch(path).data
        try:
            return None if data is None else data.decode("utf-8")
        except UnicodeDecodeError:
            return None

    def read(self, path: str, context: str) -> str:
        if path in self.current:
            text = self.current[path]
            if text is None:
                raise PatchIOError(context, os_reason(OSError(errno.ENOENT, "")))
            return text
        try:
            st = os.stat(path)
            if not stat.S_ISREG(st.st_mode):
                raise PatchIOError(context, f"path `{path}` is not a file")
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise PatchIOError(context, os_reason(exc)) from exc
        self.before.setdefault(path, _Snapshot(path, data, stat.S_IMODE(st.st_mode)))
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PatchIOError(context, utf8_reason(exc)) from exc

    def write(self, path: str, text: str) -> None:
        self.touch(path)
        self.current[path] = text
        self.removed_by.pop(path, None)

    def remove(self, path: str, context: str) -> None:
        self.touch(path)
        self.current[path] = None
        self.removed_by[path] = context


def plan_patch(patch: Patch, cwd: str | os.PathLike[str]) -> PatchPlan:
    """Plan ``patch`` against the files under ``cwd`` (relative paths in the
    patch resolve against it), reading but never writing.

    Raises :class:`ComputeReplacementsError` when a chunk does not match and
    :class:`PatchIOError` when a file to update or delete cannot be read.
    Adding over an existing file replaces it, and a move over an existing
    file replaces that one, as in the original.
    """
    cwd = os.path.abspath(os.fspath(cwd))
    tree = _Tree()
    changes: list[FileChange] = []
    added: list[str] = []
    modified: list[str] = []
    deleted: list[str] = []
    for hunk in patch.hunks:
        path = _resolve(cwd, hunk.path)
        if isinstance(hunk, AddFile):
            old = tree.peek(path)
            tree.write(path, hunk.contents)
            changes.append(FileChange(path, "add", hunk.contents, None, old, hunk.contents))
            added.append(hunk.path)
        elif isinstance(hunk, DeleteFile):
            old = tree.read(path, f"Failed to read {path}")
            tree.remove(path, f"Failed to delete file {path}")
            changes.append(FileChange(path, "delete", old, None, old, None))
            deleted.append(hunk.path)
        else:
            old = tree.read(path, f"Failed to read file to update {path}")
            new = new_contents(old, path, hunk.chunks)
            diff = unified_diff(old, new, 1)
            if hunk.move_path is None:
                tree.write(path, new)
                changes.append(FileChange(path, "update", diff, None, old, new))
                modified.append(hunk.path)
            else:
                dest = _resolve(cwd, hunk.move_path)
                tree.write(dest, new)
                tree.remove(path, f"Failed to remove original {path}")
                changes.append(FileChange(path, "update", diff, dest, old, new))
                modified.append(hunk.move_path)
    summary = "Success. Updated the following files:\n" + "".join(
        f"{tag} {p}\n" for tag, paths in (("A", added), ("M", modified), ("D", deleted)) for p in paths
    )
    writes = tuple((p, text) for p, text in tree.current.items() if text is not None)
    removals = tuple(
        (p, tree.removed_by[p])
        for p, text in tree.current.items()
        if text is None and tree.before[p].data is not None
    )
    return PatchPlan(
        patch=patch,
        cwd=cwd,
        changes=tuple(changes),
        paths=frozenset(tree.current),
        diff=_plan_diff(cwd, tree, patch),
        summary=summary,
        before=tuple(tree.before.values()),
        writes=writes,
        removals=removals,
    )


def _plan_diff(cwd: str, tree: _Tree, patch: Patch) -> str:
    """The turn diff of this patch alone: every touched path from its text
    before to its text after, a moved file shown as a rename when its
    destination did not exist."""

    def display(path: str) -> str:
        rel = os.path.relpath(path, cwd)
        return path if rel == ".." or rel.startswith("../") else rel

    def baseline(path: str) -> str | None:
        data = tree.before[path].data
        try:
            return None if data is None else data.decode("utf-8")
        except UnicodeDecodeError:
            return None

    renames: dict[str, str] = {}
    for hunk in patch.hunks:
        if isinstance(hunk, UpdateFile) and hunk.move_path is not None:
            origin, dest = _resolve(cwd, hunk.path), _resolve(cwd, hunk.move_path)
            if (
                origin != dest
                and tree.current.get(origin) is None
                and tree.current.get(dest) is not None
                and baseline(origin) is not None
                and baseline(dest) is None
            ):
                renames[origin] = dest
    destinations = set(renames.values())
    sections = []
    for path in sorted(tree.current, key=display):
        if path in destinations:
            continue
        right_path = renames.get(path, path)
        left, right = baseline(path), tree.current[right_path]
        if left != right:
            sections.append(git_diff(display(path), left, display(right_path), right))
    return "".join(sections)




def apply_plan(plan: PatchPlan, *, follow_symlinks: bool = True) -> str:
    """Write ``plan`` in this process and return the original's success
    summary (``Success. Updated the following files:\\nA path\\nM path\\nD
    path\\n``, paths as the patch spells them).

    If a file changed since the plan was made, the patch is planned again
    first (:func:`refresh_plan`; it may then fail as :func:`plan_patch`
    does). Then as :func:`write_plan`.
    """
    if not plan.patch.hunks:
        raise ApplyPatchError("No files were modified.")
    return write_plan(refresh_plan(plan), follow_symlinks=follow_symlinks)


def write_plan(plan: PatchPlan, *, follow_symlinks: bool = True) -> str:
    """Write ``plan`` as it is, in this process, and return its summary.
    If a write fails, everything already written is restored and
    :class:`PatchWriteError` is raised. ``follow_symlinks=False`` refuses a
    symlink anywhere in a path (see :mod:`..patch_writer`). Under a sandboxed
    policy the server runs the same writes in the sandbox instead
    (:func:`writer_input`)."""
    try:
        patch_writer.apply(list(plan.writes), list(plan.removals), _before(plan), follow_symlinks=follow_symlinks)
    except patch_writer.WriteError as exc:
        raise PatchWriteError(str(exc)) from exc.__cause__
    return plan.summary


def refresh_plan(plan: PatchPlan) -> PatchPlan:
    """``plan``, or a new plan of its patch if a file it read has changed
    since (as the original recomputes a patch when it finally runs it)."""
    if any(_snapshot(snap.path) != snap for snap in plan.before):
        return plan_patch(plan.patch, plan.cwd)
    return plan


def writer_input(plan: PatchPlan) -> bytes:
    """The plan file for the sandboxed :mod:`..patch_writer` program."""
    return patch_writer.encode_plan(list(plan.writes), list(plan.removals), _before(plan))


def _before(plan: PatchPlan) -> dict[str, tuple[bytes | None, int | None]]:
    return {snap.path: (snap.data, snap.mode) for snap in plan.before}
