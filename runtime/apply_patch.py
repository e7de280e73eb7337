"""The original's ``apply_patch`` (codex-rs/apply-patch, codex-cli 0.169.0):
parse a patch, plan it against the files, apply the plan.

Design:

* Three stages. :func:`parse_patch` turns text into a :class:`Patch` (no I/O).
  :func:`plan_patch` reads the files a patch touches and computes everything
  the patch will do, writing nothing: every resulting file, the ``fileChange``
  entries of the protocol, the diff for ``turn/diff/updated`` and the set of
  absolute paths touched, so approval is decided on a plan. :func:`apply_plan`
  writes a plan and returns the original's success summary. The writes
  themselves are :mod:`.patch_writer`'s, which the server runs inside the
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
patch``). A shell command that is an ``apply_patch`` invocation
(:func:`maybe_parse_apply_patch_invocation`) takes the same path as the tool.

Planning and diffing are CPU work proportional to file size (the diff is
Myers', O((N+M)·D)); callers with large files run them in a worker thread.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Literal, TypeAlias

import msgspec

from . import patch_writer
from .protocol.v2.item import FileUpdateChange, PatchChangeKind

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
    "parse_patch",
    "plan_patch",
    "refresh_plan",
    "unified_diff",
    "write_plan",
    "writer_input",
]

BEGIN_PATCH_MARKER = "*** Begin Patch"
END_PATCH_MARKER = "*** End Patch"
ADD_FILE_MARKER = "*** Add File: "
DELETE_FILE_MARKER = "*** Delete File: "
UPDATE_FILE_MARKER = "*** Update File: "
MOVE_TO_MARKER = "*** Move to: "
EOF_MARKER = "*** End of File"
ENVIRONMENT_ID_MARKER = "*** Environment ID:"
CHANGE_CONTEXT_MARKER = "@@ "
EMPTY_CHANGE_CONTEXT_MARKER = "@@"

APPLY_PATCH_COMMANDS = ("apply_patch", "applypatch")

# Unicode White_Space, which Rust's `str::trim` strips; Python's `str.strip()`
# would also strip U+001C..U+001F.
_WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def _trim(s: str) -> str:
    return s.strip(_WHITESPACE)


def _lines(s: str) -> list[str]:
    """Rust's ``str::lines``: split on ``\\n``, drop one ``\\r`` before it, no
    empty last line for a trailing newline."""
    lines = s.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


# --- the patch ------------------------------------------------------------------


class AddFile(msgspec.Struct, frozen=True):
    """``*** Add File: path`` and its ``+`` lines (each ends with ``\\n``)."""

    path: str
    contents: str


class DeleteFile(msgspec.Struct, frozen=True):
    path: str


class UpdateFileChunk(msgspec.Struct, frozen=True):
    """One ``@@`` section: ``old_lines`` (context and ``-`` lines) are
    replaced by ``new_lines`` (context and ``+`` lines).

    ``change_context`` is the text after ``@@ ``: a line (usually a class or
    function header) that must come before ``old_lines``. With
    ``is_end_of_file`` (``*** End of File``), ``old_lines`` must end the file.
    ``kinds`` has one of `` -+`` per line of the chunk, in patch order; the
    file's own text is kept for context lines (`` ``). Empty means no context:
    every old line is removed and every new line written.
    """

    change_context: str | None
    old_lines: tuple[str, ...]
    new_lines: tuple[str, ...]
    is_end_of_file: bool = False
    kinds: str = ""


class UpdateFile(msgspec.Struct, frozen=True):
    """``*** Update File: path``, optionally ``*** Move to: move_path``, and
    its chunks, in file order."""

    path: str
    move_path: str | None
    chunks: tuple[UpdateFileChunk, ...]


Hunk: TypeAlias = AddFile | DeleteFile | UpdateFile


class Patch(msgspec.Struct, frozen=True):
    """A parsed patch. ``text`` is the patch without a heredoc wrapper (what
    the original runs); ``environment_id`` is the optional
    ``*** Environment ID:`` line, which selects an execution environment."""

    hunks: tuple[Hunk, ...]
    text: str
    environment_id: str | None = None


# --- errors -----------------------------------------------------------------------


class ApplyPatchError(Exception):
    """A patch that cannot be applied. ``str(error)`` is the original's
    message: the tool handler sends it to the model (see the module
    docstring for the framing)."""


class ParseError(ApplyPatchError):
    """The patch text does not follow the grammar."""


class InvalidPatchError(ParseError):
    """The patch as a whole is malformed (``invalid patch: {message}``)."""

    def __init__(self, message: str) -> None:
        super().__init__(f"invalid patch: {message}")
        self.message = message


class InvalidHunkError(ParseError):
    """One hunk is malformed; ``line_number`` counts from 1 at the
    ``*** Begin Patch`` line (``invalid hunk at line {n}, {message}``)."""

    def __init__(self, message: str, line_number: int) -> None:
        super().__init__(f"invalid hunk at line {line_number}, {message}")
        self.message = message
        self.line_number = line_number


class ImplicitInvocationError(ApplyPatchError):
    """A shell command that is a bare patch body, without ``apply_patch``."""

    def __init__(self) -> None:
        super().__init__(
            'patch detected without explicit call to apply_patch. Rerun as ["apply_patch", "<patch>"]'
        )


class ComputeReplacementsError(ApplyPatchError):
    """A chunk's context or lines are not in the file (``Failed to find
    context '…' in <path>`` / ``Failed to find expected lines in <path>:``)."""


class PatchIOError(ApplyPatchError):
    """A file the patch needs could not be read: ``{context}: {reason}``,
    the reason worded as Rust words it (``No such file or directory (os
    error 2)``, ``path `…` is not a file``, ``invalid utf-8 sequence …``)."""

    def __init__(self, context: str, reason: str) -> None:
        super().__init__(f"{context}: {reason}")
        self.context = context
        self.reason = reason


class PatchWriteError(ApplyPatchError):
    """A write failed while applying; every file was restored. The message
    is the original's (``Failed to write file <path>``); the OS error is the
    ``__cause__``."""


def _os_reason(exc: OSError) -> str:
    if exc.errno is None:
        return str(exc)
    return f"{os.strerror(exc.errno)} (os error {exc.errno})"


def _utf8_reason(exc: UnicodeDecodeError) -> str:
    if exc.reason == "unexpected end of data":
        return f"incomplete utf-8 byte sequence from index {exc.start}"
    return f"invalid utf-8 sequence of {exc.end - exc.start} bytes from index {exc.start}"


# --- parsing ----------------------------------------------------------------------


def parse_patch(text: str) -> Patch:
    """Parse patch text, leniently as the original always does.

    Accepted beyond the grammar: whitespace around the markers (trailing
    whitespace only inside an update hunk, where leading space marks a
    context line), a heredoc wrapper (``<<EOF`` / ``<<'EOF'`` / ``<<"EOF"`` …
    ``EOF``), a first chunk without ``@@``, an empty line as empty context,
    and one ``*** Environment ID:`` line before the first hunk. Raises
    :class:`InvalidPatchError` or :class:`InvalidHunkError` with the
    original's messages; line numbers count from the ``*** Begin Patch``
    line.
    """
    lines = _lines(_trim(text))
    if (
        len(lines) >= 4
        and lines[0] in ("<<EOF", "<<'EOF'", '<<"EOF"')
        and lines[-1].endswith("EOF")
    ):
        lines = lines[1:-1]
    parser = _Parser()
    for number, line in enumerate(lines, 1):
        parser.line_number = number
        if number == len(lines) and _trim(line) == END_PATCH_MARKER:
            parser.end_patch(_trim(line))
        else:
            parser.line(line)
    if parser.mode != "ended":
        raise InvalidPatchError("The last line of the patch must be '*** End Patch'")
    return Patch(tuple(hunk.freeze() for hunk in parser.hunks), "\n".join(lines), parser.environment_id)


class _Chunk:
    def __init__(self, change_context: str | None) -> None:
        self.change_context = change_context
        self.old: list[str] = []
        self.new: list[str] = []
        self.kinds: list[str] = []
        self.is_end_of_file = False

    def add(self, kind: str, text: str) -> None:
        if kind != "+":
            self.old.append(text)
        if kind != "-":
            self.new.append(text)
        self.kinds.append(kind)

    def freeze(self) -> UpdateFileChunk:
        return UpdateFileChunk(
            self.change_context, tuple(self.old), tuple(self.new), self.is_end_of_file, "".join(self.kinds)
        )


class _Update:
    def __init__(self, path: str, line_number: int) -> None:
        self.path = path
        self.line_number = line_number
        self.move_path: str | None = None
        self.chunks: list[_Chunk] = []

    def freeze(self) -> UpdateFile:
        return UpdateFile(self.path, self.move_path, tuple(chunk.freeze() for chunk in self.chunks))


class _Add:
    def __init__(self, path: str) -> None:
        self.path = path
        self.contents: list[str] = []

    def freeze(self) -> AddFile:
        return AddFile(self.path, "".join(self.contents))


class _Delete:
    def __init__(self, path: str) -> None:
        self.path = path

    def freeze(self) -> DeleteFile:
        return DeleteFile(self.path)


_UNEXPECTED_UPDATE_LINE = (
    "Unexpected line found in update hunk: '{}'. Every line should start with "
    "' ' (context line), '+' (added line), or '-' (removed line)"
)


class _Parser:
    """The original's line-at-a-time patch parser (a state machine over
    ``mode``: ``start``, ``patch``, ``add``, ``delete``, ``update``,
    ``ended``)."""

    def __init__(self) -> None:
        self.mode = "start"
        self.hunks: list[_Add | _Delete | _Update] = []
        self.environment_id: str | None = None
        self.line_number = 0

    def error(self, message: str, line_number: int | None = None) -> InvalidHunkError:
        return InvalidHunkError(message, self.line_number if line_number is None else line_number)

    def invalid_header(self, trimmed: str) -> InvalidHunkError:
        return self.error(
            f"'{trimmed}' is not a valid hunk header. Valid hunk headers: "
            "'*** Add File: {path}', '*** Delete File: {path}', '*** Update File: {path}'"
        )

    def line(self, line: str) -> None:
        trimmed = _trim(line)
        if self.mode == "start":
            if trimmed != BEGIN_PATCH_MARKER:
                raise InvalidPatchError("The first line of the patch must be '*** Begin Patch'")
            self.mode = "patch"
        elif self.mode == "patch":
            if trimmed.startswith(ENVIRONMENT_ID_MARKER):
                self.environment(trimmed)
            elif not self.header(trimmed):
                raise self.invalid_header(trimmed)
        elif self.mode == "add":
            if self.header(trimmed):
                return
            if not line.startswith("+"):
                raise self.invalid_header(trimmed)
            self.hunks[-1].contents.append(line[1:] + "\n")  # type: ignore[union-attr]
        elif self.mode == "delete":
            if not self.header(trimmed):
                raise self.invalid_header(trimmed)
        elif self.mode == "update":
            self.update_line(line)
        elif trimmed:
            raise InvalidPatchError("The last line of the patch must be '*** End Patch'")

    def environment(self, trimmed: str) -> None:
        if self.environment_id is not None:
            raise InvalidPatchError("apply_patch environment_id cannot be specified more than once")
        value = _trim(trimmed[len(ENVIRONMENT_ID_MARKER):])
        if not value:
            raise InvalidPatchError("apply_patch environment_id cannot be empty")
        self.environment_id = value

    def header(self, marker: str) -> bool:
        """Start a hunk, or end the patch, if ``marker`` says so."""
        if marker == END_PATCH_MARKER:
            self.end_patch(marker)
            return True
        for prefix, mode, hunk in (
            (ADD_FILE_MARKER, "add", _Add),
            (DELETE_FILE_MARKER, "delete", _Delete),
            (UPDATE_FILE_MARKER, "update", lambda path: _Update(path, self.line_number)),
        ):
            if marker.startswith(prefix):
                self.check_update_not_empty(marker)
                path = marker[len(prefix):]
                self.hunks.append(hunk(path))
                self.mode = mode
                return True
        return False

    def end_patch(self, marker: str) -> None:
        self.check_update_not_empty(marker)
        self.mode = "ended"

    def check_update_not_empty(self, marker: str) -> None:
        """An update hunk may not end without a chunk, or with an empty one."""
        hunk = self.hunks[-1] if self.hunks else None
        if not isinstance(hunk, _Update):
            return
        if not hunk.chunks and self.mode == "update":
            raise self.error(f"Update file hunk for path '{hunk.path}' is empty", hunk.line_number)
        if hunk.chunks and not hunk.chunks[-1].kinds:
            if marker == END_PATCH_MARKER:
                raise self.error("Update hunk does not contain any lines")
            raise self.error(_UNEXPECTED_UPDATE_LINE.format(marker))

    def update_line(self, line: str) -> None:
        marker = line.rstrip(_WHITESPACE)
        if self.header(marker):
            return
        hunk: _Update = self.hunks[-1]  # type: ignore[assignment]
        chunks = hunk.chunks
        last = chunks[-1] if chunks else None
        is_context_marker = marker == EMPTY_CHANGE_CONTEXT_MARKER or marker.startswith(CHANGE_CONTEXT_MARKER)
        if last is not None and last.is_end_of_file:
            if not marker:
                return
            if not is_context_marker:
                raise self.error(f"Expected update hunk to start with a @@ context marker, got: '{line}'")
        if not chunks and hunk.move_path is None and marker.startswith(MOVE_TO_MARKER):
            hunk.move_path = marker[len(MOVE_TO_MARKER):]
            return
        if is_context_marker:
            if last is not None and not last.kinds:
                raise self.error(_UNEXPECTED_UPDATE_LINE.format(line))
            context = None if marker == EMPTY_CHANGE_CONTEXT_MARKER else marker[len(CHANGE_CONTEXT_MARKER):]
            chunks.append(_Chunk(context))
            return
        if marker == EOF_MARKER:
            if last is None or not last.kinds:
                raise self.error("Update hunk does not contain any lines")
            last.is_end_of_file = True
            return
        kind = " " if line == "" else line[0]
        if kind not in " +-":
            if last is not None and last.kinds:
                raise self.error(f"Expected update hunk to start with a @@ context marker, got: '{line}'")
            raise self.error(_UNEXPECTED_UPDATE_LINE.format(line))
        if not chunks:
            chunks.append(_Chunk(None))
        chunks[-1].add(kind, line[1:])


# --- locating and replacing lines ---------------------------------------------------

_PUNCTUATION = str.maketrans(
    {
        **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212", "-"),
        **dict.fromkeys("\u2018\u2019\u201a\u201b", "'"),
        **dict.fromkeys("\u201c\u201d\u201e\u201f", '"'),
        **dict.fromkeys(
            "\u00a0\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000", " "
        ),
    }
)

_PASSES = (
    None,  # exact
    lambda s: s.rstrip(_WHITESPACE),
    _trim,
    lambda s: _trim(s).translate(_PUNCTUATION),
)


def _seek_sequence(lines: Sequence[str], pattern: Sequence[str], start: int, eof: bool) -> int | None:
    """Index of ``pattern`` in ``lines`` at or after ``start``, trying four
    passes of decreasing strictness: exact, trailing whitespace ignored,
    surrounding whitespace ignored, typographic punctuation and spaces read
    as ASCII. With ``eof`` only the position that ends the file is tried,
    and only if it is not before ``start``."""
    if not pattern:
        return start
    if len(pattern) > len(lines):
        return None
    first = max(start, len(lines) - len(pattern)) if eof else start
    width = len(pattern)
    for norm in _PASSES:
        have = lines if norm is None else [norm(line) for line in lines]
        want = list(pattern) if norm is None else [norm(line) for line in pattern]
        for i in range(first, len(lines) - width + 1):
            if have[i] == want[0] and list(have[i:i + width]) == want:
                return i
    return None


def _chunk_lines(chunk: UpdateFileChunk) -> list[tuple[str, str]]:
    """The chunk's lines as ``(kind, text)`` in patch order."""
    if not chunk.kinds:
        return [("-", t) for t in chunk.old_lines] + [("+", t) for t in chunk.new_lines]
    old, new = iter(chunk.old_lines), iter(chunk.new_lines)
    out = []
    for kind in chunk.kinds:
        text = next(new) if kind == "+" else next(old)
        if kind == " ":
            next(new)
        out.append((kind, text))
    return out


def _drop_final_newline_line(lines: list[tuple[str, str]], new_ends_empty: bool) -> list[tuple[str, str]]:
    """Drop the empty last old line, and the empty last new line if there is
    one: they stand for the file's final line break."""
    lines = list(lines)
    old_at = max(i for i, (kind, _) in enumerate(lines) if kind != "+")
    kind, text = lines[old_at]
    if kind == " " and not new_ends_empty:
        lines[old_at] = ("+", text)  # it stays on the new side
        return lines
    del lines[old_at]
    if new_ends_empty and kind == "-":
        del lines[max(i for i, (k, _) in enumerate(lines) if k != "-")]
    return lines


def _new_contents(original: str, path: str, chunks: Sequence[UpdateFileChunk]) -> str:
    """The file after ``chunks``.

    Lines are matched without their endings. A context line keeps the
    file's text and ending (the match may have been whitespace-lenient);
    written lines get the file's preferred ending, that of its first line
    break (``\n`` when it has none); the result always ends with a line
    break.
    """
    texts: list[str] = []
    endings: list[str | None] = []
    for line in original.split("\n")[:-1]:
        crlf = line.endswith("\r")
        texts.append(line[:-1] if crlf else line)
        endings.append("\r\n" if crlf else "\n")
    if original and not original.endswith("\n"):
        texts.append(original.rpartition("\n")[2])
        endings.append(None)
    preferred = endings[0] if endings and endings[0] else "\n"

    replacements: list[tuple[int, int, list[tuple[str, str]]]] = []
    line_index = 0
    for chunk in chunks:
        if chunk.change_context is not None:
            found = _seek_sequence(texts, [chunk.change_context], line_index, False)
            if found is None:
                raise ComputeReplacementsError(
                    f"Failed to find context '{chunk.change_context}' in {path}"
                )
            line_index = found + 1
        lines = _chunk_lines(chunk)
        if not chunk.old_lines:
            replacements.append((len(texts), 0, lines))
            continue
        pattern = chunk.old_lines
        found = _seek_sequence(texts, pattern, line_index, chunk.is_end_of_file)
        if found is None and pattern[-1] == "":
            # A trailing empty line stands for the file's final line break.
            pattern = pattern[:-1]
            lines = _drop_final_newline_line(lines, bool(chunk.new_lines) and chunk.new_lines[-1] == "")
            found = _seek_sequence(texts, pattern, line_index, chunk.is_end_of_file)
        if found is None:
            raise ComputeReplacementsError(
                f"Failed to find expected lines in {path}:\n" + "\n".join(chunk.old_lines)
            )
        replacements.append((found, len(pattern), lines))
        line_index = found + len(pattern)
    replacements.sort(key=lambda r: r[0])

    out: list[str] = []
    done = 0
    for at, old_len, lines in replacements:
        if at > done:
            out += [text + (ending or preferred) for text, ending in zip(texts[done:at], endings[done:at])]
            done = at
        old_at = at
        for kind, text in lines:
            if kind == "+":
                out.append(text + preferred)
                continue
            if kind == " " and old_at < len(texts):
                out.append(texts[old_at] + (endings[old_at] or preferred))
            old_at += 1
        done = max(done, at + old_len)
    out += [text + (ending or preferred) for text, ending in zip(texts[done:], endings[done:])]
    return "".join(out)


# --- unified diffs (the `similar` crate's format) -------------------------------------


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


def _git_diff(
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


# --- planning ---------------------------------------------------------------------------


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
                raise PatchIOError(context, _os_reason(OSError(errno.ENOENT, "")))
            return text
        try:
            st = os.stat(path)
            if not stat.S_ISREG(st.st_mode):
                raise PatchIOError(context, f"path `{path}` is not a file")
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise PatchIOError(context, _os_reason(exc)) from exc
        self.before.setdefault(path, _Snapshot(path, data, stat.S_IMODE(st.st_mode)))
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PatchIOError(context, _utf8_reason(exc)) from exc

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
            new = _new_contents(old, path, hunk.chunks)
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
            sections.append(_git_diff(display(path), left, display(right_path), right))
    return "".join(sections)


# --- applying ---------------------------------------------------------------------------


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
    symlink anywhere in a path (see :mod:`.patch_writer`). Under a sandboxed
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
    """The plan file for the sandboxed :mod:`.patch_writer` program."""
    return patch_writer.encode_plan(list(plan.writes), list(plan.removals), _before(plan))


def _before(plan: PatchPlan) -> dict[str, tuple[bytes | None, int | None]]:
    return {snap.path: (snap.data, snap.mode) for snap in plan.before}


# --- shell invocations ----------------------------------------------------------------------


class ApplyPatchInvocation(msgspec.Struct, frozen=True):
    """A shell command that is really an ``apply_patch`` call.

    ``workdir`` is the directory of a ``cd <dir> &&`` prefix: the patch's
    paths resolve against it (see :meth:`cwd`)."""

    patch: Patch
    workdir: str | None = None

    def cwd(self, cwd: str) -> str:
        """The directory the patch applies in, for a command run in ``cwd``."""
        return os.path.join(cwd, self.workdir) if self.workdir else cwd


def maybe_parse_apply_patch_invocation(argv: Sequence[str]) -> ApplyPatchInvocation | None:
    """Recognise the shell commands the original intercepts as
    ``apply_patch`` calls (from ``shell``, ``shell_command`` and
    ``exec_command``):

    * ``["apply_patch" | "applypatch", PATCH]``;
    * ``[SHELL, FLAG, SCRIPT]`` with ``bash``/``zsh``/``sh`` and ``-lc``/``-c``
      (``pwsh``/``powershell`` with ``-Command``, optionally after
      ``-NoProfile``; ``cmd`` with ``/c``), where SCRIPT is exactly
      ``apply_patch <<'EOF'`` … ``EOF`` (any delimiter, quoted or not),
      optionally after ``cd DIR &&``.

    Returns None for any other command (including a script with anything
    before or after that statement). Raises :class:`ParseError` when the
    patch in an invocation does not parse, and
    :class:`ImplicitInvocationError` for a bare patch body run as a
    command or script.
    """
    argv = list(argv)
    script = _shell_script(argv)
    bare = argv[0] if len(argv) == 1 else script
    if bare is not None and _is_patch(bare):
        raise ImplicitInvocationError()
    if len(argv) == 2 and argv[0] in APPLY_PATCH_COMMANDS:
        return ApplyPatchInvocation(parse_patch(argv[1]))
    if script is None:
        return None
    match = _HEREDOC_INVOCATION.fullmatch(script)
    if match is None:
        return None
    workdir = next((g for g in match.group("word", "dq", "sq") if g is not None), None)
    return ApplyPatchInvocation(parse_patch(match.group("body").rstrip("\n")), workdir)


def _is_patch(text: str) -> bool:
    try:
        parse_patch(text)
    except ParseError:
        return False
    return True


def _shell_name(shell: str) -> str:
    return PurePosixPath(shell).stem.lower()


def _shell_flag_ok(shell: str, flag: str) -> bool:
    name = _shell_name(shell)
    if name in ("bash", "zsh", "sh"):
        return flag in ("-lc", "-c")
    if name in ("pwsh", "powershell"):
        return flag.lower() == "-command"
    return name == "cmd" and flag.lower() == "/c"


def _shell_script(argv: list[str]) -> str | None:
    if len(argv) == 3 and _shell_flag_ok(argv[0], argv[1]):
        return argv[2]
    if (
        len(argv) == 4
        and _shell_name(argv[0]) in ("pwsh", "powershell")
        and argv[1].lower() == "-noprofile"
        and _shell_flag_ok(argv[0], argv[2])
    ):
        return argv[3]
    return None


# The one statement the original's tree-sitter query accepts: an optional
# `cd DIR &&` (DIR one word or quoted string), then `apply_patch` with no
# argument and a closed heredoc, and nothing else. Bash ends the heredoc at
# the first line that is its delimiter, hence the lookahead in the body.
_HEREDOC_INVOCATION = re.compile(
    r"""
    \s*
    (?: cd [ \t]+
        (?: (?P<word>[^\s;&|<>()'"`$\\]+) | "(?P<dq>[^"$`\\]*)" | '(?P<sq>[^']*)' )
        [ \t]* && [ \t]* )?
    (?:apply_patch|applypatch) [ \t]* << [ \t]*
    (?P<q>['"]?) (?P<delim>[A-Za-z0-9_.][A-Za-z0-9_.-]*) (?P=q) [ \t]* \n
    (?P<body>(?: (?!(?P=delim)(?:\n|\Z)) .*\n )*)
    (?P=delim) \s*
    """,
    re.VERBOSE,
)
