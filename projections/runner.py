"""Applies event records to projections with exactly-once effect.

Per projection and aggregate, an event applies only if it is the next version: duplicates and
older versions are skipped, a gap is healed from the event store, and the row writes commit with
the version bump and the checkpoint in one transaction. A handler that raises dead-letters its
event; later events of that aggregate are parked behind it (order per aggregate is never broken)
while other aggregates keep flowing."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable
from uuid import UUID

import structlog
from psycopg import Connection, Cursor
from psycopg.types.json import Jsonb

from projections import advisory_locks
from projections.records import EventRecord, record_from_json, record_to_json

log = structlog.get_logger("projections")

# Reads the events of one aggregate from the store: (aggregate, after_version, before_version).
EventSource = Callable[[UUID, int, int], list[EventRecord]]
DeadLetterHook = Callable[[str, EventRecord, str], None]
PROJECTION_LOCK = advisory_locks.PROJECTIONS


class Projection(Protocol):
    name: str

    def handles(self, record: EventRecord) -> bool: ...

    def apply(self, cur: Cursor[Any], record: EventRecord) -> None: ...

    def reset(self, cur: Cursor[Any]) -> None: ...


@runtime_checkable
class BatchProjection(Projection, Protocol):
    """A projection that can apply many records at once, with the effect of applying each."""

    def apply_batch(self, cur: Cursor[Any], records: Sequence[EventRecord]) -> None: ...


@dataclass
class _Plan:
    apply: list[EventRecord] = field(default_factory=list)
    park: list[EventRecord] = field(default_factory=list)
    versions: dict[UUID, int] = field(default_factory=dict)
    skipped: int = 0
    healed: int = 0


@dataclass
class Outcome:
    applied: int = 0
    skipped: int = 0
    healed: int = 0
    dead_lettered: int = 0
    parked: int = 0
    failures: list[str] = field(default_factory=list)


class Runner:
    def __init__(
        self,
        projections: Sequence[Projection],
        source: EventSource,
        on_dead_letter: DeadLetterHook | None = None,
    ) -> None:
        self.projections = list(projections)
        self.source = source
        self.on_dead_letter = on_dead_letter

    def apply(
        self, conn: Connection[Any], records: Iterable[EventRecord], checkpoint: tuple[str, int]
    ) -> Outcome:
        """Applies records in order and moves every projection's checkpoint for `source`."""
        records = list(records)
        outcome = Outcome()
        with conn.transaction(), conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock_shared(%s)", (PROJECTION_LOCK,))
            for projection in self.projections:
                mine = [r for r in records if projection.handles(r)]
                if len(mine) > 1 and isinstance(projection, BatchProjection):
                    self._apply_batch(cur, projection, mine, outcome)
                else:
                    for record in mine:
                        self._apply_guarded(cur, projection, record, outcome)
            source, position = checkpoint
            for projection in self.projections:
                _checkpoint(cur, projection.name, source, position)
        return outcome

    def _apply_batch(
        self, cur: Cursor[Any], p: BatchProjection, records: list[EventRecord], outcome: Outcome
    ) -> None:
        """The records set-based, in one savepoint: the same rules as `_apply_guarded`, decided
        up front from one read of the versions and the blocked aggregates. If the batch fails,
        it is undone and applied record by record, so only the failing aggregate dead-letters."""
        plan = self._plan(cur, p.name, records)
        try:
            if plan.apply:  # e.g. a redelivered batch: nothing to write
                self._write_batch(cur, p, plan)
        except Exception as exc:  # isolate the failure per aggregate, below
            log.warning("batch_fallback", projection=p.name, size=len(records), error=str(exc))
            for record in records:
                self._apply_guarded(cur, p, record, outcome)
            return
        for record in plan.park:
            _park(cur, p.name, record, "waiting behind an earlier dead-lettered event", "parked")
        outcome.applied += len(plan.apply)
        outcome.healed += plan.healed
        outcome.skipped += plan.skipped
        outcome.parked += len(plan.park)

    @staticmethod
    def _write_batch(cur: Cursor[Any], p: BatchProjection, plan: _Plan) -> None:
        with cur.connection.transaction():
            p.apply_batch(cur, plan.apply)
            _set_versions(cur, p.name, plan.versions)

    def _plan(self, cur: Cursor[Any], name: str, records: list[EventRecord]) -> _Plan:
        ids = list(dict.fromkeys(r.aggregate_id for r in records))
        versions = _applied_versions(cur, name, ids)
        blocked = _blocked_among(cur, name, ids)
        plan = _Plan()
        for r in records:
            current = versions.get(r.aggregate_id, 0)
            if r.version <= current:
                plan.skipped += 1
            elif r.aggregate_id in blocked:
                plan.park.append(r)
            else:
                if r.version > current + 1:
                    missing = self.source(r.aggregate_id, current, r.version)
                    plan.apply.extend(missing)
                    plan.healed += len(missing)
                plan.apply.append(r)
                versions[r.aggregate_id] = plan.versions[r.aggregate_id] = r.version
        return plan

    def _apply_guarded(
        self, cur: Cursor[Any], p: Projection, record: EventRecord, outcome: Outcome
    ) -> None:
        current = _applied_version(cur, p.name, record.aggregate_id)
        if record.version <= current:
            outcome.skipped += 1
            return
        if _blocked(cur, p.name, record.aggregate_id):
            _park(cur, p.name, record, "waiting behind an earlier dead-lettered event", "parked")
            outcome.parked += 1
            return
        if record.version > current + 1:
            for missing in self.source(record.aggregate_id, current, record.version):
                if not self._apply_one(cur, p, missing, outcome):
                    _park(cur, p.name, record, "waiting behind a dead-lettered event", "parked")
                    outcome.parked += 1
                    return
                outcome.healed += 1
        self._apply_one(cur, p, record, outcome)

    def _apply_one(
        self, cur: Cursor[Any], p: Projection, record: EventRecord, outcome: Outcome
    ) -> bool:
        try:
            with cur.connection.transaction():
                p.apply(cur, record)
                _set_version(cur, p.name, record.aggregate_id, record.version)
        except Exception as exc:  # a handler failure must not stop other aggregates
            error = f"{type(exc).__name__}: {exc}"
            _park(cur, p.name, record, error, "failed")
            outcome.dead_lettered += 1
            outcome.failures.append(error)
            log.error(
                "dead_lettered",
                projection=p.name,
                aggregate_id=str(record.aggregate_id),
                version=record.version,
                position=record.position,
                error=error,
            )
            if self.on_dead_letter:
                self.on_dead_letter(p.name, record, error)
            return False
        outcome.applied += 1
        return True

    def retry_dead_letters(self, conn: Connection[Any], projection: str | None = None) -> Outcome:
        """Re-applies each blocked aggregate's dead-lettered and parked events in version order,
        stopping at the first that fails again."""
        outcome = Outcome()
        by_name = {p.name: p for p in self.projections}
        with conn.transaction(), conn.cursor() as cur:
            for name, aggregate_id in _blocked_aggregates(cur, projection):
                p = by_name[name]
                for row_id, record in _open_letters(cur, name, aggregate_id):
                    if record.version <= _applied_version(cur, name, aggregate_id):
                        _resolve(cur, row_id)
                        continue
                    cur.execute(
                        "UPDATE projection_dead_letters SET status = 'retrying' WHERE id = %s",
                        (row_id,),
                    )
                    if not self._apply_one(cur, p, record, outcome):
                        break
                    _resolve(cur, row_id)
        return outcome


def _applied_version(cur: Cursor[Any], projection: str, aggregate_id: UUID) -> int:
    cur.execute(
        "SELECT version FROM projection_versions WHERE projection = %s AND aggregate_id = %s "
        "FOR UPDATE",
        (projection, aggregate_id),
    )
    row = cur.fetchone()
    return int(row["version"]) if row else 0


def _applied_versions(cur: Cursor[Any], projection: str, ids: list[UUID]) -> dict[UUID, int]:
    # Locked in id order, so two appliers can never wait on each other's rows.
    cur.execute(
        "SELECT aggregate_id, version FROM projection_versions WHERE projection = %s "
        "AND aggregate_id = ANY(%s) ORDER BY aggregate_id FOR UPDATE",
        (projection, ids),
    )
    return {r["aggregate_id"]: int(r["version"]) for r in cur.fetchall()}


def _set_versions(cur: Cursor[Any], projection: str, versions: dict[UUID, int]) -> None:
    cur.execute(
        "INSERT INTO projection_versions (projection, aggregate_id, version) "
        "SELECT %s, a, v FROM unnest(%s::uuid[], %s::int[]) AS t(a, v) "
        "ON CONFLICT (projection, aggregate_id) DO UPDATE SET version = EXCLUDED.version",
        (projection, list(versions), list(versions.values())),
    )


def _blocked_among(cur: Cursor[Any], projection: str, ids: list[UUID]) -> set[UUID]:
    cur.execute(
        "SELECT DISTINCT aggregate_id FROM projection_dead_letters WHERE projection = %s "
        "AND aggregate_id = ANY(%s) AND status <> 'resolved'",
        (projection, ids),
    )
    return {r["aggregate_id"] for r in cur.fetchall()}


def _set_version(cur: Cursor[Any], projection: str, aggregate_id: UUID, version: int) -> None:
    cur.execute(
        "INSERT INTO projection_versions (projection, aggregate_id, version) VALUES (%s, %s, %s) "
        "ON CONFLICT (projection, aggregate_id) DO UPDATE SET version = EXCLUDED.version",
        (projection, aggregate_id, version),
    )


def _blocked(cur: Cursor[Any], projection: str, aggregate_id: UUID) -> bool:
    cur.execute(
        "SELECT 1 FROM projection_dead_letters WHERE projection = %s AND aggregate_id = %s "
        "AND status <> 'resolved' LIMIT 1",
        (projection, aggregate_id),
    )
    return cur.fetchone() is not None


def _park(cur: Cursor[Any], projection: str, record: EventRecord, error: str, status: str) -> None:
    cur.execute(
        """INSERT INTO projection_dead_letters
            (projection, aggregate_id, version, position, event_type, record, error, status)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (projection, aggregate_id, version)
        DO UPDATE SET error = EXCLUDED.error, status = EXCLUDED.status""",
        (projection, record.aggregate_id, record.version, record.position, record.type,
         Jsonb(record_to_json(record)), error, status),
    )  # fmt: skip


def _resolve(cur: Cursor[Any], row_id: int) -> None:
    cur.execute("UPDATE projection_dead_letters SET status = 'resolved' WHERE id = %s", (row_id,))


def _blocked_aggregates(cur: Cursor[Any], projection: str | None) -> list[tuple[str, UUID]]:
    cur.execute(
        "SELECT DISTINCT projection, aggregate_id FROM projection_dead_letters "
        "WHERE status <> 'resolved' AND (%s::text IS NULL OR projection = %s)",
        (projection, projection),
    )
    return [(r["projection"], r["aggregate_id"]) for r in cur.fetchall()]


def _open_letters(
    cur: Cursor[Any], projection: str, aggregate_id: UUID
) -> list[tuple[int, EventRecord]]:
    cur.execute(
        "SELECT id, record FROM projection_dead_letters WHERE projection = %s "
        "AND aggregate_id = %s AND status <> 'resolved' ORDER BY version",
        (projection, aggregate_id),
    )
    return [(r["id"], record_from_json(r["record"])) for r in cur.fetchall()]


def _checkpoint(cur: Cursor[Any], projection: str, source: str, position: int) -> None:
    cur.execute(
        """INSERT INTO projection_checkpoints (projection, source, position) VALUES (%s, %s, %s)
        ON CONFLICT (projection, source) DO UPDATE
        SET position = GREATEST(projection_checkpoints.position, EXCLUDED.position),
            updated_at = now()""",
        (projection, source, position),
    )
