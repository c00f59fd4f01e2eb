"""Wires the read side: projections, the runner and the in-process log follower."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import StoredEvent
from psycopg.rows import dict_row

from infra.postgres.event_store import PostgresEventStore
from projections.current_state import CurrentState
from projections.driver import LogFollower
from projections.history import History
from projections.positions import applied_position
from projections.records import EventRecord
from projections.runner import Runner
from projections.vector_index import active_generation

# Sealed values are stored as {"$sealed": ...}: without these bytes nothing needs redacting.
SEALED_MARKER = b'"$sealed"'


class ReadSide:
    def __init__(self, store: PostgresEventStore, kafka_prefix: str | None = None) -> None:
        self.store = store
        # Which feed the read models follow: a relay's Kafka topics, or the log (None).
        self.kafka_prefix = kafka_prefix
        self._listener: psycopg.Connection[Any] | None = None
        self.runner = Runner([CurrentState(), History()], self.events_between)
        self.follower = LogFollower(
            self.runner, self.records_after, self.connection, self.wait_for_change
        )

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        with self.store.datastore.get_connection() as conn:
            conn.row_factory = dict_row
            yield conn

    def records_after(self, position: int, limit: int) -> list[EventRecord]:
        notifications = self.store.app.recorder.select_notifications(
            start=position, limit=limit, inclusive_of_start=False
        )
        mapper = self.store.app.mapper
        return [
            EventRecord.from_event(
                mapper.to_domain_event(  # type: ignore[arg-type]
                    StoredEvent(n.originator_id, n.originator_version, n.topic, n.state)
                ),
                n.id,
                sealed=SEALED_MARKER in n.state,
            )
            for n in notifications
        ]

    def events_between(self, aggregate_id: UUID, after: int, before: int) -> list[EventRecord]:
        page = self.store.load_page(aggregate_id, after, max(before - after - 1, 0))
        return [EventRecord.from_event(s.event, s.position) for s in page]

    def wait_for_change(self, timeout: float) -> None:
        """Blocks until the store NOTIFYs a new event, or `timeout` seconds pass. The listening
        connection stays open, so a NOTIFY sent while we were busy is not lost."""
        if self._listener is None or self._listener.closed:
            kwargs = dict(self.store.datastore.pool.kwargs)
            kwargs.pop("row_factory", None)
            self._listener = psycopg.connect(**kwargs, autocommit=True)
            self._listener.execute("LISTEN ledger_events")
        for _ in self._listener.notifies(timeout=timeout, stop_after=1):
            pass

    def applied_position(self, conn: psycopg.Connection[Any]) -> int:
        return applied_position(conn, self.kafka_prefix)

    def status(self, conn: psycopg.Connection[Any]) -> dict[str, Any]:
        """Store head, relay position, each projection's position and lag, dead letters."""
        head = self.store.head()
        relay = None
        exists = conn.execute("SELECT to_regclass('relay_checkpoints') IS NOT NULL AS t").fetchone()
        if exists and exists["t"]:
            relay = conn.execute("SELECT max(position) AS p FROM relay_checkpoints").fetchone()
        checkpoints = conn.execute(
            "SELECT projection, source, position FROM projection_checkpoints "
            "ORDER BY projection, source"
        ).fetchall()
        letters = {
            r["projection"]: r["n"]
            for r in conn.execute(
                "SELECT projection, count(*) AS n FROM projection_dead_letters "
                "WHERE status <> 'resolved' GROUP BY projection"
            ).fetchall()
        }
        seen = {c["projection"] for c in checkpoints}
        rows = [
            {"name": c["projection"], "source": c["source"], "position": c["position"]}
            for c in checkpoints
        ] + [
            {"name": p.name, "source": "-", "position": 0}
            for p in self.runner.projections
            if p.name not in seen
        ]
        for row in rows:
            row["lag"] = max(head - row["position"], 0) if row["source"] in ("log", "-") else None
            row["dead_letters"] = letters.get(row["name"], 0)
        return {
            "head": head,
            "relay": relay["p"] if relay else None,
            "projections": rows,
            "vectors": _vector_status(conn),
        }

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()


def _vector_status(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """The live vector index generation and the changes still waiting to be indexed."""
    live = active_generation(conn)
    pending = conn.execute(
        "SELECT count(*) AS n, min(position) AS oldest FROM vector_outbox"
    ).fetchone()
    return {
        "generation": live.name if live else None,
        "model": live.model if live else None,
        "dimension": live.dimension if live else None,
        "pending": pending["n"] if pending else 0,
        "oldest_pending_position": pending["oldest"] if pending else None,
    }
