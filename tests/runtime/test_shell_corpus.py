"""The command-safety verdicts of ~2,900 scripts (see ``harness/shell_corpus.py``)
stay what they were, except where the old hand-written splitter disagreed
with tree-sitter-bash, the parser the original uses: those scripts are in
:data:`EXCEPTIONS`, each with its reason and the verdicts that changed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from harness.shell_corpus import DATA, verdicts

CORPUS: list[dict[str, Any]] = json.loads(DATA.read_text())

#: script → (why the old verdict was wrong, the fields whose verdict changed
#: and their new values).
EXCEPTIONS: dict[str, tuple[str, dict[str, Any]]] = {}


def test_the_corpus_is_large_and_draws_on_every_source() -> None:
    sources = {e["source"] for e in CORPUS}
    assert len(CORPUS) >= 2000 and sources == {"original", "existing", "generated"}


def test_every_exception_is_in_the_corpus_and_gives_a_reason() -> None:
    scripts = {e["script"] for e in CORPUS}
    for script, (reason, changed) in EXCEPTIONS.items():
        assert script in scripts and reason and changed, script


@pytest.mark.parametrize("chunk", range(10))
def test_the_verdicts_of_the_corpus_are_unchanged(chunk: int) -> None:
    differ = []
    for entry in CORPUS[chunk::10]:
        script = entry["script"]
        expected = {k: v for k, v in entry.items() if k not in ("script", "source")}
        expected.update(EXCEPTIONS.get(script, ("", {}))[1])
        got = verdicts(script)
        if got != expected:
            differ.append((script, {k: (expected[k], got[k]) for k in got if got[k] != expected[k]}))
    assert differ == []
