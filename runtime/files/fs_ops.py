"""The blocking file operations behind ``fs/*`` (run off the trio thread by
actors/connection/fs_requests.py), answered as the original 0.169's ``fs_api``.

What a client reaches, as the original (traced): any **absolute** path the
server's user may reach, whatever the thread's sandbox (the client is the
user's own IDE or UI, not the model); a relative path is refused as the
original's ``AbsolutePathBuf`` refuses it; ``..`` and ``.`` are folded
lexically first. What we add (issue 11), with no change to what is
reachable: every write, creation, removal and copy target is resolved once
(symlinks followed where the original follows them: a file written through
a symlink, a symlink removed rather than its target) and then carried out
relative to directory descriptors walked from ``/`` with ``O_NOFOLLOW``
(:func:`~.patch_writer.open_parent`), so a symlink swapped in between the
resolution and the write fails the request (``ENOTDIR``/``ELOOP``) instead
of redirecting it.

Errors as the original's: I/O errors are -32603 with Rust's wording
(``No such file or directory (os error 2)``); its own checks are -32600.
"""

from __future__ import annotations

import base64
import binascii
import errno
import os
import shutil
import stat
from collections.abc import Callable

from .patch_writer import open_parent
from ..protocol.jsonrpc import JsonRpcError, internal_error, invalid_request

#: The original's bound on ``fs/readFile`` (its message names it).
READ_LIMIT = 512 * 1024 * 1024
_COPY_CHUNK = 1024 * 1024
_NO_BASE = "Invalid request: AbsolutePathBuf deserialized without a base path"


def io_error(exc: OSError) -> JsonRpcError:
    """An OS error as the original words it (Rust's ``io::Error`` display)."""
    if exc.errno is None:
        return internal_error(str(exc))
    return internal_error(f"{os.strerror(exc.errno)} (os error {exc.errno})")


def absolute(path: str) -> str:
    """``path`` as the original's ``AbsolutePathBuf``: absolute, with ``.``
    dropped and ``..`` folded lexically (``/..`` stays ``/``)."""
    if not path.startswith("/"):
        raise invalid_request(_NO_BASE)
    if "\x00" in path:
        raise invalid_request("file name contained an unexpected NUL byte")
    parts: list[str] = []
    for part in path.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part and part != ".":
            parts.append(part)
    return "/" + "/".join(parts)


def _through_links(path: str) -> str:
    """Where a write to ``path`` lands: every symlink followed, the final
    one too (the original writes through it)."""
    return os.path.realpath(path)


def _the_entry(path: str) -> str:
    """``path`` with its directory resolved and its last component kept: an
    operation on the entry itself (a symlink is removed, not its target)."""
    head, name = os.path.split(path)
    return os.path.join(os.path.realpath(head), name) if name else path


def read_file(path: str) -> dict:
    try:
        # O_NONBLOCK: a FIFO must not hang the open; it is then refused.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise io_error(exc) from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise invalid_request(f"path `{path}` is not a file")
    with open(fd, "rb") as f:
        too_large = invalid_request(f"file is too large to read: limit is {READ_LIMIT} bytes")
        if info.st_size > READ_LIMIT:
            raise too_large
        try:
            data = f.read(READ_LIMIT + 1)
        except OSError as exc:
            raise io_error(exc) from None
        if len(data) > READ_LIMIT:  # it grew while being read
            raise too_large
    return {"dataBase64": base64.b64encode(data).decode()}


def decode_data(data_base64: str) -> bytes:
    """``dataBase64`` decoded as the original's strict decoder takes it."""
    try:
        return base64.b64decode(data_base64, validate=True)
    except (binascii.Error, ValueError):
        raise invalid_request(f"fs/writeFile requires valid base64 dataBase64: {_b64_reason(data_base64)}") from None


_B64_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


def _b64_reason(text: str) -> str:
    """The original's (the base64 crate's) reason for a refused input."""
    raw = text.encode()
    body = raw.rstrip(b"=")
    for offset, byte in enumerate(body):
        if byte not in _B64_ALPHABET:
            return f"Invalid symbol {byte}, offset {offset}."
    return "Invalid padding"


def write_file(path: str, data: bytes) -> dict:
    return write_resolved(_through_links(path), data)


def write_resolved(target: str, data: bytes) -> dict:
    """Write ``data`` at ``target``, a path already resolved: a symlink
    found on the way now fails the write instead of being followed."""
    if target == "/":
        raise io_error(IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR)))
    try:
        fd, name = open_parent(target)
        try:
            out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666,
                          dir_fd=fd)
        finally:
            os.close(fd)
        with open(out, "wb") as f:
            f.write(data)
    except OSError as exc:
        raise io_error(exc) from None
    return {}


def create_directory(path: str, recursive: bool) -> dict:
    target = _through_links(path)
    try:
        if not recursive:
            _mkdir(target)
            return {}
        parts = [p for p in target.split("/") if p]
        for depth in range(1, len(parts) + 1):
            prefix = "/" + "/".join(parts[:depth])
            try:
                _mkdir(prefix)
            except FileExistsError:
                # Below a file, the next step fails with ENOTDIR, as the original's.
                if depth == len(parts) and not stat.S_ISDIR(os.stat(prefix).st_mode):
                    raise
    except OSError as exc:
        raise io_error(exc) from None
    return {}


def _mkdir(path: str) -> None:
    fd, name = open_parent(path)
    try:
        os.mkdir(name, dir_fd=fd)
    finally:
        os.close(fd)


def get_metadata(path: str) -> dict:
    try:
        info = os.stat(path)
        is_link = stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError as exc:
        raise io_error(exc) from None
    birth = getattr(info, "st_birthtime", None)
    return {"isDirectory": stat.S_ISDIR(info.st_mode), "isFile": stat.S_ISREG(info.st_mode),
            "isSymlink": is_link, "createdAtMs": int(birth * 1000) if birth else 0,
            "modifiedAtMs": info.st_mtime_ns // 1_000_000}


def read_directory(path: str, limit: int) -> dict:
    """The entries (not ``.``/``..``), each with where it leads; at most
    ``limit`` of them, so one request cannot take unbounded memory."""
    entries: list[dict[str, str | bool]] = []
    try:
        with os.scandir(path) as it:
            for entry in it:
                if len(entries) >= limit:
                    raise invalid_request(f"directory has more than {limit} entries: {path}")
                entries.append({"fileName": entry.name, "isDirectory": _safe(entry.is_dir),
                                "isFile": _safe(entry.is_file)})
    except OSError as exc:
        raise io_error(exc) from None
    return {"entries": entries}


def _safe(check: Callable[[], bool]) -> bool:
    try:
        return bool(check())
    except OSError:
        return False


def remove(path: str, recursive: bool, force: bool) -> dict:
    if path == "/":
        raise io_error(OSError(errno.EBUSY, os.strerror(errno.EBUSY)))
    target = _the_entry(path)
    try:
        fd, name = open_parent(target)
    except FileNotFoundError:
        if force:
            return {}
        raise io_error(FileNotFoundError(2, os.strerror(2))) from None
    except OSError as exc:
        raise io_error(exc) from None
    try:
        info = os.lstat(name, dir_fd=fd)
        if stat.S_ISDIR(info.st_mode):
            if recursive:
                shutil.rmtree(name, dir_fd=fd)
            else:
                os.rmdir(name, dir_fd=fd)
        else:
            os.unlink(name, dir_fd=fd)
    except FileNotFoundError as exc:
        if not force:
            raise io_error(exc) from None
    except OSError as exc:
        raise io_error(exc) from None
    finally:
        os.close(fd)
    return {}


def copy(source: str, destination: str, recursive: bool) -> dict:
    try:
        info = os.lstat(source)
        if stat.S_ISDIR(info.st_mode):
            if not recursive:
                raise invalid_request("fs/copy requires recursive: true when sourcePath is a directory")
            real_source = os.path.realpath(source, strict=True)
            target = _through_links(destination)
            if target == real_source or target.startswith(real_source.rstrip("/") + "/"):
                raise invalid_request("fs/copy cannot copy a directory to itself or one of its descendants")
            _copy_tree(source, target)
        elif stat.S_ISLNK(info.st_mode):
            _copy_link(source, _the_entry(destination))
        elif stat.S_ISREG(info.st_mode):
            _copy_file(source, _through_links(destination))
        else:
            raise invalid_request("fs/copy only supports regular files, directories, and symlinks")
    except OSError as exc:
        raise io_error(exc) from None
    return {}


def _copy_tree(source: str, target: str) -> None:
    """As the original: directories, files and symlinks; other special
    files are skipped."""
    create_directory(target, True)
    with os.scandir(source) as it:
        for entry in it:
            src, dst = entry.path, os.path.join(target, entry.name)
            if entry.is_dir(follow_symlinks=False):
                _copy_tree(src, dst)
            elif entry.is_file(follow_symlinks=False):
                _copy_file(src, dst)
            elif entry.is_symlink():
                _copy_link(src, dst)


def _copy_file(source: str, target: str) -> None:
    with open(source, "rb") as src:
        mode = stat.S_IMODE(os.fstat(src.fileno()).st_mode)
        fd, name = open_parent(target)
        try:
            out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, mode,
                          dir_fd=fd)
        finally:
            os.close(fd)
        with open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, _COPY_CHUNK)
            os.fchmod(dst.fileno(), mode)


def _copy_link(source: str, target: str) -> None:
    link = os.readlink(source)
    fd, name = open_parent(target)
    try:
        os.symlink(link, name, dir_fd=fd)
    finally:
        os.close(fd)
