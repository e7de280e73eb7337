"""Guards on the layout itself (in the spirit of trio's test_exports.py):
packaging that would silently drop a module from the wheel, and the import
rules of the house (README, "Architecture").
"""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("actors", "runtime", "transports")
#: The composition root and the entry points may import every folder (the
#: embedding API's client imports its transports where a method needs them).
ROOTS = {"runtime/app.py", "runtime/cli.py", "runtime/exec.py", "runtime/mcp_server.py", "runtime/embed.py",
         "runtime/client.py"}
#: The only imports between actor modules: a parent starts its child (and
#: the model pool makes the model clients that turns stream through).
TREE_EDGES = {("threads", "thread"), ("thread", "turn"), ("thread", "rollout_writer"), ("turn", "model"),
              ("turn", "tools"), ("mcp_pool", "mcp_connection"), ("model_pool", "model")}
#: Modules in actors/ that are vocabulary or helpers, not actors.
SHARED = {"messages", "fanout", "barrier", "process", "command_exec", "fs_requests", "analytics_facts",
          "analytics_reducer", "mcp_calls", "model_pool", "sdk",
          "child"}
RUNTIME_THIRD_PARTY = {"trio", "msgspec"}
#: The exceptions: the sandbox's seccomp filter is compiled by libseccomp;
#: the file search matches .gitignore with pathspec.
RUNTIME_EXTRA = {"runtime/seccomp.py": {"pyseccomp"}, "runtime/file_search.py": {"pathspec"},
                 # `mcp add/remove` and config writes edit config.toml keeping its comments.
                 "runtime/mcp_cli.py": {"tomlkit"}, "runtime/config_write.py": {"tomlkit"},
                 # command safety parses scripts with the original's grammar.
                 "runtime/command_safety/bash.py": {"tree_sitter", "tree_sitter_bash"},
                 "runtime/apply_patch/invocation.py": {"tree_sitter", "tree_sitter_bash"},
                 # The cluster extra, imported only with --cluster (runtime/cluster/node.py).
                 "runtime/cluster/nats_bus.py": {"nats"}, "runtime/cluster/nats_directory.py": {"nats"},
                 "runtime/cluster/pg_store.py": {"psycopg", "psycopg_pool"}}


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


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_rules_of_the_house(path: Path) -> None:
    rel = str(path.relative_to(ROOT))
    if rel in ROOTS:
        return
    folder = path.relative_to(ROOT).parts[0]
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
        if folder == "runtime":
            assert top == "runtime", f"{rel}: runtime/ imports no other folder"
        elif folder == "transports":
            assert top in ("runtime", "transports"), f"{rel}: transports/ imports runtime/ only"
        elif top == "actors":
            assert top != "transports"
            # A module of an actor's package (actors/thread/) is that actor.
            me, other = path.relative_to(ROOT).parts[1].removesuffix(".py"), target.split("/")[1]
            assert other in SHARED or other == me or (me, other) in TREE_EDGES, (
                f"{rel}: an actor talks to `{other}` through messages, not by importing it")
        else:
            assert top == "runtime", f"{rel}: actors/ imports runtime/ and actors/ only"


@pytest.mark.parametrize("package", ["actors", "runtime", "transports"])
def test_every_module_is_named_in_its_package_catalogue(package: str) -> None:
    catalogue = ast.get_docstring(ast.parse((ROOT / package / "__init__.py").read_text())) or ""
    children = {p.stem for p in (ROOT / package).glob("*.py") if not p.stem.startswith("__")}
    children |= {p.parent.name for p in (ROOT / package).glob("*/__init__.py")}
    missing = sorted(name for name in children if f"``{name}``" not in catalogue)
    assert missing == [], f"name these in {package}/__init__.py's catalogue, with what each is for"
def test_no_module_in_actors_is_over_600_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in sorted((ROOT / "actors").rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > 600}
    assert long == {}, "split it along its concerns (README, Rules of the house)"
