"""The original's ``apply_patch`` (codex-rs/apply-patch, codex-cli 0.169.0):
parse a patch, plan it against the files, apply the plan.

Design:

* Three stages. :func:`parse_patch` turns text into a :class:`Patch` (no I/O).
  :func:`plan_patch` reads the files a patch touches and computes everything
  the patch will do, writing nothing: every resulting file, the ``fileChange``
  entries of the protocol, the diff for ``turn/diff/updated`` and the set of
  absolute paths touched, so approval is decided on a plan. :func:`apply_plan`
  writes a plan and returns the original's success summary. The writes
  themselves are :mod:`..patch_writer`'s, which the server runs inside the
  command sandbox for sandboxed policies (:func:`writer_input`), so they
  resolve paths as a command would.
* All or nothing. The original verifies a patch (computes every new file)
  before running it, then writes hunk by hunk and stops at the first failure,
  leaving the earlier files written. Here the plan holds the final content of
  every path before the first write; if a write fails midway, what was
  already written is restored, so a failed patch leaves the tree as it was.
  Writes go before deletions, so even a crash midway loses no content.
* Hunks apply in order over the plan's view of the tree: a later hunk sees an
  earlier one's result, as when the original writes them one by one.
* A plan may wait for approval. :func:`apply_plan` checks that the files are
  still as planned and plans again from the patch if they are not, as the
  original recomputes the patch when it finally runs it.
* Rust's definitions, not Python's: lines split on ``\\n`` and lose one
  trailing ``\\r`` (``str::lines``), ``trim`` strips Unicode White_Space (not
  Python's wider set), files must be strict UTF-8. Messages are the
  original's, byte for byte.

How the original words failures to the model (the tool handler formats):
a patch that does not parse or plan gives
``apply_patch verification failed: {error}``; a write that fails gives
``{error}`` and a newline as the output of the failed command; a patch with no hunks never
reaches :func:`apply_plan` (approval rejects it: ``patch rejected: empty
patch``). :func:`maybe_parse_apply_patch_invocation` recognises a shell
command that is an ``apply_patch`` invocation (no caller runs one through it
yet).

Planning and diffing are CPU work proportional to file size (the diff is
Myers', O((N+M)·D)); a caller with large files should run them in a worker
thread.

The modules, in the order a patch meets them: :mod:`.patch` (the patch as
data, its markers and errors), :mod:`.parse` (text to a patch), :mod:`.seek`
(locating a hunk's lines and replacing them), :mod:`.diff` (unified diffs as
the ``similar`` crate writes them), :mod:`.plan` (planning and applying),
:mod:`.invocation` (a shell command that invokes ``apply_patch``).
"""

from __future__ import annotations

from .patch import (
    AddFile,
    ApplyPatchError,
    ComputeReplacementsError,
    DeleteFile,
    Hunk,
    ImplicitInvocationError,
    InvalidHunkError,
    InvalidPatchError,
    ParseError,
    Patch,
    PatchIOError,
    PatchWriteError,
    UpdateFile,
    UpdateFileChunk,
)
from .parse import parse_patch
from .diff import unified_diff
from .plan import (
    FileChange,
    PatchPlan,
    apply_plan,
    moved_diff,
    plan_patch,
    refresh_plan,
    write_plan,
    writer_input,
)
from .invocation import ApplyPatchInvocation, maybe_parse_apply_patch_invocation

__all__ = [
    "AddFile",
    "ApplyPatchError",
    "ApplyPatchInvocation",
    "ComputeReplacementsError",
    "DeleteFile",
    "FileChange",
    "Hunk",
    "ImplicitInvocationError",
    "InvalidHunkError",
    "InvalidPatchError",
    "ParseError",
    "Patch",
    "PatchIOError",
    "PatchPlan",
    "PatchWriteError",
    "UpdateFile",
    "UpdateFileChunk",
    "apply_plan",
    "maybe_parse_apply_patch_invocation",
    "moved_diff",
    "parse_patch",
    "plan_patch",
    "refresh_plan",
    "unified_diff",
    "write_plan",
    "writer_input",
]
