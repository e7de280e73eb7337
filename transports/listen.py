"""Parse ``--listen`` the way the original does."""

from __future__ import annotations

import ipaddress

import msgspec

ACCEPTED = "`stdio://`, `unix://`, `unix://PATH`, `ws://IP:PORT`, or `off`"


class ListenUrl(msgspec.Struct, frozen=True):
    scheme: str  # "stdio" | "unix" | "ws" | "off"
    path: str | None = None  # unix socket path; None = the default under CODEX_HOME
    host: str | None = None
    port: int | None = None


def parse_listen(url: str) -> ListenUrl:
    """Raises ValueError with the original's message for anything else."""
    if url in ("stdio://", "stdio"):
        return ListenUrl("stdio")
    if url == "off":
        return ListenUrl("off")
    if url.startswith("unix://"):
        return ListenUrl("unix", path=url[len("unix://"):] or None)
    if url.startswith("ws://"):
        host, sep, port = url[len("ws://"):].rpartition(":")
        if sep and host and port.isdigit() and int(port) < 65536:
            return ListenUrl("ws", host=host.strip("[]"), port=int(port))
    raise ValueError(f"unsupported --listen URL `{url}`; expected {ACCEPTED}")


#: The flag that lets a websocket listener on a non-loopback address run
#: without ``--ws-auth`` (the original has no such flag: it always refuses).
ALLOW_UNAUTHENTICATED_FLAG = "--ws-allow-unauthenticated"


def unauthenticated_exposure(listen: ListenUrl, has_auth: bool) -> str | None:
    """Why serving ``listen`` without auth would expose the server to the
    network (the original's refusal, and how to get past it), or None: a
    ``ws://`` listener on an address that is not loopback (``0.0.0.0`` and
    host names included) needs ``--ws-auth``; stdio and unix sockets are
    guarded by the user's own permissions."""
    if listen.scheme != "ws" or has_auth:
        return None
    try:
        if ipaddress.ip_address(listen.host or "").is_loopback:
            return None
    except ValueError:
        pass
    host = f"[{listen.host}]" if ":" in (listen.host or "") else listen.host
    return (f"refusing to start non-loopback websocket listener {host}:{listen.port} without auth; configure "
            f"`--ws-auth capability-token` or `--ws-auth signed-bearer-token` (or pass "
            f"{ALLOW_UNAUTHENTICATED_FLAG} to let anyone who can reach it in)")
