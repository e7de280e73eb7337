"""``exec`` without ``--json``: the transcript on stderr and the answer on
stdout, as the original's ``event_processor_with_human_output.rs`` prints
them (same words, same ANSI styles).

stderr gets the header (version, workdir, model, provider, approval,
sandbox, reasoning, session id), the prompt, each command with its output,
each patch, the plan, the reasoning summaries, warnings and errors, the
agent's messages and a final ``tokens used`` line. stdout gets the final
answer alone (unless both streams are terminals, where it is already on
screen), so ``answer=$(trio-codex exec …)`` works.

While a turn runs and nothing else is printing, a terminal stderr shows a
progress line, erased before anything else is written (the transcript is
the original's, byte for byte, once it is gone).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from .events import final_message, with_details
from ..server.info import PROTOCOL_VERSION

#: The release exec's banner names: the one whose protocol the server speaks.
VERSION = PROTOCOL_VERSION
_CODES = {"bold": 1, "dimmed": 2, "italic": 3, "red": 31, "green": 32, "yellow": 33, "magenta": 35, "cyan": 36}
_SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


def supports_color(stream: TextIO, env: dict[str, str] | None = None) -> bool:
    """``--color auto``: a terminal that is not ``TERM=dumb`` and no
    ``NO_COLOR``."""
    env = dict(os.environ) if env is None else env
    return isatty(stream) and env.get("TERM") != "dumb" and not env.get("NO_COLOR")


def isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def sandbox_summary(policy: dict[str, Any]) -> str:
    """The header's ``sandbox:`` value for a v2 sandbox policy."""
    kind = policy.get("type")
    if kind == "dangerFullAccess":
        return "danger-full-access"
    if kind == "externalSandbox":
        summary = "external-sandbox"
        return summary + (" (network access enabled)" if policy.get("networkAccess") == "enabled" else "")
    network = " (network access enabled)" if policy.get("networkAccess") else ""
    if kind != "workspaceWrite":
        return "read-only" + network
    roots = ["workdir"]
    if not policy.get("excludeSlashTmp"):
        roots.append("/tmp")
    if not policy.get("excludeTmpdirEnvVar"):
        roots.append("$TMPDIR")
    roots += policy.get("writableRoots") or []
    return f"workspace-write [{', '.join(roots)}]{network}"


def blended_total(usage: dict[str, Any]) -> int:
    """The ``tokens used`` figure: uncached input plus output."""
    cached = max(usage.get("cachedInputTokens", 0), 0)
    return max(max(usage.get("inputTokens", 0) - cached, 0) + max(usage.get("outputTokens", 0), 0), 0)


class HumanOutput:
    """The human view of one exec run; see the module docstring."""

    def __init__(self, err: TextIO, out: TextIO, *, ansi: bool, last_message_file: str | None = None,
                 show_reasoning: bool = True) -> None:
        self.err = err
        self.out = out
        self.ansi = ansi
        self.last_message_file = last_message_file
        self.show_reasoning = show_reasoning
        self.final_message: str | None = None
        self.rendered = False
        self.completed = False
        self.usage: dict[str, Any] | None = None
        self._progress_shown = False
        self._ticks = 0

    # --- styling and writing ---------------------------------------------------

    def _style(self, text: str, *styles: str) -> str:
        """``text.style(a).style(b)`` of owo_colors: the last style outermost."""
        if not self.ansi:
            return text
        for style in styles:
            text = f"\x1b[{_CODES[style]}m{text}\x1b[0m"
        return text

    def _say(self, text: str) -> None:
        self.clear_progress()
        self.err.write(text + "\n")
        self.err.flush()

    def progress(self, elapsed: float) -> None:
        """Redraw the progress line (a terminal stderr only)."""
        self._ticks += 1
        self.err.write(f"\r\x1b[2K{_SPINNER[self._ticks % len(_SPINNER)]} Working ({int(elapsed)}s)")
        self.err.flush()
        self._progress_shown = True

    def clear_progress(self) -> None:
        if self._progress_shown:
            self.err.write("\r\x1b[2K")
            self._progress_shown = False

    # --- what the run reports -------------------------------------------------------

    def header(self, *, entries: list[tuple[str, str]], prompt: str) -> None:
        self._say(f"OpenAI Codex v{VERSION}\n--------")
        for key, value in entries:
            self._say(f"{self._style(key + ':', 'bold')} {value}")
        self._say("--------")
        self._say(f"{self._style('user', 'cyan')}\n{prompt}")

    def process(self, method: str, params: dict[str, Any]) -> None:
        match method:
            case "configWarning":
                details = params.get("details")
                self._say(f"{self._style('warning:', 'yellow', 'bold')} {params.get('summary', '')}"
                          f"{f' ({details})' if details else ''}")
            case "deprecationNotice":
                self._say(f"{self._style('deprecated:', 'yellow', 'bold')} {params.get('summary', '')}")
                if params.get("details"):
                    self._say(self._style(params["details"], "dimmed"))
            case "error":
                error = params.get("error") or {}
                self._error(with_details(error.get("message", ""), error.get("additionalDetails")))
            case "model/rerouted":
                self._say(f"{self._style('model rerouted:', 'yellow', 'bold')} "
                          f"{params.get('fromModel')} -> {params.get('toModel')}")
            case "item/started":
                self._item_started(params["item"])
            case "item/completed":
                self._item_completed(params["item"])
            case "thread/tokenUsage/updated":
                self.usage = params["tokenUsage"]["total"]
            case "turn/diff/updated":
                if params.get("diff", "").strip():
                    self._say(params["diff"])
            case "turn/plan/updated":
                self._plan(params)
            case "turn/completed":
                self._turn_completed(params["turn"])

    def _error(self, message: str) -> None:
        self._say(f"{self._style('ERROR:', 'red', 'bold')} {message}")

    def _item_started(self, item: dict[str, Any]) -> None:
        match item.get("type"):
            case "commandExecution":
                self._say(f"{self._style('exec', 'italic', 'magenta')}\n"
                          f"{self._style(item.get('command', ''), 'bold')} in {item.get('cwd', '')}")
            case "mcpToolCall":
                self._say(f"{self._style('mcp:', 'bold')} "
                          f"{self._style(item.get('server', '') + '/' + item.get('tool', ''), 'cyan')} "
                          f"{self._style('started', 'dimmed')}")
            case "webSearch":
                self._say(f"{self._style('web search:', 'bold')} {item.get('query', '')}")
            case "fileChange":
                self._say(self._style("apply patch", "bold"))

    def _item_completed(self, item: dict[str, Any]) -> None:
        match item.get("type"):
            case "agentMessage":
                self._say(f"{self._style('codex', 'italic', 'magenta')}\n{item.get('text', '')}")
                self.final_message = item.get("text", "")
                self.rendered = True
            case "reasoning":
                text = "\n".join(item.get("summary") or [])
                if self.show_reasoning and text.strip():
                    self._say(self._style(text, "dimmed"))
            case "commandExecution":
                self._command_completed(item)
            case "fileChange":
                status = {"inProgress": "in_progress"}.get(item.get("status", ""), item.get("status", ""))
                self._say(f"{self._style('patch:', 'bold')} {status}")
                for change in item.get("changes", []):
                    self._say(self._style(change.get("path", ""), "dimmed"))
            case "mcpToolCall":
                status = item.get("status", "")
                color = {"completed": "green", "failed": "red"}.get(status, "dimmed")
                shown = self._style({"inProgress": "in_progress"}.get(status, status), color)
                self._say(f"{self._style('mcp:', 'bold')} "
                          f"{self._style(item.get('server', '') + '/' + item.get('tool', ''), 'cyan')} "
                          f"{self._style(f'({shown})', 'dimmed')}")
                if item.get("error"):
                    self._say(self._style(item["error"].get("message", ""), "red"))
            case "webSearch":
                self._say(f"{self._style('web search:', 'bold')} {item.get('query', '')}")
            case "contextCompaction":
                self._say(self._style("context compacted", "dimmed"))

    def _command_completed(self, item: dict[str, Any]) -> None:
        duration = f" in {item['durationMs']}ms" if item.get("durationMs") is not None else ""
        status = item.get("status")
        if status == "completed":
            self._say(self._style(f" succeeded{duration}:", "green"))
        elif status == "failed":
            code = item.get("exitCode")
            self._say(self._style(f" exited {1 if code is None else code}{duration}:", "red"))
        elif status == "declined":
            self._say(self._style(f" declined{duration}:", "yellow"))
        else:
            self._say(self._style(f" in progress{duration}:", "dimmed"))
        output = item.get("aggregatedOutput")
        if output and output.strip():
            self._say(output)

    def _plan(self, params: dict[str, Any]) -> None:
        if params.get("explanation"):
            self._say(self._style(params["explanation"], "italic"))
        for step in params.get("plan", []):
            text = step.get("step", "")
            if step.get("status") == "completed":
                self._say(f"  {self._style('✓', 'green')} {text}")
            elif step.get("status") == "inProgress":
                self._say(f"  {self._style('→', 'cyan')} {text}")
            else:
                self._say(f"  {self._style('•', 'dimmed')} {self._style(text, 'dimmed')}")

    def _turn_completed(self, turn: dict[str, Any]) -> None:
        status = turn.get("status")
        if status == "completed":
            rendered = self.final_message if self.rendered else None
            answer = final_message(turn.get("items") or [])
            if answer is not None:
                self.rendered = rendered == answer
                self.final_message = answer
            self.completed = True
            return
        self.final_message, self.rendered = None, False
        if status == "failed":
            error = turn.get("error")
            if error:
                self._error(with_details(error.get("message", ""), error.get("additionalDetails")))
        else:
            self._say(self._style("turn interrupted", "dimmed"))

    def finish(self) -> None:
        """After the turn: ``-o``, the token line, the answer on stdout."""
        self.clear_progress()
        if self.completed and self.last_message_file is not None:
            write_last_message(self.final_message, self.last_message_file, self._say)
        if self.usage is not None:
            self._say(f"{self._style('tokens used', 'dimmed')}\n{blended_total(self.usage):,}")
        if not self.completed or self.final_message is None:
            return
        if not (isatty(self.out) and isatty(self.err)):
            self.out.write(self.final_message + "\n")
            self.out.flush()
        elif not self.rendered:
            self._say(f"{self._style('codex', 'italic', 'magenta')}\n{self.final_message}")


def write_last_message(message: str | None, path: str, say: Callable[[str], None]) -> None:
    """``-o FILE``: the answer, or nothing and a warning when there is none."""
    try:
        Path(path).write_text(message or "", encoding="utf-8")
    except OSError as exc:
        say(f'Failed to write last message file "{path}": {exc.strerror}')
        return
    if message is None:
        say(f"Warning: no last agent message; wrote empty content to {path}")
