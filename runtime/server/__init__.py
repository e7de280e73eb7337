"""What the server answers by itself (the handshake facts, the read-only
requests, what ``CODEX_HOME`` alone answers, the provider's usage limits)
and the limits that keep clients from taking it down.

=====================  =======================================================
``info``               the handshake facts and the read-only requests
``local_requests``     requests answered from ``CODEX_HOME`` alone
``rate_limits``        the provider's usage limits, from response headers
``limits``             the limits that keep clients from taking the server
                       down
=====================  =======================================================
"""
