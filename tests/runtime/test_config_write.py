"""Config writes on awkward files and values: whatever a client sends, the
answer is a write or a ``configValidationError``, and the file left behind
is one the next start can read."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from trio_codex.runtime.config.write import apply_edits
from trio_codex.runtime.protocol.jsonrpc import JsonRpcError
from trio_codex.runtime.protocol.v2.config import ConfigEdit

FILE = '# top\nx = { a = 1 }  # inline\n[[arr]]\nk = 1\n[t]\nv = 2\n'


def write(tmp_path: Path, key: str, value: Any, strategy: str = "replace") -> str:
    config = tmp_path / "config.toml"
    config.write_text(FILE)
    apply_edits(config, [ConfigEdit(key, value, strategy)])  # type: ignore[arg-type]
    return config.read_text()


@pytest.mark.parametrize(("key", "value", "strategy", "expected"), [
    ("x.b", {"c": 1}, "replace", {"a": 1, "b": {"c": 1}}),  # a table inside an inline table stays inline
    ("x", {"z": 2}, "upsert", {"a": 1, "z": 2}),
    ("t", {"v": None, "w": 3}, "upsert", {"w": 3}),  # null removes a key in an upsert too
])
def test_tables_merge_and_nest_where_toml_allows_and_comments_stay(tmp_path: Path, key: str, value: Any,
                                                                   strategy: str, expected: Any) -> None:
    text = write(tmp_path, key, value, strategy)
    assert text.startswith("# top\n") and "# inline" in text
    assert tomllib.loads(text)[key.split(".")[0]] == expected


@pytest.mark.parametrize(("key", "value", "message"), [
    ("arr.k", 1, "cannot set value on non-table parent"),
    ("t.v.w", 1, "cannot set value on non-table parent"),
    ("k", 2**70, "out of range for a TOML integer"),
    ("t.w", [1, None], "Invalid configuration"),
    ("", 1, "keyPath must not be empty"),
])
def test_values_toml_cannot_hold_are_refused_and_the_file_is_untouched(tmp_path: Path, key: str, value: Any,
                                                                       message: str) -> None:
    with pytest.raises(JsonRpcError) as refused:
        write(tmp_path, key, value)
    assert message in str(refused.value)
    assert refused.value.error.data == {"config_write_error_code": "configValidationError"}
    assert (tmp_path / "config.toml").read_text() == FILE


def test_a_new_config_file_is_private(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    apply_edits(config, [ConfigEdit("model", "m", "replace")])
    assert config.stat().st_mode & 0o777 == 0o600 and tomllib.loads(config.read_text()) == {"model": "m"}
