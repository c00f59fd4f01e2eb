"""Where usage events go, and how analytics is wired.

- `UsageOutboxSink`: the Kafka path. Stores the events in Postgres (`usage_outbox`), the
  database every serving process already depends on; the active relay publishes them to
  `<prefix>.usage.v1` and deletes them. A call's usage is stored before it is answered and a
  broker outage only delays it.
- `KafkaUsageSink`: produces events to `<prefix>.usage.v1` in CloudEvents 1.0 Kafka binary mode
  (key = tool name, value = the event's JSON, schema
  `schemas/io.mcp-ledger.usage.UsageRecorded.v1.json`); the relay publishes the outbox with it,
  and the projector's analytics agent and outside teams consume the topic.
- `LocalUsageSink`: the embedded mode: the same analytics projection, applied in-process.
- `build_usage_emitter`: picks one from the settings; `usage_stats_for`: the query with the
  container's Postgres and Redis (used by the API route and the MCP tool)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import structlog
from psycopg import Connection

from infra.kafka.cloudevents import CONTENT_TYPE, SOURCE, SPEC_VERSION, TYPE_PREFIX, rfc3339
from infra.kafka.topics import TopicSpec, _raise_on_errors
from infra.redis_client import RedisHandle
from infra.usage.emitter import UsageEmitter, UsageEvent
from projections.analytics import UsageProjection, usage_stats

if TYPE_CHECKING:
    from infra.postgres.read_side import ReadSide
    from infra.settings import Settings


class Analytics(Protocol):
    """What the analytics reads need of the composition root: the read models and Redis."""

    @property
    def read_side(self) -> ReadSide: ...

    @property
    def redis(self) -> RedisHandle: ...


log = structlog.get_logger("usage")

USAGE_TOPIC = "usage.v1"
USAGE_TYPE = f"{TYPE_PREFIX}.usage.UsageRecorded.v1"
# Usage is not a replay of the registry (the Postgres rollups keep the history): a week is
# plenty for consumers that fall behind. Events older than the projection's late limit (2 days)
# are not counted anyway.
USAGE_RETENTION_MS = 7 * 24 * 3600 * 1000
Connect = Callable[[], AbstractContextManager[Connection[Any]]]


def usage_topic(prefix: str) -> str:
    return f"{prefix}.{USAGE_TOPIC}"


# --- the wire form --------------------------------------------------------------------------------


def usage_to_message(event: UsageEvent) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    attributes = {
        "ce_specversion": SPEC_VERSION,
        "ce_id": event.id,
        "ce_type": USAGE_TYPE,
        "ce_source": SOURCE,
        "ce_subject": event.tool,
        "ce_time": rfc3339(datetime.fromisoformat(event.occurred_at.replace("Z", "+00:00"))),
        "content-type": CONTENT_TYPE,
    }
    if event.request_id:
        attributes["ce_correlationid"] = event.request_id
    headers = [(name, value.encode()) for name, value in attributes.items()]
    value = json.dumps(event.to_json(), separators=(",", ":"), ensure_ascii=False)
    return event.tool.encode(), value.encode(), headers


def usage_from_message(
    key: bytes | None, value: bytes | None, headers: Iterable[tuple[str, bytes | None]]
) -> UsageEvent:
    """The UsageEvent again; ValueError on a message that is not a usage event of ours."""
    attrs = {name: (raw or b"").decode() for name, raw in headers}
    if attrs.get("ce_specversion") != SPEC_VERSION:
        raise ValueError(f"ce_specversion {attrs.get('ce_specversion')!r} is not {SPEC_VERSION}")
    if not attrs.get("ce_type", "").startswith(f"{TYPE_PREFIX}.usage.UsageRecorded.v"):
        raise ValueError(f"ce_type {attrs.get('ce_type')!r} is not a usage event")
    if not value:
        raise ValueError("empty usage message")
    try:
        data = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"usage message is not JSON: {exc}") from None
    event = UsageEvent.from_json(data)
    if attrs.get("ce_id") and attrs["ce_id"] != event.id:
        raise ValueError("ce_id differs from the event's id")
    return event


# --- the topic ------------------------------------------------------------------------------------


def ensure_usage_topic(admin: Any, spec: TopicSpec) -> bool:
    """Creates `<prefix>.usage.v1` when missing, with the relay's topic settings except a week's
    retention. True if it was created."""
    name = usage_topic(spec.prefix)
    if name in set(admin.list_topics()):
        return False
    configs = {**spec.configs(), "retention.ms": str(USAGE_RETENTION_MS)}
    new = {
        name: {
            "num_partitions": spec.partitions,
            "replication_factor": spec.replication,
            "configs": configs,
        }
    }
    _raise_on_errors(admin.create_topics(new, raise_errors=False, wait_for_metadata=True))
    log.info("usage.topic_created", topic=name, partitions=spec.partitions)
    return True


def topic_spec(settings: Settings) -> TopicSpec:
    return TopicSpec(
        prefix=settings.kafka_topic_prefix,
        partitions=settings.kafka_partitions,
        replication=settings.kafka_replication,
        max_message_bytes=settings.kafka_max_message_bytes,
    )


def ensure_usage_topic_for(settings: Settings) -> None:
    from kafka.admin import KafkaAdminClient

    servers = (settings.kafka_bootstrap_servers or "").split(",")
    admin = KafkaAdminClient(bootstrap_servers=servers, client_id="mcp-ledger-usage")
    try:
        ensure_usage_topic(admin, topic_spec(settings))
    finally:
        admin.close()


# --- the sinks ------------------------------------------------------------------------------------


class KafkaUsageSink:
    """Runs in the emitter's thread: a slow or absent broker delays that thread only (and the
    emitter drops what overflows), never a call."""

    def __init__(self, bootstrap_servers: str, spec: TopicSpec, send_timeout: float = 10.0) -> None:
        self.bootstrap_servers, self.spec, self.send_timeout = bootstrap_servers, spec, send_timeout
        self.topic = usage_topic(spec.prefix)
        self._producer: Any = None
        self._lock = threading.Lock()

    def _connect(self) -> Any:
        from kafka import KafkaProducer
        from kafka.admin import KafkaAdminClient

        servers = self.bootstrap_servers.split(",")
        admin = KafkaAdminClient(bootstrap_servers=servers, client_id="mcp-ledger-usage")
        try:
            ensure_usage_topic(admin, self.spec)
        finally:
            admin.close()
        return KafkaProducer(
            bootstrap_servers=servers,
            client_id="mcp-ledger-usage",
            acks="all",
            enable_idempotence=True,
            linger_ms=20,
            max_block_ms=int(self.send_timeout * 1000),
            allow_auto_create_topics=False,
            metrics_enabled=False,
        )

    def __call__(self, events: Sequence[UsageEvent]) -> None:
        with self._lock:
            if self._producer is None:
                self._producer = self._connect()
            producer = self._producer
        futures = []
        for event in events:
            key, value, headers = usage_to_message(event)
            futures.append(producer.send(self.topic, key=key, value=value, headers=headers))
        producer.flush(timeout=self.send_timeout)
        failed = [f for f in futures if not f.succeeded()]
        if failed:
            error = failed[0].exception if failed[0].is_done else "not acknowledged in time"
            raise RuntimeError(f"{len(failed)} of {len(futures)} usage events not sent: {error}")

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.close(timeout=5)
                self._producer = None


USAGE_OUTBOX = "usage_outbox"
USAGE_CHANNEL = "ledger_usage"  # NOTIFY: wakes the relay when usage events are stored


class UsageOutboxSink:
    """Stores events in the usage outbox, one transaction per batch (COPY)."""

    def __init__(self, connect: Connect) -> None:
        self.connect = connect

    def __call__(self, events: Sequence[UsageEvent]) -> None:
        with self.connect() as conn, conn.transaction(), conn.cursor() as cur:
            with cur.copy(f"COPY {USAGE_OUTBOX} (event) FROM STDIN") as copy:
                for event in events:
                    copy.write_row((json.dumps(event.to_json(), ensure_ascii=False),))
            cur.execute(f"NOTIFY {USAGE_CHANNEL}")


def take_usage_outbox(conn: Connection[Any], limit: int) -> list[tuple[int, UsageEvent]]:
    """The oldest stored usage events (id, event), for the relay."""
    rows = conn.execute(
        f"SELECT id, event FROM {USAGE_OUTBOX} ORDER BY id LIMIT %s",  # noqa: S608
        (limit,),
    ).fetchall()
    return [(int(row[0]), UsageEvent.from_json(row[1])) for row in rows]


def forget_usage_outbox(conn: Connection[Any], ids: Sequence[int]) -> None:
    conn.execute(f"DELETE FROM {USAGE_OUTBOX} WHERE id = ANY(%s)", (list(ids),))  # noqa: S608


class LocalUsageSink:
    """The embedded mode: the analytics projection applied in the emitter's thread."""

    def __init__(self, connect: Connect, redis: RedisHandle) -> None:
        self.connect, self.redis = connect, redis
        self.projection = UsageProjection(redis.client())

    def __call__(self, events: Sequence[UsageEvent]) -> None:
        with self.connect() as conn:
            self.projection.handle(conn, events)


# --- wiring ---------------------------------------------------------------------------------------


def build_usage_emitter(
    settings: Settings, read_side: ReadSide, redis: RedisHandle, *, kafka_feed: bool
) -> UsageEmitter:
    """MCP_LEDGER_USAGE_SINK: kafka → the usage outbox, which the relay publishes to the usage
    topic; local → the in-process projection; off → nothing; auto → kafka when the read side
    is fed by Kafka, else local."""
    choice = settings.usage_sink
    if choice == "auto":
        choice = "kafka" if kafka_feed and settings.kafka_bootstrap_servers else "local"
    sink: Callable[[Sequence[UsageEvent]], None] | None = None
    if choice == "kafka" and settings.kafka_bootstrap_servers:
        sink = UsageOutboxSink(read_side.connection)
    elif choice == "local":
        sink = LocalUsageSink(read_side.connection, redis)
    # Callers that wait for their event want it stored at once, not after a linger.
    linger = 0.0 if settings.usage_durable else 0.25
    return UsageEmitter(sink, capacity=settings.usage_buffer, linger=linger)


def usage_stats_for(
    container: Analytics, tool: str | None = None, window: str = "1h", client: str | None = None
) -> dict[str, Any]:
    """`projections.analytics.usage_stats` with the container's Postgres and Redis; a Redis
    failure puts the handle in its cool-down (answers then come from Postgres)."""
    with container.read_side.connection() as conn:
        return usage_stats(conn, container.redis, tool, window, client)


def add_analytics_agent(app: Any, settings: Settings, container: Analytics) -> Any:
    """Adds the analytics agent (usage topic → usage_stats + Redis) to the projector's app."""
    from projections.analytics_faust import add_usage_agent

    projection = UsageProjection(container.redis.client())
    topic = usage_topic(settings.kafka_topic_prefix)
    return add_usage_agent(
        app, topic, projection, container.read_side.connection, usage_from_message
    )
