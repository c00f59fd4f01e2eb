"""Tools on the read side: the `rm_tools` row, the search unit, the collection and topic."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import Cursor

from domain import tool
from projections.kinds.base import Applied, ReadKind, Table, doc_json
from projections.search_text import Unit, schema_params


def write(
    cur: Cursor[Any], t: Any, r: Applied, created: datetime, deleted: datetime | None
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
         t.aggregate_version, r.position, created, r.occurred_at, deleted, doc_json(t)),
    )  # fmt: skip


def units(doc: dict[str, Any]) -> list[Unit]:
    # Most telling first: the embedding model truncates long text.
    parts = [f"{doc['name']}.", doc["description"], f"Category: {doc['category']}."]
    if doc.get("tags"):
        parts.append("Tags: " + ", ".join(doc["tags"]) + ".")
    params = schema_params(doc.get("input_schema"))
    if params:
        parts.append("Parameters: " + "; ".join(params) + ".")
    if doc.get("long_description"):
        parts.append(doc["long_description"])
    return [Unit(0, None, " ".join(parts))]


def search_fields(doc: dict[str, Any]) -> dict[str, Any]:
    return {"slug": doc["slug"], "name": doc["name"], "description": doc["description"],
            "status": doc["status"], "category": doc["category"], "owner": doc["author"],
            "link_id": None}  # fmt: skip


READ = ReadKind(
    aggregate=tool.AGGREGATE,
    table=Table("rm_tools", ("updated_at", "created_at", "name", "slug")),
    write=write,
    units=units,
    search_fields=search_fields,
    collection="tools",
    deleted_by=(tool.ToolDeleted.__name__,),
    topic="tools.v1",
)
