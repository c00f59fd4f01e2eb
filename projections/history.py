"""Version history: one row per aggregate version with the full snapshot and the RFC 6902 JSON
Patch from the previous version."""

from __future__ import annotations

from typing import Any

from psycopg import Cursor
from psycopg.types.json import Json

from projections.json_diff import json_diff
from projections.kinds import KINDS
from projections.records import EventRecord


def snapshot_of(state: Any) -> dict[str, Any]:
    # States here are folded from EventRecords, whose secrets are already redacted.
    return state.fields()  # type: ignore[no-any-return]


class History:
    name = "history"

    def handles(self, record: EventRecord) -> bool:
        return record.kind in KINDS

    def apply(self, cur: Cursor[Any], record: EventRecord) -> None:
        kind = KINDS[record.kind]
        before: dict[str, Any] | None = None
        previous = None
        if record.version > 1:
            cur.execute(
                "SELECT snapshot FROM rm_history WHERE aggregate_id = %s AND version = %s",
                (record.aggregate_id, record.version - 1),
            )
            row = cur.fetchone()
            if row is None:
                raise LookupError(f"history of {record.aggregate_id} lacks v{record.version - 1}")
            before = row["snapshot"]
            previous = kind.state_from_doc(record.aggregate_id, record.version - 1, before)
        after = snapshot_of(kind.aggregate.evolve(previous, record.to_event()))
        patch = json_diff(before or {}, after)
        cur.execute(
            """INSERT INTO rm_history (aggregate_id, version, kind, position, event_type, snapshot,
                patch, actor, reason, correlation_id, causation_id, occurred_at)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            (record.aggregate_id, record.version, record.kind, record.position, record.type,
             Json(after), Json(patch), record.actor, record.reason, record.correlation_id,
             record.causation_id, record.occurred_at),
        )  # fmt: skip

    def reset(self, cur: Cursor[Any]) -> None:
        cur.execute("TRUNCATE rm_history")
