"""Current state: one row per tool, dataset and document, as of the last applied event.

The handler folds the event into the previous state with the domain's own `evolve`, so the read
model can never disagree with a replay of the store."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import Cursor
from psycopg.types.json import Json

from projections.records import EventRecord
from projections.search_rows import write_search_rows
from projections.states import EVOLVE, state_from_doc

TABLES = {"tool": "rm_tools", "dataset": "rm_datasets", "document": "rm_documents"}


class CurrentState:
    name = "current_state"
    kinds = frozenset(TABLES)

    def handles(self, record: EventRecord) -> bool:
        return record.kind in self.kinds

    def apply(self, cur: Cursor[Any], record: EventRecord) -> None:
        table = TABLES[record.kind]
        cur.execute(
            f"SELECT aggregate_version, doc, created_at, deleted_at FROM {table} WHERE id = %s",  # noqa: S608
            (record.aggregate_id,),
        )
        row = cur.fetchone()
        previous = (
            state_from_doc(record.kind, record.aggregate_id, row["aggregate_version"], row["doc"])
            if row
            else None
        )
        state = EVOLVE[record.kind](previous, record.to_event())
        created_at = row["created_at"] if row else record.occurred_at
        gone_at = deleted_at(state.deleted, row["deleted_at"] if row else None, record)
        write(cur, record.kind, state, record, created_at, gone_at)

    def reset(self, cur: Cursor[Any]) -> None:
        cur.execute("TRUNCATE rm_tools, rm_datasets, rm_dataset_columns, rm_documents, rm_search")


def write(  # noqa: PLR0917 - the writers' own arguments, plus the kind
    cur: Cursor[Any], kind: str, state: Any, r: EventRecord, created: datetime,
    deleted: datetime | None,
) -> None:  # fmt: skip
    """Writes an aggregate's current state and, with it, what search reads."""
    WRITERS[kind](cur, state, r, created, deleted)
    write_search_rows(cur, kind, state, r, deleted is not None)


def deleted_at(deleted: bool, before: datetime | None, record: EventRecord) -> datetime | None:
    """When a deleted aggregate was deleted: kept across later events, cleared by a restore."""
    if not deleted:
        return None
    return before or record.occurred_at


def _doc(state: Any) -> Json:
    # States here are folded from EventRecords, whose secrets are already redacted.
    return Json(state.fields())


def _write_tool(
    cur: Cursor[Any], t: Any, r: EventRecord, created: datetime, deleted: datetime | None
) -> None:
    cur.execute(
        """INSERT INTO rm_tools (id, slug, name, description, category, tags, status, semver,
            author, aggregate_version, position, created_at, updated_at, deleted_at, doc)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, description = EXCLUDED.description,
            category = EXCLUDED.category, tags = EXCLUDED.tags, status = EXCLUDED.status,
            semver = EXCLUDED.semver, author = EXCLUDED.author,
            aggregate_version = EXCLUDED.aggregate_version, position = EXCLUDED.position,
            updated_at = EXCLUDED.updated_at, deleted_at = EXCLUDED.deleted_at,
            doc = EXCLUDED.doc""",
        (t.id, t.slug, t.name, t.description, t.category, t.tags, t.status, t.version, t.author,
         t.aggregate_version, r.position, created, r.occurred_at, deleted, _doc(t)),
    )  # fmt: skip


def _write_dataset(
    cur: Cursor[Any], d: Any, r: EventRecord, created: datetime, deleted: datetime | None
) -> None:
    cur.execute(
        """INSERT INTO rm_datasets (id, slug, name, description, owner, tags, status, source_kind,
            aggregate_version, position, created_at, updated_at, deleted_at, doc)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, description = EXCLUDED.description,
            owner = EXCLUDED.owner, tags = EXCLUDED.tags, status = EXCLUDED.status,
            source_kind = EXCLUDED.source_kind, aggregate_version = EXCLUDED.aggregate_version,
            position = EXCLUDED.position, updated_at = EXCLUDED.updated_at,
            deleted_at = EXCLUDED.deleted_at, doc = EXCLUDED.doc""",
        (d.id, d.slug, d.name, d.description, d.owner, d.tags, d.status, d.source.get("kind"),
         d.aggregate_version, r.position, created, r.occurred_at, deleted, _doc(d)),
    )  # fmt: skip
    cur.execute("DELETE FROM rm_dataset_columns WHERE dataset_id = %s", (d.id,))
    cur.executemany(
        "INSERT INTO rm_dataset_columns (dataset_id, ordinal, name, type, nullable, description) "
        "VALUES (%s, %s, %s, %s, %s, %s)",
        [
            (d.id, i, c["name"], c["type"], c.get("nullable", True), c.get("description"))
            for i, c in enumerate(d.columns)
        ],
    )


def _write_document(
    cur: Cursor[Any], d: Any, r: EventRecord, created: datetime, deleted: datetime | None
) -> None:
    link = d.link or {}
    cur.execute(
        """INSERT INTO rm_documents (id, title, content_type, tags, link_kind, link_id, language,
            aggregate_version, position, created_at, updated_at, deleted_at, doc)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (id) DO UPDATE SET title = EXCLUDED.title,
            content_type = EXCLUDED.content_type, tags = EXCLUDED.tags,
            link_kind = EXCLUDED.link_kind, link_id = EXCLUDED.link_id,
            language = EXCLUDED.language, aggregate_version = EXCLUDED.aggregate_version,
            position = EXCLUDED.position, updated_at = EXCLUDED.updated_at,
            deleted_at = EXCLUDED.deleted_at, doc = EXCLUDED.doc""",
        (d.id, d.title, d.content_type, d.tags, link.get("kind"), link.get("id"),
         (d.metadata or {}).get("language"), d.aggregate_version, r.position, created,
         r.occurred_at, deleted, _doc(d)),
    )  # fmt: skip


WRITERS = {"tool": _write_tool, "dataset": _write_dataset, "document": _write_document}
