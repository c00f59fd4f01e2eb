"""How a tool answers: in one read-model snapshot with the applied position, as structured
content plus markdown, or as a tool-level failure; and what each call returned, for its usage
event."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

from mcp.server.mcpserver import Context
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    CallToolResult,
    TextContent,
)
from psycopg import Connection
from pydantic import BaseModel

from domain.errors import InvalidInput, NotFound
from infra.container import Container
from infra.postgres.reads import NotReached
from mcp_adapter import models, render

M = TypeVar("M", bound=models.Answer)


@dataclass
class LedgerContext:
    """What the server's lifespan hands every request: the composition root."""

    container: Container


Ctx = Context[LedgerContext, Any]


def container_of(ctx: Ctx) -> Container:
    return ctx.request_context.lifespan_context.container


# --- one call: what it returned, for its usage event ----------------------------------------


@dataclass
class CallRecord:
    result_ids: list[dict[str, Any]] = field(default_factory=list)
    status: str | None = None


# Sync handlers run on worker threads in a copy of this context: they mutate the record object.
CURRENT_CALL: ContextVar[CallRecord | None] = ContextVar("mcp_call", default=None)


def note(status: str, result_ids: list[dict[str, Any]] | None = None) -> None:
    record = CURRENT_CALL.get()
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


def structured(model: BaseModel, text: str) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content=model.model_dump(mode="json", by_alias=True),
    )


def failure(code: str, message: str, position: int | None = None) -> CallToolResult:
    """A tool-level error (isError): not found, read model behind, search unavailable."""
    info = models.ErrorInfo(code=code, message=message, position=position)
    note("not_found" if code == "not_found" else "error")
    return CallToolResult(
        content=[TextContent(type="text", text=render.error(info))],
        structured_content={"error": info.model_dump(mode="json")},
        is_error=True,
    )


class Unanswerable(Exception):
    """A query that cannot be answered now, for a reason the caller can act on (a tool-level
    failure with `code`, like not found)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


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
    except Unanswerable as exc:
        return failure(exc.code, str(exc), seen[0] if seen else None)
    except InvalidInput as exc:
        raise invalid_params(
            [(ARGUMENT_NAMES.get(e.field, e.field), e.message) for e in exc.errors]
        ) from None
    note("ok", model.result_ids())
    return structured(model, text(model))


def searcher_of(c: Container) -> tuple[Any, str]:
    """The container's searcher, or None and why (a process without search configured)."""
    try:
        searcher = getattr(c, "searcher", None)
    except Exception as exc:  # search could not be opened in this process
        return None, f"search is unavailable in this process: {type(exc).__name__}: {exc}"
    return searcher, "search is not configured in this process"
