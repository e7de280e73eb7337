"""The original's error wording, which is serde's: one place for it.

The original (Rust) reports bad JSON params and bad config.toml values with
serde's messages (``missing field `x```, ``invalid type: integer, expected a
string``, ``unknown variant `x`, expected `a` or `b```). We validate with
msgspec, so its messages are reworded here, sans-I/O, for the three users:

* :func:`serde_message` rewords a msgspec validation message about JSON
  params (:mod:`.codec`), keeping msgspec's path, which serde's lack;
* :func:`toml_message` rewords one about a config.toml value (serde over
  TOML names kinds differently: ``a table``, and shows the value);
* the serde_json reader (:mod:`.serde_reader`), which reports like serde_json
  itself, builds its messages from :func:`unknown_variant`,
  :func:`expected_fields`, :func:`invalid_type` and :func:`invalid_integer`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "at_path",
    "expected_fields",
    "invalid_integer",
    "invalid_type",
    "one_of",
    "serde_message",
    "toml_message",
    "unknown_variant",
    "value_kind",
]


def one_of(names: Sequence[str]) -> str:
    """serde's list of what it expected: ```a```, ```a` or `b```, ``one of `a`, `b`, `c```."""
    quoted = [f"`{name}`" for name in names]
    if len(quoted) == 1:
        return quoted[0]
    if len(quoted) == 2:
        return f"{quoted[0]} or {quoted[1]}"
    return "one of " + ", ".join(quoted)


def unknown_variant(value: str, variants: Sequence[str]) -> str:
    return f"unknown variant `{value}`, expected {one_of(variants)}"


def expected_fields(names: Sequence[str]) -> str:
    """The tail of serde's ``unknown field `x`, ...``."""
    return f"expected {one_of(names)}" if names else "there are no fields"


def invalid_type(got: str, expected: str) -> str:
    return f"invalid type: {got}, expected {expected}"


def invalid_integer(value: int | float, rust: str) -> str:
    """An integer outside its field's Rust type (``expected u16``)."""
    return f"invalid value: integer `{value}`, expected {rust}"


def at_path(path: str | None) -> str:
    """msgspec's path as a suffix (serde's messages have none)."""
    return f" at `{path}`" if path else ""


# --- JSON params (serde_json) --------------------------------------------------

_MISSING = re.compile(r"^Object missing required field `([^`]+)`(?: - at `\$\.?(.*)`)?$")
_TYPE = re.compile(r"^Expected `([^`]+)`, got `([^`]+)`(?: - at `\$\.?(.*)`)?$")
_ENUM = re.compile(r"^Invalid enum value (.+?)(?: - at `\$\.?(.*)`)?$")
_SERDE_TYPES = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean",
    "object": "a map",
    "array": "a sequence",
    "null": "unit",
}


def serde_message(msg: str, variants_at: Callable[[str], Sequence[str] | None] | None = None) -> str:
    """Reword a msgspec validation message the way the original's serde says
    it (``missing field `x```, ``invalid type: integer, expected a string``,
    ``unknown variant `x`, expected `a` or `b``` when ``variants_at(path)``
    names the variants of the enum at msgspec's path), keeping msgspec's
    path, which serde's messages lack."""
    if m := _MISSING.match(msg):
        field, path = m.groups()
        return f"missing field `{field}`" + at_path(path)
    if m := _TYPE.match(msg):
        want, got, path = m.groups()
        got_word = {"int": "integer", "str": "string", "float": "floating point"}.get(got, got)
        # serde names an Option<T> by its T alone.
        wants = [w.strip() for w in want.split("|") if w.strip() != "null"] or ["null"]
        want_words = " or ".join(_SERDE_TYPES.get(w, w) for w in wants)
        return invalid_type(got_word, want_words) + at_path(path)
    if m := _ENUM.match(msg):
        value, path = m.groups()
        if variants_at is not None and (variants := variants_at(path or "")):
            return unknown_variant(value.strip("'"), variants) + at_path(path)
        return f"unknown variant {value}" + at_path(path)
    return msg


# --- config.toml values (serde over TOML) --------------------------------------

_KIND_NAMES = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "bool": "a boolean",
    "array": "an array",
    "object": "a table",
    "datetime": "a date-time",
    "date": "a date",
    "time": "a time",
}


def toml_message(reason: str, value: Any) -> str:
    """Reword msgspec's *reason* (its message without the path) about a TOML
    *value* the way the original says it. Unknown variants are the caller's:
    only it knows the variants as the original lists them."""
    if found := re.fullmatch(r"Expected `(.+)`, got `\w+`", reason):
        return f"expected {_kinds(found[1])}, got {_show(value)}"
    if found := re.fullmatch(r"Expected `(.+)` (>=|<=|>|<) (-?\d+)", reason):
        return f"expected {_kinds(found[1])} {found[2]} {found[3]}, got {_show(value)}"
    if found := re.fullmatch(r"Object missing required field `(\w+)`", reason):
        return f"missing field `{found[1]}`"
    return reason[:1].lower() + reason[1:]


def value_kind(value: Any) -> str:
    """msgspec's name for the type of a value that came from TOML."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return type(value).__name__


def _kinds(expected: str) -> str:
    # msgspec's "str | null": a missing key is fine, so null is not news.
    kinds = [kind for kind in expected.split(" | ") if kind != "null"]
    return " or ".join(_KIND_NAMES.get(kind, f"`{kind}`") for kind in kinds)


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (dict, list)):
        return _KIND_NAMES[value_kind(value)]
    return str(value)
