"""GET /metrics against the real app and database: HTTP requests by route template and status,
commands by type and outcome, events appended, MCP calls by tool, usage drops, embedding batch
time; the projection gauges equal `ReadSide.status` at the moment of the scrape; the relay's and
projector's own metrics endpoint."""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import anyio
import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from infra.usage.emitter import UsageEmitter, UsageEvent
from tests.conftest import free_port, tool_body

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def series(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for (n, labels) in samples if n == name]


@pytest.fixture(scope="module")
def metrics_container(settings, container):  # type: ignore[no-untyped-def]
    """The session's container with access control and rate limits off (this test is about
    metrics, not keys)."""
    update = {"auth": "off", "rate_limit": "off", "vectors": "off"}
    update = {k: v for k, v in update.items() if hasattr(settings, k)}
    open_settings = settings.model_copy(update=update)
    return dataclasses.replace(container, settings=open_settings)


@pytest.fixture(scope="module")
def api(metrics_container) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    from api.app import create_app

    with TestClient(create_app(metrics_container), raise_server_exceptions=False) as client:
        yield client


def scrape(api: TestClient) -> Samples:
    response = api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def test_http_requests_commands_and_events_are_counted_by_template(
    api: TestClient, metrics_container: Any
) -> None:
    slug = f"metrics-{uuid.uuid4().hex[:10]}"
    before = scrape(api)

    first = api.post("/api/v1/tools", json=tool_body(slug))
    assert first.status_code == 201, first.text
    assert api.post("/api/v1/tools", json=tool_body()).status_code == 201
    assert api.post("/api/v1/tools", json=tool_body(slug)).status_code == 409  # slug taken
    stale = api.patch(
        f"/api/v1/tools/{slug}", json={"description": "x"}, headers={"If-Match": '"7"'}
    )
    assert stale.status_code == 412
    metrics_container.read_side.follower.catch_up()
    assert api.get(f"/api/v1/tools/{slug}").status_code == 200
    assert api.get(f"/api/v1/tools/{first.json()['id']}").status_code == 200
    assert api.get("/api/v1/tools/no-such-tool-anywhere").status_code == 404
    assert api.get(f"/no/such/path/{slug}").status_code == 404
    too_large = b"x" * (metrics_container.settings.max_body_bytes + 1)
    assert api.post("/api/v1/tools", content=too_large).status_code == 413  # before routing

    after = scrape(api)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "mcp_ledger_http_requests_total"
    assert delta(requests, method="POST", route="/api/v1/tools", status="201") == 2
    assert delta(requests, method="POST", route="/api/v1/tools", status="409") == 1
    assert delta(requests, method="PATCH", route="/api/v1/tools/{ref}", status="412") == 1
    assert delta(requests, method="GET", route="/api/v1/tools/{ref}", status="200") == 2
    assert delta(requests, method="GET", route="/api/v1/tools/{ref}", status="404") == 1
    assert delta(requests, method="GET", route="<unmatched>", status="404") == 1
    assert delta(requests, method="POST", route="/api/v1/tools", status="413") == 1
    duration = "mcp_ledger_http_request_duration_seconds_count"
    assert delta(duration, method="GET", route="/api/v1/tools/{ref}") == 3
    # Route templates only: no slug, id or raw path ever becomes a label.
    routes = {labels["route"] for labels in series(after, requests)}
    assert not [r for r in routes if slug in r or first.json()["id"] in r], routes

    commands = "mcp_ledger_commands_total"
    assert delta(commands, command="register_tool", outcome="ok") == 2
    assert delta(commands, command="register_tool", outcome="slug_taken") == 1
    assert delta(commands, command="update_tool", outcome="version_conflict") == 1
    assert delta("mcp_ledger_command_duration_seconds_count", command="register_tool") == 3

    appended = "mcp_ledger_events_appended_total"
    assert delta(appended, type="ToolRegistered") == 2
    assert delta(appended, type="SlugClaimed") == 2


def test_projection_gauges_equal_the_read_side_status(
    api: TestClient, metrics_container: Any
) -> None:
    assert api.post("/api/v1/tools", json=tool_body()).status_code == 201  # lag >= 1
    # Another process's vector indexer may drain the outbox between the scrape and the status
    # read; compare snapshots until one pair is taken with nothing moving in between.
    for attempt in range(20):
        try:
            check_gauges_against_status(api, metrics_container)
            return
        except AssertionError:
            if attempt == 19:
                raise
            time.sleep(0.1)


def check_gauges_against_status(api: TestClient, metrics_container: Any) -> None:
    samples = scrape(api)
    side = metrics_container.read_side
    with side.connection() as conn:
        status = side.status(conn)
        applied = side.applied_position(conn)

    assert value(samples, "mcp_ledger_read_side_up") == 1
    assert value(samples, "mcp_ledger_store_head_position") == status["head"]
    assert status["projections"]
    for row in status["projections"]:
        labels = {"projection": row["name"], "source": row["source"]}
        assert value(samples, "mcp_ledger_projection_position", **labels) == row["position"]
        if row["lag"] is not None:
            assert value(samples, "mcp_ledger_projection_lag", **labels) == row["lag"]
        assert (
            value(samples, "mcp_ledger_projection_dead_letters", projection=row["name"])
            == row["dead_letters"]
        )
    assert any(row["lag"] for row in status["projections"]), "nothing behind: a vacuous check"
    assert value(samples, "mcp_ledger_read_models_applied_position") == applied
    assert value(samples, "mcp_ledger_read_models_lag") == status["head"] - applied
    assert value(samples, "mcp_ledger_vector_index_pending") == status["vectors"]["pending"]

    side.follower.catch_up()
    caught_up = scrape(api)
    assert value(caught_up, "mcp_ledger_read_models_lag") == 0
    assert value(caught_up, "mcp_ledger_projection_lag", projection="history", source="log") == 0


def test_mcp_calls_are_counted_by_tool_and_status(api: TestClient, metrics_container: Any) -> None:
    from mcp.client import Client
    from mcp.shared.exceptions import MCPError

    from mcp_adapter.server import build_server

    slug = f"metrics-mcp-{uuid.uuid4().hex[:8]}"
    assert api.post("/api/v1/tools", json=tool_body(slug)).status_code == 201
    metrics_container.read_side.follower.catch_up()
    server = build_server(metrics_container)
    before = scrape(api)

    async def main() -> None:
        async with Client(server) as client:
            assert not (await client.call_tool("get_tool", {"slug": slug})).is_error
            assert not (await client.call_tool("get_tool", {"slug": slug})).is_error
            assert (await client.call_tool("get_tool", {"slug": "no-such-tool"})).is_error
            with pytest.raises(MCPError):
                await client.call_tool(f"nope-{slug}", {})

    anyio.run(main)
    after = scrape(api)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    calls = "mcp_ledger_mcp_calls_total"
    assert delta(calls, tool="get_tool", status="ok") == 2
    assert delta(calls, tool="get_tool", status="not_found") == 1
    assert delta(calls, tool="unknown", status="invalid") == 1  # never the caller's name
    assert delta("mcp_ledger_mcp_call_duration_seconds_count", tool="get_tool") == 3
    assert not [s for s in series(after, calls) if slug in s["tool"]]


def test_usage_emitter_counters_are_exposed(metrics_container: Any) -> None:
    from api.app import create_app

    release = threading.Event()

    def slow_sink(batch: Sequence[UsageEvent]) -> None:
        release.wait(10)

    emitter = UsageEmitter(slow_sink, capacity=2, batch=1)
    event = UsageEvent("get_tool", "mcp", "sha256:x", [], 1.0, "ok")
    for _ in range(10):
        emitter.emit(event)
    app = create_app(dataclasses.replace(metrics_container, usage=emitter))
    with TestClient(app) as client:
        samples = parse(client.get("/metrics").text)
        stats = emitter.stats()
        assert stats["dropped"] >= 7
        assert value(samples, "mcp_ledger_usage_events_dropped_total") == stats["dropped"]
        assert value(samples, "mcp_ledger_usage_events_queued") == stats["queued"]
        assert value(samples, "mcp_ledger_usage_buffer_capacity") == 2
        release.set()
        emitter.close()
        samples = parse(client.get("/metrics").text)
        assert value(samples, "mcp_ledger_usage_events_emitted_total") == 10 - stats["dropped"]


def test_embedding_batches_are_timed(api: TestClient) -> None:
    from infra.search.embeddings import MiniLmOnnx

    model = MiniLmOnnx()
    before = scrape(api)
    model.embed(["weather in Paris", "currency rates", "a third text"])
    after = scrape(api)
    count = "mcp_ledger_embedding_batch_duration_seconds_count"
    total = "mcp_ledger_embedding_batch_duration_seconds_sum"
    texts = "mcp_ledger_embedded_texts_total"
    assert value(after, count, provider="minilm") - value(before, count, provider="minilm") == 1
    assert value(after, total, provider="minilm") > value(before, total, provider="minilm")
    assert value(after, texts, provider="minilm") - value(before, texts, provider="minilm") == 3


def test_relay_collector_reports_lag_only_while_active(container: Any, database_url: str) -> None:
    from infra.kafka.relay import Relay, RelayConfig
    from infra.observability.collectors import RelayCollector, process_registry, render
    from infra.settings import load_settings

    config = RelayConfig.from_settings(load_settings(kafka_bootstrap_servers="127.0.0.1:1"))
    relay = Relay(container.app, database_url, config)
    registry = process_registry(RelayCollector(relay))
    standby = parse(render(registry).decode())
    assert value(standby, "mcp_ledger_relay_active") == 0
    assert ("mcp_ledger_relay_lag", frozenset()) not in standby

    relay.active.set()
    relay.position = 1
    active = parse(render(registry).decode())
    head = container.store.head()
    assert value(active, "mcp_ledger_relay_active") == 1
    assert value(active, "mcp_ledger_relay_position") == 1
    assert value(active, "mcp_ledger_relay_lag") == head - 1


def test_metrics_server_answers_metrics_and_health(metrics_container: Any) -> None:
    from infra.observability.collectors import ReadSideCollector, process_registry, serve_metrics

    port = free_port()
    stop = serve_metrics(port, process_registry(ReadSideCollector(metrics_container.read_side)))
    try:
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/health/live").status_code == 200
        assert httpx.get(f"{base}/health/ready").status_code == 200
        assert httpx.get(f"{base}/nope").status_code == 404
        response = httpx.get(f"{base}/metrics")
        assert response.status_code == 200
        samples = parse(response.text)
        assert value(samples, "mcp_ledger_read_side_up") == 1
        assert "mcp_ledger_commands_total" in response.text  # the default registry too
    finally:
        stop()
