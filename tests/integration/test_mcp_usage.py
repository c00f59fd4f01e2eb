"""Every MCP tool call emits exactly one usage event: tool, argument digest, result ids with
versions, latency, status (ok, not_found, invalid), client. The server runs in-process here so
the events can be captured at the container's emitter."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from typing import Any

import anyio
import pytest

pytest.importorskip("mcp")

from mcp.client import Client
from mcp.shared.exceptions import MCPError
from mcp_types import Implementation

from commands import tools as handlers
from commands.context import CommandContext
from commands.inputs import RegisterTool
from infra.usage.emitter import UsageEmitter, UsageEvent, digest_arguments
from mcp_adapter.server import build_server
from tests.conftest import tool_body


def test_one_usage_event_per_call_with_status_and_result_versions(container) -> None:  # type: ignore[no-untyped-def]
    slug = f"usage-{uuid.uuid4().hex[:10]}"
    ctx = CommandContext(actor="test", correlation_id="usage-test")
    written = handlers.register_tool(container.deps, RegisterTool(**tool_body(slug)).given(), ctx)
    container.read_side.follower.catch_up()

    events: list[UsageEvent] = []

    def sink(batch: Sequence[UsageEvent]) -> None:
        events.extend(batch)

    emitter = UsageEmitter(sink)
    server = build_server(dataclasses.replace(container, usage=emitter))

    async def main() -> None:
        info = Implementation(name="usage-test-agent", version="1.0")
        async with Client(server, client_info=info) as client:
            assert not (await client.call_tool("get_tool", {"slug": slug})).is_error
            assert (await client.call_tool("get_tool", {"slug": "no-such-tool"})).is_error
            for name, args in (("list_tools", {"limit": "x"}), ("nope", {})):
                with pytest.raises(MCPError):
                    await client.call_tool(name, args)
            assert not (await client.call_tool("get_tool", {"slug": slug})).is_error

    anyio.run(main)
    emitter.close()
    assert [(e.tool, e.status) for e in events] == [
        ("get_tool", "ok"),
        ("get_tool", "not_found"),
        ("list_tools", "invalid"),
        ("nope", "invalid"),
        ("get_tool", "ok"),
    ]
    assert all(e.surface == "mcp" and e.latency_ms >= 0 for e in events)
    expected_ids: list[dict[str, Any]] = [
        {"kind": "tool", "id": str(written.id), "version": written.version}
    ]
    assert events[0].result_ids == expected_ids
    assert events[1].result_ids == []
    assert events[2].result_ids == []
    assert events[0].arguments_digest == events[4].arguments_digest
    assert events[0].arguments_digest == digest_arguments({"slug": slug})
    assert events[0].arguments_digest != events[1].arguments_digest
    assert {e.client_name for e in events} == {"usage-test-agent"}
    assert len({e.id for e in events}) == 5
