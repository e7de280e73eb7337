"""``fs/*``, ``fs/watch`` and ``fuzzyFileSearch`` through the real server
over stdio: answers as the original 0.169's (traced: any absolute path, its
error codes and texts), every response valid against the vendored schema,
watches and search sessions owned by the connection."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest
import trio

from harness import ORIGINAL_0171_BIN, ORIGINAL_BIN, RpcClient, open_app_server
from harness.ws import ws_server
from trio_codex.runtime.files import fs_ops

from .test_escapes import OURS
from .test_schema import Session, violations
from .test_websocket import ws_client


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def error_of(client: RpcClient, method: str, params: dict[str, Any]) -> tuple[int, str]:
    msg = await client.call(method, params)
    assert "error" in msg, msg
    return msg["error"]["code"], msg["error"]["message"]


async def test_each_fs_method_answers_good_input_as_the_schema_says(codex_home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "a.txt").write_text("hello")
    async with open_app_server(codex_home) as client:
        await client.initialize()
        s = Session(client)
        assert await s.request("fs/readFile", {"path": str(ws / "a.txt")}) == {"dataBase64": b64(b"hello")}
        assert await s.request("fs/writeFile", {"path": str(ws / "b.txt"), "dataBase64": b64(b"new")}) == {}
        assert (ws / "b.txt").read_bytes() == b"new"
        meta = await s.request("fs/getMetadata", {"path": str(ws / "b.txt")})
        assert (meta["isFile"], meta["isDirectory"], meta["isSymlink"]) == (True, False, False)
        assert await s.request("fs/createDirectory", {"path": str(ws / "d" / "e")}) == {}
        listing = await s.request("fs/readDirectory", {"path": str(ws)})
        assert sorted(e["fileName"] for e in listing["entries"]) == ["a.txt", "b.txt", "d"]
        assert await s.request("fs/copy", {"sourcePath": str(ws / "d"), "destinationPath": str(ws / "d2"),
                                           "recursive": True}) == {}
        assert (ws / "d2" / "e").is_dir()
        assert await s.request("fs/copy", {"sourcePath": str(ws / "a.txt"),
                                           "destinationPath": str(ws / "d2" / "a.txt")}) == {}
        assert (ws / "d2" / "a.txt").read_text() == "hello"
        assert await s.request("fs/remove", {"path": str(ws / "d2")}) == {}
        assert not (ws / "d2").exists()
        assert await s.request("fs/remove", {"path": str(ws / "missing")}) == {}
        assert violations(client, s.sent) == []


async def test_fs_methods_refuse_bad_input_with_the_original_errors(codex_home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "sub").mkdir(parents=True)
    (ws / "a.txt").write_text("x")
    with open(ws / "huge", "wb") as f:
        f.truncate(600 * 1024 * 1024)  # sparse: no disk used
    async with open_app_server(codex_home) as client:
        await client.initialize()
        assert await error_of(client, "fs/readFile", {"path": "ws/a.txt"}) == (
            -32600, "Invalid request: AbsolutePathBuf deserialized without a base path")
        assert await error_of(client, "fs/readFile", {"path": str(ws / "missing")}) == (
            -32603, "No such file or directory (os error 2)")
        assert await error_of(client, "fs/readFile", {"path": str(ws / "sub")}) == (
            -32600, f"path `{ws / 'sub'}` is not a file")
        assert await error_of(client, "fs/readFile", {"path": str(ws / "huge")}) == (
            -32600, "file is too large to read: limit is 536870912 bytes")
        assert await error_of(client, "fs/writeFile", {"path": str(ws / "sub"), "dataBase64": ""}) == (
            -32603, "Is a directory (os error 21)")
        assert await error_of(client, "fs/writeFile", {"path": str(ws / "x"), "dataBase64": "!!"}) == (
            -32600, "fs/writeFile requires valid base64 dataBase64: Invalid symbol 33, offset 0.")
        assert await error_of(client, "fs/readDirectory", {"path": str(ws / "a.txt")}) == (
            -32603, "Not a directory (os error 20)")
        assert await error_of(client, "fs/createDirectory", {"path": str(ws / "n" / "m"), "recursive": False}) == (
            -32603, "No such file or directory (os error 2)")
        assert await error_of(client, "fs/remove", {"path": str(ws / "missing"), "force": False}) == (
            -32603, "No such file or directory (os error 2)")
        assert await error_of(client, "fs/copy", {"sourcePath": str(ws / "sub"),
                                                  "destinationPath": str(ws / "sub2")}) == (
            -32600, "fs/copy requires recursive: true when sourcePath is a directory")
        assert await error_of(client, "fs/copy", {"sourcePath": str(ws), "destinationPath": str(ws / "sub" / "x"),
                                                  "recursive": True}) == (
            -32600, "fs/copy cannot copy a directory to itself or one of its descendants")
        assert await error_of(client, "fs/getMetadata", {"path": str(ws / "a.txt\x00")}) == (
            -32600, "file name contained an unexpected NUL byte")


FS_SEQUENCE = [
    ("fs/readFile", {"path": "{ws}/a.txt"}), ("fs/readFile", {"path": "{ws}/missing"}),
    ("fs/readFile", {"path": "{ws}/sub"}), ("fs/readFile", {"path": "{ws}/../ws/a.txt"}),
    ("fs/writeFile", {"path": "{ws}/link", "dataBase64": "eA=="}),
    ("fs/writeFile", {"path": "{ws}/nodir/x", "dataBase64": "eA=="}),
    ("fs/writeFile", {"path": "{ws}/b", "dataBase64": "aGVsbG8"}),
    ("fs/readDirectory", {"path": "{ws}/sub"}), ("fs/createDirectory", {"path": "{ws}/a.txt/x"}),
    ("fs/createDirectory", {"path": "{ws}/a.txt"}), ("fs/remove", {"path": "{ws}/sub", "recursive": False}),
    ("fs/copy", {"sourcePath": "{ws}/link", "destinationPath": "{ws}/link2"}),
    ("fs/remove", {"path": "{ws}/link2"}), ("fs/watch", {"path": "{ws}", "watchId": "w"}),
    ("fs/watch", {"path": "{ws}", "watchId": "w"}), ("fs/unwatch", {"watchId": "nope"}),
]


@pytest.mark.skipif(not ORIGINAL_BIN.exists(), reason="the original codex is not installed")
async def test_fs_answers_match_the_originals(codex_home: Path, tmp_path: Path) -> None:
    answers = []
    for server, program in (("ours", None), ("original", (str(ORIGINAL_BIN),))):
        ws = tmp_path / server / "ws"
        (ws / "sub" / "inner").mkdir(parents=True)
        (ws / "a.txt").write_text("hello")
        (ws / "target").write_text("t")
        (ws / "link").symlink_to(ws / "target")
        kwargs = {"program": program} if program else {}
        got = []
        async with open_app_server(codex_home, **kwargs) as client:
            await client.initialize()
            for method, params in FS_SEQUENCE:
                msg = await client.call(method, {k: v.replace("{ws}", str(ws)) if isinstance(v, str) else v
                                                 for k, v in params.items()})
                msg.pop("id")
                got.append((method, str(msg).replace(str(ws), "{ws}")))
        got.append(("files", sorted(str(p.relative_to(ws)) for p in ws.rglob("*"))))
        got.append(("target", (ws / "target").read_text()))
        answers.append(got)
    assert answers[0] == answers[1]


async def test_a_symlink_swapped_in_after_the_check_fails_the_write_instead_of_redirecting_it(
        tmp_path: Path) -> None:
    ws, outside = tmp_path / "ws", tmp_path / "outside"
    (ws / "d").mkdir(parents=True)
    outside.mkdir()
    resolved = os.path.realpath(ws / "d" / "x")  # the check: where the write is to land
    (ws / "d").rmdir()
    (ws / "d").symlink_to(outside)  # the swap, between check and write
    with pytest.raises(fs_ops.JsonRpcError) as exc:
        fs_ops.write_resolved(resolved, b"pwned")
    assert exc.value.error.message == "Not a directory (os error 20)"
    assert list(outside.iterdir()) == []


async def test_write_file_races_a_swapping_symlink_and_never_writes_where_the_path_did_not_lead(
        codex_home: Path, tmp_path: Path) -> None:
    """A directory flips between a real one and a symlink to ``outside``
    while writes to it arrive: each write lands where its path led when it
    was resolved (a write that finds the swap fails), so every file in
    ``outside`` is one whose request found the symlink in place, and the
    server stays up."""
    ws, outside = tmp_path / "ws", tmp_path / "outside"
    (ws / "d").mkdir(parents=True)
    outside.mkdir()
    stop = trio.Event()

    def flip() -> None:
        while not stop.is_set():
            os.rename(ws / "d", ws / "real")
            os.symlink(outside, ws / "d")
            os.unlink(ws / "d")
            os.rename(ws / "real", ws / "d")

    async with open_app_server(codex_home) as client, trio.open_nursery() as nursery:
        await client.initialize()
        nursery.start_soon(lambda: trio.to_thread.run_sync(flip))
        answers = [await client.call("fs/writeFile", {"path": str(ws / "d" / f"f{i}"), "dataBase64": "eA=="})
                   for i in range(200)]
        stop.set()
    assert all(("result" in a) or a["error"]["code"] == -32603 for a in answers)
    assert each_in_one_place(ws, outside, answers)


def each_in_one_place(ws: Path, outside: Path, answers: list[dict[str, Any]]) -> bool:
    """Each answered write is in exactly one of the two places."""
    for i, answer in enumerate(answers):
        places = [(ws / "d" / f"f{i}").exists(), (outside / f"f{i}").exists()]
        if "result" in answer and places.count(True) != 1:
            return False
    return True


async def test_watch_reports_changes_until_unwatched(codex_home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    async with open_app_server(codex_home) as client:
        await client.initialize()
        s = Session(client)
        assert await s.request("fs/watch", {"path": str(ws), "watchId": "w"}) == {"path": str(ws)}
        (ws / "new.txt").write_text("x")
        [changed] = [m for m in await client.until(lambda m: m.get("method") == "fs/changed")
                     if m.get("method") == "fs/changed"]
        assert changed["params"] == {"watchId": "w", "changedPaths": [str(ws / "new.txt")]}
        assert await s.request("fs/unwatch", {"watchId": "w"}) == {}
        (ws / "later.txt").write_text("x")
        with trio.move_on_after(1.0):
            while True:
                assert (await client.next_message()).get("method") != "fs/changed"
        assert violations(client, s.sent) == []


def tree(root: Path) -> None:
    (root / ".git").mkdir(parents=True)
    (root / ".gitignore").write_text("build/\n*.log\n")
    for rel in ["src/main.rs", "src/deep/mod_main.rs", "src/maint.txt", "build/main.o", "main.log", "README.md"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("")


async def test_fuzzy_file_search_finds_files_and_skips_ignored_ones(codex_home: Path, tmp_path: Path) -> None:
    root = tmp_path / "repo"
    tree(root)
    async with open_app_server(codex_home) as client:
        await client.initialize()
        s = Session(client)
        found = await s.request("fuzzyFileSearch", {"query": "main", "roots": [str(root)]})
        assert [(f["path"], f["score"], f["indices"]) for f in found["files"]] == [
            ("src/main.rs", 65645, [4, 5, 6, 7]), ("src/maint.txt", 65645, [4, 5, 6, 7]),
            ("src/deep/mod_main.rs", 65640, [13, 14, 15, 16])]
        assert await s.request("fuzzyFileSearch", {"query": "", "roots": [str(root)]}) == {"files": []}
        assert violations(client, s.sent) == []


async def test_a_newer_session_query_supersedes_the_older_one(codex_home: Path, tmp_path: Path) -> None:
    root = tmp_path / "repo"
    tree(root)
    for i in range(3000):
        (root / "src" / f"file{i}.txt").write_text("")
    async with open_app_server(codex_home) as client:
        await client.initialize(experimentalApi=True)
        s = Session(client)
        assert await s.request("fuzzyFileSearch/sessionStart", {"sessionId": "s", "roots": [str(root)]}) == {}
        await s.request("fuzzyFileSearch/sessionUpdate", {"sessionId": "s", "query": "file"})
        await s.request("fuzzyFileSearch/sessionUpdate", {"sessionId": "s", "query": "main"})
        # Only the newer query completes; the older may have streamed a
        # little before it was superseded.
        seen = await client.until(lambda m: m.get("method") == "fuzzyFileSearch/sessionCompleted")
        assert seen[-1]["params"] == {"sessionId": "s"}
        updates = [m["params"] for m in seen if m.get("method") == "fuzzyFileSearch/sessionUpdated"]
        assert updates[-1]["query"] == "main" and {u["query"] for u in updates} <= {"file", "main"}
        assert [f["path"] for f in updates[-1]["files"]][:1] == ["src/main.rs"]
        assert await s.request("fuzzyFileSearch/sessionStop", {"sessionId": "s"}) == {}
        assert await error_of(client, "fuzzyFileSearch/sessionUpdate", {"sessionId": "s", "query": "x"}) == (
            -32600, "fuzzy file search session not found: s")
        assert violations(client, s.sent) == []


def inotify_instances(pid: int) -> int:
    """The server's open inotify descriptors (one per live watch)."""
    fds = Path(f"/proc/{pid}/fd")
    count = 0
    for fd in fds.iterdir():
        try:
            count += os.readlink(fd) == "anon_inode:inotify"
        except OSError:
            pass
    return count


async def test_watches_end_with_their_connection(codex_home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    async with ws_server(codex_home) as server:
        async with ws_client(server.url) as other, ws_client(server.url) as client:
            await other.initialize("other")
            await client.initialize("watcher")
            for n in range(3):
                assert await client.request("fs/watch", {"path": str(ws), "watchId": f"w{n}"}) == {"path": str(ws)}
            assert inotify_instances(server.proc.pid) == 3
            await client.ws.aclose()
            with trio.fail_after(10):
                while inotify_instances(server.proc.pid):
                    await trio.sleep(0.05)
            # The server goes on serving the other client.
            assert "data" in await other.request("model/list", {})


async def test_watching_a_path_whose_directory_is_not_there_yet_reports_it_once_made(
        codex_home: Path, tmp_path: Path) -> None:
    target = tmp_path / "ws" / "later" / "deeper" / "x.txt"
    (tmp_path / "ws").mkdir()
    async with open_app_server(codex_home) as client:
        await client.initialize()
        assert await client.request("fs/watch", {"path": str(target), "watchId": "w"}) == {"path": str(target)}
        assert await client.request("fs/createDirectory", {"path": str(target.parent)}) == {}
        seen: list[dict[str, Any]] = []
        with trio.fail_after(10):
            while not any(m.get("method") == "fs/changed" for m in seen):
                # Written until reported: following the new directories down
                # takes the notifier a moment.
                await client.request("fs/writeFile", {"path": str(target), "dataBase64": "eA=="})
                with trio.move_on_after(0.5):
                    seen.append(await client.next_message())
        [changed] = [m for m in seen if m.get("method") == "fs/changed"]
        assert changed["params"] == {"watchId": "w", "changedPaths": [str(target)]}


async def test_a_search_with_the_same_cancellation_token_cancels_the_older_which_still_answers(
        codex_home: Path, tmp_path: Path) -> None:
    root = tmp_path / "repo"
    tree(root)
    for i in range(3000):
        (root / "src" / f"file{i}.txt").write_text("")
    async with open_app_server(codex_home) as client:
        await client.initialize()
        params = {"roots": [str(root)], "cancellationToken": "t"}
        alone = await client.request("fuzzyFileSearch", {**params, "query": "main"})
        answers: dict[str, dict[str, Any]] = {}

        async def search(query: str) -> None:
            answers[query] = await client.request("fuzzyFileSearch", {**params, "query": query})

        async with trio.open_nursery() as nursery:
            nursery.start_soon(search, "file")
            await trio.sleep(0.01)
            nursery.start_soon(search, "main")
        # The older answers what it had found (as the original: maybe all of it).
        assert len(answers["file"]["files"]) <= 50
        assert answers["main"] == alone


async def test_pipelined_fs_requests_are_done_in_the_order_they_came(codex_home: Path, tmp_path: Path) -> None:
    path = str(tmp_path / "f")
    lines = []
    for n in range(20):
        lines.append({"id": 1000 + 2 * n, "method": "fs/writeFile",
                      "params": {"path": path, "dataBase64": b64(str(n).encode())}})
        lines.append({"id": 1001 + 2 * n, "method": "fs/readFile", "params": {"path": path}})
    async with open_app_server(codex_home) as client:
        await client.initialize()
        await client.send_raw(b"".join(json.dumps(line).encode() + b"\n" for line in lines))
        await client.until(lambda m: m.get("id") == 1039)
        answers = {m["id"]: m for m in client.log if m.get("id", 0) >= 1000}
    # Each read sees the write just before it.
    assert [answers[1001 + 2 * n]["result"]["dataBase64"] for n in range(20)] == [
        b64(str(n).encode()) for n in range(20)]


@pytest.mark.parametrize("server", ["ours", pytest.param("original", marks=pytest.mark.skipif(
    not ORIGINAL_0171_BIN.exists(), reason="the original codex 0.171.0 binary is not installed"))])
async def test_a_session_query_streams_the_best_so_far_while_the_walk_goes_on_then_completes(
        server: str, codex_home: Path, tmp_path: Path) -> None:
    root = tmp_path / "repo"
    tree(root)
    for d in range(40):
        (root / "src" / f"dir{d}").mkdir()
        for i in range(250):
            (root / "src" / f"dir{d}" / f"main{i}.txt").write_text("")
    program = OURS if server == "ours" else (str(ORIGINAL_0171_BIN),)
    async with open_app_server(codex_home, program=program) as client:
        await client.initialize(experimentalApi=True)
        s = Session(client)
        whole = await s.request("fuzzyFileSearch", {"query": "main", "roots": [str(root)]})
        # The query comes at once, while the session still walks.
        await s.request("fuzzyFileSearch/sessionStart", {"sessionId": "s", "roots": [str(root)]})
        await s.request("fuzzyFileSearch/sessionUpdate", {"sessionId": "s", "query": "main"})
        seen = await client.until(lambda m: m.get("method") == "fuzzyFileSearch/sessionCompleted")
        updates = [m["params"] for m in seen if m.get("method") == "fuzzyFileSearch/sessionUpdated"]
        assert updates and {(u["sessionId"], u["query"]) for u in updates} == {("s", "main")}
        assert all(len(u["files"]) <= 50 for u in updates)
        # Ours: each update is the best of more of the walk (no score drops),
        # and the last is the whole walk's best, as a one-shot search finds it
        # (which of equal scores make the 50 is the walk's order). The
        # original's parallel walk and its timing give no such order to test.
        scores = [sorted((f["score"] for f in u["files"]), reverse=True) for u in updates]
        if server == "ours":
            assert all(len(a) <= len(b) and all(x <= y for x, y in zip(a, b)) for a, b in zip(scores, scores[1:]))
            assert scores[-1] == sorted((f["score"] for f in whole["files"]), reverse=True)
        # A later query, the walk done: its update, then completed (the
        # original may still send a late completion of the first query first).
        await s.request("fuzzyFileSearch/sessionUpdate", {"sessionId": "s", "query": "readme"})
        seen = await client.until(lambda m: m.get("method") == "fuzzyFileSearch/sessionUpdated"
                                  and m["params"]["query"] == "readme")
        assert seen[-1]["params"]["files"][0]["path"] == "README.md"
        if server == "ours":
            seen += await client.until(lambda m: m.get("method") == "fuzzyFileSearch/sessionCompleted")
            assert [m["params"]["query"] for m in seen
                    if m.get("method") == "fuzzyFileSearch/sessionUpdated"] == ["readme"]
        assert violations(client, s.sent) == []
