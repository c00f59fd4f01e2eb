"""The applied position in Kafka mode, table-driven on a real database. Each case runs in a
transaction that is rolled back, under its own topic prefix."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from infra.kafka.topics import KIND_TOPICS
from projections.positions import (
    PROJECTED_TOPICS,
    READ_MODELS,
    applied_position,
    kafka_applied_position,
)

T, D, DOC, DLQ = "tools.v1", "datasets.v1", "documents.v1", "deadletter.v1"
Published = dict[tuple[str, int], int]  # (topic suffix, partition) -> last position relayed there
Applied = dict[tuple[str, str, int], int]  # (projection or "*", suffix, partition) -> checkpoint

# name: (relay position or None, published, applied, expected applied position)
CASES: dict[str, tuple[int | None, Published, Applied, int]] = {
    "nothing relayed yet": (None, {}, {}, 0),
    "relayed, nothing projectable published": (10, {}, {}, 10),
    "every partition caught up": (
        10, {(T, 0): 10, (T, 1): 7}, {("*", T, 0): 10, ("*", T, 1): 7}, 10,
    ),
    "one projection behind in one partition": (
        10,
        {(T, 0): 10, (T, 1): 7},
        {("*", T, 0): 10, ("current_state", T, 1): 7, ("history", T, 1): 5},
        5,
    ),
    "a partition never consumed": (10, {(T, 0): 10, (T, 1): 7}, {("*", T, 0): 10}, 0),
    "lowest of several partitions behind": (
        12,
        {(T, 0): 10, (D, 0): 9, (DOC, 2): 12},
        {("*", T, 0): 4, ("*", D, 0): 6, ("*", DOC, 2): 12},
        4,
    ),
    "caught-up partitions do not hold back a later relay position": (
        30, {(T, 0): 10, (D, 1): 20}, {("*", T, 0): 10, ("*", D, 1): 20}, 30,
    ),
    "checkpoint past the published position counts as caught up": (
        15, {(T, 0): 10}, {("*", T, 0): 11}, 15,
    ),
    "the dead-letter topic is not consumed and does not count": (
        10, {(T, 0): 10, (DLQ, 0): 9}, {("*", T, 0): 10}, 10,
    ),
    "a projection with no checkpoint at all": (
        10, {(T, 0): 10}, {("current_state", T, 0): 10}, 0,
    ),
}  # fmt: skip


@pytest.fixture
def conn(container, database_url: str) -> Iterator[psycopg.Connection[Any]]:  # type: ignore[no-untyped-def]
    with psycopg.connect(database_url) as c, c.transaction(force_rollback=True):
        c.execute("DELETE FROM projection_checkpoints")  # rolled back: other tests keep theirs
        yield c


def _seed(
    c: psycopg.Connection[Any],
    prefix: str,
    relay: int | None,
    published: Published,
    applied: Applied,
) -> None:
    if relay is not None:
        c.execute("INSERT INTO relay_checkpoints (name, position) VALUES (%s, %s)", (prefix, relay))
    for (topic, partition), position in published.items():
        c.execute(
            "INSERT INTO relay_partitions (topic, partition, position, kafka_offset) "
            "VALUES (%s, %s, %s, 0)",
            (f"{prefix}.{topic}", partition, position),
        )
    for (projection, topic, partition), position in applied.items():
        for name in READ_MODELS if projection == "*" else (projection,):
            c.execute(
                "INSERT INTO projection_checkpoints (projection, source, position) "
                "VALUES (%s, %s, %s)",
                (name, f"{prefix}.{topic}:{partition}", position),
            )


@pytest.mark.parametrize("case", list(CASES))
def test_kafka_applied_position(conn: psycopg.Connection[Any], case: str) -> None:
    relay, published, applied, expected = CASES[case]
    prefix = f"t{uuid.uuid4().hex[:8]}"
    _seed(conn, prefix, relay, published, applied)
    assert kafka_applied_position(conn, prefix) == expected


def test_another_prefix_does_not_count(conn: psycopg.Connection[Any]) -> None:
    _seed(conn, "old", 50, {(T, 0): 50}, {})  # a topic set nobody consumes any more
    _seed(conn, "new", 40, {(T, 0): 40}, {("*", "tools.v1", 0): 40})
    assert kafka_applied_position(conn, "new") == 40


def test_without_a_prefix_the_relay_written_last_counts(conn: psycopg.Connection[Any]) -> None:
    _seed(conn, "old", 50, {(T, 0): 50}, {})
    _seed(conn, "new", 40, {(T, 0): 40}, {("*", "tools.v1", 0): 40})
    conn.execute("UPDATE relay_checkpoints SET updated_at = now() - interval '1 hour' "
                 "WHERE name = 'old'")  # fmt: skip
    assert kafka_applied_position(conn) == 40


def test_the_configured_feed_decides_which_progress_counts(
    conn: psycopg.Connection[Any],
) -> None:
    conn.execute("DELETE FROM relay_checkpoints")
    _seed(conn, "only", 20, {(T, 0): 20}, {("*", "tools.v1", 0): 12})
    conn.execute(
        "INSERT INTO projection_checkpoints (projection, source, position) "
        "VALUES ('current_state', 'log', 99), ('history', 'log', 99)"
    )
    assert applied_position(conn, "only") == 12  # Kafka feed: per-partition progress
    assert applied_position(conn) == 99  # log feed: a stale log checkpoint of a rebuild


def test_projected_topics_are_the_relays_kind_topics() -> None:
    assert set(PROJECTED_TOPICS) == set(KIND_TOPICS.values())
