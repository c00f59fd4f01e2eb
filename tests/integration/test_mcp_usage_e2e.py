"""Usage analytics end to end, as an agent produces them: N real MCP calls through the SDK's
client against `mcp-ledger up` (usage events go through the in-process analytics projection
into Postgres) are reported as N by the `usage_stats` tool, and still N, not more and not
fewer, after the server restarts."""

from __future__ import annotations

import time
from typing import Any

import jsonschema
import pytest

pytest.importorskip("mcp")

from mcp.client import Client

from tests.conftest import tool_body
from tests.integration.test_mcp_server import UpServer, post, run

N_FOUND, N_MISSING = 7, 3


def stats(server: UpServer) -> dict[str, Any]:
    async def body(client: Client) -> dict[str, Any]:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        result = await client.call_tool("usage_stats", {"slug": "get_tool", "window": "1h"})
        assert not result.is_error, result.content
        jsonschema.validate(result.structured_content, tools["usage_stats"].output_schema)
        return result.structured_content

    return run(server.mcp_url, body)


def get_tools(server: UpServer, slug: str) -> None:
    async def body(client: Client) -> None:
        for _ in range(N_FOUND):
            assert not (await client.call_tool("get_tool", {"slug": slug})).is_error
        for i in range(N_MISSING):
            assert (await client.call_tool("get_tool", {"slug": f"no-such-{i}"})).is_error

    run(server.mcp_url, body)


def wait_for_calls(server: UpServer, calls: int) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        now = stats(server)
        if now["calls"] >= calls or time.monotonic() > deadline:
            return now
        time.sleep(0.2)


def test_n_mcp_calls_are_counted_once_across_a_restart(
    database_url, secret_key, tmp_path, container, monkeypatch
) -> None:
    monkeypatch.setenv("MCP_LEDGER_VECTORS", "off")  # the session app keeps this DB's index
    server = UpServer(database_url, secret_key, tmp_path)
    try:
        body = tool_body()
        post(server, "/tools", body)
        before = stats(server)
        get_tools(server, body["slug"])
        after = wait_for_calls(server, before["calls"] + N_FOUND + N_MISSING)
        assert after["calls"] - before["calls"] == N_FOUND + N_MISSING
        assert after["errors"] - before["errors"] == N_MISSING
        assert after["latency_ms"]["p50"] is not None
        assert after["latency_ms"]["p50"] <= after["latency_ms"]["p95"]
        assert any(t["tool"] == "get_tool" for t in after["top_tools"])
    finally:
        server.stop()
    again = UpServer(database_url, secret_key, tmp_path)
    try:
        restarted = stats(again)
        assert restarted["calls"] == after["calls"]
        assert restarted["errors"] == after["errors"]
    finally:
        again.stop()
