"""Keeps `rm_search` (the lexical index) and the vector outbox in step with the current state.
Called by the current-state writers inside their transaction, so search can never see a state
the current-state tables do not have, and the vector indexer is told of every change exactly
when it commits."""

from __future__ import annotations

from typing import Any

from psycopg import Cursor

from projections.records import EventRecord
from projections.search_text import UNITS


def _fields(kind: str, doc: dict[str, Any]) -> dict[str, Any]:
    if kind == "tool":
        return {"slug": doc["slug"], "name": doc["name"], "description": doc["description"],
                "status": doc["status"], "category": doc["category"], "owner": doc["author"],
                "link_id": None}  # fmt: skip
    if kind == "dataset":
        return {"slug": doc["slug"], "name": doc["name"], "description": doc["description"],
                "status": doc.get("status"), "category": None, "owner": doc["owner"],
                "link_id": None}  # fmt: skip
    link = doc.get("link") or {}
    return {"slug": None, "name": doc["title"], "description": None, "status": None,
            "category": None, "owner": None, "link_id": link.get("id")}  # fmt: skip


def write_search_rows(
    cur: Cursor[Any], kind: str, state: Any, record: EventRecord, deleted: bool
) -> None:
    doc = {"slug": getattr(state, "slug", None), **state.fields()}
    f = _fields(kind, doc)
    units = UNITS[kind](doc)
    cur.execute("DELETE FROM rm_search WHERE kind = %s AND id = %s", (kind, state.id))
    cur.executemany(
        """INSERT INTO rm_search (kind, id, chunk, slug, name, description, heading, body, status,
            category, tags, owner, link_id, deleted, version, position)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        [(kind, state.id, u.chunk, f["slug"], f["name"], f["description"], u.heading, u.text,
          f["status"], f["category"], list(doc.get("tags") or []), f["owner"], f["link_id"],
          deleted, state.aggregate_version, record.position) for u in units],
    )  # fmt: skip
    cur.execute(
        """INSERT INTO vector_outbox (id, kind, version, position) VALUES (%s, %s, %s, %s)
        ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, position = EXCLUDED.position""",
        (state.id, kind, state.aggregate_version, record.position),
    )
