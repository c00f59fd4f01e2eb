"""The dev/test Kafka broker is a real Kafka: topics with explicit partitions, an idempotent
`acks=all` producer with headers, a consumer group with committed offsets, and end offsets."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterator

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

PARTITIONS = 4
KEYS = [f"aggregate-{i}" for i in range(6)]
PER_KEY = 25


@pytest.fixture
def admin(kafka_bootstrap: str) -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="test-admin")
    yield client
    client.close()


@pytest.fixture
def topic(admin: KafkaAdminClient, kafka_unique_name: str) -> Iterator[str]:
    name = f"mcp-ledger.test.{kafka_unique_name}"
    admin.create_topics(
        {name: {"num_partitions": PARTITIONS, "replication_factor": 1}},
        timeout_ms=30_000,
        wait_for_metadata=True,
    )
    yield name
    admin.delete_topics([name], timeout_ms=30_000, raise_errors=False)


def _headers(key: str, seq: int) -> list[tuple[str, bytes]]:
    # CloudEvents 1.0 Kafka binary mode, as the relay will publish them (DESIGN §4)
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", f"{key}:{seq}".encode()),
        ("ce_type", b"mcp-ledger.test.Happened"),
        ("ce_subject", key.encode()),
        ("ce_sequence", str(seq).encode()),
    ]


def test_topic_has_the_requested_partitions(admin: KafkaAdminClient, topic: str) -> None:
    [described] = admin.describe_topics([topic])
    assert described["error_code"] == 0
    assert len(described["partitions"]) == PARTITIONS
    assert sorted(p["partition_index"] for p in described["partitions"]) == list(range(PARTITIONS))
    assert all(p["leader_id"] >= 0 for p in described["partitions"])


def test_idempotent_produce_then_group_consume(
    kafka_bootstrap: str, admin: KafkaAdminClient, topic: str, kafka_unique_name: str
) -> None:
    producer = KafkaProducer(
        bootstrap_servers=kafka_bootstrap,
        enable_idempotence=True,
        acks="all",
        key_serializer=str.encode,
        value_serializer=lambda v: json.dumps(v).encode(),
        linger_ms=5,
    )
    sent: dict[str, list[int]] = defaultdict(list)
    partition_of: dict[str, int] = {}
    futures = []
    for seq in range(1, PER_KEY + 1):  # interleave the keys; each key's order must survive
        for key in KEYS:
            futures.append(
                (
                    key,
                    producer.send(
                        topic, key=key, value={"key": key, "seq": seq}, headers=_headers(key, seq)
                    ),
                )
            )
    producer.flush(timeout=30)
    per_partition: dict[int, int] = defaultdict(int)
    for key, future in futures:
        meta = future.get(timeout=30)
        assert partition_of.setdefault(key, meta.partition) == meta.partition
        per_partition[meta.partition] += 1
        sent[key].append(meta.offset)
    producer.close()
    total = len(KEYS) * PER_KEY
    for offsets in sent.values():  # offsets only grow within a key's partition
        assert offsets == sorted(offsets)

    group = f"group-{kafka_unique_name}"
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        key_deserializer=bytes.decode,
        value_deserializer=json.loads,
    )
    received = []
    deadline = time.monotonic() + 60
    while len(received) < total and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            received.extend(records)
    consumer.commit()

    assert len(received) == total
    seqs: dict[str, list[int]] = defaultdict(list)
    for record in received:
        assert record.value["key"] == record.key
        assert record.partition == partition_of[record.key]
        headers = dict(record.headers)
        assert headers["ce_specversion"] == b"1.0"
        assert headers["ce_subject"] == record.key.encode()
        assert int(headers["ce_sequence"]) == record.value["seq"]
        assert headers["ce_id"] == f"{record.key}:{record.value['seq']}".encode()
        seqs[record.key].append(record.value["seq"])
    assert dict(seqs) == {key: list(range(1, PER_KEY + 1)) for key in KEYS}

    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    ends = consumer.end_offsets(tps)
    # idempotent producer, no retries needed here: exactly what was sent, nothing twice
    assert ends == {TopicPartition(topic, p): per_partition.get(p, 0) for p in range(PARTITIONS)}
    for tp in tps:
        assert consumer.committed(tp) == ends[tp]
    consumer.close()

    # and the group coordinator agrees, seen from another client
    committed = admin.list_group_offsets({group: tps})[group]
    assert {tp: om.offset for tp, om in committed.items()} == ends
