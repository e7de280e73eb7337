"""The fuzzy file search's scores: each case traced from the original
0.169 (its ``fuzzyFileSearch`` answers: score and highlighted indices)."""

from __future__ import annotations

import pytest

from trio_codex.runtime.files.file_search import score_path

TRACED = [
    ("src/main.rs", "main", False, 65645, [4, 5, 6, 7]),
    ("src/deep/mod_main.rs", "main", False, 65640, [13, 14, 15, 16]),
    ("src", "src", True, 131156, [0, 1, 2]),
    ("src/deep", "src", True, 84, [0, 1, 2]),
    ("src/main.rs", "src", False, 84, [0, 1, 2]),
    (".gitignore", "ign", False, 65592, [4, 5, 6]),
    (".hid/hfile", "hfile", False, 196742, [5, 6, 7, 8, 9]),
    (".hfile2", "hfile", False, 65664, [1, 2, 3, 4, 5]),
    ("ign/x.txt", "x", False, 65570, [4]),
    ("ok.txt", "x", False, 65552, [4]),
    ("keep.txt", "txt", False, 65616, [5, 6, 7]),
    ("src/mod0/f1.txt", "src/mod", False, 184, [0, 1, 2, 3, 4, 5, 6]),
    ("abc/fooBar.rs", "fb", False, 65587, [4, 7]),
    ("abc/foo_bar2.rs", "fb", False, 65589, [4, 8]),
    ("abc/fooBar.rs", "abcbar", False, 141, [0, 1, 2, 7, 8, 9]),
    ("abc/foo_bar2.rs", "abcbar", False, 149, [0, 1, 2, 8, 9, 10]),
]


@pytest.mark.parametrize(("path", "query", "is_dir", "score", "indices"), TRACED)
def test_a_path_scores_as_the_original_scored_it(path: str, query: str, is_dir: bool, score: int,
                                                 indices: list[int]) -> None:
    assert score_path(path, query, is_dir) == (score, indices)


def test_a_path_that_does_not_hold_the_query_in_order_does_not_match() -> None:
    assert score_path("src/main.rs", "nim", False) is None
