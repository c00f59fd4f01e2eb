"""Current state: one row per tool, dataset and document, as of the last applied event.

The handler folds the event into the previous state with the domain's own `evolve`, so the read
model can never disagree with a replay of the store."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from psycopg import Cursor

from projections.bulk_rows import upsert_json
from projections.folding import Folded, fold_one
from projections.kinds import KINDS
from projections.kinds.base import Written
from projections.records import EventRecord
from projections.search_rows import write_search_rows


class CurrentState:
    name = "current_state"
    kinds = frozenset(KINDS)

    def handles(self, record: EventRecord) -> bool:
        return record.kind in self.kinds

    def apply(self, cur: Cursor[Any], record: EventRecord) -> None:
        self.apply_batch(cur, [record])

    def apply_batch(self, cur: Cursor[Any], records: Sequence[EventRecord]) -> None:
        """The same effect as `apply` for each record in order, set-based: one read of the
        rows per kind, the folds in memory (the domain's own `evolve`), each aggregate's final
        state written once."""
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


def write_all(cur: Cursor[Any], folded: dict[UUID, Folded], chunk: int = 1000) -> None:
    """Writes every folded aggregate's current state and, with it, what search reads: a few
    statements per kind and `chunk` aggregates, whatever the number of events folded."""
    by_kind: dict[str, list[Written]] = {}
    for f in folded.values():
        if f.last is not None:
            one = Written(f.state, f.last, f.created_at, f.deleted_at)
            by_kind.setdefault(f.kind, []).append(one)
    for kind, written in by_kind.items():
        spec = KINDS[kind]
        for start in range(0, len(written), chunk):
            part = written[start : start + chunk]
            upsert_json(cur, spec.table.name, [spec.row(w) for w in part], spec.table.keep)
            if spec.write_companions is not None:
                spec.write_companions(cur, part)
            write_search_rows(cur, kind, part)


def _ids_by_kind(records: Sequence[EventRecord]) -> dict[str, list[UUID]]:
    out: dict[str, dict[UUID, None]] = {}
    for r in records:
        out.setdefault(r.kind, {})[r.aggregate_id] = None
    return {kind: list(ids) for kind, ids in out.items()}
