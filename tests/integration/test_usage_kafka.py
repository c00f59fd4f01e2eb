"""Usage analytics on the scale-out path: calls emit usage events through the container's
emitter (exactly what the MCP server does per tools/call) into the usage outbox, which the real
`mcp-ledger relay` publishes to `<prefix>.usage.v1` on a real Kafka broker; the real
`mcp-ledger projector --source kafka` (its analytics agent) counts them into Postgres and Redis.
N calls are reported as N — also after the projector is killed, after the whole usage topic is
redelivered to it, and after the same events are published twice."""

from __future__ import annotations

import dataclasses
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from infra.usage.emitter import UsageEvent, digest_arguments
from infra.usage.sinks import KafkaUsageSink, topic_spec, usage_from_message, usage_topic
from projections.analytics import usage_stats
from tests.kafka_pipeline_support import Pipeline, consume, fresh_database, pipeline_env, wait_for

pytestmark = pytest.mark.timeout(600)

OK_CALLS, NOT_FOUND_CALLS = 40, 8


@pytest.fixture(scope="module")
def redis_url() -> str:
    url = os.environ.get("REDIS_URL", "").strip()
    if not url:
        pytest.exit("no Redis for the tests: run ./scripts/test or set REDIS_URL", returncode=2)
    return url


@pytest.fixture(scope="module")
def usage_db() -> Iterator[str]:
    with fresh_database("uk") as url:
        yield url


@pytest.fixture(scope="module")
def prefix() -> str:
    return f"t-uk-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def container(  # type: ignore[no-untyped-def]
    usage_db: str, redis_url: str, secret_key: str, kafka_bootstrap: str, prefix: str,
    tmp_path_factory,
):  # fmt: skip
    from infra.container import build_container
    from infra.settings import load_settings

    settings = load_settings(
        database_url=usage_db,
        secret_key=secret_key,
        data_dir=tmp_path_factory.mktemp("uk-data"),
        read_feed="kafka",
        kafka_bootstrap_servers=kafka_bootstrap,
        kafka_topic_prefix=prefix,
        redis_url=redis_url,
        usage_sink="auto",  # Kafka-fed read side → usage to Kafka
        vectors="off",
        auth="off",  # access control is tested in test_access_control.py
        rate_limit="off",
    )
    c = build_container(settings)
    yield c
    c.close()


@pytest.fixture
def pipeline(  # type: ignore[no-untyped-def]
    usage_db: str, secret_key: str, kafka_bootstrap: str, prefix: str, redis_url: str, tmp_path
) -> Iterator[Pipeline]:
    env = pipeline_env(
        usage_db, secret_key, kafka_bootstrap, prefix, tmp_path,
        REDIS_URL=redis_url, MCP_LEDGER_VECTORS="off", MCP_LEDGER_PROJECTOR_SESSION_TIMEOUT="6",
    )  # fmt: skip
    p = Pipeline(usage_db, prefix, env, tmp_path)
    yield p
    p.stop()


def mcp_calls(container: Any) -> None:
    """OK_CALLS list_tools and NOT_FOUND_CALLS get_tool of an unknown slug, emitted as the MCP
    server emits them (mcp_adapter/server.py: LedgerServer._emit), then one usage_stats."""
    calls: list[tuple[str, dict[str, Any], str]] = [("list_tools", {"limit": 5}, "ok")] * OK_CALLS
    calls += [("get_tool", {"slug": "no-such-tool"}, "not_found")] * NOT_FOUND_CALLS
    calls += [("usage_stats", {"slug": "list_tools"}, "ok")]
    for i, (name, arguments, status) in enumerate(calls):
        container.usage.emit(
            UsageEvent(
                tool=name,
                surface="mcp",
                arguments_digest=digest_arguments(arguments),
                result_ids=[],
                latency_ms=1.0 + i % 20,
                status=status,
                client_id="session-1",
                client_name="usage-kafka-agent",
                request_id=str(i),
            )
        )


def totals(database_url: str) -> dict[str, Any]:
    with psycopg.connect(database_url) as conn:
        return usage_stats(conn, None, window="24h")


def outbox(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM usage_outbox").fetchone()
    return int(row[0]) if row else 0


def seen(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM usage_seen").fetchone()
    return int(row[0]) if row else 0


def committed_to_end(bootstrap: str, group: str, topic: str) -> bool:
    """The group has committed the usage topic up to its end offsets (all consumed)."""
    from kafka import KafkaConsumer, TopicPartition  # type: ignore[attr-defined,unused-ignore]
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","))
    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), group_id=None)
    try:
        offsets = admin.list_group_offsets(group)[group]
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        end = consumer.end_offsets(partitions)
        committed = {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}
        return all(committed.get(tp.partition, 0) >= end[tp] for tp in partitions)
    finally:
        admin.close()
        consumer.close()


def rewind_usage_topic(bootstrap: str, group: str, topic: str, timeout: float = 60) -> None:
    """Sets the group's committed offsets on the usage topic back to 0: everything is redelivered
    to the next projector. The group must be empty; a killed member expires after the session
    timeout, so this retries until then."""
    from kafka import KafkaConsumer, TopicPartition  # type: ignore[attr-defined,unused-ignore]
    from kafka.admin import KafkaAdminClient

    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), group_id=None)
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    consumer.close()
    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","))
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                result = admin.reset_group_offsets(group, dict.fromkeys(partitions, 0))
                if all(r["error"].errno == 0 for r in result.values()):
                    return
            except Exception:  # the group still has its dead member
                pass
            assert time.monotonic() < deadline, "could not rewind the group's offsets"
            time.sleep(1)
    finally:
        admin.close()


def test_n_mcp_calls_are_reported_n_times_across_crashes_and_redelivery(  # type: ignore[no-untyped-def]
    container, pipeline: Pipeline, usage_db: str, kafka_bootstrap: str, prefix: str
) -> None:
    topic, group = usage_topic(prefix), pipeline.group
    pipeline.start_relay()
    projector = pipeline.start_projector()
    mcp_calls(container)
    assert container.usage.flush(30)
    assert container.usage.dropped == 0
    total = OK_CALLS + NOT_FOUND_CALLS + 1  # + the usage_stats call itself
    wait_for(lambda: outbox(usage_db) == 0, "the relay to publish the usage outbox")

    # Every call is a message on the topic, in CloudEvents binary mode.
    messages = wait_for(lambda: (m := consume(kafka_bootstrap, [topic])) and len(m) >= total and m,
                        f"{total} usage messages")  # fmt: skip
    events = [usage_from_message(m.key, m.value, m.headers) for m in messages]
    assert len(events) == total
    assert {e.client_name for e in events} == {"usage-kafka-agent"}

    wait_for(lambda: totals(usage_db)["calls"] == total, f"{total} calls counted", timeout=120)
    report = totals(usage_db)
    assert report["errors"] == NOT_FOUND_CALLS  # not_found counts as an error
    assert {t["tool"]: t["calls"] for t in report["top_tools"]} == {
        "list_tools": OK_CALLS, "get_tool": NOT_FOUND_CALLS, "usage_stats": 1,
    }  # fmt: skip
    # The hot path (Redis, filled by the projector's copies or from Postgres) agrees.
    with psycopg.connect(usage_db) as conn:
        hot = usage_stats(conn, container.redis, window="1h")
    assert hot["source"] == "redis"
    assert (hot["calls"], hot["errors"]) == (total, NOT_FOUND_CALLS)

    # kill -9 right away: whatever it had not committed to Kafka is redelivered to the next one.
    projector.kill()
    projector = pipeline.start_projector("projector-2")
    wait_for(lambda: committed_to_end(kafka_bootstrap, group, topic), "the restart to consume")
    assert totals(usage_db)["calls"] == total

    # Everything again: the group's offsets rewound to 0 after a crash.
    projector.kill()
    rewind_usage_topic(kafka_bootstrap, group, topic)
    assert not committed_to_end(kafka_bootstrap, group, topic)
    third = pipeline.start_projector("projector-3")
    wait_for(lambda: committed_to_end(kafka_bootstrap, group, topic), "the full redelivery")
    assert (
        sum(
            line["count"]
            for line in third.lines()
            if line.get("event") == "usage_duplicates_skipped"
        )
        == total
    )
    # And the same events published a second time (a producer that retried on its own).
    again = KafkaUsageSink(kafka_bootstrap, topic_spec(container.settings))
    again([dataclasses.replace(e) for e in events])
    again.close()
    wait_for(lambda: committed_to_end(kafka_bootstrap, group, topic), "the duplicates")
    assert totals(usage_db)["calls"] == total
    assert seen(usage_db) == total
    pipeline.check_alive()


def test_a_usage_event_from_another_producer_is_counted(  # type: ignore[no-untyped-def]
    container, pipeline: Pipeline, usage_db: str, kafka_bootstrap: str, prefix: str
) -> None:
    """Outside teams may publish usage events too (e.g. a gateway): the schema is the contract."""
    pipeline.start_projector()
    tool = f"gateway-{uuid.uuid4().hex[:6]}"
    sink = KafkaUsageSink(kafka_bootstrap, topic_spec(container.settings))
    sink([UsageEvent(tool, "api", "sha256:" + "0" * 64, [], 12.0, "error") for _ in range(3)])
    sink.close()

    def counted() -> bool:
        with psycopg.connect(usage_db) as conn:
            return bool(usage_stats(conn, None, tool=tool, window="1h")["errors"] == 3)

    wait_for(counted, "the gateway's events", timeout=120)
