"""/api/v1/search: hybrid (vector + BM25) search over tools, documents and datasets; and the
tools similar to a tool."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from api.deps import Cont, MinPosition
from api.errors import ApiError
from api.routes.common import WAIT, Tags, Text, read_models
from api.schemas import READ_ERRORS
from infra.container import Container
from infra.usage.emitter import UsageEvent, digest_arguments, wait_stored
from projections import queries
from projections.read_args import NO_NUL, QUERY_MAX
from projections.search import SimilarUnavailable
from projections.search_types import KINDS, SearchRequest, SearchResult

router = APIRouter(tags=["search"])


class ChunkOut(BaseModel):
    index: int
    heading: str | None
    text: str


class HitOut(BaseModel):
    kind: Literal["tool", "document", "dataset"]
    id: str
    slug: str | None
    name: str = Field(description="The tool's or dataset's name, the document's title")
    description: str | None
    score: float = Field(description="Fused rank score (hybrid), cosine (vector) or ts_rank")
    version: int = Field(description="The item's version this hit reflects")
    status: str | None
    category: str | None = None
    tags: list[str]
    chunk: ChunkOut | None = Field(default=None, description="Documents: the matching chunk")


class SearchOut(BaseModel):
    items: list[HitOut]
    mode: Literal["hybrid", "vector", "lexical"] = Field(description="What actually ran")
    warnings: list[str] = Field(description="Why results are degraded, when they are")
    position: int = Field(description="The store position the read models had applied")


@router.get("/search", response_model=SearchOut, responses=READ_ERRORS, dependencies=WAIT)
def search(  # noqa: PLR0917 - FastAPI reads the signature
    c: Cont,
    request: Request,
    response: Response,
    q: Annotated[str, Query(min_length=1, max_length=QUERY_MAX, pattern=NO_NUL)],
    kind: Annotated[
        list[Literal["tool", "document", "dataset"]] | None,
        Query(description="Repeatable; default all kinds"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    category: Text = None,
    tag: Tags = None,
    status: Literal["draft", "active", "deprecated", "archived"] | None = None,
    owner: Text = None,
    linked_to: Annotated[
        str | None, Query(max_length=100, pattern=NO_NUL, description="Documents linked to this id")
    ] = None,
    include_deprecated: bool = False,
    include_deleted: bool = False,
    min_score: Annotated[
        float | None, Query(ge=-1, le=1, description="Drop vector hits below this cosine")
    ] = None,
    mode: Literal["hybrid", "vector", "lexical"] = "hybrid",
    min_position: MinPosition = None,
) -> Any:
    """Ranked items for a plain-language request. Deprecated and deleted items are excluded
    unless asked for. If the embedding model or the vector index is unavailable, the lexical
    ranking is returned with a warning."""
    started = time.perf_counter()
    req = SearchRequest(
        q=q, kinds=tuple(kind or KINDS), limit=limit, category=category, tags=tuple(tag or ()),
        status=status, owner=owner, linked_to=linked_to, include_deprecated=include_deprecated,
        include_deleted=include_deleted, min_score=min_score, mode=mode,
    )  # fmt: skip
    behind = _vectors_behind(c, min_position)
    result: SearchResult
    result, position = read_models(
        c, response, lambda conn: c.searcher.search(conn, req, index_current=not behind)
    )
    _record_usage(c, request, req, result, started)
    return {
        "items": [h.to_json() for h in result.items],
        "mode": result.mode,
        "warnings": behind + result.warnings,
        "position": position,
    }


def _vectors_behind(c: Container, min_position: int | None) -> list[str]:
    """The read models have reached `min_position` (WAIT); the vector index may lag them."""
    if c.reads.vectors_current(min_position):
        return []
    return [
        f"the vector index has not reached position {min_position} yet; the lexical "
        "ranking includes it"
    ]


def _record_usage(
    c: Container, request: Request, req: SearchRequest, result: SearchResult, started: float
) -> None:
    stored = c.usage.emit(
        UsageEvent(
            tool="api.search",
            surface="api",
            arguments_digest=digest_arguments(dict(req.__dict__)),
            result_ids=[{"kind": h.kind, "id": h.id, "version": h.version} for h in result.items],
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
            status="ok",
            client_name=request.headers.get("user-agent"),
            request_id=getattr(request.state, "request_id", None),
        )
    )
    if c.settings.usage_durable:  # answered once counted (this route runs in a worker thread)
        wait_stored(stored, c.settings.usage_wait)


@router.get(
    "/tools/{ref}/similar",
    response_model=SearchOut,
    responses=READ_ERRORS,
    dependencies=WAIT,
    summary="Tools similar to a tool (nearest by its stored vector)",
)
def similar_tools(  # noqa: PLR0917 - FastAPI reads the signature
    ref: str,
    c: Cont,
    response: Response,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    category: Text = None,
    tag: Tags = None,
    status: Literal["draft", "active", "deprecated"] | None = None,
    include_deprecated: bool = False,
    min_score: Annotated[
        float | None, Query(ge=-1, le=1, description="Drop hits below this cosine")
    ] = None,
    min_position: MinPosition = None,
) -> Any:
    """Related tools: the nearest neighbours of the tool's own vector in the index, with the
    search filters; the tool itself and deprecated tools (unless asked for) are left out."""
    req = SearchRequest(
        q="", kinds=("tool",), limit=limit, category=category, tags=tuple(tag or ()),
        status=status, include_deprecated=include_deprecated, min_score=min_score,
    )  # fmt: skip

    c.reads.vectors_current(min_position)  # bounded; a tool not indexed yet is a 503 below

    def query(conn: Any) -> SearchResult:
        tool_id = str(queries.get_current(conn, "tool", ref).id)
        return c.searcher.similar(conn, "tool", tool_id, req)

    try:
        result, position = read_models(c, response, query)
    except SimilarUnavailable as exc:
        raise ApiError(503, "similar_unavailable", str(exc)) from None
    return {"items": [h.to_json() for h in result.items], "mode": result.mode,
            "warnings": [], "position": position}  # fmt: skip
