"""/api/v1/datasets: commands on datasets, and reads from the read models."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Response

from api.deps import Cont, Ctx, Deps
from api.routes.common import (
    WAIT,
    Cursor,
    IncludeDeleted,
    Limit,
    Tags,
    Text,
    Words,
    add_read_routes,
    read_page,
    sort_param,
    write_response,
)
from api.schemas import ERRORS, READ_ERRORS, WriteResponse, page_model
from commands import datasets as handlers
from commands.inputs import ChangeColumns, DescribeDataset, RecordProfile, RegisterDataset
from projections import queries
from projections.kinds import KINDS

router = APIRouter(prefix="/datasets", tags=["datasets"])


@router.get("", response_model=page_model("dataset"), responses=READ_ERRORS, dependencies=WAIT)
def list_datasets(  # noqa: PLR0917 - FastAPI reads the signature
    c: Cont,
    response: Response,
    owner: Text = None,
    tag: Tags = None,
    status: Literal["active", "archived"] | None = None,
    text: Words = None,
    include_deleted: IncludeDeleted = False,
    sort: Annotated[str, sort_param(KINDS["dataset"].table.sorts)] = queries.DEFAULT_SORT,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Any:
    """Datasets (with their columns) from the current-state read model, a page at a time."""
    listing = queries.Listing(sort, cursor, limit, tuple(tag or ()), text, include_deleted)
    query = partial(queries.list_datasets, listing=listing, owner=owner, status=status)
    return read_page(c, response, query)


@router.post("", status_code=201, response_model=WriteResponse, responses=ERRORS)
def register_dataset(
    body: RegisterDataset, deps: Deps, ctx: Ctx, response: Response
) -> dict[str, Any]:
    """Registers a dataset. The slug must be unique among datasets (409 `slug_taken`); column
    names must be unique; `source.uri` must not embed a password. A new dataset is active."""
    return write_response(handlers.register_dataset(deps, body.given(), ctx), response)


@router.patch("/{ref}", response_model=WriteResponse, responses=ERRORS)
def describe_dataset(
    ref: str, body: DescribeDataset, deps: Deps, ctx: Ctx, response: Response
) -> dict[str, Any]:
    """Changes the given metadata (name, description, tags, owner, source); the slug never
    changes. Sending only unchanged values appends nothing and returns the current version.
    Send `If-Match: <version>` to refuse a stale update (412)."""
    return write_response(handlers.describe_dataset(deps, ref, body.given(), ctx), response)


@router.put("/{ref}/columns", response_model=WriteResponse, responses=ERRORS)
def change_dataset_columns(
    ref: str, body: ChangeColumns, deps: Deps, ctx: Ctx, response: Response
) -> dict[str, Any]:
    """Replaces the whole column list. The profile keeps statistics only for columns that still
    exist. The same list again appends nothing."""
    columns = body.given()["columns"]
    return write_response(handlers.change_dataset_columns(deps, ref, columns, ctx), response)


@router.post("/{ref}/profile", response_model=WriteResponse, responses=ERRORS)
def record_dataset_profile(
    ref: str, body: RecordProfile, deps: Deps, ctx: Ctx, response: Response
) -> dict[str, Any]:
    """Records a profile: the row count and per-column statistics, keyed by column name. It
    replaces the previous profile; naming a column the dataset does not have is a 422."""
    profile = body.given()
    return write_response(handlers.record_dataset_profile(deps, ref, profile, ctx), response)


@router.post("/{ref}/archive", response_model=WriteResponse, responses=ERRORS)
def archive_dataset(ref: str, deps: Deps, ctx: Ctx, response: Response) -> dict[str, Any]:
    """Marks the dataset archived (no longer maintained); 409 if it already is. Undo with
    `/unarchive`."""
    return write_response(handlers.archive_dataset(deps, ref, ctx), response)


@router.post("/{ref}/unarchive", response_model=WriteResponse, responses=ERRORS)
def unarchive_dataset(ref: str, deps: Deps, ctx: Ctx, response: Response) -> dict[str, Any]:
    """Makes an archived dataset active again; 409 if it is not archived."""
    return write_response(handlers.unarchive_dataset(deps, ref, ctx), response)


@router.delete("/{ref}", response_model=WriteResponse, responses=ERRORS)
def delete_dataset(ref: str, deps: Deps, ctx: Ctx, response: Response) -> dict[str, Any]:
    """Soft delete: the dataset and its history stay in the store and its slug stays taken.
    A deleted dataset refuses every command (409) until it is restored."""
    return write_response(handlers.delete_dataset(deps, ref, ctx), response)


@router.post("/{ref}/restore", response_model=WriteResponse, responses=ERRORS)
def restore_dataset(ref: str, deps: Deps, ctx: Ctx, response: Response) -> dict[str, Any]:
    """Brings a deleted dataset back, with the status it had; 409 if it is not deleted."""
    return write_response(handlers.restore_dataset(deps, ref, ctx), response)


add_read_routes(router, handlers.DATASET)
