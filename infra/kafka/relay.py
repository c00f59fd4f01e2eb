"""The relay: streams the event store's notification log into Kafka, at least once, and
publishes the usage outbox (usage events the serving processes stored) to the usage topic.

Loop: read the events after the checkpoint (a batch), send them, flush (every ack in), then
record the new checkpoint and, per Kafka partition, the last position published there. A crash
between flush and checkpoint re-sends that batch with the same ce_ids; consumers dedupe.

One relay is active at a time: it holds a Postgres advisory lock on its own session, and writes
the checkpoint on that same session, so a relay whose session died (lock gone) cannot write one.
Others stand by, retrying the lock. Woken by the store's NOTIFY, with polling as a fallback.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
import structlog
from eventsourcing.persistence import Notification
from psycopg import sql

from infra.kafka.cloudevents import Headers, dead_letter_message, to_message
from infra.kafka.topics import TopicSpec, ensure_topics
from infra.observability.metrics import RELAY_DEAD_LETTERS, observe_relay_batch
from infra.postgres.embedded import open_database
from infra.postgres.event_store import LedgerApplication, eventsourcing_env
from infra.settings import Settings
from infra.usage.emitter import UsageEvent
from infra.usage.sinks import (
    USAGE_CHANNEL,
    ensure_usage_topic,
    forget_usage_outbox,
    take_usage_outbox,
    usage_to_message,
    usage_topic,
)
from projections import advisory_locks
from projections.records import EventRecord

log = structlog.get_logger("relay")

CHECKPOINTS = "relay_checkpoints"
PARTITIONS = "relay_partitions"
LOCK_CLASS = advisory_locks.RELAY_CLASS
_WAIT_SLICE = 0.2  # seconds: how quickly a waiting relay notices stop()

# (topic, partition) -> (last store position published there, its Kafka offset)
Placed = dict[tuple[str, int], tuple[int, int]]


@dataclass(frozen=True)
class RelayConfig:
    bootstrap_servers: str
    topics: TopicSpec
    batch_size: int = 500
    poll_interval: float = 1.0

    @property
    def name(self) -> str:
        # The checkpoint and the lock belong to a topic set: a new prefix republishes everything.
        return self.topics.prefix

    @classmethod
    def from_settings(cls, settings: Settings) -> RelayConfig:
        if not settings.kafka_bootstrap_servers:
            raise ValueError("KAFKA_BOOTSTRAP_SERVERS is not set")
        spec = TopicSpec(
            prefix=settings.kafka_topic_prefix,
            partitions=settings.kafka_partitions,
            replication=settings.kafka_replication,
            max_message_bytes=settings.kafka_max_message_bytes,
        )
        return cls(
            settings.kafka_bootstrap_servers,
            spec,
            settings.relay_batch_size,
            settings.relay_poll_interval,
        )


@dataclass(frozen=True)
class Outgoing:
    topic: str
    key: bytes
    value: bytes
    headers: Headers
    origin: Notification


def dead_letter(spec: TopicSpec, origin: Notification, error: str) -> Outgoing:
    log.error("relay.dead_letter", position=origin.id, topic=origin.topic, error=error)
    RELAY_DEAD_LETTERS.inc()
    key, value, headers = dead_letter_message(
        UUID(str(origin.originator_id)), origin.originator_version, origin.id, origin.topic, error
    )
    return Outgoing(spec.dead_letter, key, value, headers, origin)


def to_outgoing(app: LedgerApplication, spec: TopicSpec, origin: Notification) -> Outgoing | None:
    """The message for a stored event; None for slug claims (internal, see docs/events.md);
    a dead letter for an event that cannot be read or encoded, so one poison event never
    stalls the stream."""
    try:
        event = app.mapper.to_domain_event(origin)
        record = EventRecord.from_event(event, origin.id)  # type: ignore[arg-type]
        if record.kind == "slug":
            return None
        topic = spec.for_kind(record.kind)
        if topic is None:
            raise ValueError(f"no topic for event type {record.type}")
        key, value, headers = to_message(record)
    except Exception as exc:  # any failure of one event is that event's, not the relay's
        return dead_letter(spec, origin, f"{type(exc).__name__}: {exc}")
    return Outgoing(topic, key, value, headers, origin)


class RelaySession:
    """The relay's own Postgres session: advisory lock, LISTEN, checkpoint reads and writes."""

    def __init__(self, conn: psycopg.Connection[Any], name: str, channel: str) -> None:
        self.conn, self.name, self.channel = conn, name, channel

    @classmethod
    def connect(cls, database_url: str, name: str, channel: str) -> RelaySession:
        conn = psycopg.connect(database_url, autocommit=True, application_name="mcp-ledger-relay")
        return cls(conn, name, channel)

    def close(self) -> None:
        self.conn.close()  # ends the session, so releases the lock

    def try_lock(self) -> bool:
        row = self.conn.execute(
            "SELECT pg_try_advisory_lock(%s, hashtext(%s))", (LOCK_CLASS, self.name)
        ).fetchone()
        return bool(row and row[0])

    def listen(self) -> None:
        for channel in (self.channel, USAGE_CHANNEL):
            self.conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))

    def position(self) -> int:
        row = self.conn.execute(
            f"SELECT position FROM {CHECKPOINTS} WHERE name = %s",  # noqa: S608
            (self.name,),
        ).fetchone()
        return int(row[0]) if row else 0

    def save(self, position: int, placed: Mapping[tuple[str, int], tuple[int, int]]) -> None:
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.execute(
                f"INSERT INTO {CHECKPOINTS} (name, position) VALUES (%s, %s) "  # noqa: S608
                "ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, updated_at = now()",
                (self.name, position),
            )
            cur.executemany(
                f"INSERT INTO {PARTITIONS} (topic, partition, position, kafka_offset) "  # noqa: S608
                "VALUES (%s, %s, %s, %s) ON CONFLICT (topic, partition) DO UPDATE SET "
                "position = EXCLUDED.position, kafka_offset = EXCLUDED.kafka_offset, "
                "updated_at = now()",
                [(t, p, pos, off) for (t, p), (pos, off) in placed.items()],
            )

    def wait(self, timeout: float, stopping: Callable[[], bool]) -> bool:
        """Waits for a NOTIFY (True) or the timeout (False), in short slices to notice stop."""
        deadline = time.monotonic() + timeout
        while not stopping() and (remaining := deadline - time.monotonic()) > 0:
            if any(True for _ in self.conn.notifies(timeout=min(remaining, _WAIT_SLICE))):
                for _ in self.conn.notifies(timeout=0):  # one read covers every queued NOTIFY
                    pass
                return True
        return False


class Publisher:
    """Sends a batch and waits for every ack; returns where each partition ended."""

    def __init__(self, producer: Any, spec: TopicSpec) -> None:
        self.producer, self.spec = producer, spec

    def _send(self, out: Outgoing) -> tuple[Outgoing, Any]:
        from kafka.errors import MessageSizeTooLargeError

        try:
            future = self.producer.send(out.topic, out.value, out.key, out.headers)
        except MessageSizeTooLargeError as exc:
            out = dead_letter(self.spec, out.origin, f"MessageSizeTooLargeError: {exc}")
            future = self.producer.send(out.topic, out.value, out.key, out.headers)
        return out, future

    def publish_usage(self, events: Sequence[UsageEvent]) -> None:
        topic = usage_topic(self.spec.prefix)
        futures = []
        for event in events:
            key, value, headers = usage_to_message(event)
            futures.append(self.producer.send(topic, value, key, headers))
        self.producer.flush()
        for future in futures:
            future.get(timeout=30)  # raises the delivery error, if any

    def publish(self, batch: Sequence[Outgoing]) -> Placed:
        sent = [self._send(out) for out in batch]
        self.producer.flush()
        placed: Placed = {}
        for out, future in sent:
            meta = future.get(timeout=30)  # raises the delivery error, if any
            placed[(meta.topic, meta.partition)] = (out.origin.id, meta.offset)
        return placed


def make_producer(config: RelayConfig) -> Any:
    from kafka import KafkaProducer

    size = config.topics.max_message_bytes
    return KafkaProducer(
        bootstrap_servers=config.bootstrap_servers.split(","),
        client_id="mcp-ledger-relay",
        acks="all",
        enable_idempotence=True,  # broker drops the producer's own retried duplicates
        linger_ms=5,
        batch_size=262_144,
        max_request_size=size,
        allow_auto_create_topics=False,  # ensure_topics made them, with our settings
        metrics_enabled=False,
    )


def make_admin(config: RelayConfig) -> Any:
    from kafka.admin import KafkaAdminClient

    return KafkaAdminClient(
        bootstrap_servers=config.bootstrap_servers.split(","), client_id="mcp-ledger-relay"
    )


class Relay:
    def __init__(
        self,
        app: LedgerApplication,
        database_url: str,
        config: RelayConfig,
        producer_factory: Callable[[RelayConfig], Any] = make_producer,
        admin_factory: Callable[[RelayConfig], Any] = make_admin,
    ) -> None:
        self.app, self.database_url, self.config = app, database_url, config
        self.producer_factory, self.admin_factory = producer_factory, admin_factory
        self._stopping = threading.Event()
        self.active = threading.Event()
        self.position = 0
        self.published = 0
        self.usage_published = 0

    def stop(self) -> None:
        """Finish the current batch, checkpoint, return from run()."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def run(self) -> None:
        while not self.stopping:
            try:
                self._run_session()
            except psycopg.OperationalError as exc:
                # Lost our session (and so the lock): stand by again; a batch may be re-sent.
                self.active.clear()
                log.warning("relay.session_lost", error=str(exc))
                self._stopping.wait(self.config.poll_interval)
        log.info("relay.stopped", position=self.position, published=self.published)

    def _run_session(self) -> None:
        channel = self.app.recorder.channel_name  # type: ignore[attr-defined]
        session = RelaySession.connect(self.database_url, self.config.name, channel)
        try:
            if self._await_lock(session):
                self._run_active(session)
        finally:
            self.active.clear()
            session.close()

    def _await_lock(self, session: RelaySession) -> bool:
        logged = False
        while not self.stopping:
            if session.try_lock():
                return True
            if not logged:
                log.info("relay.standby", name=self.config.name)
                logged = True
            self._stopping.wait(self.config.poll_interval)
        return False

    def _run_active(self, session: RelaySession) -> None:
        session.listen()  # before reading the checkpoint, so no NOTIFY falls in between
        admin = self.admin_factory(self.config)
        try:
            ensure_topics(admin, self.config.topics)
            ensure_usage_topic(admin, self.config.topics)
        finally:
            admin.close()
        producer = self.producer_factory(self.config)
        try:
            self._pump(session, Publisher(producer, self.config.topics))
        finally:
            producer.close()

    def _pump(self, session: RelaySession, publisher: Publisher) -> None:
        self.position = session.position()
        self.active.set()
        log.info("relay.active", name=self.config.name, position=self.position)
        while True:
            batch = self.app.recorder.select_notifications(
                self.position, self.config.batch_size, inclusive_of_start=False
            )
            if batch:
                self._relay_batch(session, publisher, batch)
            usage = self._relay_usage(session, publisher)
            if self.stopping:
                return
            if len(batch) < self.config.batch_size and usage < self.config.batch_size:
                session.wait(self.config.poll_interval, lambda: self.stopping)

    def _relay_usage(self, session: RelaySession, publisher: Publisher) -> int:
        """Publishes the oldest stored usage events, then deletes them (at least once: a crash
        in between publishes them again, and the analytics count each event id once)."""
        taken = take_usage_outbox(session.conn, self.config.batch_size)
        if taken:
            publisher.publish_usage([event for _, event in taken])
            forget_usage_outbox(session.conn, [i for i, _ in taken])
            self.usage_published += len(taken)
        return len(taken)

    def _relay_batch(
        self, session: RelaySession, publisher: Publisher, batch: Sequence[Notification]
    ) -> None:
        started = time.monotonic()
        outgoing = [o for n in batch if (o := to_outgoing(self.app, self.config.topics, n))]
        placed = publisher.publish(outgoing)
        session.save(batch[-1].id, placed)
        self.position = batch[-1].id
        self.published += len(outgoing)
        observe_relay_batch(len(outgoing), time.monotonic() - started)
        log.info(
            "relay.batch",
            events=len(batch),
            published=len(outgoing),
            first=batch[0].id,
            position=self.position,
            ms=round((time.monotonic() - started) * 1000, 1),
        )


def build_relay(settings: Settings) -> tuple[Relay, Callable[[], None]]:
    """The relay and a close function; needs no secret key (it only reads redacted records)."""
    from infra.postgres.schema import ensure_schema

    config = RelayConfig.from_settings(settings)
    database_url, leave = open_database(settings.database_url, settings.data_dir)
    closers: list[Callable[[], None]] = [leave]
    try:
        ensure_schema(database_url, auto_migrate=settings.auto_migrate)
    except Exception:
        leave()
        raise
    app = LedgerApplication(env=eventsourcing_env(database_url, 2))
    closers.insert(0, app.close)

    def close() -> None:
        for closer in closers:
            closer()

    return Relay(app, database_url, config), close
