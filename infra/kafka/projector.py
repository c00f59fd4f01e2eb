"""Wires the Kafka projector: the relay's topics (same settings, same prefix), the read side's
runner and connections, the CloudEvents decoder, and a Faust worker to run it all."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from infra.container import Container
from infra.kafka.cloudevents import from_message
from infra.kafka.relay import RelayConfig, make_admin
from infra.kafka.topics import KIND_TOPICS, ensure_topics
from infra.settings import Settings
from infra.usage.sinks import add_analytics_agent, ensure_usage_topic_for
from projections.faust_app import FaustConfig, build_app
from projections.runner import DeadLetterHook, Runner


def faust_config(settings: Settings, **overrides: Any) -> FaustConfig:
    spec = RelayConfig.from_settings(settings).topics
    config = FaustConfig(
        app_id=f"{spec.prefix}-projector",
        bootstrap_servers=settings.kafka_bootstrap_servers or "",
        topics=[name for kind in KIND_TOPICS if (name := spec.for_kind(kind))],
        dead_letter_topic=spec.dead_letter,
        datadir=settings.data_dir / "projector",
        session_timeout=settings.projector_session_timeout,
    )
    return replace(config, **overrides)


def ensure_relay_topics(settings: Settings) -> None:
    """Creates the topics if the relay has not yet, so the consumer subscribes at once."""
    config = RelayConfig.from_settings(settings)
    admin = make_admin(config)
    try:
        ensure_topics(admin, config.topics)
    finally:
        admin.close()


def build_projector(settings: Settings, container: Container, **overrides: Any) -> Any:
    """The Faust app; the runner is the read side's projections with a dead-letter hook."""
    side = container.read_side

    def make_runner(hook: DeadLetterHook) -> Runner:
        return Runner(side.runner.projections, side.events_between, hook)

    config = faust_config(settings, **overrides)
    config.datadir.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    app = build_app(config, make_runner, side.connection, from_message)
    add_analytics_agent(app, settings, container)  # usage analytics on <prefix>.usage.v1
    return app


def run_projector(settings: Settings, container: Container) -> None:
    """Runs the Faust worker until SIGTERM/SIGINT: the batch in hand is applied, acked and
    committed before it exits."""
    import faust

    if settings.log_level != "debug":  # chatty at INFO
        for name in ("aiokafka", "faust", "mode", "kafka"):
            logging.getLogger(name).setLevel(logging.WARNING)
    ensure_relay_topics(settings)
    ensure_usage_topic_for(settings)
    app = build_projector(settings, container)
    worker = faust.Worker(
        app,
        quiet=True,
        loglevel=settings.log_level,
        override_logging=False,  # keep our structlog JSON logs
        redirect_stdouts=False,
    )
    worker.spinner = None  # it writes terminal escapes to stdout even when quiet
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
