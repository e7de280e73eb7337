"""Carry out the file operations of a planned patch: write every new file
(creating missing parent directories), then delete the removed ones; if an
operation fails, put back what was already changed and report the
original's message (``Failed to write file <path>`` …).

It runs two ways, as the original's apply_patch does:

- As a program inside the command sandbox (``python -I -S patch_writer.py
  PLAN``), for every sandboxed policy: the server's own writes then resolve
  paths exactly as a command's would, inside the sandbox's mount namespace,
  so a symlink (or a directory swapped for one at any moment) that leads
  out of the writable roots ends in ``EROFS`` rather than outside. Paths
  are followed (``follow_symlinks=True``), as a command follows them.
- In-process, from :func:`trio_codex.runtime.files.apply_patch.apply_plan`: with
  full access (following symlinks, as the original does there), and for the
  unsandboxed retry after a sandbox denial the user approved, where the
  original refuses any symlink on the way (``follow_symlinks=False``: every
  path is walked from ``/`` one directory descriptor at a time with
  ``O_NOFOLLOW``, so nothing swapped in can redirect the write).

Built-in modules only: the sandboxed run starts Python isolated and without
site-packages (``-I -S``), so it cannot import the rest of the package, and
every import would add to the time each sandboxed patch takes. The plan
travels as a file (:func:`encode_plan`), written by the server in a private
directory outside the writable roots, with the same Python reading it.
"""

from __future__ import annotations

import marshal
import os
import stat
import sys

__all__ = ["WriteError", "apply", "decode_plan", "encode_plan", "main", "open_parent"]

# A plan is ``(path, text)`` to write, ``(path, message)`` to delete (the
# message is the original's if the deletion fails), and each path's content
# before the patch (``None`` when there was no file) with its mode, for the
# restore. The annotations spell these out: a type alias would need an import.


class WriteError(Exception):
    """An operation failed and everything done before it was undone;
    ``str(error)`` is the original's message, the OS error the cause."""


def apply(writes: list[tuple[str, str]], removals: list[tuple[str, str]],
          before: dict[str, tuple[bytes | None, int | None]], *, follow_symlinks: bool = True) -> None:
    """Write ``writes`` in order, then delete ``removals``; on the first
    failure restore every path already touched (from ``before``), remove
    the directories made, and raise :class:`WriteError`."""
    fs: _Fs = _Fs() if follow_symlinks else _NoFollowFs()
    done: list[str] = []
    created: list[str] = []
    try:
        for path, text in writes:
            try:
                _make_parents(fs, path, created)
            except OSError as exc:
                raise WriteError(f"Failed to create parent directories for {path}") from exc
            done.append(path)  # before opening: a failed open may have truncated it
            try:
                fs.write(path, text.encode("utf-8"))
            except OSError as exc:
                raise WriteError(f"Failed to write file {path}") from exc
        for path, message in removals:
            try:
                fs.unlink(path)
            except OSError as exc:
                raise WriteError(message) from exc
            done.append(path)
    except WriteError:
        _restore(fs, [(p, *before.get(p, (None, None))) for p in reversed(done)], created)
        raise


def _make_parents(fs: _Fs, path: str, created: list[str]) -> None:
    """Create the missing parent directories of ``path``, outermost first,
    recording each in ``created``. A parent that exists but is not a
    directory is left for the write to fail on, as in the original."""
    missing = []
    parent = os.path.dirname(path)
    while parent and not fs.lexists(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
    for directory in reversed(missing):
        fs.mkdir(directory)
        created.append(directory)


def _restore(fs: _Fs, snapshots: list[tuple[str, bytes | None, int | None]], created: list[str]) -> None:
    """Best effort: put each path back as it was, then remove the
    directories the failed apply created."""
    for path, data, mode in snapshots:
        try:
            if data is None:
                if fs.is_file(path):  # never a symlink: one the write refused was there before
                    fs.unlink(path)
            else:
                fs.write(path, data, mode)
        except OSError:
            pass
    for directory in reversed(created):
        try:
            fs.rmdir(directory)
        except OSError:
            pass


def open_parent(path: str) -> tuple[int, str]:
    """A descriptor (``O_PATH``) of absolute ``path``'s directory, walked from
    ``/`` one component at a time with ``O_NOFOLLOW``, and its last
    component: a symlink anywhere on the way fails with ``ENOTDIR`` or
    ``ELOOP``, so an operation relative to the descriptor lands where the
    path led when it was checked. The caller closes the descriptor."""
    head, name = os.path.split(path)
    fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in head.split("/"):
            if part:
                parent, fd = fd, os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                         dir_fd=fd)
                os.close(parent)
    except OSError:
        os.close(fd)
        raise
    return fd, name


class _Fs:
    """Plain path operations: symlinks are followed wherever they are."""

    def lexists(self, path: str) -> bool:
        return os.path.lexists(path)

    def is_file(self, path: str) -> bool:
        """A regular file, not a symlink to one."""
        try:
            return stat.S_ISREG(os.lstat(path).st_mode)
        except OSError:
            return False

    def mkdir(self, path: str) -> None:
        os.mkdir(path)

    def rmdir(self, path: str) -> None:
        os.rmdir(path)

    def unlink(self, path: str) -> None:
        os.remove(path)

    def write(self, path: str, data: bytes, mode: int | None = None) -> None:
        self._write(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666), data, mode)

    @staticmethod
    def _write(fd: int, data: bytes, mode: int | None) -> None:
        with open(fd, "wb") as f:
            f.write(data)
            if mode is not None:
                os.fchmod(f.fileno(), mode)


class _NoFollowFs(_Fs):
    """Every path walked from ``/`` through directory descriptors opened
    with ``O_NOFOLLOW``: a symlink anywhere on the way fails the operation
    (``ENOTDIR``, or ``ELOOP`` for the last component)."""

    def _parent(self, path: str) -> tuple[int, str]:
        return open_parent(path)

    def _lstat(self, path: str) -> os.stat_result:
        fd, name = self._parent(path)
        try:
            return os.lstat(name, dir_fd=fd)
        finally:
            os.close(fd)

    def lexists(self, path: str) -> bool:
        try:
            self._lstat(path)
        except OSError:
            return False
        return True

    def is_file(self, path: str) -> bool:
        try:
            return stat.S_ISREG(self._lstat(path).st_mode)
        except OSError:
            return False

    def mkdir(self, path: str) -> None:
        fd, name = self._parent(path)
        try:
            os.mkdir(name, dir_fd=fd)
        finally:
            os.close(fd)

    def rmdir(self, path: str) -> None:
        fd, name = self._parent(path)
        try:
            os.rmdir(name, dir_fd=fd)
        finally:
            os.close(fd)

    def unlink(self, path: str) -> None:
        fd, name = self._parent(path)
        try:
            os.unlink(name, dir_fd=fd)
        finally:
            os.close(fd)

    def write(self, path: str, data: bytes, mode: int | None = None) -> None:
        fd, name = self._parent(path)
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
            self._write(os.open(name, flags, 0o666, dir_fd=fd), data, mode)
        finally:
            os.close(fd)


# --- the plan file ------------------------------------------------------------------


def encode_plan(writes: list[tuple[str, str]], removals: list[tuple[str, str]],
                before: dict[str, tuple[bytes | None, int | None]]) -> bytes:
    """The plan as the writer program reads it: :mod:`marshal`, which is
    built in (the program starts in a few milliseconds; ``json`` alone would
    triple that) and keeps bytes as bytes. Only the same Python reads it."""
    return marshal.dumps(([tuple(w) for w in writes], [tuple(r) for r in removals], dict(before)))


def decode_plan(data: bytes) -> tuple[list[tuple[str, str]], list[tuple[str, str]],
                                     dict[str, tuple[bytes | None, int | None]]]:
    writes, removals, before = marshal.loads(data)
    return writes, removals, before


def main(argv: list[str]) -> int:
    """``patch_writer.py PLAN``: apply the plan file; on failure print the
    original's message to stderr and exit 1."""
    if len(argv) != 1:
        print("usage: patch_writer.py PLAN", file=sys.stderr)
        return 2
    with open(argv[0], "rb") as f:
        writes, removals, before = decode_plan(f.read())
    try:
        apply(writes, removals, before)
    except WriteError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
