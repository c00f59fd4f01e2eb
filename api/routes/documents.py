"""/api/v1/documents: commands on documents, and reads from the read models. Documents have no slug:
`{ref}` is always the document's id."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Response

from api.deps import Cont, Ctx, Deps
from api.routes.common import (
    WAIT,
    Cursor,
    IncludeDeleted,
    Limit,
    Tags,
    Words,
    add_read_routes,
    read_page,
    sort_param,
    write_response,
)
from api.schemas import ERRORS, READ_ERRORS, WriteResponse, page_model
from commands import documents as handlers
from commands.inputs import AddDocument, RetagDocument, ReviseDocument
from projections import queries
from projections.kinds import KINDS

router = APIRouter(prefix="/documents", tags=["documents"])


@router.get("", response_model=page_model("document"), responses=READ_ERRORS, dependencies=WAIT)
def list_documents(  # noqa: PLR0917 - FastAPI reads the signature
    c: Cont,
    response: Response,
    tag: Tags = None,
    linked_to: Annotated[
        UUID | None, Query(description="Only documents linked to this tool or dataset id")
    ] = None,
    text: Words = None,
    include_deleted: IncludeDeleted = False,
    sort: Annotated[str, sort_param(KINDS["document"].table.sorts)] = queries.DEFAULT_SORT,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Any:
    """Documents from the current-state read model, a page at a time (keyset cursor)."""
    listing = queries.Listing(sort, cursor, limit, tuple(tag or ()), text, include_deleted)
    query = partial(queries.list_documents, listing=listing, linked_to=linked_to)
    return read_page(c, response, query)


@router.post("", status_code=201, response_model=WriteResponse, responses=ERRORS)
def add_document(body: AddDocument, deps: Deps, ctx: Ctx, response: Response) -> dict[str, Any]:
    """Adds a plain-text or Markdown document (up to 1,000,000 characters). An optional `link`
    names an existing, not deleted tool or dataset by id; otherwise 422 on `link.id`."""
    return write_response(handlers.add_document(deps, body.given(), ctx), response)


@router.patch("/{ref}", response_model=WriteResponse, responses=ERRORS)
def revise_document(
    ref: str, body: ReviseDocument, deps: Deps, ctx: Ctx, response: Response
) -> dict[str, Any]:
    """Revises the given fields: title, content, content_type, metadata (replaced whole) and
    link (`null` unlinks). Unchanged values append nothing. Send `If-Match: <version>` to refuse
    a stale revision (412)."""
    return write_response(handlers.revise_document(deps, ref, body.given(), ctx), response)


@router.put("/{ref}/tags", response_model=WriteResponse, responses=ERRORS)
def retag_document(
    ref: str, body: RetagDocument, deps: Deps, ctx: Ctx, response: Response
) -> dict[str, Any]:
    """Replaces the document's tags. The same tags again append nothing."""
    return write_response(handlers.retag_document(deps, ref, body.tags, ctx), response)


@router.delete("/{ref}", response_model=WriteResponse, responses=ERRORS)
def remove_document(ref: str, deps: Deps, ctx: Ctx, response: Response) -> dict[str, Any]:
    """Soft delete: the document and its history stay in the store. A removed document refuses
    every command (409) until it is restored."""
    return write_response(handlers.remove_document(deps, ref, ctx), response)


@router.post("/{ref}/restore", response_model=WriteResponse, responses=ERRORS)
def restore_document(ref: str, deps: Deps, ctx: Ctx, response: Response) -> dict[str, Any]:
    """Brings a removed document back; 409 if it is not removed."""
    return write_response(handlers.restore_document(deps, ref, ctx), response)


add_read_routes(router, handlers.DOCUMENT)
