"""The MCP server over the read models (official `mcp` SDK, `MCPServer`).

Tool handlers are thin: validate arguments (the SDK, from the signatures), call a query over the
read models in one snapshot with the applied position, map rows into the answer model, and
return it as structured content plus a compact markdown rendering. They reach the container
through the server's typed lifespan context. Every call emits one usage event."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar
from uuid import UUID

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    CallToolResult,
    InputRequiredResult,
    TextContent,
    ToolAnnotations,
)
from psycopg import Connection
from pydantic import AwareDatetime, BaseModel, Field, ValidationError

from domain.errors import InvalidInput, NotFound
from infra.container import Container
from infra.kafka.cloudevents import rfc3339
from infra.observability.metrics import observe_mcp_call
from infra.postgres.reads import NotReached
from infra.usage.emitter import UsageEvent, digest_arguments, wait_stored
from mcp_adapter import models, render, shapes
from projections import analytics, queries
from projections.read_args import CURSOR_MAX, MAX_INT, NO_NUL, QUERY_MAX, VALUE_MAX
from projections.search_types import SearchRequest

SERVER_NAME = "mcp-ledger"
INSTRUCTIONS = """The registry of MCP tools, datasets and documents, read from its read models.
Find tools with search_tools (or list_tools), read one with get_tool (also as of a time or a
registry version), follow changes with tool_history, tool_diff and changes_since. Every answer
reports `position`: the event-store position the read models had applied when it was read. Pass
`min_position` (e.g. the position a write returned) to wait, bounded, until they reach it."""

READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)

Slug = Annotated[
    str,
    Field(min_length=1, max_length=VALUE_MAX, pattern=NO_NUL, description="The slug (or the id)"),
]
Text = Annotated[str, Field(min_length=1, max_length=VALUE_MAX, pattern=NO_NUL)]
SearchText = Annotated[
    str, Field(min_length=1, max_length=QUERY_MAX, pattern=NO_NUL, description="What to look for")
]
Tags = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=VALUE_MAX, pattern=NO_NUL)]] | None,
    Field(max_length=20, description="Only items with every one of these tags"),
]
Limit = Annotated[int, Field(ge=1, le=100, description="At most this many items")]
Cursor = Annotated[
    str | None,
    Field(max_length=CURSOR_MAX, description="The `next_cursor` of the previous page"),
]
Version = Annotated[int, Field(ge=1, le=MAX_INT, description="A registry (aggregate) version")]
Position = Annotated[int, Field(ge=0, le=MAX_INT, description="An event-store position")]
MinPosition = Annotated[
    int | None,
    Field(
        ge=0,
        le=MAX_INT,
        description="Wait (bounded) until the read models have applied this event-store "
        "position, e.g. the `position` a write returned; the answer says so if they have not",
    ),
]
ToolStatus = Literal["draft", "active", "deprecated"]
DatasetStatus = Literal["active", "archived"]
Window = Literal["1h", "24h", "7d"]
IncludeDeprecated = Annotated[
    bool, Field(description="Also return deprecated tools (left out by default)")
]

M = TypeVar("M", bound=models.Answer)


@dataclass
class LedgerContext:
    """What the server's lifespan hands every request: the composition root."""

    container: Container


Ctx = Context[LedgerContext, Any]


def _container(ctx: Ctx) -> Container:
    return ctx.request_context.lifespan_context.container


# --- one call: what it returned, for its usage event ----------------------------------------


@dataclass
class CallRecord:
    result_ids: list[dict[str, Any]] = field(default_factory=list)
    status: str | None = None


# Sync handlers run on worker threads in a copy of this context: they mutate the record object.
_CALL: ContextVar[CallRecord | None] = ContextVar("mcp_call", default=None)


def _note(status: str, result_ids: list[dict[str, Any]] | None = None) -> None:
    record = _CALL.get()
    if record is not None:
        record.status = status
        record.result_ids = result_ids or []


def invalid_params(errors: list[tuple[str, str]]) -> MCPError:
    """A JSON-RPC 'invalid params' error that names each offending argument."""
    text = "; ".join(f"argument '{name}': {message}" for name, message in errors)
    data = {"arguments": [{"name": n, "message": m} for n, m in errors]}
    return MCPError(code=INVALID_PARAMS, message=f"invalid arguments: {text}", data=data)


# Query-level field names that differ from the tools' argument names.
ARGUMENT_NAMES = {"from": "from_version", "to": "to_version"}


def _structured(model: BaseModel, text: str) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content=model.model_dump(mode="json", by_alias=True),
    )


def failure(code: str, message: str, position: int | None = None) -> CallToolResult:
    """A tool-level error (isError): not found, read model behind, search unavailable."""
    info = models.ErrorInfo(code=code, message=message, position=position)
    _note("not_found" if code == "not_found" else "error")
    return CallToolResult(
        content=[TextContent(type="text", text=render.error(info))],
        structured_content={"error": info.model_dump(mode="json")},
        is_error=True,
    )


def answer(
    c: Container,
    min_position: int | None,
    build: Callable[[Connection[Any], int], M],
    text: Callable[[M], str],
    *,
    snapshot: bool = True,
) -> CallToolResult:
    """Runs `build(conn, applied_position)` over the read models (in one REPEATABLE READ
    snapshot, so rows and position agree) and renders the answer or the failure."""
    try:
        c.reads.wait(min_position)
    except NotReached as exc:
        return failure("projection_behind", exc.message, exc.reached)
    seen: list[int] = []  # the position the query ran at, also when it raises

    def run(conn: Connection[Any], position: int) -> M:
        seen.append(position)
        return build(conn, position)

    try:
        if snapshot:
            model, _ = c.reads.snapshot(run)
        else:
            with c.read_side.connection() as conn:
                model = run(conn, c.read_side.applied_position(conn))
    except NotFound as exc:
        position = seen[0] if seen else None
        where = "" if position is None else f" as of read-model position {position}"
        return failure("not_found", f"{exc.message}{where}", position)
    except InvalidInput as exc:
        raise invalid_params(
            [(ARGUMENT_NAMES.get(e.field, e.field), e.message) for e in exc.errors]
        ) from None
    _note("ok", model.result_ids())
    return _structured(model, text(model))


def _searcher(c: Container) -> tuple[Any, str]:
    """The container's searcher, or None and why (a process without search configured)."""
    try:
        searcher = getattr(c, "searcher", None)
    except Exception as exc:  # search could not be opened in this process
        return None, f"search is unavailable in this process: {type(exc).__name__}: {exc}"
    return searcher, "search is not configured in this process"


# --- tools ----------------------------------------------------------------------------------


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
    c = _container(ctx)
    searcher, why = _searcher(c)
    if searcher is None:
        return failure("search_unavailable", why)
    request = SearchRequest(
        q=query,
        kinds=("tool",),
        limit=limit,
        category=category,
        tags=tuple(tags or ()),
        status=status,
        include_deprecated=include_deprecated or status == "deprecated",
    )

    def build(conn: Connection[Any], position: int) -> models.ToolSearch:
        result = searcher.search(conn, request)
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

    return answer(c, min_position, build, render.tool_search, snapshot=False)


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

    return answer(_container(ctx), min_position, build, render.tool)


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
        items = [shapes.tool_summary(i) for i in page["items"]]
        return models.ToolPage(items=items, next_cursor=page["next_cursor"], position=position)

    return answer(_container(ctx), min_position, build, render.tool_page)


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
            id=str(page["id"]),
            slug=current["tool"]["slug"],
            items=[shapes.version_entry(r) for r in page["items"]],
            next_after_version=page["next_after_version"],
            position=position,
        )

    return answer(_container(ctx), min_position, build, render.tool_history)


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
            id=str(diff["id"]),
            slug=current["tool"]["slug"],
            from_version=from_version,
            to_version=to_version,
            patch=diff["patch"],
            position=position,
        )

    return answer(_container(ctx), min_position, build, render.tool_diff)


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
    c = _container(ctx)
    searcher, why = _searcher(c)
    if searcher is None:
        return failure("search_unavailable", why)
    request = SearchRequest(
        q=query,
        kinds=("document",),
        limit=limit,
        linked_to=str(linked_to) if linked_to else None,
    )

    def build(conn: Connection[Any], position: int) -> models.DocumentSearch:
        result = searcher.search(conn, request)
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

    return answer(_container(ctx), min_position, build, render.document)


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
        items = [shapes.dataset_summary(i) for i in page["items"]]
        return models.DatasetPage(items=items, next_cursor=page["next_cursor"], position=position)

    return answer(_container(ctx), min_position, build, render.dataset_page)


def describe_dataset(
    ctx: Ctx, slug: Slug, min_position: MinPosition = None
) -> Annotated[CallToolResult, models.DatasetAnswer]:
    """One dataset: source, owner, columns (name, type, nullable, description) and profile."""

    def build(conn: Connection[Any], position: int) -> models.DatasetAnswer:
        item = queries.get_current(conn, "dataset", slug)
        return models.DatasetAnswer(dataset=shapes.dataset_record(item), position=position)

    return answer(_container(ctx), min_position, build, render.dataset)


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
            items=[shapes.change(r) for r in page["items"]],
            next_position=page["next_position"],
            more=page["more"],
            position=applied,
        )

    return answer(_container(ctx), None, build, render.changes)


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
    c = _container(ctx)
    with c.read_side.connection() as conn:
        stats = analytics.usage_stats(conn, c.redis, tool=slug, window=window)
    model = models.UsageStats(
        window=window, tool=slug, calls=stats["calls"], errors=stats["errors"],
        error_rate=stats["error_rate"], latency_ms=stats["latency_ms"],
        top_tools=stats["top_tools"], window_start=stats["from"], window_end=stats["to"],
        granularity=stats["granularity"], source=stats["source"],
    )  # fmt: skip
    _note("ok")
    return _structured(model, render.usage(model))


TOOLS: list[tuple[Callable[..., Any], str]] = [
    (search_tools, "Search tools"),
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
    return json.dumps({**item, "applied_position": position}, default=_json_value)


def _json_value(value: Any) -> str:
    # Times as RFC 3339, exactly as the REST API writes them; ids as their text.
    return rfc3339(value) if isinstance(value, datetime) else str(value)


def tool_resource(slug: str, ctx: Ctx) -> str:
    """The tool's current state (JSON)."""
    return _resource(_container(ctx), "tool", slug)


def dataset_resource(slug: str, ctx: Ctx) -> str:
    """The dataset's current state with its columns (JSON)."""
    return _resource(_container(ctx), "dataset", slug)


def document_resource(id: str, ctx: Ctx) -> str:
    """The document's current state (JSON)."""
    return _resource(_container(ctx), "document", id)


# --- the server -----------------------------------------------------------------------------


class LedgerServer(MCPServer[LedgerContext]):
    """MCPServer with the registry's argument errors as protocol errors naming the argument
    (the SDK reports them as tool results) and one usage event per tools/call."""

    def __init__(self, container: Container, **kwargs: Any) -> None:
        self.container = container
        super().__init__(**kwargs)

    def _check_arguments(self, name: str, arguments: dict[str, Any]) -> None:
        tool = self._tool_manager.get_tool(name)
        if tool is None:
            known = sorted(t.name for t in self._tool_manager.list_tools())
            raise MCPError(
                code=INVALID_PARAMS,
                message=f"unknown tool '{name}'; the tools are: {', '.join(known)}",
                data={"tool": name},
            )
        allowed = set(tool.parameters.get("properties", {}))
        unknown = sorted(set(arguments) - allowed)
        if unknown:
            raise invalid_params([(n, "not an argument of this tool") for n in unknown])
        try:
            tool.fn_metadata.validate_arguments(arguments)
        except ValidationError as exc:
            errors = [
                (".".join(str(p) for p in e["loc"]) or "arguments", e["msg"]) for e in exc.errors()
            ]
            raise invalid_params(errors) from None

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any],
        context: Context[LedgerContext, Any] | None = None,
    ) -> CallToolResult | InputRequiredResult:
        started = time.perf_counter()
        record = CallRecord()
        token = _CALL.set(record)
        try:
            self._check_arguments(name, arguments)
            result = await super().call_tool(name, arguments, context)
            if record.status is None:
                record.status = "error" if getattr(result, "is_error", False) else "ok"
            return result
        except MCPError as exc:
            record.status = "invalid" if exc.code == INVALID_PARAMS else "error"
            raise
        except BaseException:
            record.status = "error"
            raise
        finally:
            _CALL.reset(token)
            stored = self._emit(name, arguments, record, started, context)
            settings = self.container.settings
            if stored is not None and settings.usage_durable:
                # Answer once the call's usage is stored: counts stay exact even if this
                # process dies right after (bounded: usage never holds an answer for long).
                await anyio.to_thread.run_sync(wait_stored, stored, settings.usage_wait)

    def _emit(
        self,
        name: str,
        arguments: dict[str, Any],
        record: CallRecord,
        started: float,
        context: Context[LedgerContext, Any] | None,
    ) -> Future[None] | None:
        try:
            # Metrics by tool: a name the server does not know counts as "unknown".
            known = self._tool_manager.get_tool(name) is not None
            seconds = time.perf_counter() - started
            observe_mcp_call(name if known else "unknown", record.status or "error", seconds)
            client_id = client_name = request_id = None
            if context is not None:
                request_id = context.request_id
                headers = context.headers or {}
                client_id = headers.get("x-client-id") or headers.get("mcp-session-id")
                params = context.session.client_params
                if params is not None and params.client_info is not None:
                    client_name = params.client_info.name
            return self.container.usage.emit(
                UsageEvent(
                    tool=name,
                    surface="mcp",
                    arguments_digest=digest_arguments(arguments),
                    result_ids=record.result_ids,
                    latency_ms=round((time.perf_counter() - started) * 1000, 3),
                    status=record.status or "error",
                    client_id=client_id,
                    client_name=client_name,
                    request_id=request_id,
                )
            )
        except Exception:  # usage must never fail the call
            return None


def build_server(container: Container) -> LedgerServer:
    """The MCP server over `container`'s read models (the caller owns the container)."""

    @asynccontextmanager
    async def lifespan(_: MCPServer[LedgerContext]) -> AsyncIterator[LedgerContext]:
        yield LedgerContext(container)

    server = LedgerServer(
        container,
        name=SERVER_NAME,
        title="mcp-ledger registry",
        instructions=INSTRUCTIONS,
        version="0.1.0",
        lifespan=lifespan,
        log_level="WARNING",
    )
    for fn, title in TOOLS:
        server.add_tool(fn, title=title, annotations=READ_ONLY)
    server.resource("tool://{slug}", mime_type="application/json", title="Tool")(tool_resource)
    server.resource("dataset://{slug}", mime_type="application/json", title="Dataset")(
        dataset_resource
    )
    server.resource("document://{id}", mime_type="application/json", title="Document")(
        document_resource
    )
    return server
