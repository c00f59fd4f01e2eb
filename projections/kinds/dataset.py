"""Datasets on the read side: the `rm_datasets` row and its columns, the search unit, the
collection and topic."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import Cursor

from domain import dataset
from projections.kinds.base import Applied, ReadKind, Table, doc_json
from projections.search_text import Unit

COLUMNS = """, (SELECT coalesce(jsonb_agg(jsonb_build_object('name', c.name, 'type', c.type,
    'nullable', c.nullable, 'description', c.description) ORDER BY c.ordinal), '[]')
    FROM rm_dataset_columns c WHERE c.dataset_id = t.id) AS columns"""


def write(
    cur: Cursor[Any], d: Any, r: Applied, created: datetime, deleted: datetime | None
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
         d.aggregate_version, r.position, created, r.occurred_at, deleted, doc_json(d)),
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


def units(doc: dict[str, Any]) -> list[Unit]:
    parts = [f"{doc['name']}.", doc["description"]]
    if doc.get("tags"):
        parts.append("Tags: " + ", ".join(doc["tags"]) + ".")
    columns = [
        f"{c['name']} ({c['type']})" + (f": {c['description']}" if c.get("description") else "")
        for c in doc.get("columns") or []
    ]
    if columns:
        parts.append("Columns: " + "; ".join(columns) + ".")
    return [Unit(0, None, " ".join(parts))]


def search_fields(doc: dict[str, Any]) -> dict[str, Any]:
    return {"slug": doc["slug"], "name": doc["name"], "description": doc["description"],
            "status": doc.get("status"), "category": None, "owner": doc["owner"],
            "link_id": None}  # fmt: skip


READ = ReadKind(
    aggregate=dataset.AGGREGATE,
    table=Table(
        "rm_datasets",
        ("updated_at", "created_at", "name", "slug"),
        extra=COLUMNS,
        companions=("rm_dataset_columns",),
    ),
    write=write,
    units=units,
    search_fields=search_fields,
    collection="datasets",
    deleted_by=(dataset.DatasetDeleted.__name__,),
    topic="datasets.v1",
)
