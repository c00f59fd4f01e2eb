"""Datasets on the read side: the `rm_datasets` row and its columns, the search unit, the
collection and topic."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import Cursor

from domain import dataset
from projections.bulk_rows import insert_json
from projections.kinds.base import ReadKind, Table, Written
from projections.search_text import Unit

COLUMNS = """, (SELECT coalesce(jsonb_agg(jsonb_build_object('name', c.name, 'type', c.type,
    'nullable', c.nullable, 'description', c.description) ORDER BY c.ordinal), '[]')
    FROM rm_dataset_columns c WHERE c.dataset_id = t.id) AS columns"""


def row(w: Written) -> dict[str, Any]:
    d, r = w.state, w.applied
    return {"id": d.id, "slug": d.slug, "name": d.name, "description": d.description,
            "owner": d.owner, "tags": d.tags, "status": d.status,
            "source_kind": d.source.get("kind"), "aggregate_version": d.aggregate_version,
            "position": r.position, "created_at": w.created, "updated_at": r.occurred_at,
            "deleted_at": w.deleted, "doc": d.fields()}  # fmt: skip


def write_columns(cur: Cursor[Any], written: Sequence[Written]) -> None:
    """A dataset's columns, rewritten whole: the declared list is the truth."""
    ids = [w.state.id for w in written]
    cur.execute("DELETE FROM rm_dataset_columns WHERE dataset_id = ANY(%s)", (ids,))
    rows = [
        {"dataset_id": w.state.id, "ordinal": i, "name": c["name"], "type": c["type"],
         "nullable": c.get("nullable", True), "description": c.get("description")}
        for w in written
        for i, c in enumerate(w.state.columns)
    ]  # fmt: skip
    insert_json(cur, "rm_dataset_columns", rows)


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
    row=row,
    write_companions=write_columns,
    units=units,
    search_fields=search_fields,
    collection="datasets",
    deleted_by=(dataset.DatasetDeleted.__name__,),
    topic="datasets.v1",
)
