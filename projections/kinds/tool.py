"""Tools on the read side: the `rm_tools` row, the search unit, the collection and topic."""

from __future__ import annotations

from typing import Any

from domain import tool
from projections.kinds.base import ReadKind, Table, Written
from projections.search_text import Unit, schema_params


def row(w: Written) -> dict[str, Any]:
    t, r = w.state, w.applied
    return {"id": t.id, "slug": t.slug, "name": t.name, "description": t.description,
            "category": t.category, "tags": t.tags, "status": t.status, "semver": t.version,
            "author": t.author, "aggregate_version": t.aggregate_version,
            "position": r.position, "created_at": w.created, "updated_at": r.occurred_at,
            "deleted_at": w.deleted, "doc": t.fields()}  # fmt: skip


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
    row=row,
    units=units,
    search_fields=search_fields,
    collection="tools",
    deleted_by=(tool.ToolDeleted.__name__,),
    topic="tools.v1",
)
