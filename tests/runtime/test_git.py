"""The cwd's git info read from the repository's files, against what the
git command line says of the same repositories."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from trio_codex.runtime.persistence.git import collect_git_info
from trio_codex.runtime.persistence.rollout import GitInfo

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")

URL = "https://github.com/example/repo.git"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=cwd,
                          check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "feature-x")
    git(repo, "commit", "-q", "--allow-empty", "-m", "first")
    git(repo, "remote", "add", "origin", URL)
    (repo / "sub" / "dir").mkdir(parents=True)
    return repo


def test_a_repository_from_its_root_or_below(repo: Path) -> None:
    expected = GitInfo(commit_hash=git(repo, "rev-parse", "HEAD"), branch="feature-x", repository_url=URL)
    assert collect_git_info(repo) == expected
    assert collect_git_info(repo / "sub" / "dir") == expected


def test_packed_refs_and_a_detached_head(repo: Path) -> None:
    git(repo, "pack-refs", "--all")
    sha = git(repo, "rev-parse", "HEAD")
    assert not (repo / ".git" / "refs" / "heads" / "feature-x").exists()
    assert collect_git_info(repo) == GitInfo(commit_hash=sha, branch="feature-x", repository_url=URL)
    git(repo, "checkout", "-q", "--detach")
    assert collect_git_info(repo) == GitInfo(commit_hash=sha, branch=None, repository_url=URL)


def test_a_worktree_reads_its_own_head_and_the_shared_config(repo: Path, tmp_path: Path) -> None:
    git(repo, "commit", "-q", "--allow-empty", "-m", "second")
    git(repo, "worktree", "add", "-q", "-b", "other", str(tmp_path / "wt"), "HEAD~1")
    assert collect_git_info(tmp_path / "wt") == GitInfo(
        commit_hash=git(tmp_path / "wt", "rev-parse", "HEAD"), branch="other", repository_url=URL)


def test_no_commit_no_origin_and_no_repository(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    git(fresh, "init", "-q", "-b", "main")
    assert collect_git_info(fresh) == GitInfo()  # as git: no commit, so no branch either
    (fresh / ".git" / "config").write_text(
        (fresh / ".git" / "config").read_text() + '[remote "upstream"]\n\turl = x\n[remote "origin"]\n\turl = "q"\n')
    assert collect_git_info(fresh).repository_url == "q"
    plain = tmp_path / "plain"
    plain.mkdir()
    if collect_git_info(tmp_path) is None:  # tmp_path itself may sit inside a repository
        assert collect_git_info(plain) is None


def test_a_crafted_repository_yields_nothing_it_should_not(tmp_path: Path) -> None:
    """A repository is untrusted input: HEAD naming a file outside refs/, a
    ref that is no commit, or a FIFO must give no info, not a leak or a hang."""
    repo = tmp_path / "crafted"
    (repo / ".git" / "refs" / "heads").mkdir(parents=True)
    (tmp_path / "secret.txt").write_text("TOPSECRET\n")
    head = repo / ".git" / "HEAD"
    head.write_text("ref: ../../secret.txt\n")
    assert collect_git_info(repo) == GitInfo()
    head.write_text("ref: refs/heads/../../../secret.txt\n")
    assert collect_git_info(repo) == GitInfo()
    head.write_text("ref: refs/heads/main\n")
    (repo / ".git" / "refs" / "heads" / "main").write_text("")
    assert collect_git_info(repo) == GitInfo()
    (repo / ".git" / "refs" / "heads" / "main").write_text("TOPSECRET\n")
    assert collect_git_info(repo) == GitInfo()
    (repo / ".git" / "refs" / "heads" / "main").unlink()
    os.mkfifo(repo / ".git" / "refs" / "heads" / "main")  # reading it would block forever
    assert collect_git_info(repo) == GitInfo()
