"""Guards on the layout itself (in the spirit of trio's test_exports.py):
packaging that would silently drop a module from the wheel, the rooms of
runtime/ and actors/, the import rules of the house, the package catalogues
and the size of a module (README, "Architecture").
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("actors", "runtime", "transports")
#: The composition root and the entry points may import every folder (the
#: embedding API's client imports its transports where a method needs them).
ROOTS = {"runtime/app.py", "runtime/cli.py", "runtime/exec/run.py", "runtime/mcp/server.py", "runtime/embed.py",
         "runtime/client.py"}
#: The top level of runtime/: the entry points and the public API, then the
#: rooms: the kernel, the wire vocabulary, and the Codex domain libraries by
#: concern (README, "Architecture"). A new module goes into a room.
RUNTIME_TOP = {"__init__", "__main__", "app", "cli", "embed", "client", "client_events", "handshake",
               "kernel", "protocol", "config", "cluster", "persistence", "conversation", "commands", "files",
               "mcp", "exec", "server"}
#: The top level of actors/: one module or package per actor, and the
#: vocabulary. An actor's helpers live in its package; shared code that
#: needs no actor lives in a runtime/ room.
ACTORS_TOP = {"__init__", "messages", "connection", "hub", "threads", "thread", "turn", "model", "approvals",
              "store", "rollout_writer", "analytics", "mcp"}
#: The only imports between actors: a parent starts its child (the nursery
#: tree's edges).
TREE_EDGES = {("threads", "thread"), ("thread", "turn"), ("thread", "rollout_writer"), ("turn", "model")}
#: What any actor may import of another's folder: the vocabulary and how it
#: is delivered and handled (messages/), and the Recorder every actor hands
#: analytics facts to.
SHARED = ("actors/messages", "actors/analytics/facts")
#: Rooms that import only themselves and the rooms named (besides the
#: stdlib and their third-party libraries).
CLOSED_ROOMS = {"runtime/kernel": ("runtime/kernel",),
                "runtime/protocol": ("runtime/protocol", "runtime/kernel")}
RUNTIME_THIRD_PARTY = {"trio", "msgspec"}
#: The exceptions: the sandbox's seccomp filter is compiled by libseccomp;
#: the file search matches .gitignore with pathspec.
RUNTIME_EXTRA = {"runtime/commands/seccomp.py": {"pyseccomp"}, "runtime/files/file_search.py": {"pathspec"},
                 # `mcp add/remove` and config writes edit config.toml keeping its comments.
                 "runtime/mcp/cli.py": {"tomlkit"}, "runtime/config/write.py": {"tomlkit"},
                 # command safety parses scripts with the original's grammar.
                 "runtime/commands/safety/bash.py": {"tree_sitter", "tree_sitter_bash"},
                 "runtime/files/apply_patch/invocation.py": {"tree_sitter", "tree_sitter_bash"},
                 # The cluster extra, imported only with --cluster (runtime/cluster/node.py).
                 "runtime/cluster/nats_bus.py": {"nats"}, "runtime/cluster/nats_directory.py": {"nats"},
                 "runtime/cluster/pg_store.py": {"psycopg", "psycopg_pool"}}
#: A catalogue row: ``name`` then two spaces or more (README, the tables of
#: the package docstrings).
ROW = re.compile(r"^``(\w+)``\s{2,}\S")


def modules() -> list[Path]:
    return sorted(p for folder in FOLDERS for p in (ROOT / folder).rglob("*.py"))


def imports(path: Path) -> list[tuple[int, str]]:
    """(level, dotted name) of every import in a module."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(0, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            out += [(node.level, f"{base}.{a.name}" if base else a.name) for a in node.names]
    return out


def resolve(path: Path, level: int, name: str) -> str:
    """An import as a repo path-ish name: ``runtime/protocol/codec``."""
    if level == 0:
        return name.replace(".", "/")
    base = path.parent.relative_to(ROOT).parts
    base = base[: len(base) - (level - 1)]
    return "/".join([*base, *name.split(".")])


def test_every_package_folder_is_listed_for_the_wheel() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"trio_codex." + ".".join(p.parent.relative_to(ROOT).parts)
             for p in modules() if p.name == "__init__.py"}
    assert found - listed == set(), "add to [tool.setuptools] packages in pyproject.toml"


def test_no_bare_top_level_copy_is_imported() -> None:
    import trio_codex.runtime.app  # noqa: F401  (imports every folder)

    assert not {"actors", "runtime", "transports"} & set(sys.modules)


def within(target: str, roots: tuple[str, ...]) -> bool:
    return any(target == r or target.startswith(r + "/") for r in roots)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_rules_of_the_house(path: Path) -> None:
    rel = str(path.relative_to(ROOT))
    if rel in ROOTS:
        return
    folder = path.relative_to(ROOT).parts[0]
    room = "/".join(path.relative_to(ROOT).parts[:2])
    for level, name in imports(path):
        target = resolve(path, level, name)
        top = target.split("/")[0]
        if level == 0:
            assert top not in FOLDERS, f"{rel}: import `{name}` relatively, never as a bare top-level name"
            if folder == "runtime" and top not in sys.stdlib_module_names:
                assert top in RUNTIME_THIRD_PARTY | RUNTIME_EXTRA.get(rel, set()), (
                    f"{rel}: runtime/ imports only the stdlib, trio and msgspec")
            continue
        assert top in FOLDERS or top == "", f"{rel}: relative import `{name}` leaves the package"
        if room in CLOSED_ROOMS:
            assert within(target, CLOSED_ROOMS[room]), f"{rel}: {room}/ imports only {CLOSED_ROOMS[room]}"
        if folder == "runtime":
            assert top == "runtime", f"{rel}: runtime/ imports no other folder"
        elif folder == "transports":
            assert top in ("runtime", "transports"), f"{rel}: transports/ imports runtime/ only"
        elif top == "actors":
            # A module of an actor's package (actors/thread/) is that actor.
            me, other = path.relative_to(ROOT).parts[1].removesuffix(".py"), target.split("/")[1]
            assert within(target, SHARED) or other == me or (me, other) in TREE_EDGES, (
                f"{rel}: an actor talks to `{other}` through messages, not by importing it")
        else:
            assert top == "runtime", f"{rel}: actors/ imports runtime/ and actors/ only"


@pytest.mark.parametrize(("folder", "allowed"), [("runtime", RUNTIME_TOP), ("actors", ACTORS_TOP)])
def test_the_top_level_holds_only_its_rooms(folder: str, allowed: set[str]) -> None:
    found = {p.stem for p in (ROOT / folder).glob("*.py")}
    found |= {p.parent.name for p in (ROOT / folder).glob("*/__init__.py")}
    assert sorted(found - allowed) == [], f"give these a room inside {folder}/ (README, \"Architecture\")"


def packages() -> list[Path]:
    return sorted(p.parent for p in modules() if p.name == "__init__.py")


@pytest.mark.parametrize("package", packages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_package_catalogue_lists_exactly_its_modules(package: Path) -> None:
    catalogue = ast.get_docstring(ast.parse((package / "__init__.py").read_text())) or ""
    rows = {m[1] for line in catalogue.splitlines() if (m := ROW.match(line))}
    named = rows | set(re.findall(r":mod:`\.(\w+)", catalogue))
    children = {p.stem for p in package.glob("*.py") if not p.stem.startswith("__")}
    children |= {p.parent.name for p in package.glob("*/__init__.py")}
    assert sorted(children - named) == [], f"name these in {package.relative_to(ROOT)}/__init__.py's catalogue"
    assert sorted(rows - children) == [], f"{package.relative_to(ROOT)}/__init__.py's catalogue names modules gone"


def test_no_module_in_actors_or_runtime_is_over_600_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for folder in ("actors", "runtime") for p in sorted((ROOT / folder).rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > 600}
    assert long == {}, "split it along its concerns (README, Rules of the house)"
