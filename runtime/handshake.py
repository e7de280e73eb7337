"""A stdio client's ``initialize``, answered before the server is imported.

A client that spawns ``trio-codex app-server`` (the Python SDK per
``Codex()``, the TypeScript SDK per turn) waits for the answer to its first
request, ``initialize``. Importing trio, the actors and the protocol takes
most of a cold start, and none of it is needed to answer: the answer is the
server's facts (:func:`user_agent`, CODEX_HOME, the platform) and the
client's name. So the command line reads the first line on stdin before
that import (:func:`read_first_line`), answers it here when it is a
well-formed ``initialize`` (:func:`answer`, pure), writes the answer
(:func:`write_all`), and hands the connection over: the
:class:`~trio_codex.actors.connection.Connection` starts initialized with
the same client info and capabilities, as if it had handled the request
itself (analytics included), and the stdio transport gets every byte read
beyond that line.

Rule: the answer given here is the one the connection would give, or none.
The frame goes through the same codec (routing, id, depth, params against
:class:`InitializeParams`) and the same ``clientInfo.name`` check; anything
else (another first method, a blank or oversized first line, JSON that is
not a request, params that do not decode, a name the connection refuses)
is left to the connection unchanged, which answers it as it answers any
first frame.

Only the standard library and msgspec (which the command line imports
anyway) are imported here, never trio.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import select
import signal
import sys
from typing import NamedTuple

from .protocol import codec
from .protocol.jsonrpc import RequestId, Response
from .protocol.v2.initialize import ClientInfo, InitializeParams, InitializeResponse

#: The codex-cli release whose app-server protocol we serve. Clients gate
#: features on it (the openai-codex SDK probes the schema when it sees 0.0.0).
PROTOCOL_VERSION = "0.171.0"

#: What the original accepts as ``clientInfo.name`` (an HTTP header value:
#: it goes into the userAgent).
HEADER_VALUE = re.compile(r"^[\t\x20-\x7e\x80-\xff]*$")

PLATFORM_FAMILY = "windows" if sys.platform == "win32" else "unix"
PLATFORM_OS = {"darwin": "macos", "win32": "windows"}.get(sys.platform, "linux")

READ_SIZE = 64 * 1024

log = logging.getLogger("trio_codex.handshake")


class Accepted(NamedTuple):
    """An ``initialize`` answered here: what the connection adopts."""

    request_id: RequestId
    params: InitializeParams
    response: InitializeResponse
    #: The answer's JSONL line, newline included.
    line: bytes


class Handover(NamedTuple):
    """What the command line hands the stdio connection: the ``initialize``
    answered (None: nothing was), and the bytes read from stdin that the
    connection has not seen (the whole first line too when it was not
    answered)."""

    accepted: Accepted | None
    buffered: bytes


def os_description() -> str:
    """``Debian 12.0.0``: the distribution and a three-part version, as the
    original's userAgent names the OS."""
    try:
        with open("/etc/os-release") as f:
            fields = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
    except OSError:
        return f"{platform.system()} {platform.release()}"
    name = fields.get("NAME", "Linux").strip('"').removesuffix(" GNU/Linux")
    parts = fields.get("VERSION_ID", "").strip('"').split(".")
    version = ".".join((parts + ["0", "0"])[:3]) if parts[0] else ""
    return f"{name} {version}".strip()


def terminal() -> str:
    """The terminal part of the userAgent, as the original derives it."""
    program = os.environ.get("TERM_PROGRAM")
    if program:
        version = os.environ.get("TERM_PROGRAM_VERSION")
        return f"{program}/{version}" if version else program
    return os.environ.get("TERM") or "unknown"


def user_agent_middle() -> str:
    """The userAgent between the originator and the client: the protocol
    version, the OS and the terminal (computed once per process)."""
    return f"{PROTOCOL_VERSION} ({os_description()}; {platform.machine()}) {terminal()}"


def user_agent(originator: str, middle: str, client: ClientInfo) -> str:
    return f"{originator}/{middle} ({client.name}; {client.version})"


def answer(line: bytes, *, codex_home: str, max_line: int) -> Accepted | None:
    """The answer to ``line`` (a first stdin line, without its newline) when
    it is an ``initialize`` the connection would accept, as the first
    client of the process (whose name is the originator); else None.
    Never raises."""
    line = line.rstrip(b"\r")
    if not line.strip() or len(line) > max_line:
        return None
    req = codec.decode(line)
    if not isinstance(req, codec.Request) or req.method != "initialize":
        return None
    try:
        params = codec.decode_params(req.params, InitializeParams)
    except Exception:
        return None
    name = params.client_info.name if params is not None else ""
    if not name or not HEADER_VALUE.match(name):
        return None
    response = InitializeResponse(
        user_agent=user_agent(name, user_agent_middle(), params.client_info),
        codex_home=codex_home, platform_family=PLATFORM_FAMILY, platform_os=PLATFORM_OS)
    return Accepted(req.id, params, response, codec.encode(Response(req.id, response)) + b"\n")


def read_first_line(fd: int, limit: int) -> tuple[bytes | None, bytes]:
    """Read ``fd`` until it holds a newline: (the first line without its
    newline, everything read); the line is None at end of file, past
    ``limit`` bytes without a newline, or when the descriptor cannot be
    read blocking (the connection then reads it all). A SIGTERM or SIGINT
    meanwhile ends the process with status 0, as it ends a server with no
    client."""
    buf = bytearray()
    previous = {sig: signal.signal(sig, _exit_quietly) for sig in (signal.SIGTERM, signal.SIGINT)}
    log.debug("reading the first line on stdin")
    try:
        while (nl := buf.find(b"\n")) < 0:
            if len(buf) > limit:
                return None, bytes(buf)
            try:
                data = os.read(fd, READ_SIZE)
            except OSError:
                return None, bytes(buf)
            if not data:
                return None, bytes(buf)
            buf += data
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return bytes(buf[:nl]), bytes(buf)


def write_all(fd: int, data: bytes) -> bool:
    """Write ``data`` whole to ``fd`` (waiting when it is non-blocking);
    False when the peer is gone (the connection finds that out itself)."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            select.select([], [fd], [])
        except OSError:
            return False
    return True


def serve_first_line(codex_home: str, max_line: int, *, stdin: int = 0, stdout: int = 1) -> Handover:
    """Read stdin's first line and answer it when :func:`answer` can; what
    the stdio connection takes over."""
    line, read = read_first_line(stdin, max_line)
    accepted = None if line is None else answer(line, codex_home=codex_home, max_line=max_line)
    if accepted is None:
        return Handover(None, read)
    write_all(stdout, accepted.line)
    return Handover(accepted, read[len(line) + 1:])


def _exit_quietly(signum: int, frame: object) -> None:
    raise SystemExit(0)
