"""Give the kernel, the Codex domain libraries and the actors' helpers their
rooms (README, "Architecture"; issue 18, "The layout shows the architecture").

Run it from anywhere in the repository: ``python scripts/relayout.py``
(``--dry-run`` lists what it would move). It is idempotent: a second run
changes nothing, and an entry of :data:`MOVES` whose source is gone and
whose target exists is skipped, so it can be run again on a tree that other
branches changed since (it moves what is left and fixes their references).

What it does, in order:

1. ``git mv`` every module or package of :data:`MOVES` (old dotted name under
   ``trio_codex.`` -> new one). An entry applies by prefix: ``runtime.rollout``
   moves ``runtime/rollout.py`` or the package ``runtime/rollout/`` whole, and
   ``runtime.rollout.X`` becomes ``<new>.X`` wherever it is named. An entry
   whose target lies inside its source (``actors.model`` ->
   ``actors.model.stream``: a module that becomes a package) moves the module
   file only.
2. Rewrite the imports of every ``.py`` under the code, test, bench and
   script folders, found with :mod:`ast`: each import's absolute target is
   computed from where the importing file was, mapped, and written back from
   where the file is now, relative if it was relative. ``from X import a, b``
   becomes one statement per new module when ``a`` and ``b`` went to
   different rooms; a module whose name changed keeps its old name as an
   alias, so no code below an import changes.
3. Rewrite dotted names (``trio_codex.runtime.x``: docstrings, monkeypatch
   targets, ``python -m``, ``sys.modules`` checks; and ``runtime.x`` in
   prose) and slash paths
   (``runtime/x.py``) in ``.py``, ``.md``, ``.toml``, ``.cfg``, ``.ci/run``
   and ``docs/``.
4. Write the package catalogues: the ``__init__`` docstrings of the rooms,
   of ``runtime/`` and of ``actors/`` are this script's (:data:`PACKAGES`); in
   every other package, a module its docstring does not name is added to a
   table of "the other modules". A module's line is :data:`DESCRIPTIONS`',
   else the one the old catalogue gave it, else its docstring's first
   sentence (reported, so that a better line can be added here).
5. List every package folder in ``pyproject.toml``'s ``[tool.setuptools]``.
"""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The folders that install as ``trio_codex.<folder>``.
PACKAGE_FOLDERS = ("actors", "runtime", "transports", "bench")
#: The folders whose ``.py`` files get their imports and names rewritten.
PY_FOLDERS = ("actors", "runtime", "transports", "tests", "bench", "scripts")
#: Text files whose dotted names and slash paths are rewritten.
TEXT_GLOBS = ("*.md", "*.toml", "*.cfg", ".ci/run", "docs/**/*")
SELF = Path(__file__).resolve()

#: Old module or package (under ``trio_codex.``) -> new one.
MOVES: dict[str, str] = {
    # The kernel: the actor runtime proper, nothing about Codex.
    "runtime.mailbox": "runtime.kernel.mailbox",
    "runtime.ask": "runtime.kernel.ask",
    "runtime.supervisor": "runtime.kernel.supervisor",
    "runtime.errors": "runtime.kernel.errors",
    "runtime.ids": "runtime.kernel.ids",
    "runtime.log": "runtime.kernel.log",
    "runtime.stream": "runtime.kernel.stream",
    "runtime.clock": "runtime.kernel.clock",
    # What a thread leaves on disk, and reading it back.
    "runtime.rollout": "runtime.persistence.rollout",
    "runtime.thread_index": "runtime.persistence.thread_index",
    "runtime.history_pages": "runtime.persistence.history_pages",
    "runtime.goals": "runtime.persistence.goals",
    "runtime.git": "runtime.persistence.git",
    # What the model is sent.
    "runtime.history": "runtime.conversation.history",
    "runtime.collaboration": "runtime.conversation.collaboration",
    "runtime.review": "runtime.conversation.review",
    # Running a command: may it, in which sandbox, as which process, and what
    # the model reads of it.
    "runtime.command_safety": "runtime.commands.safety",
    "runtime.permissions": "runtime.commands.permissions",
    "runtime.sandbox": "runtime.commands.sandbox",
    "runtime.seccomp": "runtime.commands.seccomp",
    "actors.process": "runtime.commands.process",
    "actors.child": "runtime.commands.child",
    "runtime.tool_output": "runtime.commands.output",
    "runtime.notify": "runtime.commands.notify",
    # Files: patches, the client's file operations, the fuzzy search.
    "runtime.apply_patch": "runtime.files.apply_patch",
    "runtime.patch_writer": "runtime.files.patch_writer",
    "runtime.fs_ops": "runtime.files.fs_ops",
    "runtime.file_search": "runtime.files.file_search",
    # config.toml and CODEX_HOME (config/ imports the MCP server table).
    "runtime.mcp_config": "runtime.config.mcp",
    "runtime.config_write": "runtime.config.write",
    "runtime.auth": "runtime.config.auth",
    "runtime.home": "runtime.config.home",
    # MCP: the tools the model sees, and the `mcp-server` / `mcp` commands.
    "runtime.mcp_tools": "runtime.mcp.tools",
    "runtime.mcp_server": "runtime.mcp.server",
    "runtime.mcp_server_tools": "runtime.mcp.server_tools",
    "runtime.mcp_cli": "runtime.mcp.cli",
    # `trio-codex exec`.
    "runtime.exec": "runtime.exec.run",
    "runtime.exec_cli": "runtime.exec.cli",
    "runtime.exec_events": "runtime.exec.events",
    "runtime.exec_human": "runtime.exec.human",
    # What the server answers by itself, and the limits it keeps.
    "runtime.server_info": "runtime.server.info",
    "runtime.local_requests": "runtime.server.local_requests",
    "runtime.rate_limits": "runtime.server.rate_limits",
    "runtime.limits": "runtime.server.limits",
    # actors/: an actor's helpers go into its package.
    "actors.analytics": "actors.analytics.actor",
    "actors.analytics_facts": "actors.analytics.facts",
    "actors.analytics_reducer": "actors.analytics.reducer",
    "actors.model": "actors.model.stream",
    "actors.model_pool": "actors.model.pool",
    "actors.sdk": "actors.model.sdk",
    "actors.mcp_pool": "actors.mcp.pool",
    "actors.mcp_connection": "actors.mcp.connection",
    "actors.tools": "actors.turn.tools",
    "actors.mcp_calls": "actors.turn.mcp_calls",
    "actors.command_exec": "actors.connection.command_exec",
    "actors.fs_requests": "actors.connection.fs_requests",
    # How every actor sends and handles the vocabulary.
    "actors.fanout": "actors.messages.fanout",
    "actors.barrier": "actors.messages.barrier",
}

#: One line per module, by new dotted name (wins over the old catalogues).
DESCRIPTIONS: dict[str, str] = {
    # runtime/
    "runtime.kernel": "the actor runtime: mailboxes, ask, supervision, errors, the frame seam, ids, "
                      "clock, logging (trio and msgspec only, nothing about Codex)",
    "runtime.protocol": "the wire vocabulary: JSON-RPC envelope and codec, the method table, the v2 "
                        "types, the Responses API types, serde's wording",
    "runtime.config": "config.toml, ``-c`` and profiles read as the original reads them; config writes, "
                      "the MCP server table, the stored login, ``CODEX_HOME``",
    "runtime.persistence": "what a thread leaves on disk (rollouts, the listing index, goals) and "
                           "reading it back",
    "runtime.conversation": "what the model is sent: the history, collaboration modes, review prompts",
    "runtime.commands": "running a command: whether it may, its sandbox, its process, what the model "
                        "reads of it",
    "runtime.files": "patches and the client's file operations",
    "runtime.mcp": "MCP tools as the model sees them; ``trio-codex mcp-server`` and ``mcp``",
    "runtime.exec": "``trio-codex exec``: one turn, no client needed",
    "runtime.server": "what the server answers by itself, and the limits it keeps",
    "runtime.cluster": "the seams (thread store, bus, directory) that let threads live on other nodes, "
                       "and their backends",
    "runtime.app": "``serve()``: the host nursery and every actor under it (the composition root)",
    "runtime.cli": "``trio-codex``'s command line",
    "runtime.embed": "the embedding API: ``Server``",
    "runtime.client": "``Client``: any transport, typed",
    "runtime.client_events": "the client's errors and events, and their decoding",
    "runtime.handshake": "a stdio client's ``initialize`` answered before trio and the server are "
                         "imported (a faster cold start)",
    # runtime/kernel/
    "runtime.kernel.mailbox": "bounded mailboxes and their overflow policies",
    "runtime.kernel.ask": "request/reply between actors, bounded by a timeout",
    "runtime.kernel.supervisor": "one-for-one supervision with a restart budget",
    "runtime.kernel.errors": "the one exception tree",
    "runtime.kernel.stream": "``FrameStream``, the seam between transports and connections",
    "runtime.kernel.ids": "UUIDv7 ids",
    "runtime.kernel.clock": "Unix milliseconds, as the protocol stamps time",
    "runtime.kernel.log": "logging to stderr (stdout is the stdio transport's)",
    # runtime/persistence/
    "runtime.persistence.rollout": "rollout files: the on-disk thread record, its replay",
    "runtime.persistence.thread_index": "the thread listing index (SQLite)",
    "runtime.persistence.history_pages": "pages of a thread's history (``thread/turns/list``, "
                                         "``thread/items/list``)",
    "runtime.persistence.goals": "thread goals (SQLite)",
    "runtime.persistence.git": "what a rollout records of its repository",
    # runtime/conversation/
    "runtime.conversation.history": "the model-facing history: turns, rollback, compaction",
    "runtime.conversation.collaboration": "collaboration modes and their instructions",
    "runtime.conversation.review": "``review/start``: prompts and the reviewer's answer",
    # runtime/commands/
    "runtime.commands.safety": "which commands and patches run without asking, and what the client is "
                               "asked",
    "runtime.commands.permissions": "permission profiles: the sandbox a profile stands for",
    "runtime.commands.sandbox": "the bubblewrap sandbox",
    "runtime.commands.environment": "the environment a command is spawned with",
    "runtime.commands.seccomp": "the sandbox's seccomp filter",
    "runtime.commands.process": "the process runner and tables: every child process of a thread or "
                                "a connection",
    "runtime.commands.child": "one child process: its session, pipes or terminal, reaping",
    "runtime.commands.output": "the text the model receives for a command",
    "runtime.commands.notify": "the ``notify`` program run after each turn",
    # runtime/files/
    "runtime.files.apply_patch": "the ``apply_patch`` format: parse, plan, apply",
    "runtime.files.patch_writer": "carrying out a planned patch, undoing on failure",
    "runtime.files.fs_ops": "the file operations behind ``fs/*``",
    "runtime.files.file_search": "the fuzzy file search (``@`` mentions)",
    # runtime/config/ (a package with its own prose; these join its catalogue)
    "runtime.config.mcp": "``[mcp_servers.NAME]``, typed",
    "runtime.config.write": "``config/value/write`` and ``config/batchWrite``",
    "runtime.config.auth": "the stored API-key login",
    "runtime.config.home": "``CODEX_HOME`` checked at start-up",
    # runtime/mcp/
    "runtime.mcp.tools": "MCP tools as the model sees them",
    "runtime.mcp.server": "``trio-codex mcp-server`` (an entry point)",
    "runtime.mcp.server_tools": "``mcp-server``'s tools and messages, sans-I/O",
    "runtime.mcp.cli": "``trio-codex mcp list|get|add|remove``",
    # runtime/exec/
    "runtime.exec.run": "the run: one thread, one turn, on an in-process server or a daemon (an entry "
                        "point)",
    "runtime.exec.cli": "``exec``'s command line",
    "runtime.exec.events": "``exec --json``: notifications in, JSONL events out",
    "runtime.exec.human": "``exec``'s transcript and answer",
    # runtime/server/
    "runtime.server.info": "the handshake facts and the read-only requests",
    "runtime.server.local_requests": "requests answered from ``CODEX_HOME`` alone",
    "runtime.server.rate_limits": "the provider's usage limits, from response headers",
    "runtime.server.limits": "the limits that keep clients from taking the server down",
    # runtime/cluster/ (a package with its own prose; these join its catalogue)
    "runtime.cluster.drain": "draining a node: its threads handed to the others",
    "runtime.cluster.memory": "the in-process Bus and Directory",
    "runtime.cluster.mirror": "the rollouts of a node's threads, copied into the cluster's store",
    "runtime.cluster.nats_bus": "the Bus on NATS",
    "runtime.cluster.nats_directory": "the Directory in JetStream KV",
    "runtime.cluster.node": "one node of a cluster: its Bus, Directory and ThreadStore",
    "runtime.cluster.pg_store": "the ThreadStore in PostgreSQL",
    "runtime.cluster.ports": "the ports: typing Protocols, no implementation",
    "runtime.cluster.store_cli": "``trio-codex store export|import``",
    "runtime.cluster.tunnel": "requests for a thread another node owns, tunnelled over the Bus",
    # runtime/protocol/
    "runtime.protocol.codec": "the sans-I/O JSON-RPC codec: frames to typed messages and back",
    "runtime.protocol.jsonrpc": "the JSON-RPC envelope as the app server speaks it",
    "runtime.protocol.methods": "the method table: params, route and handler of every method",
    "runtime.protocol.original": "the method names of the original's protocol (generated)",
    "runtime.protocol.paging": "the cursors of in-memory listings",
    "runtime.protocol.responses": "the OpenAI Responses API: request body, stream events, items",
    "runtime.protocol.rust": "Rust's integer types as msgspec constraints",
    "runtime.protocol.serde_reader": "serde_json's reading of a JSON text, for its first error",
    "runtime.protocol.serde_wording": "the original's error wording, which is serde's",
    "runtime.protocol.tools": "the tools the model is offered",
    "runtime.protocol.v2": "the app-server protocol's v2 types",
    "runtime.protocol.v2._base": "the base classes of the v2 types",
    "runtime.protocol.v2.account": "signing in and out, the account",
    "runtime.protocol.v2.approval": "server requests that ask the client for a decision",
    "runtime.protocol.v2.command": "``command/exec``: a process owned by a connection",
    "runtime.protocol.v2.config": "config writes and model providers",
    "runtime.protocol.v2.discovery": "what a client asks about while it sets up",
    "runtime.protocol.v2.fs": "``fs/*`` and ``fuzzyFileSearch*``",
    "runtime.protocol.v2.initialize": "``initialize``: the per-connection handshake",
    "runtime.protocol.v2.item": "thread items, user input, item notifications",
    "runtime.protocol.v2.mcp": "the MCP methods' params",
    "runtime.protocol.v2.models": "``model/list``, ``account/read``, ``config/read``",
    "runtime.protocol.v2.thread": "threads: the Thread object, its status, the thread methods",
    "runtime.protocol.v2.turn": "turns: the turn methods and notifications",
    # actors/
    "actors.analytics": "facts in, events out through the exporters (a package: the actor, its facts "
                        "and the reducer)",
    "actors.model": "the model stream: one Responses request streamed into the turn's task (a "
                    "package: the stream and ``ModelClient``, the pool of clients, the SDK import)",
    "actors.mcp": "the owner of the MCP connections, one per server (a package: the pool, one "
                  "connection)",
    "actors.messages": "the vocabulary: one frozen Struct per message, one union per inbox; and how "
                       "every actor delivers and handles it",
    "actors.turn": "one per turn: the sampling loop; streams item events; runs its tool calls",
    "actors.connection": "one per client: JSON-RPC session, handshake, dispatch, the outbox writer, "
                         "the processes and file requests the client owns",
    # actors/analytics/
    "actors.analytics.actor": "the actor: facts in through a best-effort mailbox, events out",
    "actors.analytics.facts": "the facts, and the ``Recorder`` every actor hands them to",
    "actors.analytics.reducer": "pure: facts in, analytics events out",
    # actors/model/
    "actors.model.stream": "the model stream and ``ModelClient``: the SDK's raw stream decoded into "
                           "msgspec events, with the original's retry policy",
    "actors.model.pool": "the model clients of the server, one per provider",
    "actors.model.sdk": "the openai SDK's client, imported without its typed models",
    # actors/mcp/
    "actors.mcp.pool": "the actor: the MCP connections, one per server",
    "actors.mcp.connection": "one MCP client session (and, over stdio, its process)",
    # joining existing actor packages
    "actors.turn.tools": "one tool call, run in its turn's nursery",
    "actors.turn.mcp_calls": "the model's MCP tool and resource calls, for :mod:`.tools`",
    "actors.connection.command_exec": "``command/exec``: the processes a connection owns",
    "actors.connection.fs_requests": "``fs/*``, ``fs/watch`` and the fuzzy file search of a connection",
    "actors.messages.fanout": "delivering a wire message to a set of connections",
    "actors.messages.barrier": "the bug barrier every actor loop handles its messages behind",
}

#: The catalogues this script owns: package -> (prose, [(section title, [child, ...])]).
#: A child the sections do not name (one another branch added) is listed
#: under :data:`UNPLACED`, and ``tests/test_layout.py`` then says where it
#: may not be.
PACKAGES: dict[str, tuple[str, list[tuple[str, list[str]]]]] = {
    "runtime": (
        """trio_codex.runtime: the kernel every actor builds on, the wire
vocabulary, the Codex domain libraries in rooms by concern, and the entry
points.

The kernel's public names are re-exported here. The composition root,
:func:`trio_codex.runtime.app.serve`, is imported from its module: it pulls
in actors/ and transports/, which themselves import this package.

Embedding the server in a trio program, and a typed client of it or of
any app server: :mod:`trio_codex.runtime.embed` (README, "Embedding")::

    from trio_codex.runtime.embed import Client, Server

Nothing in a room imports actors/ or transports/; the kernel imports nothing
outside itself (``tests/test_layout.py``). Each room's docstring lists its
modules.""",
        [
            ("The kernel and the wire vocabulary:", ["kernel", "protocol"]),
            ("The Codex domain libraries (sans-I/O where they can be; blocking ones are run off "
             "the trio thread by their actor):",
             ["config", "persistence", "conversation", "commands", "files", "mcp", "server", "cluster"]),
            ("The composition root and the entry points (of these, ``app``, ``cli``, ``embed`` and "
             "``client``, with ``exec.run`` and ``mcp.server``, may import actors/ and transports/; "
             "nothing else may):",
             ["app", "cli", "exec", "embed", "client", "client_events", "handshake"]),
        ],
    ),
    "runtime.kernel": (
        """The kernel: the actor runtime proper, on trio and msgspec only.

Nothing here knows about Codex, and nothing here imports the rest of
trio_codex (``tests/test_layout.py``). Actors import these modules by their
path; :mod:`trio_codex.runtime` re-exports the public names for embedders.""",
        [("", ["mailbox", "ask", "supervisor", "errors", "stream", "ids", "clock", "log"])],
    ),
    "runtime.persistence": (
        """What a thread leaves on disk, and reading it back: the rollout files
(the original's format), the listing index and the goals (SQLite), the
pages of a thread's history, the repository a rollout records.""",
        [("", ["rollout", "thread_index", "history_pages", "goals", "git"])],
    ),
    "runtime.conversation": (
        """What the model is sent, sans-I/O: the model-facing history and its
compaction, collaboration modes, review prompts and answers.""",
        [("", ["history", "collaboration", "review"])],
    ),
    "runtime.commands": (
        """Running a command: whether it may run without asking (the original's
command-safety rules), under which permissions and sandbox, as which child
process, and the text the model reads of it.""",
        [("", ["safety", "permissions", "sandbox", "environment", "seccomp", "process", "child", "output",
               "notify"])],
    ),
    "runtime.files": (
        """Files: the ``apply_patch`` format and carrying out a patch, the client's
own file operations (``fs/*``), the fuzzy file search.""",
        [("", ["apply_patch", "patch_writer", "fs_ops", "file_search"])],
    ),
    "runtime.mcp": (
        """MCP: the tools of MCP servers as the model sees them, and the commands
``trio-codex mcp-server`` (this server as an MCP server; an entry point) and
``trio-codex mcp`` (the ``[mcp_servers]`` table). The MCP client sessions are
actors (``actors/mcp/``); the table's types are ``runtime/config/mcp.py``.""",
        [("", ["tools", "server", "server_tools", "cli"])],
    ),
    "runtime.exec": (
        """``trio-codex exec``: one turn, no client needed, as the original's
``codex exec`` (the engine of ``@openai/codex-sdk``). :mod:`.run` is an entry
point (it starts a server in-process or reaches a daemon); its flags, JSONL
events and transcript are sans-I/O modules beside it.""",
        [("", ["run", "cli", "events", "human"])],
    ),
    "runtime.server": (
        """What the server answers by itself (the handshake facts, the read-only
requests, what ``CODEX_HOME`` alone answers, the provider's usage limits)
and the limits that keep clients from taking it down.""",
        [("", ["info", "local_requests", "rate_limits", "limits"])],
    ),
    "actors": (
        """trio_codex.actors: the actors, one module or package each (a big actor
is a package of modules of at most 600 lines, one per concern; an actor's
helpers live in its package), and the vocabulary they speak. Nothing
executable here; this is the catalogue.""",
        [
            ("Actors (each runs an inbox loop, or a task streaming into one, under the host's "
             "nursery tree):",
             ["connection", "hub", "threads", "thread", "turn", "model", "approvals", "store",
              "rollout_writer", "analytics", "mcp"]),
            ("Shared by every actor:", ["messages"]),
        ],
    ),
    "actors.analytics": (
        """Analytics: facts in through a small best-effort mailbox, events out
through the exporters; never in the way of the server. Every actor records
facts through :mod:`.facts` (the one module of this package other actors
import).""",
        [("", ["actor", "facts", "reducer"])],
    ),
    "actors.model": (
        """The model side: the stream of one Responses API request, handed to the
turn in its own task, the clients it streams through, one per provider,
and the openai SDK they use.""",
        [("", ["stream", "pool", "sdk"])],
    ),
    "actors.mcp": (
        """The MCP connections: the pool owns one connection actor per configured
server, started and supervised under it; a turn's tool calls reach it
through messages (``actors/turn/mcp_calls.py``).""",
        [("", ["pool", "connection"])],
    ),
}
UNPLACED = "Not given a room yet (see scripts/relayout.py):"

#: Intros for packages whose ``__init__`` has no docstring yet.
INTROS: dict[str, str] = {
    "runtime.protocol": """The wire vocabulary, sans-I/O: the JSON-RPC envelope and codec, the
method table, the v2 types, the Responses API types, serde's wording.""",
    "runtime.protocol.v2": """The app-server protocol's v2 types as msgspec Structs, one module per area
of the protocol; field names, order and wording are the original's.""",
}

#: Literal fixes, (file as it is after the moves, old text, new text), for
#: references no rule above can compute (relative ``:mod:`` references).
TEXT_FIXES: list[tuple[str, str, str]] = [
    ("runtime/files/apply_patch/__init__.py", ":mod:`.patch_writer`", ":mod:`..patch_writer`"),
]

SLASH = re.compile(r"(?<![\w./-])((?:actors|runtime)(?:/\w+)+)(\.py\b|/)?")
DOTTED = re.compile(r"\btrio_codex\.((?:actors|runtime)(?:\.\w+)+)")
#: An import in a string (``python -c`` scripts in tests).
EMBEDDED = re.compile(r"\bfrom trio_codex\.[\w.]+ import \w+(?: as \w+)?(?:, \w+(?: as \w+)?)*")
#: A dotted name in prose without the prefix (``runtime.rollout.Replay``,
#: ``~..runtime.ask.ReplySlot``).
BARE = re.compile(r"(?<![\w/-])(?<!trio_codex\.)\b((?:actors|runtime)(?:\.\w+)+)")
ROW = re.compile(r"^``(\w+)``\s{2,}(\S.*)$")


# --- the tree ---------------------------------------------------------------


def module_of(path: Path) -> str:
    """``runtime/rollout.py`` -> ``runtime.rollout``; a package is its folder."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def path_of(module: str) -> Path | None:
    """The file or package folder of a module, if it exists."""
    base = ROOT.joinpath(*module.split("."))
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base
    return None


def tree_modules() -> set[str]:
    return {module_of(p) for folder in PACKAGE_FOLDERS for p in (ROOT / folder).rglob("*.py")}


def overlaps(src: str) -> bool:
    """A module that becomes a package of the same name."""
    return MOVES[src].startswith(src + ".")


class Mapper:
    """Old dotted names to new ones, for a tree whose moves are known."""

    def __init__(self, pending: set[str], new_modules: set[str]) -> None:
        self.pending = pending
        self.new_modules = new_modules

    def children(self, package: str) -> set[str]:
        """The modules of a package after the moves (those the moves bring too)."""
        n = len(package.split("."))
        return {m.split(".")[n] for m in (*self.new_modules, *MOVES.values()) if m.startswith(package + ".")}

    def map(self, name: str, *, exact_overlap: bool | None = None) -> str:
        """``runtime.sandbox.probe`` -> ``runtime.commands.sandbox.probe``.

        For a module that became a package (``actors.model``), the bare name
        is the old module only while it is being moved (or when the caller
        knows it is: ``exact_overlap``); afterwards it is the new package.
        """
        parts = name.split(".")
        for k in range(len(parts), 0, -1):
            head = ".".join(parts[:k])
            if head not in MOVES:
                continue
            dst, rest = MOVES[head], parts[k:]
            if overlaps(head):
                if not rest:
                    known = head in self.pending if exact_overlap is None else exact_overlap
                    return dst if known else name
                if rest[0] in self.children(head):
                    return name
            return ".".join([dst, *rest])
        return name


# --- imports ----------------------------------------------------------------


def relative(package: list[str], target: list[str]) -> str:
    common = 0
    while common < min(len(package), len(target)) and package[common] == target[common]:
        common += 1
    return "." * (len(package) - common + 1) + ".".join(target[common:])


def rewrite_imports(text: str, old_module: str | None, new_module: str | None, is_package: bool,
                    mapper: Mapper, known: set[str]) -> str:
    """Every ``from X import ...`` whose target moved, or which is relative in
    a file that moved, written for the file's new place."""
    tree = ast.parse(text)
    lines = text.splitlines(keepends=True)
    edits: list[tuple[int, int, str]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level == 0:
            if not (node.module or "").startswith("trio_codex."):
                continue
            base = node.module.removeprefix("trio_codex.")  # type: ignore[union-attr]
        else:
            if old_module is None:
                continue
            pkg = old_module.split(".") if is_package else old_module.split(".")[:-1]
            pkg = pkg[: len(pkg) - (node.level - 1)]
            base = ".".join([*pkg, *([node.module] if node.module else [])])
        if base.split(".")[0] not in PACKAGE_FOLDERS:
            continue
        groups: dict[str, list[str]] = {}
        changed = node.level > 0 and old_module != new_module
        for alias in node.names:
            full = f"{base}.{alias.name}"
            if full in known:  # a submodule
                new_full = mapper.map(full, exact_overlap=full in mapper.pending)
                new_from, leaf = new_full.rsplit(".", 1)
                asname = alias.asname or alias.name
            else:
                new_from, leaf, asname = mapper.map(base), alias.name, alias.asname or alias.name
            changed |= new_from != base or leaf != alias.name
            groups.setdefault(new_from, []).append(leaf if asname == leaf else f"{leaf} as {asname}")
        if not changed:
            continue
        assert new_module is not None or node.level == 0
        specs = {}
        for new_from in groups:
            if node.level == 0:
                specs[new_from] = "trio_codex." + new_from
            else:
                assert new_module is not None
                here = new_module.split(".") if is_package else new_module.split(".")[:-1]
                specs[new_from] = relative(here, new_from.split("."))
        first, last = node.lineno - 1, (node.end_lineno or node.lineno) - 1
        segment = "".join(lines[first:last + 1])
        names_same = all(g == [a.name if not a.asname or a.asname == a.name else f"{a.name} as {a.asname}"
                               for a in node.names] for g in groups.values())
        if len(groups) == 1 and names_same:
            spec = next(iter(specs.values()))
            new_segment = re.sub(r"^(\s*from\s+)(\.*[\w.]*)(\s+import\b)", lambda m: m[1] + spec + m[3],
                                 segment, count=1)
        else:
            indent = lines[first][: node.col_offset]
            after = lines[last][node.end_col_offset or 0:].strip()
            comment = f"  {after}" if after.startswith("#") else ""
            new_segment = "\n".join(f"{indent}from {specs[f]} import {', '.join(names)}"
                                     for f, names in groups.items()) + comment
            new_segment += "\n" if segment.endswith("\n") else ""
        edits.append((first, last, new_segment))
    for first, last, new_segment in sorted(edits, reverse=True):
        lines[first:last + 1] = [new_segment]
    return "".join(lines)


def import_lines(text: str) -> set[int]:
    """The 0-based lines of ``from`` imports (their names were rewritten by
    :func:`rewrite_imports` and must not be mapped twice)."""
    out: set[int] = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ImportFrom):
            out.update(range(node.lineno - 1, node.end_lineno or node.lineno))
    return out


# --- names in text ----------------------------------------------------------


def rewrite_names(text: str, mapper: Mapper, skip: set[int] | None = None, known: set[str] | None = None) -> str:
    """Dotted names, slash paths and imports in strings, outside the lines
    in ``skip`` (the real imports, rewritten already)."""
    skip = skip or set()
    def dotted(m: re.Match[str]) -> str:
        return "trio_codex." + mapper.map(m[1])

    def slash(m: re.Match[str]) -> str:
        name, suffix = m[1].replace("/", "."), m[2] or ""
        parts = name.split(".")
        head = next((".".join(parts[:k]) for k in range(len(parts), 0, -1) if ".".join(parts[:k]) in MOVES),
                    None)
        if head is not None and overlaps(head) and head == name:
            # actors/model.py is the old module; actors/model/ the new package.
            new = MOVES[head] if suffix == ".py" else name
        else:
            new = mapper.map(name)
        return new.replace(".", "/") + suffix

    def names(chunk: str) -> str:
        return SLASH.sub(slash, BARE.sub(lambda m: mapper.map(m[1]), DOTTED.sub(dotted, chunk)))

    def embedded(m: re.Match[str]) -> str:
        # An import inside a string (a `python -c` script): rewritten as an
        # import, one statement per new module, joined by "; ".
        new = rewrite_imports(m[0] + "\n", None, None, False, mapper, known or set())
        return "; ".join(new.strip("\n").split("\n"))

    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if i in skip:
            continue
        out, at = [], 0
        for m in EMBEDDED.finditer(line):
            out += [names(line[at:m.start()]), embedded(m)]
            at = m.end()
        lines[i] = "".join([*out, names(line[at:])])
    return "".join(lines)


# --- catalogues -------------------------------------------------------------


def docstring_span(text: str) -> tuple[int, int] | None:
    """Character offsets of the module docstring's literal."""
    tree = ast.parse(text)
    if not tree.body or not isinstance(tree.body[0], ast.Expr) or not isinstance(
            getattr(tree.body[0], "value", None), ast.Constant) or not isinstance(tree.body[0].value.value, str):
        return None
    node = tree.body[0]
    lines = text.splitlines(keepends=True)
    start = sum(len(x) for x in lines[: node.lineno - 1]) + node.col_offset
    end = sum(len(x) for x in lines[: (node.end_lineno or node.lineno) - 1]) + (node.end_col_offset or 0)
    return start, end


def old_rows(package_init: Path) -> dict[str, str]:
    """The rows of a catalogue table: child -> its description."""
    doc = ast.get_docstring(ast.parse(package_init.read_text())) or ""
    rows: dict[str, str] = {}
    current = None
    for line in doc.splitlines():
        if m := ROW.match(line):
            current = m[1]
            rows[current] = m[2].strip()
        elif current and line.startswith(" ") and line.strip():
            rows[current] += " " + line.strip()
        else:
            current = None
    return rows


def first_sentence(module: str) -> str:
    path = path_of(module)
    if path is None:
        return ""
    init = path / "__init__.py" if path.is_dir() else path
    doc = ast.get_docstring(ast.parse(init.read_text())) or ""
    text = " ".join(doc.split("\n\n")[0].split())
    sentence = re.split(r"(?<=[.:;])\s", text, maxsplit=1)[0].rstrip(".:;")
    return sentence[:1].lower() + sentence[1:] if sentence[1:2].islower() else sentence


def table(package: str, names: list[str], carried: dict[str, str], report: list[str]) -> str:
    width = max(21, *(len(n) + 4 for n in names))
    out = ["=" * width + "  " + "=" * (76 - width)]
    for name in names:
        full = f"{package}.{name}"
        text = DESCRIPTIONS.get(full) or carried.get(full)
        if not text:
            text = first_sentence(full) or "(no description: add one to scripts/relayout.py)"
            report.append(f"{full}: described by its docstring; add a line to DESCRIPTIONS")
        wrapped = textwrap.wrap(text, 76 - width, break_on_hyphens=False, break_long_words=False) or [""]
        out.append(f"{'``' + name + '``':<{width}}  {wrapped[0]}")
        out += [" " * (width + 2) + w for w in wrapped[1:]]
    out.append(out[0])
    return "\n".join(out)


def children(package: str) -> list[str]:
    folder = ROOT.joinpath(*package.split("."))
    names = {p.stem for p in folder.glob("*.py") if not p.stem.startswith("__")}
    names |= {p.parent.name for p in folder.glob("*/__init__.py")}
    return sorted(names)


def named(doc: str) -> set[str]:
    """The children a docstring names: table rows and ``:mod:`.x``` references."""
    rows = {m[1] for line in doc.splitlines() if (m := ROW.match(line))}
    return rows | set(re.findall(r":mod:`\.(\w+)", doc))


def set_docstring(init: Path, doc: str) -> None:
    text = init.read_text() if init.exists() else ""
    literal = '"""' + doc.replace("\\", "\\\\").rstrip("\n") + '\n"""'
    span = docstring_span(text) if text else None
    if span is None:
        text = literal + "\n" + ("\n" + text if text.strip() else "")
    else:
        text = text[: span[0]] + literal + text[span[1]:]
    init.write_text(text)


def write_catalogues(carried: dict[str, str], report: list[str]) -> None:
    for package, (prose, sections) in PACKAGES.items():
        init = ROOT.joinpath(*package.split("."), "__init__.py")
        if not init.parent.is_dir():
            continue
        present = children(package)
        placed = [n for _, names in sections for n in names]
        parts = [prose]
        for title, names in sections:
            names = [n for n in names if n in present]
            if names:
                parts += ([textwrap.fill(title, 76)] if title else []) + [table(package, names, carried, report)]
        unplaced = [n for n in present if n not in placed]
        if unplaced:
            parts += [UNPLACED, table(package, unplaced, carried, report)]
            report.append(f"{package}: {', '.join(unplaced)} not placed in PACKAGES")
        set_docstring(init, "\n\n".join(parts) + "\n")
    for folder in ("actors", "runtime", "transports"):
        for init in sorted((ROOT / folder).rglob("__init__.py")):
            package = module_of(init)
            if package in PACKAGES:
                continue
            doc = ast.get_docstring(ast.parse(init.read_text())) or ""
            present = children(package)
            missing = [n for n in present if n not in named(doc)]
            stale = [n for n in old_rows(init) if n not in present]
            if not missing and not stale:
                continue
            text = init.read_text()
            span = docstring_span(text)
            if stale:
                report.append(f"{init.relative_to(ROOT)}: its catalogue names {stale}, which are gone")
            if not missing:
                continue
            if not doc:
                new = INTROS.get(package, f"The package {package}.") + "\n\nModules:\n\n" + table(
                    package, missing, carried, report) + "\n"
            else:
                raw = ast.literal_eval(text[span[0]:span[1]]) if span else ""
                new = raw.rstrip("\n") + "\n\nThe other modules:\n\n" + table(package, missing, carried,
                                                                           report) + "\n"
            set_docstring(init, new)


def rewrite_exports(mapper: Mapper) -> None:
    """``runtime/__init__.py``'s lazy re-exports name modules relative to it."""
    init = ROOT / "runtime" / "__init__.py"
    text = init.read_text()

    def one(m: re.Match[str]) -> str:
        new = mapper.map("runtime." + m[2]).removeprefix("runtime.")
        return f'{m[1]}"{new}",'

    start = text.find("_EXPORTS = {")
    end = text.find("}", start)
    if start >= 0:
        body = re.sub(r'(:\s*)"([\w.]+)",', one, text[start:end])
        init.write_text(text[:start] + body + text[end:])


def rewrite_pyproject() -> None:
    path = ROOT / "pyproject.toml"
    text = path.read_text()
    listed = tomllib.loads(text)["tool"]["setuptools"]["packages"]
    folders = {"trio_codex." + module_of(p) for f in PACKAGE_FOLDERS for p in (ROOT / f).rglob("__init__.py")}
    order = {f: i for i, f in enumerate(dict.fromkeys(n.split(".")[1] for n in listed))}
    wanted = sorted(folders, key=lambda n: (order.get(n.split(".")[1], 99), n))
    if wanted == listed:
        return
    body = "".join(f'    "{n}",\n' for n in wanted)
    text = re.sub(r"(?ms)^(packages = \[\n).*?^(\])", lambda m: m[1] + body + m[2], text, count=1)
    path.write_text(text)


# --- main -------------------------------------------------------------------


def git(*args: str) -> None:
    subprocess.run(["git", "-C", str(ROOT), *args], check=True)


def source_path(src: str) -> Path | None:
    base = ROOT.joinpath(*src.split("."))
    if overlaps(src):
        return base.with_suffix(".py") if base.with_suffix(".py").is_file() else None
    return path_of(src)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="list the moves, change nothing")
    args = parser.parse_args()

    old_modules = tree_modules()
    pending: dict[str, Path] = {}
    report: list[str] = []
    for src, dst in MOVES.items():
        where = source_path(src)
        if where is None:
            if path_of(dst) is None:
                report.append(f"{src}: neither it nor {dst} exists; skipped")
            continue
        target = ROOT.joinpath(*dst.split("."))
        if target.with_suffix(".py").exists() or (target / "__init__.py").exists():
            raise SystemExit(f"{src} -> {dst}: both exist; merge them by hand first")
        pending[src] = where
    if args.dry_run:
        for src, where in pending.items():
            print(f"{where.relative_to(ROOT)} -> {MOVES[src]}")
        print("\n".join(report))
        return

    # Where every file was before the moves (relative imports resolve there).
    old_names: dict[Path, str] = {}
    for folder in PY_FOLDERS:
        for p in (ROOT / folder).rglob("*.py"):
            old_names[p.resolve()] = module_of(p)
    carried: dict[str, str] = {}
    for folder in ("actors", "runtime", "transports"):
        for init in (ROOT / folder).rglob("__init__.py"):
            for child, text in old_rows(init).items():
                carried[f"{module_of(init)}.{child}"] = text

    moved: dict[Path, Path] = {}
    for src, where in pending.items():
        dst = MOVES[src]
        target = ROOT.joinpath(*dst.split("."))
        target = target.with_suffix(".py") if where.suffix == ".py" else target
        target.parent.mkdir(parents=True, exist_ok=True)
        if where.is_file():
            moved[target.resolve()] = where.resolve()
        else:
            moved.update({(target / f.relative_to(where)).resolve(): f.resolve() for f in where.rglob("*.py")})
        git("mv", str(where.relative_to(ROOT)), str(target.relative_to(ROOT)))
        print(f"moved {where.relative_to(ROOT)} -> {target.relative_to(ROOT)}")
    # New packages (the rooms) get an __init__.py; their docstrings come below.
    for dst in (MOVES[s] for s in pending):
        parts = dst.split(".")
        for k in range(2, len(parts)):
            init = ROOT.joinpath(*parts[:k], "__init__.py")
            if not init.exists():
                init.write_text('""""""\n')
                git("add", str(init.relative_to(ROOT)))
    carried = {Mapper(set(pending), tree_modules()).map(k, exact_overlap=True): v for k, v in carried.items()}

    new_modules = tree_modules()
    mapper = Mapper(set(pending), new_modules)
    known = old_modules | new_modules
    for folder in PY_FOLDERS:
        for p in sorted((ROOT / folder).rglob("*.py")):
            if p.resolve() == SELF:
                continue
            here = p.resolve()
            old = old_names.get(moved.get(here, here))
            new = module_of(p)
            ours = p.relative_to(ROOT).parts[0] in PACKAGE_FOLDERS
            text = p.read_text()
            out = rewrite_imports(text, old if ours else None, new if ours else None, p.name == "__init__.py",
                                  mapper, known)
            out = rewrite_names(out, mapper, import_lines(out), known)
            if out != text:
                p.write_text(out)
    for pattern in TEXT_GLOBS:
        for p in sorted(ROOT.glob(pattern)):
            if p.is_file() and ".venv" not in p.parts and "node_modules" not in p.parts:
                text = p.read_text()
                out = rewrite_names(text, mapper)
                if out != text:
                    p.write_text(out)
    rewrite_exports(mapper)
    write_catalogues(carried, report)
    for rel, old_text, new_text in TEXT_FIXES:
        p = ROOT / rel
        if p.exists() and old_text in p.read_text():
            p.write_text(p.read_text().replace(old_text, new_text))
    rewrite_pyproject()
    for line in report:
        print("note:", line, file=sys.stderr)


if __name__ == "__main__":
    main()
