"""Query rows (projections.queries) into the MCP tools' answer models."""

from __future__ import annotations

from typing import Any

from mcp_adapter import models
from projections.results import Change, Item, VersionEntry

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


def tool_summary(item: Item) -> models.ToolSummary:
    doc = item.fields
    return models.ToolSummary(
        id=str(item.id),
        slug=doc["slug"],
        name=doc["name"],
        description=doc["description"],
        category=doc["category"],
        tags=list(doc.get("tags") or []),
        status=doc["status"],
        semver=doc["version"],
        version=item.version,
        updated_at=item.updated_at,
    )


def tool_record(item: Item) -> models.ToolRecord:
    doc = item.fields
    return models.ToolRecord(
        **tool_summary(item).model_dump(),
        author=doc["author"],
        long_description=doc.get("long_description"),
        input_schema=doc.get("input_schema") or {},
        output_schema=doc.get("output_schema"),
        examples=list(doc.get("examples") or []),
        config=dict(doc.get("config") or {}),
        event_position=item.position,
        created_at=item.created_at,
        deleted_at=item.deleted_at,
    )


def document_record(item: Item) -> models.DocumentRecord:
    doc = item.fields
    return models.DocumentRecord(
        id=str(item.id),
        title=doc["title"],
        content=doc["content"],
        content_type=doc["content_type"],
        metadata=dict(doc.get("metadata") or {}),
        tags=list(doc.get("tags") or []),
        link=doc.get("link"),
        version=item.version,
        event_position=item.position,
        created_at=item.created_at,
        updated_at=item.updated_at,
        deleted_at=item.deleted_at,
    )


def dataset_summary(item: Item) -> models.DatasetSummary:
    doc = item.fields
    return models.DatasetSummary(
        id=str(item.id),
        slug=doc["slug"],
        name=doc["name"],
        description=doc["description"],
        owner=doc["owner"],
        tags=list(doc.get("tags") or []),
        status=doc["status"],
        version=item.version,
        columns=len(doc.get("columns") or []),
        updated_at=item.updated_at,
    )


def dataset_record(item: Item) -> models.DatasetRecord:
    doc = item.fields
    return models.DatasetRecord(
        **dataset_summary(item).model_dump(exclude={"columns"}),
        source=dict(doc.get("source") or {}),
        columns=[models.Column(**c) for c in doc.get("columns") or []],
        profile=doc.get("profile"),
        event_position=item.position,
        created_at=item.created_at,
        deleted_at=item.deleted_at,
    )


def version_entry(v: VersionEntry) -> models.VersionEntry:
    return models.VersionEntry(
        version=v.version,
        event_type=v.event_type,
        actor=v.actor,
        reason=v.reason,
        occurred_at=v.occurred_at,
        event_position=v.position,
        patch=v.patch,
    )


def change(c: Change) -> models.Change:
    return models.Change(
        event_position=c.position,
        kind=c.kind,
        id=str(c.id),
        version=c.version,
        event_type=c.event_type,
        ref=c.ref,
        occurred_at=c.occurred_at,
        actor=c.actor,
        reason=c.reason,
    )
