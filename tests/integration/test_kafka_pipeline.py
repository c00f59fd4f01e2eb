"""The scale-out read side end to end: commands through the API, `mcp-ledger relay` and
`mcp-ledger projector --source kafka` (the Faust worker) as real subprocesses, a real Kafka broker
and a real Postgres. This module has its own database and topic prefix, so the read models hold
exactly what its commands wrote and nothing else feeds them."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from projections.positions import applied_position
from projections.rebuild import stream_log
from projections.verify import differences
from tests.conftest import tool_body
from tests.kafka_pipeline_support import (
    Pipeline,
    committed_positions,
    dataset_lifecycle,
    document_lifecycle,
    fresh_database,
    history_versions,
    ok,
    pipeline_env,
    query,
    tool_lifecycle,
    wait_for,
)

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def kafka_database_url() -> Iterator[str]:
    """This module's own database: the session one holds other tests' events and damage."""
    with fresh_database("kp") as url:
        yield url


@pytest.fixture(scope="module")
def kafka_prefix() -> str:
    return f"t-kp-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def kafka_container(  # type: ignore[no-untyped-def]
    kafka_database_url: str, secret_key: str, tmp_path_factory, kafka_prefix: str
):
    from infra.container import build_container
    from infra.settings import load_settings

    settings = load_settings(
        database_url=kafka_database_url,
        secret_key=secret_key,
        data_dir=tmp_path_factory.mktemp("kafka-data"),
        read_wait_seconds=60,  # the first reads may wait for the projector to join its group
        read_feed="kafka",
        kafka_topic_prefix=kafka_prefix,
        auth="off",  # access control is tested in test_access_control.py
        rate_limit="off",
        vectors="off",  # the session app keeps the vector index
    )
    container = build_container(settings)
    yield container
    container.close()


@pytest.fixture(scope="module")
def client(kafka_container) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    """The API over this module's database; it does not project (the Kafka pipeline does)."""
    from fastapi.testclient import TestClient

    from api.app import create_app

    with TestClient(create_app(kafka_container), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def pipeline(
    kafka_bootstrap: str,
    kafka_database_url: str,
    kafka_container,  # the schema exists before the services start
    secret_key: str,
    tmp_path_factory: pytest.TempPathFactory,
    kafka_prefix: str,
) -> Iterator[Pipeline]:
    prefix = kafka_prefix
    logs = tmp_path_factory.mktemp("kafka-pipeline")
    env = pipeline_env(kafka_database_url, secret_key, kafka_bootstrap, prefix, logs)
    p = Pipeline(kafka_database_url, prefix, env, logs)
    p.start_relay()
    p.start_projector()
    try:
        yield p
    finally:
        p.stop()


# --- every event type ---------------------------------------------------------------------------


EXPECTED_TYPES = {
    "tool": ["ToolRegistered", "ToolUpdated", "ToolStatusChanged", "ToolStatusChanged",
             "ToolDeleted", "ToolRestored"],
    "dataset": ["DatasetRegistered", "DatasetDescribed", "DatasetColumnsChanged",
                "DatasetProfileRecorded", "DatasetArchived", "DatasetUnarchived", "DatasetDeleted",
                "DatasetRestored"],
    "document": ["DocumentAdded", "DocumentRevised", "DocumentRetagged", "DocumentRemoved",
                 "DocumentRestored"],
}  # fmt: skip


def test_every_event_type_reaches_the_read_models_through_kafka(
    client: httpx.Client, pipeline: Pipeline, kafka_container: Any
) -> None:
    db = pipeline.database_url
    last = {
        "tool": tool_lifecycle(client),
        "dataset": dataset_lifecycle(client),
        "document": document_lifecycle(client),
    }
    for kind, written in last.items():
        # Read-your-writes in Kafka mode: the API waits on the per-partition applied position.
        read = client.get(
            f"/api/v1/{kind}s/{written['id']}", params={"min_position": written["position"]}
        )
        assert ok(read)["version"] == written["version"]
        assert int(read.headers["X-Ledger-Position"]) >= written["position"]
    for kind, written in last.items():
        wait_for(
            lambda w=written: history_versions(db, w["id"]) == list(range(1, w["version"] + 1)),
            f"the {kind}'s history",
        )
        pipeline.check_alive()

    for kind, written in last.items():
        types = query(db, "SELECT event_type FROM rm_history WHERE aggregate_id = %s "
                          "ORDER BY version", written["id"])  # fmt: skip
        assert [t["event_type"] for t in types] == EXPECTED_TYPES[kind][: written["version"]]
    tables = {"tool": "rm_tools", "dataset": "rm_datasets", "document": "rm_documents"}
    for kind, written in last.items():
        wait_for(
            lambda k=kind, w=written: query(
                db, f"SELECT aggregate_version, deleted_at FROM {tables[k]} WHERE id = %s",
                w["id"],
            ) == [{"aggregate_version": w["version"], "deleted_at": None}],
            f"the {kind}'s current state",
        )  # fmt: skip
    tool = query(db, "SELECT status, semver, tags, doc FROM rm_tools WHERE id = %s",
                 last["tool"]["id"])[0]  # fmt: skip
    assert (tool["status"], tool["semver"], tool["tags"]) == ("deprecated", "1.1.0", ["a", "b"])
    assert tool["doc"]["config"] == {"api_token": "***"}
    columns = query(db, "SELECT name, type FROM rm_dataset_columns WHERE dataset_id = %s "
                        "ORDER BY ordinal", last["dataset"]["id"])  # fmt: skip
    assert columns == [{"name": "order_id", "type": "uuid"}, {"name": "amount", "type": "numeric"}]
    document = query(db, "SELECT title, tags FROM rm_documents WHERE id = %s",
                     last["document"]["id"])[0]  # fmt: skip
    assert document == {"title": "How orders are counted, revised", "tags": ["ops", "sales"]}

    side = kafka_container.read_side
    with side.connection() as conn:
        assert differences(conn, stream_log(side.records_after)) == []
        head = max(w["position"] for w in last.values())
        # Kafka mode: progress is read per topic partition.
        wait_for(
            lambda: applied_position(conn, pipeline.prefix) >= head,
            "the applied position to reach the head",
        )
        sources = {r["source"] for r in conn.execute(
            "SELECT DISTINCT source FROM projection_checkpoints").fetchall()}  # fmt: skip
    assert all(s.startswith(pipeline.prefix + ".") for s in sources), sources
    assert {s.rsplit(":", 1)[0] for s in sources} == {
        pipeline.topic(t) for t in ("tools.v1", "datasets.v1", "documents.v1")
    }


# --- a poison event -----------------------------------------------------------------------------


def dead_letters(database_url: str, aggregate_id: str) -> list[tuple[str, int, str]]:
    rows = query(
        database_url,
        "SELECT projection, version, status FROM projection_dead_letters "
        "WHERE aggregate_id = %s AND status <> 'resolved' ORDER BY projection, version",
        aggregate_id,
    )
    return [(r["projection"], r["version"], r["status"]) for r in rows]


def dead_letter_messages(bootstrap: str, topic: str, key: str, timeout: float = 60) -> list[Any]:
    """The messages keyed `key` in the dead-letter topic, waiting until at least one arrives."""
    from kafka import KafkaConsumer  # type: ignore[attr-defined]

    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap.split(","), group_id=None,
        auto_offset_reset="earliest", enable_auto_commit=False,
    )  # fmt: skip
    found: list[Any] = []
    try:
        deadline = time.monotonic() + timeout
        while not found and time.monotonic() < deadline:
            for messages in consumer.poll(timeout_ms=500).values():
                found += [m for m in messages if m.key == key.encode()]
    finally:
        consumer.close()
    return found


def test_a_poison_event_blocks_only_its_aggregate_until_repaired_and_retried(
    client: httpx.Client, pipeline: Pipeline, kafka_bootstrap: str
) -> None:
    db = pipeline.database_url
    victim = ok(client.post("/api/v1/tools", json=tool_body()))["id"]
    bystander = ok(client.post("/api/v1/tools", json=tool_body()))["id"]
    for tool_id in (victim, bystander):
        wait_for(lambda t=tool_id: history_versions(db, t) == [1], "the tools' first versions")

    # Damage the history read model: the victim's next version cannot find its predecessor.
    with psycopg.connect(db) as conn:
        conn.execute("CREATE TABLE lost_history AS SELECT * FROM rm_history "
                     "WHERE aggregate_id = %s", (victim,))  # fmt: skip
        conn.execute("DELETE FROM rm_history WHERE aggregate_id = %s", (victim,))
    ok(client.patch(f"/api/v1/tools/{victim}", json={"description": "v2"}))
    ok(client.patch(f"/api/v1/tools/{victim}", json={"description": "v3"}))
    wait_for(
        lambda: dead_letters(db, victim) == [("history", 2, "failed"), ("history", 3, "parked")],
        "the victim's dead letter and the event parked behind it",
    )

    # Later events of another aggregate still apply, and the victim's current state too.
    ok(client.patch(f"/api/v1/tools/{bystander}", json={"description": "v2"}))
    wait_for(lambda: history_versions(db, bystander) == [1, 2], "the bystander's next version")
    rows = query(db, "SELECT aggregate_version FROM rm_tools WHERE id = %s", victim)
    assert rows == [{"aggregate_version": 3}]
    assert history_versions(db, victim) == []
    pipeline.check_alive()

    letters = dead_letter_messages(kafka_bootstrap, pipeline.topic("deadletter.v1"), victim)
    headers = dict(letters[0].headers)
    assert headers["projection"] == b"history"
    assert headers["error"].startswith(b"LookupError")
    assert b'"version": 2' in letters[0].value

    # Repair the read model, then replay the dead letters.
    with psycopg.connect(db) as conn:
        conn.execute("INSERT INTO rm_history SELECT * FROM lost_history")
        conn.execute("DROP TABLE lost_history")
    retried = pipeline.cli("dlq", "retry")
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert "applied 2" in retried.stdout
    assert history_versions(db, victim) == [1, 2, 3]
    assert dead_letters(db, victim) == []

    # The aggregate flows through Kafka again.
    ok(client.patch(f"/api/v1/tools/{victim}", json={"description": "v4"}))
    wait_for(lambda: history_versions(db, victim) == [1, 2, 3, 4], "the victim's next version")


# --- stop and restart (runs last: it restarts the projector) ------------------------------------


def test_sigterm_commits_only_what_was_applied_and_a_restart_resumes(
    client: httpx.Client, pipeline: Pipeline, kafka_bootstrap: str, kafka_container: Any
) -> None:
    db = pipeline.database_url
    written = [ok(client.post("/api/v1/tools", json=tool_body())) for _ in range(20)]
    assert pipeline.projector is not None
    pipeline.projector.terminate()  # mid-stream
    written += [ok(client.post("/api/v1/tools", json=tool_body())) for _ in range(40)]
    assert pipeline.stop_projector() == 0, pipeline.projector.log_tail()

    topic = pipeline.topic("tools.v1")
    applied = {
        r["source"]: r["position"]
        for r in query(db, "SELECT source, min(position) AS position FROM projection_checkpoints "
                           "WHERE source LIKE %s GROUP BY source", topic + ":%")
    }  # fmt: skip
    committed = committed_positions(kafka_bootstrap, f"{pipeline.prefix}-projector", topic)
    assert committed, "the projector committed nothing on SIGTERM"
    for partition, position in committed.items():
        assert applied[f"{topic}:{partition}"] >= position, "an offset committed before applied"

    pipeline.start_projector()
    for tool in written:
        wait_for(lambda t=tool: history_versions(db, t["id"]) == [1], "every tool after restart")
    side = kafka_container.read_side
    with side.connection() as conn:
        assert differences(conn, stream_log(side.records_after)) == []
