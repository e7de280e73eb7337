"""Names between the two vocabularies a rollout bridges: the core's
snake_case (what the file holds) and the v2 protocol's camelCase (what
``thread/read`` shows), for keys and for enum values alike."""

from __future__ import annotations

import re
from typing import Any

_UPPER = re.compile(r"(?<!^)(?=[A-Z])")


def camel(name: str) -> str:
    """``open_page`` -> ``openPage``."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def snake(name: str) -> str:
    """``userShell`` -> ``user_shell``."""
    return _UPPER.sub("_", name).lower()


def camelize(value: Any) -> Any:
    """snake_case keys and string values -> camelCase, recursively: the
    rollout's ``codex_error_info`` as the v2 ``codexErrorInfo``."""
    if isinstance(value, str):
        return camel(value)
    if isinstance(value, dict):
        return {camel(k): v if isinstance(v, (int, float)) or v is None else camelize(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [camelize(v) for v in value]
    return value


def snakeize(value: Any) -> Any:
    """The inverse of :func:`camelize`: a v2 ``codexErrorInfo`` as the
    rollout's snake_case ``codex_error_info``."""
    if isinstance(value, str):
        return snake(value)
    if isinstance(value, dict):
        return {snakeize(k): v if isinstance(v, (int, float)) or v is None else snakeize(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [snakeize(v) for v in value]
    return value
