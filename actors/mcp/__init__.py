"""The MCP connections: the pool owns one connection actor per configured
server, started and supervised under it; a turn's tool calls reach it
through messages (``actors/turn/mcp_calls.py``).

=====================  =======================================================
``pool``               the actor: the MCP connections, one per server
``connection``         one MCP client session (and, over stdio, its process)
=====================  =======================================================
"""
