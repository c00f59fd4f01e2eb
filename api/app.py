"""Builds the FastAPI application around an already-built container."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from api.errors import install_error_handlers
from api.metrics_middleware import HttpMetrics
from api.middleware import RequestContext
from api.routes import admin, datasets, documents, health, search, tools
from api.routes import analytics as analytics_routes
from api.routes import metrics as metrics_routes
from api.security import install_access_control, install_security_headers
from infra.container import Container
from infra.observability.collectors import (
    ReadSideCollector,
    UsageCollector,
    process_registry,
    serve_metrics,
)
from infra.search.wiring import start_search

DESCRIPTION = """
Event-sourced registry of MCP tools, datasets and documents.

Every write appends events to the Postgres event store and answers with the aggregate's new
`version` and the store `position`. Send `If-Match: <version>` (412 when stale) or
`?expected_version=` (409) for optimistic concurrency, `Idempotency-Key` to make retries safe,
`X-Request-ID` to correlate (it becomes the events' `correlation_id`), `X-Reason` for the audit.
Errors always use `{"error": {"code", "message", "details", "request_id"}}`.
"""


def create_app(
    container: Container, *, follow_log: bool = False, mcp_host: str | None = None
) -> FastAPI:
    """The app over a container its caller owns (and closes). `follow_log` runs the
    projections in-process (the embedded mode) for the app's lifetime. With `mcp_host` (the
    interface served on) the MCP server answers at /mcp beside the API."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        stop = threading.Event()
        workers = []
        if follow_log:
            workers.append(
                threading.Thread(
                    target=container.read_side.follower.run, args=(stop,), name="projections"
                )
            )
        indexer = start_search(container.search_parts(), container.settings, follow_log=follow_log)
        if indexer is not None:
            workers.append(threading.Thread(target=indexer.run, args=(stop,), name="vectors"))
        for worker in workers:
            worker.start()
        stop_metrics = _serve_metrics_apart(container, app.state.metrics)
        yield
        stop_metrics()
        stop.set()
        for worker in workers:
            worker.join(timeout=10)

    if follow_log and container.read_side.kafka_prefix is not None:
        raise ValueError("a process that follows the log reads it: build it with read_feed=log")
    app = FastAPI(title="mcp-ledger", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.container = container
    # /metrics: the default registry plus this container's read side and usage emitter.
    app.state.metrics = process_registry(
        ReadSideCollector(container.read_side), UsageCollector(container.usage)
    )
    install_error_handlers(app)
    install_access_control(app, container)  # keys, roles, rate limits, CORS: inside RequestContext
    app.add_middleware(RequestContext, max_body_bytes=container.settings.max_body_bytes)
    install_security_headers(app, container.settings)  # outermost: on every answer
    app.add_middleware(HttpMetrics)  # outermost: counts every answer, 401/413/429 included
    app.include_router(health.router)
    if container.settings.api_metrics_port is None:
        app.include_router(metrics_routes.router)
    app.include_router(tools.batch_router, prefix="/api/v1")
    app.include_router(tools.router, prefix="/api/v1")
    app.include_router(datasets.router, prefix="/api/v1")
    app.include_router(documents.router, prefix="/api/v1")
    app.include_router(analytics_routes.router, prefix="/api/v1")
    app.include_router(search.router, prefix="/api/v1")
    app.include_router(admin.router, prefix="/api/v1")
    if mcp_host is not None:  # the MCP server (mcp_adapter), Streamable HTTP at /mcp
        from mcp_adapter.http import mount_mcp

        mount_mcp(app, container, mcp_host)
    return app


def _serve_metrics_apart(container: Container, registry: Any) -> Callable[[], None]:
    """With MCP_LEDGER_API_METRICS_PORT, /metrics is served there (and not on the API's port)."""
    port = container.settings.api_metrics_port
    if port is None:
        return lambda: None
    return serve_metrics(port, registry)
