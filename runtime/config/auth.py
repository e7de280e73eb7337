"""The stored login: ``$CODEX_HOME/auth.json``, as the original writes it for
``account/login/start {type: "apiKey"}`` (``{"auth_mode": "apikey",
"OPENAI_API_KEY": ...}``, mode 0600) and removes it on ``account/logout``.
Providers that require OpenAI auth (the built-in ``openai``) take their key
from it."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

AUTH_FILE = "auth.json"


def read_api_key(codex_home: Path) -> str | None:
    """The stored API key, or None (no login, or a file we cannot use)."""
    try:
        stored = json.loads((codex_home / AUTH_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    key = stored.get("OPENAI_API_KEY") if isinstance(stored, dict) else None
    return key if isinstance(key, str) and key else None


def store_api_key(codex_home: Path, api_key: str) -> None:
    """Replace the stored login with *api_key*: created 0600 from the start
    (never readable by others, even for a moment), renamed into place."""
    codex_home.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"auth_mode": "apikey", "OPENAI_API_KEY": api_key}, indent=2)
    fd, tmp = tempfile.mkstemp(dir=codex_home, prefix=".auth.json.")  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, codex_home / AUTH_FILE)
    except BaseException:
        os.unlink(tmp)
        raise


def remove(codex_home: Path) -> bool:
    """Forget the stored login; whether there was one."""
    try:
        (codex_home / AUTH_FILE).unlink()
    except FileNotFoundError:
        return False
    return True
