"""Liveness and readiness."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from api.deps import container
from infra.container import Container

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live")
def live() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/ready", responses={503: {"description": "Postgres is unreachable"}})
def ready(c: Annotated[Container, Depends(container)]) -> Any:
    """Ready when Postgres answers; reports the event store's head position."""
    try:
        head = c.store.head()
    except Exception as exc:  # any failure to reach the store means not ready
        return JSONResponse(
            {"status": "unavailable", "checks": {"postgres": type(exc).__name__}}, status_code=503
        )
    return {"status": "ok", "checks": {"postgres": "ok"}, "position": head}
