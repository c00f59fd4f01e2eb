"""Version history: one row per aggregate version with the full snapshot and the RFC 6902 JSON
Patch from the previous version."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from psycopg import Cursor

from projections.folding import HISTORY_COLUMNS, Folded, fold_one, history_row
from projections.kinds import KINDS
from projections.records import EventRecord


def copy_history(cur: Cursor[Any], rows: Sequence[tuple[Any, ...]]) -> None:
    with cur.copy(f"COPY rm_history ({HISTORY_COLUMNS}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


class History:
    name = "history"

    def handles(self, record: EventRecord) -> bool:
        return record.kind in KINDS

    def apply(self, cur: Cursor[Any], record: EventRecord) -> None:
        self.apply_batch(cur, [record])

    def apply_batch(self, cur: Cursor[Any], records: Sequence[EventRecord]) -> None:
        """The same rows as `apply` for each record in order: one read of the snapshots the
        batch starts from, the folds and patches in memory, one COPY."""
        folded = self._seed(cur, records)
        rows = [history_row(fold_one(folded, r), r) for r in records]
        copy_history(cur, rows)

    @staticmethod
    def _seed(cur: Cursor[Any], records: Sequence[EventRecord]) -> dict[UUID, Folded]:
        starts: dict[UUID, tuple[str, int]] = {}
        for r in records:
            starts.setdefault(r.aggregate_id, (r.kind, r.version - 1))
        wanted = {a: kv for a, kv in starts.items() if kv[1] > 0}
        if not wanted:
            return {}
        rows = cur.execute(
            "SELECT h.aggregate_id, h.snapshot, h.occurred_at FROM rm_history h "
            "JOIN unnest(%s::uuid[], %s::int[]) AS w(id, v) "
            "ON h.aggregate_id = w.id AND h.version = w.v",
            (list(wanted), [v for _, v in wanted.values()]),
        ).fetchall()
        folded = {}
        for row in rows:
            kind, version = wanted.pop(row["aggregate_id"])
            state = KINDS[kind].state_from_doc(row["aggregate_id"], version, row["snapshot"])
            folded[row["aggregate_id"]] = Folded(
                kind, state, None, row["occurred_at"], snapshot=row["snapshot"]
            )
        if wanted:
            aggregate_id, (_, version) = next(iter(wanted.items()))
            raise LookupError(f"history of {aggregate_id} lacks v{version}")
        return folded

    def reset(self, cur: Cursor[Any]) -> None:
        cur.execute("TRUNCATE rm_history")
