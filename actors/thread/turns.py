"""The thread's turns: start, steer, interrupt, settings, compaction,
revert, approvals, and what happens when a turn ends (functions of
:class:`~.actor.ThreadActor`, which holds the state, bound as its methods)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import msgspec
import trio

from ...runtime.kernel.clock import now_ms
from ...runtime.kernel.errors import StorageFailure
from ...runtime.conversation import collaboration
from ...runtime.conversation.history import message_texts, user_texts
from ...runtime.persistence.history_pages import TurnProjection
from ...runtime.kernel.ids import uuid7
from ...runtime.commands.permissions import Permissions
from ...runtime.commands.notify import notify_payload, run_notifier
from ...runtime.protocol.jsonrpc import (
    ErrorResponse,
    JsonRpcError,
    Response,
    internal_error,
    invalid_request,
)
from ...runtime.protocol.v2.item import (
    AgentMessageItem,
    ItemCompleted,
    ItemStarted,
    TextInput,
    UserMessageItem,
)
from ...runtime.protocol.v2.thread import (
    Active,
    ActivePermissionProfile,
    CollaborationMode,
    Idle,
    ModeSettings,
    SystemError,
    ThreadReadResponse,
    NotLoaded,
    SandboxPolicy,
    ThreadIdParams,
    ThreadRevertResponse,
    ThreadSettings,
    ThreadSettingsUpdated,
)
from ...runtime.protocol.v2.turn import (
    ErrorNotification,
    TokenUsageBreakdown,
    Turn,
    TurnCompleted,
    TurnStarted,
    TurnStartResponse,
    TurnSteerResponse,
    UserInput,
)
from ...runtime.persistence.rollout import (
    ResponseItem,
    TurnAbortedEvent,
    TurnCompleteEvent,
    TurnContext,
    TurnStartedEvent,
    revert_rollout,
    snakeize,
)
from ...runtime.persistence.rollout import TurnError as RolloutTurnError
from ..analytics import facts
from ..messages import (
    ClearApprovals,
    Reply,
    Steered,
    ThreadConfig,
    TurnEnded,
)
from ..rollout_writer import append
from ..turn import TurnSpec, open_turn_mailbox, run_turn, user_message_lines
from .state import Ready, Running, Stopping, TurnHandle, user_history_item

if TYPE_CHECKING:
    from .actor import ThreadActor

log = logging.getLogger("trio_codex.thread")

_INTERRUPT_REASON = "interrupted by the client (turn/interrupt)"


async def _steer(self: ThreadActor, reply: Reply, inputs: tuple[UserInput, ...], expected: str | None) -> None:
    """More input for the running turn: a userMessage item of that turn,
    persisted, then handed to the turn, which samples again with it.
    ``expected`` None: a turn/start that found the turn running, which
    0.169 answers with the running turn. An interrupted turn
    (Stopping) takes no more input, as the original's."""
    turn = self.state.turn if isinstance(self.state, Running) else None
    error, reason = None, None
    if turn is None:
        error, reason = invalid_request("no active turn to steer"), "no_active_turn"
    elif turn.kind == "compact":
        # The original's words: turn/steer says it in a -32600 with the
        # reason in data; turn/start in a -32603 from deeper down.
        error = (internal_error("failed to submit turn input: ActiveTurnNotSteerable { turn_kind: Compact }")
                 if expected is None else invalid_request("cannot steer a compact turn", {
                     "message": "cannot steer a compact turn",
                     "codexErrorInfo": {"activeTurnNotSteerable": {"turnKind": "compact"}},
                     "additionalDetails": None, "misalignment": None}))
        reason = "active_turn_not_steerable"
    elif expected is not None and expected != turn.id:
        error = invalid_request(f"expected active turn id `{expected}` but found `{turn.id}`")
        reason = "expected_turn_mismatch"
    self.recorder.record(facts.Steer(
        thread_id=self.config.id, connection_id=reply.conn.id, expected_turn_id=expected,
        accepted_turn_id=turn.id if error is None and turn else None,
        result="rejected" if error else "accepted", rejection_reason=reason,
        num_input_images=sum(1 for i in inputs if not isinstance(i, TextInput))))
    if error is not None:
        await self._to(reply.conn, ErrorResponse(reply.request_id, error.error))
        return
    assert turn is not None  # no turn is an error above
    result: Any = (TurnSteerResponse(turn.id) if expected is not None else TurnStartResponse(
        Turn(id=turn.id, items=[], status="inProgress", root_turn_id=turn.id)))
    await self._to(reply.conn, Response(reply.request_id, result))
    item = UserMessageItem(id=uuid7(), content=list(inputs))
    raw = user_history_item(list(inputs))
    await self._notify("item/started", ItemStarted(item, self.config.id, turn.id, now_ms()))
    await self._persist(*user_message_lines(item, raw, self.config.id, turn.id))
    await self._notify("item/completed", ItemCompleted(item, self.config.id, turn.id, now_ms()))
    # Coalesced when full: this never waits on the turn.
    turn.mailbox.send_nowait(Steered((raw,)))

async def _apply_settings(self: ThreadActor, settings: ThreadConfig) -> None:
    """Make *settings* the thread's, telling its clients when they differ."""
    if settings == self.config:
        return
    self.config = settings
    await self._notify("thread/settings/updated", ThreadSettingsUpdated(settings.id, ThreadSettings(
        approval_policy=settings.approval_policy, approvals_reviewer=settings.approvals_reviewer,
        collaboration_mode=CollaborationMode(settings.collaboration_mode, ModeSettings(
            model=settings.model, reasoning_effort=settings.reasoning_effort,
            developer_instructions=collaboration.instructions(
                settings.collaboration_mode, settings.mode_instructions)
            if settings.collaboration_mode == "plan"
            else settings.mode_instructions or settings.developer_instructions)),
        cwd=settings.cwd, model=settings.model, model_provider=settings.model_provider,
        sandbox_policy=settings.sandbox, active_permission_profile=settings.permission_profile,
        effort=settings.reasoning_effort, summary=settings.reasoning_summary)))

async def _update_settings(self: ThreadActor, reply: Reply, params: Any, perms: Permissions | None) -> None:
    """thread/settings/update: ``{}``, then ``thread/settings/updated``
    when something changed (0.171.0's order); a running turn keeps its
    settings."""
    settings = await self._requested_settings(reply, params, perms)
    if settings is None:
        return
    await self._to(reply.conn, Response(reply.request_id, {}))
    await self._apply_settings(settings)

async def _start_turn(self: ThreadActor, reply: Reply, params: Any, perms: Permissions | None) -> None:
    settings = await self._requested_settings(reply, params, perms)
    if settings is None:
        return
    mode_changed = (settings.collaboration_mode, settings.mode_instructions) != (
        self.config.collaboration_mode, self.config.mode_instructions)
    await self._apply_settings(settings)
    turn_id = uuid7()
    started_s = int(time.time())
    user_item = UserMessageItem(id=uuid7(), content=params.input)
    if not self.preview:
        self.preview = next((i.text for i in params.input if isinstance(i, TextInput)), "")
    await self._to(reply.conn, Response(reply.request_id, TurnStartResponse(
        Turn(id=turn_id, items=[], status="inProgress", root_turn_id=turn_id))))
    if self.recorder.enabled:
        c = self.config
        policy = c.approval_policy if isinstance(c.approval_policy, str) else "granular"
        self.recorder.record(facts.TurnStarted(thread_id=c.id, turn_id=turn_id))
        self.recorder.record(facts.TurnResolvedConfig(
            thread_id=c.id, turn_id=turn_id, model=c.model, approval_policy=policy,
            sandbox=type(c.sandbox).__name__, model_provider=c.model_provider,
            reasoning_effort=c.reasoning_effort, reasoning_summary=c.reasoning_summary,
            is_first_turn=not self.history))
    c = self.config
    # Past the context limit the turn compacts first, and then records
    # the user's message itself (after the contextCompaction item).
    compact_first = bool(self.history) and c.auto_compact_limit is not None \
        and self.context_tokens >= c.auto_compact_limit
    raw = user_history_item(params.input)
    mode = collaboration.mode_message(c.collaboration_mode, c.mode_instructions) if mode_changed else None
    if mode is not None:
        # The model is told of the new mode before the message.
        self.history += (mode,)
    await self._open_turn(turn_id, started_s)
    if not compact_first:
        await self._notify("item/started", ItemStarted(user_item, c.id, turn_id, now_ms()))
    await self._persist(
        TurnContext(turn_id=turn_id, root_turn_id=turn_id, cwd=c.cwd, approval_policy=c.approval_policy,
                    sandbox_policy=msgspec.to_builtins(c.sandbox),
                    active_permission_profile=_profile_line(c.permission_profile), model=c.model,
                    effort=c.reasoning_effort, summary=c.reasoning_summary or "auto",
                    collaboration_mode={"mode": c.collaboration_mode, "settings": {
                        "model": c.model, "reasoning_effort": c.reasoning_effort,
                        "developer_instructions": c.mode_instructions}}),
        *(() if mode is None else (ResponseItem(mode),)),
        TurnStartedEvent(turn_id=turn_id, root_turn_id=turn_id, started_at=started_s,
                         model_context_window=c.model_context_window),
        *(() if compact_first else user_message_lines(user_item, raw, c.id, turn_id)),
    )
    if not compact_first:
        await self._notify("item/completed", ItemCompleted(user_item, c.id, turn_id, now_ms()))
    await self._launch_turn(turn_id, started_s, "regular", user_item, raw, compact_first, params.output_schema)

async def _requested_settings(self: ThreadActor, reply: Reply, params: Any,
                              perms: Permissions | None) -> ThreadConfig | None:
    """The settings a turn/start or thread/settings/update asks for
    (:meth:`_overrides`), or None once it has been refused for a
    ``sandboxPolicy`` that is not one."""
    try:
        return self._overrides(params, perms)
    except msgspec.ValidationError as exc:
        await self._to(reply.conn, ErrorResponse(reply.request_id, invalid_request(
            f"Invalid request: invalid sandboxPolicy: {exc}").error))
        return None

def _overrides(self: ThreadActor, params: Any, perms: Permissions | None) -> ThreadConfig:
    """The thread's settings with a turn/start's overrides, which last
    for the turns after it too, as the original. Its sandbox changes only
    when the request names one: a ``permissions`` profile, or a
    ``sandboxPolicy`` (which leaves no profile, as the original)."""
    c = self.config
    changes = {name: value for name, value in (
        ("cwd", params.cwd), ("approval_policy", params.approval_policy),
        ("approvals_reviewer", params.approvals_reviewer), ("model", params.model),
        ("reasoning_effort", params.effort), ("reasoning_summary", params.summary),
    ) if value is not None and value != getattr(c, name)}
    if (mode := params.collaboration_mode) is not None:
        # A mode's settings choose the model and effort, as the original's.
        changes.update(collaboration_mode=mode.mode, mode_instructions=mode.settings.developer_instructions)
        if mode.settings.model:
            changes["model"] = mode.settings.model
        if mode.settings.reasoning_effort:
            changes["reasoning_effort"] = mode.settings.reasoning_effort
    if perms is not None:
        changes.update(sandbox=perms.sandbox, permission_profile=perms.profile)
    elif params.sandbox_policy is not None:
        changes.update(sandbox=msgspec.convert(params.sandbox_policy, SandboxPolicy), permission_profile=None)
    return msgspec.structs.replace(c, **changes) if changes else c

async def _compact(self: ThreadActor, reply: Reply) -> None:
    """thread/compact/start: answered at once, then a compact turn."""
    await self._to(reply.conn, Response(reply.request_id, {}))
    await self._compaction()

async def _compaction(self: ThreadActor) -> None:
    """A compact turn now, or once the turn has ended (a regular turn is
    interrupted first, as the original does; a compaction running
    already is enough)."""
    match self.state:
        case Running(turn=turn) if turn.kind == "compact":
            pass
        case Running() | Stopping():
            self._after_turn(self._compaction, "thread/compact/start")
        case _:
            await self._start_compaction()

def _stop(self: ThreadActor, turn: TurnHandle, reason: str) -> None:
    """Cancel the turn; it reports its end (TurnEnded) soon."""
    turn.scope.cancel(reason=reason)
    if isinstance(self.state, Running):
        self.state = Stopping(turn, [])

def _after_turn(self: ThreadActor, then: Callable[[], Awaitable[None]], method: str) -> None:
    """Interrupt the turn, and do ``then`` once it has ended."""
    turn = self._turn()
    assert turn is not None
    self._stop(turn, f"interrupted by the client ({method})")
    assert isinstance(self.state, Stopping)
    self.state.then.append(then)

async def _revert(self: ThreadActor, reply: Reply, before: str | None, num_turns: int | None) -> None:
    """Cut the rollout before a turn (the last ``num_turns`` for the
    legacy thread/rollback) and carry on from what is left, once a
    running turn is interrupted. As the original: the thread shows itself
    reloaded (``notLoaded`` then ``idle``), answers, then
    ``thread/reverted``."""
    if self._turn() is not None:
        self._after_turn(partial(self._revert, reply, before, num_turns), "thread/revert")
        return
    c = self.config
    path = self.rollout_path
    try:
        if c.ephemeral:
            raise invalid_request("ephemeral threads do not support thread/revert")
        if before is None:
            turns = await self._turns()
            if len(turns) < (num_turns or 0):
                raise invalid_request(f"cannot roll back {num_turns} turns: the thread has {len(turns)}")
            before = turns[-(num_turns or 0)].id
        if path is None or not path.exists():
            raise invalid_request(f"turn not found: {before}")
        if self.rollout is not None:
            # Every append was acknowledged: the writer has nothing left.
            self.rollout.close()
            self.rollout = None
        r = await trio.to_thread.run_sync(revert_rollout, path, before)
    except ValueError as exc:
        await self._to(reply.conn, ErrorResponse(reply.request_id, invalid_request(str(exc)).error))
        return
    except StorageFailure as exc:
        await self._to(reply.conn, ErrorResponse(reply.request_id, internal_error(str(exc)).error))
        return
    except JsonRpcError as exc:
        await self._to(reply.conn, ErrorResponse(reply.request_id, exc.error))
        return
    self.history, self.next_ordinal = tuple(r.history), r.next_ordinal
    self.projection = TurnProjection(str(path), r.builder, r.consumed)
    usage = r.token_usage
    self.usage = TokenUsageBreakdown.of(usage.total_token_usage) if usage else TokenUsageBreakdown()
    self.context_tokens = usage.last_token_usage.total_tokens if usage else 0
    self.updated_at = int(time.time())
    self._index(self.updated_at)
    for status in (NotLoaded(), Idle()):
        await self._set_status(status)
    thread = self.wire_thread()
    if num_turns is not None:
        result: Any = ThreadReadResponse(msgspec.structs.replace(thread, turns=r.turns))
    else:
        result = ThreadRevertResponse(thread, "n:0" if r.turns else None,
                                      "n:0" if any(t.items for t in r.turns) else None)
    await self._to(reply.conn, Response(reply.request_id, result))
    if num_turns is None:
        await self._notify("thread/reverted", ThreadIdParams(c.id))
    self._checkpoint()

async def _start_compaction(self: ThreadActor) -> None:
    turn_id, started_s = uuid7(), int(time.time())
    await self._open_turn(turn_id, started_s)
    await self._persist(TurnStartedEvent(turn_id=turn_id, root_turn_id=turn_id, started_at=started_s,
                                         model_context_window=self.config.model_context_window))
    await self._launch_turn(turn_id, started_s, "compact", None, None, False)

async def _open_turn(self: ThreadActor, turn_id: str, started_s: int) -> None:
    await self._set_status(Active())
    await self._notify("turn/started", TurnStarted(self.config.id, Turn(
        id=turn_id, items=[], status="inProgress", started_at=started_s, root_turn_id=turn_id)))

async def _launch_turn(self: ThreadActor, turn_id: str, started_s: int, kind: str, user_item: UserMessageItem | None,
                       raw: msgspec.Raw | None, compact_first: bool, output_schema: Any = None,
                       shell_command: tuple[str, int | None] | None = None,
                       review_target: dict[str, Any] | None = None) -> None:
    mailbox, inbox = open_turn_mailbox(turn_id)
    turn = TurnHandle(turn_id, mailbox, inbox, trio.CancelScope(), started_s, time.monotonic(), kind)
    spec = TurnSpec(
        config=self.config, turn_id=turn_id, model=self.model, thread=self.mailbox,
        approvals=self.approvals, processes=self.processes, recorder=self.recorder,
        persist=partial(append, self.rollout), history=self.history, user_item=user_item, user_raw=raw,
        usage=self.usage, subscribers=tuple(self.subscribers.values()), kind=kind,
        compact_first=compact_first, context_tokens=self.context_tokens, output_schema=output_schema,
        shell_command=shell_command, review_target=review_target, mcp=self.mcp, numbers=self.numbers,
    )
    self.state = Running(turn)
    self.nursery.start_soon(run_turn, spec, inbox, turn.scope)
    self._checkpoint()

async def _interrupt(self: ThreadActor, reply: Reply, turn_id: str) -> None:
    """Stop the thread's turn ``turn_id``. An empty ``turn_id`` means
    whichever turn runs, and is answered ``{}`` when none does, as the
    original answers the TUI, which sends it when it leaves a side
    conversation or logs out."""
    turn = self._turn()
    if turn is None and not turn_id:
        await self._to(reply.conn, Response(reply.request_id, {}))
        return
    if turn is None:
        error = invalid_request("no active turn to interrupt")
    elif turn_id and turn.id != turn_id:
        error = invalid_request(f"expected active turn id {turn_id} but found {turn.id}")
    else:
        self._stop(turn, _INTERRUPT_REASON)
        await self._to(reply.conn, Response(reply.request_id, {}))
        return
    await self._to(reply.conn, ErrorResponse(reply.request_id, error.error))

def _own_turn(self: ThreadActor, turn_id: str, what: str) -> TurnHandle | None:
    """The thread's turn if it is ``turn_id``; else None, logged: a
    stale message (a predecessor's turn, before a restart)."""
    turn = self._turn()
    if turn is not None and turn.id == turn_id:
        return turn
    log.warning("thread %s: %s of turn %s, which is not its turn (%s); dropped", self.config.id, what, turn_id,
                turn.id if turn else "none runs")
    return None

async def _approval_gate(self: ThreadActor, turn_id: str, keys: tuple[str, ...], reply: Any) -> None:
    if keys and self.session_approvals.issuperset(keys):
        reply.set(True)
        return
    reply.set(False)
    turn = self._own_turn(turn_id, "an approval prompt")
    if turn is not None:
        turn.waiting += 1
        if turn.waiting == 1:
            await self._set_status(Active(["waitingOnApproval"]))

async def _approval_done(self: ThreadActor, turn_id: str, keys: tuple[str, ...], for_session: bool) -> None:
    if for_session:
        self.session_approvals.update(keys)
    turn = self._own_turn(turn_id, "an approval answer")
    if turn is not None and turn.waiting > 0:
        turn.waiting -= 1
        if turn.waiting == 0:
            await self._set_status(Active())

async def _turn_ended(self: ThreadActor, ended: TurnEnded) -> None:
    turn = self._own_turn(ended.turn_id, "the end")
    if turn is None:
        return
    then = self.state.then if isinstance(self.state, Stopping) else []
    self.state = Ready()
    late = turn.close()
    usage_before = self.usage
    self.history = (ended.history if ended.replaces_history else self.history + ended.history) + late
    self.context_tokens = ended.context_tokens
    if ended.usage is not None:
        self.usage = ended.usage
    self.updated_at = int(time.time())
    duration_ms = int((time.monotonic() - turn.started_monotonic) * 1000)
    last = next((i.text for i in reversed(ended.items) if isinstance(i, AgentMessageItem)), None)
    if ended.status == "interrupted":
        closing: Any = TurnAbortedEvent(turn_id=turn.id, root_turn_id=turn.id, reason="interrupted",
                                        started_at=turn.started_at, completed_at=self.updated_at,
                                        duration_ms=duration_ms)
    else:
        error = None if ended.error is None else RolloutTurnError(
            message=ended.error.message, codex_error_info=snakeize(ended.error.codex_error_info))
        closing = TurnCompleteEvent(turn_id=turn.id, root_turn_id=turn.id, last_agent_message=last,
                                    error=error, started_at=turn.started_at, completed_at=self.updated_at,
                                    duration_ms=duration_ms)
    await self._persist(closing, turn_end=True)
    self._index(turn.started_at, () if ended.replaces_history else tuple(message_texts(ended.history + late)))
    tokens = self.usage.minus(usage_before).total_tokens
    if tokens or ended.status != "interrupted":
        # As the original: an interrupt before any usage counts nothing.
        await self._account_goal(turn.id, tokens, duration_ms)
    if ended.status == "failed" and ended.error is not None:  # a failed turn always says why
        await self._set_status(SystemError())
        await self._notify("error", ErrorNotification(ended.error, False, self.config.id, turn.id))
    else:
        await self._set_status(Idle())
    if ended.status == "completed" and self.config.notify and turn.kind != "shell":
        await self._run_notify(turn.id, last)
    await self._notify("turn/completed", TurnCompleted(self.config.id, Turn(
        id=turn.id, items=list(ended.items), status=ended.status,
        items_view="summary" if ended.items else "notLoaded", error=ended.error,
        started_at=turn.started_at, completed_at=self.updated_at,
        duration_ms=duration_ms, root_turn_id=turn.id,
    )))
    if self.recorder.enabled:
        self.recorder.record(facts.TurnCompleted(
            thread_id=self.config.id, turn_id=turn.id, status=ended.status, duration_ms=duration_ms,
            error_info=str(ended.error.codex_error_info) if ended.error else None,
            usage=self.usage.minus(usage_before)))
    await self.approvals.send(ClearApprovals(self.config.id, turn.id))
    self._checkpoint()
    queued, self.queued = self.queued, []
    for step in (*then, *queued):
        await step()
    # A goal is pursued after a turn that did something; one that failed,
    # was interrupted or answered nothing waits for the user, so errors
    # cannot loop.
    if ended.status == "completed" and ended.items:
        await self._continue_goal()

async def _run_notify(self: ThreadActor, turn_id: str, last: str | None) -> None:
    """config.toml ``notify``: the program is spawned before the turn is
    reported completed, and watched beside the thread (never awaited)."""
    c = self.config
    payload = notify_payload(thread_id=c.id, turn_id=turn_id, cwd=c.cwd, client=c.originator or None,
                             input_messages=user_texts(self.history), last_assistant_message=last)
    await self.nursery.start(run_notifier, c.notify, payload)


def _profile_line(profile: ActivePermissionProfile | None) -> dict[str, str] | None:
    """A profile as the original's turn_context line holds it: ``{"id": ...}``."""
    if profile is None:
        return None
    return {"id": profile.id, **({"extends": profile.extends} if profile.extends else {})}
