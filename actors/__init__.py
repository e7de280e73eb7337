"""trio_codex.actors: the actors, one module or package each (a big actor
is a package of modules of at most 600 lines, one per concern; an actor's
helpers live in its package), and the vocabulary they speak. Nothing
executable here; this is the catalogue.

Actors (each runs an inbox loop, or a task streaming into one, under the
host's nursery tree):

=====================  =======================================================
``connection``         one per client: JSON-RPC session, handshake, dispatch,
                       the outbox writer, the processes and file requests the
                       client owns
``hub``                the initialized connections; broadcast; the originator
``threads``            the thread registry: supervises threads, routes by id,
                       keeps checkpoints
``thread``             one per loaded thread: subscribers, history, token
                       usage, the active turn; the thread lifecycle
                       notifications
``turn``               one per turn: the sampling loop; streams item events;
                       runs its tool calls
``model``              the model stream: one Responses request streamed into
                       the turn's task (a package: the stream and
                       ``ModelClient``, the pool of clients, the SDK import)
``approvals``          every server request that waits on a client
``store``              the thread listing index (SQLite), kept in step with
                       the rollout files
``rollout_writer``     one per thread: the only writer of its rollout file
``analytics``          facts in, events out through the exporters (a package:
                       the actor, its facts and the reducer)
``mcp``                the owner of the MCP connections, one per server (a
                       package: the pool, one connection)
=====================  =======================================================

Shared by every actor:

=====================  =======================================================
``messages``           the vocabulary: one frozen Struct per message, one
                       union per inbox; and how every actor delivers and
                       handles it
=====================  =======================================================
"""
