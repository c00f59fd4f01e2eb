"""/api/v1/tools: commands on tools, and reads from the read models."""

from __future__ import annotations

import json
from functools import partial
from typing import Annotated, Any, Literal

import yaml
from fastapi import APIRouter, Request, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from api.deps import Cont, Ctx, Deps
from api.errors import ApiError
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
from commands import tools as handlers
from commands.import_tools import import_tools
from commands.inputs import RegisterTool, ToolBatch, UpdateTool
from domain.errors import InvalidInput
from projections import queries
from projections.kinds import KINDS

router = APIRouter(prefix="/tools", tags=["tools"])


@router.get("", response_model=page_model("tool"), responses=READ_ERRORS, dependencies=WAIT)
def list_tools(  # noqa: PLR0917 - FastAPI reads the signature
    c: Cont,
    response: Response,
    category: Text = None,
    tag: Tags = None,
    status: Literal["draft", "active", "deprecated"] | None = None,
    text: Words = None,
    include_deleted: IncludeDeleted = False,
    sort: Annotated[str, sort_param(KINDS["tool"].table.sorts)] = queries.DEFAULT_SORT,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Any:
    """Tools from the current-state read model, a page at a time (keyset cursor)."""
    listing = queries.Listing(sort, cursor, limit, tuple(tag or ()), text, include_deleted)
    query = partial(queries.list_tools, listing=listing, category=category, status=status)
    return read_page(c, response, query)


@router.post("", status_code=201, response_model=WriteResponse, responses=ERRORS)
def register_tool(body: RegisterTool, deps: Deps, ctx: Ctx, response: Response) -> dict[str, Any]:
    """Registers a tool. The slug must be unique among tools."""
    return write_response(handlers.register_tool(deps, body.given(), ctx), response)


@router.patch("/{ref}", response_model=WriteResponse, responses=ERRORS)
def update_tool(
    ref: str, body: UpdateTool, deps: Deps, ctx: Ctx, response: Response
) -> dict[str, Any]:
    """Changes the given fields. Send `If-Match: <version>` to refuse a stale update (412)."""
    return write_response(handlers.update_tool(deps, ref, body.given(), ctx), response)


@router.post("/{ref}/activate", response_model=WriteResponse, responses=ERRORS)
def activate_tool(ref: str, deps: Deps, ctx: Ctx, response: Response) -> dict[str, Any]:
    return write_response(handlers.activate_tool(deps, ref, ctx), response)


@router.post("/{ref}/deprecate", response_model=WriteResponse, responses=ERRORS)
def deprecate_tool(ref: str, deps: Deps, ctx: Ctx, response: Response) -> dict[str, Any]:
    return write_response(handlers.deprecate_tool(deps, ref, ctx), response)


@router.delete("/{ref}", response_model=WriteResponse, responses=ERRORS)
def delete_tool(ref: str, deps: Deps, ctx: Ctx, response: Response) -> dict[str, Any]:
    """Soft delete: the tool and its history stay in the store; restore brings it back."""
    return write_response(handlers.delete_tool(deps, ref, ctx), response)


@router.post("/{ref}/restore", response_model=WriteResponse, responses=ERRORS)
def restore_tool(ref: str, deps: Deps, ctx: Ctx, response: Response) -> dict[str, Any]:
    return write_response(handlers.restore_tool(deps, ref, ctx), response)


add_read_routes(router, handlers.TOOL)

batch_router = APIRouter(tags=["tools"])

BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": ToolBatch.model_json_schema(ref_template="#/components/schemas/{model}")
            },
            "application/yaml": {"schema": {"type": "string"}},
        },
    }
}


def _problem(exc: Exception) -> str:
    """What is wrong and where, without the parser's excerpt of the body (it may hold secrets)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        what = exc.problem or exc.context or "parse error"
        return f"{what} at line {mark.line + 1}, column {mark.column + 1}"
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno}, column {exc.colno}"
    return type(exc).__name__


async def _parse_batch(request: Request) -> ToolBatch:
    raw = await request.body()
    content_type = request.headers.get("content-type", "application/json")
    is_yaml = "yaml" in content_type
    try:
        data = yaml.safe_load(raw) if is_yaml else json.loads(raw)
    except (ValueError, yaml.YAMLError) as exc:
        message = f"the body is not valid {'YAML' if is_yaml else 'JSON'}: {_problem(exc)}"
        raise ApiError(400, "malformed_body", message) from None
    try:
        return ToolBatch.model_validate(data)
    except ValidationError as exc:
        details = [
            {"field": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"]}
            for e in exc.errors()
        ]
        raise ApiError(422, "invalid_input", "the batch has invalid fields", details) from None


@batch_router.post(
    "/tools:batch", openapi_extra=BATCH_BODY, responses=ERRORS, summary="Register many tools"
)
async def register_tools_batch(request: Request, deps: Deps, ctx: Ctx) -> dict[str, Any]:
    """Registers many tools (JSON, or YAML with `Content-Type: application/yaml`), appended in
    batches; each batch is all-or-nothing, and the first failing batch stops the import."""
    batch = await _parse_batch(request)
    size = request.app.state.container.settings.import_batch_size
    outcomes = await run_in_threadpool(import_tools, deps, batch.tools, ctx, size)
    committed = [r for o in outcomes for r in o.results]
    failed = next((o for o in outcomes if o.error), None)
    items = [{"id": r.id, "version": r.version, "position": r.position} for r in committed]
    if failed is not None:
        exc = failed.error
        details = (
            [{"field": e.field, "message": e.message} for e in exc.errors]
            if isinstance(exc, InvalidInput)
            else []
        )
        raise ApiError(
            422 if isinstance(exc, InvalidInput) else 409,
            getattr(exc, "code", "batch_failed"),
            f"batch {failed.index} was rejected ({exc}); {len(committed)} tools in earlier "
            "batches were stored",
            [*details, {"field": "committed", "message": str(len(committed))}],
        )
    return {"committed": len(committed), "items": items}
