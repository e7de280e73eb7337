"""The environment a command is spawned with, as the original derives it
from the server's (``[shell_environment_policy]``, ``shell_environment.rs``):
what it inherits, what it never inherits, what the policy sets, and the
thread id it is told."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Literal

import msgspec

__all__ = ["CORE_ENV_VARS", "NON_INHERITABLE_ENV_VARS", "THREAD_ID_ENV_VAR", "ShellEnvironmentPolicy", "create_env"]

#: ``inherit = "core"`` keeps these (``shell_environment.rs``).
CORE_ENV_VARS = ("PATH", "SHELL", "TMPDIR", "TEMP", "TMP", "HOME", "LANG", "LC_ALL",
                 "LC_CTYPE", "LOGNAME", "USER")
#: Launch context no command may inherit, whatever the policy says.
NON_INHERITABLE_ENV_VARS = ("CODEX_EXEC_SERVER_NOISE_AUTH_TOKEN", "NODE_REPL_AUTH_TOKEN",
                            "OPENAI_FEDERATION_RULE_ID", "OPENAI_IDENTITY_TOKEN_FILE",
                            "OPENAI_WORKLOAD_IDENTITY_CONTEXT")
THREAD_ID_ENV_VAR = "CODEX_THREAD_ID"
_DEFAULT_EXCLUDES = ("*KEY*", "*SECRET*", "*TOKEN*")


class ShellEnvironmentPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """``[shell_environment_policy]``: how a command's environment is derived
    from the server's. The defaults are the original's
    (``codex-rs/config/src/types.rs``): inherit everything and keep names with
    KEY/SECRET/TOKEN (``ignore_default_excludes = true``); set it to
    ``false`` to drop them. Patterns are case-insensitive globs (``*``,
    ``?``)."""

    inherit: Literal["all", "core", "none"] = "all"
    ignore_default_excludes: bool = True
    exclude: tuple[str, ...] = ()
    set: dict[str, str] = {}
    include_only: tuple[str, ...] = ()


def create_env(base: Mapping[str, str], policy: ShellEnvironmentPolicy = ShellEnvironmentPolicy(),
               *, thread_id: str | None = None) -> dict[str, str]:
    """A command's environment from ``base`` (usually ``os.environ``), in the
    original's order: inherit, drop the default excludes unless ignored,
    drop ``exclude``, apply ``set``, keep only ``include_only`` (if any),
    add ``CODEX_THREAD_ID``; names in :data:`NON_INHERITABLE_ENV_VARS` are
    always removed."""
    if policy.inherit == "all":
        env = dict(base)
    elif policy.inherit == "core":
        core = _globs(CORE_ENV_VARS)
        env = {k: v for k, v in base.items() if core.fullmatch(k)}
    else:
        env = {}
    if not policy.ignore_default_excludes:
        env = _drop(env, _globs(_DEFAULT_EXCLUDES))
    if policy.exclude:
        env = _drop(env, _globs(policy.exclude))
    env.update(policy.set)
    if policy.include_only:
        keep = _globs(policy.include_only)
        env = {k: v for k, v in env.items() if keep.fullmatch(k)}
    if thread_id is not None:
        env[THREAD_ID_ENV_VAR] = thread_id
    return _drop(env, _globs(NON_INHERITABLE_ENV_VARS))


def _globs(patterns: Sequence[str]) -> re.Pattern[str]:
    alternatives = (re.escape(p).replace(r"\*", ".*").replace(r"\?", ".") for p in patterns)
    return re.compile("|".join(f"(?:{a})" for a in alternatives), re.IGNORECASE | re.DOTALL)


def _drop(env: dict[str, str], pattern: re.Pattern[str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if not pattern.fullmatch(k)}
