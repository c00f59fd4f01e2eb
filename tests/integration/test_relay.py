"""The relay against the real Postgres store and a real Kafka broker: commands through the API,
the relay (in a thread, or as `mcp-ledger relay` subprocesses), then the topics read back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import psycopg
import pytest

from infra.kafka.cloudevents import decode_headers, event_id, from_message
from infra.kafka.relay import Relay, build_relay
from infra.kafka.topics import TopicSpec
from infra.postgres.event_store import LedgerApplication
from projections.records import EventRecord
from tests.conftest import ROOT, tool_body

SECRET = "s3cr3t-relay-token"
SCHEMAS = ROOT / "schemas"


# --- helpers ------------------------------------------------------------------------------------


# Generous: the session database holds every other test's events too, and a new topic prefix
# makes the relay publish them all.
def wait_for(predicate: Callable[[], bool], timeout: float = 180, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def checkpoint(database_url: str, name: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT position FROM relay_checkpoints WHERE name = %s", (name,)
        ).fetchone()
    return int(row[0]) if row else 0


def partition_rows(database_url: str, prefix: str) -> dict[tuple[str, int], tuple[int, int]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT topic, partition, position, kafka_offset FROM relay_partitions "
            "WHERE topic LIKE %s",
            (prefix + ".%",),
        ).fetchall()
    return {(t, p): (pos, off) for t, p, pos, off in rows}


def store_records(app: LedgerApplication) -> list[EventRecord]:
    """Every published event in the store (slug claims are internal), in store order."""
    records, position = [], 0
    while batch := app.recorder.select_notifications(position, 1000, inclusive_of_start=False):
        for n in batch:
            record = EventRecord.from_event(app.mapper.to_domain_event(n), n.id)  # type: ignore[arg-type]
            if record.kind != "slug":
                records.append(record)
        position = batch[-1].id
    return records


def consume(bootstrap: str, topics: list[str], timeout: float = 180) -> list[Any]:
    """Every message now in the topics (up to their end offsets), in offset order per partition."""
    # Imported here: the repo's kafka/ folder (the broker's pom) makes import sorters and mypy
    # take `kafka` for a first-party package.
    from kafka import KafkaConsumer, TopicPartition  # type: ignore[attr-defined]

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        partitions = [
            TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            assert time.monotonic() < deadline, "timed out reading the topics"
            for messages in consumer.poll(timeout_ms=500).values():
                out.extend(messages)
        return out
    finally:
        consumer.close()


def event_topics(prefix: str) -> list[str]:
    return TopicSpec(prefix=prefix).names()[:-1]


def ce_id(message: Any) -> str:
    return decode_headers(message.headers)["ce_id"]


def decoded(messages: list[Any]) -> list[tuple[Any, EventRecord]]:
    return [(m, from_message(m.key, m.value, m.headers)) for m in messages]


def assert_delivered(
    messages: list[Any], expected: list[EventRecord], prefix: str, max_duplicates: int = 0
) -> None:
    """Every store event arrived (at least once), on its topic, keyed by its aggregate, as the
    same record; duplicates are byte-identical re-sends; per aggregate, versions in order."""
    spec = TopicSpec(prefix=prefix)
    by_id: dict[str, list[tuple[Any, EventRecord]]] = defaultdict(list)
    for message, record in decoded(messages):
        by_id[decode_headers(message.headers)["ce_id"]].append((message, record))
    want = {str(event_id(r.aggregate_id, r.version)): r for r in expected}
    assert set(by_id) == set(want), "consumers, deduped by ce_id, must see exactly the store"
    duplicates = 0
    for ce_id, copies in by_id.items():
        first_message, record = copies[0]
        assert record == want[ce_id]
        assert first_message.topic == spec.for_kind(record.kind)
        assert first_message.key == str(record.aggregate_id).encode()
        for again, _ in copies[1:]:
            assert (again.key, again.value, again.headers) == (
                first_message.key,
                first_message.value,
                first_message.headers,
            )
        duplicates += len(copies) - 1
    assert duplicates <= max_duplicates
    assert_aggregate_order(messages)


def assert_aggregate_order(messages: list[Any]) -> None:
    """Within each partition (and so each aggregate), versions never go back, except that a
    re-sent batch may repeat versions already seen."""
    seen: dict[Any, list[int]] = defaultdict(list)
    for message in sorted(messages, key=lambda m: (m.topic, m.partition, m.offset)):
        record = from_message(message.key, message.value, message.headers)
        seen[record.aggregate_id].append(record.version)
    for versions in seen.values():
        first_seen = list(dict.fromkeys(versions))
        assert first_seen == list(range(1, len(first_seen) + 1)), versions


class ThreadRelay:
    def __init__(self, settings: Any) -> None:
        self.relay: Relay
        self.relay, self._close = build_relay(settings)
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.relay.run()
        except BaseException as exc:
            self.errors.append(exc)
            raise

    def caught_up(self, database_url: str, head: int) -> bool:
        assert not self.errors, self.errors
        return checkpoint(database_url, self.relay.config.name) >= head

    def __enter__(self) -> ThreadRelay:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.relay.stop()
        self.thread.join(60)
        self._close()
        assert not self.thread.is_alive()
        assert not self.errors, self.errors


@dataclass
class RelayProcess:
    """`mcp-ledger relay` as a real subprocess (for kill -9)."""

    database_url: str
    bootstrap: str
    prefix: str
    log_path: Path
    batch_size: int = 100
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RelayProcess:
        env = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "MCP_LEDGER_KAFKA_TOPIC_PREFIX": self.prefix,
            "MCP_LEDGER_RELAY_BATCH_SIZE": str(self.batch_size),
            "MCP_LEDGER_RELAY_POLL_INTERVAL": "0.2",
            "MCP_LEDGER_LOG_LEVEL": "info",
            "MCP_LEDGER_LOG_FORMAT": "json",
        }
        env.pop("MCP_LEDGER_SECRET_KEY", None)  # the relay needs none
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "relay"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=log,
            )
        return self

    def lines(self) -> list[dict[str, Any]]:
        if not self.log_path.exists():
            return []
        out = []
        for line in self.log_path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def said(self, event: str) -> bool:
        return any(line.get("event") == event for line in self.lines())

    def batches(self) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("event") == "relay.batch"]

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def terminate(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)

    def ensure_stopped(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def write_variety(client: Any) -> None:
    """Every kind of event, through the API."""
    tool = client.post(
        "/api/v1/tools", json=tool_body(config={"region": "eu", "api_token": SECRET})
    )
    assert tool.status_code == 201, tool.text
    ref = f"/api/v1/tools/{tool.json()['id']}"
    assert client.patch(ref, json={"version": "1.1.0", "tags": ["b", "a"]}).status_code == 200
    assert client.post(f"{ref}/activate").status_code == 200
    assert client.post(f"{ref}/deprecate").status_code == 200
    assert client.delete(ref).status_code == 200
    assert client.post(f"{ref}/restore").status_code == 200
    ds = client.post("/api/v1/datasets", json=dataset_body())
    assert ds.status_code == 201, ds.text
    dref = f"/api/v1/datasets/{ds.json()['id']}"
    assert client.patch(dref, json={"owner": "finance"}).status_code == 200
    columns = [{"name": "order_id", "type": "uuid", "nullable": False}]
    assert client.put(f"{dref}/columns", json={"columns": columns}).status_code == 200
    profile = {"row_count": 3, "columns": {"order_id": {"null_count": 0, "min": 1, "max": 3}}}
    assert client.post(f"{dref}/profile", json=profile).status_code == 200
    for step in ("archive", "unarchive"):
        assert client.post(f"{dref}/{step}").status_code == 200
    assert client.delete(dref).status_code == 200
    assert client.post(f"{dref}/restore").status_code == 200
    doc = client.post("/api/v1/documents", json=doc_body(tool.json()["id"]))
    assert doc.status_code == 201, doc.text
    docref = f"/api/v1/documents/{doc.json()['id']}"
    assert client.patch(docref, json={"title": "Revised", "link": None}).status_code == 200
    assert client.put(f"{docref}/tags", json={"tags": ["x", "y"]}).status_code == 200
    assert client.delete(docref).status_code == 200
    assert client.post(f"{docref}/restore").status_code == 200


def dataset_body() -> dict[str, Any]:
    return {
        "slug": f"ds-{uuid.uuid4().hex[:12]}",
        "name": "Sales orders",
        "description": "One row per order",
        "source": {"kind": "postgres_table", "uri": "postgresql://wh/sales?table=orders"},
        "columns": [{"name": "order_id", "type": "bigint", "nullable": False}],
        "tags": ["sales"],
        "owner": "data-platform",
    }


def doc_body(tool_id: str) -> dict[str, Any]:
    return {
        "title": "How orders are counted",
        "content": "# Orders\nOne row per order.",
        "content_type": "text/markdown",
        "metadata": {"author": "jane", "language": "en"},
        "tags": ["sales"],
        "link": {"kind": "tool", "id": tool_id},
    }


def register_tools(client: Any, count: int) -> None:
    for _ in range(count):
        assert client.post("/api/v1/tools", json=tool_body()).status_code == 201


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture
def prefix(kafka_unique_name: str) -> str:
    return f"ledger-{kafka_unique_name}"


@pytest.fixture
def relay_settings(settings: Any, kafka_bootstrap: str, prefix: str) -> Any:
    return settings.model_copy(
        update={
            "kafka_bootstrap_servers": kafka_bootstrap,
            "kafka_topic_prefix": prefix,
            "relay_batch_size": 100,
            "relay_poll_interval": 0.2,
        }
    )


@pytest.fixture
def processes(
    database_url: str, kafka_bootstrap: str, prefix: str, tmp_path: Path
) -> Iterator[Callable[[str], RelayProcess]]:
    started: list[RelayProcess] = []

    def make(name: str) -> RelayProcess:
        relay = RelayProcess(database_url, kafka_bootstrap, prefix, tmp_path / f"{name}.log")
        started.append(relay)
        return relay

    yield make
    for relay in started:
        relay.ensure_stopped()


# --- tests --------------------------------------------------------------------------------------


def test_every_event_arrives_keyed_with_cloudevents_headers_in_order(
    client: Any, container: Any, relay_settings: Any, database_url: str, prefix: str
) -> None:
    write_variety(client)
    head = container.store.head()
    with ThreadRelay(relay_settings) as relay:
        wait_for(lambda: relay.caught_up(database_url, head), what="the relay to catch up")
    messages = consume(relay_settings.kafka_bootstrap_servers, event_topics(prefix))
    expected = [r for r in store_records(container.app) if r.position <= head]
    assert_delivered(messages, expected, prefix)
    types = {from_message(m.key, m.value, m.headers).type for m in messages}
    assert {"ToolRegistered", "DatasetProfileRecorded", "DocumentRetagged"} <= types
    assert "SlugClaimed" not in types
    for message in messages:
        assert SECRET.encode() not in message.value
        attrs = decode_headers(message.headers)
        assert attrs["ce_type"].startswith("io.mcp-ledger.")
        schema = json.loads((SCHEMAS / f"{attrs['ce_type']}.json").read_text())
        jsonschema.validate(json.loads(message.value), schema)
    assert_partition_rows(messages, database_url, prefix)


def assert_partition_rows(messages: list[Any], database_url: str, prefix: str) -> None:
    """relay_partitions holds, per partition, the last position and offset published there."""
    last: dict[tuple[str, int], tuple[int, int]] = {}
    for message in messages:
        position = int(decode_headers(message.headers)["ce_position"])
        key = (message.topic, message.partition)
        if message.offset >= last.get(key, (0, -1))[1]:
            last[key] = (position, message.offset)
    assert partition_rows(database_url, prefix) == last


def test_a_restarted_relay_resumes_from_its_checkpoint(
    client: Any, container: Any, relay_settings: Any, database_url: str, prefix: str
) -> None:
    register_tools(client, 5)
    first_head = container.store.head()
    with ThreadRelay(relay_settings) as relay:
        wait_for(lambda: relay.caught_up(database_url, first_head), what="first run")
    stopped_at = checkpoint(database_url, prefix)
    write_variety(client)
    time.sleep(0.5)
    assert checkpoint(database_url, prefix) == stopped_at  # nothing ran meanwhile
    head = container.store.head()
    with ThreadRelay(relay_settings) as again:
        wait_for(lambda: again.caught_up(database_url, head), what="second run")
        assert again.relay.published == len(
            [r for r in store_records(container.app) if stopped_at < r.position <= head]
        )
    messages = consume(relay_settings.kafka_bootstrap_servers, event_topics(prefix))
    expected = [r for r in store_records(container.app) if r.position <= head]
    assert_delivered(messages, expected, prefix)  # graceful stops: not one duplicate


def test_kill_9_mid_burst_then_restart_delivers_everything_at_least_once(
    client: Any,
    container: Any,
    database_url: str,
    kafka_bootstrap: str,
    prefix: str,
    processes: Callable[[str], RelayProcess],
) -> None:
    first = processes("first").start()
    wait_for(lambda: first.said("relay.active"), what="the relay to start")
    killed_at = 0
    for i in range(120):
        assert client.post("/api/v1/tools", json=tool_body()).status_code == 201
        if i == 40:  # writes go on while it dies, and after
            wait_for(lambda: checkpoint(database_url, prefix) > 0, what="a first batch")
            first.kill()
            killed_at = checkpoint(database_url, prefix)
    head = container.store.head()
    assert killed_at < head
    second = processes("second").start()
    wait_for(lambda: checkpoint(database_url, prefix) >= head, what="the restarted relay")
    assert second.terminate() == 0
    assert second.said("relay.stopped")
    assert second.batches()[0]["first"] > killed_at  # resumed after the checkpoint
    messages = consume(kafka_bootstrap, event_topics(prefix))
    expected = [r for r in store_records(container.app) if r.position <= head]
    # Only the batch in flight at the kill can be re-sent.
    assert_delivered(messages, expected, prefix, max_duplicates=first.batch_size)


def test_two_relays_one_publishes_the_standby_takes_over(
    client: Any,
    container: Any,
    database_url: str,
    kafka_bootstrap: str,
    prefix: str,
    processes: Callable[[str], RelayProcess],
) -> None:
    relays = [processes("a").start(), processes("b").start()]
    wait_for(
        lambda: all(r.said("relay.active") or r.said("relay.standby") for r in relays),
        what="both relays to start",
    )
    active = [r for r in relays if r.said("relay.active")]
    assert len(active) == 1
    leader, standby = active[0], next(r for r in relays if r is not active[0])
    register_tools(client, 30)
    head = container.store.head()
    wait_for(lambda: checkpoint(database_url, prefix) >= head, what="the leader to catch up")
    assert leader.batches()
    assert not standby.batches()
    assert not standby.said("relay.active")

    leader.kill()
    killed_at = checkpoint(database_url, prefix)
    register_tools(client, 30)
    head = container.store.head()
    wait_for(lambda: standby.said("relay.active"), what="the standby to take over")
    wait_for(lambda: checkpoint(database_url, prefix) >= head, what="the standby to catch up")
    assert standby.terminate() == 0
    assert standby.batches()[0]["first"] > killed_at
    messages = consume(kafka_bootstrap, event_topics(prefix))
    expected = [r for r in store_records(container.app) if r.position <= head]
    assert_delivered(messages, expected, prefix, max_duplicates=leader.batch_size)


def test_sigterm_finishes_the_batch_and_exits_0(
    client: Any,
    container: Any,
    database_url: str,
    prefix: str,
    processes: Callable[[str], RelayProcess],
) -> None:
    register_tools(client, 100)
    head = container.store.head()
    relay = processes("graceful").start()
    wait_for(lambda: bool(relay.batches()), what="a first batch")
    assert relay.terminate() == 0
    done = relay.batches()
    assert relay.said("relay.stopped")
    assert checkpoint(database_url, prefix) == done[-1]["position"] <= head


def test_without_kafka_bootstrap_servers_the_relay_exits_2(database_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    env["DATABASE_URL"] = database_url
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "relay"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "KAFKA_BOOTSTRAP_SERVERS" in done.stderr


def test_a_bad_kafka_setting_is_named(database_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": database_url, "KAFKA_BOOTSTRAP_SERVERS": "nohost"}
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "relay"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "KAFKA_BOOTSTRAP_SERVERS:" in done.stderr
    assert "HOST:PORT" in done.stderr


class CrashAfterFlush(RuntimeError):
    pass


def test_a_crash_between_flush_and_checkpoint_resends_that_batch_with_the_same_ids(
    client: Any, container: Any, relay_settings: Any, database_url: str, prefix: str
) -> None:
    from infra.kafka.relay import make_producer

    register_tools(client, 3)
    head = container.store.head()

    def crashing_producer(config: Any) -> Any:
        producer = make_producer(config)
        real_flush, crashed = producer.flush, list[bool]()

        def flush(timeout: float | None = None) -> None:
            real_flush(timeout)
            if not crashed:
                crashed.append(True)
                raise CrashAfterFlush  # sent and acked, never checkpointed

        producer.flush = flush
        return producer

    relay, close = build_relay(relay_settings)
    relay.producer_factory = crashing_producer
    try:
        with pytest.raises(CrashAfterFlush):
            relay.run()
    finally:
        close()
    assert checkpoint(database_url, prefix) == 0
    resent = [
        ce_id(m) for m in consume(relay_settings.kafka_bootstrap_servers, event_topics(prefix))
    ]
    assert resent
    with ThreadRelay(relay_settings) as again:
        wait_for(lambda: again.caught_up(database_url, head), what="the restarted relay")
    messages = consume(relay_settings.kafka_bootstrap_servers, event_topics(prefix))
    expected = [r for r in store_records(container.app) if r.position <= head]
    counts = Counter(ce_id(m) for m in messages)
    assert all(counts[i] == 2 for i in resent)
    assert len(messages) == len(expected) + len(resent)
    assert_delivered(messages, expected, prefix, max_duplicates=len(resent))


def test_a_poison_event_goes_to_the_dead_letter_topic_and_the_stream_goes_on(
    relay_settings: Any, kafka_bootstrap: str, prefix: str
) -> None:
    """In a database of its own: a poison event must not reach the other tests' readers."""
    from eventsourcing.persistence import StoredEvent

    from infra.postgres.event_store import eventsourcing_env
    from infra.postgres.schema import ensure_schema
    from tests.conftest import _server_url, _with_db

    name = f"ledger_relay_{uuid.uuid4().hex[:8]}"
    server = _server_url()
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _with_db(server, name)
    try:
        app = LedgerApplication(env=eventsourcing_env(url, 2))
        ensure_schema(url, auto_migrate=True)
        poison = uuid.uuid4()
        app.recorder.insert_events(
            [StoredEvent(poison, 1, "domain.tool:ToolVanished", b"{}")]  # no such class
        )
        good = tool_events_for(app)
        head = int(app.recorder.max_notification_id() or 0)
        app.close()
        with ThreadRelay(relay_settings.model_copy(update={"database_url": url})) as relay:
            wait_for(lambda: relay.caught_up(url, head), what="the relay to pass the poison")
        dead = consume(kafka_bootstrap, [TopicSpec(prefix=prefix).dead_letter])
        tools = consume(kafka_bootstrap, [TopicSpec(prefix=prefix).for_kind("tool") or ""])
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert len(dead) == 1
    assert dead[0].key == str(poison).encode()
    letter = json.loads(dead[0].value)
    assert letter["stored_topic"] == "domain.tool:ToolVanished"
    assert (letter["position"], letter["version"]) == (1, 1)
    assert "ToolVanished" in letter["error"]
    jsonschema.validate(
        letter, json.loads((SCHEMAS / "io.mcp-ledger.relay.DeadLetter.v1.json").read_text())
    )
    assert [from_message(m.key, m.value, m.headers).aggregate_id for m in tools] == [good]


def tool_events_for(app: LedgerApplication) -> Any:
    """Registers one tool straight through the store; returns its id."""
    from datetime import UTC, datetime

    from domain.events import EventMeta
    from domain.tool import register_tool

    meta = EventMeta("test", "req", "cmd", datetime.now(UTC))
    tool_id = uuid.uuid4()
    body = tool_body()
    app.save(register_tool(tool_id, body, meta))
    return tool_id
