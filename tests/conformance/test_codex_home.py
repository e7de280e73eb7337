"""A new user's first minute: with no ``~/.codex`` the README's first command
works (CODEX_HOME is made as the original makes it), and a CODEX_HOME that
cannot be used stops every command at once with one line saying which path
and why, exit status 1, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from trio_codex.runtime import cli
from trio_codex.runtime.commands.sandbox import probe

TRIO_CODEX = str(Path(sys.executable).with_name("trio-codex"))
#: The README's first command, after the install.
FIRST = [TRIO_CODEX, "-c", "model_provider=scripted", "exec", "Hello from trio-codex"]
#: Every entry point, each with arguments that would otherwise run.
ENTRY_POINTS = {"app-server": [TRIO_CODEX, "app-server"], "exec": FIRST,
                "sandbox": [TRIO_CODEX, "sandbox", "linux", "true"]}


#: Where the README's commands run: the clone (exec, as the original's,
#: wants a git repository).
CLONE = Path(__file__).resolve().parents[2]


def run(argv: list[str], home: Path, codex_home: Path | None = None,
        prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """``argv`` with this HOME and CODEX_HOME (None: unset), from the
    clone."""
    env = {k: v for k, v in os.environ.items() if k not in ("CODEX_HOME", "TRIO_CODEX_LOG", "RUST_LOG")}
    env["HOME"] = str(home)
    if codex_home is not None:
        env["CODEX_HOME"] = str(codex_home)
    return subprocess.run([*prefix, *argv], env=env, cwd=CLONE, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)


def read_only(path: Path) -> tuple[str, ...]:
    """A command prefix under which ``path`` cannot be written: its mode
    for a user, a read-only bind mount (bubblewrap) for root, who ignores
    modes."""
    if os.geteuid() != 0:
        path.chmod(0o555)
        return ()
    status = probe()
    if not status.available:
        pytest.skip(f"root ignores file modes, and bubblewrap is unusable: {status.message}")
    return ("bwrap", "--bind", "/", "/", "--ro-bind", str(path), str(path), "--dev", "/dev", "--proc", "/proc")


def test_the_readmes_first_command_works_on_a_fresh_machine(tmp_path: Path) -> None:
    home = tmp_path / "empty-home"
    home.mkdir()
    done = run(FIRST, home)
    assert (done.returncode, done.stdout) == (0, "Hello from trio-codex\n"), done.stderr
    assert "Traceback" not in done.stderr and "Error" not in done.stderr
    made = home / ".codex"
    assert made.is_dir() and made.stat().st_mode & 0o777 == 0o777 & ~_umask()


def test_the_default_codex_home_is_made_for_every_entry_point(tmp_path: Path) -> None:
    for name, argv in ENTRY_POINTS.items():
        home = tmp_path / name
        home.mkdir()
        run(argv, home)
        assert (home / ".codex").is_dir(), name


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_a_read_only_codex_home_is_refused_at_start_with_one_line(tmp_path: Path, entry: str) -> None:
    codex_home = tmp_path / "codex-home"
    codex_home.mkdir()
    try:
        done = run(ENTRY_POINTS[entry], tmp_path, codex_home, read_only(codex_home))
    finally:
        codex_home.chmod(0o755)
    reason = "Read-only file system (os error 30)" if os.geteuid() == 0 else "Permission denied (os error 13)"
    assert done.returncode == 1
    assert done.stderr == (f"Error: failed to initialize sqlite state runtime under {codex_home}: failed to "
                           f"initialize state runtime at {codex_home}: {reason}\n")
    assert done.stdout == ""


@pytest.mark.parametrize("case", ["missing", "a file"])
def test_a_codex_home_that_is_not_a_directory_is_refused_with_the_originals_words(tmp_path: Path, case: str) -> None:
    codex_home = tmp_path / "codex-home"
    if case == "a file":
        codex_home.write_text("")
    for argv in ENTRY_POINTS.values():
        done = run(argv, tmp_path, codex_home)
        what = "does not exist" if case == "missing" else "is not a directory"
        assert (done.returncode, done.stderr) == (1, f'Error: CODEX_HOME points to "{codex_home}", but that path '
                                                     f"{what}\n")
    assert not codex_home.is_dir()


def test_a_default_codex_home_that_cannot_be_made_says_where_and_why(tmp_path: Path) -> None:
    home = tmp_path / "home-is-a-file"
    home.write_text("")
    done = run(FIRST, home)
    assert (done.returncode, done.stderr) == (1, (
        f"Error: failed to initialize sqlite state runtime under {home}/.codex: failed to initialize state "
        f"runtime at {home}/.codex: Not a directory (os error 20)\n"))


# -- unexpected errors at the top ----------------------------------------------


def test_an_unexpected_error_ends_a_command_with_one_line_and_status_1(capsys: pytest.CaptureFixture[str]) -> None:
    import trio

    try:
        trio.run(_fails)
    except BaseException as exc:  # what cli.main catches
        status = cli._unexpected(exc)
    assert status == 1
    assert capsys.readouterr().err == ("Error: unexpected ZeroDivisionError: division by zero "
                                       "(run with TRIO_CODEX_LOG=debug for the traceback)\n")


def test_with_debug_logging_the_traceback_comes_too(capsys: pytest.CaptureFixture[str]) -> None:
    from trio_codex.runtime.kernel.log import setup_logging

    setup_logging({"TRIO_CODEX_LOG": "debug"})
    try:
        status = cli._unexpected(ExceptionGroup("tasks", [ValueError("bad value")]))
    finally:
        setup_logging({})
    err = capsys.readouterr().err
    assert status == 1 and "| ValueError: bad value" in err
    assert err.splitlines()[-1] == "Error: unexpected ValueError: bad value"


def test_an_exit_or_an_interrupt_inside_a_group_keeps_its_meaning() -> None:
    assert cli._unexpected(BaseExceptionGroup("g", [ValueError("x"), SystemExit("listen failed")])) == "listen failed"
    assert cli._unexpected(BaseExceptionGroup("g", [BaseExceptionGroup("h", [KeyboardInterrupt()])])) == 130


async def _fails() -> None:
    import trio

    async def crash() -> None:
        1 / 0

    async with trio.open_nursery() as nursery:
        nursery.start_soon(crash)
        nursery.start_soon(trio.sleep_forever)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask

