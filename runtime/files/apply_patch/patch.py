"""The patch as data: its markers, its hunks and the errors of every stage,
with Rust's definitions of ``trim`` and ``lines`` the grammar uses."""

from __future__ import annotations

import os
from typing import TypeAlias

import msgspec

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
WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def trim(s: str) -> str:
    return s.strip(WHITESPACE)


def rust_lines(s: str) -> list[str]:
    """Rust's ``str::lines``: split on ``\\n``, drop one ``\\r`` before it, no
    empty last line for a trailing newline."""
    lines = s.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]




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


def os_reason(exc: OSError) -> str:
    if exc.errno is None:
        return str(exc)
    return f"{os.strerror(exc.errno)} (os error {exc.errno})"


def utf8_reason(exc: UnicodeDecodeError) -> str:
    if exc.reason == "unexpected end of data":
        return f"incomplete utf-8 byte sequence from index {exc.start}"
    return f"invalid utf-8 sequence of {exc.end - exc.start} bytes from index {exc.start}"
