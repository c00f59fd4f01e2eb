"""Response shapes shared by the routes."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, create_model


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


class ItemBase(BaseModel):
    id: UUID
    version: int = Field(description="The aggregate version this state is at")
    position: int = Field(description="The event store position of that version's event")
    created_at: datetime
    updated_at: datetime = Field(description="When that version's event happened")
    deleted_at: datetime | None = Field(description="Set while soft-deleted")


@cache
def item_model(kind: str) -> type[ItemBase]:
    """`{"id", "version", "position", ..., "<kind>": {fields}}`, named after the kind."""
    fields: Any = {kind: (dict[str, Any], Field(description=f"The {kind}'s fields"))}
    return create_model(f"{kind.title()}Item", __base__=ItemBase, **fields)


@cache
def single_model(kind: str) -> type[BaseModel]:
    applied: Any = (int, Field(description="The read side's applied store position"))
    return create_model(f"{kind.title()}Read", __base__=item_model(kind), applied_position=applied)


@cache
def page_model(kind: str) -> type[BaseModel]:
    fields: Any = {
        "items": (list[item_model(kind)], ...),  # type: ignore[misc]
        "next_cursor": (
            str | None,
            Field(description="Pass as `cursor` for the next page; null on the last page"),
        ),
        "position": (int, Field(description="The store position this page reflects")),
    }
    return create_model(f"{kind.title()}Page", **fields)


class VersionOut(BaseModel):
    version: int
    event_type: str
    actor: str
    reason: str | None
    correlation_id: str
    causation_id: str
    occurred_at: datetime
    position: int
    patch: list[dict[str, Any]] = Field(description="RFC 6902 JSON Patch from the version before")
    snapshot: dict[str, Any] | None = Field(
        default=None, description="The full state (with `include_snapshot=true`)"
    )


class VersionPage(BaseModel):
    id: UUID
    items: list[VersionOut]
    next_after_version: int | None = Field(
        description="Pass as after_version to get the next page; null on the last page"
    )
    position: int = Field(description="The store position this page reflects")


class DiffOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: UUID
    from_: int = Field(alias="from")
    to: int
    patch: list[dict[str, Any]] = Field(description="RFC 6902 JSON Patch from `from` to `to`")
    position: int = Field(description="The store position this answer reflects")


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
READ_ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorResponse} for s in (404, 422, 503)
}
