"""The command-safety verdicts of ~2,900 scripts (see ``harness/shell_corpus.py``)
stay what the hand-written splitter before tree-sitter-bash decided, except
where that splitter disagreed with tree-sitter-bash, the parser the original
uses: those scripts are listed in ``fixtures/shell_corpus_exceptions.json``,
each with its reason and the verdicts that changed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.shell_corpus import DATA, EXCEPTIONS, verdicts

CORPUS: list[dict[str, Any]] = json.loads(DATA.read_text())
LISTED: dict[str, Any] = json.loads(EXCEPTIONS.read_text())
CHANGED: dict[str, dict[str, Any]] = {e["script"]: e["changed"] for e in LISTED["exceptions"]}


def test_the_corpus_is_large_and_draws_on_every_source() -> None:
    sources = {e["source"] for e in CORPUS}
    assert len(CORPUS) >= 2000 and sources == {"original", "existing", "generated"}


def test_every_exception_is_in_the_corpus_and_gives_a_known_reason() -> None:
    scripts = {e["script"] for e in CORPUS}
    for exception in LISTED["exceptions"]:
        assert exception["script"] in scripts and exception["changed"], exception
        assert exception["reason"] in LISTED["reasons"], exception


@pytest.mark.parametrize("chunk", range(10))
def test_the_verdicts_of_the_corpus_are_unchanged_but_for_the_listed_exceptions(chunk: int) -> None:
    differ = []
    for entry in CORPUS[chunk::10]:
        script = entry["script"]
        expected = {k: v for k, v in entry.items() if k not in ("script", "source")}
        expected.update(CHANGED.get(script, {}))
        got = verdicts(script)
        if got != expected:
            differ.append((script, {k: (expected[k], got[k]) for k in got if got[k] != expected[k]}))
    assert differ == []


FRAGMENTS = ["ls", "rm", "-rf", " ", "\n", "'", '"', "`", "$", "(", ")", "{", "}", "[[", "]]", "<<", "EOF", "|",
             "&&", ";", ";;", "&", "#", "\\", "=", "*", "~", "é", "\x00", "\ud800", "\udfff", "if", "then", "fi"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=30).map("".join))
def test_any_script_gets_verdicts_and_never_raises(script: str) -> None:
    got = verdicts(script)
    assert not (got["safe"] and got["dangerous"])
