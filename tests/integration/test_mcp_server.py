"""The MCP server driven by the SDK's own client: over real Streamable HTTP (`mcp-ledger up`, a
live uvicorn serving the API and /mcp in one process) and over stdio (`mcp-ledger mcp
--transport stdio` as a subprocess). Writes go through the REST API; reads through MCP."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx
import jsonschema
import pytest

pytest.importorskip("mcp")

from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp.shared.exceptions import MCPError

from tests.conftest import ROOT, free_port, tool_body

pytestmark = pytest.mark.backends("server", "embedded")

T = TypeVar("T")
TOOLS = {
    "search_tools",
    "find_similar",
    "get_tool",
    "list_tools",
    "tool_history",
    "tool_diff",
    "search_documents",
    "get_document",
    "list_datasets",
    "describe_dataset",
    "usage_stats",
    "changes_since",
}
INVALID_PARAMS = -32602


class UpServer:
    """`mcp-ledger up` against the test database: API at /api/v1, MCP at /mcp."""

    def __init__(self, database_url: str, secret_key: str, data_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir / "up.log"
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "MCP_LEDGER_SECRET_KEY": secret_key,
            "MCP_LEDGER_LOG_LEVEL": "warning",
            "MCP_LEDGER_READ_FEED": "log",
            "MCP_LEDGER_READ_WAIT_SECONDS": "2",
            "MCP_LEDGER_AUTH": "off",  # keys on /mcp: tests/integration/test_access_control.py
            "MCP_LEDGER_RATE_LIMIT": "off",
        }
        args = ["up", "--port", str(self.port), "--data-dir", str(data_dir)]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cli.main", *args],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"up exited: {self.log.read_text()[-3000:]}")
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("up did not become ready in 60 s")

    @property
    def mcp_url(self) -> str:
        return f"{self.url}/mcp"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def up(database_url: str, secret_key: str, tmp_path_factory, container) -> Iterator[UpServer]:  # type: ignore[no-untyped-def]
    server = UpServer(database_url, secret_key, tmp_path_factory.mktemp("up"))
    yield server
    server.stop()


def run(url_or_params: Any, body: Callable[[Client], Awaitable[T]]) -> T:
    """One SDK client session against the server, running `body`."""

    async def main() -> T:
        async with Client(url_or_params, read_timeout_seconds=30) as client:
            return await body(client)

    return anyio.run(main)


def post(server: UpServer, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    response = httpx.post(f"{server.url}/api/v1{path}", json=body, timeout=30)
    assert response.status_code in (200, 201), response.text
    return response.json()  # type: ignore[no-any-return]


def patch(server: UpServer, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.patch(f"{server.url}/api/v1{path}", json=body, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def seed(server: UpServer) -> dict[str, Any]:
    """A tool with two versions, a dataset and a document linked to the tool."""
    slug = f"mcp-{uuid.uuid4().hex[:10]}"
    input_schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "City name"},
            "days": {"type": "integer"},
        },
        "required": ["city"],
    }
    created = post(server, "/tools", tool_body(slug, input_schema=input_schema, tags=[slug]))
    patch(server, f"/tools/{slug}", {"version": "1.1.0", "description": "Weather now and today"})
    activated = post(server, f"/tools/{slug}/activate")
    ds_slug = f"ds-{uuid.uuid4().hex[:10]}"
    post(
        server,
        "/datasets",
        {
            "slug": ds_slug,
            "name": "Sales orders",
            "description": "One row per order",
            "source": {"kind": "postgres_table", "uri": "postgresql://wh/sales?table=orders"},
            "columns": [
                {"name": "order_id", "type": "bigint", "nullable": False},
                {"name": "amount", "type": "numeric", "description": "EUR"},
            ],
            "tags": ["sales"],
            "owner": "data-platform",
        },
    )
    document = post(
        server,
        "/documents",
        {
            "title": "How weather lookups work",
            "content": "# Weather\nThe lookup asks the provider for the city's current weather.",
            "content_type": "text/markdown",
            "tags": ["weather"],
            "link": {"kind": "tool", "id": created["id"]},
        },
    )
    return {
        "slug": slug,
        "tool_id": created["id"],
        "dataset": ds_slug,
        "document": document["id"],
        "position": document["position"],
        "activated": activated,
    }


def check_schema(tool: Any, result: Any) -> dict[str, Any]:
    """The result is not an error, has structured content valid against the tool's declared
    output schema, and a markdown text beside it."""
    text = result.content[0].text if result.content else ""
    assert not result.is_error, text
    assert tool.output_schema is not None
    jsonschema.validate(result.structured_content, tool.output_schema)
    assert text.strip()
    assert isinstance(result.structured_content.get("position", 0), int)
    return result.structured_content  # type: ignore[no-any-return]


def call_every_tool(server: Any, data: dict[str, Any]) -> dict[str, Any]:
    calls: dict[str, dict[str, Any]] = {
        "get_tool": {"slug": data["slug"], "min_position": data["position"]},
        "list_tools": {"tag": data["slug"]},
        "tool_history": {"slug": data["slug"]},
        "tool_diff": {"slug": data["slug"], "from_version": 1, "to_version": 3},
        "get_document": {"id": data["document"]},
        "list_datasets": {},
        "describe_dataset": {"slug": data["dataset"]},
        # From just before this seed: other tests may have written many changes before it.
        "changes_since": {"position": max(data["position"] - 50, 0), "limit": 500},
        "usage_stats": {"window": "1h"},
        "search_tools": {"query": "weather for a city", "limit": 5},
        "search_documents": {"query": "weather provider", "limit": 5},
        "find_similar": {"slug": data["slug"], "limit": 5},
    }

    async def body(client: Client) -> dict[str, Any]:
        listed = {t.name: t for t in (await client.list_tools()).tools}
        assert set(listed) == TOOLS
        out: dict[str, Any] = {}
        for name, args in calls.items():
            result = await client.call_tool(name, args)
            searching = ("search_tools", "search_documents", "find_similar")
            unavailable = result.is_error and name in searching
            if unavailable:  # a process without search (or before indexing) says so clearly
                code = result.structured_content["error"]["code"]
                assert code in ("search_unavailable", "similar_unavailable"), code
                out[name] = None
                continue
            out[name] = check_schema(listed[name], result)
        return out

    return run(server, body)


def test_lists_every_tool_with_schemas_and_read_only_hint(up: UpServer) -> None:
    async def body(client: Client) -> Any:
        return (await client.list_tools()).tools

    tools = run(up.mcp_url, body)
    assert {t.name for t in tools} == TOOLS
    for tool in tools:
        assert tool.description
        assert tool.input_schema["type"] == "object"
        assert tool.output_schema is not None
        assert tool.output_schema["type"] == "object"
        jsonschema.Draft202012Validator.check_schema(tool.output_schema)
        assert tool.annotations is not None
        assert tool.annotations.read_only_hint


def test_every_tool_answers_within_its_output_schema_over_http(up: UpServer) -> None:
    data = seed(up)
    out = call_every_tool(up.mcp_url, data)
    tool = out["get_tool"]["tool"]
    assert tool["slug"] == data["slug"]
    assert tool["status"] == "active"
    assert tool["semver"] == "1.1.0"
    assert tool["version"] == 3
    assert out["get_tool"]["position"] >= data["position"]
    assert data["slug"] in [t["slug"] for t in out["list_tools"]["items"]]
    assert [v["version"] for v in out["tool_history"]["items"]] == [1, 2, 3]
    ops = {(op["op"], op["path"]) for op in out["tool_diff"]["patch"]}
    assert ("replace", "/version") in ops
    assert ("replace", "/status") in ops
    assert out["get_document"]["document"]["link"]["id"] == data["tool_id"]
    described = out["describe_dataset"]["dataset"]
    assert [c["name"] for c in described["columns"]] == ["order_id", "amount"]
    assert described["columns"][1]["description"] == "EUR"
    changes = out["changes_since"]
    positions = [c["event_position"] for c in changes["items"]]
    assert positions == sorted(positions)
    assert changes["next_position"] >= data["position"]
    assert data["slug"] in {c["ref"] for c in changes["items"]}
    if out["search_tools"] is not None:
        hits = {h["slug"]: h for h in out["search_tools"]["items"]}
        if data["slug"] in hits:
            inputs = {p["name"]: p for p in hits[data["slug"]]["inputs"]}
            assert inputs["city"]["required"]
            assert inputs["city"]["type"] == "string"


def test_register_then_deprecate_and_read_as_of_through_mcp(up: UpServer) -> None:
    slug = f"e2e-{uuid.uuid4().hex[:10]}"
    registered = post(up, "/tools", tool_body(slug, description="Tide tables for a harbour"))
    before_update = datetime.now(UTC)
    time.sleep(0.05)
    patch(up, f"/tools/{slug}", {"version": "2.0.0", "name": "Tides"})
    post(up, f"/tools/{slug}/activate")

    async def found(client: Client) -> Any:
        current = await client.call_tool(
            "get_tool", {"slug": slug, "min_position": registered["position"] + 2}
        )
        listed = await client.call_tool(
            "list_tools", {"category": "weather", "limit": 100, "min_position": 0}
        )
        return current, listed

    current, listed = run(up.mcp_url, found)
    assert not current.is_error, current.content
    assert current.structured_content["tool"]["name"] == "Tides"
    assert slug in [t["slug"] for t in listed.structured_content["items"]]

    deprecated = post(up, f"/tools/{slug}/deprecate")

    async def after(client: Client) -> Any:
        wait = {"min_position": deprecated["position"]}
        default = await client.call_tool(
            "list_tools", {"limit": 100, "category": "weather", **wait}
        )
        asked = await client.call_tool(
            "list_tools", {"limit": 100, "category": "weather", "include_deprecated": True}
        )
        only = await client.call_tool("list_tools", {"status": "deprecated", "limit": 100})
        old = await client.call_tool("get_tool", {"slug": slug, "version": 1})
        then = await client.call_tool(
            "get_tool", {"slug": slug, "as_of": before_update.isoformat()}
        )
        search = await client.call_tool("search_tools", {"query": "tide tables harbour", **wait})
        return default, asked, only, old, then, search

    default, asked, only, old, then, search = run(up.mcp_url, after)
    assert slug not in [t["slug"] for t in default.structured_content["items"]]
    assert slug in [t["slug"] for t in asked.structured_content["items"]]
    assert slug in [t["slug"] for t in only.structured_content["items"]]
    for historic in (old, then):
        assert not historic.is_error, historic.content
        tool = historic.structured_content["tool"]
        assert historic.structured_content["historic"] is True
        assert (tool["version"], tool["name"], tool["semver"]) == (1, "Weather lookup", "1.0.0")
    if not search.is_error:  # search configured in this process
        assert slug not in [h["slug"] for h in search.structured_content["items"]]


def test_unknown_slug_is_a_clear_not_found_result_with_the_position(up: UpServer) -> None:
    async def body(client: Client) -> Any:
        return [
            await client.call_tool("get_tool", {"slug": "no-such-tool"}),
            await client.call_tool("describe_dataset", {"slug": "no-such-dataset"}),
            await client.call_tool("get_document", {"id": str(uuid.uuid4())}),
            await client.call_tool("tool_history", {"slug": "no-such-tool"}),
        ]

    for result in run(up.mcp_url, body):
        assert result.is_error
        error = result.structured_content["error"]
        assert error["code"] == "not_found"
        assert "no-such" in error["message"] or "no document" in error["message"]
        assert isinstance(error["position"], int)
        assert "not_found" in result.content[0].text


def test_a_read_model_behind_the_asked_position_says_so(up: UpServer) -> None:
    async def body(client: Client) -> Any:
        return await client.call_tool("list_tools", {"min_position": 10**12})

    result = run(up.mcp_url, body)
    assert result.is_error
    error = result.structured_content["error"]
    assert error["code"] == "projection_behind"
    assert str(10**12) in error["message"]
    assert error["position"] < 10**12


def test_unknown_versions_in_a_diff_are_not_found(up: UpServer) -> None:
    data = seed(up)

    async def body(client: Client) -> Any:
        return await client.call_tool(
            "tool_diff", {"slug": data["slug"], "from_version": 1, "to_version": 99}
        )

    result = run(up.mcp_url, body)
    assert result.is_error
    assert "no version 99" in result.content[0].text


def protocol_error(server: Any, name: str, arguments: dict[str, Any]) -> Any:
    async def body(client: Client) -> Any:
        with pytest.raises(MCPError) as caught:
            await client.call_tool(name, arguments)
        return caught.value

    return run(server, body)


@pytest.mark.parametrize(
    ("name", "arguments", "named"),
    [
        ("get_tool", {"slug": 42}, "slug"),
        ("get_tool", {}, "slug"),
        ("list_tools", {"limit": "ten"}, "limit"),
        ("list_tools", {"limit": 0}, "limit"),
        ("list_tools", {"status": "gone"}, "status"),
        ("get_tool", {"slug": "x", "as_of": "yesterday"}, "as_of"),
        ("get_tool", {"slug": "x", "as_of": "2026-01-01T00:00:00"}, "as_of"),
        ("get_document", {"id": "not-a-uuid"}, "id"),
        ("tool_diff", {"slug": "x", "from_version": 3, "to_version": 1}, "from_version"),
        ("list_tools", {"cursor": "garbage"}, "cursor"),
        ("list_tools", {"colour": "blue"}, "colour"),
        ("usage_stats", {"window": "1y"}, "window"),
        ("search_tools", {"query": "x" * 200_000}, "query"),
        ("get_tool", {"slug": "a\x00b"}, "slug"),
    ],
)
def test_bad_arguments_are_protocol_errors_naming_the_argument(
    up: UpServer, name: str, arguments: dict[str, Any], named: str
) -> None:
    error = protocol_error(up.mcp_url, name, arguments)
    assert error.code == INVALID_PARAMS
    assert f"'{named}'" in error.message
    assert named in [a["name"] for a in error.error.data["arguments"]]


def test_an_unknown_tool_is_a_protocol_error_and_the_server_keeps_serving(up: UpServer) -> None:
    error = protocol_error(up.mcp_url, "drop_everything", {})
    assert error.code == INVALID_PARAMS
    assert "drop_everything" in error.message
    assert up.alive()


def test_malformed_and_oversized_requests_are_refused_and_the_server_keeps_serving(
    up: UpServer,
) -> None:
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
    }
    bodies = [
        b"{not json",
        b"[]",
        b'{"jsonrpc": "2.0", "id": 1}',
        b'{"jsonrpc": "1.0", "id": 1, "method": "tools/list"}',
        b'"just a string"',
        b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": "nope"}',
    ]
    for body in bodies:
        response = httpx.post(up.mcp_url, content=body, headers=headers, timeout=30)
        assert 400 <= response.status_code < 500 or "error" in response.text, (body, response)
        assert response.status_code < 500, (body, response.status_code, response.text)
    huge = b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list", "pad": "' + b"x" * 6_000_000
    response = httpx.post(up.mcp_url, content=huge + b'"}', headers=headers, timeout=60)
    assert response.status_code == 413
    assert httpx.post(up.mcp_url, content=b"", headers=headers, timeout=30).status_code < 500
    assert up.alive()

    async def body(client: Client) -> Any:
        return await client.call_tool("changes_since", {"position": 0, "limit": 1})

    assert not run(up.mcp_url, body).is_error


def test_resources_read_the_current_state(up: UpServer) -> None:
    data = seed(up)

    async def body(client: Client) -> Any:
        templates = (await client.list_resource_templates()).resource_templates
        read = [
            await client.read_resource(f"tool://{data['slug']}"),
            await client.read_resource(f"dataset://{data['dataset']}"),
            await client.read_resource(f"document://{data['document']}"),
        ]
        with pytest.raises(MCPError) as missing:
            await client.read_resource("tool://no-such-tool")
        return templates, read, missing.value

    import json

    templates, read, missing = run(up.mcp_url, body)
    assert {t.uri_template for t in templates} == {
        "tool://{slug}",
        "dataset://{slug}",
        "document://{id}",
    }
    tool, dataset, document = (json.loads(r.contents[0].text) for r in read)
    assert tool["tool"]["slug"] == data["slug"]
    assert tool["applied_position"] >= 1
    assert dataset["dataset"]["slug"] == data["dataset"]
    assert len(dataset["dataset"]["columns"]) == 2
    assert document["id"] == data["document"]
    assert "no-such-tool" in missing.message
    # Times read as the REST API writes them (RFC 3339), identical to its answer.
    rest = httpx.get(f"{up.url}/api/v1/tools/{data['slug']}", timeout=30).json()
    for field in ("created_at", "updated_at"):
        assert tool[field] == rest[field]
        assert datetime.fromisoformat(tool[field]).tzinfo is not None
        assert "T" in tool[field]


def test_stdio_transport_serves_the_same_tools(
    up: UpServer, database_url: str, secret_key: str
) -> None:
    data = seed(up)
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "cli.main", "mcp", "--transport", "stdio"],
        env={**up.env, "DATABASE_URL": database_url, "MCP_LEDGER_SECRET_KEY": secret_key},
        cwd=str(ROOT),
    )
    out = call_every_tool(params, data)
    assert out["get_tool"]["tool"]["slug"] == data["slug"]

    def bad(client: Client) -> Awaitable[Any]:
        async def go() -> Any:
            with pytest.raises(MCPError) as caught:
                await client.call_tool("list_tools", {"limit": "many"})
            ok = await client.call_tool("get_tool", {"slug": data["slug"]})
            return caught.value, ok

        return go()

    error, ok = run(params, bad)
    assert error.code == INVALID_PARAMS
    assert "'limit'" in error.message
    assert not ok.is_error


def test_search_finds_a_registered_tool_with_its_input_summary(up: UpServer) -> None:
    data = seed(up)

    async def body(client: Client) -> Any:
        tools = await client.call_tool(
            "search_tools",
            {
                "query": data["slug"],
                "limit": 5,
                "tags": [data["slug"]],
                "min_position": data["position"],
            },
        )
        docs = await client.call_tool(
            "search_documents", {"query": "weather provider", "linked_to": data["tool_id"]}
        )
        return tools, docs

    tools, docs = run(up.mcp_url, body)
    if tools.is_error:
        pytest.skip(f"no search in this process: {tools.content[0].text}")
    hits = {h["slug"]: h for h in tools.structured_content["items"]}
    assert data["slug"] in hits, tools.content[0].text
    inputs = {p["name"]: p for p in hits[data["slug"]]["inputs"]}
    assert inputs["city"] == {
        "name": "city",
        "type": "string",
        "required": True,
        "description": "City name",
    }
    assert inputs["days"]["required"] is False
    assert inputs["days"]["type"] == "integer"
    assert hits[data["slug"]]["semver"] == "1.1.0"
    assert hits[data["slug"]]["version"] == 3
    assert not docs.is_error
    assert [h["id"] for h in docs.structured_content["items"]] == [data["document"]]
