"""Routes every aggregate kind has: reads from the read models (now, as of a time or version, the
version history and diffs) and the audit trail from the event store."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query, Response
from pydantic import AwareDatetime, Field

from api.deps import Cont, Deps, wait_for_projections, wait_for_store
from api.errors import ApiError
from api.schemas import READ_ERRORS, DiffOut, EventPage, VersionPage, single_model
from commands.audit import audit_trail
from commands.common import Kind, WriteResult
from infra.container import Container
from projections import queries
from projections import results as read
from projections.read_args import CURSOR_MAX, MAX_INT, NO_NUL, VALUE_MAX, WORDS_MAX

MAX_VERSION = MAX_INT
POSITION_HEADER = "X-Ledger-Position"
WAIT = [Depends(wait_for_projections)]
R = TypeVar("R")
Paged = read.ItemPage | read.VersionPage | read.Diff

Text = Annotated[str | None, Query(max_length=VALUE_MAX, pattern=NO_NUL)]
Tags = Annotated[
    list[Annotated[str, Field(max_length=VALUE_MAX, pattern=NO_NUL)]] | None,
    Query(max_length=50, description="Repeatable; the item must have every tag given"),
]
Words = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=WORDS_MAX,
        pattern=NO_NUL,
        description="Full-text search: items whose text has all these words",
    ),
]
IncludeDeleted = Annotated[bool, Query(description="Also list soft-deleted items")]
Cursor = Annotated[
    str | None, Query(max_length=CURSOR_MAX, description="The `next_cursor` of the previous page")
]
Limit = Annotated[int, Query(ge=1, le=200)]


def sort_param(sorts: tuple[str, ...]) -> Any:
    return Query(
        max_length=50,
        description=f"One of {', '.join(sorts)}; a leading '-' sorts descending. Default "
        "-updated_at (most recently changed first); ties are ordered by id.",
    )


def write_response(result: WriteResult, response: Response) -> dict[str, Any]:
    response.headers["ETag"] = f'"{result.version}"'
    return {"id": result.id, "version": result.version, "position": result.position}


def read_models(c: Container, response: Response, query: Callable[..., R]) -> tuple[R, int]:
    """Runs `query(conn)` and reads the applied position in the same snapshot, so the position
    reported is the one the answer reflects."""
    result, position = c.reads.snapshot(lambda conn, _: query(conn))
    response.headers[POSITION_HEADER] = str(position)
    return result, position


def read_page(c: Container, response: Response, query: Callable[..., Paged]) -> Any:
    page, position = read_models(c, response, query)
    return {**page.wire(), "position": position}


def add_read_routes(router: APIRouter, kind: Kind[Any]) -> None:
    name = kind.name

    @router.get(
        "/{ref}",
        summary=f"Get a {name} (now, as of a time, or at a version)",
        response_model=single_model(name),
        responses=READ_ERRORS,
        dependencies=WAIT,
        name=f"get_{name}",
    )
    def get_one(
        ref: str,
        c: Cont,
        response: Response,
        as_of: Annotated[
            AwareDatetime | None,
            Query(description="RFC 3339 time with offset: the state as it was then"),
        ] = None,
        at_version: Annotated[
            int | None, Query(ge=1, le=MAX_VERSION, description="The state at this version")
        ] = None,
    ) -> dict[str, Any]:
        """The current state, or with `as_of`/`at_version` the state of the last version at or
        before that time/version, from the version history."""
        if as_of is None and at_version is None:
            query = partial(queries.get_current, kind=name, ref=ref)
        else:
            query = partial(
                queries.get_historic, kind=name, ref=ref, as_of=as_of, at_version=at_version
            )
        item, position = read_models(c, response, query)
        response.headers["ETag"] = f'"{item.version}"'
        return {**item.wire(), "applied_position": position}

    @router.get(
        "/{ref}/versions",
        summary=f"The {name}'s versions, each with its JSON Patch",
        response_model=VersionPage,
        response_model_exclude_unset=True,
        responses=READ_ERRORS,
        dependencies=WAIT,
        name=f"{name}_versions",
    )
    def versions(  # noqa: PLR0917 - FastAPI reads the signature
        ref: str,
        c: Cont,
        response: Response,
        after_version: Annotated[int, Query(ge=0, le=MAX_VERSION)] = 0,
        limit: Limit = 50,
        include_snapshot: Annotated[
            bool, Query(description="Also return each version's full state")
        ] = False,
    ) -> Any:
        query = partial(
            queries.list_versions,
            kind=name,
            ref=ref,
            after_version=after_version,
            limit=limit,
            include_snapshot=include_snapshot,
        )
        return read_page(c, response, query)

    @router.get(
        "/{ref}/diff",
        summary=f"RFC 6902 JSON Patch between two versions of a {name}",
        response_model=DiffOut,
        responses=READ_ERRORS,
        dependencies=WAIT,
        name=f"{name}_diff",
    )
    def diff(
        ref: str,
        c: Cont,
        response: Response,
        from_: Annotated[int, Query(alias="from", ge=1, le=MAX_VERSION)],
        to: Annotated[int, Query(ge=1, le=MAX_VERSION)],
    ) -> Any:
        """Applying `patch` to the `from` version's state gives the `to` version's state."""
        query = partial(
            queries.diff_versions, kind=name, ref=ref, from_version=from_, to_version=to
        )
        try:
            return read_page(c, response, query)
        except queries.UnknownVersion as exc:
            raise ApiError(
                404, "not_found", exc.message, [{"field": exc.field, "message": exc.message}]
            ) from None

    @router.get(
        "/{ref}/events",
        summary=f"The {name}'s audit trail from the event store",
        response_model=EventPage,
        responses=READ_ERRORS,
        dependencies=[Depends(wait_for_store)],
        name=f"{name}_events",
    )
    def events(  # noqa: PLR0917 - FastAPI reads the signature
        ref: str,
        deps: Deps,
        c: Cont,
        response: Response,
        after_version: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        """Read from the event store itself; `X-Ledger-Position` is the store's last position."""
        head = c.store.head()
        aggregate_id, items, next_after = audit_trail(deps, kind, ref, after_version, limit)
        response.headers[POSITION_HEADER] = str(head)
        return {"id": aggregate_id, "items": items, "next_after_version": next_after}
