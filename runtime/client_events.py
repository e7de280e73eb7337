"""What a :class:`~.client.Client` hands its user: the errors it raises, the
events it delivers and the tables that decode them (sans-I/O).

- A notification is decoded straight into its v2 Struct (:data:`NOTIFICATIONS`),
  or kept as a :class:`Notification` when there is none or it does not fit.
- A server request is a :class:`ServerRequest`, answered once; the approvals'
  params are their v2 Structs (:data:`SERVER_REQUESTS`).
- An answer nobody awaited is a :class:`Response`.
- A refused request raises :class:`CodexError` (and its kinds: no answer in
  time, the connection closed, a failed turn).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from .protocol.jsonrpc import ErrorObject, RequestId
from .protocol.v2.approval import (
    CommandExecutionRequestApprovalParams,
    FileChangeRequestApprovalParams,
    ServerRequestResolved,
)
from .protocol.v2.command import CommandExecOutputDelta
from .protocol.v2.item import (
    AgentMessageDelta,
    CommandExecutionOutputDelta,
    FileChangePatchUpdated,
    ItemCompleted,
    ItemStarted,
    ReasoningSummaryPartAdded,
    ReasoningSummaryTextDelta,
    ReasoningTextDelta,
)
from .protocol.v2.thread import ThreadNameUpdated, ThreadStarted, ThreadStatusChanged
from .protocol.v2.turn import (
    CodexErrorInfo,
    ErrorNotification,
    ThreadTokenUsage,
    ThreadTokenUsageUpdated,
    Turn,
    TurnCompleted,
    TurnDiffUpdated,
    TurnPlanUpdated,
    TurnStarted,
)

if TYPE_CHECKING:
    from .client import Client

__all__ = [
    "NOTIFICATIONS", "SERVER_REQUESTS", "UNHANDLED", "ClientClosed", "CodexError", "Event", "Notification",
    "RequestHandler", "RequestTimeout", "Response", "ServerRequest", "Tap", "TurnFailed", "TurnResult",
    "decode", "notification", "thread_of",
]

#: JSON-RPC code of an answer refusing a server request nobody handles.
UNHANDLED = -32601

T = TypeVar("T")

#: Notification method -> its v2 Struct.
NOTIFICATIONS: dict[str, type[msgspec.Struct]] = {
    "thread/started": ThreadStarted,
    "thread/status/changed": ThreadStatusChanged,
    "thread/name/updated": ThreadNameUpdated,
    "thread/tokenUsage/updated": ThreadTokenUsageUpdated,
    "turn/started": TurnStarted,
    "turn/completed": TurnCompleted,
    "turn/diff/updated": TurnDiffUpdated,
    "turn/plan/updated": TurnPlanUpdated,
    "item/started": ItemStarted,
    "item/completed": ItemCompleted,
    "item/agentMessage/delta": AgentMessageDelta,
    "item/reasoning/summaryTextDelta": ReasoningSummaryTextDelta,
    "item/reasoning/summaryPartAdded": ReasoningSummaryPartAdded,
    "item/reasoning/textDelta": ReasoningTextDelta,
    "item/commandExecution/outputDelta": CommandExecutionOutputDelta,
    "item/fileChange/patchUpdated": FileChangePatchUpdated,
    "command/exec/outputDelta": CommandExecOutputDelta,
    "serverRequest/resolved": ServerRequestResolved,
    "error": ErrorNotification,
}
#: Server request method -> its params Struct.
SERVER_REQUESTS: dict[str, type[msgspec.Struct]] = {
    "item/commandExecution/requestApproval": CommandExecutionRequestApprovalParams,
    "item/fileChange/requestApproval": FileChangeRequestApprovalParams,
}


class CodexError(Exception):
    """The server refused a request: its JSON-RPC ``code``, ``message`` and
    ``data``; ``codex_error_info`` when the server named the kind of
    failure (``"server_overloaded"``: retry later)."""

    def __init__(self, method: str, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{method} failed: {message} (code {code})")
        self.method = method
        self.code = code
        self.message = message
        self.data = data
        info = data.get("codex_error_info", data.get("codexErrorInfo")) if isinstance(data, dict) else None
        self.codex_error_info: CodexErrorInfo | None = info


class RequestTimeout(CodexError):
    """No answer within the bound: the server is busy or wedged."""

    def __init__(self, method: str, seconds: float) -> None:
        super().__init__(method, 0, f"no answer within {seconds:g} s")


class ClientClosed(CodexError):
    """The connection ended before the answer came."""

    def __init__(self, method: str) -> None:
        super().__init__(method, 0, "the connection to the app server is closed")


class TurnFailed(CodexError):
    """A turn ended ``failed``: its error's message and ``codex_error_info``."""

    def __init__(self, turn: Turn) -> None:
        error = turn.error
        message = error.message if error is not None else f"turn {turn.status}"
        super().__init__("turn", 0, message)
        self.turn = turn
        self.codex_error_info = error.codex_error_info if error is not None else None


class Notification(msgspec.Struct, frozen=True):
    """A notification without a Struct here (or whose params did not fit one)."""

    method: str
    params: Any


class Response(msgspec.Struct, frozen=True, omit_defaults=True):
    """A whole answer: its ``result`` (JSON), or its ``error`` body."""

    id: RequestId
    result: Any = None
    error: ErrorObject | None = None

    def to_json(self) -> dict[str, Any]:
        """The answer as it came on the wire (the server sends ``result`` or ``error``, never both)."""
        if self.error is not None:
            return {"id": self.id, "error": msgspec.to_builtins(self.error)}
        return {"id": self.id, "result": self.result}


class ServerRequest:
    """A request from the server (an approval, an elicitation): answer it
    once with :meth:`respond` or :meth:`reject`. ``params`` is the v2
    Struct for the approvals, the decoded JSON otherwise."""

    def __init__(self, client: Client, id: Any, method: str, params: Any) -> None:
        self._client = client
        self.id = id
        self.method = method
        self.params = params
        self.answered = False

    @property
    def thread_id(self) -> str | None:
        return thread_of(self.params)

    async def respond(self, result: Any) -> None:
        """Answer with ``result`` (a Struct such as ``ApprovalResponse``, or JSON)."""
        self.answered = True
        await self._client._send({"id": self.id, "result": msgspec.to_builtins(result)})

    async def reject(self, message: str, code: int = UNHANDLED) -> None:
        self.answered = True
        await self._client._send({"id": self.id, "error": {"code": code, "message": message}})

    def __repr__(self) -> str:
        return f"ServerRequest({self.id!r}, {self.method!r})"


#: What a turn yields: a notification's Struct or a server request.
Event = Any
RequestHandler = Callable[[ServerRequest], Awaitable[Any]]
#: Sees each frame the server sends, before it is routed.
Tap = Callable[[bytes], None]


class TurnResult(msgspec.Struct, frozen=True):
    """How a turn ended: the turn, its final agent message, its token usage."""

    turn: Turn
    text: str
    usage: ThreadTokenUsage | None


def thread_of(params: Any) -> str | None:
    if isinstance(params, msgspec.Struct):
        return getattr(params, "thread_id", None)
    return params.get("threadId") if isinstance(params, dict) else None


_DECODERS: dict[Any, msgspec.json.Decoder[Any]] = {}


def decode(type_: type[T], payload: msgspec.Raw) -> T:
    """A payload as ``type_`` (absent: null)."""
    decoder = _DECODERS.get(type_)
    if decoder is None:
        decoder = _DECODERS[type_] = msgspec.json.Decoder(type_)
    return decoder.decode(payload or b"null")


def notification(method: str, params: msgspec.Raw | Any) -> Event:
    """A notification's Struct, from its undecoded params (or their JSON)."""
    kind = NOTIFICATIONS.get(method)
    raw = isinstance(params, msgspec.Raw)
    if kind is not None:
        try:
            return decode(kind, params) if raw else msgspec.convert(params, kind)
        except msgspec.ValidationError:
            pass
    return Notification(method, decode(Any, params) if raw else params)
