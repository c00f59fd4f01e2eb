"""The MCP server over the read models (official `mcp` SDK, `MCPServer`): the tools and resources
of `mcp_adapter.tools`, argument errors as protocol errors naming the argument, and one usage
event per tools/call (stored before the answer goes out)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from concurrent.futures import Future
from contextlib import asynccontextmanager
from typing import Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    CallToolResult,
    InputRequiredResult,
)
from pydantic import ValidationError

from infra.container import Container
from infra.observability.metrics import observe_mcp_call
from infra.usage.emitter import UsageEvent, digest_arguments, wait_stored
from mcp_adapter.answers import CURRENT_CALL, CallRecord, LedgerContext, invalid_params
from mcp_adapter.arguments import READ_ONLY
from mcp_adapter.tools import TOOLS, dataset_resource, document_resource, tool_resource

SERVER_NAME = "mcp-ledger"
INSTRUCTIONS = """The registry of MCP tools, datasets and documents, read from its read models.
Find tools with search_tools (or list_tools), read one with get_tool (also as of a time or a
registry version), follow changes with tool_history, tool_diff and changes_since. Every answer
reports `position`: the event-store position the read models had applied when it was read. Pass
`min_position` (e.g. the position a write returned) to wait, bounded, until they reach it."""


class LedgerServer(MCPServer[LedgerContext]):
    """MCPServer with the registry's argument errors as protocol errors naming the argument
    (the SDK reports them as tool results) and one usage event per tools/call."""

    def __init__(self, container: Container, **kwargs: Any) -> None:
        self.container = container
        super().__init__(**kwargs)

    def _registered(self, name: str) -> Any:
        # The SDK's tool manager is private, but it is the only place that holds a tool's
        # argument model (fn_metadata) for checking arguments before the call, so that bad ones
        # become a protocol error naming the argument; this is the one place it is reached.
        return self._tool_manager.get_tool(name)

    def _tool_names(self) -> list[str]:
        return sorted(t.name for t in self._tool_manager.list_tools())

    def _check_arguments(self, name: str, arguments: dict[str, Any]) -> None:
        tool = self._registered(name)
        if tool is None:
            known = self._tool_names()
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
        token = CURRENT_CALL.set(record)
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
            CURRENT_CALL.reset(token)
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
            known = self._registered(name) is not None
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
