"""Routes every aggregate kind has: read by replay (now / as of / at version) and audit trail."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import AwareDatetime

from api.deps import Deps
from api.schemas import ERRORS, EventPage
from commands.common import Kind, WriteResult
from projections.audit import audit_trail, redact_sealed, state_of

# Versions are Postgres bigints; a larger number is refused as input, not a database error.
MAX_VERSION = 2**63 - 1


def write_response(result: WriteResult, response: Response) -> dict[str, Any]:
    response.headers["ETag"] = f'"{result.version}"'
    return {"id": result.id, "version": result.version, "position": result.position}


def add_read_routes(
    router: APIRouter, kind: Kind[Any], render: Callable[[Any], dict[str, Any]]
) -> None:
    @router.get(
        "/{ref}",
        summary=f"Get a {kind.name} (now, as of a time, or at a version)",
        responses=ERRORS,
        name=f"get_{kind.name}",
    )
    def get_one(
        ref: str,
        deps: Deps,
        response: Response,
        as_of: Annotated[
            AwareDatetime | None,
            Query(description="RFC 3339 time with offset: the state as it was then"),
        ] = None,
        at_version: Annotated[
            int | None, Query(ge=1, le=MAX_VERSION, description="The state at this version")
        ] = None,
    ) -> dict[str, Any]:
        snap = state_of(deps, kind, ref, as_of=as_of, at_version=at_version)
        response.headers["ETag"] = f'"{snap.version}"'
        return {
            "id": snap.state.id,
            "version": snap.version,
            "position": snap.position,
            "updated_at": snap.updated_at,
            kind.name: redact_sealed(render(snap.state)),
        }

    @router.get(
        "/{ref}/events",
        summary=f"The {kind.name}'s audit trail from the event store",
        response_model=EventPage,
        responses=ERRORS,
        name=f"{kind.name}_events",
    )
    def events(
        ref: str,
        deps: Deps,
        after_version: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        aggregate_id, items, next_after = audit_trail(deps, kind, ref, after_version, limit)
        return {"id": aggregate_id, "items": items, "next_after_version": next_after}
