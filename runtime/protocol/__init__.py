"""The wire vocabulary, sans-I/O: the JSON-RPC envelope and codec, the
method table, the v2 types, the Responses API types, serde's wording.

Modules:

=====================  =======================================================
``codec``              the sans-I/O JSON-RPC codec: frames to typed messages
                       and back
``jsonrpc``            the JSON-RPC envelope as the app server speaks it
``methods``            the method table: params, route and handler of every
                       method
``original``           the method names of the original's protocol (generated)
``paging``             the cursors of in-memory listings
``responses``          the OpenAI Responses API: request body, stream events,
                       items
``rust``               Rust's integer types as msgspec constraints
``serde_reader``       serde_json's reading of a JSON text, for its first
                       error
``serde_wording``      the original's error wording, which is serde's
``tools``              the tools the model is offered
``v2``                 the app-server protocol's v2 types
=====================  =======================================================
"""
