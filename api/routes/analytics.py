"""/api/v1/analytics: usage analytics (the same numbers as the MCP `usage_stats` tool)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from api.deps import Cont
from api.routes.common import Text
from infra.usage.sinks import usage_stats_for

router = APIRouter(prefix="/analytics", tags=["analytics"])


class Latency(BaseModel):
    p50: float | None
    p95: float | None
    mean: float | None
    max: float | None


class ToolUsage(BaseModel):
    tool: str
    calls: int
    errors: int
    latency_ms: Latency


class UsageStats(BaseModel):
    window: str
    tool: str | None
    client: str | None
    from_: str = Field(alias="from", description="start of the first window summed")
    to: str
    granularity: str
    calls: int
    errors: int
    error_rate: float
    latency_ms: Latency
    top_tools: list[ToolUsage]
    source: str

    model_config = ConfigDict(populate_by_name=True)


@router.get("/usage", response_model=UsageStats)
async def usage(
    c: Cont,
    tool: Text = None,
    window: Annotated[
        Literal["1h", "24h", "7d", "30d"],
        Query(
            description="1h: the last 60 one-minute windows; 24h/7d/30d: the last 24/168/720 "
            "one-hour windows (the current window included)"
        ),
    ] = "1h",
    client: Text = None,
) -> Any:
    """Calls, errors (any status other than ok), p50/p95 latency in ms and the top tools by
    calls over the window, for every tool or one (`tool`), every client or one (`client`).
    `source` says whether the answer came from the Redis cache or from Postgres."""
    return await run_in_threadpool(usage_stats_for, c, tool, window, client)
