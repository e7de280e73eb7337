"""What a new rollout records of the repository its thread works in: the
commit, the branch and the ``origin`` URL, the three things the original's
``collect_git_info`` asks git for.

Read from the repository's files rather than from three ``git`` processes:
a thread start then costs ~0.1 ms instead of ~6 ms of CPU (measured: 1.9 ms
in the server and 3.9 ms in the children per probe). What is read: ``.git``
found upwards from the cwd (a directory, or a ``gitdir:`` file as in
worktrees and submodules, with ``commondir``), ``HEAD``, the loose ref or
``packed-refs``, and ``url`` of ``[remote "origin"]`` in ``config``. What
git could still resolve beyond that (config includes, the reftable format,
``GIT_DIR`` in the environment) is reported as unknown, never guessed.
A repository is untrusted input (it may come from any archive): refs must
be well-formed names under ``refs/``, commits 40 or 64 hex digits, and only
regular files of bounded size are read.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import trio

from .rollout import GitInfo

__all__ = ["collect_git_info", "in_repository"]

#: HEAD, gitdir pointers and loose refs are a line each.
SMALL_FILE_LIMIT = 4096
#: packed-refs and config.
BIG_FILE_LIMIT = 4 * 1024 * 1024
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
#: A ref HEAD may name: under refs/, no empty or dot-dot component.
_REF = re.compile(r"refs/(?:[^/\x00-\x20~^:?*\[\\]+/)*[^/\x00-\x20~^:?*\[\\]+")
_SECTION = re.compile(r'^\s*\[\s*([^\s\]"]+)(?:\s+"((?:[^"\\]|\\.)*)")?\s*\]')
_KEY = re.compile(r"^\s*([A-Za-z][A-Za-z0-9-]*)\s*=\s*(.*)$")


def collect_git_info(cwd: str | Path) -> GitInfo | None:
    """The repository at or above ``cwd``: None outside one. Blocking file
    reads (a few small files): call it from a worker thread."""
    found = _git_dirs(Path(cwd))
    if found is None:
        return None
    git_dir, common = found
    head = _read(git_dir / "HEAD")
    if head is None:
        return None
    branch = sha = None
    if head.startswith("ref:"):
        ref = head[4:].strip()
        if _REF.fullmatch(ref) and ".." not in ref.split("/"):
            branch = ref.removeprefix("refs/heads/")
            sha = _resolve(git_dir, common, ref)
    elif _SHA.fullmatch(head):
        sha = head  # detached
    if sha is None:
        branch = None  # an unborn branch: git names no branch before the first commit
    return GitInfo(commit_hash=sha, branch=branch, repository_url=_origin_url(common / "config"))


def _git_dirs(cwd: Path) -> tuple[Path, Path] | None:
    """The git dir of the repository holding ``cwd``, and its common dir."""
    for directory in (cwd, *cwd.parents):
        dot_git = directory / ".git"
        if dot_git.is_dir():
            git_dir = dot_git
        elif dot_git.is_file():
            pointer = _read(dot_git)
            if pointer is None or not pointer.startswith("gitdir:"):
                return None
            git_dir = (directory / pointer[7:].strip()).resolve()
        else:
            continue
        common = _read(git_dir / "commondir")
        return git_dir, (git_dir / common).resolve() if common else git_dir
    return None


def _resolve(git_dir: Path, common: Path, ref: str) -> str | None:
    for base in (git_dir, common):
        sha = _read(base / ref)
        if sha is not None:
            return sha if _SHA.fullmatch(sha) else None
    packed = _read(common / "packed-refs", limit=BIG_FILE_LIMIT) or ""
    for line in packed.splitlines():
        sha, _, name = line.partition(" ")
        if name == ref and _SHA.fullmatch(sha):
            return sha
    return None


def _origin_url(config: Path) -> str | None:
    text = _read(config, limit=BIG_FILE_LIMIT)
    if text is None:
        return None
    in_origin = False
    for line in text.splitlines():
        if section := _SECTION.match(line):
            in_origin = section.group(1).lower() == "remote" and section.group(2) == "origin"
        elif in_origin and (key := _KEY.match(line)) and key.group(1).lower() == "url":
            value = key.group(2).strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            return value or None
    return None


def _read(path: Path, limit: int = SMALL_FILE_LIMIT) -> str | None:
    """A regular file's text, stripped; None for anything else (missing, a
    FIFO or device that a crafted repository points at, or too big)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except (OSError, ValueError):
        return None
    with os.fdopen(fd, "rb") as f:
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
                return None
            return f.read(limit).decode("utf-8", errors="replace").strip()
        except OSError:
            return None


def in_repository(cwd: str | Path) -> bool:
    """Whether ``cwd`` is inside a Git repository (a ``.git`` upwards)."""
    return _git_dirs(Path(cwd)) is not None


#: How long ``git merge-base`` may take before a review goes on without it.
MERGE_BASE_TIMEOUT = 5.0


async def merge_base(cwd: str, branch: str) -> str | None:
    """The merge base of HEAD and ``branch`` in ``cwd`` (``review/start``
    against a base branch), or None when git cannot tell (no repository, no
    such branch, too slow)."""
    with trio.move_on_after(MERGE_BASE_TIMEOUT):
        try:
            done = await trio.run_process(["git", "merge-base", "HEAD", branch], cwd=cwd, capture_stdout=True,
                                          capture_stderr=True, check=False, stdin=subprocess.DEVNULL)
        except OSError:
            return None
        sha = done.stdout.decode("utf-8", "replace").strip()
        return sha if done.returncode == 0 and sha else None
    return None
