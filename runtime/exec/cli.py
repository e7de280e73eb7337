"""``trio-codex exec``'s command line, as the original's ``codex exec``.

Sans-I/O apart from reading stdin and the schema file at start: it turns
argv into :class:`ExecOptions`, finds the prompt (argument, stdin, or both),
loads ``--output-schema`` and makes the git check, in the original's order
and with its messages. Anything wrong is an :class:`ExecError`, which the
entry point prints as one line and exits 1 with (argv mistakes exit 2, as
clap does).

Shapes accepted (options may come anywhere, as the original's are global)::

    exec [OPTIONS] [PROMPT]
    exec [OPTIONS] resume [SESSION_ID] [PROMPT]
    exec [OPTIONS] resume --last [PROMPT]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


SANDBOX_MODES = ("read-only", "workspace-write", "danger-full-access")

NO_PROMPT_TTY = "No prompt provided. Either specify one as an argument or pipe the prompt into stdin."
NO_PROMPT_STDIN = "No prompt provided via stdin."
NOT_TRUSTED = "Not inside a trusted directory and --skip-git-repo-check was not specified."
FULL_AUTO_WARNING = "warning: `--full-auto` is deprecated; use `--sandbox workspace-write` instead."


class ExecError(Exception):
    """A reason exec cannot run: printed as is, exit 1."""


@dataclass(frozen=True)
class ExecOptions:
    """What ``exec`` was asked to do (the prompt is not read yet)."""

    prompt: str | None = None
    resume: bool = False
    session_id: str | None = None
    last: bool = False
    all: bool = False
    images: tuple[str, ...] = ()
    model: str | None = None
    sandbox: str | None = None
    full_auto: bool = False
    bypass: bool = False
    cd: str | None = None
    add_dirs: tuple[str, ...] = ()
    profile: str | None = None
    config: tuple[str, ...] = ()
    color: str = "auto"
    json: bool = False
    last_message_file: str | None = None
    output_schema: str | None = None
    ephemeral: bool = False
    skip_git_repo_check: bool = False
    thread_source: str | None = None
    no_daemon: bool = False

    def sandbox_mode(self) -> str | None:
        """The sandbox mode the flags ask for (None: the config's)."""
        if self.bypass:
            return "danger-full-access"
        if self.full_auto:
            return "workspace-write"
        return self.sandbox


def add_top_level_flags(parser: argparse.ArgumentParser) -> None:
    """The flags the original takes before the subcommand too (``codex -m M
    exec …``); the subcommand's own flags win over them."""
    parser.add_argument("-m", "--model", dest="top_model", metavar="MODEL", help="model the agent should use")
    parser.add_argument("-s", "--sandbox", dest="top_sandbox", choices=SANDBOX_MODES,
                        help="sandbox for model-generated commands")
    parser.add_argument("-a", "--ask-for-approval", dest="top_approval", metavar="APPROVAL_POLICY",
                        choices=("untrusted", "on-request", "never"),
                        help="when to ask for approval (exec always uses never)")
    parser.add_argument("-C", "--cd", dest="top_cd", metavar="DIR", help="the agent's working root")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="trio-codex exec", description="Run Codex non-interactively.",
        usage="trio-codex exec [OPTIONS] [PROMPT]\n       trio-codex exec [OPTIONS] resume [SESSION_ID] [PROMPT]")
    p.add_argument("args", nargs="*", metavar="PROMPT",
                   help="instructions for the agent; with none or `-`, read from stdin (piped stdin with a "
                        "prompt is appended as a <stdin> block)")
    p.add_argument("-c", "--config", action="append", default=[], metavar="key=value",
                   help="override a config.toml value (parsed as TOML)")
    p.add_argument("--enable", action="append", default=[], metavar="FEATURE", help="-c features.FEATURE=true")
    p.add_argument("--disable", action="append", default=[], metavar="FEATURE", help="-c features.FEATURE=false")
    p.add_argument("-i", "--image", action="extend", nargs="+", default=[], metavar="FILE",
                   help="image(s) to attach to the prompt")
    p.add_argument("-m", "--model", help="model the agent should use")
    p.add_argument("-p", "--profile", help="layer $CODEX_HOME/PROFILE.config.toml over config.toml")
    p.add_argument("-s", "--sandbox", choices=SANDBOX_MODES, help="sandbox for model-generated commands")
    p.add_argument("--full-auto", action="store_true", help="deprecated: --sandbox workspace-write")
    p.add_argument("--dangerously-bypass-approvals-and-sandbox", dest="bypass", action="store_true",
                   help="run commands without a sandbox and skip the git check; EXTREMELY DANGEROUS")
    p.add_argument("-C", "--cd", metavar="DIR", help="the agent's working root")
    p.add_argument("--add-dir", action="append", default=[], metavar="DIR",
                   help="another directory the sandbox lets the agent write")
    p.add_argument("--thread-source", metavar="SOURCE", help="source classification of a new thread")
    p.add_argument("--cyber-access-program", metavar="PROGRAM", help=argparse.SUPPRESS)
    p.add_argument("--skip-git-repo-check", action="store_true", help="allow running outside a Git repository")
    p.add_argument("--ephemeral", action="store_true", help="run without writing session files")
    p.add_argument("--output-schema", metavar="FILE", help="JSON Schema of the model's final response")
    p.add_argument("--color", choices=("always", "never", "auto"), default="auto", help="color in the output")
    p.add_argument("--json", "--experimental-json", dest="json", action="store_true",
                   help="print events to stdout as JSONL")
    p.add_argument("-o", "--output-last-message", metavar="FILE", help="write the agent's last message here")
    p.add_argument("--no-daemon", action="store_true",
                   help="run in-process even when an app-server daemon listens on the control socket")
    p.add_argument("--last", action="store_true", help="resume: the most recent session")
    p.add_argument("--all", action="store_true", help="resume --last: any working directory")
    return p


def parse_exec_args(argv: Sequence[str], top: argparse.Namespace | None = None) -> ExecOptions:
    """``exec``'s arguments (after the word ``exec``), with the top-level
    ``-c``, ``-p``, ``-m``, ``-s``, ``-C`` under them. Exits 2 on a usage
    error, as argparse does."""
    parser = _parser()
    ns = parser.parse_intermixed_args(list(argv))
    words = list(ns.args)
    resume = bool(words) and words[0] == "resume"
    if words and words[0] in ("review", "fork"):
        parser.error(f"`exec {words[0]}` is not supported by trio-codex")
    if resume:
        words = words[1:]
    if len(words) > (2 if resume else 1):
        parser.error(f"unexpected argument '{words[2 if resume else 1]}' found")
    if (ns.last or ns.all) and not resume:
        parser.error("--last and --all go with `exec resume`")
    if ns.full_auto and ns.bypass:
        parser.error("--full-auto cannot be used with --dangerously-bypass-approvals-and-sandbox")
    session_id, prompt = (words + [None, None])[:2] if resume else (None, words[0] if words else None)
    if resume and ns.last and prompt is None:
        session_id, prompt = None, session_id
    features = [f"features.{name}=true" for name in ns.enable] + [f"features.{name}=false" for name in ns.disable]
    return ExecOptions(
        prompt=prompt, resume=resume, session_id=session_id, last=ns.last, all=ns.all,
        images=tuple(part for value in ns.image for part in value.split(",") if part),
        model=ns.model or getattr(top, "top_model", None),
        sandbox=ns.sandbox or getattr(top, "top_sandbox", None),
        full_auto=ns.full_auto, bypass=ns.bypass, cd=ns.cd or getattr(top, "top_cd", None),
        add_dirs=tuple(ns.add_dir), profile=ns.profile or getattr(top, "profile", None),
        config=(*getattr(top, "config", ()), *features, *ns.config), color=ns.color, json=ns.json,
        last_message_file=ns.output_last_message, output_schema=ns.output_schema, ephemeral=ns.ephemeral,
        skip_git_repo_check=ns.skip_git_repo_check, thread_source=ns.thread_source, no_daemon=ns.no_daemon,
    )


def resolve_prompt(options: ExecOptions, *, stdin_is_tty: bool, read_stdin: Callable[[], str],
                   say: Callable[[str], None]) -> str:
    """The prompt, as the original finds it: the argument; stdin with ``-``
    or none (a terminal there is an error); a new session's argument with
    piped stdin gets stdin appended as a ``<stdin>`` block. ``say`` writes
    the progress lines (stderr)."""
    arg = options.prompt
    if arg is not None and arg != "-":
        if options.resume or stdin_is_tty:
            return arg
        say("Reading additional input from stdin...")
        extra = _read(read_stdin)
        if not extra.strip():
            return arg
        return f"{arg}\n\n<stdin>\n{extra}{'' if extra.endswith(chr(10)) else chr(10)}</stdin>"
    forced = arg == "-"
    if stdin_is_tty and not forced:
        raise ExecError(NO_PROMPT_TTY)
    if not forced:
        say("Reading prompt from stdin...")
    text = _read(read_stdin)
    if not text.strip():
        raise ExecError(NO_PROMPT_STDIN)
    return text


def _read(read_stdin: Callable[[], str]) -> str:
    try:
        return read_stdin()
    except (OSError, UnicodeDecodeError) as exc:
        raise ExecError(f"Failed to read prompt from stdin: {exc}") from None


def read_stdin() -> str:
    """All of stdin, as UTF-8."""
    return sys.stdin.buffer.read().decode("utf-8")


def load_output_schema(path: str | None) -> Any:
    """The ``--output-schema`` file's JSON (None without the flag)."""
    if path is None:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ExecError(f"Failed to read output schema file {path}: {exc.strerror} (os error {exc.errno})") from None
    except UnicodeDecodeError as exc:
        raise ExecError(f"Output schema file {path} is not valid JSON: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ExecError(f"Output schema file {path} is not valid JSON: {exc.msg} at line {exc.lineno} "
                        f"column {exc.colno}") from None


def check_git_repo(options: ExecOptions, cwd: str) -> None:
    """The original runs only inside a Git repository unless told otherwise
    (``--skip-git-repo-check``, or no sandbox at all)."""
    from ..persistence.git import in_repository  # exec only: kept off the app-server's start-up

    if not (options.skip_git_repo_check or options.bypass) and not in_repository(cwd):
        raise ExecError(NOT_TRUSTED)
