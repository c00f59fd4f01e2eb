"""Documents on the read side: the `rm_documents` row, the search chunks, the collection and
topic."""

from __future__ import annotations

from typing import Any

from domain import document
from projections.kinds.base import ReadKind, Table, Written
from projections.search_text import chunk_document


def row(w: Written) -> dict[str, Any]:
    d, r = w.state, w.applied
    link = d.link or {}
    return {"id": d.id, "title": d.title, "content_type": d.content_type, "tags": d.tags,
            "link_kind": link.get("kind"), "link_id": link.get("id"),
            "language": (d.metadata or {}).get("language"),
            "aggregate_version": d.aggregate_version, "position": r.position,
            "created_at": w.created, "updated_at": r.occurred_at, "deleted_at": w.deleted,
            "doc": d.fields()}  # fmt: skip


def search_fields(doc: dict[str, Any]) -> dict[str, Any]:
    link = doc.get("link") or {}
    return {"slug": None, "name": doc["title"], "description": None, "status": None,
            "category": None, "owner": None, "link_id": link.get("id")}  # fmt: skip


READ = ReadKind(
    aggregate=document.AGGREGATE,
    table=Table("rm_documents", ("updated_at", "created_at", "title")),
    row=row,
    units=chunk_document,
    search_fields=search_fields,
    collection="document_chunks",
    deleted_by=(document.DocumentRemoved.__name__,),
    topic="documents.v1",
    bm25_avg_len=180.0,
)
