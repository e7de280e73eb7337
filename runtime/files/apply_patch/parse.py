"""Patch text to a :class:`~.patch.Patch` (``parser.rs``): no I/O; the
messages are the original's, byte for byte."""

from __future__ import annotations

from .patch import (
    ADD_FILE_MARKER,
    BEGIN_PATCH_MARKER,
    CHANGE_CONTEXT_MARKER,
    DELETE_FILE_MARKER,
    EMPTY_CHANGE_CONTEXT_MARKER,
    END_PATCH_MARKER,
    ENVIRONMENT_ID_MARKER,
    EOF_MARKER,
    MOVE_TO_MARKER,
    UPDATE_FILE_MARKER,
    WHITESPACE,
    AddFile,
    DeleteFile,
    InvalidHunkError,
    InvalidPatchError,
    Patch,
    UpdateFile,
    UpdateFileChunk,
    rust_lines,
    trim,
)


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
    lines = rust_lines(trim(text))
    if (
        len(lines) >= 4
        and lines[0] in ("<<EOF", "<<'EOF'", '<<"EOF"')
        and lines[-1].endswith("EOF")
    ):
        lines = lines[1:-1]
    parser = _Parser()
    for number, line in enumerate(lines, 1):
        parser.line_number = number
        if number == len(lines) and trim(line) == END_PATCH_MARKER:
            parser.end_patch(trim(line))
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
        trimmed = trim(line)
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
            hunk = self.hunks[-1]
            assert isinstance(hunk, _Add)  # mode "add" follows an add header
            hunk.contents.append(line[1:] + "\n")
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
        value = trim(trimmed[len(ENVIRONMENT_ID_MARKER):])
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
                self.hunks.append(hunk(marker[len(prefix):]))
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
        marker = line.rstrip(WHITESPACE)
        if self.header(marker):
            return
        hunk = self.hunks[-1]
        assert isinstance(hunk, _Update)  # mode "update" follows an update header
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
