"""MCP server over the read models (arrives with the MCP adapter work)."""
