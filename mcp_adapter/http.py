"""Serving the MCP server over Streamable HTTP: beside the API at /mcp (`mount_mcp`), or on its
own (`standalone_app`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.applications import Starlette

from infra.container import Container
from mcp_adapter.server import LedgerServer, build_server

PATH = "/mcp"


def _http_app(server: LedgerServer, host: str, max_body_bytes: int) -> Starlette:
    # The SDK turns on DNS-rebinding protection (Host/Origin must be local) when the host is a
    # loopback address; on any other interface the deployment decides what may reach it.
    return server.streamable_http_app(
        streamable_http_path=PATH, host=host, max_request_body_size=max_body_bytes
    )


def standalone_app(container: Container, host: str) -> Starlette:
    """Only the MCP server, at /mcp. The caller adds the HTTP edge (keys, rate limits, headers:
    api.security), as it does for the API."""
    server = build_server(container)
    return _http_app(server, host, container.settings.max_body_bytes)


def mount_mcp(app: FastAPI, container: Container, host: str = "127.0.0.1") -> LedgerServer:
    """Serves the MCP server at /mcp in `app` (same process, same container). The session
    manager runs inside the app's own lifespan (a mounted app's lifespan would never run)."""
    server = build_server(container)
    sub = _http_app(server, host, container.settings.max_body_bytes)
    app.router.routes.extend(sub.routes)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        async with inner(a) as state, server.session_manager.run():
            yield state

    app.router.lifespan_context = lifespan
    return server
