"""`mcp-ledger mcp`: the MCP server on its own, over Streamable HTTP or stdio."""

from __future__ import annotations

import signal
import threading
from enum import StrEnum
from typing import Annotated

import typer


class Transport(StrEnum):
    http = "http"
    stdio = "stdio"


def _exit_on_signal(signum: int, _: object) -> None:
    raise SystemExit(128 + signum)


def mcp(
    transport: Annotated[
        Transport, typer.Option(help="http: Streamable HTTP at /mcp; stdio: stdin/stdout")
    ] = Transport.http,
    host: Annotated[str, typer.Option(help="Interface to listen on (http)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (http)")] = 8001,
    follow_log: Annotated[
        bool, typer.Option(help="Also run the projections in this process (no Kafka)")
    ] = False,
) -> None:
    """Run the MCP server over the read models against DATABASE_URL (embedded if unset). The
    read models are kept by `mcp-ledger projector` (or `up`), or pass --follow-log. `mcp-ledger
    up` and `mcp-ledger api` also serve it at /mcp beside the API. Logs go to stderr."""
    from cli.main import _container, _settings

    signal.signal(signal.SIGTERM, _exit_on_signal)
    container = _container(_settings())
    stop = threading.Event()
    worker = None
    try:
        if follow_log:
            container.read_side.kafka_prefix = None  # this process feeds them from the log
            worker = threading.Thread(
                target=container.read_side.follower.run, args=(stop,), name="projections"
            )
            worker.start()
        if transport is Transport.stdio:
            from mcp_adapter.server import build_server

            build_server(container).run("stdio")
        else:
            import uvicorn

            from mcp_adapter.http import standalone_app

            app = standalone_app(container, host)
            uvicorn.run(
                app, host=host, port=port, log_config=None, access_log=False, proxy_headers=False
            )
    finally:
        stop.set()
        if worker is not None:
            worker.join(timeout=10)
        container.close()
