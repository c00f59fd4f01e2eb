"""The bounds of read arguments, whichever interface asks (REST query parameters, MCP tool
arguments): out-of-range input is refused as input, never reaches the database as an error."""

from __future__ import annotations

MAX_INT = 2**63 - 1  # positions and versions are Postgres bigints
NO_NUL = r"^[^\x00]*$"  # Postgres text cannot hold U+0000
VALUE_MAX = 200  # one filter value: a slug, category, tag, owner
CURSOR_MAX = 2000  # an opaque next_cursor
WORDS_MAX = 500  # full-text words of a list filter
QUERY_MAX = 1000  # a search query
