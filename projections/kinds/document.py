"""Documents on the read side: the `rm_documents` row, the search chunks, the collection and
topic."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import Cursor

from domain import document
from projections.kinds.base import Applied, ReadKind, Table, doc_json
from projections.search_text import chunk_document


def write(
    cur: Cursor[Any], d: Any, r: Applied, created: datetime, deleted: datetime | None
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
         r.occurred_at, deleted, doc_json(d)),
    )  # fmt: skip


def search_fields(doc: dict[str, Any]) -> dict[str, Any]:
    link = doc.get("link") or {}
    return {"slug": None, "name": doc["title"], "description": None, "status": None,
            "category": None, "owner": None, "link_id": link.get("id")}  # fmt: skip


READ = ReadKind(
    aggregate=document.AGGREGATE,
    table=Table("rm_documents", ("updated_at", "created_at", "title")),
    write=write,
    units=chunk_document,
    search_fields=search_fields,
    collection="document_chunks",
    deleted_by=(document.DocumentRemoved.__name__,),
    topic="documents.v1",
    bm25_avg_len=180.0,
)
