"""/api/v1/documents: commands on documents, and reads by replay. Documents have no slug:
`{ref}` is always the document's id."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from api.deps import Ctx, Deps
from api.routes.common import add_read_routes, write_response
from api.schemas import ERRORS, WriteResponse
from commands import documents as handlers
from commands.inputs import AddDocument, RetagDocument, ReviseDocument
from domain.document import Document

router = APIRouter(prefix="/documents", tags=["documents"])


def render_document(document: Document) -> dict[str, Any]:
    return document.fields()


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


add_read_routes(router, handlers.DOCUMENT, render_document)
