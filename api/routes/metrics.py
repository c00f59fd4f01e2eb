"""GET /metrics: Prometheus text exposition (unauthenticated, like the health probes)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from infra.observability.collectors import render
from infra.observability.metrics import CONTENT_TYPE

router = APIRouter(tags=["operations"])


# A plain `def`: the read-side figures query Postgres, off the event loop.
@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """Every mcp_ledger_* metric of this process (see docs/operations.md)."""
    return Response(render(request.app.state.metrics), media_type=CONTENT_TYPE)
