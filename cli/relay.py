"""`mcp-ledger relay`: stream the event store into Kafka (see infra/relay.py)."""

from __future__ import annotations

import logging
import signal
from typing import Any

import structlog
import typer

from infra.logging import configure_logging
from infra.settings import Settings, SettingsError, load_settings

log = structlog.get_logger("cli")


def _settings() -> Settings:
    try:
        settings = load_settings()
    except SettingsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    if not settings.kafka_bootstrap_servers:
        typer.echo(
            "KAFKA_BOOTSTRAP_SERVERS: missing; the relay needs a Kafka broker, "
            "expected HOST:PORT[,HOST:PORT...] (e.g. 127.0.0.1:9092)",
            err=True,
        )
        raise typer.Exit(2)
    configure_logging(settings.log_level, settings.log_format)
    logging.getLogger("kafka").setLevel(logging.WARNING)  # chatty at INFO
    return settings


def relay() -> None:
    """Publish every stored event to Kafka (at least once; one active relay, others stand by).
    Needs KAFKA_BOOTSTRAP_SERVERS; SIGTERM/Ctrl-C finish the current batch and exit 0."""
    from kafka.errors import KafkaError

    from infra.kafka_topics import TopicError
    from infra.relay import build_relay

    settings = _settings()
    relay_, close = build_relay(settings)

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
        close()
