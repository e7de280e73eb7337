"""Unified diffs in the format of the ``similar`` crate the original uses
(Myers' algorithm, O((N+M)·D)), and the git-style diff of a whole patch."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def _lines_keepends(text: str) -> list[str]:
    parts = text.split("\n")
    out = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        out.append(parts[-1])
    return out


def _myers(a: Sequence[int], b: Sequence[int]) -> list[tuple[int, int, int, int]]:
    """The runs of lines ``a`` and ``b`` share, as ``(a0, a1, b0, b1)`` in
    order: Myers' linear-space algorithm (common prefix and suffix first,
    then split at the middle snake), as the `similar` crate runs it, so that
    ties between equally short diffs are broken the same way."""
    equal: list[tuple[int, int, int, int]] = []

    def conquer(a0: int, a1: int, b0: int, b1: int) -> None:
        prefix = 0
        while a0 + prefix < a1 and b0 + prefix < b1 and a[a0 + prefix] == b[b0 + prefix]:
            prefix += 1
        if prefix:
            equal.append((a0, a0 + prefix, b0, b0 + prefix))
        a0 += prefix
        b0 += prefix
        suffix = 0
        while a1 - suffix > a0 and b1 - suffix > b0 and a[a1 - suffix - 1] == b[b1 - suffix - 1]:
            suffix += 1
        if a0 < a1 - suffix and b0 < b1 - suffix:
            x, y = _middle_snake(a, a0, a1 - suffix, b, b0, b1 - suffix)
            conquer(a0, x, b0, y)
            conquer(x, a1 - suffix, y, b1 - suffix)
        if suffix:
            equal.append((a1 - suffix, a1, b1 - suffix, b1))

    conquer(0, len(a), 0, len(b))
    return equal


def _middle_snake(a: Sequence[int], a0: int, a1: int, b: Sequence[int], b0: int, b1: int) -> tuple[int, int]:
    """Where the middle snake of an optimal path through ``a[a0:a1]`` and
    ``b[b0:b1]`` starts: the forward and backward searches run in turn,
    one edit further each round, until they overlap."""
    n, m = a1 - a0, b1 - b0
    delta = n - m
    odd = delta & 1 == 1
    d_max = (n + m + 1) // 2 + 1
    vf = [0] * (2 * d_max + 2)  # furthest x on diagonal k, stored at k + d_max
    vb = [0] * (2 * d_max + 2)
    for d in range(d_max):
        for k in range(d, -d - 1, -2):
            if k == -d or (k != d and vf[d_max + k - 1] < vf[d_max + k + 1]):
                x = vf[d_max + k + 1]
            else:
                x = vf[d_max + k - 1] + 1
            y = x - k
            x0, y0 = x, y
            while x < n and 0 <= y < m and a[a0 + x] == b[b0 + y]:
                x += 1
                y += 1
            vf[d_max + k] = x
            if odd and abs(k - delta) <= d - 1 and x + vb[d_max - (k - delta)] >= n:
                return a0 + x0, b0 + y0
        for k in range(d, -d - 1, -2):
            if k == -d or (k != d and vb[d_max + k - 1] < vb[d_max + k + 1]):
                x = vb[d_max + k + 1]
            else:
                x = vb[d_max + k - 1] + 1
            y = x - k
            while x < n and 0 <= y < m and a[a1 - x - 1] == b[b1 - y - 1]:
                x += 1
                y += 1
            vb[d_max + k] = x
            if not odd and abs(k - delta) <= d and x + vf[d_max - (k - delta)] >= n:
                return a0 + n - x, b0 + m - y
    raise AssertionError("unreachable: d_max bounds the edit distance")


def _diff_ops(old: Sequence[str], new: Sequence[str]) -> list[tuple[str, int, int, int, int]]:
    """``(tag, a0, a1, b0, b1)`` with tag ``equal`` or ``replace`` (a
    change: deletions and insertions between two equal runs, either side
    possibly empty), covering both sequences in order."""
    ids: dict[str, int] = {}
    a = [ids.setdefault(line, len(ids)) for line in old]
    b = [ids.setdefault(line, len(ids)) for line in new]
    ops: list[tuple[str, int, int, int, int]] = []
    i = j = 0
    for a0, a1, b0, b1 in _myers(a, b):
        if a0 > i or b0 > j:
            ops.append(("replace", i, a0, j, b0))
        if ops and ops[-1][0] == "equal" and ops[-1][2] == a0:
            ops[-1] = ("equal", ops[-1][1], a1, ops[-1][3], b1)
        else:
            ops.append(("equal", a0, a1, b0, b1))
        i, j = a1, b1
    if i < len(a) or j < len(b):
        ops.append(("replace", i, len(a), j, len(b)))
    return ops


def _grouped(ops: list[tuple[str, int, int, int, int]], n: int) -> list[list[tuple[str, int, int, int, int]]]:
    """Hunks: changes with ``n`` lines of context, joined when their
    contexts touch (``similar::group_diff_ops``)."""
    if not ops:
        return []
    ops = list(ops)
    tag, a0, a1, b0, b1 = ops[0]
    if tag == "equal":
        cut = max(0, (a1 - a0) - n)
        ops[0] = (tag, a0 + cut, a1, b0 + cut, b1)
    tag, a0, a1, b0, b1 = ops[-1]
    if tag == "equal":
        ops[-1] = (tag, a0, min(a1, a0 + n), b0, min(b1, b0 + n))
    groups: list[list[tuple[str, int, int, int, int]]] = []
    group: list[tuple[str, int, int, int, int]] = []
    for op in ops:
        tag, a0, a1, b0, b1 = op
        if tag == "equal" and a1 - a0 > 2 * n:
            group.append((tag, a0, a0 + n, b0, b0 + n))
            groups.append(group)
            group = [(tag, a1 - n, a1, b1 - n, b1)]
            continue
        group.append(op)
    if not (len(group) <= 1 and all(op[0] == "equal" for op in group)):
        groups.append(group)
    return [g for g in groups if g]


def _range(start: int, end: int) -> str:
    length = end - start
    if length == 1:
        return str(start + 1)
    return f"{start if length == 0 else start + 1},{length}"


def unified_diff(old: str, new: str, context: int = 1, header: tuple[str, str] | None = None) -> str:
    """A unified diff of two texts, line by line, as the original prints it
    with the `similar` crate: hunk headers ``@@ -a,b +c,d @@`` (a count of 1
    omitted), ``\\ No newline at end of file`` after a line without one, and
    ``--- a`` / ``+++ b`` first when ``header`` is given and there is a
    hunk. ``context`` is 1 for ``fileChange`` diffs and 3 for the turn diff."""
    old_lines = _lines_keepends(old)
    new_lines = _lines_keepends(new)
    out: list[str] = []
    for group in _grouped(_diff_ops(old_lines, new_lines), context):
        if not out and header is not None:
            out.append(f"--- {header[0]}\n+++ {header[1]}\n")
        out.append(f"@@ -{_range(group[0][1], group[-1][2])} +{_range(group[0][3], group[-1][4])} @@\n")
        for tag, a0, a1, b0, b1 in group:
            if tag == "equal":
                out.extend(_diff_line(" ", line) for line in old_lines[a0:a1])
            else:
                out.extend(_diff_line("-", line) for line in old_lines[a0:a1])
                out.extend(_diff_line("+", line) for line in new_lines[b0:b1])
    return "".join(out)


def _diff_line(tag: str, line: str) -> str:
    if line.endswith("\n"):
        return tag + line
    return f"{tag}{line}\n\\ No newline at end of file\n"


def _git_blob_oid(text: str | None) -> str:
    if text is None:
        return "0" * 40
    data = text.encode()
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


def git_diff(
    left_display: str, left: str | None, right_display: str, right: str | None
) -> str:
    """One file's section of the turn diff, in git's format (the original's
    TurnDiffTracker)."""
    out = [f"diff --git a/{left_display} b/{right_display}\n"]
    if left is None:
        out.append("new file mode 100644\n")
    elif right is None:
        out.append("deleted file mode 100644\n")
    out.append(f"index {_git_blob_oid(left)}..{_git_blob_oid(right)}\n")
    old_header = f"a/{left_display}" if left is not None else "/dev/null"
    new_header = f"b/{right_display}" if right is not None else "/dev/null"
    out.append(unified_diff(left or "", right or "", 3, (old_header, new_header)))
    return "".join(out)
