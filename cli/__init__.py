"""The `mcp-ledger` console command."""
