"""Sans-I/O JSON-RPC codec: pure functions between frames (bytes) and typed
messages. No trio, no sockets: transports feed it frames and write what it
returns, and the tests push bytes through it directly.

Decoding is two-stage, like tractor's ``pld: Raw``: :func:`decode` routes a
frame by its envelope (0.3 µs) and leaves ``params`` raw; :func:`decode_params`
then decodes them against the type the method table names, so an unknown
method and bad params are told apart.

Rule: :func:`decode` never raises. A frame that is not JSON, or JSON that is
not a message, comes back as :class:`Invalid`; its ``id`` is set only when the
frame carried a usable request id, and only then does the peer get a reply.
As the original's serde_json reads a frame: JSON nested deeper than
:data:`MAX_DEPTH` is not JSON, and a request id outside i64 is not usable.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, TypeVar, overload

import msgspec
import msgspec.inspect as mi

from .jsonrpc import (
    Envelope,
    ErrorObject,
    Outbound,
    RequestId,
    invalid_request,
)
from .serde_wording import at_path, invalid_integer, serde_message

T = TypeVar("T")


class Request(msgspec.Struct, frozen=True):
    """A client request: it must be answered exactly once."""

    id: RequestId
    method: str
    params: msgspec.Raw | None


class ClientNotification(msgspec.Struct, frozen=True):
    method: str
    params: msgspec.Raw | None


class ClientResponse(msgspec.Struct, frozen=True):
    """The client's answer to one of our server requests."""

    id: RequestId
    result: msgspec.Raw | None
    error: ErrorObject | None


class Invalid(msgspec.Struct, frozen=True):
    """A frame that is not a message. ``id`` is set when a reply is owed."""

    reason: str
    id: RequestId | None = None


Incoming = Request | ClientNotification | ClientResponse | Invalid

_envelope = msgspec.json.Decoder(Envelope)
_any = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()

#: The deepest JSON serde_json reads (its recursion limit refuses a 128th
#: level of arrays and objects): deeper is an error, not a value (and would
#: exhaust the stack of every recursive walk behind the decoder).
MAX_DEPTH = 127
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
#: The original's RequestId: a string or an i64.
_I64 = range(-(2**63), 2**63)


def too_deep(data: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether the JSON text ``data`` nests arrays and objects deeper than
    ``limit``. Cheap for the usual frame: one that holds fewer brackets than
    ``limit`` is not even scanned."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    depth = 0
    for bracket in _STRING.sub(b"", data).translate(None, _NOT_BRACKET):
        depth += 1 if bracket in b"[{" else -1
        if depth > limit:
            return True
    return False


def decode(frame: bytes) -> Incoming:
    """Route one frame. Never raises."""
    if too_deep(frame):
        return Invalid(f"not valid JSON: recursion limit exceeded (nested deeper than {MAX_DEPTH})")
    try:
        env = _envelope.decode(frame)
    except msgspec.ValidationError as exc:
        return _salvage(frame, exc)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        return Invalid(f"not valid JSON: {exc}")
    if type(env.id) is int and env.id not in _I64:
        return Invalid(f"Invalid request: request id {env.id} is outside i64")
    params = env.params or None
    if env.method is not None:
        if env.id is None:
            return ClientNotification(env.method, params)
        return Request(env.id, env.method, params)
    if env.id is not None and (env.result or env.error is not None):
        return ClientResponse(env.id, env.result or None, env.error)
    return Invalid("a message needs a `method`, or an `id` with `result` or `error`", env.id)


def _salvage(frame: bytes, exc: msgspec.ValidationError) -> Invalid:
    # The frame is not an envelope: answer it if it is JSON with a usable id.
    try:
        obj = _any.decode(frame)
    except (msgspec.DecodeError, UnicodeDecodeError) as not_json:
        return Invalid(f"not valid JSON: {not_json}")
    rid = obj.get("id") if isinstance(obj, dict) else None
    if isinstance(rid, bool) or not isinstance(rid, (int, str)) or (isinstance(rid, int) and rid not in _I64):
        rid = None
    return Invalid(f"Invalid request: {serde_message(str(exc))}", rid)


def encode(msg: Outbound) -> bytes:
    return _encoder.encode(msg)


def encode_into(msg: Outbound, buf: bytearray) -> None:
    """Append ``msg`` and a newline to ``buf`` (one JSONL line)."""
    _encoder.encode_into(msg, buf, -1)
    buf += b"\n"


@lru_cache(maxsize=None)
def _decoder_for(type_: Any) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(type_)


@overload
def decode_params(raw: msgspec.Raw | None, type_: type[T]) -> T: ...
@overload
def decode_params(raw: msgspec.Raw | None, type_: type[T] | None) -> T | None: ...
def decode_params(raw: msgspec.Raw | None, type_: type[T] | None) -> T | None:
    """Decode a request's params against its declared type.

    ``type_`` None means the method takes no params: anything sent is ignored,
    as the original does. Errors are JSON-RPC -32600 with the original's
    (serde's) wording where it has an equivalent; params that are not JSON
    (invalid UTF-8 in a string) are one of them.
    """
    if type_ is None:
        return None
    if raw is None or bytes(raw) == b"null":
        raise invalid_request("Invalid request: missing field `params`")
    try:
        return _decoder_for(type_).decode(raw)  # type: ignore[arg-type]  # mypy misses that type[T] is Hashable
    except msgspec.ValidationError as exc:
        message = _out_of_range(raw, type_, str(exc)) or serde_message(
            str(exc), lambda path: _variants(type_, path))
        raise invalid_request(f"Invalid request: {message}") from None
    except msgspec.DecodeError as exc:
        raise invalid_request(f"Invalid request: params are not valid JSON: {exc}") from None


def decode_result(raw: msgspec.Raw | None, type_: type[T]) -> T:
    """Decode a client's result for one of our server requests; raises
    ``msgspec.ValidationError`` when it does not fit."""
    return _decoder_for(type_).decode(raw if raw is not None else b"null")  # type: ignore[arg-type]  # as above


def _variants(type_: Any, path: str) -> list[str] | None:
    """The variants the enum at ``path`` of ``type_`` takes, or None when the
    field is no plain enum."""
    t, _ = _unwrap(mi.type_info(type_), "")
    for name, index in _STEP.findall(path):
        t, _ = _unwrap(_step(t, name, index), "")
    return [str(v) for v in t.values] if isinstance(t, mi.LiteralType) else None


_RANGE = re.compile(r"^Expected `int` [<>]= -?\d+ - at `\$\.?(.*)`$")
_STEP = re.compile(r"\.?([^.\[]+)|\[(\d+)\]")


def _out_of_range(raw: msgspec.Raw, type_: Any, msg: str) -> str | None:
    """serde's ``invalid value: integer `N`, expected u16`` for an integer
    outside the Rust type of its field (see :mod:`.rust`); None when ``msg``
    is about something else."""
    m = _RANGE.match(msg)
    if m is None:
        return None
    path = m.group(1)
    try:
        value: Any = _any.decode(raw)
    except msgspec.DecodeError:  # invalid UTF-8 elsewhere in the params
        return None
    t, rust = _unwrap(mi.type_info(type_), "i64")
    for name, index in _STEP.findall(path):
        try:
            value = value[int(index)] if index else value[name]
        except (KeyError, IndexError, TypeError):
            return None
        t, rust = _unwrap(_step(t, name, index), rust)
    return invalid_integer(value, rust) + at_path(path)


def _unwrap(t: Any, rust: str) -> tuple[Any, str]:
    """``t`` without its Option and constraints, and the Rust integer name
    those carried (else ``rust``)."""
    while isinstance(t, (mi.Metadata, mi.UnionType)):
        if isinstance(t, mi.Metadata):
            rust = (t.extra or {}).get("rust", rust)
            t = t.type
        else:
            t = next((m for m in t.types if not isinstance(m, mi.NoneType)), t.types[0])
    return t, rust


def _step(t: Any, name: str, index: str) -> Any:
    """The type one step down ``t``: field ``name`` or item ``index``."""
    if index:
        return t.item_type if isinstance(t, mi.ListType) else mi.AnyType()
    if isinstance(t, mi.StructType):
        return next((f.type for f in t.fields if f.encode_name == name), mi.AnyType())
    return t.value_type if isinstance(t, mi.DictType) else mi.AnyType()
