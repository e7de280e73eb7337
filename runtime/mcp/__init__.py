"""MCP: the tools of MCP servers as the model sees them, and the commands
``trio-codex mcp-server`` (this server as an MCP server; an entry point) and
``trio-codex mcp`` (the ``[mcp_servers]`` table). The MCP client sessions are
actors (``actors/mcp/``); the table's types are ``runtime/config/mcp.py``.

=====================  =======================================================
``tools``              MCP tools as the model sees them
``server``             ``trio-codex mcp-server`` (an entry point)
``server_tools``       ``mcp-server``'s tools and messages, sans-I/O
``cli``                ``trio-codex mcp list|get|add|remove``
=====================  =======================================================
"""
