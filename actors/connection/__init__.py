"""One actor per client connection: the JSON-RPC session.

The reader turns frames into requests through the sans-I/O codec, enforces
the handshake (``initialize`` exactly once; nothing else before it), decodes
params against the method table and hands each request to whoever owns it,
with a :class:`~.messages.Reply` so the owner answers in order with its own
notifications. The reader hands requests on without waiting for their work
(``send_nowait``; a full mailbox answers -32001), so requests are
pipelined. It waits only where order or loss demands: the hub's
registration in ``initialize`` (bounded by ``ASK_TIMEOUT``), room in the
approvals mailbox for a client's answer (never dropped; approvals never
waits, so it drains), room in its own outbox, and this client's config
writes, which run in a worker thread (no other client waits for them).

The writer owns the socket's write side: it drains the outbox as messages
come into a backlog counted in bytes, drops the notifications this client
opted out of, merges runs of deltas when a backlog built up (no text is
lost; fewer, larger messages), encodes and writes each batch with one call.

Rules:
- Every request gets exactly one answer, an error included; a frame that is
  not a request with a usable id gets none and is logged.
- A full actor mailbox answers -32001 (with ``codex_error_info``, which the
  openai-codex SDK needs before it retries), never blocks the reader.
- One slow-client policy (runtime/server/limits.py): a connection that can be
  closed (websocket: ``can_disconnect``) is closed when the bytes queued for
  it exceed its budget, when a write makes no progress for the write
  timeout, when its peer stops answering pings, or when told to
  (:class:`~.messages.CloseConnection`, from whoever could not queue for
  it): it stops reading, drops its backlog, lets the write in progress
  finish (bounded) and sends a close frame with the reason, logged. Stdio
  is never closed so: that would end the server.
- Per connection, a request over the request rate or the pending requests
  is answered -32001; a client refused ``abuse_limit`` times in a row is
  closed.
- A bug is contained (see :mod:`..messages.barrier`): in a request handled here it is
  that request's -32603; anywhere else in the connection it ends this
  connection only, with the reason.

Modules: :mod:`.session` (the actor: handshake, reading, dispatch,
closing), :mod:`.handlers` (the method table's CONNECTION and THREAD rows),
:mod:`.writer` (the outbox writer and its byte-counted backlog).

The other modules:

=====================  =======================================================
``command_exec``       ``command/exec``: the processes a connection owns
``fs_requests``        ``fs/*``, ``fs/watch`` and the fuzzy file search of a
                       connection
=====================  =======================================================
"""

from .session import Connection
from .writer import coalesce_deltas

__all__ = ["Connection", "coalesce_deltas"]
