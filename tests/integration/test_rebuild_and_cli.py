"""Rebuild, verify, status and the dead-letter queue, against a real Postgres."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from typing import Any

import pytest

from projections.rebuild import rebuild, stream_log
from projections.records import EventRecord
from projections.verify import differences
from tests.conftest import ROOT, tool_body


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture
def cli_env(database_url: str, secret_key: str) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": database_url, "MCP_LEDGER_SECRET_KEY": secret_key}


def _some_history(client) -> str:  # type: ignore[no-untyped-def]
    tool_id: str = client.post("/api/v1/tools", json=tool_body()).json()["id"]
    client.patch(f"/api/v1/tools/{tool_id}", json={"version": "2.0.0"})
    client.post(f"/api/v1/tools/{tool_id}/activate")
    return tool_id


def test_rebuild_equals_live_projection_and_verifies(client, container) -> None:
    side = container.read_side
    _some_history(client)
    side.follower.catch_up()
    with side.connection() as conn:
        live = conn.execute(
            "SELECT id, doc, aggregate_version FROM rm_tools ORDER BY id"
        ).fetchall()
        live_history = conn.execute("SELECT count(*) AS n FROM rm_history").fetchone()
        head = rebuild(conn, side.runner.projections, side.records_after)
        rebuilt = conn.execute(
            "SELECT id, doc, aggregate_version FROM rm_tools ORDER BY id"
        ).fetchall()
        assert rebuilt == live
        assert conn.execute("SELECT count(*) AS n FROM rm_history").fetchone() == live_history
        assert differences(conn, stream_log(side.records_after)) == []
    assert head == container.store.head()


def test_verify_reports_a_tampered_read_model(client, container) -> None:
    side = container.read_side
    tool_id = _some_history(client)
    side.follower.catch_up()
    with side.connection() as conn:
        conn.execute(
            'UPDATE rm_tools SET doc = (doc::jsonb || \'{"name": "tampered"}\')::json '
            "WHERE id = %s",
            (tool_id,),
        )
        conn.commit()
        problems = differences(conn, stream_log(side.records_after))
        assert any(tool_id in p for p in problems)
        rebuild(conn, side.runner.projections, side.records_after)
        assert differences(conn, stream_log(side.records_after)) == []


class Exploding:
    """A projection whose handler fails for one aggregate until told otherwise."""

    name = "exploding"

    def __init__(self, victim: str) -> None:
        self.victim = victim
        self.broken = True
        self.seen: list[tuple[str, int]] = []

    def handles(self, record: EventRecord) -> bool:
        return record.kind == "tool"

    def apply(self, cur: Any, record: EventRecord) -> None:
        if self.broken and str(record.aggregate_id) == self.victim:
            raise RuntimeError("poison")
        self.seen.append((str(record.aggregate_id), record.version))

    def reset(self, cur: Any) -> None:
        self.seen.clear()


def test_poison_event_blocks_only_its_aggregate_until_retried(client, container) -> None:
    from projections.runner import Runner

    side = container.read_side
    victim = _some_history(client)
    bystander = _some_history(client)
    projection = Exploding(victim)
    runner = Runner([projection], side.events_between)
    records = [
        r for r in side.records_after(0, 100_000) if str(r.aggregate_id) in (victim, bystander)
    ]
    with side.connection() as conn:
        outcome = runner.apply(conn, records, ("log", records[-1].position))
        assert outcome.dead_lettered == 1
        assert outcome.parked == 2
        assert [v for a, v in projection.seen if a == bystander] == [1, 2, 3]
        assert all(a != victim for a, _ in projection.seen)
        projection.broken = False
        retried = runner.retry_dead_letters(conn, "exploding")
        assert retried.applied == 3
        assert [v for a, v in projection.seen if a == victim] == [1, 2, 3]
        open_letters = conn.execute(
            "SELECT count(*) AS n FROM projection_dead_letters "
            "WHERE projection = 'exploding' AND status <> 'resolved'"
        ).fetchone()
        assert open_letters == {"n": 0}


class ExplodingBatch(Exploding):
    """The same, applying batches: a batch holding the victim fails as a whole."""

    def apply_batch(self, cur: Any, records: list[EventRecord]) -> None:
        if self.broken and any(str(r.aggregate_id) == self.victim for r in records):
            raise RuntimeError("poison in the batch")
        self.seen.extend((str(r.aggregate_id), r.version) for r in records)


def test_a_failing_batch_falls_back_and_parks_only_the_poisoned_aggregate(
    client, container
) -> None:
    from projections.runner import Runner

    side = container.read_side
    victim = _some_history(client)
    bystander = _some_history(client)
    projection = ExplodingBatch(victim)
    runner = Runner([projection], side.events_between)

    def records_of_ours(after: int) -> list[EventRecord]:
        return [
            r
            for r in side.records_after(after, 100_000)
            if str(r.aggregate_id) in (victim, bystander)
        ]

    with side.connection() as conn:
        first = records_of_ours(0)
        outcome = runner.apply(conn, first, ("log", first[-1].position))
        assert (outcome.dead_lettered, outcome.parked, outcome.applied) == (1, 2, 3)
        assert [v for a, v in projection.seen if a == bystander] == [1, 2, 3]
        for ref in (victim, bystander):
            client.patch(f"/api/v1/tools/{ref}", json={"description": "later"})
        later = records_of_ours(first[-1].position)
        # The victim is blocked: planned as parked, so the rest of the batch applies set-based.
        outcome = runner.apply(conn, later, ("log", later[-1].position))
        assert (outcome.dead_lettered, outcome.parked, outcome.applied) == (0, 1, 1)
        assert [v for a, v in projection.seen if a == bystander] == [1, 2, 3, 4]
        projection.broken = False
        assert runner.retry_dead_letters(conn, "exploding").applied == 4
        assert [v for a, v in projection.seen if a == victim] == [1, 2, 3, 4]
        again = runner.apply(conn, first + later, ("log", later[-1].position))
        assert (again.applied, again.skipped) == (0, len(first) + len(later))


def test_cli_rebuild_status_verify_and_dlq(client, container, cli_env) -> None:
    _some_history(client)
    rebuilt = _cli(cli_env, "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "verified equal to the replayed store" in rebuilt.stdout
    status = _cli(cli_env, "status", "--json")
    assert status.returncode == 0, status.stderr
    assert '"head"' in status.stdout
    assert '"current_state"' in status.stdout
    assert _cli(cli_env, "verify").returncode == 0
    assert _cli(cli_env, "dlq", "list").returncode == 0
    assert _cli(cli_env, "rebuild", "nonsense").returncode == 2


def test_rebuild_keeps_kafka_progress_usable(client, container) -> None:
    """In Kafka mode a rebuild must not strand read-your-writes: partitions it covered count as
    caught up, and the consumer's checkpoints are kept."""
    from projections.positions import applied_position

    side = container.read_side
    _some_history(client)
    head = container.store.head()
    prefix = f"rb-{uuid.uuid4().hex[:8]}"
    with side.connection() as conn:
        conn.execute(
            "INSERT INTO relay_checkpoints (name, position) VALUES (%s, %s)", (prefix, head)
        )
        for partition, published in ((0, head - 1), (1, head)):
            conn.execute(
                "INSERT INTO relay_partitions (topic, partition, position, kafka_offset) "
                "VALUES (%s, %s, %s, 0)",
                (f"{prefix}.tools.v1", partition, published),
            )
        conn.commit()
        assert applied_position(conn, prefix) == 0  # nothing consumed from Kafka yet
        rebuild(conn, side.runner.projections, side.records_after)
        assert applied_position(conn, prefix) == head
        assert applied_position(conn) == head
