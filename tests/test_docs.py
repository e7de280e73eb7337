"""The docs stay true about the tree: every repository path the READMEs and
docs/ name exists, and every ``trio_codex.x.y`` they name imports; the same
for the paths and module references in the code's own docstrings and
comments (modules move: scripts/relayout.py, issue 18).
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "bench" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: The repository's top-level folders: a path starting with one is a path
#: into this repository.
TOP = ("actors", "runtime", "transports", "tests", "bench", "docs", "scripts", ".ci")
#: A repository path in prose, code spans or fenced blocks (not inside a
#: URL or an absolute path): ``runtime/kernel/stream.py:FrameStream``.
REPO_PATH = re.compile(r"(?<![\w/.~$-])((?:%s)/[\w./*-]*)(?::(\w+))?" % "|".join(re.escape(t) for t in TOP))
MODULE = re.compile(r"(?<![\w.])trio_codex(?:\.\w+)+")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\]\(([^)\s#]+)")
#: A bare module file name or a path inside a folder: ``cli.py``, ``exec/run.py``.
FILE_NAME = re.compile(r"^[\w/-]+\.py$")
#: The code the docstring test reads.
CODE_FOLDERS = ("actors", "runtime", "transports", "bench")
#: What a file named but not in this repository may be (the original's
#: files, a user's, a library's) in the code: a path with a folder outside
#: the repository's, and these bare names.
FOREIGN_FILES = {"test_exports.py"}


def files() -> list[Path]:
    return [p for p in ROOT.rglob("*") if p.is_file() and not {".git", ".venv"} & set(p.parts)]


TAILS = {"/".join(p.relative_to(ROOT).parts[-k:]) for p in files() for k in range(1, len(p.relative_to(ROOT).parts) + 1)}


def path_exists(path: str, symbol: str | None = None, base: Path = ROOT) -> str | None:
    """Why ``path`` (with ``path:Symbol`` or ``path:line``) names nothing, or None."""
    path = path.rstrip(".,;")
    matches = sorted(ROOT.glob(path)) if "*" in path else [p for p in (ROOT / path, base / path) if p.exists()]
    if not matches:
        # A module named without its suffix: ``actors/analytics/facts``.
        if (ROOT / f"{path}.py").exists():
            return None
        return f"`{path}` does not exist"
    if not symbol or matches[0].is_dir():
        return None
    text = matches[0].read_text(errors="replace")
    if symbol.isdigit():
        return None if int(symbol) <= len(text.splitlines()) else f"`{path}` has no line {symbol}"
    if not re.search(rf"^\s*(?:async def|def|class) {symbol}\b|^{symbol}\b.*=", text, re.M):
        return f"`{path}` defines no `{symbol}`"
    return None


def module_exists(dotted: str) -> str | None:
    """Why ``trio_codex.x.y`` (a module, or a module then its attributes)
    imports nothing, or None."""
    parts = dotted.split(".")
    for k in range(len(parts), 0, -1):
        name = ".".join(parts[:k])
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if found:
            obj = importlib.import_module(name)
            for attr in parts[k:]:
                if not hasattr(obj, attr):
                    return f"`{dotted}`: {name} has no `{attr}`"
                obj = getattr(obj, attr)
            return None
    return f"`{dotted}` does not import"


def doc_problems(doc: Path) -> list[str]:
    problems = []
    for n, line in enumerate(doc.read_text().splitlines(), 1):
        found = [path_exists(p, s, doc.parent) for p, s in REPO_PATH.findall(line)]
        found += [module_exists(m) for m in MODULE.findall(line)]
        for span in CODE_SPAN.findall(line):
            word = span.split()[0] if span.split() else ""
            if FILE_NAME.match(word) and not word.startswith(TOP) and word not in TAILS:
                found.append(f"`{word}` is no file of the repository")
        for target in LINK.findall(line):
            if "://" not in target and not (doc.parent / target).exists():
                found.append(f"link to `{target}` leads nowhere")
        problems += [f"{doc.relative_to(ROOT)}:{n}: {why}" for why in found if why]
    return problems


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_path_and_module_a_doc_names_exists(doc: Path) -> None:
    assert doc_problems(doc) == []


def code_modules() -> list[Path]:
    return sorted(p for folder in CODE_FOLDERS for p in (ROOT / folder).rglob("*.py"))


def relative_module(path: Path, ref: str) -> str:
    """``..protocol.v2`` as seen from ``path``, the way an import reads it."""
    level = len(ref) - len(ref.lstrip("."))
    package = list(path.relative_to(ROOT).parts[:-1])
    base = package[: len(package) - (level - 1)] if level > 1 else package
    return ".".join(["trio_codex", *base, *filter(None, ref.lstrip(".").split("."))])


@pytest.mark.parametrize("path", code_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_path_and_module_the_code_names_in_prose_exists(path: Path) -> None:
    problems = []
    text = path.read_text()
    for n, line in enumerate(text.splitlines(), 1):
        found = [path_exists(p, s) for p, s in REPO_PATH.findall(line)]
        found += [f"`{name}` is no file of the repository" for name in re.findall(r"(?<![\w/.-])(\w+\.py)\b", line)
                  if name not in TAILS | FOREIGN_FILES]
        for ref in re.findall(r":mod:`([\w.]+)`", line):
            if ref.startswith("."):
                found.append(module_exists(relative_module(path, ref)))
            elif ref.startswith("trio_codex."):
                found.append(module_exists(ref))
        problems += [f"{path.relative_to(ROOT)}:{n}: {why}" for why in found if why]
    assert problems == []
