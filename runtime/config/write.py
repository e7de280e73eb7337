"""Writes to the user's ``config.toml`` as the original's ``config/value/write``,
``config/batchWrite`` and ``modelProvider/default/set`` make them.

The file is edited in place with tomlkit, so the user's comments, key order
and formatting survive; only the edited keys change. A write is one
read-modify-write with no await inside, so two clients' writes never
interleave on the one event loop; the new text replaces the file atomically
(a temporary file renamed over it), so a crash leaves the old file or the
new one, never half of either.

Semantics traced against codex-cli 0.171.0:
- ``keyPath`` is dotted; each edit is ``replace`` (the value replaces what is
  there; ``null`` removes the key) or ``upsert`` (a table merges into the
  existing table, key by key; anything else replaces).
- ``expectedVersion``, when given, must be the version of the file as it is
  (``sha256:`` of its canonical JSON), else ``configVersionConflict``.
- The result is validated as a config layer; a bad value is
  ``configValidationError`` naming the key, and nothing is written.
- Only the user's ``config.toml`` may be written (``configLayerReadonly``).
- A key a higher layer sets (``-c``: "session flags") is written all the
  same and answered ``okOverridden`` with that layer and its value.
Errors are -32600 with ``data: {config_write_error_code}``, as the original's.
"""

from __future__ import annotations

import os
import tempfile
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import tomlkit
import tomlkit.exceptions
from tomlkit.container import Container
from tomlkit.items import InlineTable, Table

from . import ConfigError, check_config_table, config_version
from ..protocol.jsonrpc import INVALID_REQUEST, JsonRpcError
from ..protocol.v2.config import ConfigEdit, ConfigWriteResponse

VERSION_CONFLICT = "Configuration was modified since last read. Fetch latest version and retry."


def write_error(code: str, message: str) -> JsonRpcError:
    return JsonRpcError(INVALID_REQUEST, message, {"config_write_error_code": code})


def apply_edits(config_file: Path, edits: list[ConfigEdit], *, expected_version: str | None = None,
                file_path: str | None = None, above: Sequence[dict[str, Any]] = ()) -> ConfigWriteResponse:
    """Apply *edits* to *config_file* (all or none) and answer as the original.

    *above* are the layers that take precedence over the user's file
    (``config/read``'s layers: ``{name, version, config}``, highest first):
    an edit one of them shadows is answered ``okOverridden``, saying which.

    Raises:
      JsonRpcError: a conflict, a bad key path or value, or another file.
    """
    if file_path is not None and Path(file_path).resolve() != config_file.resolve():
        raise write_error("configLayerReadonly", "Only writes to the user config are allowed")
    try:
        text = config_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    except OSError as exc:
        raise write_error("configValidationError", f"cannot read {config_file}: {exc.strerror}") from None
    try:
        doc = tomlkit.parse(text)
    except tomlkit.exceptions.ParseError as exc:
        raise write_error("configValidationError", f"Invalid configuration: {exc}") from None
    if expected_version is not None and expected_version != config_version(doc.unwrap()):
        raise write_error("configVersionConflict", VERSION_CONFLICT)
    try:
        for edit in edits:
            _apply(doc, edit)
    except (ValueError, TypeError) as exc:  # a value TOML cannot hold there (a null in an array, ...)
        raise write_error("configValidationError", f"Invalid configuration: {exc}") from None
    table = doc.unwrap()
    try:
        check_config_table(table)
        _check_integers(table, ())
    except ConfigError as exc:
        where = f"\nin `{exc.key}`\n" if exc.key else ""
        raise write_error("configValidationError", f"Invalid configuration: {exc}{where}") from None
    if edits:
        text = tomlkit.dumps(doc)
        try:
            tomllib.loads(text)  # never leave a file the next start cannot read
        except tomllib.TOMLDecodeError as exc:
            raise write_error("configValidationError", f"Invalid configuration: {exc}") from None
        _replace(config_file, text)
    shadow = next((found for edit in edits if (found := _overridden(edit.key_path, above)) is not None), None)
    return ConfigWriteResponse(status="ok" if shadow is None else "okOverridden", version=config_version(table),
                               file_path=str(config_file), overridden_metadata=shadow)


def _overridden(key_path: str, above: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """What shadows *key_path* (``OverriddenMetadata``), or None."""
    for layer in above:
        node: Any = layer["config"]
        for part in key_path.split("."):
            if not isinstance(node, dict) or part not in node:
                break
            node = node[part]
        else:
            name = layer["name"]
            message = ("Overridden by session flags" if name.get("type") == "sessionFlags"
                       else f"Overridden by {name.get('file') or name.get('type')}")
            return {"message": message, "overridingLayer": {"name": name, "version": layer["version"]},
                    "effectiveValue": node}
    return None


def _check_integers(value: Any, path: tuple[str, ...]) -> None:
    """TOML integers are 64-bit: JSON may carry larger ones."""
    if isinstance(value, dict):
        for key, item in value.items():
            _check_integers(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_integers(item, (*path, str(index)))
    elif isinstance(value, int) and not isinstance(value, bool) and not -2**63 <= value < 2**63:
        raise ConfigError(f"integer `{value}` is out of range for a TOML integer", key=".".join(path))


def _apply(doc: Container, edit: ConfigEdit) -> None:
    if not edit.key_path:
        raise write_error("configValidationError", "keyPath must not be empty")
    *parents, leaf = edit.key_path.split(".")
    node: Any = doc
    for part in parents:
        child = node.get(part)
        if child is None:
            if edit.value is None:
                return  # removing a key under a table that is not there
            child = tomlkit.table()
            node[part] = child
        elif not isinstance(child, (Table, Container, dict)):
            raise write_error("configValidationError", "cannot set value on non-table parent")
        node = child
    if edit.value is None:
        node.pop(leaf, None)
    elif edit.merge_strategy == "upsert" and isinstance(edit.value, dict) and isinstance(node.get(leaf), dict):
        _merge(node[leaf], edit.value)
    else:
        node[leaf] = _item(edit.value, isinstance(node, InlineTable))


def _merge(table: Any, value: dict[str, Any]) -> None:
    for key, item in value.items():
        if isinstance(item, dict) and isinstance(table.get(key), dict):
            _merge(table[key], item)
        elif item is None:
            table.pop(key, None)
        else:
            table[key] = _item(item, isinstance(table, InlineTable))


def _item(value: Any, inline: bool) -> Any:
    """A value as tomlkit writes it: a table as a ``[section]``, or inline
    within an inline table (which cannot hold a section)."""
    if isinstance(value, dict):
        table = tomlkit.inline_table() if inline else tomlkit.table()
        for key, item in value.items():
            if item is not None:
                table[key] = _item(item, inline)
        return table
    return value


def _replace(path: Path, text: str) -> None:
    """Write *text* to *path* atomically, keeping the file private (0600
    for a new file, its mode for an existing one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o600
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".config.toml.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
