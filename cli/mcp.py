"""`mcp-ledger mcp`: the MCP server on its own, over Streamable HTTP or stdio."""

from __future__ import annotations

import signal
import threading
from enum import StrEnum
from typing import Annotated

import typer

from cli import common


class Transport(StrEnum):
    http = "http"
    stdio = "stdio"


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

    signal.signal(signal.SIGTERM, common.exit_on_signal)
    overrides = {"read_feed": "log"} if follow_log else {}  # it keeps the read models itself
    container = common.container(common.settings(**overrides))
    stop = threading.Event()
    worker = None
    try:
        if follow_log:
            worker = threading.Thread(
                target=container.read_side.follower.run, args=(stop,), name="projections"
            )
            worker.start()
        if transport is Transport.stdio:
            from mcp_adapter.server import build_server

            build_server(container).run("stdio")
        else:
            import uvicorn

            from api.security import install_access_control, install_security_headers
            from mcp_adapter.http import standalone_app

            app = standalone_app(container, host)
            install_access_control(app, container)  # keys, rate limits, headers as in the API
            install_security_headers(app, container.settings)
            uvicorn.run(
                app, host=host, port=port, log_config=None, access_log=False, proxy_headers=False
            )
    finally:
        stop.set()
        if worker is not None:
            worker.join(timeout=10)
        container.close()
