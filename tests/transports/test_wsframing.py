"""The websocket codec without sockets: what each request head gets, and
frames in and out of an upgraded connection against a wsproto client."""

from __future__ import annotations

import base64
import hashlib

import h11
import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Ping,
    Pong,
    Request,
    TextMessage,
)

from harness.ws import SECRET, jwt
from trio_codex.runtime.kernel.stream import Oversized
from trio_codex.transports.framing import NEED_DATA
from trio_codex.transports.wsframing import (
    MAX_MESSAGE_HEADER,
    HttpAnswer,
    JwtAuth,
    TokenAuth,
    Upgrade,
    WsFramer,
    decide,
    http_response,
)

UPGRADE = [("connection", "Upgrade"), ("upgrade", "websocket"),
           ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="), ("sec-websocket-version", "13")]


def request(method: str = "GET", target: str = "/", headers: list[tuple[str, str]] | None = None) -> h11.Request:
    return h11.Request(method=method, target=target, headers=[("host", "x"), *(headers or [])])


@pytest.mark.parametrize(("req", "answer"), [
    (request("POST", headers=[("content-length", "0")]), HttpAnswer(405, b"Request method must be `GET`")),
    (request(headers=[("origin", "http://evil.example")]), HttpAnswer(403)),
    (request(headers=[("origin", "http://evil.example"), *UPGRADE]), HttpAnswer(403)),
    (request(target="/readyz"), HttpAnswer(200)),
    (request(target="/healthz"), HttpAnswer(200)),
    (request(), HttpAnswer(400, b"Connection header did not include 'upgrade'")),
    (request(target="/anything", headers=UPGRADE), Upgrade("/anything")),
])
def test_each_request_head_gets_what_the_original_answers(req: h11.Request, answer: object) -> None:
    assert decide(req, None) == answer


def test_a_capability_token_is_checked_before_the_upgrade() -> None:
    auth = TokenAuth.from_token("s3cret")
    assert auth == TokenAuth(hashlib.sha256(b"s3cret").digest())
    assert decide(request(headers=UPGRADE), auth) == HttpAnswer(401, b"missing websocket bearer token")
    assert decide(request(headers=[*UPGRADE, ("authorization", "Bearer wrong")]), auth) == HttpAnswer(
        401, b"invalid websocket bearer token")
    assert decide(request(headers=[*UPGRADE, ("authorization", "Basic s3cret")]), auth) == HttpAnswer(
        401, b"invalid authorization header")
    assert decide(request(headers=[*UPGRADE, ("authorization", "Bearer s3cret")]), auth) == Upgrade("/")
    assert decide(request(target="/readyz"), auth) == HttpAnswer(200)  # probes need no token


def test_a_server_that_takes_no_new_connection_answers_an_upgrade_and_readyz_503_with_why_and_healthz_200() -> None:
    why = "this node is draining (shutting down); connect to another node of the cluster"
    auth = TokenAuth.from_token("s3cret")
    assert decide(request(headers=UPGRADE), None, closing=why) == HttpAnswer(503, why.encode())
    assert decide(request(headers=UPGRADE), auth, closing=why) == HttpAnswer(503, why.encode())
    assert decide(request(target="/readyz"), None, closing=why) == HttpAnswer(503, why.encode())
    assert decide(request(target="/healthz"), None, closing=why) == HttpAnswer(200)


NOW = 1_800_000_000


# What 0.169 answered for each token, with --ws-issuer me --ws-audience you (traced).
@pytest.mark.parametrize(("claims", "alg", "key", "refusal"), [
    ({"iss": "me", "aud": "you", "exp": NOW + 60, "iat": NOW}, "HS256", SECRET, None),
    ({"iss": "me", "aud": "you", "iat": NOW}, "HS256", SECRET, "invalid websocket jwt"),  # no exp
    ({"iss": "me", "aud": "you", "exp": NOW - 10}, "HS256", SECRET, None),  # within the skew
    ({"iss": "me", "aud": "you", "exp": NOW - 50}, "HS256", SECRET, "expired websocket jwt"),
    ({"iss": "me", "aud": "you", "exp": NOW + 60.5}, "HS256", SECRET,
     "invalid websocket jwt"),  # exp not an integer
    ({"iss": "x", "aud": "you", "exp": NOW + 60}, "HS256", SECRET, "websocket jwt issuer mismatch"),
    ({"aud": "you", "exp": NOW + 60}, "HS256", SECRET, "websocket jwt issuer mismatch"),
    ({"iss": "me", "aud": ["you", "z"], "exp": NOW + 60}, "HS256", SECRET, None),
    ({"iss": "me", "aud": "z", "exp": NOW + 60}, "HS256", SECRET, "websocket jwt audience mismatch"),
    ({"iss": "me", "exp": NOW + 60}, "HS256", SECRET, "websocket jwt audience mismatch"),
    ({"iss": "me", "aud": "you", "exp": NOW + 60, "nbf": NOW + 120}, "HS256", SECRET,
     "websocket jwt is not valid yet"),
    ({"iss": "me", "aud": "you", "exp": NOW + 60, "nbf": NOW + 10}, "HS256", SECRET, None),
    ({"iss": "me", "aud": "you", "exp": NOW + 60}, "HS384", SECRET, "invalid websocket jwt"),
    ({"iss": "me", "aud": "you", "exp": NOW + 60}, "HS256", b"another-secret-also-32-bytes-long",
     "invalid websocket jwt"),
])
def test_signed_bearer_tokens_are_judged_as_the_original_judges_them(
        claims: dict, alg: str, key: bytes, refusal: str | None) -> None:
    auth = JwtAuth(SECRET, issuer="me", audience="you")
    assert auth.refusal(jwt(claims, alg=alg, key=key), NOW) == refusal
    assert decide(request(headers=[*UPGRADE, ("authorization", jwt(claims, alg=alg, key=key).decode())]),
                  auth, NOW) == (Upgrade("/") if refusal is None else HttpAnswer(401, refusal.encode()))


I64_MAX = 2**63 - 1


# The original decodes exp and nbf as i64 (serde): a time it cannot hold makes
# the token undecodable; iat it does not read at all.
@pytest.mark.parametrize(("claims", "refusal"), [
    ({"exp": 2**64}, "invalid websocket jwt"),
    ({"exp": I64_MAX + 1}, "invalid websocket jwt"),
    ({"exp": I64_MAX}, None),
    ({"exp": -(2**63) - 1}, "invalid websocket jwt"),
    ({"exp": NOW + 60, "nbf": 2**64}, "invalid websocket jwt"),
    ({"exp": NOW + 60, "nbf": -(2**64)}, "invalid websocket jwt"),
    ({"exp": NOW + 60, "nbf": None}, None),
    ({"exp": NOW + 60, "iat": 2**64}, None),
    ({"exp": True}, "invalid websocket jwt"),
    ({"exp": NOW + 60, "iss": 5}, "invalid websocket jwt"),  # decoded even with no issuer configured
    ({"exp": NOW + 60, "aud": ["ok", 1]}, "invalid websocket jwt"),
])
def test_times_beyond_i64_and_claims_of_the_wrong_type_are_refused(claims: dict, refusal: str | None) -> None:
    assert JwtAuth(SECRET).refusal(jwt(claims), NOW) == refusal


def test_the_first_authorization_header_counts_as_in_the_original() -> None:
    auth = TokenAuth.from_token("s3cret")
    first_good = [*UPGRADE, ("authorization", "Bearer s3cret"), ("authorization", "Bearer wrong")]
    first_bad = [*UPGRADE, ("authorization", "Bearer wrong"), ("authorization", "Bearer s3cret")]
    assert decide(request(headers=first_good), auth) == Upgrade("/")
    assert decide(request(headers=first_bad), auth) == HttpAnswer(401, b"invalid websocket bearer token")


def test_a_header_that_is_not_visible_ascii_is_an_invalid_header() -> None:
    assert TokenAuth.from_token("s3cret").refusal("Bearer s3cr\u00e9t".encode(), NOW) == "invalid authorization header"


@pytest.mark.parametrize("authorization", [None, b"Bearer", b"Bearer a.b", b"Bearer !!.??.**", b"Basic x.y.z",
                                           b"Bearer " + base64.urlsafe_b64encode(b"[1]") + b".e30.xx"])
def test_malformed_bearer_tokens_are_refused_not_raised(authorization: bytes | None) -> None:
    assert JwtAuth(SECRET).refusal(authorization, NOW) is not None


def test_http_answers_are_complete_responses_that_close() -> None:
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
    client.send(h11.EndOfMessage())
    client.receive_data(http_response(HttpAnswer(400, b"no upgrade")))
    response = client.next_event()
    assert isinstance(response, h11.Response) and (response.status_code, response.reason) == (400, b"Bad Request")
    assert (b"connection", b"close") in response.headers
    data = client.next_event()
    assert isinstance(data, h11.Data) and data.data == b"no upgrade"


def upgraded(max_frame: int = 1024) -> tuple[WsFramer, WSConnection]:
    client = WSConnection(ConnectionType.CLIENT)
    framer = WsFramer(max_frame)
    framer.accept(client.send(Request(host="x", target="/")))
    client.receive_data(framer.data_to_send())
    [accepted] = list(client.events())
    assert isinstance(accepted, AcceptConnection)
    assert (MAX_MESSAGE_HEADER, str(max_frame).encode()) in accepted.extra_headers
    return framer, client


def frames(framer: WsFramer) -> list[object]:
    out = []
    while (frame := framer.next_frame()) is not NEED_DATA:
        out.append(frame)
        if frame is None:
            break
    return out


def test_text_messages_are_frames_whole_or_in_fragments() -> None:
    framer, client = upgraded()
    framer.receive_data(client.send(TextMessage(data='{"id":1}'))
                        + client.send(TextMessage(data="{\"a\":\"é", message_finished=False)))
    assert frames(framer) == [b'{"id":1}']  # the second is not finished
    framer.receive_data(client.send(TextMessage(data='"}', message_finished=False))
                        + client.send(TextMessage(data="", message_finished=True)))
    assert frames(framer) == ['{"a":"é"}'.encode()]


def test_a_message_over_the_bound_is_dropped_as_it_arrives_and_reported_once() -> None:
    framer, client = upgraded(max_frame=64)
    head = '{"id":7,"method":"x","params":"'
    framer.receive_data(client.send(TextMessage(data=head, message_finished=False)))
    assert frames(framer) == []
    for _ in range(10):
        framer.receive_data(client.send(TextMessage(data="y" * 50, message_finished=False)))
    framer.receive_data(client.send(TextMessage(data='"}', message_finished=True))
                        + client.send(TextMessage(data="{}")))
    oversized, after = frames(framer)
    assert isinstance(oversized, Oversized) and oversized.size == len(head) + 500 + 2
    assert oversized.head.startswith(head.encode())
    assert after == b"{}"


def test_outgoing_frames_pings_and_close() -> None:
    framer, client = upgraded()
    client.receive_data(framer.frames([b'{"id":1,"result":{}}', '{"method":"é"}'.encode()]))
    assert [e.data for e in client.events()] == ['{"id":1,"result":{}}', '{"method":"é"}']
    framer.receive_data(client.send(Ping(b"hi")))
    assert frames(framer) == []
    client.receive_data(framer.data_to_send())
    assert [type(e) for e in client.events()] == [Pong]
    framer.receive_data(client.send(CloseConnection(code=1000)))
    assert frames(framer) == [None]
    client.receive_data(framer.data_to_send())
    assert [type(e) for e in client.events()] == [CloseConnection]
    assert framer.close() == b""  # closing already


def test_our_close_is_a_close_frame() -> None:
    framer, client = upgraded()
    client.receive_data(framer.close(1001, "going away"))
    [event] = client.events()
    assert isinstance(event, CloseConnection) and (event.code, event.reason) == (1001, "going away")


def test_an_oversized_message_keeps_its_head_across_parts() -> None:
    framer, client = upgraded(max_frame=64)
    framer.receive_data(client.send(TextMessage(data='{"id":', message_finished=False)))
    framer.receive_data(client.send(TextMessage(data='"big","x":"' + "y" * 200 + '"}')))
    [oversized] = frames(framer)
    assert isinstance(oversized, Oversized) and oversized.head.startswith(b'{"id":"big"')


def test_a_stream_that_ends_without_a_close_frame_is_closed_quietly() -> None:
    framer, client = upgraded()
    framer.receive_data(client.send(TextMessage(data="{}")))
    assert frames(framer) == [b"{}"]
    framer.receive_data(None)  # no close frame: no close to answer either
    assert frames(framer) == [None]
    assert framer.data_to_send() == b"" and framer.close() == b""


def test_junk_in_a_token_is_refused_not_skipped() -> None:
    token = jwt({"exp": NOW + 60})
    assert JwtAuth(SECRET).refusal(token, NOW) is None
    assert JwtAuth(SECRET).refusal(token + b"!!", NOW) == "invalid websocket jwt"


def test_an_unsigned_token_is_refused_whatever_its_claims() -> None:
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=")
    claims = base64.urlsafe_b64encode(b'{"exp":9999999999}').rstrip(b"=")
    for signature in (b"", jwt({"exp": NOW + 60}).rsplit(b".", 1)[1]):
        assert JwtAuth(SECRET).refusal(b"Bearer " + header + b"." + claims + b"." + signature, NOW) == (
            "invalid websocket jwt")


def test_padding_and_characters_outside_base64url_are_refused_as_the_original_refuses_them() -> None:
    token = jwt({"exp": NOW + 60})
    head, signature = token.rsplit(b".", 1)
    for bad in (signature + b"=", signature[:4] + b"!!!!" + signature[4:]):
        assert JwtAuth(SECRET).refusal(head + b"." + bad, NOW) == "invalid websocket jwt"
