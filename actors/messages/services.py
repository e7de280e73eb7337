"""Messages to the services: the store (listing index), the rollout writer,
thread -> turn, and the MCP pool and connections."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from ...runtime.kernel.ask import ReplySlot
from ...runtime.kernel.mailbox import Mailbox
from ...runtime.config.mcp import McpServerConfig
from ...runtime.protocol.v2.mcp import (
    McpServerResourceReadParams,
    McpServerStatusListParams,
    McpServerToolCallParams,
)
from ...runtime.protocol.v2.thread import ThreadListParams, ThreadSearchParams
from ...runtime.persistence.rollout import Payload
from ...runtime.persistence.thread_index import ThreadMeta
from .common import (
    ConnectionRef,
    Msg,
    Reply,
)
from .threads import SearchTicket, UserShell


# --- the store (listing index) --------------------------------------------------


class IndexThread(Msg, tag="index_thread", frozen=True):
    """A thread's listing row changed (after each turn): upsert it, and
    index the turn's message ``texts`` for ``thread/search``."""

    meta: ThreadMeta
    texts: tuple[str, ...] = ()


class ListThreads(Msg, tag="list_threads", frozen=True):
    """``thread/list``: the store answers ``reply`` itself. ``loaded`` are
    the thread ids the registry has running (their status is not
    ``notLoaded``)."""

    reply: Reply
    params: ThreadListParams | ThreadSearchParams
    loaded: frozenset[str]
    #: A thread search's cancel ticket (see :class:`SearchTicket`).
    ticket: SearchTicket | None = None


class FindThread(Msg, tag="find_thread", frozen=True):
    """The listing row of a thread, or None."""

    thread_id: str
    reply: ReplySlot[ThreadMeta | None]


class NameThread(Msg, tag="name_thread", frozen=True):
    """``thread/name/set``: record the name (session_index.jsonl, as the
    original, and the index); the reply is set once it is written."""

    thread_id: str
    name: str | None
    reply: ReplySlot[bool]


#: How long a request to the store may take (the first one waits for the
#: index to be opened and synced).
STORE_TIMEOUT = 60.0


class UpdateGitInfo(Msg, tag="update_git_info", frozen=True):
    """``thread/metadata/update`` of a stored thread that is not loaded:
    patch its git columns (``git_sha``, ``git_branch``, ``git_origin_url``:
    a value or None to clear); the reply gets the updated row, or None if
    the thread is unknown."""

    thread_id: str
    patch: dict[str, str | None]
    reply: ReplySlot[ThreadMeta | None]


class ArchiveThread(Msg, tag="archive_thread", frozen=True):
    """Move a thread's rollout into (or out of) the archive; the reply is
    the thread's listing row after the move, or None if it has none."""

    thread_id: str
    archived: bool
    reply: ReplySlot[ThreadMeta | None]


class DeleteThread(Msg, tag="delete_thread", frozen=True):
    """Remove a thread's rollout and its listing row; reply when done."""

    thread_id: str
    reply: ReplySlot[bool]


StoreInbox = IndexThread | ListThreads | FindThread | NameThread | ArchiveThread | DeleteThread | UpdateGitInfo


# --- thread and turn -> rollout writer ------------------------------------------


class AppendRollout(Msg, tag="append_rollout", frozen=True):
    """Rollout payloads to append (runtime.persistence.rollout line payloads). ``reply``
    is set once they reached the OS (wait for it before reporting an item
    completed); ``turn_end`` asks for an fsync under the "turn" policy."""

    payloads: tuple[Payload, ...]
    reply: ReplySlot[str] | None = None
    turn_end: bool = False


# --- thread -> turn -----------------------------------------------------------


class Steered(Msg, tag="steered", frozen=True):
    """The thread hands the running turn steered input (Responses user
    messages), already reported and persisted."""

    items: tuple[msgspec.Raw, ...]


class SubscribersChanged(Msg, tag="subscribers_changed", frozen=True):
    """The thread's current subscribers: the turn streams to these."""

    conns: tuple[ConnectionRef, ...]


#: What a thread sends its turn (the model stream hands the turn its
#: ModelEvents, ModelRetrying and ModelFailed directly: actors/turn/).
TurnInbox = SubscribersChanged | Steered | UserShell


# --- MCP: registry / turns / connections -> MCP pool -> MCP connection ---------


class McpAcquire(Msg, tag="mcp_acquire", frozen=True):
    """The registry asks the MCP pool for the connections of a thread it
    starts: the pool adds the thread to each enabled server's holders
    (starting the server when none runs) and sets ``reply`` to
    ``{name: McpServerRef}``. With ``announce``, each server's
    ``mcpServer/startupStatus/updated`` goes to ``conns``."""

    thread_id: str
    conns: tuple[ConnectionRef, ...]
    announce: bool
    reply: ReplySlot[dict[str, McpServerRef]]


class McpRelease(Msg, tag="mcp_release", frozen=True):
    """The registry unloaded a thread: it no longer holds its servers (the
    last holder gone, the pool stops the server)."""

    thread_id: str


class McpStatusListRequest(Msg, tag="mcp_status_list_request", frozen=True):
    """A client's ``mcpServerStatus/list``, forwarded by the registry; the
    pool answers ``reply`` itself (as each of the requests below)."""

    reply: Reply
    params: McpServerStatusListParams


class McpToolCallRequest(Msg, tag="mcp_tool_call_request", frozen=True):
    """A client's ``mcpServer/tool/call``."""

    reply: Reply
    params: McpServerToolCallParams


class McpResourceReadRequest(Msg, tag="mcp_resource_read_request", frozen=True):
    """A client's ``mcpServer/resource/read``."""

    reply: Reply
    params: McpServerResourceReadParams


class McpReloadRequest(Msg, tag="mcp_reload_request", frozen=True):
    """A client's ``config/mcpServer/reload`` (it takes no params)."""

    reply: Reply


#: A client's MCP request, one Struct per method.
McpRequest = McpStatusListRequest | McpToolCallRequest | McpResourceReadRequest | McpReloadRequest

#: An MCP JSON object (a tool, a resource, serverInfo, a call's result) as
#: the ``mcp`` SDK dumps it: its shape is MCP's and the server's, read key
#: by key where used, so its values stay ``Any``.
McpJson = dict[str, Any]


class McpServerRef(msgspec.Struct, frozen=True):
    """How a thread reaches one MCP server: its config and the mailbox of
    its connection actor (which keeps it across restarts)."""

    name: str
    config: McpServerConfig
    mailbox: Mailbox[McpConnectionInbox]


class McpInventory(Msg, tag="mcp_inventory", frozen=True):
    """Ask a connection what it offers, once its startup settled: its status
    (``ready`` or ``failed`` with the original's text) and, when ready, its
    tools, resources, templates, serverInfo and capabilities (MCP JSON)."""

    reply: ReplySlot[McpInventoryResult]


class McpInventoryResult(msgspec.Struct, frozen=True):
    status: str
    error: str | None
    tools: tuple[McpJson, ...] = ()
    resources: tuple[McpJson, ...] = ()
    templates: tuple[McpJson, ...] = ()
    server_info: McpJson | None = None
    capabilities: McpJson | None = None


class McpCallTool(Msg, tag="mcp_call_tool", frozen=True):
    """Call a tool: ``reply`` gets the ``CallToolResult`` (MCP JSON) or
    fails with :class:`~trio_codex.runtime.kernel.errors.McpCallFailed`. Progress
    the server reports goes to ``progress(message)``; the connection gives
    up after ``timeout`` seconds. ``call_id`` names the call for
    :class:`McpCancel`."""

    call_id: str
    tool: str
    arguments: McpJson | None
    timeout: float
    #: None: the caller wants no progress.
    progress: Callable[[str], Awaitable[None]] | None
    reply: ReplySlot[McpJson]
    #: Asks the call's clients what the server elicits (``params`` as MCP
    #: JSON) and returns ``{action, content}``; None: elicitations declined.
    elicit: Callable[[McpJson], Awaitable[McpJson]] | None = None


class McpReadResource(Msg, tag="mcp_read_resource", frozen=True):
    uri: str
    reply: ReplySlot[McpJson]


class McpListResources(Msg, tag="mcp_list_resources", frozen=True):
    """``resources/list`` (``templates`` False) or
    ``resources/templates/list`` (True), one page from ``cursor``."""

    templates: bool
    cursor: str | None
    reply: ReplySlot[McpJson]


class McpCancel(Msg, tag="mcp_cancel", frozen=True):
    """The caller of :class:`McpCallTool` stopped waiting (its turn was
    interrupted): the connection cancels the call."""

    call_id: str


McpPoolInbox = McpAcquire | McpRelease | McpRequest
McpConnectionInbox = McpInventory | McpCallTool | McpReadResource | McpListResources | McpCancel
