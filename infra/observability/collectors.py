"""What the metrics endpoint computes at scrape time, in a registry of the process's own: the read
side's positions and lag, dead letters and vector backlog (from the database), the relay's
position, the usage emitter's counters; and the endpoint itself for processes that serve no HTTP
(the relay and the projector). Instruments updated as things happen are in `metrics`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import structlog
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

from infra.observability.metrics import CONTENT_TYPE

if TYPE_CHECKING:
    from infra.kafka.relay import Relay
    from infra.postgres.read_side import ReadSide
    from infra.usage.emitter import UsageEmitter

log = structlog.get_logger("metrics")


# --- computed at scrape time ----------------------------------------------------------------


def _gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


class ReadSideCollector(Collector):
    """The store head, the relay's recorded position, each projection's checkpoint and lag, dead
    letters and the vector backlog, from `ReadSide.status` (plus the applied position the reads
    report), on one connection per scrape."""

    def __init__(self, read_side: ReadSide) -> None:
        self.read_side = read_side

    def describe(self) -> list[Metric]:
        return []  # names are not checked against the registry: nothing runs at registration

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        up = _gauge("mcp_ledger_read_side_up", "1 if the read side's status could be read")
        try:
            with self.read_side.connection() as conn:
                status = self.read_side.status(conn)
                applied = self.read_side.applied_position(conn)
        except Exception as exc:
            log.warning("metrics.read_side_failed", error=f"{type(exc).__name__}: {exc}")
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from read_side_metrics(status, applied)
        took = _gauge(
            "mcp_ledger_read_side_scrape_seconds", "Time the read-side figures of this scrape took"
        )
        took.add_metric([], time.perf_counter() - started)
        yield took


def read_side_metrics(status: dict[str, Any], applied: int) -> Iterator[Metric]:
    head = int(status["head"])
    g = _gauge("mcp_ledger_store_head_position", "The event store's last position")
    g.add_metric([], head)
    yield g
    if status["relay"] is not None:
        yield from relay_metrics(head, int(status["relay"]))
    position = _gauge(
        "mcp_ledger_projection_position",
        "The last store position a projection applied, by projection and source (log, or a "
        "Kafka topic:partition)",
        ["projection", "source"],
    )
    lag = _gauge(
        "mcp_ledger_projection_lag",
        "Store head minus a log-fed projection's position (events behind)",
        ["projection", "source"],
    )
    letters = _gauge(
        "mcp_ledger_projection_dead_letters",
        "Events a projection dead-lettered (or parked behind one) and not yet resolved",
        ["projection"],
    )
    seen: set[str] = set()
    for row in status["projections"]:
        position.add_metric([row["name"], row["source"]], row["position"])
        if row["lag"] is not None:
            lag.add_metric([row["name"], row["source"]], row["lag"])
        if row["name"] not in seen:
            seen.add(row["name"])
            letters.add_metric([row["name"]], row["dead_letters"])
    yield from (position, lag, letters)
    reads = _gauge(
        "mcp_ledger_read_models_applied_position",
        "The store position every read model has applied (what reads report as "
        "X-Ledger-Position), whichever feed they follow",
    )
    reads.add_metric([], applied)
    behind = _gauge(
        "mcp_ledger_read_models_lag", "Store head minus the read models' applied position"
    )
    behind.add_metric([], max(head - applied, 0))
    yield from (reads, behind)
    vectors = status["vectors"]
    pending = _gauge(
        "mcp_ledger_vector_index_pending",
        "Changed items waiting in the vector outbox to be (re-)embedded and indexed",
    )
    pending.add_metric([], vectors["pending"])
    yield pending


def relay_metrics(head: int, relay_position: int) -> Iterator[Metric]:
    at = _gauge("mcp_ledger_relay_position", "The last store position the relay recorded")
    at.add_metric([], relay_position)
    lag = _gauge(
        "mcp_ledger_relay_lag", "Store head minus the relay's recorded position (events behind)"
    )
    lag.add_metric([], max(head - relay_position, 0))
    yield from (at, lag)


class RelayCollector(Collector):
    """The relay process's own view: active or standby, its position and lag."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        active = _gauge(
            "mcp_ledger_relay_active", "1 while this relay holds the lock and publishes"
        )
        is_active = self.relay.active.is_set()
        active.add_metric([], 1 if is_active else 0)
        yield active
        if not is_active:
            return  # a standby's position is not the stream's
        try:
            head = int(self.relay.app.recorder.max_notification_id() or 0)
        except Exception as exc:
            log.warning("metrics.relay_head_failed", error=f"{type(exc).__name__}: {exc}")
            return
        yield from relay_metrics(head, self.relay.position)


class UsageCollector(Collector):
    """The usage emitter's counters: events handed to the sink, dropped, still queued."""

    def __init__(self, usage: UsageEmitter) -> None:
        self.usage = usage

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        stats = self.usage.stats()
        yield CounterMetricFamily(
            "mcp_ledger_usage_events_emitted",
            "Usage events (MCP calls, API searches) handed to the usage sink",
            value=stats["emitted"],
        )
        yield CounterMetricFamily(
            "mcp_ledger_usage_events_dropped",
            "Usage events lost: the buffer was full or the sink failed",
            value=stats["dropped"],
        )
        queued = _gauge("mcp_ledger_usage_events_queued", "Usage events waiting for the sink")
        queued.add_metric([], stats["queued"])
        capacity = _gauge("mcp_ledger_usage_buffer_capacity", "Size of the usage event buffer")
        capacity.add_metric([], stats["capacity"])
        yield from (queued, capacity)


def process_registry(*collectors: Collector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)
    return registry


def render(registry: CollectorRegistry | None = None) -> bytes:
    """The text exposition: the default registry, then the process's own collectors."""
    text = generate_latest(REGISTRY)
    if registry is not None:
        text += generate_latest(registry)
    return text


# --- an HTTP endpoint for processes that serve none -----------------------------------------


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes and probes are not worth a log line each."""


def metrics_wsgi_app(registry: CollectorRegistry | None) -> Callable[..., Iterable[bytes]]:
    """/metrics (and /) the exposition; /health/live and /health/ready answer 200 while the
    process runs, for Kubernetes probes and compose health checks."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path in ("/health/live", "/health/ready"):
            start_response("200 OK", [("Content-Type", "application/json")])
            return [b'{"status":"ok"}']
        if path in ("/", "/metrics"):
            body = render(registry)
            start_response("200 OK", [("Content-Type", CONTENT_TYPE)])
            return [body]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: try /metrics or /health/live\n"]

    return app


def serve_metrics(
    port: int,
    registry: CollectorRegistry | None = None,
    host: str = "0.0.0.0",  # noqa: S104
) -> Callable[[], None]:
    """Serves `metrics_wsgi_app` on HOST:PORT from a daemon thread; returns its stop function."""
    server = make_server(host, port, metrics_wsgi_app(registry), ThreadingWSGIServer, _Quiet)
    thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
    thread.start()
    log.info("metrics.serving", host=host, port=server.server_port)

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return stop
