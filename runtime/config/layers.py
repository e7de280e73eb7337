"""The configuration's layers: read, merged, and described for ``config/read``.

From lowest to highest precedence the layers are ``$CODEX_HOME/config.toml``,
then ``$CODEX_HOME/<profile>.config.toml`` when a profile is selected (the
original's ``--profile``), then the ``-c key=value`` overrides in order, then
``thread/start``'s ``config`` flags. Tables merge key by key, and any other
value replaces what is below it. Each layer's ``version`` is the original's
hash of its table. The rules come from codex-rs (the ``config`` crate's
loader and merge, the ``-c`` parser in ``utils/cli``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from .errors import ConfigError

__all__ = [
    "CONFIG_TOML_FILE",
    "MISSING",
    "PROFILE_CONFIG_SUFFIX",
    "Layer",
    "lookup",
    "merge",
    "origins",
    "parse_override",
    "read_layers",
    "version",
]

CONFIG_TOML_FILE = "config.toml"
PROFILE_CONFIG_SUFFIX = ".config.toml"


def parse_override(text: str) -> tuple[tuple[str, ...], object]:
    """Parse one ``-c key=value`` as the original does.

    The key is a dotted path, split on every ``.``. The value is read as a
    TOML value. If it is not valid TOML, it is kept as a plain string with
    surrounding quotes stripped, so ``-c model=o3`` gives ``"o3"``. Only the
    first ``=`` splits, so values may contain ``=``.
    """
    key, sep, raw = text.partition("=")
    if not sep:
        raise ConfigError(f"Invalid override (missing '='): {text}")
    key, raw = key.strip(), raw.strip()
    if not key:
        raise ConfigError(f"Empty key in override: {text}")
    try:
        value = tomllib.loads(f"_x_ = {raw}")["_x_"]
    except tomllib.TOMLDecodeError:
        value = raw.strip("\"'")
    if key == "use_legacy_landlock":  # the original's one key alias
        key = "features.use_legacy_landlock"
    return tuple(key.split(".")), value


class Layer(msgspec.Struct, frozen=True):
    name: dict[str, Any]  # the protocol's ConfigLayerSource
    config: dict[str, Any]
    file: Path | None  # None for the -c and thread/start config layers
    #: For a layer with no file: where its values came from, for errors.
    source: str = "-c"

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": version(self.config), "config": self.config}


def read_layers(
    home: Path,
    profile: str | None,
    overrides: Sequence[str],
    session_flags: Mapping[str, object],
    env: Mapping[str, str],
) -> list[Layer]:
    if profile is not None and not re.fullmatch(r"[A-Za-z0-9_-]+", profile):
        raise ConfigError(f"invalid --profile value `{profile}`; pass a plain name such as `work`")
    user_file = home / CONFIG_TOML_FILE
    base = Layer(
        {"type": "user", "file": str(user_file), "profile": None},
        _read_toml(user_file, env),
        user_file,
    )
    layers = [base]
    if profile is not None:
        profile_file = home / f"{profile}{PROFILE_CONFIG_SUFFIX}"
        legacy_tables = base.config.get("profiles")
        if base.config.get("profile") == profile or (
            isinstance(legacy_tables, dict) and profile in legacy_tables
        ):
            raise ConfigError(
                f"--profile `{profile}` cannot be used while {user_file} contains legacy "
                f'`profile = "{profile}"` or `[profiles.{profile}]` config; move those '
                f"settings into {profile_file} and remove the legacy profile "
                "selector/table. See https://developers.openai.com/codex/config-advanced"
                "#profiles for more information.",
                key="profile",
                file=user_file,
            )
        layers.append(
            Layer(
                {"type": "user", "file": str(profile_file), "profile": profile},
                _read_toml(profile_file, env),
                profile_file,
            )
        )
    if overrides:
        flags: dict[str, Any] = {}
        for text in overrides:
            path, value = parse_override(text)
            _set_path(flags, path, value)
        _absolutize_paths(flags, home, env)
        layers.append(Layer({"type": "sessionFlags"}, flags, None))
    if session_flags:
        request: dict[str, Any] = {}
        for key, value in session_flags.items():
            _set_path(request, key.split("."), _copy_tables(value))
        _absolutize_paths(request, home, env)
        layers.append(Layer({"type": "sessionFlags"}, request, None, "thread/start config"))
    return layers


def _read_toml(file: Path, env: Mapping[str, str]) -> dict[str, Any]:
    try:
        text = file.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Failed to read config file {file}: {exc}", file=file) from None
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        detail, line, column = _toml_error_position(str(exc), text)
        raise ConfigError(f"{file}:{line}:{column}: {detail}", file=file) from None
    _absolutize_paths(table, file.parent, env)
    return table


def _toml_error_position(message: str, text: str) -> tuple[str, int, int]:
    # tomllib ends its messages with "(at line L, column C)" or
    # "(at end of document)".
    found = re.fullmatch(r"(.*) \(at line (\d+), column (\d+)\)", message, re.DOTALL)
    if found:
        return found[1], int(found[2]), int(found[3])
    last_line = text.rsplit("\n", 1)[-1]
    return message.removesuffix(" (at end of document)"), text.count("\n") + 1, len(last_line) + 1


def _absolutize_paths(table: dict[str, Any], base: Path, env: Mapping[str, str]) -> None:
    # The original reads path-typed keys as absolute paths, resolved against
    # the layer's directory. Of those keys, we type only writable_roots.
    section = table.get("sandbox_workspace_write")
    if not isinstance(section, dict) or not isinstance(roots := section.get("writable_roots"), list):
        return
    home = env.get("HOME")
    resolved: list[Any] = []
    for root in roots:
        if isinstance(root, str):
            if home and root.startswith("~/"):
                root = home + root[1:]
            root = os.path.normpath(os.path.join(base, root))
        resolved.append(root)
    section["writable_roots"] = resolved


def _set_path(root: dict[str, Any], path: Sequence[str], value: object) -> None:
    # Intermediate keys that are missing, or hold a non-table, become tables.
    node = root
    for segment in path[:-1]:
        child = node.get(segment)
        if not isinstance(child, dict):
            child = node[segment] = {}
        node = child
    node[path[-1]] = value


def merge(base: dict[str, Any], overlay: dict[str, Any]) -> None:
    for key, value in overlay.items():
        below = base.get(key)
        if isinstance(below, dict) and isinstance(value, dict):
            merge(below, value)
        else:
            base[key] = _copy_tables(value)


def _copy_tables(value: Any) -> Any:
    # The merged table must not share dicts with the layers that config/read
    # returns beside it.
    if isinstance(value, dict):
        return {key: _copy_tables(item) for key, item in value.items()}
    return value


def version(table: dict[str, Any]) -> str:
    # The original hashes compact JSON of the table with keys sorted at
    # every level. Goldens from the 0.169.0 binary are in the tests.
    canonical = json.dumps(
        table, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def origins(layers: Sequence[Layer]) -> dict[str, dict[str, Any]]:
    """``{dotted.key: {name, version}}``: the highest layer setting each leaf."""
    found: dict[str, dict[str, Any]] = {}
    for layer in layers:
        origin = {"name": layer.name, "version": version(layer.config)}
        for key in _leaf_keys(layer.config, ()):
            found[key] = origin
    return found


def _leaf_keys(value: Any, prefix: tuple[str, ...]) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaf_keys(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaf_keys(item, (*prefix, str(index)))
    elif prefix:
        yield ".".join(prefix)


MISSING = object()


def lookup(node: Any, path: Sequence[str]) -> Any:
    for segment in path:
        if isinstance(node, dict) and segment in node:
            node = node[segment]
        elif isinstance(node, list) and segment.isdigit() and int(segment) < len(node):
            node = node[int(segment)]
        else:
            return MISSING
    return node
