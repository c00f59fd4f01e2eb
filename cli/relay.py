"""`mcp-ledger relay`: stream the event store into Kafka (see infra/kafka/relay.py)."""

from __future__ import annotations

import logging
import signal
from typing import Annotated, Any

import structlog
import typer

from cli import common
from infra.settings import Settings, SettingsError

log = structlog.get_logger("cli")


def _settings() -> Settings:
    settings = common.settings()
    if not settings.kafka_bootstrap_servers:
        typer.echo(
            "KAFKA_BOOTSTRAP_SERVERS: missing; the relay needs a Kafka broker, "
            "expected HOST:PORT[,HOST:PORT...] (e.g. 127.0.0.1:9092)",
            err=True,
        )
        raise typer.Exit(2)
    logging.getLogger("kafka").setLevel(logging.WARNING)  # chatty at INFO
    return settings


METRICS_PORT_HELP = (
    "Serve /metrics and /health/live on this port (default: MCP_LEDGER_METRICS_PORT; unset: none)"
)


def relay(
    metrics_port: Annotated[int | None, typer.Option(help=METRICS_PORT_HELP)] = None,
) -> None:
    """Publish every stored event to Kafka (at least once; one active relay, others stand by).
    Needs KAFKA_BOOTSTRAP_SERVERS; SIGTERM/Ctrl-C finish the current batch and exit 0."""
    from kafka.errors import KafkaError

    from infra.kafka.relay import build_relay
    from infra.kafka.topics import TopicError
    from infra.observability.collectors import RelayCollector, process_registry, serve_metrics

    settings = _settings()
    try:
        relay_, close = build_relay(settings)
    except SettingsError as exc:  # e.g. a schema this release cannot run against
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    port = metrics_port or settings.metrics_port
    stop_metrics = (
        serve_metrics(port, process_registry(RelayCollector(relay_))) if port else lambda: None
    )

    def _stop(signum: int, _: Any) -> None:
        log.info("relay.stopping", signal=signal.Signals(signum).name)
        relay_.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        relay_.run()
    except (KafkaError, TopicError) as exc:
        log.error("relay.kafka_failed", error=f"{type(exc).__name__}: {exc}")
        raise typer.Exit(1) from None
    finally:
        stop_metrics()
        close()
