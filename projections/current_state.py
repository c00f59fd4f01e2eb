"""Current state: one row per tool, dataset and document, as of the last applied event.

The handler folds the event into the previous state with the domain's own `evolve`, so the read
model can never disagree with a replay of the store."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import Cursor

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


def deleted_at(deleted: bool, before: datetime | None, record: EventRecord) -> datetime | None:
    """When a deleted aggregate was deleted: kept across later events, cleared by a restore."""
    if not deleted:
        return None
    return before or record.occurred_at
