"""The kernel: the actor runtime proper, on trio and msgspec only.

Nothing here knows about Codex, and nothing here imports the rest of
trio_codex (``tests/test_layout.py``). Actors import these modules by their
path; :mod:`trio_codex.runtime` re-exports the public names for embedders.

=====================  =======================================================
``mailbox``            bounded mailboxes and their overflow policies
``ask``                request/reply between actors, bounded by a timeout
``supervisor``         one-for-one supervision with a restart budget
``errors``             the one exception tree
``stream``             ``FrameStream``, the seam between transports and
                       connections
``ids``                UUIDv7 ids
``clock``              Unix milliseconds, as the protocol stamps time
``log``                logging to stderr (stdout is the stdio transport's)
=====================  =======================================================
"""
