"""The model side: the stream of one Responses API request, handed to the
turn in its own task, the clients it streams through, one per provider,
and the openai SDK they use.

=====================  =======================================================
``stream``             the model stream and ``ModelClient``: the SDK's raw
                       stream decoded into msgspec events, with the original's
                       retry policy
``pool``               the model clients of the server, one per provider
``sdk``                the openai SDK's client, imported without its typed
                       models
=====================  =======================================================
"""
