"""The fuzzy file search behind ``fuzzyFileSearch`` (the ``@`` mention), as
the original's ``codex-file-search``: blocking, run off the trio thread.

Walk (as its ``ignore::WalkBuilder`` defaults, traced): hidden files are
listed, ``.git`` is not, symlinks are not followed, and ``.gitignore`` files
apply only inside a Git repository (a ``.git`` in the root or above it), each
to its own directory and below (``pathspec``'s gitignore semantics, a
maintained library, rather than a hand-written matcher; ripgrep is not
assumed to be installed, the original bundles its own).

Score (nucleo's, as the original computes it with ``match_paths``):
16 per matched character, boundary bonuses (9 after ``/`` and at the
start, 8 after other punctuation, 5 for camelCase and digits), the first
character's bonus doubled, a consecutive run keeping its first bonus (at
least 4), gaps costing 3 then 1; case ignored. On top, as the original's
results show: a file whose name alone matches scores its name's match plus
65,536, and a name equal to the query another 131,072. Nucleo finds the
optimal alignment; here the best of the leftmost alignments from each
start of the first character, which agrees on ordinary names.

The best :data:`MATCH_LIMIT` are kept in a heap (memory bounded whatever
the tree), sorted by score then path. ``cancelled()`` is polled during the
walk, so a newer query stops an older one.
"""

from __future__ import annotations

import heapq
import itertools
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pathspec

MATCH_LIMIT = 50
SCORE_MATCH = 16
BONUS_BOUNDARY = 8
BONUS_DELIMITER = BONUS_BOUNDARY + 1
BONUS_CONSECUTIVE = 4
PENALTY_GAP_START = 3
PENALTY_GAP_EXTENSION = 1
BONUS_CAMEL123 = BONUS_BOUNDARY - PENALTY_GAP_START
NAME_BONUS = 65_536
EXACT_NAME_BONUS = 131_072

# Character classes, ordered as nucleo's (word classes after DELIMITER).
_WHITE, _NONWORD, _DELIM, _LOWER, _UPPER, _NUMBER = range(6)


def _classify(char: str) -> int:
    if char == "/":
        return _DELIM
    if char.islower():
        return _LOWER
    if char.isupper():
        return _UPPER
    if char.isdigit():
        return _NUMBER
    if char.isalpha():
        return _LOWER
    if char.isspace():
        return _WHITE
    return _NONWORD


def _bonus(prev: int, cls: int) -> int:
    if cls > _DELIM:
        if prev == _WHITE:
            return BONUS_BOUNDARY + 2
        if prev == _DELIM:
            return BONUS_DELIMITER
        if prev == _NONWORD:
            return BONUS_BOUNDARY
    if (prev == _LOWER and cls == _UPPER) or (prev != _NUMBER and cls == _NUMBER):
        return BONUS_CAMEL123
    if cls == _WHITE:
        return BONUS_BOUNDARY + 2
    if cls == _NONWORD:
        return BONUS_BOUNDARY
    return 0


#: The bonus of each (previous class, class) pair, and the class of each
#: character seen (a few hundred distinct characters at most in practice;
#: the cache stops growing at 4,096).
_BONUSES = tuple(tuple(_bonus(prev, cls) for cls in range(6)) for prev in range(6))
_CLASSES: dict[str, int] = {}


def _class(char: str) -> int:
    cls = _CLASSES.get(char)
    if cls is None:
        cls = _classify(char)
        if len(_CLASSES) < 4096:
            _CLASSES[char] = cls
    return cls


def _align(text: str, lower: str, needle: str, start: int) -> list[int] | None:
    """Leftmost positions of ``needle`` in ``lower`` from ``start``."""
    found = []
    pos = start
    for char in needle:
        pos = lower.find(char, pos)
        if pos < 0:
            return None
        found.append(pos)
        pos += 1
    return found


def _score_at(text: str, indices: list[int]) -> int:
    classes = _CLASSES
    score = 0
    first = indices[0]
    prev = _class(text[first - 1]) if first > 0 else _DELIM
    first_bonus = 0
    consecutive = False
    last = first - 1
    for idx in indices:
        if idx != last + 1:
            score -= PENALTY_GAP_START + PENALTY_GAP_EXTENSION * (idx - last - 2)
            consecutive = False
            prev = classes.get(text[idx - 1]) or _class(text[idx - 1])
        char = text[idx]
        cls = classes.get(char)
        if cls is None:
            cls = _class(char)
        bonus = _BONUSES[prev][cls]
        if not consecutive:
            first_bonus = bonus
        else:
            if bonus >= BONUS_BOUNDARY and bonus > first_bonus:
                first_bonus = bonus
            if bonus < first_bonus:
                bonus = first_bonus
            if bonus < BONUS_CONSECUTIVE:
                bonus = BONUS_CONSECUTIVE
        score += SCORE_MATCH + (bonus * 2 if idx == first else bonus)
        consecutive = True
        prev = cls
        last = idx
    return score


def fuzzy_match(text: str, needle: str, offset: int = 0) -> tuple[int, list[int]] | None:
    """The best score of lower-case ``needle`` in ``text[offset:]`` and its
    positions in ``text``; None when it does not match."""
    lower = text.lower()
    best: tuple[int, list[int]] | None = None
    start = lower.find(needle[0], offset)
    while start >= 0:
        indices = _align(text, lower, needle, start)
        if indices is None:
            break
        score = _score_at(text, indices)
        if best is None or score > best[0]:
            best = (score, indices)
        start = lower.find(needle[0], start + 1)
    return best


@dataclass(frozen=True, slots=True)
class Match:
    score: int
    root: str
    path: str
    is_dir: bool
    indices: list[int]

    def wire(self) -> dict:
        return {"root": self.root, "path": self.path, "match_type": "directory" if self.is_dir else "file",
                "file_name": os.path.basename(self.path), "score": self.score, "indices": self.indices}


def score_path(path: str, needle: str, is_dir: bool) -> tuple[int, list[int]] | None:
    """``path``'s score for lower-case ``needle``, with the original's
    name bonuses (see the module docstring)."""
    name_at = path.rfind("/") + 1
    exact = EXACT_NAME_BONUS if path[name_at:].lower() == needle else 0
    if not is_dir:
        in_name = fuzzy_match(path, needle, name_at)
        if in_name is not None:
            return in_name[0] + NAME_BONUS + exact, in_name[1]
    found = fuzzy_match(path, needle)
    if found is None:
        return None
    return found[0] + exact, found[1]


def _in_git_repo(root: str) -> bool:
    here = os.path.abspath(root)
    while True:
        if os.path.exists(os.path.join(here, ".git")):
            return True
        parent = os.path.dirname(here)
        if parent == here:
            return False
        here = parent


def _ignore_spec(directory: str) -> pathspec.PathSpec | None:
    import pathspec  # loaded by the first search, off start-up

    try:
        with open(os.path.join(directory, ".gitignore"), encoding="utf-8", errors="replace") as f:
            return pathspec.GitIgnoreSpec.from_lines(f.read().splitlines())
    except OSError:
        return None


#: A walked entry: its root, its path under the root, whether a directory.
Entry = tuple[str, str, bool]


class Cancelled(Exception):
    """The walk or the ranking was cancelled (a newer query came)."""


def walk(roots: list[str], cancelled: Callable[[], bool]) -> Iterator[Entry]:
    """Every entry under ``roots`` the original's walker lists (see the
    module docstring); raises :class:`Cancelled` when ``cancelled()``."""
    for root in roots:
        if not os.path.isdir(root):
            continue
        git = _in_git_repo(root)
        # (directory, its path under root, the gitignore specs that apply: (dir prefix, spec))
        stack: list[tuple[str, str, tuple[tuple[str, pathspec.PathSpec], ...]]] = [(root, "", ())]
        while stack:
            if cancelled():
                raise Cancelled
            directory, rel_dir, specs = stack.pop()
            if git:
                spec = _ignore_spec(directory)
                if spec is not None:
                    specs = (*specs, (rel_dir, spec))
            try:
                with os.scandir(directory) as it:
                    entries = list(it)
            except OSError:
                continue
            for entry in entries:
                if entry.name == ".git":
                    continue
                rel = f"{rel_dir}{entry.name}"
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                except OSError:
                    continue
                if specs and _ignored(specs, rel, is_dir):
                    continue
                if is_dir:
                    stack.append((entry.path, rel + "/", specs))
                yield root, rel, is_dir


class Ranker:
    """The best ``limit`` entries for one query so far: entries are added
    in batches (a session ranks its walk as it grows), and :meth:`results`
    can be read between them. Memory is the heap's, whatever is added."""

    def __init__(self, query: str, limit: int = MATCH_LIMIT) -> None:
        self.needle = query.lower()
        self.limit = limit
        self._best: list[tuple[tuple[int, _Rev], int, Match]] = []  # a min-heap of the best so far
        self._order = itertools.count()

    def add(self, entries: Iterable[Entry], cancelled: Callable[[], bool]) -> None:
        """Rank ``entries``; raises :class:`Cancelled` when ``cancelled()``."""
        needle, best, limit = self.needle, self._best, self.limit
        if not needle:
            return
        for n, (root, rel, is_dir) in enumerate(entries):
            if n % 1024 == 0 and cancelled():
                raise Cancelled
            scored = score_path(rel, needle, is_dir)
            if scored is None:
                continue
            # Ties: the smaller path wins, so it must rank higher in the min-heap.
            key = (scored[0], _Rev(rel))
            item = (key, next(self._order), Match(scored[0], root, rel, is_dir, scored[1]))
            if len(best) < limit:
                heapq.heappush(best, item)
            elif key > best[0][0]:
                heapq.heapreplace(best, item)

    def results(self) -> list[dict]:
        """The best so far, best first (score, then path), as the wire's
        ``FuzzyFileSearchResult``; [] for an empty query."""
        ranked = sorted((m for _, _, m in self._best), key=lambda m: (-m.score, m.path))
        return [m.wire() for m in ranked]


def rank(query: str, entries: Iterable[Entry], cancelled: Callable[[], bool],
         limit: int = MATCH_LIMIT) -> list[dict]:
    """The best ``limit`` of ``entries`` for ``query`` (see :class:`Ranker`).
    Raises :class:`Cancelled` when ``cancelled()``."""
    ranker = Ranker(query, limit)
    ranker.add(entries, cancelled)
    return ranker.results()


def search(query: str, roots: list[str], cancelled: Callable[[], bool],
           limit: int = MATCH_LIMIT) -> list[dict]:
    """One search: walk and rank in one pass (nothing kept). Cancelled, it
    answers the best of what it had walked, as the original's does."""
    if not query:
        return []
    return rank(query, _until_cancelled(walk(roots, cancelled)), lambda: False, limit)


def _until_cancelled(entries: Iterator[Entry]) -> Iterator[Entry]:
    try:
        yield from entries
    except Cancelled:
        return


def index(roots: list[str], cancelled: Callable[[], bool], limit: int, into: list[Entry]) -> None:
    """A session's walk, kept for its queries (as the original's session
    walks once): appended to ``into`` as it goes, so that queries can rank
    what it has found so far (from other threads: they read a prefix); at
    most ``limit`` entries, so memory stays bounded."""
    for entry in itertools.islice(walk(roots, cancelled), limit):
        into.append(entry)


def _ignored(specs: tuple[tuple[str, pathspec.PathSpec], ...], rel: str, is_dir: bool) -> bool:
    for prefix, spec in specs:
        sub = rel[len(prefix):] + ("/" if is_dir else "")
        if spec.match_file(sub):
            return True
    return False


class _Rev(str):
    """A path that sorts in reverse, for the min-heap's tie-break."""

    def __lt__(self, other: str) -> bool:
        return str.__gt__(self, other)

    def __gt__(self, other: str) -> bool:
        return str.__lt__(self, other)
