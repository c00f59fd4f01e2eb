"""Checks read models against the state replayed from the event store, independently of the
projection code: group the log per aggregate, `replay` each with the domain, compare."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any
from uuid import UUID

from psycopg import Connection

from domain.events import DomainEvent
from domain.secrets import redact_sealed
from projections.kinds import KINDS
from projections.records import EventRecord


def replayed_states(records: Iterable[EventRecord]) -> dict[UUID, tuple[str, Any]]:
    events: dict[UUID, list[DomainEvent]] = defaultdict(list)
    kinds: dict[UUID, str] = {}
    for r in records:
        if r.kind in KINDS:
            events[r.aggregate_id].append(r.to_event())
            kinds[r.aggregate_id] = r.kind
    return {
        aid: (kinds[aid], KINDS[kinds[aid]].aggregate.replay(evs)) for aid, evs in events.items()
    }


def differences(
    conn: Connection[Any], records: Iterable[EventRecord], limit: int = 20
) -> list[str]:
    """Human-readable mismatches between the read models and the replayed store (empty if equal)."""
    expected = replayed_states(records)
    found: list[str] = []
    rows: dict[UUID, dict[str, Any]] = {}
    for kind, spec in KINDS.items():
        table = spec.table.name
        for row in conn.execute(f"SELECT id, aggregate_version, doc FROM {table}").fetchall():  # noqa: S608
            rows[row["id"]] = {**row, "kind": kind}
    history = {
        r["aggregate_id"]: r
        for r in conn.execute(
            "SELECT DISTINCT ON (aggregate_id) aggregate_id, version, snapshot, "
            "count(*) OVER (PARTITION BY aggregate_id) AS n "
            "FROM rm_history ORDER BY aggregate_id, version DESC"
        ).fetchall()
    }
    for aggregate_id, (kind, state) in expected.items():
        doc = redact_sealed(state.fields())
        row = rows.pop(aggregate_id, None)
        if row is None or row["kind"] != kind:
            found.append(f"{kind} {aggregate_id}: missing from current state")
        elif row["aggregate_version"] != state.aggregate_version or row["doc"] != doc:
            found.append(
                f"{kind} {aggregate_id}: current state differs at v{row['aggregate_version']}"
            )
        h = history.pop(aggregate_id, None)
        if (
            h is None
            or h["n"] != state.aggregate_version
            or h["version"] != state.aggregate_version
        ):
            found.append(f"{kind} {aggregate_id}: history incomplete")
        elif h["snapshot"] != doc:
            found.append(f"{kind} {aggregate_id}: last history snapshot differs")
    found += [
        f"{r['kind']} {aid}: in current state but not in the store" for aid, r in rows.items()
    ]
    found += [f"{aid}: in history but not in the store" for aid in history]
    return found[:limit]
