"""trio_codex.actors: the actors, and the helpers they share (the big
actors are packages of modules of at most 600 lines: connection, threads,
thread, turn; messages too). Nothing
executable here; this is the catalogue.

Actors (each runs an inbox loop under the host's nursery tree):

====================  =======================================================
``connection``        one per client: JSON-RPC session, handshake, dispatch,
                      the outbox writer
``hub``               the initialized connections; broadcast; the originator
``threads``           the thread registry: supervises threads, routes by id,
                      keeps checkpoints
``thread``            one per loaded thread: subscribers, history, token
                      usage, the active turn; the thread lifecycle
                      notifications
``turn``              one per turn: the sampling loop; streams item events
``model``             the model stream: the openai SDK's raw Responses
                      stream decoded into msgspec events, with the original's
                      retry policy; and ``ModelClient``
``tools``             one tool call, run in its turn's nursery
``approvals``         every server request that waits on a client
``store``             the thread listing index (SQLite), kept in step with
                      the rollout files
``rollout_writer``    one per thread: the only writer of its rollout file
``analytics``         facts in, events out through the exporters
``mcp_pool``          the owner of the MCP connections, one per server
``mcp_connection``    one MCP client session (and, over stdio, its process)
====================  =======================================================

Shared, not actors (any actor module may import them):

====================  =======================================================
``messages``          the vocabulary: one frozen Struct per message, one
                      union per inbox
``barrier``           the bug barrier every actor loop handles its messages
                      behind
``fanout``            delivering a wire message to a set of connections
``process``           the process runner and tables: every child process
``child``             one child process: its session, pipes or terminal,
                      reaping
``command_exec``      ``command/exec``: processes owned by a connection
``fs_requests``       ``fs/*``, ``fs/watch`` and the fuzzy file search of a
                      connection
``mcp_calls``         the model's MCP tool and resource calls, for ``tools``
``model_pool``        the model clients of the server, one per provider
``analytics_facts``   the analytics facts and the ``Recorder`` actors hand
                      them to
``analytics_reducer`` pure: facts in, analytics events out
``sdk``               the openai SDK's client, imported without its typed
                      models
====================  =======================================================
"""
