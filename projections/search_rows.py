"""Keeps `rm_search` (the lexical index) and the vector outbox in step with the current state.
Called by the current-state writers inside their transaction, so search can never see a state
the current-state tables do not have, and the vector indexer is told of every change exactly
when it commits."""

from __future__ import annotations

from typing import Any

from psycopg import Cursor

from projections.kinds import KINDS
from projections.records import EventRecord

# One round trip per item: upsert its units, drop chunks past the new count, and mark it for the
# vector indexer. Item-level fields are parameters; only the chunks vary (unnest).
_WRITE = """
WITH units AS (
    INSERT INTO rm_search (kind, id, chunk, slug, name, description, heading, body, status,
        category, tags, owner, link_id, deleted, version, position)
    SELECT %(kind)s, %(id)s, u.chunk, %(slug)s, %(name)s, %(description)s, u.heading, u.body,
        %(status)s, %(category)s, %(tags)s, %(owner)s, %(link_id)s, %(deleted)s, %(version)s,
        %(position)s
    FROM unnest(%(chunks)s::int[], %(headings)s::text[], %(bodies)s::text[])
        AS u (chunk, heading, body)
    ON CONFLICT (kind, id, chunk) DO UPDATE SET slug = EXCLUDED.slug, name = EXCLUDED.name,
        description = EXCLUDED.description, heading = EXCLUDED.heading, body = EXCLUDED.body,
        status = EXCLUDED.status, category = EXCLUDED.category, tags = EXCLUDED.tags,
        owner = EXCLUDED.owner, link_id = EXCLUDED.link_id, deleted = EXCLUDED.deleted,
        version = EXCLUDED.version, position = EXCLUDED.position
), stale AS (
    DELETE FROM rm_search WHERE kind = %(kind)s AND id = %(id)s AND chunk >= %(count)s
)
INSERT INTO vector_outbox (id, kind, version, position)
VALUES (%(id)s, %(kind)s, %(version)s, %(position)s)
ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, position = EXCLUDED.position"""


def write_search_rows(
    cur: Cursor[Any], kind: str, state: Any, record: EventRecord, deleted: bool
) -> None:
    doc = {"slug": getattr(state, "slug", None), **state.fields()}
    read_kind = KINDS[kind]
    units = read_kind.units(doc)
    cur.execute(
        _WRITE,
        {
            **read_kind.search_fields(doc),
            "kind": kind,
            "id": state.id,
            "tags": list(doc.get("tags") or []),
            "deleted": deleted,
            "version": state.aggregate_version,
            "position": record.position,
            "chunks": [u.chunk for u in units],
            "headings": [u.heading for u in units],
            "bodies": [u.text for u in units],
            "count": len(units),
        },
    )
