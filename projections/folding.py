"""Folding events into aggregate state in memory, with the domain's own `evolve`: the whole log
for a rebuild, one batch for the live runner. Both write what a replay of the store gives."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.types.json import Json

from projections.json_diff import json_diff
from projections.kinds import KINDS
from projections.records import EventRecord

HISTORY_COLUMNS = (
    "aggregate_id, version, kind, position, event_type, snapshot, patch, actor, reason, "
    "correlation_id, causation_id, occurred_at"
)


@dataclass
class Folded:
    """One aggregate while its events are folded: its state, its last event folded (None while
    only seeded from a read model), and the snapshot history patches are taken against."""

    kind: str
    state: Any
    last: EventRecord | None
    created_at: datetime
    deleted_at: datetime | None = None
    snapshot: dict[str, Any] = field(default_factory=dict)


def fold_one(folded: dict[UUID, Folded], r: EventRecord) -> Folded:
    prior = folded.get(r.aggregate_id)
    state = KINDS[r.kind].aggregate.evolve(prior.state if prior else None, r.to_event())
    if prior is None:
        prior = folded[r.aggregate_id] = Folded(r.kind, state, r, r.occurred_at)
    prior.deleted_at = deleted_at(state.deleted, prior.deleted_at, r)
    prior.state, prior.last = state, r
    return prior


def history_row(f: Folded, r: EventRecord) -> tuple[Any, ...]:
    """The history row of `r`, just folded into `f`: its snapshot and the patch from the last."""
    after = snapshot_of(f.state)
    patch = json_diff(f.snapshot, after)
    f.snapshot = after
    return (r.aggregate_id, r.version, r.kind, r.position, r.type, Json(after), Json(patch),
            r.actor, r.reason, r.correlation_id, r.causation_id, r.occurred_at)  # fmt: skip


def snapshot_of(state: Any) -> dict[str, Any]:
    # States here are folded from EventRecords, whose secrets are already redacted.
    return state.fields()  # type: ignore[no-any-return]


def deleted_at(deleted: bool, before: datetime | None, record: EventRecord) -> datetime | None:
    """When a deleted aggregate was deleted: kept across later events, cleared by a restore."""
    if not deleted:
        return None
    return before or record.occurred_at
