"""trio_codex.transports: bytes at the edge. Each transport hands the host
:class:`~trio_codex.runtime.kernel.stream.FrameStream`\\ s; it knows nothing of
JSON-RPC.

==========================  =================================================
``stdio``                   the one stdio connection (JSONL on fds 0/1)
``jsonl``                   JSONL over any trio byte stream
``framing``                 sans-I/O JSONL framing with a size bound
``websocket``               the ``ws://`` and ``unix://`` listeners: one
                            websocket session per connection
``wsframing``               sans-I/O websocket serving: the upgrade decision,
                            bearer tokens and JWTs, the frame codec
``memory``                  in-process connections (embedding, ``exec``)
``listen``                  parsing ``--listen`` URLs
``connect``                 the client side: a child app server over stdio,
                            or a ``ws://`` URL
``ws_client``               a websocket client over a unix socket (``exec``
                            reaching a daemon)
``scripted_responses``      the scripted OpenAI Responses server (HTTP/SSE)
==========================  =================================================
"""
