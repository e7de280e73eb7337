"""The one exception of the configuration: it names the key and the layer."""

from __future__ import annotations

from pathlib import Path

__all__ = ["ConfigError"]


class ConfigError(Exception):
    """The configuration cannot be used. The message says where and why.

    ``key`` is the dotted key path at fault. ``file`` is the file that set it,
    or None when a ``-c`` override set it or no file is involved.
    """

    def __init__(
        self, message: str, *, key: str | None = None, file: Path | None = None
    ) -> None:
        super().__init__(message)
        self.key = key
        self.file = file
