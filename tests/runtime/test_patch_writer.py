"""The patch writer on real files: the plan file round trip, the program
as the sandbox runs it (``python -I -S``), and the no-follow mode of the
unsandboxed retry, which refuses a symlink anywhere in a path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from trio_codex.runtime.files import patch_writer
from trio_codex.runtime.files.apply_patch import PatchWriteError, parse_patch, plan_patch, write_plan, writer_input


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "victim").write_text("original\n")
    return folder


@pytest.fixture
def ws(tmp_path: Path, outside: Path) -> Path:
    folder = tmp_path / "ws"
    folder.mkdir()
    (folder / "outlink").symlink_to(outside)
    (folder / "victim-link").symlink_to(outside / "victim")
    (folder / "inner").mkdir()
    (folder / "inlink").symlink_to(folder / "inner")
    return folder


def plan(ws: Path, *body: str):
    return plan_patch(parse_patch("\n".join(["*** Begin Patch", *body, "*** End Patch"])), ws)


def run_program(plan_file: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-I", "-S", patch_writer.__file__, str(plan_file)],
                          capture_output=True, text=True, timeout=30, check=False)


def test_the_program_applies_a_plan_file_with_only_the_standard_library(ws: Path, tmp_path: Path) -> None:
    (ws / "keep.txt").write_text("old\n")
    (ws / "gone.txt").write_text("bye\n")
    planned = plan(ws, "*** Add File: new/dir/n.txt", "+n", "*** Update File: keep.txt", "@@", "-old", "+new",
                   "*** Delete File: gone.txt")
    plan_file = tmp_path / "plan.json"
    plan_file.write_bytes(writer_input(planned))
    done = run_program(plan_file)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert (ws / "new" / "dir" / "n.txt").read_text() == "n\n"
    assert (ws / "keep.txt").read_text() == "new\n" and not (ws / "gone.txt").exists()


def test_the_program_reports_the_original_message_and_restores_what_it_wrote(ws: Path, tmp_path: Path) -> None:
    (ws / "a.txt").write_bytes(b"a\n")
    (ws / "f").write_text("a file, not a folder\n")
    planned = plan(ws, "*** Update File: a.txt", "@@", "-a", "+A", "*** Add File: f/sub.txt", "+x")
    plan_file = tmp_path / "plan.json"
    plan_file.write_bytes(writer_input(planned))
    done = run_program(plan_file)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == f"Failed to write file {ws / 'f' / 'sub.txt'}\n"
    assert (ws / "a.txt").read_bytes() == b"a\n"


def test_the_plan_file_keeps_contents_that_are_not_utf8() -> None:
    before = {"/x/bin": (b"\xff\x00\xfe", 0o600), "/x/new": (None, None)}
    writes = [("/x/new", "text é\n")]
    removals = [("/x/bin", "Failed to delete file /x/bin")]
    assert patch_writer.decode_plan(patch_writer.encode_plan(writes, removals, before)) == (writes, removals, before)


def test_following_symlinks_writes_where_they_lead(ws: Path, outside: Path) -> None:
    # Full access writes through symlinks, as the original does; a sandbox
    # is what stops them there.
    write_plan(plan(ws, "*** Add File: outlink/x", "+x", "*** Add File: inlink/y", "+y"))
    assert (outside / "x").read_text() == "x\n" and (ws / "inner" / "y").read_text() == "y\n"


@pytest.mark.parametrize("body, failed", [
    (("*** Add File: outlink/x", "+pwned"), "outlink/x"),
    (("*** Update File: victim-link", "@@", "-original", "+pwned"), "victim-link"),
    (("*** Add File: inlink/y", "+even inside"), "inlink/y"),
    (("*** Add File: outlink/deeper/x", "+pwned"), "outlink/deeper/x"),
])
def test_without_following_symlinks_no_path_through_one_is_written(
        ws: Path, outside: Path, body: tuple[str, ...], failed: str) -> None:
    (ws / "first.txt").write_text("first\n")
    planned = plan(ws, "*** Update File: first.txt", "@@", "-first", "+changed", *body)
    with pytest.raises(PatchWriteError) as err:
        write_plan(planned, follow_symlinks=False)
    message = str(err.value)
    assert message in (f"Failed to write file {ws / failed}", f"Failed to create parent directories for {ws / failed}")
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]
    assert (outside / "victim").read_text() == "original\n"
    assert (ws / "first.txt").read_text() == "first\n"
    assert list((ws / "inner").iterdir()) == []


def test_without_following_symlinks_plain_paths_are_written_deleted_and_moved(ws: Path) -> None:
    (ws / "keep.txt").write_text("old\n")
    (ws / "move_me.txt").write_text("a\n")
    (ws / "gone.txt").write_text("bye\n")
    summary = write_plan(plan(ws, "*** Add File: new/dir/n.txt", "+n", "*** Update File: keep.txt", "@@", "-old",
                              "+new", "*** Update File: move_me.txt", "*** Move to: moved.txt", "@@", "-a", "+b",
                              "*** Delete File: gone.txt"), follow_symlinks=False)
    assert summary.startswith("Success. Updated the following files:\nA new/dir/n.txt\n")
    assert (ws / "new" / "dir" / "n.txt").read_text() == "n\n" and (ws / "keep.txt").read_text() == "new\n"
    assert (ws / "moved.txt").read_text() == "b\n" and not (ws / "move_me.txt").exists()
    assert not (ws / "gone.txt").exists()


def test_a_symlink_the_write_refused_is_left_in_place(ws: Path, tmp_path: Path) -> None:
    # The restore removes files the patch created, never a link that was there.
    (ws / "first.txt").write_text("first\n")
    (ws / "dirlink").symlink_to(ws / "inner")
    planned = plan(ws, "*** Update File: first.txt", "@@", "-first", "+changed", "*** Add File: dirlink", "+x")
    with pytest.raises(PatchWriteError, match="^Failed to write file .*/dirlink$"):
        write_plan(planned, follow_symlinks=False)
    assert (ws / "dirlink").is_symlink() and (ws / "first.txt").read_text() == "first\n"
