"""``trio-codex``: the command line, shaped like the original's so that
clients that launch ``codex`` can launch us unchanged::

    trio-codex [-c key=value]... app-server [--listen stdio://]
    trio-codex [-c key=value]... exec [OPTIONS] [PROMPT]
    trio-codex sandbox linux [--full-auto] COMMAND...
    trio-codex mcp-server
    trio-codex mcp list|get|add|remove ...

(the openai-codex SDK runs ``<bin> --config k=v ... app-server --listen
stdio://``; ``@openai/codex-sdk`` runs ``<bin> exec --experimental-json
...``), and ``exec`` runs one turn in-process (runtime/exec/run.py).

Every command first makes sure CODEX_HOME is there and writable
(``runtime/config/home.py``). ``app-server`` on stdio alone answers the client's
first ``initialize`` before it imports trio and the server
(``runtime/handshake.py``): this module imports neither until then. Whatever goes wrong, a command ends with one line on
stderr and exit status 1, never a traceback (``TRIO_CODEX_LOG=debug`` adds
it) nor a raw exception group.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from ..transports.listen import ALLOW_UNAUTHENTICATED_FLAG, ListenUrl, parse_listen, unauthenticated_exposure
from .exec.cli import add_top_level_flags

if TYPE_CHECKING:
    from ..transports.wsframing import JwtAuth, TokenAuth


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="trio-codex", description=(
        "The Codex app-server protocol and agent loop on trio."))
    p.add_argument("-c", "--config", action="append", default=[], metavar="key=value",
                   help="override a config.toml value; the value is parsed as TOML "
                        "(e.g. -c model=o3 -c 'model_providers.x.base_url=\"http://h/v1\"')")
    add_top_level_flags(p)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    srv = sub.add_parser("app-server", help="serve the app-server protocol (JSON-RPC v2)")
    srv.add_argument("-c", "--config", action="append", default=[], dest="sub_config",
                     metavar="key=value", help=argparse.SUPPRESS)
    srv.add_argument("--listen", action="append", metavar="URL",
                     help="stdio:// (default), unix://, unix://PATH, ws://IP:PORT or off; may be given several "
                          "times to serve on each (e.g. stdio:// and a ws:// beside it)")
    srv.add_argument("--stdio", action="append_const", const="stdio://", dest="listen",
                     help="the same as --listen stdio://")
    srv.add_argument(ALLOW_UNAUTHENTICATED_FLAG, action="store_true",
                     help="serve a ws:// listener on a non-loopback address without --ws-auth (anyone who can "
                          "reach the address gets the agent: only on a network you trust)")
    srv.add_argument("--analytics-default-enabled", action="store_true",
                     help="turn analytics on unless config says [analytics] enabled = false")
    srv.add_argument("--ws-auth", choices=["capability-token", "signed-bearer-token"],
                     help="require a bearer token in websocket upgrades (ws:// and unix://)")
    srv.add_argument("--ws-token-file", metavar="PATH", help="capability-token: the file holding the token")
    srv.add_argument("--ws-token-sha256", metavar="HEX", help="capability-token: the token's SHA-256, in hex")
    srv.add_argument("--ws-shared-secret-file", metavar="PATH",
                     help="signed-bearer-token: the file holding the HS256 secret of the JWTs")
    srv.add_argument("--ws-issuer", help="signed-bearer-token: the required `iss` claim")
    srv.add_argument("--ws-audience", help="signed-bearer-token: the required `aud` claim")
    srv.add_argument("--ws-max-clock-skew-seconds", type=int, metavar="SECONDS",
                     help="signed-bearer-token: slack for `exp` and `nbf` (default 30)")
    # exec parses its own arguments (runtime/exec/cli.py): they are handed
    # over unparsed, options and the `resume` word in any order.
    sub.add_parser("exec", aliases=["e"], add_help=False, help="run Codex non-interactively (see exec --help)")
    srv.add_argument("--cluster", metavar="nats://HOST:PORT", default=os.environ.get("TRIO_CODEX_CLUSTER"),
                     help="run as one node of a cluster on this NATS server with JetStream (default: "
                     "$TRIO_CODEX_CLUSTER); needs the cluster extra")
    srv.add_argument("--store", metavar="postgresql://...", default=os.environ.get("TRIO_CODEX_STORE"),
                     help="with --cluster: the PostgreSQL database that fences appends by epoch "
                     "(default: $TRIO_CODEX_STORE)")
    srv.add_argument("-p", "--profile", help="layer $CODEX_HOME/PROFILE.config.toml over config.toml")
    sandbox = sub.add_parser("sandbox", help="run a command in the sandbox the agent's commands get")
    linux = sandbox.add_subparsers(dest="platform", metavar="PLATFORM", required=True).add_parser(
        "linux", help="bubblewrap: read-only, or workspace-write with --full-auto; network off")
    linux.add_argument("--full-auto", action="store_true", help="let the command write the current directory")
    linux.add_argument("sandboxed", nargs=argparse.REMAINDER, metavar="COMMAND...")
    sub.add_parser("mcp-server", help="run Codex as an MCP server on stdio (tools codex and codex-reply)")
    # mcp parses its own arguments (runtime/mcp/cli.py), as exec does.
    sub.add_parser("mcp", add_help=False, help="manage external MCP servers (see mcp --help)")
    from .cluster.store_cli import add_parser as add_store_parser

    add_store_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> None:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    # exec parses the rest itself (runtime/exec/cli.py).
    if extra and args.command not in ("exec", "e", "mcp"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        _parser().print_help(sys.stderr)
        raise SystemExit(2)
    from .kernel.log import setup_logging

    setup_logging()
    try:
        _run(args, extra)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except SystemExit:
        raise
    except BaseException as exc:
        raise SystemExit(_unexpected(exc)) from None


def _run(args: argparse.Namespace, extra: list[str]) -> None:
    if args.command == "store":
        from .cluster.store_cli import main as store_main

        raise SystemExit(store_main(args, os.environ.get("TRIO_CODEX_STORE")))
    from .config.home import HomeError, prepare_codex_home

    try:
        codex_home = prepare_codex_home()
    except HomeError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    if args.command in ("exec", "e"):
        from .exec.run import main as exec_main

        exec_main(args, extra)
    if args.command == "mcp":
        from .mcp.cli import main as mcp_main

        raise SystemExit(mcp_main(extra, codex_home))
    if args.command == "mcp-server":
        _serve_mcp(args)
    if args.command == "sandbox":
        from .commands.sandbox import run_sandboxed_cli

        command = args.sandboxed[1:] if args.sandboxed[:1] == ["--"] else args.sandboxed
        raise SystemExit(run_sandboxed_cli(command, args.full_auto))
    from functools import partial

    from .config import ConfigError, load_settings
    from .server.limits import Limits

    try:
        settings = load_settings(codex_home=codex_home, overrides=[*args.config, *args.sub_config],
                                 profile=args.profile)
        listens = _listens(args.listen or ["stdio://"])
        ws_auth = _ws_auth(args)
        limits = Limits.from_env()
    except (ValueError, ConfigError) as exc:
        print(f"trio-codex: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if not args.ws_allow_unauthenticated:
        for listen in listens:
            if (refusal := unauthenticated_exposure(listen, ws_auth is not None)) is not None:
                print(f"Error: {refusal}", file=sys.stderr)
                raise SystemExit(1)
    # Flag, then environment (the flags' defaults), then config.toml's [cluster].
    cluster_url = args.cluster or settings.cluster.url
    store = args.store or settings.cluster.store
    if store and not cluster_url:
        print("trio-codex: --store is only used with --cluster", file=sys.stderr)
        raise SystemExit(2)
    cluster = None
    if cluster_url:
        from .cluster.drain import drain_deadline
        from .cluster.node import open_cluster_node

        try:
            drain_deadline(settings.cluster.drain_timeout_secs)  # a bad variable stops start-up, not the drain
        except ValueError as exc:
            print(f"trio-codex: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        cluster = open_cluster_node(cluster_url, store, lease_ttl=settings.cluster.lease_ttl_secs)
    handover = None
    if cluster is None and listens == [ListenUrl("stdio")]:
        # Answer the client's `initialize` now, before trio and the server
        # are imported, which takes most of a cold start (runtime/handshake.py).
        # A cluster node's gateway sees the handshake itself.
        from .handshake import serve_first_line

        handover = serve_first_line(str(settings.codex_home), limits.max_message_bytes)
    import trio

    from .app import serve

    trio.run(partial(serve, settings, listens, max_message_bytes=limits.max_message_bytes,
                     analytics_default_enabled=args.analytics_default_enabled, ws_auth=ws_auth, limits=limits,
                     cluster=cluster, handover=handover))


def _listens(urls: list[str]) -> list[ListenUrl]:
    """Each ``--listen`` once; ``off`` only alone.

    Raises:
      ValueError: a URL is not one we serve, or is given twice.
    """
    listens = [parse_listen(url) for url in urls]
    if len(set(listens)) != len(listens):
        raise ValueError("--listen: the same URL is given twice")
    if len(listens) > 1 and any(listen.scheme == "off" for listen in listens):
        raise ValueError("--listen off cannot be combined with another --listen")
    return listens


def _serve_mcp(args: argparse.Namespace) -> NoReturn:
    """``mcp-server``: Codex as an MCP server on stdio (runtime/mcp/server.py)."""
    import trio

    from .config import ConfigError, load_settings
    from .mcp.server import serve_mcp

    try:
        settings = load_settings(overrides=args.config)
    except ConfigError as exc:
        print(f"Error loading config.toml: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    trio.run(serve_mcp, settings)
    raise SystemExit(0)


def _unexpected(exc: BaseException) -> int | str | None:
    """The exit status after ``exc`` reached the top: what a ``SystemExit``
    or an interrupt inside it (trio wraps them in exception groups) asked
    for; otherwise 1, after one line naming the error (and the traceback
    when the log level is debug)."""
    leaf = _leaf(exc)
    if isinstance(leaf, SystemExit):
        return leaf.code
    if isinstance(leaf, KeyboardInterrupt):
        return 130
    debug = logging.getLogger("trio_codex").isEnabledFor(logging.DEBUG)
    if debug:
        traceback.print_exception(exc)
    hint = "" if debug else " (run with TRIO_CODEX_LOG=debug for the traceback)"
    print(f"Error: unexpected {type(leaf).__name__}: {leaf}{hint}", file=sys.stderr)
    return 1


def _leaf(exc: BaseException) -> BaseException:
    """The exception that matters in a (nested) group: an exit or an
    interrupt if there is one, else the first that is not a cancellation."""
    if not isinstance(exc, BaseExceptionGroup):
        return exc
    leaves = []
    stack: list[BaseException] = [exc]
    while stack:
        item = stack.pop()
        if isinstance(item, BaseExceptionGroup):
            stack.extend(reversed(item.exceptions))
        else:
            leaves.append(item)
    for kind in (SystemExit, KeyboardInterrupt):
        found = next((e for e in leaves if isinstance(e, kind)), None)
        if found is not None:
            return found
    import trio

    return next((e for e in leaves if not isinstance(e, trio.Cancelled)), leaves[0])


def _ws_auth(args: argparse.Namespace) -> TokenAuth | JwtAuth | None:
    """``--ws-auth`` and its token or secret, as the original takes them.

    Raises:
      ValueError: the flags do not fit together, or a file cannot be read.
    """
    token_flags = args.ws_token_file or args.ws_token_sha256
    jwt_flags = (args.ws_shared_secret_file or args.ws_issuer or args.ws_audience
                 or args.ws_max_clock_skew_seconds is not None)
    if args.ws_auth != "capability-token" and token_flags:
        raise ValueError("--ws-token-file and --ws-token-sha256 need --ws-auth capability-token")
    if args.ws_auth != "signed-bearer-token" and jwt_flags:
        raise ValueError("--ws-shared-secret-file, --ws-issuer, --ws-audience and --ws-max-clock-skew-seconds "
                         "need --ws-auth signed-bearer-token")
    if args.ws_auth is None:
        return None
    # Imported only when asked for: it brings wsproto, which a stdio
    # server does not need to answer `initialize`.
    from ..transports.wsframing import MIN_SECRET_BYTES, JwtAuth, TokenAuth

    if args.ws_auth == "signed-bearer-token":
        if not args.ws_shared_secret_file:
            raise ValueError("--ws-auth signed-bearer-token needs --ws-shared-secret-file PATH")
        skew = 30 if args.ws_max_clock_skew_seconds is None else args.ws_max_clock_skew_seconds
        if skew < 0:
            raise ValueError("--ws-max-clock-skew-seconds: expected a number of seconds, 0 or more")
        secret = _read_secret("--ws-shared-secret-file", args.ws_shared_secret_file).encode()
        if len(secret) < MIN_SECRET_BYTES:
            # The original's words; a short HMAC key is guessable offline from one token.
            raise ValueError(f"signed websocket bearer secret {args.ws_shared_secret_file} must be at least "
                             f"{MIN_SECRET_BYTES} bytes")
        return JwtAuth(secret, args.ws_issuer, args.ws_audience, skew)
    if bool(args.ws_token_file) == bool(args.ws_token_sha256):
        raise ValueError("--ws-auth capability-token needs exactly one of --ws-token-file PATH "
                         "or --ws-token-sha256 HEX")
    if args.ws_token_sha256:
        try:
            digest = bytes.fromhex(args.ws_token_sha256)
        except ValueError:
            digest = b""
        if len(digest) != 32:
            raise ValueError("--ws-token-sha256: expected 64 hex digits (a SHA-256)")
        return TokenAuth(digest)
    return TokenAuth.from_token(_read_secret("--ws-token-file", args.ws_token_file))


def _read_secret(flag: str, path: str) -> str:
    """A token or secret file's content, without surrounding whitespace."""
    try:
        with open(path, encoding="utf-8") as f:
            secret = f.read().strip()
    except OSError as exc:
        raise ValueError(f"{flag} {path}: {exc.strerror}") from None
    if not secret:
        raise ValueError(f"{flag} {path}: the file is empty")
    return secret
