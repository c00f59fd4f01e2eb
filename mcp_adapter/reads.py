"""The read-model query the MCP tools need beyond projections.queries (the change feed), and
the mapping of query rows into the tools' answer models. Everything here reads the read models
only."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from uuid import UUID

from psycopg import Connection
from psycopg.rows import dict_row

from mcp_adapter import models

CHANGES = """SELECT h.position, h.kind, h.aggregate_id AS id, h.version, h.event_type,
    h.occurred_at, h.actor, h.reason,
    coalesce(h.snapshot ->> 'slug', h.snapshot ->> 'title') AS ref
FROM rm_history h
WHERE h.position > %s AND h.position <= %s
ORDER BY h.position
LIMIT %s"""


def changes_since(conn: Connection[Any], after: int, applied: int, limit: int) -> dict[str, Any]:
    """The version-history rows after store position `after`, in position order, up to the
    applied position (rows beyond it may be in one read model and not yet in another). The
    caller continues from `next_position`; no change is skipped or repeated."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(CHANGES, (after, applied, limit + 1)).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    next_position = int(rows[-1]["position"]) if more else max(after, applied)
    return {"items": rows, "next_position": next_position, "more": more}


def tool_extras(conn: Connection[Any], ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Input schema and semver of the given tools (by id), from the current state."""
    wanted = [UUID(i) for i in ids]
    if not wanted:
        return {}
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT id, doc -> 'input_schema' AS input_schema, doc ->> 'version' AS semver "
            "FROM rm_tools WHERE id = ANY(%s)",
            (wanted,),
        ).fetchall()
    return {str(r["id"]): r for r in rows}


# --- rows into models -----------------------------------------------------------------------

MAX_PARAMS = 50


def _type_of(schema: Any) -> str:
    if not isinstance(schema, dict):
        return "any"
    kind = schema.get("type")
    if isinstance(kind, list):
        return "|".join(str(k) for k in kind)
    if isinstance(kind, str):
        return kind
    if "enum" in schema:
        return "enum"
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            return "|".join(_type_of(s) for s in schema[key])
    return "any"


def input_summary(schema: Any) -> list[models.Param]:
    """The top-level parameters of a JSON Schema: name, type, required, description."""
    if not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict):
        return []
    required = set(schema.get("required") or [])
    params = []
    for name, sub in list(schema["properties"].items())[:MAX_PARAMS]:
        description = sub.get("description") if isinstance(sub, dict) else None
        params.append(
            models.Param(
                name=name,
                type=_type_of(sub),
                required=name in required,
                description=description if isinstance(description, str) else None,
            )
        )
    return params


def tool_summary(item: dict[str, Any]) -> models.ToolSummary:
    doc = item["tool"]
    return models.ToolSummary(
        id=str(item["id"]),
        slug=doc["slug"],
        name=doc["name"],
        description=doc["description"],
        category=doc["category"],
        tags=list(doc.get("tags") or []),
        status=doc["status"],
        semver=doc["version"],
        version=item["version"],
        updated_at=item["updated_at"],
    )


def tool_record(item: dict[str, Any]) -> models.ToolRecord:
    doc = item["tool"]
    return models.ToolRecord(
        **tool_summary(item).model_dump(),
        author=doc["author"],
        long_description=doc.get("long_description"),
        input_schema=doc.get("input_schema") or {},
        output_schema=doc.get("output_schema"),
        examples=list(doc.get("examples") or []),
        config=dict(doc.get("config") or {}),
        event_position=item["position"],
        created_at=item.get("created_at"),
        deleted_at=item.get("deleted_at"),
    )


def document_record(item: dict[str, Any]) -> models.DocumentRecord:
    doc = item["document"]
    return models.DocumentRecord(
        id=str(item["id"]),
        title=doc["title"],
        content=doc["content"],
        content_type=doc["content_type"],
        metadata=dict(doc.get("metadata") or {}),
        tags=list(doc.get("tags") or []),
        link=doc.get("link"),
        version=item["version"],
        event_position=item["position"],
        created_at=item["created_at"],
        updated_at=item["updated_at"],
        deleted_at=item.get("deleted_at"),
    )


def dataset_summary(item: dict[str, Any]) -> models.DatasetSummary:
    doc = item["dataset"]
    return models.DatasetSummary(
        id=str(item["id"]),
        slug=doc["slug"],
        name=doc["name"],
        description=doc["description"],
        owner=doc["owner"],
        tags=list(doc.get("tags") or []),
        status=doc["status"],
        version=item["version"],
        columns=len(doc.get("columns") or []),
        updated_at=item["updated_at"],
    )


def dataset_record(item: dict[str, Any]) -> models.DatasetRecord:
    doc = item["dataset"]
    return models.DatasetRecord(
        id=str(item["id"]),
        slug=doc["slug"],
        name=doc["name"],
        description=doc["description"],
        owner=doc["owner"],
        tags=list(doc.get("tags") or []),
        status=doc["status"],
        source=dict(doc.get("source") or {}),
        columns=[models.Column(**c) for c in doc.get("columns") or []],
        profile=doc.get("profile"),
        version=item["version"],
        event_position=item["position"],
        created_at=item["created_at"],
        updated_at=item["updated_at"],
        deleted_at=item.get("deleted_at"),
    )


def version_entry(row: dict[str, Any]) -> models.VersionEntry:
    return models.VersionEntry(
        version=row["version"],
        event_type=row["event_type"],
        actor=row["actor"],
        reason=row["reason"],
        occurred_at=row["occurred_at"],
        event_position=row["position"],
        patch=row["patch"],
    )


def change(row: dict[str, Any]) -> models.Change:
    return models.Change(
        event_position=row["position"],
        kind=row["kind"],
        id=str(row["id"]),
        version=row["version"],
        event_type=row["event_type"],
        ref=row["ref"],
        occurred_at=row["occurred_at"],
        actor=row["actor"],
        reason=row["reason"],
    )
