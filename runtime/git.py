"""What a new rollout records of the repository its thread works in, as the
original collects it (``collect_git_info``): the commit, the branch and the
``origin`` URL, from three git commands run at once, each bounded. Outside a
repository, without git, or past the bound, there is simply no git info."""

from __future__ import annotations

import subprocess

import trio

from .rollout import GitInfo

__all__ = ["GIT_TIMEOUT", "collect_git_info"]

#: How long each git command may take (the original's bound too).
GIT_TIMEOUT = 5.0


async def collect_git_info(cwd: str) -> GitInfo | None:
    """The repository at ``cwd``: None outside one."""
    found: dict[str, str] = {}

    async def git(key: str, *args: str) -> None:
        with trio.move_on_after(GIT_TIMEOUT):
            try:
                result = await trio.run_process(["git", *args], cwd=cwd, stdin=subprocess.DEVNULL,
                                                capture_stdout=True, capture_stderr=True, check=False,
                                                deliver_cancel=_kill)
            except OSError:  # no git, or cwd is gone
                return
            if result.returncode == 0 and (out := result.stdout.decode(errors="replace").strip()):
                found[key] = out

    async with trio.open_nursery() as nursery:
        nursery.start_soon(git, "sha", "rev-parse", "HEAD")
        nursery.start_soon(git, "branch", "rev-parse", "--abbrev-ref", "HEAD")
        nursery.start_soon(git, "url", "remote", "get-url", "origin")
    branch = found.get("branch")
    if branch == "HEAD":  # detached
        branch = None
    if "sha" not in found and branch is None:
        return None
    return GitInfo(commit_hash=found.get("sha"), branch=branch, repository_url=found.get("url"))


async def _kill(process: trio.Process) -> None:
    # A read-only git command: nothing to let it finish (trio's default
    # would send SIGTERM, then wait 5 s before SIGKILL).
    process.kill()
