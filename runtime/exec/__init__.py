"""``trio-codex exec``: one turn, no client needed, as the original's
``codex exec`` (the engine of ``@openai/codex-sdk``). :mod:`.run` is an entry
point (it starts a server in-process or reaches a daemon); its flags, JSONL
events and transcript are sans-I/O modules beside it.

=====================  =======================================================
``run``                the run: one thread, one turn, on an in-process server
                       or a daemon (an entry point)
``cli``                ``exec``'s command line
``events``             ``exec --json``: notifications in, JSONL events out
``human``              ``exec``'s transcript and answer
=====================  =======================================================
"""
