"""``fs/*`` and ``fuzzyFileSearch*``: the client's own file access and the
``@`` file mention. Paths stay ``str`` here: their check (absolute, as the
original's ``AbsolutePathBuf``) is runtime/files/fs_ops.py's, with the
original's error text."""

from __future__ import annotations

from ._base import Wire


class FsPathParams(Wire, frozen=True):
    """``fs/readFile``, ``fs/getMetadata``, ``fs/readDirectory``."""
    path: str


class FsWriteFileParams(Wire, frozen=True):
    path: str
    data_base64: str


class FsCreateDirectoryParams(Wire, frozen=True):
    path: str
    recursive: bool | None = None


class FsRemoveParams(Wire, frozen=True):
    path: str
    recursive: bool | None = None
    force: bool | None = None


class FsCopyParams(Wire, frozen=True):
    source_path: str
    destination_path: str
    recursive: bool = False


class FsWatchParams(Wire, frozen=True):
    path: str
    watch_id: str


class FsUnwatchParams(Wire, frozen=True):
    watch_id: str


class FuzzyFileSearchParams(Wire, frozen=True):
    query: str
    roots: list[str]
    cancellation_token: str | None = None


class FuzzySessionStartParams(Wire, frozen=True):
    session_id: str
    roots: list[str]


class FuzzySessionUpdateParams(Wire, frozen=True):
    session_id: str
    query: str


class FuzzySessionStopParams(Wire, frozen=True):
    session_id: str
