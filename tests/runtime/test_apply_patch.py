"""apply_patch: parse, plan and apply on real files (tmp_path).

Expected texts and results are the original's (codex-cli 0.169.0), as it
words and applies the same patches.
"""

from __future__ import annotations

import hashlib
import os
import stat

import pytest

from trio_codex.runtime.files.apply_patch import (
    AddFile,
    ApplyPatchError,
    ApplyPatchInvocation,
    ComputeReplacementsError,
    DeleteFile,
    ImplicitInvocationError,
    InvalidHunkError,
    InvalidPatchError,
    PatchIOError,
    PatchWriteError,
    UpdateFile,
    UpdateFileChunk,
    apply_plan,
    maybe_parse_apply_patch_invocation,
    parse_patch,
    plan_patch,
    unified_diff,
)
from trio_codex.runtime.protocol.v2.item import FileUpdateChange, PatchChangeKind


def patch(*body: str) -> str:
    return "\n".join(["*** Begin Patch", *body, "*** End Patch"])


def write(root, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode())


def tree(root) -> dict[str, str]:
    return {
        str(p.relative_to(root)): p.read_bytes().decode()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def run(root, text: str) -> str:
    return apply_plan(plan_patch(parse_patch(text), root))


# --- parsing ---------------------------------------------------------------------


def test_parse_every_kind_of_hunk():
    parsed = parse_patch(
        patch(
            "*** Add File: path/add.py",
            "+abc",
            "+def",
            "*** Delete File: path/delete.py",
            "*** Update File: path/update.py",
            "*** Move to: path/update2.py",
            "@@ def f():",
            "-    pass",
            "+    return 123",
        )
    )
    assert parsed.hunks == (
        AddFile("path/add.py", "abc\ndef\n"),
        DeleteFile("path/delete.py"),
        UpdateFile(
            "path/update.py",
            "path/update2.py",
            (UpdateFileChunk("def f():", ("    pass",), ("    return 123",), False, "-+"),),
        ),
    )


def test_parse_chunk_lines_context_markers_and_end_of_file():
    (hunk,) = parse_patch(
        patch("*** Update File: f", "@@ ctx", "", " context", "-remove", "+add", " context2", "@@", "+line", "*** End of File")
    ).hunks
    assert hunk.chunks == (
        UpdateFileChunk("ctx", ("", "context", "remove", "context2"), ("", "context", "add", "context2"), False, "  -+ "),
        UpdateFileChunk(None, (), ("line",), True, "+"),
    )


def test_parse_is_lenient_like_the_original():
    # Padding around markers, a first chunk without @@, a CRLF patch.
    text = "\n  *** Begin Patch  \r\n   *** Update File: a.txt\r\n import foo\r\n+bar\r\n  *** End Patch  \n\n"
    (hunk,) = parse_patch(text).hunks
    assert hunk == UpdateFile("a.txt", None, (UpdateFileChunk(None, ("import foo",), ("import foo", "bar"), False, " +"),))
    # `@@ ` with only trailing space is `@@`; trailing space after context is dropped.
    (hunk,) = parse_patch(patch("*** Update File: a", "@@ ", "-x", "@@ end  ", "-y")).hunks
    assert [c.change_context for c in hunk.chunks] == [None, "end"]


@pytest.mark.parametrize("opener", ["<<EOF", "<<'EOF'", '<<"EOF"'])
def test_parse_strips_a_heredoc_wrapper(opener):
    body = patch("*** Add File: h.txt", "+hi")
    parsed = parse_patch(f"{opener}\n{body}\nEOF\n")
    assert parsed.hunks == (AddFile("h.txt", "hi\n"),)
    assert parsed.text == body


def test_heredoc_line_numbers_count_from_the_patch():
    with pytest.raises(InvalidHunkError) as err:
        parse_patch("<<'EOF'\n" + patch("*** Frob") + "\nEOF")
    assert err.value.line_number == 2


def test_environment_id_line():
    assert parse_patch(patch("*** Environment ID: remote", "*** Add File: a", "+x")).environment_id == "remote"
    with pytest.raises(InvalidPatchError, match=r"^invalid patch: apply_patch environment_id cannot be empty$"):
        parse_patch(patch("*** Environment ID:   ", "*** Add File: a", "+x"))
    with pytest.raises(InvalidPatchError, match="cannot be specified more than once"):
        parse_patch(patch("*** Environment ID: a", "*** Environment ID: b", "*** Add File: a", "+x"))


HEADERS = "Valid hunk headers: '*** Add File: {path}', '*** Delete File: {path}', '*** Update File: {path}'"
UNEXPECTED = "Every line should start with ' ' (context line), '+' (added line), or '-' (removed line)"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("bad", "invalid patch: The first line of the patch must be '*** Begin Patch'"),
        ("", "invalid patch: The last line of the patch must be '*** End Patch'"),
        ("*** Begin Patch\n*** Add File: a\n+x", "invalid patch: The last line of the patch must be '*** End Patch'"),
        (patch("*** Add File: a", "+x") + "\ngarbage", "invalid patch: The last line of the patch must be '*** End Patch'"),
        (patch("*** Frobnicate: x"), f"invalid hunk at line 2, '*** Frobnicate: x' is not a valid hunk header. {HEADERS}"),
        (patch("", "*** Add File: a", "+x"), f"invalid hunk at line 2, '' is not a valid hunk header. {HEADERS}"),
        (patch("*** Add File: a", "+x", "foo"), f"invalid hunk at line 4, 'foo' is not a valid hunk header. {HEADERS}"),
        (patch("*** Delete File: a", "+x"), f"invalid hunk at line 3, '+x' is not a valid hunk header. {HEADERS}"),
        (patch("*** Update File: a.txt"), "invalid hunk at line 2, Update file hunk for path 'a.txt' is empty"),
        (patch("*** Update File: a", "@@"), "invalid hunk at line 4, Update hunk does not contain any lines"),
        (patch("*** Update File: a", "@@", "xx"), f"invalid hunk at line 4, Unexpected line found in update hunk: 'xx'. {UNEXPECTED}"),
        (
            patch("*** Update File: a", "@@ class B:", "@@     def f(self):", "-x"),
            f"invalid hunk at line 4, Unexpected line found in update hunk: '@@     def f(self):'. {UNEXPECTED}",
        ),
        (
            patch("*** Update File: a", "@@", "-a", "+A", "xx"),
            "invalid hunk at line 6, Expected update hunk to start with a @@ context marker, got: 'xx'",
        ),
        (
            patch("*** Update File: a", "@@", "-a", "*** End of File", " b"),
            "invalid hunk at line 6, Expected update hunk to start with a @@ context marker, got: ' b'",
        ),
        (patch("*** Update File: a", "@@", "*** End of File"), "invalid hunk at line 4, Update hunk does not contain any lines"),
        (
            patch("*** Update File: a", "@@", "*** Add File: q", "+q"),
            f"invalid hunk at line 4, Unexpected line found in update hunk: '*** Add File: q'. {UNEXPECTED}",
        ),
    ],
)
def test_parse_errors_are_worded_as_the_original(text, error):
    with pytest.raises((InvalidPatchError, InvalidHunkError)) as err:
        parse_patch(text)
    assert str(err.value) == error


# --- applying ---------------------------------------------------------------------------


def test_add_update_move_and_delete_in_one_patch(tmp_path):
    write(tmp_path, {"a.txt": "one\ntwo\n", "d.txt": "bye\n", "m.txt": "m1\n"})
    summary = run(
        tmp_path,
        patch(
            "*** Add File: sub/new.txt",
            "+hello",
            "*** Update File: a.txt",
            "@@",
            "-two",
            "+TWO",
            "*** Delete File: d.txt",
            "*** Update File: m.txt",
            "*** Move to: moved/m2.txt",
            "@@",
            "-m1",
            "+m2",
        ),
    )
    assert summary == (
        "Success. Updated the following files:\nA sub/new.txt\nM a.txt\nM moved/m2.txt\nD d.txt\n"
    )
    assert tree(tmp_path) == {"a.txt": "one\nTWO\n", "moved/m2.txt": "m2\n", "sub/new.txt": "hello\n"}


def test_multiple_chunks_and_context_lines(tmp_path):
    write(tmp_path, {"c.py": "class A:\n    def f(self):\n        return 1\nclass B:\n    def f(self):\n        return 1\n"})
    run(tmp_path, patch("*** Update File: c.py", "@@ class B:", "     def f(self):", "-        return 1", "+        return 2"))
    assert tree(tmp_path)["c.py"].endswith("class B:\n    def f(self):\n        return 2\n")
    write(tmp_path, {"i.txt": "a\nb\nc\nd\ne\nf\n"})
    run(tmp_path, patch("*** Update File: i.txt", "@@", " a", "-b", "+B", "@@", " c", " d", "-e", "+E", "@@", " f", "+g", "*** End of File"))
    assert tree(tmp_path)["i.txt"] == "a\nB\nc\nd\nE\nf\ng\n"


def test_context_lines_keep_the_file_text(tmp_path):
    # Context matched leniently keeps the file's own text; `-x`/`+x` replaces it.
    write(tmp_path, {"a.txt": "  a\nb\n  c\n", "b.txt": "  a\nb\n"})
    run(tmp_path, patch("*** Update File: a.txt", "@@", " a", "-b", "+B", " c", "*** Update File: b.txt", "@@", "-a", "+a", "-b", "+B"))
    assert tree(tmp_path) == {"a.txt": "  a\nB\n  c\n", "b.txt": "a\nB\n"}


def test_end_of_file_anchors_the_chunk(tmp_path):
    write(tmp_path, {"a.txt": "a\nb\nc\nb\n"})
    run(tmp_path, patch("*** Update File: a.txt", "@@", "-b", "+B", "*** End of File"))
    assert tree(tmp_path)["a.txt"] == "a\nb\nc\nB\n"
    write(tmp_path, {"a.txt": "a\nb\nc\nd\n"})
    with pytest.raises(ComputeReplacementsError) as err:
        run(tmp_path, patch("*** Update File: a.txt", "@@", "-b", "+B", "*** End of File"))
    assert str(err.value) == f"Failed to find expected lines in {tmp_path / 'a.txt'}:\nb"


def test_old_lines_must_come_after_the_context_line(tmp_path):
    write(tmp_path, {"a.txt": "a\nb\n"})
    with pytest.raises(ComputeReplacementsError, match="Failed to find expected lines"):
        run(tmp_path, patch("*** Update File: a.txt", "@@ b", " b", "+x", "*** End of File"))


@pytest.mark.parametrize(
    ("before", "body", "after"),
    [
        ("a\nb", ["-b", "+B"], "a\nB\n"),  # a final newline is added
        ("a\n\n\n", ["-a", "+b"], "b\n\n\n"),  # blank lines at the end are kept
        ("x\n\n", ["+bar"], "x\n\nbar\n"),  # a pure addition goes at the very end
        ("a\nb", ["+c"], "a\nb\nc\n"),
        ("a\n", ["-a"], ""),  # removing every line leaves an empty file
        ("", ["+x"], "x\n"),
        ("a\nb\n", [" a", "-b", "+B", " "], "a\nB\n"),  # an empty last context line is the final newline
        ("a\n", ["-a", "+b", "+"], "b\n\n"),
    ],
)
def test_trailing_newline_rules(tmp_path, before, body, after):
    write(tmp_path, {"a.txt": before})
    run(tmp_path, patch("*** Update File: a.txt", "@@", *body))
    assert tree(tmp_path)["a.txt"] == after


@pytest.mark.parametrize(
    ("before", "body", "after"),
    [
        ("a\r\nb\r\n", ["-a", "+A"], "A\r\nb\r\n"),
        ("a\r\nb\r\n", [" a", "-b", "+B"], "a\r\nB\r\n"),
        ("a\r\nb\n", ["-a", "+A"], "A\r\nb\n"),  # the first line break sets the style
        ("a\r\nb\r\nc\n", ["-c", "+C", "+D"], "a\r\nb\r\nC\r\nD\r\n"),
        ("a\r\nb", ["-b", "+B"], "a\r\nB\r\n"),
    ],
)
def test_line_endings_are_preserved(tmp_path, before, body, after):
    write(tmp_path, {"a.txt": before})
    run(tmp_path, patch("*** Update File: a.txt", "@@", *body))
    assert tree(tmp_path)["a.txt"] == after


def test_unicode_punctuation_matches_ascii(tmp_path):
    write(tmp_path, {"u.py": "import asyncio  # local import \u2013 avoids top\u2011level dep\nx = \u201chi\u201d\u00a0# \u2018q\u2019\n"})
    run(
        tmp_path,
        patch(
            "*** Update File: u.py",
            "@@",
            "-import asyncio  # local import - avoids top-level dep",
            "+import asyncio  # HELLO",
            "-x = \"hi\" # 'q'",
            "+x = 1",
        ),
    )
    assert tree(tmp_path)["u.py"] == "import asyncio  # HELLO\nx = 1\n"


def test_whitespace_lenient_matching(tmp_path):
    write(tmp_path, {"a.txt": "    foo   \nbar\t\n"})
    run(tmp_path, patch("*** Update File: a.txt", "@@", "-foo", "-bar", "+baz"))
    assert tree(tmp_path)["a.txt"] == "baz\n"


def test_heredoc_wrapped_patch_applies(tmp_path):
    assert run(tmp_path, "<<'EOF'\n" + patch("*** Add File: h.txt", "+hi") + "\nEOF\n") == (
        "Success. Updated the following files:\nA h.txt\n"
    )
    assert tree(tmp_path) == {"h.txt": "hi\n"}


def test_a_hunk_that_does_not_apply_changes_nothing(tmp_path):
    write(tmp_path, {"a.txt": "one\ntwo\n", "b.txt": "x\n"})
    text = patch(
        "*** Add File: new.txt",
        "+new",
        "*** Update File: a.txt",
        "@@",
        "-two",
        "+TWO",
        "*** Delete File: b.txt",
        "*** Update File: a.txt",
        "@@ def nothere",
        "-one",
        "+ONE",
    )
    with pytest.raises(ComputeReplacementsError) as err:
        run(tmp_path, text)
    assert str(err.value) == f"Failed to find context 'def nothere' in {tmp_path / 'a.txt'}"
    assert tree(tmp_path) == {"a.txt": "one\ntwo\n", "b.txt": "x\n"}


def test_delete_of_a_missing_file(tmp_path):
    with pytest.raises(PatchIOError) as err:
        run(tmp_path, patch("*** Delete File: b.txt"))
    assert str(err.value) == f"Failed to read {tmp_path / 'b.txt'}: No such file or directory (os error 2)"


def test_update_of_a_missing_file_or_a_directory(tmp_path):
    (tmp_path / "dd").mkdir()
    with pytest.raises(PatchIOError) as err:
        run(tmp_path, patch("*** Update File: ./sub/../nope.txt", "@@", "-a", "+b"))
    assert str(err.value) == (
        f"Failed to read file to update {tmp_path / 'nope.txt'}: No such file or directory (os error 2)"
    )
    with pytest.raises(PatchIOError) as err:
        run(tmp_path, patch("*** Update File: dd", "@@", "-a", "+b"))
    dd = tmp_path / "dd"
    assert str(err.value) == f"Failed to read file to update {dd}: path `{dd}` is not a file"


def test_update_of_a_file_that_is_not_utf8(tmp_path):
    (tmp_path / "b.bin").write_bytes(b"a\n\xff\n")
    with pytest.raises(PatchIOError) as err:
        run(tmp_path, patch("*** Update File: b.bin", "@@", "-a", "+A"))
    assert str(err.value).endswith("b.bin: invalid utf-8 sequence of 1 bytes from index 2")


def test_add_over_an_existing_file_replaces_it(tmp_path):
    write(tmp_path, {"a.txt": "old\n"})
    assert run(tmp_path, patch("*** Add File: a.txt", "+new")) == "Success. Updated the following files:\nA a.txt\n"
    assert tree(tmp_path) == {"a.txt": "new\n"}


def test_move_over_an_existing_file_replaces_it(tmp_path):
    write(tmp_path, {"s.txt": "s\n", "t.txt": "t\n"})
    assert run(tmp_path, patch("*** Update File: s.txt", "*** Move to: t.txt", "@@", "-s", "+S")).endswith("M t.txt\n")
    assert tree(tmp_path) == {"t.txt": "S\n"}


def test_later_hunks_see_earlier_ones(tmp_path):
    run(tmp_path, patch("*** Add File: a.txt", "+one", "*** Update File: a.txt", "@@", "-one", "+two"))
    assert tree(tmp_path) == {"a.txt": "two\n"}


def test_a_failed_write_restores_everything(tmp_path):
    write(tmp_path, {"a.txt": "a\n", "f": "file\n", "gone.txt": "keep\n"})
    os.chmod(tmp_path / "gone.txt", 0o640)
    plan = plan_patch(
        parse_patch(
            patch(
                "*** Update File: a.txt",
                "@@",
                "-a",
                "+A",
                "*** Delete File: gone.txt",
                "*** Add File: new/dir/n.txt",
                "+n",
                "*** Add File: f/sub.txt",
                "+x",
            )
        ),
        tmp_path,
    )
    with pytest.raises(PatchWriteError) as err:
        apply_plan(plan)
    assert str(err.value) == f"Failed to write file {tmp_path / 'f' / 'sub.txt'}"
    assert isinstance(err.value.__cause__, OSError)
    assert tree(tmp_path) == {"a.txt": "a\n", "f": "file\n", "gone.txt": "keep\n"}
    assert not (tmp_path / "new").exists()
    assert stat.S_IMODE((tmp_path / "gone.txt").stat().st_mode) == 0o640


def test_an_empty_patch_applies_nothing(tmp_path):
    plan = plan_patch(parse_patch(patch()), tmp_path)
    assert plan.is_empty() and plan.paths == frozenset() and plan.changes == ()
    with pytest.raises(ApplyPatchError, match=r"^No files were modified\.$"):
        apply_plan(plan)


# --- the plan -------------------------------------------------------------------------------


def test_plan_writes_nothing_and_reports_the_changes(tmp_path):
    write(tmp_path, {"a.txt": "foo\nbar\nbaz\nqux\n", "d.txt": "bye\n", "m.txt": "m1\n"})
    before = tree(tmp_path)
    plan = plan_patch(
        parse_patch(
            patch(
                "*** Add File: new.txt",
                "+hello",
                "*** Update File: a.txt",
                "@@",
                " foo",
                "-bar",
                "+BAR",
                "@@",
                " baz",
                "-qux",
                "+QUX",
                "*** Delete File: d.txt",
                "*** Update File: m.txt",
                "*** Move to: sub/m2.txt",
                "@@",
                "-m1",
                "+m2",
            )
        ),
        tmp_path,
    )
    assert tree(tmp_path) == before
    root = str(tmp_path)
    # As the original's item: sorted by path, a move's diff saying where the file went.
    assert plan.file_changes() == [
        FileUpdateChange(f"{root}/a.txt", PatchChangeKind("update"), "@@ -1,4 +1,4 @@\n foo\n-bar\n+BAR\n baz\n-qux\n+QUX\n"),
        FileUpdateChange(f"{root}/d.txt", PatchChangeKind("delete"), "bye\n"),
        FileUpdateChange(f"{root}/m.txt", PatchChangeKind("update", f"{root}/sub/m2.txt"),
                         f"@@ -1 +1 @@\n-m1\n+m2\n\n\nMoved to: {root}/sub/m2.txt"),
        FileUpdateChange(f"{root}/new.txt", PatchChangeKind("add"), "hello\n"),
    ]
    assert plan.paths == {f"{root}/{p}" for p in ("new.txt", "a.txt", "d.txt", "m.txt", "sub/m2.txt")}
    zero = "0" * 40
    a_old, a_new = _oid("foo\nbar\nbaz\nqux\n"), _oid("foo\nBAR\nbaz\nQUX\n")
    bye, m1, m2, hello = _oid("bye\n"), _oid("m1\n"), _oid("m2\n"), _oid("hello\n")
    assert plan.diff == (
        "diff --git a/a.txt b/a.txt\n"
        f"index {a_old}..{a_new}\n"
        "--- a/a.txt\n+++ b/a.txt\n@@ -1,4 +1,4 @@\n foo\n-bar\n+BAR\n baz\n-qux\n+QUX\n"
        "diff --git a/d.txt b/d.txt\ndeleted file mode 100644\n"
        f"index {bye}..{zero}\n"
        "--- a/d.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-bye\n"
        "diff --git a/m.txt b/sub/m2.txt\n"
        f"index {m1}..{m2}\n"
        "--- a/m.txt\n+++ b/sub/m2.txt\n@@ -1 +1 @@\n-m1\n+m2\n"
        "diff --git a/new.txt b/new.txt\nnew file mode 100644\n"
        f"index {zero}..{hello}\n"
        "--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1 @@\n+hello\n"
    )
    apply_plan(plan)
    assert tree(tmp_path) == {"a.txt": "foo\nBAR\nbaz\nQUX\n", "new.txt": "hello\n", "sub/m2.txt": "m2\n"}


def _oid(text: str) -> str:
    data = text.encode()
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


def test_the_git_blob_ids_are_gits():
    assert _oid("") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"  # git hash-object /dev/null


def test_a_stale_plan_is_planned_again(tmp_path):
    write(tmp_path, {"a.txt": "a\nb\n"})
    plan = plan_patch(parse_patch(patch("*** Update File: a.txt", "@@", "-b", "+B")), tmp_path)
    write(tmp_path, {"a.txt": "z\nb\n"})
    apply_plan(plan)
    assert tree(tmp_path) == {"a.txt": "z\nB\n"}
    write(tmp_path, {"a.txt": "nothing to match\n"})
    with pytest.raises(ComputeReplacementsError):
        apply_plan(plan)
    assert tree(tmp_path) == {"a.txt": "nothing to match\n"}


@pytest.mark.parametrize(
    ("old", "new", "diff"),
    [
        ("foo\nbar\nbaz\nqux\n", "foo\nBAR\nbaz\nQUX\n", "@@ -1,4 +1,4 @@\n foo\n-bar\n+BAR\n baz\n-qux\n+QUX\n"),
        ("foo\nbar\nbaz\n", "FOO\nbar\nbaz\n", "@@ -1,2 +1,2 @@\n-foo\n+FOO\n bar\n"),
        ("foo\nbar\nbaz\n", "foo\nbar\nBAZ\n", "@@ -2,2 +2,2 @@\n bar\n-baz\n+BAZ\n"),
        ("foo\nbar\nbaz\n", "foo\nbar\nbaz\nquux\n", "@@ -3 +3,2 @@\n baz\n+quux\n"),
        ("a\nb\nc\nd\ne\nf\n", "a\nB\nc\nd\nE\nf\ng\n", "@@ -1,6 +1,7 @@\n a\n-b\n+B\n c\n d\n-e\n+E\n f\n+g\n"),
        ("a\n", "b", "@@ -1 +1 @@\n-a\n+b\n\\ No newline at end of file\n"),
        ("same\n", "same\n", ""),
    ],
)
def test_unified_diff_is_the_originals(old, new, diff):
    assert unified_diff(old, new) == diff


def test_unified_diff_splits_distant_changes_into_hunks():
    old = "".join(f"{i}\n" for i in range(20))
    new = old.replace("2\n", "two\n", 1).replace("17\n", "seventeen\n")
    assert unified_diff(old, new, 3) == (
        "@@ -1,6 +1,6 @@\n 0\n 1\n-2\n+two\n 3\n 4\n 5\n"
        "@@ -15,6 +15,6 @@\n 14\n 15\n 16\n-17\n+seventeen\n 18\n 19\n"
    )


# --- shell invocations ---------------------------------------------------------------------------

BODY = patch("*** Add File: foo", "+hi")
SCRIPT = f"apply_patch <<'PATCH'\n{BODY}\nPATCH"


@pytest.mark.parametrize(
    ("argv", "workdir"),
    [
        (["apply_patch", BODY], None),
        (["applypatch", BODY], None),
        (["bash", "-lc", SCRIPT], None),
        (["bash", "-c", SCRIPT], None),
        (["/bin/zsh", "-lc", SCRIPT + "\n"], None),
        (["bash", "-lc", f"applypatch <<EOF\n{BODY}\nEOF\n"], None),
        (["bash", "-lc", f'apply_patch <<"EOF"\n{BODY}\nEOF'], None),
        (["bash", "-lc", "cd foo && " + SCRIPT], "foo"),
        (["bash", "-lc", "cd 'foo bar' && " + SCRIPT], "foo bar"),
        (["bash", "-lc", 'cd "foo bar" && ' + SCRIPT], "foo bar"),
        (["powershell.exe", "-Command", SCRIPT], None),
        (["pwsh", "-NoProfile", "-Command", SCRIPT], None),
        (["cmd.exe", "/c", "cd foo && " + SCRIPT], "foo"),
    ],
)
def test_invocations_the_original_intercepts(argv, workdir):
    invocation = maybe_parse_apply_patch_invocation(argv)
    assert invocation == ApplyPatchInvocation(parse_patch(BODY), workdir)


@pytest.mark.parametrize(
    "argv",
    [
        ["bash", "-lc", "cd foo; " + SCRIPT],
        ["bash", "-lc", "cd bar || " + SCRIPT],
        ["bash", "-lc", "cd bar | " + SCRIPT],
        ["bash", "-lc", "echo foo && " + SCRIPT],
        ["bash", "-lc", "cd foo && cd bar && " + SCRIPT],
        ["bash", "-lc", "cd foo bar && " + SCRIPT],
        ["bash", "-lc", f"apply_patch foo <<'PATCH'\n{BODY}\nPATCH"],
        ["bash", "-lc", SCRIPT + " && echo done"],
        ["bash", "-lc", SCRIPT + "\necho done"],
        ["bash", "-lc", "echo foo; cd bar && " + SCRIPT],
        ["bash", "-x", SCRIPT],
        ["fish", "-c", SCRIPT],
        ["ls", "-la"],
        ["apply_patch"],
    ],
)
def test_other_commands_are_not_invocations(argv):
    assert maybe_parse_apply_patch_invocation(argv) is None


def test_the_heredoc_ends_at_its_first_delimiter_line():
    script = f"apply_patch <<'EOF'\n{BODY}\nEOF\nEOF"
    assert maybe_parse_apply_patch_invocation(["bash", "-lc", script]) is None


def test_a_bare_patch_is_an_implicit_invocation():
    for argv in ([BODY], ["bash", "-lc", BODY]):
        with pytest.raises(ImplicitInvocationError) as err:
            maybe_parse_apply_patch_invocation(argv)
        assert str(err.value) == 'patch detected without explicit call to apply_patch. Rerun as ["apply_patch", "<patch>"]'


def test_an_invocation_with_a_bad_patch_raises_the_parse_error():
    with pytest.raises(InvalidPatchError):
        maybe_parse_apply_patch_invocation(["apply_patch", "not a patch"])
    with pytest.raises(InvalidHunkError):
        maybe_parse_apply_patch_invocation(["bash", "-lc", "apply_patch <<'EOF'\n*** Begin Patch\n*** Frob\n*** End Patch\nEOF"])


def test_an_invocation_applies_in_its_workdir(tmp_path):
    (tmp_path / "alt").mkdir()
    write(tmp_path, {"alt/old.txt": "before\n"})
    script = "cd alt && apply_patch <<'PATCH'\n" + patch("*** Update File: old.txt", "*** Move to: renamed.txt", "@@", "-before", "+after") + "\nPATCH"
    invocation = maybe_parse_apply_patch_invocation(["bash", "-lc", script])
    assert invocation is not None
    plan = plan_patch(invocation.patch, invocation.cwd(str(tmp_path)))
    assert plan.changes[0].move_path == str(tmp_path / "alt" / "renamed.txt")
    apply_plan(plan)
    assert tree(tmp_path) == {"alt/renamed.txt": "after\n"}


@pytest.mark.parametrize("script", [
    f"apply_patch <<-EOF\n{BODY}\nEOF",
    f"cd foo &&apply_patch <<'EOF'\n{BODY}\nEOF",
    f"apply_patch <<'E O'\n{BODY}\nE O",
])
def test_heredoc_invocations_are_recognised_by_the_originals_tree_sitter_query(script):
    invocation = maybe_parse_apply_patch_invocation(["bash", "-lc", script])
    assert invocation is not None and invocation.patch == parse_patch(BODY)
