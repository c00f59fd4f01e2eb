"""Current state: one row per tool, dataset and document, as of the last applied event.

The handler folds the event into the previous state with the domain's own `evolve`, so the read
model can never disagree with a replay of the store."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import Cursor

from projections.folding import Folded, deleted_at, fold_one
from projections.kinds import KINDS
from projections.records import EventRecord
from projections.search_rows import write_search_rows


class CurrentState:
    name = "current_state"
    kinds = frozenset(KINDS)

    def handles(self, record: EventRecord) -> bool:
        return record.kind in self.kinds

    def apply(self, cur: Cursor[Any], record: EventRecord) -> None:
        kind = KINDS[record.kind]
        cur.execute(
            "SELECT aggregate_version, doc, created_at, deleted_at "  # noqa: S608
            f"FROM {kind.table.name} WHERE id = %s",
            (record.aggregate_id,),
        )
        row = cur.fetchone()
        previous = (
            kind.state_from_doc(record.aggregate_id, row["aggregate_version"], row["doc"])
            if row
            else None
        )
        state = kind.aggregate.evolve(previous, record.to_event())
        created_at = row["created_at"] if row else record.occurred_at
        gone_at = deleted_at(state.deleted, row["deleted_at"] if row else None, record)
        write(cur, record.kind, state, record, created_at, gone_at)

    def apply_batch(self, cur: Cursor[Any], records: Sequence[EventRecord]) -> None:
        """The same effect as `apply` for each record in order, set-based: one read of the
        rows per kind, the folds in memory, each aggregate's final state written once."""
        folded: dict[UUID, Folded] = {}
        for kind, ids in _ids_by_kind(records).items():
            spec = KINDS[kind]
            rows = cur.execute(
                "SELECT id, aggregate_version, doc, created_at, deleted_at "  # noqa: S608
                f"FROM {spec.table.name} WHERE id = ANY(%s)",
                (ids,),
            ).fetchall()
            for row in rows:
                state = spec.state_from_doc(row["id"], row["aggregate_version"], row["doc"])
                folded[row["id"]] = Folded(kind, state, None, row["created_at"], row["deleted_at"])
        for record in records:
            fold_one(folded, record)
        write_all(cur, folded)

    def reset(self, cur: Cursor[Any]) -> None:
        tables = [t for k in KINDS.values() for t in (k.table.name, *k.table.companions)]
        cur.execute(f"TRUNCATE {', '.join(tables)}, rm_search")


def write(  # noqa: PLR0917 - the writers' own arguments, plus the kind
    cur: Cursor[Any], kind: str, state: Any, r: EventRecord, created: datetime,
    deleted: datetime | None,
) -> None:  # fmt: skip
    """Writes an aggregate's current state and, with it, what search reads."""
    KINDS[kind].write(cur, state, r, created, deleted)
    write_search_rows(cur, kind, state, r, deleted is not None)


def write_all(cur: Cursor[Any], folded: dict[UUID, Folded]) -> None:
    """Writes every folded aggregate, pipelined: one round trip, not one per aggregate. (Safe
    on a unix socket: leaving the pipeline flushes all it holds before reading.)"""
    with cur.connection.pipeline():
        for f in folded.values():
            if f.last is not None:
                write(cur, f.kind, f.state, f.last, f.created_at, f.deleted_at)


def _ids_by_kind(records: Sequence[EventRecord]) -> dict[str, list[UUID]]:
    out: dict[str, list[UUID]] = {}
    for r in records:
        ids = out.setdefault(r.kind, [])
        if r.aggregate_id not in ids:
            ids.append(r.aggregate_id)
    return out
