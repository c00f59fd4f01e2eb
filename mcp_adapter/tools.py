"""The MCP tools and resources: thin handlers that validate nothing themselves (the SDK does,
from the signatures), run a read-model query through `answers.answer` and map rows into the
answer models."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from mcp.server.mcpserver.exceptions import ResourceError
from mcp_types import (
    CallToolResult,
)
from psycopg import Connection
from pydantic import AwareDatetime, Field

from domain.errors import NotFound
from infra.container import Container
from infra.kafka.cloudevents import rfc3339
from infra.postgres.reads import NotReached
from mcp_adapter import models, render, shapes
from mcp_adapter.answers import (
    Ctx,
    Unanswerable,
    answer,
    container_of,
    failure,
    invalid_params,
    note,
    searcher_of,
    structured,
)
from mcp_adapter.arguments import (
    Cursor,
    DatasetStatus,
    IncludeDeprecated,
    Limit,
    MinPosition,
    SearchText,
    Slug,
    Tags,
    Text,
    ToolStatus,
    Version,
    Window,
)
from projections import analytics, queries
from projections.read_args import MAX_INT, NO_NUL
from projections.search import SimilarUnavailable
from projections.search_types import SearchRequest

# --- tools ----------------------------------------------------------------------------------


def _index_current(c: Container, min_position: int | None) -> bool:
    """Whether the vector index has every change up to `min_position` (waited for, bounded,
    after the read models); if not, Postgres full text ranks too, so a fresh write is found."""
    with contextlib.suppress(NotReached):  # answer() reports it
        c.reads.wait(min_position)
    return c.reads.vectors_current(min_position)


def _tool_request(  # noqa: PLR0917 - the search tools' filters
    q: str, limit: int, category: str | None, tags: list[str] | None, status: str | None,
    include_deprecated: bool,
) -> SearchRequest:  # fmt: skip
    """Asking for deprecated tools by status includes them."""
    return SearchRequest(
        q=q, kinds=("tool",), limit=limit, category=category, tags=tuple(tags or ()),
        status=status, include_deprecated=include_deprecated or status == "deprecated",
    )  # fmt: skip


def _tool_search(conn: Connection[Any], result: Any, position: int) -> models.ToolSearch:
    """Search hits as the answer model, with each tool's semver and input parameters."""
    extras = queries.tool_extras(conn, [h.id for h in result.items])
    hits = []
    for h in result.items:
        extra = extras.get(str(h.id), {})
        hits.append(
            models.ToolHit(
                id=str(h.id),
                slug=h.slug,
                name=h.name,
                description=h.description,
                score=h.score,
                version=h.version,
                semver=extra.get("semver"),
                status=h.status,
                category=h.category,
                tags=list(h.tags),
                inputs=shapes.input_summary(extra.get("input_schema")),
            )
        )
    return models.ToolSearch(
        items=hits, mode=result.mode, warnings=list(result.warnings), position=position
    )


def search_tools(  # noqa: PLR0917 - the tool's arguments
    ctx: Ctx,
    query: SearchText,
    limit: Limit = 10,
    category: Text | None = None,
    tags: Tags = None,
    status: ToolStatus | None = None,
    include_deprecated: IncludeDeprecated = False,
    min_position: MinPosition = None,
) -> Annotated[CallToolResult, models.ToolSearch]:
    """Hybrid (semantic + keyword) search over the registered tools; each hit has its slug,
    name, description, score, version and a summary of its input parameters. Deprecated and
    deleted tools are left out unless asked for."""
    c = container_of(ctx)
    searcher, why = searcher_of(c)
    if searcher is None:
        return failure("search_unavailable", why)
    current = _index_current(c, min_position)
    request = _tool_request(query, limit, category, tags, status, include_deprecated)

    def build(conn: Connection[Any], position: int) -> models.ToolSearch:
        result = searcher.search(conn, request, index_current=current)
        return _tool_search(conn, result, position)

    return answer(c, min_position, build, render.tool_search, snapshot=False)


def find_similar(  # noqa: PLR0917 - the tool's arguments
    ctx: Ctx,
    slug: Slug,
    limit: Limit = 10,
    category: Text | None = None,
    tags: Tags = None,
    status: ToolStatus | None = None,
    include_deprecated: IncludeDeprecated = False,
    min_position: MinPosition = None,
) -> Annotated[CallToolResult, models.ToolSearch]:
    """Tools related to one tool (alternatives, neighbours of its job): the nearest neighbours of
    its stored vector, with the same filters as search_tools; the tool itself is left out."""
    c = container_of(ctx)
    searcher, why = searcher_of(c)
    if searcher is None:
        return failure("search_unavailable", why)
    request = _tool_request("", limit, category, tags, status, include_deprecated)
    _index_current(c, min_position)  # bounded; a tool not indexed yet is a failure below

    def build(conn: Connection[Any], position: int) -> models.ToolSearch:
        tool_id = str(queries.get_current(conn, "tool", slug).id)
        try:
            result = searcher.similar(conn, "tool", tool_id, request)
        except SimilarUnavailable as exc:
            raise Unanswerable("similar_unavailable", str(exc)) from None
        return _tool_search(conn, result, position)

    return answer(c, min_position, build, render.tool_search)


def get_tool(
    ctx: Ctx,
    slug: Slug,
    as_of: Annotated[
        AwareDatetime | None,
        Field(description="RFC 3339 time with offset: the tool as it was then (from history)"),
    ] = None,
    version: Annotated[
        int | None,
        Field(ge=1, le=MAX_INT, description="The tool at this registry version (from history)"),
    ] = None,
    min_position: MinPosition = None,
) -> Annotated[CallToolResult, models.ToolAnswer]:
    """One tool: its current state, or with `as_of`/`version` the state of the last version at
    or before that time/version, read from the version history."""
    historic = as_of is not None or version is not None

    def build(conn: Connection[Any], position: int) -> models.ToolAnswer:
        if historic:
            item = queries.get_historic(conn, "tool", slug, as_of=as_of, at_version=version)
        else:
            item = queries.get_current(conn, "tool", slug)
        return models.ToolAnswer(
            tool=shapes.tool_record(item), historic=historic, position=position
        )

    return answer(container_of(ctx), min_position, build, render.tool)


def list_tools(  # noqa: PLR0917 - the tool's arguments
    ctx: Ctx,
    category: Text | None = None,
    tag: Text | None = None,
    status: ToolStatus | None = None,
    include_deprecated: IncludeDeprecated = False,
    cursor: Cursor = None,
    limit: Limit = 50,
    min_position: MinPosition = None,
) -> Annotated[CallToolResult, models.ToolPage]:
    """Registered tools, most recently changed first, a page at a time (pass `next_cursor`
    back as `cursor`). Deprecated tools are left out unless asked for."""
    listing = queries.Listing(cursor=cursor, limit=limit, tags=(tag,) if tag else ())

    def build(conn: Connection[Any], position: int) -> models.ToolPage:
        page = queries.list_tools(
            conn,
            listing,
            category=category,
            status=status,
            include_deprecated=include_deprecated,
        )
        items = [shapes.tool_summary(i) for i in page.items]
        return models.ToolPage(items=items, next_cursor=page.next_cursor, position=position)

    return answer(container_of(ctx), min_position, build, render.tool_page)


def tool_history(
    ctx: Ctx,
    slug: Slug,
    after_version: Annotated[int, Field(ge=0, le=MAX_INT)] = 0,
    limit: Limit = 50,
    min_position: MinPosition = None,
) -> Annotated[CallToolResult, models.ToolHistory]:
    """The tool's versions in order: event, who, when, why, and the JSON Patch of each."""

    def build(conn: Connection[Any], position: int) -> models.ToolHistory:
        current = queries.get_current(conn, "tool", slug)
        page = queries.list_versions(conn, "tool", slug, after_version=after_version, limit=limit)
        return models.ToolHistory(
            id=str(page.id),
            slug=current.fields["slug"],
            items=[shapes.version_entry(v) for v in page.items],
            next_after_version=page.next_after_version,
            position=position,
        )

    return answer(container_of(ctx), min_position, build, render.tool_history)


def tool_diff(
    ctx: Ctx,
    slug: Slug,
    from_version: Version,
    to_version: Version,
    min_position: MinPosition = None,
) -> Annotated[CallToolResult, models.ToolDiff]:
    """The RFC 6902 JSON Patch that turns the tool at `from_version` into `to_version`."""
    if from_version > to_version:
        raise invalid_params([("from_version", f"must not be after to_version ({to_version})")])

    def build(conn: Connection[Any], position: int) -> models.ToolDiff:
        current = queries.get_current(conn, "tool", slug)
        diff = queries.diff_versions(conn, "tool", slug, from_version, to_version)
        return models.ToolDiff(
            id=str(diff.id),
            slug=current.fields["slug"],
            from_version=from_version,
            to_version=to_version,
            patch=diff.patch,
            position=position,
        )

    return answer(container_of(ctx), min_position, build, render.tool_diff)


def search_documents(
    ctx: Ctx,
    query: SearchText,
    limit: Limit = 10,
    linked_to: Annotated[
        UUID | None, Field(description="Only documents linked to this tool or dataset id")
    ] = None,
    min_position: MinPosition = None,
) -> Annotated[CallToolResult, models.DocumentSearch]:
    """Hybrid search over the knowledge-base documents; each hit has the passage that matched."""
    c = container_of(ctx)
    searcher, why = searcher_of(c)
    if searcher is None:
        return failure("search_unavailable", why)
    current = _index_current(c, min_position)
    request = SearchRequest(
        q=query,
        kinds=("document",),
        limit=limit,
        linked_to=str(linked_to) if linked_to else None,
    )

    def build(conn: Connection[Any], position: int) -> models.DocumentSearch:
        result = searcher.search(conn, request, index_current=current)
        hits = [
            models.DocumentHit(
                id=str(h.id),
                title=h.name,
                score=h.score,
                version=h.version,
                tags=list(h.tags),
                chunk=h.chunk,
            )
            for h in result.items
        ]
        return models.DocumentSearch(
            items=hits, mode=result.mode, warnings=list(result.warnings), position=position
        )

    return answer(c, min_position, build, render.document_search, snapshot=False)


def get_document(
    ctx: Ctx,
    id: Annotated[UUID, Field(description="The document's id")],
    min_position: MinPosition = None,
) -> Annotated[CallToolResult, models.DocumentAnswer]:
    """One document: title, content, tags, and the tool or dataset it documents."""

    def build(conn: Connection[Any], position: int) -> models.DocumentAnswer:
        item = queries.get_current(conn, "document", str(id))
        return models.DocumentAnswer(document=shapes.document_record(item), position=position)

    return answer(container_of(ctx), min_position, build, render.document)


def list_datasets(  # noqa: PLR0917 - the tool's arguments
    ctx: Ctx,
    owner: Text | None = None,
    tag: Text | None = None,
    status: DatasetStatus | None = None,
    text: Annotated[
        str | None,
        Field(min_length=1, max_length=500, pattern=NO_NUL, description="Words all present"),
    ] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
    min_position: MinPosition = None,
) -> Annotated[CallToolResult, models.DatasetPage]:
    """Registered datasets, most recently changed first, a page at a time (pass `next_cursor`
    back as `cursor`)."""
    listing = queries.Listing(cursor=cursor, limit=limit, tags=(tag,) if tag else (), text=text)

    def build(conn: Connection[Any], position: int) -> models.DatasetPage:
        page = queries.list_datasets(conn, listing, owner=owner, status=status)
        items = [shapes.dataset_summary(i) for i in page.items]
        return models.DatasetPage(items=items, next_cursor=page.next_cursor, position=position)

    return answer(container_of(ctx), min_position, build, render.dataset_page)


def describe_dataset(
    ctx: Ctx, slug: Slug, min_position: MinPosition = None
) -> Annotated[CallToolResult, models.DatasetAnswer]:
    """One dataset: source, owner, columns (name, type, nullable, description) and profile."""

    def build(conn: Connection[Any], position: int) -> models.DatasetAnswer:
        item = queries.get_current(conn, "dataset", slug)
        return models.DatasetAnswer(dataset=shapes.dataset_record(item), position=position)

    return answer(container_of(ctx), min_position, build, render.dataset)


def changes_since(
    ctx: Ctx,
    position: Annotated[
        int, Field(ge=0, le=MAX_INT, description="The `next_position` of the last call, or 0")
    ] = 0,
    limit: Annotated[int, Field(ge=1, le=500)] = 100,
) -> Annotated[CallToolResult, models.Changes]:
    """What changed in the registry after an event-store position, in order: one entry per
    version (kind, id, slug or title, event, who, why). Continue from `next_position`."""

    def build(conn: Connection[Any], applied: int) -> models.Changes:
        page = queries.changes_since(conn, position, applied, limit)
        return models.Changes(
            items=[shapes.change(r) for r in page.items],
            next_position=page.next_position,
            more=page.more,
            position=applied,
        )

    return answer(container_of(ctx), None, build, render.changes)


def usage_stats(
    ctx: Ctx,
    slug: Annotated[
        str | None,
        Field(min_length=1, max_length=200, pattern=NO_NUL, description="One MCP tool's name"),
    ] = None,
    window: Window = "1h",
) -> Annotated[CallToolResult, models.UsageStats]:
    """How the MCP tools are used over the last hour, day or week: calls, errors, p50/p95
    latency, top tools (from the usage analytics)."""
    c = container_of(ctx)
    with c.read_side.connection() as conn:
        stats = analytics.usage_stats(conn, c.redis, tool=slug, window=window)
    model = models.UsageStats(
        window=window, tool=slug, calls=stats["calls"], errors=stats["errors"],
        error_rate=stats["error_rate"], latency_ms=stats["latency_ms"],
        top_tools=stats["top_tools"], window_start=stats["from"], window_end=stats["to"],
        granularity=stats["granularity"], source=stats["source"],
    )  # fmt: skip
    note("ok")
    return structured(model, render.usage(model))


TOOLS: list[tuple[Callable[..., Any], str]] = [
    (search_tools, "Search tools"),
    (find_similar, "Find similar tools"),
    (get_tool, "Get a tool"),
    (list_tools, "List tools"),
    (tool_history, "A tool's history"),
    (tool_diff, "Diff two versions of a tool"),
    (search_documents, "Search documents"),
    (get_document, "Get a document"),
    (list_datasets, "List datasets"),
    (describe_dataset, "Describe a dataset"),
    (usage_stats, "Usage statistics"),
    (changes_since, "Changes since a position"),
]


# --- resources ------------------------------------------------------------------------------


def _resource(c: Container, kind: str, ref: str) -> str:
    try:
        with c.read_side.connection() as conn, queries.snapshot(conn):
            position = c.read_side.applied_position(conn)
            item = queries.get_current(conn, kind, ref)
    except NotFound as exc:
        raise ResourceError(exc.message) from None
    return json.dumps({**item.wire(), "applied_position": position}, default=_json_value)


def _json_value(value: Any) -> str:
    # Times as RFC 3339, exactly as the REST API writes them; ids as their text.
    return rfc3339(value) if isinstance(value, datetime) else str(value)


def tool_resource(slug: str, ctx: Ctx) -> str:
    """The tool's current state (JSON)."""
    return _resource(container_of(ctx), "tool", slug)


def dataset_resource(slug: str, ctx: Ctx) -> str:
    """The dataset's current state with its columns (JSON)."""
    return _resource(container_of(ctx), "dataset", slug)


def document_resource(id: str, ctx: Ctx) -> str:
    """The document's current state (JSON)."""
    return _resource(container_of(ctx), "document", id)
