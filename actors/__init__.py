"""trio_codex.actors: one module per actor (a package of modules of at most
600 lines for the big ones: connection, threads, thread, turn). Nothing
executable here; this is the catalogue.

=================  ==========================================================
``connection``     one per client: JSON-RPC session, handshake, dispatch, the
                   outbox writer
``hub``            the initialized connections; broadcast; the originator
``threads``        the thread registry: supervises threads, routes by id,
                   keeps checkpoints
``thread``         one per loaded thread: subscribers, history, token usage,
                   the active turn; writes the thread lifecycle notifications
``turn``           one per turn: the sampling loop; streams item events
``model``          the model stream: the openai SDK's raw Responses stream
                   decoded into msgspec events; the original's retry policy
=================  ==========================================================

Shared, not actors: ``messages`` (the vocabulary: one frozen Struct per
message, one union per inbox), ``process`` (the process runner and tables),
``fanout`` (delivering a wire message to a
set of connections) and ``barrier`` (the bug barrier every actor loop
handles its messages behind).
"""
