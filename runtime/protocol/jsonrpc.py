"""The JSON-RPC envelope as the Codex app-server speaks it.

Like the original's ``jsonrpc_lite.rs``, this is not true JSON-RPC 2.0: the
server never sends the ``"jsonrpc"`` member and ignores it on input.

Messages on the wire:

- request       ``{"id", "method", "params"?, "trace"?}``
- notification  ``{"method", "params"?}`` (server notifications add ``emittedAtMs``)
- response      ``{"id", "result"}``
- error         ``{"id", "error": {"code", "message", "data"?}}``

Request ids are a string or an integer and are echoed back unchanged.
"""

from __future__ import annotations

from typing import Any

import msgspec

RequestId = int | str

# Error codes, as the original's error_code.rs. The original answers an
# unknown method and bad params with -32600 (serde reports both as an invalid
# request) and uses -32602 for input_too_large and some checks of its own
# (command/exec); -32601 is ours, for methods of the original we do not
# serve yet.
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
OVERLOADED = -32001


class ErrorObject(msgspec.Struct, frozen=True, omit_defaults=True):
    code: int
    message: str
    data: Any = None


class JsonRpcError(Exception):
    """Raised by a handler to answer its request with a JSON-RPC error."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.error = ErrorObject(code, message, data)


def invalid_request(message: str, data: Any = None) -> JsonRpcError:
    return JsonRpcError(INVALID_REQUEST, message, data)


def invalid_params(message: str) -> JsonRpcError:
    return JsonRpcError(INVALID_PARAMS, message)


def method_not_found(method: str) -> JsonRpcError:
    return JsonRpcError(
        METHOD_NOT_FOUND,
        f"method `{method}` is part of the Codex app-server protocol but "
        "trio-codex does not serve it yet",
    )


#: The most characters of text one turn's input may carry, as the original.
MAX_INPUT_CHARS = 1 << 20


def input_too_large(actual_chars: int) -> JsonRpcError:
    return JsonRpcError(
        INVALID_PARAMS,
        f"Input exceeds the maximum length of {MAX_INPUT_CHARS} characters.",
        {"input_error_code": "input_too_large", "max_chars": MAX_INPUT_CHARS, "actual_chars": actual_chars},
    )


def internal_error(message: str) -> JsonRpcError:
    return JsonRpcError(INTERNAL_ERROR, message)


def overloaded() -> JsonRpcError:
    # The openai-codex SDK retries only when data names server_overloaded.
    return JsonRpcError(
        OVERLOADED,
        "Server overloaded; retry later.",
        {"codex_error_info": "server_overloaded"},
    )


NOT_INITIALIZED = "Not initialized"
ALREADY_INITIALIZED = "Already initialized"


# --- inbound ----------------------------------------------------------------


_ABSENT = msgspec.Raw()


class Envelope(msgspec.Struct, frozen=True):
    """Any inbound message, before routing. ``params``/``result`` stay raw
    bytes until the method table says what type they are; an empty Raw means
    the member was absent (msgspec cannot put Raw in a union with None)."""

    id: RequestId | None = None
    method: str | None = None
    params: msgspec.Raw = _ABSENT
    result: msgspec.Raw = _ABSENT
    error: ErrorObject | None = None


# --- outbound ---------------------------------------------------------------


class Response(msgspec.Struct, frozen=True):
    id: RequestId
    result: Any


class ErrorResponse(msgspec.Struct, frozen=True):
    id: RequestId | None
    error: ErrorObject


class Notification(msgspec.Struct, frozen=True, rename="camel"):
    method: str
    params: Any
    emitted_at_ms: int


class ServerRequest(msgspec.Struct, frozen=True):
    id: int
    method: str
    params: Any


Outbound = Response | ErrorResponse | Notification | ServerRequest
