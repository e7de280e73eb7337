"""Sans-I/O websocket serving, in the manner of h11: the HTTP decision for
an incoming request (:func:`decide`) and the frame codec of an upgraded
connection (:class:`WsFramer`, around wsproto). No sockets here; the I/O
shell is :mod:`.websocket`.

What the original 0.169 answers on its websocket port, traced with curl,
and therefore what :func:`decide` answers:

- a method other than GET: ``405`` "Request method must be `GET`";
- any ``Origin`` header: ``403`` (browsers may not drive a local agent);
- ``GET /readyz`` and ``GET /healthz``: ``200``;
- a GET that is no upgrade: ``400`` "Connection header did not include
  'upgrade'";
- with ``--ws-auth capability-token`` or ``signed-bearer-token``, an
  upgrade without a good ``Authorization: Bearer <token>`` (the first such
  header counts, as hyper's ``HeaderMap::get``): ``401`` with the original's
  reason as its body, before any JSON-RPC;
- otherwise ``101``, on any path, with the
  ``x-codex-websocket-max-unfragmented-message-bytes`` header.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from http import HTTPStatus
from collections.abc import Sequence
from typing import Annotated, Final, Literal

import h11
import jwt
import msgspec
from wsproto import ConnectionState, ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError

from ..runtime.kernel.stream import Oversized
from .framing import HEAD, NEED_DATA, NeedData

__all__ = ["MAX_HEAD", "MIN_SECRET_BYTES", "HttpAnswer", "JwtAuth", "TokenAuth", "Upgrade", "WsFramer", "decide", "http_response"]

#: Bound on the request head of the HTTP upgrade.
MAX_HEAD: Final = 16 * 1024

#: The shortest shared secret ``signed-bearer-token`` takes (the original's
#: ``MIN_SIGNED_BEARER_SECRET_BYTES``), counted after trimming whitespace.
MIN_SECRET_BYTES: Final = 32

#: The header the original adds to its 101 (a message size clients may send whole).
MAX_MESSAGE_HEADER: Final = b"x-codex-websocket-max-unfragmented-message-bytes"


#: The original's ``INVALID_AUTHORIZATION_HEADER_MESSAGE``.
_BAD_HEADER: Final = "invalid authorization header"
#: What ``HeaderValue::to_str`` accepts: visible ASCII, spaces and tabs.
_VISIBLE_ASCII = re.compile(rb"[\t\x20-\x7e]*")
#: JWT times are ``i64`` seconds in the original: a claim outside fails to decode.
_I64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


def _bearer(authorization: bytes | None) -> bytes | str:
    """The token of an ``Authorization: Bearer <token>`` header, or why
    there is none (the original's words)."""
    if authorization is None:
        return "missing websocket bearer token"
    if not _VISIBLE_ASCII.fullmatch(authorization):
        return _BAD_HEADER
    scheme, space, token = authorization.partition(b" ")
    token = token.strip()
    return token if space and scheme.lower() == b"bearer" and token else _BAD_HEADER


class TokenAuth(msgspec.Struct, frozen=True):
    """``--ws-auth capability-token``: the SHA-256 of the one accepted bearer
    token (from ``--ws-token-file`` or ``--ws-token-sha256``)."""

    sha256: bytes

    @classmethod
    def from_token(cls, token: str) -> TokenAuth:
        return cls(hashlib.sha256(token.encode()).digest())

    def refusal(self, authorization: bytes | None, now: float) -> str | None:
        """Why ``authorization`` is refused, or None when it is good."""
        token = _bearer(authorization)
        if isinstance(token, str):
            return token
        if not hmac.compare_digest(hashlib.sha256(token).digest(), self.sha256):
            return "invalid websocket bearer token"
        return None


class _JwtClaims(msgspec.Struct):
    """The claims the original decodes (``JwtClaims``): a claim of another
    type, or a time outside ``i64``, makes the token invalid."""

    exp: _I64
    nbf: _I64 | None = None
    iss: str | None = None
    aud: str | list[str] | None = None


#: A compact JWS: three parts of unpadded base64url. Checked before PyJWT,
#: whose base64 decoding takes ``=`` padding and skips characters outside the
#: alphabet, where the original's (``jsonwebtoken``) refuses both.
_COMPACT_JWS = re.compile(rb"[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*")
_JWS = jwt.PyJWS()


class JwtAuth(msgspec.Struct, frozen=True):
    """``--ws-auth signed-bearer-token``: an HS256 JWT signed with the shared
    secret. As the original: ``alg`` must be HS256; ``exp`` is required, an
    integer; ``nbf`` is honoured; both with ``max_skew`` seconds of slack
    and within ``i64``; ``iss`` and ``aud`` (a string or a list holding it)
    must match when an issuer or audience is configured. The secret's length
    is checked at start-up (:data:`MIN_SECRET_BYTES`).

    PyJWT checks the signature and the algorithm; the claims are judged here
    because the original's rules are not PyJWT's: ``exp`` must be an integer
    (PyJWT takes floats), ``exp == now - skew`` is still good, a missing
    ``iss`` or ``aud`` is a mismatch, and each refusal has its own text.
    (PyJWT also refuses a header with a ``crit`` or ``"b64": false``
    extension, which the original ignores: stricter, as RFC 7515 asks.)"""

    secret: bytes
    issuer: str | None = None
    audience: str | None = None
    max_skew: int = 30

    def refusal(self, authorization: bytes | None, now: float) -> str | None:
        """Why ``authorization`` is refused, or None when it is good."""
        token = _bearer(authorization)
        if isinstance(token, str):
            return token
        claims = self._decode(token)
        if claims is None:
            return "invalid websocket jwt"
        now = int(now)  # the original compares whole Unix seconds
        if now > claims.exp + self.max_skew:
            return "expired websocket jwt"
        if claims.nbf is not None and now < claims.nbf - self.max_skew:
            return "websocket jwt is not valid yet"
        if self.issuer is not None and claims.iss != self.issuer:
            return "websocket jwt issuer mismatch"
        aud = claims.aud
        if self.audience is not None and aud != self.audience and not (
                isinstance(aud, list) and self.audience in aud):
            return "websocket jwt audience mismatch"
        return None

    def _decode(self, token: bytes) -> _JwtClaims | None:
        """The claims of a well-formed HS256 token signed with the secret."""
        if not _COMPACT_JWS.fullmatch(token):
            return None
        try:
            payload = _JWS.decode_complete(token, self.secret, algorithms=["HS256"])["payload"]
            return msgspec.json.decode(payload, type=_JwtClaims)
        except (jwt.InvalidTokenError, msgspec.DecodeError):
            return None


class HttpAnswer(msgspec.Struct, frozen=True):
    """Answer with a plain HTTP response and close."""

    status: int
    body: bytes = b""


class Upgrade(msgspec.Struct, frozen=True):
    """Accept the websocket upgrade."""

    path: str


def decide(request: h11.Request, auth: TokenAuth | JwtAuth | None, now: float = 0.0,
           closing: str | None = None) -> HttpAnswer | Upgrade:
    """What to answer to the request head of a new connection (``now``: Unix
    seconds, for token expiry). ``closing``: why the server takes no new
    connection (a cluster node draining): an upgrade, and ``/readyz``, are
    answered 503 with it; ``/healthz`` still 200 (the process lives)."""
    if request.method != b"GET":
        return HttpAnswer(405, b"Request method must be `GET`")
    headers: dict[bytes, bytes] = {}
    for name, value in request.headers:  # h11 lowercases the names
        headers.setdefault(name, value)  # the first of a repeated header counts, as in the original
    if b"origin" in headers:
        return HttpAnswer(403)
    path = request.target.split(b"?", 1)[0].decode("ascii", "replace")
    upgrade = b"upgrade" in {token.strip().lower() for token in headers.get(b"connection", b"").split(b",")}
    if closing is not None and (upgrade or path == "/readyz"):
        return HttpAnswer(503, closing.encode())
    if not upgrade:
        if path in ("/readyz", "/healthz"):
            return HttpAnswer(200)
        return HttpAnswer(400, b"Connection header did not include 'upgrade'")
    refusal = auth.refusal(headers.get(b"authorization"), now) if auth is not None else None
    if refusal is not None:
        return HttpAnswer(401, refusal.encode())
    return Upgrade(path)


def http_response(answer: HttpAnswer) -> bytes:
    """The bytes of ``answer``, a complete response with ``Connection: close``."""
    conn = h11.Connection(h11.SERVER)
    # h11 needs to have seen a request before it writes a response.
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    conn.next_event()
    headers = [("content-length", str(len(answer.body))), ("connection", "close")]
    if answer.body:
        headers.append(("content-type", "text/plain; charset=utf-8"))
    reason = HTTPStatus(answer.status).phrase.encode()
    return (conn.send(h11.Response(status_code=answer.status, headers=headers, reason=reason))
            + (conn.send(h11.Data(data=answer.body)) if answer.body else b"")
            + conn.send(h11.EndOfMessage()))


class WsFramer:
    """The frame codec of one upgraded connection. Bytes go in with
    :meth:`receive_data`; :meth:`next_frame` gives each text message as one
    frame (the UTF-8 of one JSON-RPC message), an :class:`Oversized` notice
    for a message over ``max_frame`` (dropped as it arrives, never buffered
    whole), None once the peer closed, or :data:`NEED_DATA`. Control frames
    are answered: their replies wait in :meth:`data_to_send`.
    """

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        self._ws = WSConnection(ConnectionType.SERVER)
        self._outgoing = bytearray()
        self._parts: list[bytes] = []
        self._size = 0
        self._skipping = False
        self._head = b""
        self.closed = False

    def accept(self, head: bytes) -> None:
        """Take the request head (and anything after it) of an upgrade that
        :func:`decide` let through, and queue the 101."""
        self._ws.receive_data(head)
        for event in self._ws.events():
            if isinstance(event, Request):
                self._outgoing += self._ws.send(AcceptConnection(
                    extra_headers=[(MAX_MESSAGE_HEADER, str(self.max_frame).encode())]))
                return
        raise h11.RemoteProtocolError("the upgrade request was incomplete")

    def receive_data(self, data: bytes | bytearray | None) -> None:
        """``None`` (or b"") when the peer's side of the stream ended."""
        self._ws.receive_data(bytes(data) if data else None)

    def next_frame(self) -> bytes | Oversized | None | Literal[NeedData.NEED_DATA]:
        if self.closed:
            return None
        for event in self._ws.events():
            if isinstance(event, (TextMessage, BytesMessage)):
                frame = self._message_part(event.data.encode() if isinstance(event.data, str) else bytes(event.data),
                                           event.message_finished)
                if frame is not NEED_DATA:
                    return frame
            elif isinstance(event, Ping):
                self._outgoing += self._ws.send(event.response())
            elif isinstance(event, CloseConnection):
                if self._ws.state is not ConnectionState.CLOSED:  # CLOSED: the stream ended, no close frame
                    self._outgoing += self._ws.send(event.response())
                self.closed = True
                return None
        return NEED_DATA

    def _message_part(self, data: bytes, finished: bool) -> bytes | Oversized | Literal[NeedData.NEED_DATA]:
        self._size += len(data)
        if not self._skipping:
            if self._size > self.max_frame:
                self._head = b"".join([*self._parts, data[:HEAD]])[:HEAD]
                self._parts.clear()
                self._skipping = True
            else:
                self._parts.append(data)
        if not finished:
            return NEED_DATA
        size, self._size = self._size, 0
        if self._skipping:
            self._skipping = False
            return Oversized(size, self._head)
        frame = b"".join(self._parts)
        self._parts.clear()
        return frame

    def frames(self, frames: Sequence[bytes]) -> bytes:
        """The bytes of ``frames`` as text messages, for one write."""
        send = self._ws.send
        return b"".join(send(TextMessage(data=frame.decode())) for frame in frames)

    def ping(self, payload: bytes = b"") -> bytes:
        """The bytes of a ping frame (nothing once closing)."""
        if self.closed:
            return b""
        try:
            return self._ws.send(Ping(payload))
        except LocalProtocolError:
            return b""

    def close(self, code: int = 1000, reason: str = "") -> bytes:
        """The bytes of a close frame (nothing if the connection is closing already)."""
        if self.closed:
            return b""
        self.closed = True
        try:
            return self._ws.send(CloseConnection(code=code, reason=reason))
        except LocalProtocolError:  # the peer's close came first
            return b""

    def data_to_send(self) -> bytes:
        data = bytes(self._outgoing)
        self._outgoing.clear()
        return data
