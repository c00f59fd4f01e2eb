"""Prometheus metrics (reference: docs/operations.md, "Metrics and alerts").

Counters and histograms live in prometheus_client's default registry, so metrics other modules
define there (rate limits, ...) are exposed too. What is read from the database or from an
object's own counters (projection lag, dead letters, relay lag, the vector backlog, dropped usage
events) is computed at scrape time by collectors registered in a registry of the process's own
(`process_registry`), so every scrape is current and nothing is global state of a container.
`render` writes both; the API serves it at /metrics, and the relay and the projector, which
serve no HTTP, start `serve_metrics` on MCP_LEDGER_METRICS_PORT (or --metrics-port)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import structlog
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    Counter,
    Histogram,
)

from commands.observe import add_observer

if TYPE_CHECKING:
    pass

log = structlog.get_logger("metrics")

P = ParamSpec("P")
R = TypeVar("R")

CONTENT_TYPE = CONTENT_TYPE_LATEST

# --- counters and histograms (default registry) -----------------------------------------------

HTTP_REQUESTS = Counter(
    "mcp_ledger_http_requests",
    "HTTP requests answered, by method, route template and status code",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "mcp_ledger_http_request_duration_seconds",
    "Time from the request's arrival to the end of its response, by method and route template",
    ["method", "route"],
)
COMMANDS = Counter(
    "mcp_ledger_commands",
    "Commands handled, by command and outcome (ok, or the refusal's code, or error)",
    ["command", "outcome"],
)
COMMAND_DURATION = Histogram(
    "mcp_ledger_command_duration_seconds",
    "Time a command handler took (load, decide, append), by command",
    ["command"],
)
EVENTS_APPENDED = Counter(
    "mcp_ledger_events_appended",
    "Events appended to the event store by this process, by event type",
    ["type"],
)
RELAY_PUBLISHED = Counter(
    "mcp_ledger_relay_published_events",
    "Events the relay published to Kafka and recorded its position after (acks received)",
)
RELAY_DEAD_LETTERS = Counter(
    "mcp_ledger_relay_dead_letters",
    "Events the relay could not encode or publish and sent to the dead-letter topic",
)
RELAY_BATCH_DURATION = Histogram(
    "mcp_ledger_relay_batch_duration_seconds",
    "Time the relay took to publish one batch, wait for its acks and record its position",
)
MCP_CALLS = Counter(
    "mcp_ledger_mcp_calls",
    "MCP tools/call requests, by tool and status (ok, error, not_found, invalid)",
    ["tool", "status"],
)
MCP_DURATION = Histogram(
    "mcp_ledger_mcp_call_duration_seconds",
    "Time an MCP tool call took, by tool",
    ["tool"],
)
EMBEDDING_DURATION = Histogram(
    "mcp_ledger_embedding_batch_duration_seconds",
    "Time one call of the embedding model took (a batch of texts), by provider",
    ["provider"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
EMBEDDED_TEXTS = Counter(
    "mcp_ledger_embedded_texts",
    "Texts embedded, by provider",
    ["provider"],
)

UNMATCHED_ROUTE = "<unmatched>"  # a path no route answers (404): one label, not the raw path


def observe_command(command: str, outcome: str, seconds: float) -> None:
    COMMANDS.labels(command, outcome).inc()
    COMMAND_DURATION.labels(command).observe(seconds)


add_observer(observe_command)  # every handler decorated with commands.observe.observed


def count_appended(events: Iterable[object]) -> None:
    for event in events:
        EVENTS_APPENDED.labels(type(event).__name__).inc()


def observe_mcp_call(tool: str, status: str, seconds: float) -> None:
    MCP_CALLS.labels(tool, status).inc()
    MCP_DURATION.labels(tool).observe(seconds)


def observe_relay_batch(published: int, seconds: float) -> None:
    RELAY_PUBLISHED.inc(published)
    RELAY_BATCH_DURATION.observe(seconds)


def timed_embedding(provider: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorates an embedder's `embed(self, texts)`: its time and the number of texts."""

    def decorate(embed: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(embed)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            started = time.perf_counter()
            try:
                return embed(*args, **kwargs)
            finally:
                EMBEDDING_DURATION.labels(provider).observe(time.perf_counter() - started)
                texts = args[1] if len(args) > 1 else kwargs.get("texts", ())
                EMBEDDED_TEXTS.labels(provider).inc(len(texts))  # type: ignore[arg-type]

        return run

    return decorate
