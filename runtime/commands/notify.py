"""``notify = ["program", "arg", …]`` in config.toml: after each turn that
completes, the program runs with the original's JSON payload as its last
argument::

    {"type":"agent-turn-complete","thread-id":…,"turn-id":…,"cwd":…,
     "client":…,"input-messages":[…],"last-assistant-message":…}

It is detached from the turn: the thread waits only for the program to be
spawned (its own session, no stdin, output discarded), never for it to end;
a watcher beside the thread kills the program's process group once it has
run :data:`NOTIFY_TIMEOUT` seconds. A program that cannot start, fails, or is
killed is logged (warning) and changes nothing else. When the server stops
first, the program is left to finish on its own, as the original leaves its
notifier (that is what lets ``exec`` exit right after its turn).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
from collections.abc import Sequence

import trio

log = logging.getLogger("trio_codex.notify")

#: How long a notifier may run before it is killed (the original's
#: ``LEGACY_NOTIFY_TIMEOUT``).
NOTIFY_TIMEOUT = 10.0
#: How long the watcher waits for a killed notifier to be reaped.
REAP_TIMEOUT = 1.0


def notify_payload(*, thread_id: str, turn_id: str, cwd: str, client: str | None, input_messages: Sequence[str],
                   last_assistant_message: str | None) -> str:
    """The payload, compact JSON with the original's keys in its order
    (``client`` only when the turn's client is known)."""
    payload: dict[str, object] = {"type": "agent-turn-complete", "thread-id": thread_id, "turn-id": turn_id,
                                  "cwd": cwd}
    if client:
        payload["client"] = client
    payload["input-messages"] = list(input_messages)
    payload["last-assistant-message"] = last_assistant_message
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


async def run_notifier(argv: Sequence[str], payload: str, *, timeout: float = NOTIFY_TIMEOUT,
                       task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Spawn ``argv`` with ``payload`` appended (``started`` once spawned),
    then watch it for at most ``timeout`` seconds."""
    try:
        proc = await trio.lowlevel.open_process(
            [*argv, payload], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
    except OSError as exc:
        log.warning("notify: cannot run %s: %s", argv[0], exc)
        task_status.started()
        return
    task_status.started()
    with trio.move_on_after(timeout):
        code = await proc.wait()
        if code != 0:
            log.warning("notify: %s exited with status %d", argv[0], code)
        return
    log.warning("notify: %s still ran after %.0f s; killed", argv[0], timeout)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    with trio.move_on_after(REAP_TIMEOUT):
        await proc.wait()
