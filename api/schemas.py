"""Response shapes shared by the routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field


class WriteResponse(BaseModel):
    id: UUID
    version: int = Field(description="The aggregate's version after the command")
    position: int = Field(description="The event store's notification id of the last event")


class EventOut(BaseModel):
    type: str
    version: int
    position: int
    occurred_at: datetime
    actor: str
    reason: str | None
    correlation_id: str
    causation_id: str
    data: dict[str, Any]


class EventPage(BaseModel):
    id: UUID
    items: list[EventOut]
    next_after_version: int | None = Field(
        description="Pass as after_version to get the next page; null on the last page"
    )


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]]
    request_id: str | None


class ErrorResponse(BaseModel):
    error: ErrorBody


ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorResponse} for s in (400, 404, 409, 412, 413, 422)
}
