"""The app-server protocol's v2 types as msgspec Structs, one module per area
of the protocol; field names, order and wording are the original's.

Modules:

=====================  =======================================================
``_base``              the base classes of the v2 types
``account``            signing in and out, the account
``approval``           server requests that ask the client for a decision
``command``            ``command/exec``: a process owned by a connection
``config``             config writes and model providers
``discovery``          what a client asks about while it sets up
``fs``                 ``fs/*`` and ``fuzzyFileSearch*``
``initialize``         ``initialize``: the per-connection handshake
``item``               thread items, user input, item notifications
``mcp``                the MCP methods' params
``models``             ``model/list``, ``account/read``, ``config/read``
``thread``             threads: the Thread object, its status, the thread
                       methods
``turn``               turns: the turn methods and notifications
=====================  =======================================================
"""
